//! PDU framing and the byte-level codec: splits the stream into exactly
//! `command_length` octets per PDU, decodes only that slice through rusmpp,
//! and encodes outgoing PDUs.
//!
//! rusmpp 0.4.0's own tokio codec hands the body decoder the whole receive
//! buffer, so a short body reads into the next PDU and a long one leaves
//! bytes that desynchronise the stream; any error also ends the stream. Here
//! the body decoder sees one PDU's octets and nothing else (rustls'
//! `Reader::sub` pattern), leftovers are an error, and a body that does not
//! decode costs that one PDU, not the connection.
//!
//! On top of rusmpp we check what it lets through:
//! - unknown command ids decode as `Pdu::Other` — refused (ESME_RINVCMDID);
//! - a body-less request (`submit_sm` with command_length 16) decodes as "no
//!   body" — refused for requests, accepted for responses (error responses
//!   legitimately carry no body);
//! - fixed-size TLVs ignore their length field, so `sar_msg_ref_num` declared
//!   4 octets reads 2 and the other 2 become the start of a forged TLV —
//!   every TLV's length field is compared with what its value took.
//!
//! Memory: the [`Framer`] holds at most one partial PDU, never more than
//! `pdu_len_max` octets; a larger command_length is refused before anything
//! is buffered.

use bytes::BytesMut;
use rusmpp::decode::{DecodeErrorKind, DecodeWithKeyOptional};
use rusmpp::encode::{Encode, Length};
use rusmpp::fields::SmppField;
use rusmpp::tlvs::Tlv;
use rusmpp::{CommandId, CommandStatus, Pdu};

use super::error::{DecodeError, EncodeError};

/// Octets in the SMPP header: command_length, command_id, command_status,
/// sequence_number.
pub const HEADER_LEN: usize = 16;

/// Default [`Config::pdu_len_max`](super::Config::pdu_len_max): 8 KiB, room
/// for a 64-segment message_payload with headroom, far below what would let
/// a peer pin memory.
pub const DEFAULT_PDU_LEN_MAX: u32 = 8 * 1024;

/// The 16-octet header of a PDU, as read from the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Total PDU length, header included.
    pub command_length: u32,
    /// The command (unknown ids are `CommandId::Other`).
    pub command_id: CommandId,
    /// The status (meaningful in responses only).
    pub command_status: CommandStatus,
    /// Correlates a response with its request.
    pub sequence_number: u32,
}

impl Header {
    fn parse(bytes: &[u8; HEADER_LEN]) -> Self {
        let word =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        Self {
            command_length: word(0),
            command_id: CommandId::from(word(4)),
            command_status: CommandStatus::from(word(8)),
            sequence_number: word(12),
        }
    }
}

/// One PDU whose body decoded exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The header as received.
    pub header: Header,
    /// The body. `None` only for a response that came without one (SMPP
    /// 3.4 omits the body of error responses); every request has a body
    /// (body-less commands such as enquire_link decode to their unit
    /// variant).
    pub body: Option<Pdu>,
}

/// A PDU that did not decode, with what to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// The header as received (for a fatal error it may be garbage).
    pub header: Header,
    /// What was wrong.
    pub error: DecodeError,
}

impl FrameError {
    /// What to send back: the command's `*_resp` for a known request that
    /// has one, `generic_nack` otherwise, with the PDU's sequence number and
    /// the status from [`DecodeError`]. `None` for a broken `generic_nack`
    /// that left framing intact: answering a nack with a nack could loop
    /// between two peers. A framing loss is always nacked (we close anyway).
    pub fn reply(&self) -> Option<Reply> {
        let id = self.header.command_id;
        let fatal = self.error.is_fatal();
        if id == CommandId::GenericNack && !fatal {
            return None;
        }
        let known_request =
            !fatal && !matches!(id, CommandId::Other(_)) && id.is_operation() && has_response(id);
        Some(Reply {
            command_id: if known_request {
                id.matching_response()
            } else {
                CommandId::GenericNack
            },
            status: CommandStatus::from(&self.error),
            sequence_number: self.header.sequence_number,
            close: self.error.is_fatal(),
        })
    }
}

/// A body-less answer to a PDU that did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// `generic_nack` or the request's `*_resp`.
    pub command_id: CommandId,
    /// Why.
    pub status: CommandStatus,
    /// The offending PDU's sequence number.
    pub sequence_number: u32,
    /// Close the connection once this is written: framing is lost.
    pub close: bool,
}

impl Reply {
    /// The 16-octet PDU to write.
    pub fn encode(&self) -> Vec<u8> {
        encode_header_only(self.command_id, self.status, self.sequence_number)
    }
}

/// Splits a byte stream into PDUs. Sans-IO: feed it what the socket gave.
#[derive(Debug, Clone)]
pub struct Framer {
    /// The current partial PDU; never longer than `pdu_len_max`.
    buf: Vec<u8>,
    pdu_len_max: u32,
    /// Set after a fatal error: the stream has no PDU boundaries any more.
    lost: bool,
}

impl Framer {
    /// A framer refusing PDUs longer than `pdu_len_max` octets (raised to
    /// 16 if smaller: nothing shorter than a header is a PDU).
    pub fn new(pdu_len_max: u32) -> Self {
        Self {
            buf: Vec::new(),
            pdu_len_max: pdu_len_max.max(HEADER_LEN as u32),
            lost: false,
        }
    }

    /// Takes bytes from the front of `input` and returns the next PDU, or
    /// `None` when `input` is used up without completing one (read more).
    /// Call it in a loop until `None`; then every byte of `input` is either
    /// decoded or buffered.
    ///
    /// After a fatal error (bad command_length) the framer drops everything
    /// it is given: the session is closing.
    pub fn next_frame(&mut self, input: &mut &[u8]) -> Option<Result<Frame, FrameError>> {
        if self.lost {
            *input = &[];
            return None;
        }
        // Fast path: nothing buffered and the whole PDU is in `input`.
        if self.buf.is_empty() {
            if let Some(head) = input.first_chunk::<HEADER_LEN>() {
                let header = Header::parse(head);
                let len = match self.check_length(header) {
                    Ok(len) => len,
                    Err(e) => return Some(Err(self.lose(header, e, input))),
                };
                if let Some((pdu, rest)) = input.split_at_checked(len) {
                    *input = rest;
                    return Some(decode_body(header, &pdu[HEADER_LEN..]));
                }
            }
        }
        // Slow path: gather the header, then the rest of the PDU.
        if self.buf.len() < HEADER_LEN {
            self.take(HEADER_LEN - self.buf.len(), input);
            if self.buf.len() < HEADER_LEN {
                return None;
            }
        }
        let header = match self.buf.first_chunk::<HEADER_LEN>() {
            Some(head) => Header::parse(head),
            None => return None, // unreachable: checked just above
        };
        let len = match self.check_length(header) {
            Ok(len) => len,
            Err(e) => return Some(Err(self.lose(header, e, input))),
        };
        self.take(len.saturating_sub(self.buf.len()), input);
        if self.buf.len() < len {
            return None;
        }
        let result = decode_body(header, self.buf.get(HEADER_LEN..len).unwrap_or_default());
        self.buf.clear();
        Some(result)
    }

    /// Octets of the partial PDU held (≤ `pdu_len_max`).
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Capacity of the partial-PDU buffer (≤ `pdu_len_max`).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// True once framing is lost.
    pub fn is_lost(&self) -> bool {
        self.lost
    }

    fn check_length(&self, header: Header) -> Result<usize, DecodeError> {
        let command_length = header.command_length;
        if (command_length as usize) < HEADER_LEN {
            return Err(DecodeError::CommandLengthTooShort { command_length });
        }
        if command_length > self.pdu_len_max {
            return Err(DecodeError::CommandLengthTooLong {
                command_length,
                pdu_len_max: self.pdu_len_max,
            });
        }
        Ok(command_length as usize)
    }

    fn take(&mut self, want: usize, input: &mut &[u8]) {
        let n = want.min(input.len());
        let (head, rest) = input.split_at(n);
        // Exact reservation keeps capacity ≤ the PDU length ≤ pdu_len_max.
        self.buf.reserve_exact(n);
        self.buf.extend_from_slice(head);
        *input = rest;
    }

    fn lose(&mut self, header: Header, error: DecodeError, input: &mut &[u8]) -> FrameError {
        self.lost = true;
        self.buf = Vec::new();
        *input = &[];
        FrameError { header, error }
    }
}

/// Decodes one body of exactly `body.len()` octets.
fn decode_body(header: Header, body: &[u8]) -> Result<Frame, FrameError> {
    let command_id = header.command_id;
    let fail = |error| Err(FrameError { header, error });
    if let CommandId::Other(raw) = command_id {
        return fail(DecodeError::UnknownCommandId { command_id: raw });
    }
    if body.is_empty() && !is_bodyless(command_id) {
        // rusmpp returns "no body" here; fine for an error response, a
        // request without its mandatory fields is short.
        return if command_id.is_response() {
            Ok(Frame { header, body: None })
        } else {
            fail(DecodeError::Truncated { command_id })
        };
    }
    let mut src = BytesMut::from(body);
    let pdu = match Pdu::decode(command_id, &mut src, body.len()) {
        Ok(Some((pdu, _))) => pdu,
        // rusmpp gives up without consuming on a body for a body-less command.
        Ok(None) => {
            return fail(DecodeError::TrailingBytes {
                command_id,
                count: src.len(),
            })
        }
        Err(e) => return fail(classify(command_id, &e)),
    };
    if !src.is_empty() {
        return fail(DecodeError::TrailingBytes {
            command_id,
            count: src.len(),
        });
    }
    if let Some(bad) =
        tlvs_of(&pdu).find(|tlv| tlv_actual_len(tlv) != usize::from(tlv.value_length()))
    {
        return fail(DecodeError::InvalidTlvLength {
            command_id,
            tag: u16::from(bad.tag()),
            declared: bad.value_length(),
            actual: tlv_actual_len(bad),
        });
    }
    Ok(Frame {
        header,
        body: Some(pdu),
    })
}

/// Maps rusmpp's error (with the `verbose` field chain) to ours.
fn classify(command_id: CommandId, error: &rusmpp::decode::DecodeError) -> DecodeError {
    let eof = matches!(error.kind(), DecodeErrorKind::UnexpectedEof);
    let Some(source) = error.source() else {
        return if eof {
            DecodeError::Truncated { command_id }
        } else {
            DecodeError::Malformed { command_id }
        };
    };
    match source.field() {
        // The TLV part: the Vec of TLVs, or a single optional TLV field.
        SmppField::tlvs
        | SmppField::sc_interface_version
        | SmppField::ms_availability_status
        | SmppField::message_payload
        | SmppField::user_message_reference => {
            if eof {
                // A tag/length header cut short, or a value running past the end.
                DecodeError::InvalidTlvStream { command_id }
            } else {
                DecodeError::InvalidTlvValue { command_id }
            }
        }
        SmppField::short_message | SmppField::sm_length => {
            DecodeError::InvalidShortMessage { command_id }
        }
        _ if eof => DecodeError::Truncated { command_id },
        field => DecodeError::InvalidField { command_id, field },
    }
}

/// Commands whose body is empty by definition.
fn is_bodyless(id: CommandId) -> bool {
    matches!(
        id,
        CommandId::Unbind
            | CommandId::UnbindResp
            | CommandId::EnquireLink
            | CommandId::EnquireLinkResp
            | CommandId::GenericNack
            | CommandId::CancelSmResp
            | CommandId::ReplaceSmResp
            | CommandId::CancelBroadcastSmResp
    )
}

/// Operations that have a `*_resp` (outbind and alert_notification do not).
pub(crate) fn has_response(id: CommandId) -> bool {
    id.is_operation()
        && !matches!(
            id,
            CommandId::Outbind | CommandId::AlertNotification | CommandId::Other(_)
        )
}

/// Every TLV of a PDU, wherever rusmpp keeps it.
fn tlvs_of(pdu: &Pdu) -> impl Iterator<Item = &Tlv> {
    let (many, one): (&[Tlv], Option<&Tlv>) = match pdu {
        Pdu::SubmitSm(p) => (p.tlvs(), None),
        Pdu::DeliverSm(p) => (p.tlvs(), None),
        Pdu::DataSm(p) => (p.tlvs(), None),
        Pdu::SubmitSmResp(p) => (p.tlvs(), None),
        Pdu::DeliverSmResp(p) => (p.tlvs(), None),
        Pdu::DataSmResp(p) => (p.tlvs(), None),
        Pdu::SubmitMulti(p) => (p.tlvs(), None),
        Pdu::SubmitMultiResp(p) => (p.tlvs(), None),
        Pdu::BroadcastSm(p) => (p.tlvs(), None),
        Pdu::BroadcastSmResp(p) => (p.tlvs(), None),
        Pdu::CancelBroadcastSm(p) => (p.tlvs(), None),
        Pdu::QueryBroadcastSmResp(p) => (p.tlvs(), None),
        Pdu::BindTransmitterResp(p) => (&[], p.sc_interface_version_tlv()),
        Pdu::BindReceiverResp(p) => (&[], p.sc_interface_version_tlv()),
        Pdu::BindTransceiverResp(p) => (&[], p.sc_interface_version_tlv()),
        Pdu::AlertNotification(p) => (&[], p.ms_availability_status_tlv()),
        Pdu::QueryBroadcastSm(p) => (&[], p.user_message_reference_tlv()),
        Pdu::ReplaceSm(p) => (&[], p.message_payload_tlv()),
        _ => (&[], None),
    };
    many.iter().chain(one)
}

/// Octets the TLV's value really takes (0 when rusmpp kept no value).
fn tlv_actual_len(tlv: &Tlv) -> usize {
    tlv.value().map_or(0, Length::length)
}

/// Encodes a PDU with a body. Refuses a result longer than `pdu_len_max`
/// and TLVs whose 16-bit length field cannot hold their value.
pub fn encode_pdu(
    status: CommandStatus,
    sequence_number: u32,
    pdu: &Pdu,
    pdu_len_max: u32,
) -> Result<Vec<u8>, EncodeError> {
    if let Some(bad) =
        tlvs_of(pdu).find(|tlv| tlv_actual_len(tlv) != usize::from(tlv.value_length()))
    {
        return Err(EncodeError::TlvLength {
            tag: u16::from(bad.tag()),
            len: tlv_actual_len(bad),
        });
    }
    let len = HEADER_LEN.saturating_add(pdu.length());
    let command_length = match u32::try_from(len) {
        Ok(l) if l <= pdu_len_max => l,
        _ => return Err(EncodeError::TooLong { len, pdu_len_max }),
    };
    let mut out = vec![0u8; len];
    write_header(
        &mut out,
        command_length,
        pdu.command_id(),
        status,
        sequence_number,
    );
    if let Some(body) = out.get_mut(HEADER_LEN..) {
        // `length()` sized the buffer from the same fields `encode` writes.
        pdu.encode(body);
    }
    Ok(out)
}

/// Encodes a 16-octet PDU without body (error responses, enquire_link,
/// unbind, generic_nack, …).
pub fn encode_header_only(
    command_id: CommandId,
    status: CommandStatus,
    sequence_number: u32,
) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    write_header(
        &mut out,
        HEADER_LEN as u32,
        command_id,
        status,
        sequence_number,
    );
    out
}

fn write_header(out: &mut [u8], len: u32, id: CommandId, status: CommandStatus, seq: u32) {
    let words = [len, u32::from(id), u32::from(status), seq];
    for (chunk, word) in out.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smpp::test_util::*;
    use proptest::prelude::*;

    fn all_frames(framer: &mut Framer, mut input: &[u8]) -> Vec<Result<Frame, FrameError>> {
        let mut out = Vec::new();
        while let Some(f) = framer.next_frame(&mut input) {
            out.push(f);
        }
        assert!(input.is_empty(), "framer left input unconsumed");
        out
    }

    fn ok_ids(frames: &[Result<Frame, FrameError>]) -> Vec<(CommandId, u32)> {
        frames
            .iter()
            .map(|f| {
                let f = f.as_ref().expect("frame decodes");
                (f.header.command_id, f.header.sequence_number)
            })
            .collect()
    }

    #[test]
    fn two_pdus_in_one_buffer_split_exactly() {
        let mut bytes = encode(7, &Pdu::EnquireLink);
        bytes.extend(encode(8, &submit_sm("79161234567", "929", b"hi")));
        let mut framer = Framer::new(DEFAULT_PDU_LEN_MAX);
        let frames = all_frames(&mut framer, &bytes);
        assert_eq!(
            ok_ids(&frames),
            vec![(CommandId::EnquireLink, 7), (CommandId::SubmitSm, 8)]
        );
        assert_eq!(framer.buffered_len(), 0);
    }

    #[test]
    fn one_pdu_byte_by_byte_completes_on_the_last_byte() {
        let bytes = encode(42, &submit_sm("79161234567", "929", b"renew"));
        let mut framer = Framer::new(DEFAULT_PDU_LEN_MAX);
        for (i, b) in bytes.iter().enumerate() {
            let frames = all_frames(&mut framer, std::slice::from_ref(b));
            if i + 1 < bytes.len() {
                assert!(frames.is_empty(), "frame before the last byte (at {i})");
            } else {
                assert_eq!(ok_ids(&frames), vec![(CommandId::SubmitSm, 42)]);
                let body = frames[0].as_ref().map(|f| f.body.clone()).ok().flatten();
                assert_eq!(body, Some(submit_sm("79161234567", "929", b"renew")));
            }
        }
    }

    /// A valid PDU body with its tail cut off, re-framed with a matching
    /// command_length, so only the body is short.
    fn truncated(seq: u32, pdu: &Pdu, cut: usize) -> Vec<u8> {
        let full = encode(seq, pdu);
        let mut short = full[..full.len() - cut].to_vec();
        let len = short.len() as u32;
        short[..4].copy_from_slice(&len.to_be_bytes());
        short
    }

    /// One row per malformed PDU: what the peer must get back, and the next
    /// PDU on the stream still decodes.
    #[test]
    fn malformed_bodies_are_answered_and_the_stream_continues() {
        let sm = submit_sm("79161234567", "929", b"hello");
        let resp = Pdu::SubmitSmResp(
            rusmpp::pdus::SubmitSmResp::builder()
                .message_id(c_str("abc"))
                .build(),
        );
        // bind_transmitter "sys" / "pw" with 5 extra octets.
        let mut bind_extra = header_bytes(0, 0x0000_0002, 0, 11);
        bind_extra.extend_from_slice(b"sys\0pw\0\0\x34\0\0\0EXTRA");
        fix_len(&mut bind_extra);
        let mut enquire_with_body = header_bytes(0, 0x0000_0015, 0, 12);
        enquire_with_body.extend_from_slice(&[1, 2, 3]);
        fix_len(&mut enquire_with_body);
        let mut unknown = header_bytes(0, 0x0000_1234, 0, 13);
        unknown.extend_from_slice(&[9, 9]);
        fix_len(&mut unknown);
        let mut empty_submit = header_bytes(16, 0x0000_0004, 0, 14);
        fix_len(&mut empty_submit);

        let rows: Vec<(&str, Vec<u8>, CommandId, CommandStatus, u32)> = vec![
            // Cut inside sm_default_msg_id/sm_length/short_message: sm_length runs past the end.
            (
                "submit_sm cut in short_message",
                truncated(3, &sm, 2),
                CommandId::SubmitSmResp,
                CommandStatus::EsmeRinvmsglen,
                3,
            ),
            // Cut inside the fixed integers after the addresses.
            (
                "submit_sm cut in mandatory ints",
                truncated(4, &sm, 14),
                CommandId::SubmitSmResp,
                CommandStatus::EsmeRinvcmdlen,
                4,
            ),
            (
                "submit_sm_resp cut in message_id",
                truncated(5, &resp, 1),
                CommandId::GenericNack,
                CommandStatus::EsmeRinvmsgid,
                5,
            ),
            (
                "bind_transmitter with trailing bytes",
                bind_extra,
                CommandId::BindTransmitterResp,
                CommandStatus::EsmeRinvcmdlen,
                11,
            ),
            (
                "enquire_link with a body",
                enquire_with_body,
                CommandId::EnquireLinkResp,
                CommandStatus::EsmeRinvcmdlen,
                12,
            ),
            (
                "unknown command id",
                unknown,
                CommandId::GenericNack,
                CommandStatus::EsmeRinvcmdid,
                13,
            ),
            (
                "submit_sm without body",
                empty_submit,
                CommandId::SubmitSmResp,
                CommandStatus::EsmeRinvcmdlen,
                14,
            ),
        ];
        for (name, bad, reply_id, status, seq) in rows {
            let mut bytes = bad.clone();
            bytes.extend(encode(99, &Pdu::EnquireLink));
            let mut framer = Framer::new(DEFAULT_PDU_LEN_MAX);
            let frames = all_frames(&mut framer, &bytes);
            assert_eq!(frames.len(), 2, "{name}");
            let err = frames[0].as_ref().expect_err(name);
            let reply = err.reply().expect(name);
            assert_eq!(
                (
                    reply.command_id,
                    reply.status,
                    reply.sequence_number,
                    reply.close
                ),
                (reply_id, status, seq, false),
                "{name}: {}",
                err.error
            );
            // What goes on the wire is that header, 16 octets.
            let wire = reply.encode();
            assert_eq!(wire.len(), 16, "{name}");
            assert_eq!(&wire[4..8], &u32::from(reply_id).to_be_bytes(), "{name}");
            assert_eq!(
                ok_ids(&frames[1..]),
                vec![(CommandId::EnquireLink, 99)],
                "{name}: next PDU"
            );
            assert!(!framer.is_lost(), "{name}");
        }
    }

    #[test]
    fn tlv_length_mismatch_is_refused_not_reinterpreted() {
        // sar_msg_ref_num (2-octet value) declared as 4 octets whose last two
        // octets, plus what follows, look like ussd_service_op = 17. rusmpp
        // alone decodes that as two TLVs.
        let mut tlvs = vec![0x02, 0x0C, 0x00, 0x04, 0x00, 0x01, 0x05, 0x01];
        tlvs.extend_from_slice(&[0x00, 0x01, 0x11]);
        let bytes = submit_sm_with_raw_tlvs(21, &tlvs);
        let mut framer = Framer::new(DEFAULT_PDU_LEN_MAX);
        let frames = all_frames(&mut framer, &bytes);
        let err = frames[0].as_ref().expect_err("must not decode");
        assert_eq!(
            err.error,
            DecodeError::InvalidTlvLength {
                command_id: CommandId::SubmitSm,
                tag: 0x020C,
                declared: 4,
                actual: 2
            }
        );
        assert_eq!(
            err.reply().map(|r| (r.command_id, r.status)),
            Some((CommandId::SubmitSmResp, CommandStatus::EsmeRinvtlvlen))
        );
    }

    #[test]
    fn broken_tlv_stream_gets_invtlvstream() {
        // Three octets cannot be a TLV header.
        let bytes = submit_sm_with_raw_tlvs(22, &[0x05, 0x01, 0x00]);
        let mut framer = Framer::new(DEFAULT_PDU_LEN_MAX);
        let frames = all_frames(&mut framer, &bytes);
        let err = frames[0].as_ref().expect_err("must not decode");
        assert_eq!(
            err.error,
            DecodeError::InvalidTlvStream {
                command_id: CommandId::SubmitSm
            }
        );
        assert_eq!(
            err.reply().map(|r| r.status),
            Some(CommandStatus::EsmeRinvtlvstream)
        );
    }

    #[test]
    fn bad_command_length_nacks_and_loses_framing() {
        for (command_length, expected) in [
            (
                4u32,
                DecodeError::CommandLengthTooShort { command_length: 4 },
            ),
            (
                1 << 20,
                DecodeError::CommandLengthTooLong {
                    command_length: 1 << 20,
                    pdu_len_max: DEFAULT_PDU_LEN_MAX,
                },
            ),
        ] {
            // Even a header claiming to be a generic_nack is nacked: we close.
            let mut bytes = header_bytes(command_length, 0x8000_0000, 0, 77);
            bytes.extend(encode(78, &Pdu::EnquireLink));
            let mut framer = Framer::new(DEFAULT_PDU_LEN_MAX);
            let frames = all_frames(&mut framer, &bytes);
            assert_eq!(frames.len(), 1, "nothing after a framing loss decodes");
            let err = frames[0].as_ref().expect_err("fatal");
            assert_eq!(err.error, expected);
            let reply = err.reply().expect("nack");
            assert_eq!(
                (
                    reply.command_id,
                    reply.status,
                    reply.sequence_number,
                    reply.close
                ),
                (
                    CommandId::GenericNack,
                    CommandStatus::EsmeRinvcmdlen,
                    77,
                    true
                )
            );
            assert!(framer.is_lost());
            assert!(all_frames(&mut framer, &encode(79, &Pdu::EnquireLink)).is_empty());
            assert!(framer.buffer_capacity() <= DEFAULT_PDU_LEN_MAX as usize);
        }
    }

    #[test]
    fn error_response_without_body_is_accepted() {
        let bytes = encode_header_only(CommandId::SubmitSmResp, CommandStatus::EsmeRthrottled, 5);
        let mut framer = Framer::new(DEFAULT_PDU_LEN_MAX);
        let frames = all_frames(&mut framer, &bytes);
        let frame = frames[0].as_ref().expect("decodes");
        assert_eq!(frame.header.command_status, CommandStatus::EsmeRthrottled);
        assert_eq!(frame.body, None);
    }

    #[test]
    fn encode_refuses_pdus_above_the_limit() {
        let big = submit_sm("1", "2", &[b'x'; 200]);
        assert!(matches!(
            encode_pdu(CommandStatus::EsmeRok, 1, &big, 64),
            Err(EncodeError::TooLong {
                pdu_len_max: 64,
                ..
            })
        ));
        assert!(encode_pdu(CommandStatus::EsmeRok, 1, &big, DEFAULT_PDU_LEN_MAX).is_ok());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic_nor_overbuffer(
            data in proptest::collection::vec(any::<u8>(), 0..4096),
            chunk in 1usize..300,
            max in 16u32..2048,
        ) {
            let mut framer = Framer::new(max);
            for piece in data.chunks(chunk) {
                let mut input = piece;
                while let Some(_f) = framer.next_frame(&mut input) {
                    prop_assert!(framer.buffered_len() <= max as usize);
                }
                prop_assert!(input.is_empty());
                prop_assert!(framer.buffered_len() <= max as usize);
                prop_assert!(framer.buffer_capacity() <= max as usize);
            }
        }

        #[test]
        fn valid_stream_decodes_the_same_however_it_is_split(
            texts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..8),
            cuts in proptest::collection::vec(1usize..64, 1..40),
        ) {
            let pdus: Vec<Pdu> = texts.iter().map(|t| submit_sm("79161234567", "929", t)).collect();
            let mut wire = Vec::new();
            for (i, p) in pdus.iter().enumerate() {
                wire.extend(encode(i as u32 + 1, p));
            }
            let mut framer = Framer::new(DEFAULT_PDU_LEN_MAX);
            let mut got = Vec::new();
            let mut rest = wire.as_slice();
            let mut cut = cuts.iter().cycle();
            while !rest.is_empty() {
                let n = (*cut.next().unwrap_or(&1)).min(rest.len());
                let (piece, tail) = rest.split_at(n);
                rest = tail;
                let mut input = piece;
                while let Some(f) = framer.next_frame(&mut input) {
                    let f = f.map_err(|e| TestCaseError::fail(e.error.to_string()))?;
                    got.push(f.body);
                }
            }
            let expected: Vec<Option<Pdu>> = pdus.into_iter().map(Some).collect();
            prop_assert_eq!(got, expected);
        }
    }
}

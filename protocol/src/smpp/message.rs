//! The gateway's view of message PDUs, so it never handles rusmpp types for
//! MO traffic: [`MoMessage`] reads a submit_sm / deliver_sm / data_sm,
//! [`MtMessage`] builds one (typically the answer to an MO, USSD TLVs
//! echoed), and [`submit_sm_resp`] & co. build response bodies.
//!
//! Text encoding, segmentation and MSISDN normalisation are not here (see
//! the crate's `gsm7`, `ucs2`, `segment`, `msisdn` modules): this layer
//! moves octets and numbers in and out of SMPP fields.

use rusmpp::pdus::{DataSm, DataSmResp, DeliverSm, DeliverSmResp, SubmitSm, SubmitSmResp};
use rusmpp::tlvs::{
    MessageDeliveryRequestTlvValue as DeliveryTlv,
    MessageSubmissionRequestTlvValue as SubmissionTlv, Tlv, TlvTag, TlvValue,
};
use rusmpp::types::{AnyOctetString, COctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, ItsSessionInfo, MessagePayload, Npi, RegisteredDelivery, ServiceType,
    Ton, UserMessageReference, UssdServiceOp,
};
use rusmpp::{CommandId, Pdu};

use super::error::{BuildError, MoError};

/// ussd_service_op values (SMPP 3.4 §5.3.2.44).
pub mod ussd_service_op {
    /// PSSD indication.
    pub const PSSD_INDICATION: u8 = 0;
    /// PSSR indication: the subscriber dialled a USSD string (`*929#`).
    pub const PSSR_INDICATION: u8 = 1;
    /// USSR request.
    pub const USSR_REQUEST: u8 = 2;
    /// USSN request.
    pub const USSN_REQUEST: u8 = 3;
    /// PSSD response.
    pub const PSSD_RESPONSE: u8 = 16;
    /// PSSR response: the final answer that closes the USSD dialogue.
    pub const PSSR_RESPONSE: u8 = 17;
    /// USSR confirm.
    pub const USSR_CONFIRM: u8 = 18;
    /// USSN confirm.
    pub const USSN_CONFIRM: u8 = 19;
}

/// esm_class bit 6: the short message starts with a user data header.
pub const ESM_CLASS_UDHI: u8 = 0x40;

/// Longest short_message in octets (sm_length is 0..=254).
pub const SHORT_MESSAGE_LEN_MAX: usize = 254;

/// Which PDU a message came in or goes out as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageCommand {
    /// submit_sm.
    SubmitSm,
    /// deliver_sm.
    DeliverSm,
    /// data_sm.
    DataSm,
}

/// Where the message octets travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadField {
    /// The short_message field (at most 254 octets).
    #[default]
    ShortMessage,
    /// The message_payload TLV (at most 65 535 octets; data_sm always).
    MessagePayload,
}

/// SAR concatenation TLVs: sar_msg_ref_num, sar_total_segments,
/// sar_segment_seqnum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sar {
    /// Reference shared by all segments.
    pub msg_ref_num: u16,
    /// Number of segments (1..=255).
    pub total_segments: u8,
    /// This segment, 1-based.
    pub segment_seqnum: u8,
}

/// The kind of receipt an esm_class announces (bits 5–2, the message type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    /// 0x04: MC (SMSC) delivery receipt.
    McDeliveryReceipt,
    /// 0x08: SME delivery acknowledgement.
    SmeDeliveryAck,
    /// 0x10: SME manual/user acknowledgement.
    SmeManualAck,
    /// 0x20: intermediate delivery notification.
    IntermediateNotification,
}

/// An incoming message, read from submit_sm, deliver_sm or data_sm.
///
/// Addresses stay as sent (with TON/NPI) for the MSISDN normaliser; octets
/// stay undecoded with their data_coding for the text codecs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoMessage {
    /// The PDU it came in.
    pub command: MessageCommand,
    /// service_type ("" or e.g. "USSD").
    pub service_type: String,
    /// source_addr (the subscriber, for MO).
    pub source_addr: String,
    /// source_addr_ton.
    pub source_ton: u8,
    /// source_addr_npi.
    pub source_npi: u8,
    /// destination_addr (the short code, for MO).
    pub dest_addr: String,
    /// dest_addr_ton.
    pub dest_ton: u8,
    /// dest_addr_npi.
    pub dest_npi: u8,
    /// esm_class, raw.
    pub esm_class: u8,
    /// protocol_id (0 for data_sm, which has none).
    pub protocol_id: u8,
    /// registered_delivery, raw.
    pub registered_delivery: u8,
    /// data_coding, raw.
    pub data_coding: u8,
    /// The message octets, from short_message or message_payload.
    pub payload: Vec<u8>,
    /// Which field `payload` came from.
    pub payload_field: PayloadField,
    /// ussd_service_op TLV.
    pub ussd_service_op: Option<u8>,
    /// its_session_info TLV as a big-endian u16: high octet session
    /// number, low octet sequence number (bit 0 = end of session).
    pub its_session_info: Option<u16>,
    /// user_message_reference TLV.
    pub user_message_reference: Option<u16>,
    /// sar_* TLVs, all three or none.
    pub sar: Option<Sar>,
    /// receipted_message_id TLV (receipts).
    pub receipted_message_id: Option<String>,
    /// message_state TLV (receipts).
    pub message_state: Option<u8>,
}

impl MoMessage {
    /// Reads a submit_sm, deliver_sm or data_sm. Fails on any other PDU and
    /// on contradictions the answer must report (see [`MoError`] and its
    /// `CommandStatus` mapping).
    pub fn from_pdu(pdu: &Pdu) -> Result<Self, MoError> {
        let mut mo = match pdu {
            Pdu::SubmitSm(p) => Self::base(
                MessageCommand::SubmitSm,
                (
                    &p.service_type,
                    p.source_addr_ton,
                    p.source_addr_npi,
                    p.source_addr.as_str(),
                ),
                (
                    p.dest_addr_ton,
                    p.dest_addr_npi,
                    p.destination_addr.as_str(),
                ),
                (
                    p.esm_class,
                    p.protocol_id,
                    p.registered_delivery,
                    p.data_coding,
                ),
                p.short_message(),
            ),
            Pdu::DeliverSm(p) => Self::base(
                MessageCommand::DeliverSm,
                (
                    &p.service_type,
                    p.source_addr_ton,
                    p.source_addr_npi,
                    p.source_addr.as_str(),
                ),
                (
                    p.dest_addr_ton,
                    p.dest_addr_npi,
                    p.destination_addr.as_str(),
                ),
                (
                    p.esm_class,
                    p.protocol_id,
                    p.registered_delivery,
                    p.data_coding,
                ),
                p.short_message(),
            ),
            Pdu::DataSm(p) => Self::base(
                MessageCommand::DataSm,
                (
                    &p.service_type,
                    p.source_addr_ton,
                    p.source_addr_npi,
                    p.source_addr.as_str(),
                ),
                (
                    p.dest_addr_ton,
                    p.dest_addr_npi,
                    p.destination_addr.as_str(),
                ),
                (p.esm_class, 0, p.registered_delivery, p.data_coding),
                &OctetString::empty(),
            ),
            other => {
                return Err(MoError::NotAMessage {
                    command_id: other.command_id(),
                })
            }
        };
        let tlvs: &[Tlv] = match pdu {
            Pdu::SubmitSm(p) => p.tlvs(),
            Pdu::DeliverSm(p) => p.tlvs(),
            Pdu::DataSm(p) => p.tlvs(),
            _ => &[],
        };
        mo.read_tlvs(tlvs)?;
        Ok(mo)
    }

    fn base(
        command: MessageCommand,
        (service_type, source_ton, source_npi, source_addr): (&ServiceType, Ton, Npi, &str),
        (dest_ton, dest_npi, dest_addr): (Ton, Npi, &str),
        (esm_class, protocol_id, registered_delivery, data_coding): (
            EsmClass,
            u8,
            RegisteredDelivery,
            DataCoding,
        ),
        short_message: &OctetString<0, 255>,
    ) -> Self {
        Self {
            command,
            service_type: service_type.value().as_str().to_owned(),
            source_addr: source_addr.to_owned(),
            source_ton: u8::from(source_ton),
            source_npi: u8::from(source_npi),
            dest_addr: dest_addr.to_owned(),
            dest_ton: u8::from(dest_ton),
            dest_npi: u8::from(dest_npi),
            esm_class: u8::from(esm_class),
            protocol_id,
            registered_delivery: u8::from(registered_delivery),
            data_coding: u8::from(data_coding),
            payload: short_message.to_vec(),
            payload_field: PayloadField::ShortMessage,
            ussd_service_op: None,
            its_session_info: None,
            user_message_reference: None,
            sar: None,
            receipted_message_id: None,
            message_state: None,
        }
    }

    fn read_tlvs(&mut self, tlvs: &[Tlv]) -> Result<(), MoError> {
        let (mut ref_num, mut total, mut seqnum) = (None, None, None);
        let mut payload = None;
        for tlv in tlvs {
            let tag = u16::from(tlv.tag());
            // A zero-length TLV carries no value: treated as absent.
            match tlv.value() {
                Some(TlvValue::UssdServiceOp(op)) => {
                    set_once(&mut self.ussd_service_op, u8::from(*op), tag)?
                }
                Some(TlvValue::ItsSessionInfo(info)) => set_once(
                    &mut self.its_session_info,
                    u16::from_be_bytes([info.session_number, info.sequence_number]),
                    tag,
                )?,
                Some(TlvValue::UserMessageReference(r)) => {
                    set_once(&mut self.user_message_reference, r.value, tag)?
                }
                Some(TlvValue::SarMsgRefNum(n)) => set_once(&mut ref_num, *n, tag)?,
                Some(TlvValue::SarTotalSegments(n)) => set_once(&mut total, *n, tag)?,
                Some(TlvValue::SarSegmentSeqnum(n)) => set_once(&mut seqnum, *n, tag)?,
                Some(TlvValue::MessagePayload(p)) => set_once(&mut payload, p.value.to_vec(), tag)?,
                Some(TlvValue::ReceiptedMessageId(id)) => {
                    set_once(&mut self.receipted_message_id, id.as_str().to_owned(), tag)?
                }
                Some(TlvValue::MessageState(s)) => {
                    set_once(&mut self.message_state, u8::from(*s), tag)?
                }
                _ => {}
            }
        }
        self.sar = match (ref_num, total, seqnum) {
            (None, None, None) => None,
            (Some(msg_ref_num), Some(total_segments), Some(segment_seqnum)) => {
                if total_segments == 0 || segment_seqnum == 0 || segment_seqnum > total_segments {
                    return Err(MoError::InvalidSar {
                        total_segments,
                        segment_seqnum,
                    });
                }
                Some(Sar {
                    msg_ref_num,
                    total_segments,
                    segment_seqnum,
                })
            }
            _ => return Err(MoError::IncompleteSar),
        };
        if let Some(payload) = payload {
            if !self.payload.is_empty() {
                return Err(MoError::DuplicatePayload {
                    sm_len: self.payload.len(),
                });
            }
            self.payload = payload;
            self.payload_field = PayloadField::MessagePayload;
        }
        Ok(())
    }

    /// The receipt type announced by esm_class bits 5–2, if any.
    pub fn receipt_kind(&self) -> Option<ReceiptKind> {
        match self.esm_class & 0x3C {
            0x04 => Some(ReceiptKind::McDeliveryReceipt),
            0x08 => Some(ReceiptKind::SmeDeliveryAck),
            0x10 => Some(ReceiptKind::SmeManualAck),
            0x20 => Some(ReceiptKind::IntermediateNotification),
            _ => None,
        }
    }

    /// True for delivery receipts, acknowledgements and intermediate
    /// notifications: not a subscriber's request, never a renewal.
    pub fn is_delivery_receipt(&self) -> bool {
        self.receipt_kind().is_some()
    }

    /// True when `payload` starts with a user data header (esm_class UDHI).
    pub fn has_udh(&self) -> bool {
        self.esm_class & ESM_CLASS_UDHI != 0
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, tag: u16) -> Result<(), MoError> {
    if slot.is_some() {
        return Err(MoError::DuplicateTlv { tag });
    }
    *slot = Some(value);
    Ok(())
}

/// An outgoing message: built field by field or as [`reply_to`](Self::reply_to)
/// an MO, then turned into a submit_sm, deliver_sm or data_sm.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MtMessage {
    /// service_type (at most 5 characters).
    pub service_type: String,
    /// source_addr (at most 20 characters).
    pub source_addr: String,
    /// source_addr_ton.
    pub source_ton: u8,
    /// source_addr_npi.
    pub source_npi: u8,
    /// destination_addr (at most 20 characters).
    pub dest_addr: String,
    /// dest_addr_ton.
    pub dest_ton: u8,
    /// dest_addr_npi.
    pub dest_npi: u8,
    /// esm_class, raw (set [`ESM_CLASS_UDHI`] when `payload` has a UDH).
    pub esm_class: u8,
    /// registered_delivery, raw (0: no receipt).
    pub registered_delivery: u8,
    /// data_coding, raw.
    pub data_coding: u8,
    /// The message octets.
    pub payload: Vec<u8>,
    /// Where `payload` goes (data_sm always uses message_payload).
    pub payload_field: PayloadField,
    /// ussd_service_op TLV.
    pub ussd_service_op: Option<u8>,
    /// its_session_info TLV (big-endian u16 as in [`MoMessage`]).
    pub its_session_info: Option<u16>,
    /// user_message_reference TLV.
    pub user_message_reference: Option<u16>,
    /// sar_* TLVs.
    pub sar: Option<Sar>,
    /// receipted_message_id TLV (at most 64 characters).
    pub receipted_message_id: Option<String>,
}

impl MtMessage {
    /// The answer to `mo`: addresses swapped, service_type,
    /// its_session_info and user_message_reference echoed (USSD gateways
    /// route the answer into the dialogue by them), and a PSSR indication
    /// answered as PSSR response (17), which ends the dialogue. Other
    /// ussd_service_op values are not mapped: set the field yourself. Text
    /// is left empty: set `data_coding` and `payload`.
    pub fn reply_to(mo: &MoMessage) -> Self {
        Self {
            service_type: mo.service_type.clone(),
            source_addr: mo.dest_addr.clone(),
            source_ton: mo.dest_ton,
            source_npi: mo.dest_npi,
            dest_addr: mo.source_addr.clone(),
            dest_ton: mo.source_ton,
            dest_npi: mo.source_npi,
            ussd_service_op: match mo.ussd_service_op {
                Some(ussd_service_op::PSSR_INDICATION) => Some(ussd_service_op::PSSR_RESPONSE),
                _ => None,
            },
            its_session_info: mo.its_session_info,
            user_message_reference: mo.user_message_reference,
            ..Self::default()
        }
    }

    /// Sets the text octets and their data_coding.
    pub fn with_payload(mut self, data_coding: u8, payload: Vec<u8>) -> Self {
        self.data_coding = data_coding;
        self.payload = payload;
        self
    }

    /// Sets the end-of-session bit (bit 0 of its_session_info's low octet),
    /// for USSD gateways that want it on the final answer.
    pub fn end_of_session(mut self) -> Self {
        self.its_session_info = self.its_session_info.map(|v| v | 1);
        self
    }

    /// As a submit_sm (ESME → MC).
    pub fn to_submit_sm(&self) -> Result<Pdu, BuildError> {
        let f = self.fields()?;
        let mut sm = SubmitSm::builder()
            .service_type(f.service_type)
            .source_addr_ton(Ton::from(self.source_ton))
            .source_addr_npi(Npi::from(self.source_npi))
            .source_addr(f.source_addr)
            .dest_addr_ton(Ton::from(self.dest_ton))
            .dest_addr_npi(Npi::from(self.dest_npi))
            .destination_addr(f.dest_addr)
            // Always explicit: rusmpp's EsmClass::default() encodes 0x08.
            .esm_class(EsmClass::from(self.esm_class))
            .registered_delivery(RegisteredDelivery::from(self.registered_delivery))
            .data_coding(DataCoding::from(self.data_coding))
            .short_message(f.short_message)
            .build();
        for tlv in self.tlvs()? {
            sm.push_tlv(SubmissionTlv::from(tlv));
        }
        Ok(Pdu::SubmitSm(sm))
    }

    /// As a deliver_sm (MC → ESME).
    pub fn to_deliver_sm(&self) -> Result<Pdu, BuildError> {
        let f = self.fields()?;
        let mut sm = DeliverSm::builder()
            .service_type(f.service_type)
            .source_addr_ton(Ton::from(self.source_ton))
            .source_addr_npi(Npi::from(self.source_npi))
            .source_addr(f.source_addr)
            .dest_addr_ton(Ton::from(self.dest_ton))
            .dest_addr_npi(Npi::from(self.dest_npi))
            .destination_addr(f.dest_addr)
            .esm_class(EsmClass::from(self.esm_class))
            .registered_delivery(RegisteredDelivery::from(self.registered_delivery))
            .data_coding(DataCoding::from(self.data_coding))
            .short_message(f.short_message)
            .build();
        for tlv in self.tlvs()? {
            sm.push_tlv(DeliveryTlv::from(tlv));
        }
        Ok(Pdu::DeliverSm(sm))
    }

    /// As a data_sm (either direction); the payload always goes in
    /// message_payload, data_sm has no short_message.
    pub fn to_data_sm(&self) -> Result<Pdu, BuildError> {
        let as_payload = Self {
            payload_field: PayloadField::MessagePayload,
            ..self.clone()
        };
        let f = as_payload.fields()?;
        let tlvs = as_payload
            .tlvs()?
            .into_iter()
            .map(SubmissionTlv::from)
            .collect();
        Ok(Pdu::DataSm(DataSm::new(
            f.service_type,
            Ton::from(self.source_ton),
            Npi::from(self.source_npi),
            f.source_addr,
            Ton::from(self.dest_ton),
            Npi::from(self.dest_npi),
            f.dest_addr,
            EsmClass::from(self.esm_class),
            RegisteredDelivery::from(self.registered_delivery),
            DataCoding::from(self.data_coding),
            tlvs,
        )))
    }

    fn fields(&self) -> Result<Fields, BuildError> {
        let short_message = match self.payload_field {
            PayloadField::MessagePayload => OctetString::empty(),
            PayloadField::ShortMessage => {
                if self.payload.len() > SHORT_MESSAGE_LEN_MAX {
                    return Err(BuildError::ShortMessageTooLong {
                        len: self.payload.len(),
                    });
                }
                OctetString::from_vec(self.payload.clone()).map_err(|_| {
                    BuildError::ShortMessageTooLong {
                        len: self.payload.len(),
                    }
                })?
            }
        };
        Ok(Fields {
            service_type: ServiceType::new(c_string::<6>("service_type", &self.service_type)?),
            source_addr: c_string::<21>("source_addr", &self.source_addr)?,
            dest_addr: c_string::<21>("destination_addr", &self.dest_addr)?,
            short_message,
        })
    }

    /// The TLVs as the common superset; converted per PDU by the callers.
    fn tlvs(&self) -> Result<Vec<MtTlv>, BuildError> {
        let mut tlvs = Vec::new();
        if let Some(op) = self.ussd_service_op {
            tlvs.push(MtTlv::UssdServiceOp(UssdServiceOp::from(op)));
        }
        if let Some(info) = self.its_session_info {
            let [session_number, sequence_number] = info.to_be_bytes();
            tlvs.push(MtTlv::ItsSessionInfo(ItsSessionInfo::new(
                session_number,
                sequence_number,
            )));
        }
        if let Some(r) = self.user_message_reference {
            tlvs.push(MtTlv::UserMessageReference(UserMessageReference::new(r)));
        }
        if let Some(sar) = self.sar {
            tlvs.push(MtTlv::SarMsgRefNum(sar.msg_ref_num));
            tlvs.push(MtTlv::SarTotalSegments(sar.total_segments));
            tlvs.push(MtTlv::SarSegmentSeqnum(sar.segment_seqnum));
        }
        if self.payload_field == PayloadField::MessagePayload {
            if self.payload.len() > usize::from(u16::MAX) {
                return Err(BuildError::PayloadTooLong {
                    len: self.payload.len(),
                });
            }
            tlvs.push(MtTlv::MessagePayload(MessagePayload::new(
                AnyOctetString::from_vec(self.payload.clone()),
            )));
        }
        if let Some(id) = &self.receipted_message_id {
            tlvs.push(MtTlv::ReceiptedMessageId(c_string::<65>(
                "receipted_message_id",
                id,
            )?));
        }
        Ok(tlvs)
    }
}

struct Fields {
    service_type: ServiceType,
    source_addr: COctetString<1, 21>,
    dest_addr: COctetString<1, 21>,
    short_message: OctetString<0, 255>,
}

/// The TLVs we build, before conversion into rusmpp's per-PDU TLV enums.
enum MtTlv {
    UssdServiceOp(UssdServiceOp),
    ItsSessionInfo(ItsSessionInfo),
    UserMessageReference(UserMessageReference),
    SarMsgRefNum(u16),
    SarTotalSegments(u8),
    SarSegmentSeqnum(u8),
    MessagePayload(MessagePayload),
    ReceiptedMessageId(COctetString<1, 65>),
}

impl From<MtTlv> for SubmissionTlv {
    fn from(tlv: MtTlv) -> Self {
        match tlv {
            MtTlv::UssdServiceOp(v) => Self::UssdServiceOp(v),
            MtTlv::ItsSessionInfo(v) => Self::ItsSessionInfo(v),
            MtTlv::UserMessageReference(v) => Self::UserMessageReference(v),
            MtTlv::SarMsgRefNum(v) => Self::SarMsgRefNum(v),
            MtTlv::SarTotalSegments(v) => Self::SarTotalSegments(v),
            MtTlv::SarSegmentSeqnum(v) => Self::SarSegmentSeqnum(v),
            MtTlv::MessagePayload(v) => Self::MessagePayload(v),
            // rusmpp's submission TLV set lacks receipted_message_id (data_sm
            // may carry it); the raw form encodes the same octets.
            MtTlv::ReceiptedMessageId(v) => Self::Other {
                tag: TlvTag::ReceiptedMessageId,
                value: AnyOctetString::from_vec(v.into_vec()),
            },
        }
    }
}

impl From<MtTlv> for DeliveryTlv {
    fn from(tlv: MtTlv) -> Self {
        match tlv {
            MtTlv::UssdServiceOp(v) => Self::UssdServiceOp(v),
            MtTlv::ItsSessionInfo(v) => Self::ItsSessionInfo(v),
            MtTlv::UserMessageReference(v) => Self::UserMessageReference(v),
            MtTlv::SarMsgRefNum(v) => Self::SarMsgRefNum(v),
            MtTlv::SarTotalSegments(v) => Self::SarTotalSegments(v),
            MtTlv::SarSegmentSeqnum(v) => Self::SarSegmentSeqnum(v),
            MtTlv::MessagePayload(v) => Self::MessagePayload(v),
            MtTlv::ReceiptedMessageId(v) => Self::ReceiptedMessageId(v),
        }
    }
}

/// A C-Octet String of at most `MAX - 1` characters plus NUL.
fn c_string<const MAX: usize>(
    field: &'static str,
    value: &str,
) -> Result<COctetString<1, MAX>, BuildError> {
    let mut bytes = value.as_bytes().to_vec();
    bytes.push(0);
    COctetString::from_vec(bytes).map_err(|_| BuildError::InvalidString {
        field,
        max: MAX - 1,
    })
}

/// submit_sm_resp body carrying our message_id (at most 64 characters).
pub fn submit_sm_resp(message_id: &str) -> Result<Pdu, BuildError> {
    Ok(Pdu::SubmitSmResp(SubmitSmResp::new(
        c_string::<65>("message_id", message_id)?,
        Vec::new(),
    )))
}

/// deliver_sm_resp body (message_id is unused there and sent empty).
pub fn deliver_sm_resp() -> Pdu {
    Pdu::DeliverSmResp(DeliverSmResp::default())
}

/// data_sm_resp body carrying our message_id (at most 64 characters).
pub fn data_sm_resp(message_id: &str) -> Result<Pdu, BuildError> {
    Ok(Pdu::DataSmResp(DataSmResp::new(
        c_string::<65>("message_id", message_id)?,
        Vec::new(),
    )))
}

/// The message_id of a submit_sm_resp / data_sm_resp / deliver_sm_resp.
pub fn response_message_id(pdu: &Pdu) -> Option<&str> {
    match pdu {
        Pdu::SubmitSmResp(p) => Some(p.message_id().as_str()),
        Pdu::DataSmResp(p) => Some(p.message_id().as_str()),
        Pdu::DeliverSmResp(p) => Some(p.message_id().as_str()),
        _ => None,
    }
}

/// The command a message PDU is, for logs.
impl From<MessageCommand> for CommandId {
    fn from(command: MessageCommand) -> Self {
        match command {
            MessageCommand::SubmitSm => CommandId::SubmitSm,
            MessageCommand::DeliverSm => CommandId::DeliverSm,
            MessageCommand::DataSm => CommandId::DataSm,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smpp::framing::Framer;
    use crate::smpp::test_util::*;
    use rusmpp::CommandStatus;

    /// Encodes and decodes through our framer: what the peer would read.
    fn over_the_wire(pdu: &Pdu) -> (Vec<u8>, Pdu) {
        let bytes = encode(1, pdu);
        let mut framer = Framer::new(u32::MAX);
        let mut input = bytes.as_slice();
        let frame = framer
            .next_frame(&mut input)
            .expect("one frame")
            .expect("decodes");
        (bytes, frame.body.expect("has body"))
    }

    #[test]
    fn receipts_are_recognised_by_esm_class() {
        let rows = [
            (0x00, None),
            (0x04, Some(ReceiptKind::McDeliveryReceipt)),
            (0x08, Some(ReceiptKind::SmeDeliveryAck)),
            (0x10, Some(ReceiptKind::SmeManualAck)),
            (0x20, Some(ReceiptKind::IntermediateNotification)),
            (0x18, None), // conversation abort
            (0x40, None), // UDHI only
            (0x44, Some(ReceiptKind::McDeliveryReceipt)),
        ];
        for (esm_class, kind) in rows {
            let pdu = MtMessage {
                esm_class,
                ..mt("79161234567", "929", b"x")
            }
            .to_deliver_sm()
            .unwrap();
            let mo = MoMessage::from_pdu(&over_the_wire(&pdu).1).unwrap();
            assert_eq!(mo.esm_class, esm_class);
            assert_eq!(mo.receipt_kind(), kind, "esm_class {esm_class:#04x}");
            assert_eq!(
                mo.is_delivery_receipt(),
                kind.is_some(),
                "esm_class {esm_class:#04x}"
            );
        }
    }

    #[test]
    fn built_pdus_carry_esm_class_zero_not_rusmpps_default() {
        // Octet 39 of this submit_sm is esm_class (16 header + service_type 1
        // + ton/npi 2 + "79161234567\0" 12 + ton/npi 2 + "929\0" 4 = 37, and
        // esm_class follows destination_addr).
        let (bytes, _) = over_the_wire(&submit_sm("79161234567", "929", b"x"));
        assert_eq!(bytes[16 + 1 + 2 + 12 + 2 + 4], 0x00);
    }

    #[test]
    fn reply_to_a_pssr_indication_is_a_pssr_response_in_the_same_session() {
        let mo = MoMessage::from_pdu(
            &MtMessage {
                service_type: "USSD".into(),
                ussd_service_op: Some(ussd_service_op::PSSR_INDICATION),
                its_session_info: Some(0x0A02),
                user_message_reference: Some(99),
                ..mt("79161234567", "*929#", b"*929#")
            }
            .to_deliver_sm()
            .unwrap(),
        )
        .unwrap();
        let reply = MtMessage::reply_to(&mo).with_payload(0, b"OK".to_vec());
        for pdu in [
            reply.to_submit_sm().unwrap(),
            reply.to_deliver_sm().unwrap(),
            reply.to_data_sm().unwrap(),
        ] {
            let back = MoMessage::from_pdu(&over_the_wire(&pdu).1).unwrap();
            assert_eq!(back.ussd_service_op, Some(ussd_service_op::PSSR_RESPONSE));
            assert_eq!(back.its_session_info, Some(0x0A02));
            assert_eq!(back.user_message_reference, Some(99));
            assert_eq!((back.source_addr.as_str(), back.source_ton), ("*929#", 3));
            assert_eq!(
                (back.dest_addr.as_str(), back.dest_ton, back.dest_npi),
                ("79161234567", 1, 1)
            );
            assert_eq!(
                (back.service_type.as_str(), back.payload.as_slice()),
                ("USSD", &b"OK"[..])
            );
        }
        assert_eq!(
            MtMessage::reply_to(&mo).end_of_session().its_session_info,
            Some(0x0A03)
        );
    }

    #[test]
    fn long_text_goes_in_message_payload_with_sar() {
        let text = vec![b'a'; 600];
        let sar = Sar {
            msg_ref_num: 0xBEEF,
            total_segments: 3,
            segment_seqnum: 2,
        };
        let msg = MtMessage {
            payload_field: PayloadField::MessagePayload,
            sar: Some(sar),
            receipted_message_id: Some("r-1".into()),
            ..mt("929", "79161234567", &text)
        };
        for pdu in [
            msg.to_submit_sm().unwrap(),
            msg.to_deliver_sm().unwrap(),
            msg.to_data_sm().unwrap(),
        ] {
            let mo = MoMessage::from_pdu(&over_the_wire(&pdu).1).unwrap();
            assert_eq!(
                (mo.payload.len(), mo.payload_field),
                (600, PayloadField::MessagePayload)
            );
            assert_eq!(mo.sar, Some(sar));
            assert_eq!(mo.receipted_message_id.as_deref(), Some("r-1"));
        }
        assert_eq!(
            MtMessage {
                payload_field: PayloadField::ShortMessage,
                ..msg
            }
            .to_submit_sm(),
            Err(BuildError::ShortMessageTooLong { len: 600 })
        );
    }

    /// One row per MO that cannot be read: the error and the status the
    /// request is answered with.
    #[test]
    fn unreadable_mo_messages_map_to_statuses() {
        let mut both = submit_sm("79161234567", "929", b"sm");
        if let Pdu::SubmitSm(sm) = &mut both {
            sm.push_tlv(SubmissionTlv::MessagePayload(MessagePayload::new(
                AnyOctetString::from_vec(b"payload".to_vec()),
            )));
        }
        let mut half_sar = submit_sm("79161234567", "929", b"x");
        if let Pdu::SubmitSm(sm) = &mut half_sar {
            sm.push_tlv(SubmissionTlv::SarMsgRefNum(1));
        }
        let mut twice = submit_sm("79161234567", "929", b"x");
        if let Pdu::SubmitSm(sm) = &mut twice {
            sm.push_tlv(SubmissionTlv::UssdServiceOp(UssdServiceOp::from(1)));
            sm.push_tlv(SubmissionTlv::UssdServiceOp(UssdServiceOp::from(17)));
        }
        let bad_sar = MtMessage {
            sar: Some(Sar {
                msg_ref_num: 1,
                total_segments: 2,
                segment_seqnum: 3,
            }),
            ..mt("79161234567", "929", b"x")
        }
        .to_submit_sm()
        .unwrap();
        let rows = [
            (
                both,
                MoError::DuplicatePayload { sm_len: 2 },
                CommandStatus::EsmeRinvmsglen,
            ),
            (
                half_sar,
                MoError::IncompleteSar,
                CommandStatus::EsmeRmissingtlv,
            ),
            (
                twice,
                MoError::DuplicateTlv { tag: 0x0501 },
                CommandStatus::EsmeRinvtlvstream,
            ),
            (
                bad_sar,
                MoError::InvalidSar {
                    total_segments: 2,
                    segment_seqnum: 3,
                },
                CommandStatus::EsmeRinvtlvval,
            ),
            (
                Pdu::EnquireLink,
                MoError::NotAMessage {
                    command_id: CommandId::EnquireLink,
                },
                CommandStatus::EsmeRinvcmdid,
            ),
        ];
        for (pdu, error, status) in rows {
            let got = MoMessage::from_pdu(&over_the_wire(&pdu).1).unwrap_err();
            assert_eq!(got, error);
            assert_eq!(CommandStatus::from(got), status);
        }
    }

    #[test]
    fn fields_that_do_not_fit_are_refused() {
        let rows = [
            (
                MtMessage {
                    dest_addr: "1".repeat(21),
                    ..MtMessage::default()
                },
                BuildError::InvalidString {
                    field: "destination_addr",
                    max: 20,
                },
            ),
            (
                MtMessage {
                    source_addr: "Обнови".into(),
                    ..MtMessage::default()
                },
                BuildError::InvalidString {
                    field: "source_addr",
                    max: 20,
                },
            ),
            (
                MtMessage {
                    service_type: "USSD12".into(),
                    ..MtMessage::default()
                },
                BuildError::InvalidString {
                    field: "service_type",
                    max: 5,
                },
            ),
            (
                MtMessage {
                    payload: vec![0; 255],
                    ..MtMessage::default()
                },
                BuildError::ShortMessageTooLong { len: 255 },
            ),
            (
                MtMessage {
                    payload: vec![0; 65_536],
                    payload_field: PayloadField::MessagePayload,
                    ..MtMessage::default()
                },
                BuildError::PayloadTooLong { len: 65_536 },
            ),
        ];
        for (msg, error) in rows {
            assert_eq!(msg.to_submit_sm(), Err(error));
        }
        assert_eq!(
            submit_sm_resp(&"x".repeat(65)),
            Err(BuildError::InvalidString {
                field: "message_id",
                max: 64
            })
        );
        assert_eq!(
            data_sm_resp("id")
                .ok()
                .as_ref()
                .and_then(response_message_id),
            Some("id")
        );
    }
}

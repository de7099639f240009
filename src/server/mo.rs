//! What an incoming message asks of the gateway (channels C1–C5, G4).
//!
//! [`Routing::classify`] turns one MO (submit_sm, deliver_sm or data_sm,
//! already read by the protocol crate) into an [`MoAction`]: a status to
//! answer at once (receipts, parts of a longer SMS, bad addresses), or an
//! engine request to commit first. It holds the reassembly buffer for
//! concatenated SMS but does no IO.
//!
//! Decisions:
//! - Only the configured code itself renews: `*929*1#` is another string
//!   and gets the unknown-command answer (C3); surrounding spaces are fine.
//! - A USSD request is an MO with `ussd_service_op` 1 (PSSR indication), or
//!   with no `ussd_service_op` and service_type "USSD". Other operations
//!   (a USSR confirm, a PSSD) are acknowledged and otherwise ignored.
//! - An SMS renews when its destination is the short number (any content,
//!   any data_coding, C2); an SMS to another number gets ESME_RINVDSTADR.
//! - Parts of a concatenated SMS (UDH or sar_* TLVs) are acknowledged as
//!   they arrive and buffered; the part that completes the message is the
//!   one request, answered after the commit like any other. A message whose
//!   parts stop coming is, after the reassembly timeout, taken as the text
//!   that did arrive, decoded with the data_coding its first part came in:
//!   any SMS to the short number renews, and no request is
//!   lost without a trace (G5).
//! - A malformed UDH does not refuse the SMS: the octets are taken as text.
//! - Delivery receipts and intermediate notifications (esm_class, or a
//!   `receipted_message_id`) are never requests: they are acknowledged and
//!   logged with the MT's message id and state.
//! - G4's dedup key is channel, subscriber, content and the PDU's
//!   references (its_session_info, user_message_reference, the
//!   concatenation reference). A repeat with no reference inside the window
//!   is taken as a retransmission: never charging twice is the safe side.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use shortcode_protocol::msisdn;
use shortcode_protocol::segment::{self, ConcatKey, Reassembler, ReassemblyLimits};
use shortcode_protocol::smpp::{ussd_service_op, CommandStatus, MoMessage};
use shortcode_protocol::text;
use shortcode_protocol::ussd::{Routed, UssdRouter};

use crate::config::ServiceConfig;
use crate::engine::model::Channel;
use crate::engine::Command;
use crate::gateway::Request;

/// What to do with one MO.
// One per MO, moved once: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum MoAction {
    /// Answer the PDU with this status now; nothing else happens.
    Respond(CommandStatus),
    /// A delivery receipt: acknowledge it and log the MT's new state.
    Receipt {
        message_id: Option<String>,
        state: Option<u8>,
    },
    /// Commit this engine request, then answer the PDU; for USSD, answer in
    /// the session with the reply (`ussd` is the MO to reply to).
    Engine {
        request: Request,
        ussd: Option<MoMessage>,
    },
}

/// Routing settings and the reassembly buffer, shared by all connections.
pub struct Routing {
    router: UssdRouter<()>,
    ussd_code: String,
    pub short_number: String,
    pub country_code: String,
    reassembler: Mutex<Reassembler>,
}

impl Routing {
    pub fn new(service: &ServiceConfig) -> Result<Routing, String> {
        let mut router = UssdRouter::new();
        for code in &service.ussd_codes {
            router.add(code, ()).map_err(|e| e.to_string())?;
        }
        Ok(Routing {
            router,
            ussd_code: service.ussd_codes.first().cloned().unwrap_or_default(),
            short_number: service.short_number.clone(),
            country_code: service.country_code.clone(),
            reassembler: Mutex::new(Reassembler::new(ReassemblyLimits::default())),
        })
    }

    /// The code named in the unknown-command answer.
    pub fn ussd_code(&self) -> &str {
        &self.ussd_code
    }

    /// Classify one MO. `now` is the engine's time of the request; `mono_ms`
    /// a monotonic clock for reassembly timeouts.
    pub fn classify(&self, mo: &MoMessage, now: DateTime<Utc>, mono_ms: u64) -> MoAction {
        if mo.is_delivery_receipt() || mo.receipted_message_id.is_some() {
            return MoAction::Receipt {
                message_id: mo.receipted_message_id.clone(),
                state: mo.message_state,
            };
        }
        let Ok(subscriber) = msisdn::normalize(
            &mo.source_addr,
            mo.source_ton,
            mo.source_npi,
            &self.country_code,
        ) else {
            return MoAction::Respond(CommandStatus::EsmeRinvsrcadr);
        };
        let is_ussd = match mo.ussd_service_op {
            Some(op) => {
                if op != ussd_service_op::PSSR_INDICATION {
                    return MoAction::Respond(CommandStatus::EsmeRok);
                }
                true
            }
            None => mo.service_type.eq_ignore_ascii_case("USSD"),
        };
        if is_ussd {
            return self.ussd(mo, subscriber, now);
        }
        if mo.dest_addr.trim_start_matches('+') != self.short_number {
            return MoAction::Respond(CommandStatus::EsmeRinvdstadr);
        }
        self.sms(mo, subscriber, now, mono_ms)
    }

    fn ussd(&self, mo: &MoMessage, subscriber: String, now: DateTime<Utc>) -> MoAction {
        let request = text::decode_short_message(mo.data_coding, &mo.payload);
        let command = match self.router.route_str(&request) {
            // The service has no sub-commands: `*929*1#` is another string (C3).
            Routed::Command((), args) if args.is_empty() => Command::Renew {
                channel: Channel::Ussd,
                dedup_key: Some(dedup_key(Channel::Ussd, &subscriber, &request, mo, None)),
                request,
            },
            Routed::Command(..) | Routed::Unknown => Command::UnknownCommand {
                channel: Channel::Ussd,
                request,
            },
        };
        MoAction::Engine {
            request: Request {
                msisdn: subscriber,
                command,
                now,
            },
            ussd: Some(mo.clone()),
        }
    }

    fn sms(
        &self,
        mo: &MoMessage,
        subscriber: String,
        now: DateTime<Utc>,
        mono_ms: u64,
    ) -> MoAction {
        // Concatenation by UDH, or by sar_* TLVs.
        let mut body: &[u8] = &mo.payload;
        let mut concat = mo
            .sar
            .filter(|s| s.total_segments > 1)
            .map(|s| (s.msg_ref_num, s.total_segments, s.segment_seqnum));
        if mo.has_udh() {
            if let Ok((udh, rest)) = segment::split_udh(&mo.payload) {
                body = rest;
                if let Some(c) = udh.concat.filter(|c| c.total > 1) {
                    concat = Some((c.reference, c.total, c.seq));
                }
            }
        }
        let mut reference = None;
        let full;
        if let Some((ref_num, total, seq)) = concat {
            reference = Some(ref_num);
            let key = ConcatKey {
                sender: subscriber.clone(),
                reference: ref_num,
                total,
            };
            let inserted = match self.reassembler.lock() {
                Ok(mut r) => r.insert(mono_ms, key, seq, mo.data_coding, body),
                Err(_) => return MoAction::Respond(CommandStatus::EsmeRsyserr),
            };
            match inserted {
                Ok(Some(all)) => full = all,
                Ok(None) => return MoAction::Respond(CommandStatus::EsmeRok),
                // Out of buffer: the peer retries later.
                Err(_) => return MoAction::Respond(CommandStatus::EsmeRmsgqful),
            }
            body = &full;
        }
        let request = text::decode_short_message(mo.data_coding, body);
        MoAction::Engine {
            request: Request {
                command: Command::Renew {
                    channel: Channel::Sms,
                    dedup_key: Some(dedup_key(
                        Channel::Sms,
                        &subscriber,
                        &request,
                        mo,
                        reference,
                    )),
                    request,
                },
                msisdn: subscriber,
                now,
            },
            ussd: None,
        }
    }

    /// Messages whose remaining parts never came: each becomes the SMS
    /// request of what did arrive (see the module doc).
    pub fn expired(&self, now: DateTime<Utc>, mono_ms: u64) -> Vec<Request> {
        let expired = match self.reassembler.lock() {
            Ok(mut r) => r.poll_expired(mono_ms),
            Err(_) => return Vec::new(),
        };
        expired
            .into_iter()
            .map(|e| {
                let request = text::decode_short_message(e.data_coding, &e.partial_payload());
                Request {
                    command: Command::Renew {
                        channel: Channel::Sms,
                        dedup_key: Some(format!(
                            "sms|{}|partial|{}",
                            e.key.sender, e.key.reference
                        )),
                        request,
                    },
                    msisdn: e.key.sender,
                    now,
                }
            })
            .collect()
    }
}

fn dedup_key(
    channel: Channel,
    subscriber: &str,
    content: &str,
    mo: &MoMessage,
    concat_ref: Option<u16>,
) -> String {
    let opt = |v: Option<u16>| v.map(|v| v.to_string()).unwrap_or_default();
    let ch = match channel {
        Channel::Ussd => "ussd",
        Channel::Sms => "sms",
        Channel::Admin => "admin",
    };
    format!(
        "{ch}|{subscriber}|{content}|{}|{}|{}",
        opt(mo.its_session_info),
        opt(mo.user_message_reference),
        opt(concat_ref)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use shortcode_protocol::smpp::{MessageCommand, PayloadField, Sar};

    fn routing() -> Routing {
        Routing::new(&ServiceConfig::default()).unwrap()
    }

    fn mo(dest: &str, payload: &[u8]) -> MoMessage {
        MoMessage {
            command: MessageCommand::SubmitSm,
            service_type: String::new(),
            source_addr: "79161234567".into(),
            source_ton: 1,
            source_npi: 1,
            dest_addr: dest.into(),
            dest_ton: 0,
            dest_npi: 0,
            esm_class: 0,
            protocol_id: 0,
            registered_delivery: 0,
            data_coding: 0,
            payload: payload.to_vec(),
            payload_field: PayloadField::ShortMessage,
            ussd_service_op: None,
            its_session_info: None,
            user_message_reference: None,
            sar: None,
            receipted_message_id: None,
            message_state: None,
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-11-22T07:00:00Z".parse().unwrap()
    }

    fn command(a: &MoAction) -> &Command {
        match a {
            MoAction::Engine { request, .. } => &request.command,
            other => panic!("expected an engine request, got {other:?}"),
        }
    }

    #[test]
    fn ussd_code_renews_and_other_codes_are_unknown() {
        let r = routing();
        let mut m = mo("929", b"*929#");
        m.ussd_service_op = Some(1);
        assert!(matches!(
            command(&r.classify(&m, now(), 0)),
            Command::Renew {
                channel: Channel::Ussd,
                ..
            }
        ));
        m.payload = b"*100#".to_vec();
        assert!(matches!(
            command(&r.classify(&m, now(), 0)),
            Command::UnknownCommand { .. }
        ));
        m.payload = b"hello".to_vec();
        assert!(matches!(
            command(&r.classify(&m, now(), 0)),
            Command::UnknownCommand { .. }
        ));
    }

    #[test]
    fn any_sms_to_the_short_number_renews_and_others_are_refused() {
        let r = routing();
        for body in [&b""[..], b"1", b"x", b"renew please"] {
            let a = r.classify(&mo("9290", body), now(), 0);
            assert!(
                matches!(
                    command(&a),
                    Command::Renew {
                        channel: Channel::Sms,
                        ..
                    }
                ),
                "{body:?}"
            );
        }
        assert_eq!(
            r.classify(&mo("9291", b"x"), now(), 0),
            MoAction::Respond(CommandStatus::EsmeRinvdstadr)
        );
    }

    #[test]
    fn delivery_receipt_to_the_short_number_never_renews() {
        let r = routing();
        let mut m = mo("9290", b"id:1 sub:001 dlvrd:001 stat:DELIVRD");
        m.esm_class = 0x04;
        assert!(matches!(r.classify(&m, now(), 0), MoAction::Receipt { .. }));
        let mut m = mo("9290", b"");
        m.receipted_message_id = Some("abc".into());
        assert!(matches!(r.classify(&m, now(), 0), MoAction::Receipt { .. }));
    }

    #[test]
    fn subscriber_numbers_are_normalised_c5() {
        let r = routing();
        for (addr, ton) in [("+79161234567", 1), ("9161234567", 2), ("89161234567", 0)] {
            let mut m = mo("9290", b"");
            m.source_addr = addr.into();
            m.source_ton = ton;
            match r.classify(&m, now(), 0) {
                MoAction::Engine { request, .. } => {
                    assert_eq!(request.msisdn, "79161234567", "{addr}")
                }
                other => panic!("{addr}: {other:?}"),
            }
        }
        let mut m = mo("9290", b"");
        m.source_addr = "MTS".into();
        m.source_ton = 5;
        assert_eq!(
            r.classify(&m, now(), 0),
            MoAction::Respond(CommandStatus::EsmeRinvsrcadr)
        );
    }

    #[test]
    fn three_part_sms_is_one_request() {
        let r = routing();
        let text = "Обновите мой пакет, пожалуйста! ".repeat(5);
        let seg = segment::segment(&text, 42).unwrap();
        assert_eq!(seg.parts.len(), 3);
        let mut actions = Vec::new();
        for p in &seg.parts {
            let mut m = mo("9290", &p.short_message());
            m.esm_class = 0x40;
            m.data_coding = seg.data_coding;
            actions.push(r.classify(&m, now(), 0));
        }
        assert_eq!(actions[0], MoAction::Respond(CommandStatus::EsmeRok));
        assert_eq!(actions[1], MoAction::Respond(CommandStatus::EsmeRok));
        match command(&actions[2]) {
            Command::Renew { request, .. } => assert_eq!(request, &text),
            other => panic!("{other:?}"),
        }
    }

    /// A message whose other parts never come is decoded with the coding
    /// its parts arrived in: GSM 7-bit text of even length stays text (a
    /// guess would read it as UCS2), UCS2 Cyrillic stays Cyrillic.
    #[test]
    fn an_expired_partial_message_keeps_its_coding() {
        let r = routing();
        let timeout = ReassemblyLimits::default().timeout_ms;
        let ucs2: Vec<u8> = "Обнови"
            .encode_utf16()
            .flat_map(|u| u.to_be_bytes())
            .collect();
        for (i, (dc, body, want)) in [
            (text::DC_GSM7, b"renew me".to_vec(), "renew me"),
            (text::DC_UCS2, ucs2, "Обнови"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut m = mo("9290", &body);
            m.data_coding = dc;
            m.sar = Some(Sar {
                msg_ref_num: 9 + i as u16,
                total_segments: 2,
                segment_seqnum: 1,
            });
            assert_eq!(
                r.classify(&m, now(), 0),
                MoAction::Respond(CommandStatus::EsmeRok)
            );
            let expired = r.expired(now(), timeout);
            assert_eq!(expired.len(), 1);
            match &expired[0].command {
                Command::Renew { request, .. } => assert_eq!(request, want),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn sar_parts_reassemble_too() {
        let r = routing();
        let mut last = None;
        for (seq, body) in [(1u8, &b"abc"[..]), (2, b"def")] {
            let mut m = mo("9290", body);
            m.sar = Some(Sar {
                msg_ref_num: 7,
                total_segments: 2,
                segment_seqnum: seq,
            });
            last = Some(r.classify(&m, now(), 0));
        }
        match command(last.as_ref().unwrap()) {
            Command::Renew { request, .. } => assert_eq!(request, "abcdef"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retransmission_has_the_same_dedup_key_and_a_new_session_does_not() {
        let r = routing();
        let mut m = mo("929", b"*929#");
        m.ussd_service_op = Some(1);
        m.its_session_info = Some(0x1200);
        let key = |a: &MoAction| match command(a) {
            Command::Renew { dedup_key, .. } => dedup_key.clone().unwrap(),
            other => panic!("{other:?}"),
        };
        let k1 = key(&r.classify(&m, now(), 0));
        assert_eq!(k1, key(&r.classify(&m, now(), 0)));
        m.its_session_info = Some(0x1300);
        assert_ne!(k1, key(&r.classify(&m, now(), 0)));
    }
}

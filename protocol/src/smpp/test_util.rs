//! Test helpers: PDU builders for byte-level tests and a two-sided [`Pair`]
//! (ESME session ↔ MC session) on a simulated clock, after quinn-proto's
//! `tests/util.rs`.

use std::time::{Duration, Instant};

use rusmpp::types::COctetString;
use rusmpp::{CommandId, CommandStatus, Pdu};

use super::framing::{encode_pdu, Frame, Framer};
use super::message::MtMessage;
use super::session::{Config, EsmeCredentials, Event, PeerTable, Session, State};

pub(crate) const SYSTEM_ID: &str = "gw";
pub(crate) const PASSWORD: &str = "secret";

pub(crate) fn c_str<const MIN: usize, const MAX: usize>(s: &str) -> COctetString<MIN, MAX> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    COctetString::from_vec(v).expect("test string fits")
}

/// A request PDU with status 0, no size limit.
pub(crate) fn encode(seq: u32, pdu: &Pdu) -> Vec<u8> {
    encode_pdu(CommandStatus::EsmeRok, seq, pdu, u32::MAX).expect("test PDU encodes")
}

/// A raw header; fix the length with [`fix_len`] after appending a body.
pub(crate) fn header_bytes(len: u32, id: u32, status: u32, seq: u32) -> Vec<u8> {
    [len, id, status, seq]
        .iter()
        .flat_map(|w| w.to_be_bytes())
        .collect()
}

pub(crate) fn fix_len(v: &mut [u8]) {
    let len = v.len() as u32;
    v[..4].copy_from_slice(&len.to_be_bytes());
}

pub(crate) fn mt(src: &str, dst: &str, text: &[u8]) -> MtMessage {
    MtMessage {
        source_addr: src.into(),
        source_ton: 1,
        source_npi: 1,
        dest_addr: dst.into(),
        dest_ton: 3,
        dest_npi: 0,
        ..MtMessage::default()
    }
    .with_payload(0, text.to_vec())
}

pub(crate) fn submit_sm(src: &str, dst: &str, text: &[u8]) -> Pdu {
    mt(src, dst, text).to_submit_sm().expect("test submit_sm")
}

pub(crate) fn deliver_sm(src: &str, dst: &str, text: &[u8]) -> Pdu {
    mt(src, dst, text).to_deliver_sm().expect("test deliver_sm")
}

/// A submit_sm with no short message followed by the given raw TLV octets.
pub(crate) fn submit_sm_with_raw_tlvs(seq: u32, tlvs: &[u8]) -> Vec<u8> {
    let mut bytes = encode(seq, &submit_sm("79161234567", "929", b""));
    bytes.extend_from_slice(tlvs);
    fix_len(&mut bytes);
    bytes
}

/// Decodes everything a session wrote; panics on undecodable output.
pub(crate) fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut framer = Framer::new(u32::MAX);
    let mut input = bytes;
    let mut out = Vec::new();
    while let Some(f) = framer.next_frame(&mut input) {
        out.push(f.expect("session output decodes"));
    }
    assert_eq!(framer.buffered_len(), 0, "session wrote a partial PDU");
    out
}

pub(crate) fn transmitted(session: &mut Session) -> Vec<Frame> {
    let mut bytes = Vec::new();
    while let Some(b) = session.poll_transmit() {
        bytes.extend(b);
    }
    frames(&bytes)
}

pub(crate) fn events(session: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| session.poll_event()).collect()
}

/// (command_id, status, seq) of each frame: what a peer would see.
pub(crate) fn summary(frames: &[Frame]) -> Vec<(CommandId, CommandStatus, u32)> {
    frames
        .iter()
        .map(|f| {
            (
                f.header.command_id,
                f.header.command_status,
                f.header.sequence_number,
            )
        })
        .collect()
}

/// An MC session that knows `gw`/`secret`, at `now`.
pub(crate) fn mc_session(now: Instant, config: Config) -> Session {
    Session::mc(
        now,
        config,
        "smsc",
        PeerTable::new().with_peer(SYSTEM_ID, PASSWORD),
    )
    .expect("mc")
}

/// An MC session already bound as transceiver by a raw ESME (its bind
/// response drained).
pub(crate) fn bound_mc(now: Instant, config: Config) -> Session {
    let mut mc = mc_session(now, config);
    let bind = rusmpp::pdus::BindTransceiver::builder()
        .system_id(c_str(SYSTEM_ID))
        .password(c_str(PASSWORD))
        .build();
    mc.handle_input(now, &encode(1, &Pdu::BindTransceiver(bind)));
    assert_eq!(mc.state(), State::BoundTrx);
    transmitted(&mut mc);
    events(&mut mc);
    mc
}

/// ESME ↔ MC over the sans-IO layer with a simulated clock.
pub(crate) struct Pair {
    pub esme: Session,
    pub mc: Session,
    pub now: Instant,
    pub esme_events: Vec<Event>,
    pub mc_events: Vec<Event>,
}

impl Pair {
    pub fn new(config: Config, credentials: EsmeCredentials) -> Self {
        let now = Instant::now();
        Self {
            esme: Session::esme(now, config.clone(), credentials).expect("esme"),
            mc: mc_session(now, config),
            now,
            esme_events: Vec::new(),
            mc_events: Vec::new(),
        }
    }

    /// Bound as transceiver, bind events cleared.
    pub fn bound(config: Config) -> Self {
        let mut pair = Self::new(config, EsmeCredentials::new(SYSTEM_ID, PASSWORD));
        pair.drive();
        assert_eq!(
            (pair.esme.state(), pair.mc.state()),
            (State::BoundTrx, State::BoundTrx)
        );
        pair.esme_events.clear();
        pair.mc_events.clear();
        pair
    }

    /// Moves bytes both ways until neither side has anything to send.
    pub fn drive(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some(b) = self.esme.poll_transmit() {
                self.mc.handle_input(self.now, &b);
                moved = true;
            }
            while let Some(b) = self.mc.poll_transmit() {
                self.esme.handle_input(self.now, &b);
                moved = true;
            }
            self.esme_events.extend(events(&mut self.esme));
            self.mc_events.extend(events(&mut self.mc));
            if !moved {
                return;
            }
        }
        panic!("pair never went quiet");
    }

    /// Runs the clock forward by `by`, firing every timer on the way at
    /// its own instant.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        for _ in 0..10_000 {
            let next = [self.esme.poll_timeout(), self.mc.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= target => {
                    self.now = self.now.max(t);
                    self.esme.handle_timeout(self.now);
                    self.mc.handle_timeout(self.now);
                    self.drive();
                }
                _ => {
                    self.now = target;
                    return;
                }
            }
        }
        panic!("timers never settled");
    }
}

//! The SMPP session state machine, sans-IO in the manner of quinn-proto: no
//! socket, no clock. Bytes come in through [`Session::handle_input`], time
//! through every `now` argument and [`Session::handle_timeout`]; what to
//! write comes out of [`Session::poll_transmit`], what happened out of
//! [`Session::poll_event`], and when to wake up out of
//! [`Session::poll_timeout`]. The async driver in the gateway only moves
//! bytes and sleeps.
//!
//! The session owns: binding (both roles), sequence numbers, the response
//! timeout of every request we sent, the inbound window, enquire_link
//! keepalive, unbind, and the answers to anything malformed or not allowed
//! in the current state. The application owns the content: it gets
//! `submit_sm` / `deliver_sm` / `data_sm` as [`Event::Request`] and answers
//! each with [`Session::respond`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusmpp::pdus::{
    BindReceiver, BindReceiverResp, BindTransceiver, BindTransceiverResp, BindTransmitter,
    BindTransmitterResp, DataSmResp, DeliverSmResp, SubmitSmResp,
};
use rusmpp::types::COctetString;
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use rusmpp::{CommandId, CommandStatus, Pdu};

use super::error::{DecodeError, EncodeError, SessionError};
use super::framing::{
    encode_header_only, encode_pdu, has_response, Frame, FrameError, Framer, Header,
    DEFAULT_PDU_LEN_MAX,
};

/// Limits and timers of one session. Every limit is named with its unit.
///
/// Memory held per session, at most: the framer's partial PDU
/// (`pdu_len_max` octets), one small record per outstanding request
/// (`send_window_max` + 2 for bind/enquire_link/unbind) and per unanswered
/// inbound request (`window_max`; the PDUs themselves are moved to the
/// application in [`Event::Request`]). Transmit and event queues grow only
/// with the input handed to one `handle_input` call (at most one 16-octet
/// answer per 16 octets received) and are empty after the driver drains them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Largest PDU accepted, header included, in octets (default 8192). A
    /// longer command_length is answered with `generic_nack`
    /// ESME_RINVCMDLEN and the connection closes. Application PDUs longer
    /// than this are refused by `send_request`/`respond` as well.
    pub pdu_len_max: u32,
    /// Inbound window: requests the peer may have handed to us that the
    /// application has not answered yet (default 10). Each request beyond it
    /// is answered at once with ESME_RTHROTTLED.
    pub window_max: usize,
    /// Outbound window: our own requests awaiting a response (default 10);
    /// `send_request` fails with [`SessionError::WindowFull`] beyond it.
    pub send_window_max: usize,
    /// How long a request we sent may wait for its response (default 30 s).
    /// Our application requests then yield [`Event::ResponseTimeout`]; an
    /// unanswered enquire_link closes the session.
    pub response_timeout: Duration,
    /// Silence from the peer after which we send enquire_link (default
    /// 30 s). `Duration::ZERO` turns keepalive off.
    pub enquire_link_interval: Duration,
    /// How long a connection may stay unbound (default 30 s): for an MC,
    /// until the ESME binds; for an ESME, until the bind_resp arrives.
    pub bind_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            pdu_len_max: DEFAULT_PDU_LEN_MAX,
            window_max: 10,
            send_window_max: 10,
            response_timeout: Duration::from_secs(30),
            enquire_link_interval: Duration::from_secs(30),
            bind_timeout: Duration::from_secs(30),
        }
    }
}

/// Which side of the session we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We connected and bind (External Short Message Entity).
    Esme,
    /// We accept binds (Message Centre).
    Mc,
}

impl Role {
    fn peer(self) -> Self {
        match self {
            Self::Esme => Self::Mc,
            Self::Mc => Self::Esme,
        }
    }
}

/// The bind the ESME asked for, seen from the ESME: a transmitter sends
/// (submit_sm), a receiver receives (deliver_sm), a transceiver does both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// bind_transmitter.
    Transmitter,
    /// bind_receiver.
    Receiver,
    /// bind_transceiver.
    Transceiver,
}

impl BindMode {
    fn state(self) -> State {
        match self {
            Self::Transmitter => State::BoundTx,
            Self::Receiver => State::BoundRx,
            Self::Transceiver => State::BoundTrx,
        }
    }
}

/// Session state. The states name the ESME's bind in both roles.
///
/// ```text
///                        connection up
///                              |
///                              v
///   +-------------------------Open------------------------------+
///   |  bind_transmitter  |  bind_receiver  |  bind_transceiver  |  bind refused,
///   |      accepted      |     accepted    |      accepted      |  bind_timeout,
///   v                    v                 v                    |  framing lost
/// BoundTx             BoundRx          BoundTrx                 |
///   |                    |                 |                    |
///   +--------------------+-----------------+                    |
///   |  we send unbind;             peer sends unbind, nothing   |
///   |  or peer sends unbind        of its unanswered: ----------+
///   |  with requests of its        unbind_resp sent             |
///   v  still unanswered                                         |
/// Unbinding                                                     |
///   |  ours: unbind_resp (or generic_nack) received, or         |
///   |  response_timeout;                                        |
///   |  the peer's: its last request answered, or                |
///   |  response_timeout (then unbind_resp is sent)              |
///   +---------------------------------------------------------->|
///                                                               v
///            keepalive timeout, framing lost, disconnect ---> Closed
/// ```
///
/// What each state admits from the peer. Anything else is answered with
/// ESME_RINVBNDSTS, except a bind while bound (ESME_RALYBND) and valid
/// operations the gateway does not offer — query_sm, cancel_sm, replace_sm,
/// submit_multi, broadcast_* — (ESME_RINVCMDID):
/// - Open: bind_* (MC role), enquire_link, outbind (ESME role, ignored).
/// - BoundTx: ESME→MC operations (submit_sm, data_sm, …), enquire_link,
///   unbind. The MC may not send deliver_sm.
/// - BoundRx: MC→ESME operations (deliver_sm, data_sm, alert_notification),
///   enquire_link, unbind.
/// - BoundTrx: both directions.
/// - Unbinding: responses, enquire_link, unbind; new requests are refused.
/// - Closed: nothing; input is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Connected, not bound.
    Open,
    /// ESME bound as transmitter.
    BoundTx,
    /// ESME bound as receiver.
    BoundRx,
    /// ESME bound as transceiver.
    BoundTrx,
    /// We sent unbind and wait for unbind_resp; or the peer sent unbind
    /// while requests of its were unanswered, and we answer them before
    /// unbind_resp (an MO already being committed is answered, not lost).
    Unbinding,
    /// Done; write out what `poll_transmit` still returns, then close the
    /// connection.
    Closed,
}

impl State {
    /// True in BoundTx, BoundRx and BoundTrx.
    pub fn is_bound(self) -> bool {
        matches!(self, Self::BoundTx | Self::BoundRx | Self::BoundTrx)
    }

    /// Whether `sender` may originate messages in this state.
    fn may_flow_from(self, sender: Role) -> bool {
        match sender {
            Role::Esme => matches!(self, Self::BoundTx | Self::BoundTrx),
            Role::Mc => matches!(self, Self::BoundRx | Self::BoundTrx),
        }
    }
}

/// What an ESME binds with.
#[derive(Clone, PartialEq, Eq)]
pub struct EsmeCredentials {
    /// At most 15 ASCII characters.
    pub system_id: String,
    /// At most 8 ASCII characters.
    pub password: String,
    /// At most 12 ASCII characters; usually empty.
    pub system_type: String,
    /// The bind to ask for (default transceiver).
    pub mode: BindMode,
    /// interface_version sent in the bind (default 0x34, SMPP 3.4: the
    /// TLVs we use all exist there and 3.4 MCs are the common case).
    pub interface_version: u8,
}

impl EsmeCredentials {
    /// A transceiver bind, SMPP 3.4, empty system_type.
    pub fn new(system_id: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            system_id: system_id.into(),
            password: password.into(),
            system_type: String::new(),
            mode: BindMode::Transceiver,
            interface_version: 0x34,
        }
    }

    fn bind_pdu(&self) -> Result<Pdu, SessionError> {
        let system_id = credential::<16>("system_id", &self.system_id)?;
        let password = credential::<9>("password", &self.password)?;
        let system_type = credential::<13>("system_type", &self.system_type)?;
        let version = InterfaceVersion::from(self.interface_version);
        Ok(match self.mode {
            BindMode::Transmitter => Pdu::BindTransmitter(BindTransmitter::new(
                system_id,
                password,
                system_type,
                version,
                Ton::Unknown,
                Npi::Unknown,
                COctetString::null(),
            )),
            BindMode::Receiver => Pdu::BindReceiver(BindReceiver::new(
                system_id,
                password,
                system_type,
                version,
                Ton::Unknown,
                Npi::Unknown,
                COctetString::null(),
            )),
            BindMode::Transceiver => Pdu::BindTransceiver(BindTransceiver::new(
                system_id,
                password,
                system_type,
                version,
                Ton::Unknown,
                Npi::Unknown,
                COctetString::null(),
            )),
        })
    }
}

impl fmt::Debug for EsmeCredentials {
    // The password stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EsmeCredentials")
            .field("system_id", &self.system_id)
            .field("system_type", &self.system_type)
            .field("mode", &self.mode)
            .field("interface_version", &self.interface_version)
            .finish_non_exhaustive()
    }
}

fn credential<const MAX: usize>(
    field: &'static str,
    value: &str,
) -> Result<COctetString<1, MAX>, SessionError> {
    let mut bytes = value.as_bytes().to_vec();
    bytes.push(0);
    COctetString::from_vec(bytes).map_err(|_| SessionError::InvalidCredential {
        field,
        max: MAX - 1,
    })
}

/// A bind as the MC sees it, for [`Authenticate`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BindRequest<'a> {
    /// The ESME's system_id.
    pub system_id: &'a str,
    /// The password it gave.
    pub password: &'a str,
    /// Its system_type.
    pub system_type: &'a str,
    /// The bind it asked for.
    pub mode: BindMode,
    /// Its interface_version.
    pub interface_version: u8,
}

impl fmt::Debug for BindRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BindRequest")
            .field("system_id", &self.system_id)
            .field("system_type", &self.system_type)
            .field("mode", &self.mode)
            .field("interface_version", &self.interface_version)
            .finish_non_exhaustive()
    }
}

/// Why an MC refuses a bind; each maps to the status it is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindRefusal {
    /// ESME_RINVSYSID.
    UnknownSystemId,
    /// ESME_RINVPASWD.
    WrongPassword,
    /// Any other status (e.g. ESME_RBINDFAIL for a mode not allowed).
    Status(CommandStatus),
}

impl From<BindRefusal> for CommandStatus {
    fn from(refusal: BindRefusal) -> Self {
        match refusal {
            BindRefusal::UnknownSystemId => CommandStatus::EsmeRinvsysid,
            BindRefusal::WrongPassword => CommandStatus::EsmeRinvpaswd,
            BindRefusal::Status(status) => status,
        }
    }
}

/// Decides binds in the MC role. Implemented by [`PeerTable`], by closures
/// `Fn(&BindRequest) -> Result<(), BindRefusal>`, and by `Arc` of either.
pub trait Authenticate {
    /// `Ok` binds the ESME; `Err` answers the bind with the refusal's status
    /// and closes the connection.
    fn authenticate(&self, request: &BindRequest<'_>) -> Result<(), BindRefusal>;
}

impl<F> Authenticate for F
where
    F: Fn(&BindRequest<'_>) -> Result<(), BindRefusal>,
{
    fn authenticate(&self, request: &BindRequest<'_>) -> Result<(), BindRefusal> {
        self(request)
    }
}

impl<T: Authenticate + ?Sized> Authenticate for Arc<T> {
    fn authenticate(&self, request: &BindRequest<'_>) -> Result<(), BindRefusal> {
        (**self).authenticate(request)
    }
}

/// The configured peers of an MC: system_id → password, any bind mode.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PeerTable {
    peers: HashMap<String, String>,
}

impl PeerTable {
    /// An empty table: every bind is refused with ESME_RINVSYSID.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a peer.
    pub fn insert(&mut self, system_id: impl Into<String>, password: impl Into<String>) {
        self.peers.insert(system_id.into(), password.into());
    }

    /// Builder form of [`insert`](Self::insert).
    pub fn with_peer(mut self, system_id: impl Into<String>, password: impl Into<String>) -> Self {
        self.insert(system_id, password);
        self
    }
}

impl fmt::Debug for PeerTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.peers.keys()).finish()
    }
}

impl Authenticate for PeerTable {
    fn authenticate(&self, request: &BindRequest<'_>) -> Result<(), BindRefusal> {
        match self.peers.get(request.system_id) {
            None => Err(BindRefusal::UnknownSystemId),
            Some(password)
                if constant_time_eq(password.as_bytes(), request.password.as_bytes()) =>
            {
                Ok(())
            }
            Some(_) => Err(BindRefusal::WrongPassword),
        }
    }
}

/// Compares without an early exit, so timing does not reveal how much of a
/// guessed password was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What the session reports to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The bind succeeded. `system_id` is the peer's: the ESME's in the MC
    /// role, the MC's (from bind_resp) in the ESME role.
    Bound {
        /// The peer's system_id.
        system_id: String,
        /// The bind.
        mode: BindMode,
    },
    /// A submit_sm, deliver_sm or data_sm for the application. Answer it
    /// with [`Session::respond`] (only once what the answer promises is
    /// durable, see G3). `MoMessage::from_pdu` reads it.
    Request {
        /// Sequence number to pass to `respond`.
        seq: u32,
        /// The request.
        pdu: Pdu,
    },
    /// The response to a request we sent with `send_request`, or a
    /// generic_nack for it (`command_id` tells which).
    Response {
        /// The request's sequence number.
        seq: u32,
        /// `*_resp` or `generic_nack`.
        command_id: CommandId,
        /// The peer's verdict.
        status: CommandStatus,
        /// The body; `None` when the peer sent none (error responses).
        pdu: Option<Pdu>,
    },
    /// A response to our request arrived but its body did not decode; we
    /// answered it with generic_nack. The outcome of the request is unknown.
    MalformedResponse {
        /// The request's sequence number.
        seq: u32,
        /// The status in the response's header.
        status: CommandStatus,
        /// What was wrong with the body.
        error: DecodeError,
    },
    /// No response within `response_timeout`; the request is forgotten.
    ResponseTimeout {
        /// The request's sequence number.
        seq: u32,
    },
    /// A response matching nothing outstanding (late after a timeout, or a
    /// response of the wrong command). It is otherwise ignored.
    UnmatchedResponse {
        /// Its sequence number.
        seq: u32,
        /// Its command.
        command_id: CommandId,
        /// Its status.
        status: CommandStatus,
    },
    /// The session closed with this request of ours unanswered.
    Aborted {
        /// The request's sequence number.
        seq: u32,
    },
    /// The bind ended through unbind/unbind_resp; `Closed` follows.
    Unbound,
    /// The session is over. Write out the remaining `poll_transmit`s, then
    /// close the connection. Always the last event.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// Why a session closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// We unbound and the peer confirmed (or we closed before binding).
    LocalUnbind,
    /// The peer unbound; we confirmed.
    PeerUnbind,
    /// The bind was refused with this status (by the MC in the ESME role,
    /// by us in the MC role).
    BindRefused(CommandStatus),
    /// No bind within `bind_timeout`.
    BindTimeout,
    /// enquire_link went unanswered for `response_timeout`.
    KeepaliveTimeout,
    /// unbind went unanswered for `response_timeout`.
    UnbindTimeout,
    /// A command_length we cannot frame; answered with generic_nack.
    FramingLost(DecodeError),
    /// The driver reported the connection gone.
    Disconnected,
}

/// What a request we sent is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    App,
    Bind(BindMode),
    EnquireLink,
    Unbind,
}

#[derive(Debug, Clone, Copy)]
struct Outstanding {
    command_id: CommandId,
    purpose: Purpose,
    /// `None` if `now + timeout` overflowed `Instant`: never expires.
    deadline: Option<Instant>,
}

enum RoleData {
    Esme,
    Mc {
        system_id: COctetString<1, 16>,
        auth: Box<dyn Authenticate + Send>,
    },
}

/// One SMPP session over one connection. See [`State`] for the diagram.
pub struct Session {
    config: Config,
    role: RoleData,
    state: State,
    framer: Framer,
    next_seq: u32,
    /// Requests we sent, by sequence number.
    outstanding: BTreeMap<u32, Outstanding>,
    /// Peer requests handed to the application and not answered yet.
    unanswered: BTreeMap<u32, CommandId>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    /// While Open: close if still unbound then.
    bind_deadline: Option<Instant>,
    /// When the peer last sent us anything; drives keepalive.
    last_rx: Instant,
    peer_system_id: Option<String>,
    /// The peer's unbind, answered once its requests are: (its sequence
    /// numbers — it may send it again meanwhile — and when to answer
    /// anyway; `None` if that overflowed).
    peer_unbind: Option<(Vec<u32>, Option<Instant>)>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.role())
            .field("state", &self.state)
            .field("peer_system_id", &self.peer_system_id)
            .field("outstanding", &self.outstanding.len())
            .field("unanswered", &self.unanswered.len())
            .field("transmits", &self.transmits.len())
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

/// Highest sequence number: SMPP reserves the top bit.
const SEQ_MAX: u32 = 0x7FFF_FFFF;

impl Session {
    /// An ESME session: queues the bind at once (take it with
    /// `poll_transmit`) and waits `bind_timeout` for the bind_resp.
    pub fn esme(
        now: Instant,
        config: Config,
        credentials: EsmeCredentials,
    ) -> Result<Self, SessionError> {
        let bind = credentials.bind_pdu()?;
        let mut session = Self::new(now, config, RoleData::Esme);
        let seq = session.allocate_seq();
        session.queue_internal(&bind, seq);
        session.outstanding.insert(
            seq,
            Outstanding {
                command_id: bind.command_id(),
                purpose: Purpose::Bind(credentials.mode),
                deadline: session.bind_deadline,
            },
        );
        Ok(session)
    }

    /// An MC session: waits `bind_timeout` for the ESME's bind and checks
    /// it with `auth`. `system_id` (at most 15 ASCII characters) goes into
    /// our bind_resp.
    pub fn mc(
        now: Instant,
        config: Config,
        system_id: &str,
        auth: impl Authenticate + Send + 'static,
    ) -> Result<Self, SessionError> {
        let system_id = credential::<16>("system_id", system_id)?;
        Ok(Self::new(
            now,
            config,
            RoleData::Mc {
                system_id,
                auth: Box::new(auth),
            },
        ))
    }

    fn new(now: Instant, config: Config, role: RoleData) -> Self {
        Self {
            framer: Framer::new(config.pdu_len_max),
            bind_deadline: now.checked_add(config.bind_timeout),
            config,
            role,
            state: State::Open,
            next_seq: 1,
            outstanding: BTreeMap::new(),
            unanswered: BTreeMap::new(),
            peer_unbind: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            last_rx: now,
            peer_system_id: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Our role.
    pub fn role(&self) -> Role {
        match self.role {
            RoleData::Esme => Role::Esme,
            RoleData::Mc { .. } => Role::Mc,
        }
    }

    /// The peer's system_id once bound.
    pub fn peer_system_id(&self) -> Option<&str> {
        self.peer_system_id.as_deref()
    }

    /// Our application requests awaiting a response.
    pub fn outstanding_len(&self) -> usize {
        self.outstanding
            .values()
            .filter(|o| o.purpose == Purpose::App)
            .count()
    }

    /// Peer requests handed to the application and not answered yet.
    pub fn unanswered_len(&self) -> usize {
        self.unanswered.len()
    }

    /// Feeds bytes read from the connection. Every PDU in them is handled;
    /// a partial PDU at the end is kept for the next call.
    pub fn handle_input(&mut self, now: Instant, mut bytes: &[u8]) {
        while self.state != State::Closed {
            match self.framer.next_frame(&mut bytes) {
                None => break,
                Some(Ok(frame)) => self.handle_pdu(now, frame),
                Some(Err(error)) => self.on_frame_error(now, error),
            }
        }
    }

    /// Handles one PDU framed elsewhere (tests, or a driver doing its own
    /// framing). Closed sessions ignore it.
    pub fn handle_pdu(&mut self, now: Instant, frame: Frame) {
        if self.state == State::Closed {
            return;
        }
        self.last_rx = now;
        let Frame { header, body } = frame;
        let id = header.command_id;
        let seq = header.sequence_number;
        if id.is_response() {
            self.on_response(header, body);
            return;
        }
        let Some(pdu) = body else {
            // Only reachable through handle_pdu: the framer never yields a
            // request without its body.
            self.answer(id, CommandStatus::EsmeRinvcmdlen, seq);
            return;
        };
        match id {
            CommandId::EnquireLink => {
                // Answered in every state but Closed: it only proves the
                // link is alive (SMPP 5.0 allows it while Open as well).
                self.queue_header(CommandId::EnquireLinkResp, CommandStatus::EsmeRok, seq);
            }
            CommandId::Unbind => self.on_unbind(now, seq),
            CommandId::BindTransmitter | CommandId::BindReceiver | CommandId::BindTransceiver => {
                self.on_bind(seq, &pdu)
            }
            CommandId::Outbind | CommandId::AlertNotification => {
                // No response exists for these. An ESME may ignore both: it
                // binds on its own and sets no set_dpf.
                let allowed = self.role() == Role::Esme
                    && match id {
                        CommandId::Outbind => self.state == State::Open,
                        _ => self.state.may_flow_from(Role::Mc),
                    };
                if !allowed {
                    self.answer(id, CommandStatus::EsmeRinvbndsts, seq);
                }
            }
            CommandId::Other(_) => self.answer(id, CommandStatus::EsmeRinvcmdid, seq),
            _ => self.on_operation(seq, pdu),
        }
    }

    /// Fires expired timers: bind timeout, response timeouts, keepalive.
    /// Call it when `poll_timeout`'s instant has passed; calling it early
    /// does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if self.state == State::Open && self.bind_deadline.is_some_and(|d| d <= now) {
            self.close(CloseReason::BindTimeout);
            return;
        }
        if let Some((_, Some(deadline))) = &self.peer_unbind {
            if *deadline <= now {
                // The application never answered: the peer waited long
                // enough for its unbind_resp.
                return self.confirm_peer_unbind();
            }
        }
        let expired: Vec<u32> = self
            .outstanding
            .iter()
            .filter(|(_, o)| o.deadline.is_some_and(|d| d <= now))
            .map(|(seq, _)| *seq)
            .collect();
        for seq in expired {
            let Some(o) = self.outstanding.remove(&seq) else {
                continue;
            };
            match o.purpose {
                Purpose::App => self.events.push_back(Event::ResponseTimeout { seq }),
                Purpose::EnquireLink => return self.close(CloseReason::KeepaliveTimeout),
                Purpose::Bind(_) => return self.close(CloseReason::BindTimeout),
                Purpose::Unbind => return self.close(CloseReason::UnbindTimeout),
            }
        }
        if self.keepalive_due().is_some_and(|due| due <= now) {
            let seq = self.allocate_seq();
            self.queue_header(CommandId::EnquireLink, CommandStatus::EsmeRok, seq);
            self.track(now, seq, CommandId::EnquireLink, Purpose::EnquireLink);
        }
    }

    /// The connection is gone (EOF or error): close without unbinding.
    pub fn handle_disconnect(&mut self) {
        self.close(CloseReason::Disconnected);
    }

    /// The next PDU to write, already encoded.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call `handle_timeout` next; `None` when no timer runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        let bind = self.bind_deadline.filter(|_| self.state == State::Open);
        let responses = self.outstanding.values().filter_map(|o| o.deadline);
        let peer_unbind = self.peer_unbind.as_ref().and_then(|(_, d)| *d);
        bind.into_iter()
            .chain(self.keepalive_due())
            .chain(responses)
            .chain(peer_unbind)
            .min()
    }

    /// Sends an operation for the application (submit_sm, deliver_sm,
    /// data_sm, query_sm, …) and returns its sequence number. The response
    /// arrives as [`Event::Response`] or [`Event::ResponseTimeout`].
    pub fn send_request(&mut self, now: Instant, pdu: Pdu) -> Result<u32, SessionError> {
        let command_id = pdu.command_id();
        if self.state == State::Closed {
            return Err(SessionError::Closed);
        }
        if !app_sendable(command_id) {
            return Err(SessionError::NotSendable { command_id });
        }
        let role = self.role();
        if !may_originate(command_id, role) {
            return Err(SessionError::WrongDirection { command_id, role });
        }
        if !self.state.may_flow_from(role) {
            return Err(SessionError::InvalidState {
                command_id,
                state: self.state,
            });
        }
        if self.outstanding_len() >= self.config.send_window_max {
            return Err(SessionError::WindowFull {
                send_window_max: self.config.send_window_max,
            });
        }
        let seq = self.allocate_seq();
        let bytes = encode_pdu(CommandStatus::EsmeRok, seq, &pdu, self.config.pdu_len_max)?;
        self.transmits.push_back(bytes);
        self.track(now, seq, command_id, Purpose::App);
        Ok(seq)
    }

    /// Answers the peer request `seq` from an [`Event::Request`].
    ///
    /// With ESME_ROK, `body` is the `*_resp` (e.g. submit_sm_resp with the
    /// message_id, see [`submit_sm_resp`](super::submit_sm_resp)); `None`
    /// sends an empty message_id. With any other status the response goes
    /// without body (SMPP 3.4 §4: the body is not returned on error) and
    /// `body` is ignored. Allowed while Unbinding.
    pub fn respond(
        &mut self,
        seq: u32,
        status: CommandStatus,
        body: Option<Pdu>,
    ) -> Result<(), SessionError> {
        if self.state == State::Closed {
            return Err(SessionError::Closed);
        }
        let request = *self
            .unanswered
            .get(&seq)
            .ok_or(SessionError::UnknownSequence { seq })?;
        let response_id = request.matching_response();
        if status != CommandStatus::EsmeRok {
            self.queue_header(response_id, status, seq);
        } else {
            let body = match body {
                Some(body) if body.command_id() == response_id => body,
                Some(body) => {
                    return Err(SessionError::WrongResponse {
                        request,
                        got: body.command_id(),
                    })
                }
                None => empty_response(request).ok_or(SessionError::UnknownSequence { seq })?,
            };
            let bytes = encode_pdu(status, seq, &body, self.config.pdu_len_max)?;
            self.transmits.push_back(bytes);
        }
        self.unanswered.remove(&seq);
        if self.unanswered.is_empty() && self.peer_unbind.is_some() {
            self.confirm_peer_unbind();
        }
        Ok(())
    }

    /// Starts a graceful end: sends unbind and waits `response_timeout` for
    /// unbind_resp. While Open there is nothing to unbind: the session
    /// closes at once. Idempotent while Unbinding.
    pub fn unbind(&mut self, now: Instant) -> Result<(), SessionError> {
        match self.state {
            State::Closed => Err(SessionError::Closed),
            State::Unbinding => Ok(()),
            State::Open => {
                self.close(CloseReason::LocalUnbind);
                Ok(())
            }
            State::BoundTx | State::BoundRx | State::BoundTrx => {
                let seq = self.allocate_seq();
                self.queue_header(CommandId::Unbind, CommandStatus::EsmeRok, seq);
                self.track(now, seq, CommandId::Unbind, Purpose::Unbind);
                self.state = State::Unbinding;
                Ok(())
            }
        }
    }

    fn on_frame_error(&mut self, now: Instant, error: FrameError) {
        self.last_rx = now;
        if let Some(reply) = error.reply() {
            self.transmits.push_back(reply.encode());
        }
        if error.error.is_fatal() {
            self.close(CloseReason::FramingLost(error.error));
            return;
        }
        let Header {
            command_id,
            command_status,
            sequence_number: seq,
            ..
        } = error.header;
        if !command_id.is_response() || !self.answers_outstanding(seq, command_id) {
            return;
        }
        let Some(o) = self.outstanding.remove(&seq) else {
            return;
        };
        match o.purpose {
            Purpose::App => self.events.push_back(Event::MalformedResponse {
                seq,
                status: command_status,
                error: error.error,
            }),
            // Any answer proves the link alive.
            Purpose::EnquireLink => {}
            Purpose::Unbind => {
                self.events.push_back(Event::Unbound);
                self.close(CloseReason::LocalUnbind);
            }
            Purpose::Bind(_) => {
                self.close(CloseReason::BindRefused(refusal_status(command_status)))
            }
        }
    }

    fn on_response(&mut self, header: Header, body: Option<Pdu>) {
        let Header {
            command_id,
            command_status: status,
            sequence_number: seq,
            ..
        } = header;
        if !self.answers_outstanding(seq, command_id) {
            self.events.push_back(Event::UnmatchedResponse {
                seq,
                command_id,
                status,
            });
            return;
        }
        let Some(o) = self.outstanding.remove(&seq) else {
            return;
        };
        match o.purpose {
            Purpose::App => self.events.push_back(Event::Response {
                seq,
                command_id,
                status,
                pdu: body,
            }),
            Purpose::EnquireLink => {}
            Purpose::Unbind => {
                // Whatever the status: the peer heard us, the bind is over.
                self.events.push_back(Event::Unbound);
                self.close(CloseReason::LocalUnbind);
            }
            Purpose::Bind(mode) => {
                if status == CommandStatus::EsmeRok && command_id != CommandId::GenericNack {
                    let system_id = bind_resp_system_id(body.as_ref());
                    self.bound(mode, system_id);
                } else {
                    self.close(CloseReason::BindRefused(refusal_status(status)));
                }
            }
        }
    }

    /// True if `seq` is ours and `command_id` answers it.
    fn answers_outstanding(&self, seq: u32, command_id: CommandId) -> bool {
        self.outstanding.get(&seq).is_some_and(|o| {
            command_id == CommandId::GenericNack || command_id == o.command_id.matching_response()
        })
    }

    fn on_unbind(&mut self, now: Instant, seq: u32) {
        if self.state == State::Open {
            self.queue_header(CommandId::UnbindResp, CommandStatus::EsmeRinvbndsts, seq);
            return;
        }
        if let Some((seqs, _)) = self.peer_unbind.as_mut() {
            // Sent again while we finish: answered with the first.
            seqs.push(seq);
            return;
        }
        if self.state.is_bound() && !self.unanswered.is_empty() {
            // Its requests are being handled (a renewal may be committing):
            // answer them first, then the unbind; refuse anything new.
            self.peer_unbind = Some((vec![seq], now.checked_add(self.config.response_timeout)));
            self.state = State::Unbinding;
            return;
        }
        // Bound, or both sides unbinding at once: confirm and finish.
        self.finish_peer_unbind(&[seq]);
    }

    /// The deferred unbind's answers are due: send them and close.
    fn confirm_peer_unbind(&mut self) {
        let seqs = self.peer_unbind.take().map(|(s, _)| s).unwrap_or_default();
        self.finish_peer_unbind(&seqs);
    }

    fn finish_peer_unbind(&mut self, seqs: &[u32]) {
        for &seq in seqs {
            self.queue_header(CommandId::UnbindResp, CommandStatus::EsmeRok, seq);
        }
        self.events.push_back(Event::Unbound);
        self.close(CloseReason::PeerUnbind);
    }

    fn on_bind(&mut self, seq: u32, pdu: &Pdu) {
        let id = pdu.command_id();
        let RoleData::Mc { system_id, auth } = &self.role else {
            // An ESME accepts no binds.
            return self.answer(id, CommandStatus::EsmeRinvbndsts, seq);
        };
        match self.state {
            State::Open => {}
            State::BoundTx | State::BoundRx | State::BoundTrx => {
                return self.answer(id, CommandStatus::EsmeRalybnd, seq)
            }
            State::Unbinding | State::Closed => {
                return self.answer(id, CommandStatus::EsmeRinvbndsts, seq)
            }
        }
        let Some(request) = bind_request(pdu) else {
            return self.answer(id, CommandStatus::EsmeRsyserr, seq);
        };
        let verdict = auth.authenticate(&request);
        let our_id = system_id.clone();
        let (mode, peer_id, version) = (
            request.mode,
            request.system_id.to_owned(),
            request.interface_version,
        );
        match verdict {
            Ok(()) => {
                // SMPP 3.4: sc_interface_version only for ESMEs of 3.4 or later.
                let version = match version {
                    0x50.. => Some(InterfaceVersion::Smpp5_0),
                    0x34.. => Some(InterfaceVersion::Smpp3_4),
                    _ => None,
                };
                let resp = match mode {
                    BindMode::Transmitter => {
                        Pdu::BindTransmitterResp(BindTransmitterResp::new(our_id, version))
                    }
                    BindMode::Receiver => {
                        Pdu::BindReceiverResp(BindReceiverResp::new(our_id, version))
                    }
                    BindMode::Transceiver => {
                        Pdu::BindTransceiverResp(BindTransceiverResp::new(our_id, version))
                    }
                };
                self.queue_internal(&resp, seq);
                self.bound(mode, peer_id);
            }
            Err(refusal) => {
                let status = refusal_status(CommandStatus::from(refusal));
                self.answer(id, status, seq);
                // One try per connection: a password guesser must reconnect.
                self.close(CloseReason::BindRefused(status));
            }
        }
    }

    fn bound(&mut self, mode: BindMode, peer_system_id: String) {
        self.state = mode.state();
        self.bind_deadline = None;
        self.peer_system_id = Some(peer_system_id.clone());
        self.events.push_back(Event::Bound {
            system_id: peer_system_id,
            mode,
        });
    }

    fn on_operation(&mut self, seq: u32, pdu: Pdu) {
        let id = pdu.command_id();
        let peer = self.role().peer();
        if self.unanswered.contains_key(&seq) {
            // A retransmission of a request still being handled: its
            // pending answer serves both (whatever the state now: a second,
            // different answer for one sequence number would be wrong).
            return;
        }
        if !may_originate(id, peer) || !self.state.may_flow_from(peer) {
            return self.answer(id, CommandStatus::EsmeRinvbndsts, seq);
        }
        if !matches!(
            id,
            CommandId::SubmitSm | CommandId::DeliverSm | CommandId::DataSm
        ) {
            // query_sm, cancel_sm, replace_sm, submit_multi, broadcast_*:
            // valid SMPP the gateway does not offer.
            return self.answer(id, CommandStatus::EsmeRinvcmdid, seq);
        }
        if self.unanswered.len() >= self.config.window_max {
            // ESME_RTHROTTLED rather than ESME_RMSGQFUL: the peer exceeded
            // our window and should retry later; RMSGQFUL means the
            // destination's queue is full and peers may treat it as a
            // per-subscriber failure.
            return self.answer(id, CommandStatus::EsmeRthrottled, seq);
        }
        self.unanswered.insert(seq, id);
        self.events.push_back(Event::Request { seq, pdu });
    }

    fn close(&mut self, reason: CloseReason) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        for (seq, o) in std::mem::take(&mut self.outstanding) {
            if o.purpose == Purpose::App {
                self.events.push_back(Event::Aborted { seq });
            }
        }
        self.unanswered.clear();
        self.bind_deadline = None;
        self.events.push_back(Event::Closed { reason });
    }

    /// When to send enquire_link: `enquire_link_interval` after the peer
    /// last spoke, while bound and none is outstanding.
    fn keepalive_due(&self) -> Option<Instant> {
        let interval = self.config.enquire_link_interval;
        if !self.state.is_bound()
            || interval.is_zero()
            || self
                .outstanding
                .values()
                .any(|o| o.purpose == Purpose::EnquireLink)
        {
            return None;
        }
        self.last_rx.checked_add(interval)
    }

    fn allocate_seq(&mut self) -> u32 {
        // Terminates: at most send_window_max + 2 numbers are taken.
        loop {
            let seq = self.next_seq;
            self.next_seq = if seq >= SEQ_MAX { 1 } else { seq + 1 };
            if !self.outstanding.contains_key(&seq) {
                return seq;
            }
        }
    }

    fn track(&mut self, now: Instant, seq: u32, command_id: CommandId, purpose: Purpose) {
        let deadline = now.checked_add(self.config.response_timeout);
        self.outstanding.insert(
            seq,
            Outstanding {
                command_id,
                purpose,
                deadline,
            },
        );
    }

    /// Answers a request with a body-less response: its `*_resp`, or
    /// generic_nack for commands without one.
    fn answer(&mut self, request: CommandId, status: CommandStatus, seq: u32) {
        let id = if has_response(request) {
            request.matching_response()
        } else {
            CommandId::GenericNack
        };
        self.queue_header(id, status, seq);
    }

    fn queue_header(&mut self, id: CommandId, status: CommandStatus, seq: u32) {
        self.transmits
            .push_back(encode_header_only(id, status, seq));
    }

    /// Session PDUs (bind, bind_resp) are small and fixed; the size limit
    /// is for application content.
    fn queue_internal(&mut self, pdu: &Pdu, seq: u32) {
        match encode_pdu(CommandStatus::EsmeRok, seq, pdu, u32::MAX) {
            Ok(bytes) => self.transmits.push_back(bytes),
            // Cannot happen for bind PDUs built from validated strings.
            Err(EncodeError::TooLong { .. } | EncodeError::TlvLength { .. }) => {
                self.queue_header(pdu.command_id(), CommandStatus::EsmeRsyserr, seq)
            }
        }
    }
}

/// A refusal carrying ESME_ROK (a generic_nack with status 0, or an
/// authenticator returning `Status(EsmeRok)`) still refuses.
fn refusal_status(status: CommandStatus) -> CommandStatus {
    if status == CommandStatus::EsmeRok {
        CommandStatus::EsmeRbindfail
    } else {
        status
    }
}

fn bind_request(pdu: &Pdu) -> Option<BindRequest<'_>> {
    match pdu {
        Pdu::BindTransmitter(b) => Some(BindRequest {
            system_id: b.system_id.as_str(),
            password: b.password.as_str(),
            system_type: b.system_type.as_str(),
            mode: BindMode::Transmitter,
            interface_version: u8::from(b.interface_version),
        }),
        Pdu::BindReceiver(b) => Some(BindRequest {
            system_id: b.system_id.as_str(),
            password: b.password.as_str(),
            system_type: b.system_type.as_str(),
            mode: BindMode::Receiver,
            interface_version: u8::from(b.interface_version),
        }),
        Pdu::BindTransceiver(b) => Some(BindRequest {
            system_id: b.system_id.as_str(),
            password: b.password.as_str(),
            system_type: b.system_type.as_str(),
            mode: BindMode::Transceiver,
            interface_version: u8::from(b.interface_version),
        }),
        _ => None,
    }
}

fn bind_resp_system_id(body: Option<&Pdu>) -> String {
    match body {
        Some(Pdu::BindTransmitterResp(b)) => b.system_id.as_str().to_owned(),
        Some(Pdu::BindReceiverResp(b)) => b.system_id.as_str().to_owned(),
        Some(Pdu::BindTransceiverResp(b)) => b.system_id.as_str().to_owned(),
        _ => String::new(),
    }
}

/// The ESME_ROK response body when the application gives none.
fn empty_response(request: CommandId) -> Option<Pdu> {
    match request {
        CommandId::SubmitSm => Some(Pdu::SubmitSmResp(SubmitSmResp::default())),
        CommandId::DeliverSm => Some(Pdu::DeliverSmResp(DeliverSmResp::default())),
        CommandId::DataSm => Some(Pdu::DataSmResp(DataSmResp::default())),
        _ => None,
    }
}

/// Operations the application may send through `send_request`; the session
/// itself sends bind, unbind, enquire_link and all responses.
fn app_sendable(id: CommandId) -> bool {
    matches!(
        id,
        CommandId::SubmitSm
            | CommandId::DeliverSm
            | CommandId::DataSm
            | CommandId::QuerySm
            | CommandId::CancelSm
            | CommandId::ReplaceSm
            | CommandId::SubmitMulti
            | CommandId::BroadcastSm
            | CommandId::QueryBroadcastSm
            | CommandId::CancelBroadcastSm
    )
}

/// Whether `sender` is a side that originates `id` at all.
fn may_originate(id: CommandId, sender: Role) -> bool {
    match id {
        CommandId::DeliverSm | CommandId::AlertNotification | CommandId::Outbind => {
            sender == Role::Mc
        }
        CommandId::DataSm | CommandId::EnquireLink | CommandId::Unbind | CommandId::GenericNack => {
            true
        }
        _ => sender == Role::Esme,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smpp::framing::encode_header_only;
    use crate::smpp::message::{
        response_message_id, submit_sm_resp, ussd_service_op, MoMessage, MtMessage,
    };
    use crate::smpp::test_util::*;
    use proptest::prelude::*;

    const OK: CommandStatus = CommandStatus::EsmeRok;

    fn bind_pdu(mode: BindMode, system_id: &str, password: &str) -> Pdu {
        let mut c = EsmeCredentials::new(system_id, password);
        c.mode = mode;
        c.bind_pdu().expect("bind")
    }

    #[test]
    fn session_can_move_to_a_driver_task() {
        fn assert_send<T: Send>() {}
        assert_send::<Session>();
    }

    #[test]
    fn esme_opens_with_bind_transceiver() {
        let now = Instant::now();
        let mut esme =
            Session::esme(now, Config::default(), EsmeCredentials::new("gw", "secret")).unwrap();
        let out = transmitted(&mut esme);
        assert_eq!(summary(&out), vec![(CommandId::BindTransceiver, OK, 1)]);
        let Some(Pdu::BindTransceiver(b)) = &out[0].body else {
            panic!("not a bind")
        };
        assert_eq!(
            (
                b.system_id.as_str(),
                b.password.as_str(),
                u8::from(b.interface_version)
            ),
            ("gw", "secret", 0x34)
        );
        assert_eq!(esme.poll_timeout(), Some(now + Duration::from_secs(30)));
    }

    #[test]
    fn credentials_too_long_for_the_wire_are_refused() {
        let now = Instant::now();
        let err = Session::esme(
            now,
            Config::default(),
            EsmeCredentials::new("gw", "ninechars"),
        )
        .unwrap_err();
        assert_eq!(
            err,
            SessionError::InvalidCredential {
                field: "password",
                max: 8
            }
        );
    }

    #[test]
    fn bind_succeeds_and_both_sides_report_the_peer() {
        let mut pair = Pair::new(Config::default(), EsmeCredentials::new(SYSTEM_ID, PASSWORD));
        pair.drive();
        assert_eq!(
            pair.esme_events,
            vec![Event::Bound {
                system_id: "smsc".into(),
                mode: BindMode::Transceiver
            }]
        );
        assert_eq!(
            pair.mc_events,
            vec![Event::Bound {
                system_id: "gw".into(),
                mode: BindMode::Transceiver
            }]
        );
        assert_eq!(pair.esme.peer_system_id(), Some("smsc"));
        assert_eq!(pair.mc.peer_system_id(), Some("gw"));
    }

    #[test]
    fn bind_refusals_carry_the_status_and_close() {
        for (system_id, password, status) in [
            ("gw", "wrong", CommandStatus::EsmeRinvpaswd),
            ("nobody", "secret", CommandStatus::EsmeRinvsysid),
        ] {
            let mut pair = Pair::new(Config::default(), EsmeCredentials::new(system_id, password));
            pair.drive();
            let closed = Event::Closed {
                reason: CloseReason::BindRefused(status),
            };
            assert_eq!(
                pair.esme_events,
                vec![closed.clone()],
                "{system_id}/{password}"
            );
            assert_eq!(pair.mc_events, vec![closed], "{system_id}/{password}");
            assert_eq!(
                (pair.esme.state(), pair.mc.state()),
                (State::Closed, State::Closed)
            );
        }
    }

    #[test]
    fn authenticate_accepts_closures() {
        let now = Instant::now();
        let mut mc = Session::mc(now, Config::default(), "smsc", |r: &BindRequest<'_>| {
            if r.mode == BindMode::Receiver {
                Err(BindRefusal::Status(CommandStatus::EsmeRbindfail))
            } else {
                Ok(())
            }
        })
        .unwrap();
        mc.handle_input(now, &encode(4, &bind_pdu(BindMode::Receiver, "a", "b")));
        assert_eq!(
            summary(&transmitted(&mut mc)),
            vec![(CommandId::BindReceiverResp, CommandStatus::EsmeRbindfail, 4)]
        );
        assert_eq!(mc.state(), State::Closed);
    }

    /// One row per PDU the state does not allow: what the peer gets back.
    #[test]
    fn pdus_the_state_does_not_allow_get_invbndsts() {
        let now = Instant::now();
        let rows: Vec<(&str, Session, Pdu, CommandId)> = vec![
            (
                "submit_sm before bind",
                mc_session(now, Config::default()),
                submit_sm("79161234567", "929", b"x"),
                CommandId::SubmitSmResp,
            ),
            (
                "unbind before bind",
                mc_session(now, Config::default()),
                Pdu::Unbind,
                CommandId::UnbindResp,
            ),
            (
                "deliver_sm sent to an MC",
                bound_mc(now, Config::default()),
                deliver_sm("79161234567", "929", b"x"),
                CommandId::DeliverSmResp,
            ),
            (
                "alert_notification sent to an MC",
                bound_mc(now, Config::default()),
                Pdu::AlertNotification(Default::default()),
                CommandId::GenericNack,
            ),
        ];
        for (name, mut session, pdu, reply) in rows {
            let state = session.state();
            session.handle_input(now, &encode(5, &pdu));
            assert_eq!(
                summary(&transmitted(&mut session)),
                vec![(reply, CommandStatus::EsmeRinvbndsts, 5)],
                "{name}"
            );
            assert_eq!(events(&mut session), vec![], "{name}");
            assert_eq!(session.state(), state, "{name}");
        }
    }

    #[test]
    fn deliver_sm_to_a_transmitter_bind_is_refused_both_ways() {
        let mut credentials = EsmeCredentials::new(SYSTEM_ID, PASSWORD);
        credentials.mode = BindMode::Transmitter;
        let mut pair = Pair::new(Config::default(), credentials);
        pair.drive();
        assert_eq!(
            (pair.esme.state(), pair.mc.state()),
            (State::BoundTx, State::BoundTx)
        );
        // Our MC side will not send it…
        let now = pair.now;
        assert_eq!(
            pair.mc
                .send_request(now, deliver_sm("79161234567", "929", b"x")),
            Err(SessionError::InvalidState {
                command_id: CommandId::DeliverSm,
                state: State::BoundTx
            })
        );
        // …and our ESME side refuses it from a misbehaving MC.
        pair.esme
            .handle_input(now, &encode(77, &deliver_sm("79161234567", "929", b"x")));
        assert_eq!(
            summary(&transmitted(&mut pair.esme)),
            vec![(CommandId::DeliverSmResp, CommandStatus::EsmeRinvbndsts, 77)]
        );
    }

    #[test]
    fn second_bind_gets_alybnd_and_the_session_stays_bound() {
        let now = Instant::now();
        let mut mc = bound_mc(now, Config::default());
        mc.handle_input(
            now,
            &encode(9, &bind_pdu(BindMode::Transmitter, SYSTEM_ID, PASSWORD)),
        );
        assert_eq!(
            summary(&transmitted(&mut mc)),
            vec![(
                CommandId::BindTransmitterResp,
                CommandStatus::EsmeRalybnd,
                9
            )]
        );
        assert_eq!(mc.state(), State::BoundTrx);
        assert_eq!(events(&mut mc), vec![]);
    }

    #[test]
    fn enquire_link_is_answered_open_and_bound() {
        let now = Instant::now();
        for mut session in [
            mc_session(now, Config::default()),
            bound_mc(now, Config::default()),
        ] {
            session.handle_input(now, &encode(3, &Pdu::EnquireLink));
            assert_eq!(
                summary(&transmitted(&mut session)),
                vec![(CommandId::EnquireLinkResp, OK, 3)]
            );
        }
    }

    #[test]
    fn unbind_ends_both_sides() {
        let mut pair = Pair::bound(Config::default());
        let now = pair.now;
        pair.esme.unbind(now).unwrap();
        assert_eq!(pair.esme.state(), State::Unbinding);
        // While unbinding, new work is refused.
        assert!(matches!(
            pair.esme
                .send_request(now, submit_sm("929", "79161234567", b"x")),
            Err(SessionError::InvalidState { .. })
        ));
        pair.drive();
        assert_eq!(
            pair.esme_events,
            vec![
                Event::Unbound,
                Event::Closed {
                    reason: CloseReason::LocalUnbind
                }
            ]
        );
        assert_eq!(
            pair.mc_events,
            vec![
                Event::Unbound,
                Event::Closed {
                    reason: CloseReason::PeerUnbind
                }
            ]
        );
    }

    #[test]
    fn unanswered_unbind_times_out() {
        let now = Instant::now();
        let mut mc = bound_mc(now, Config::default());
        mc.unbind(now).unwrap();
        assert_eq!(
            summary(&transmitted(&mut mc)),
            vec![(CommandId::Unbind, OK, 1)]
        );
        mc.handle_timeout(now + Duration::from_secs(30));
        assert_eq!(
            events(&mut mc),
            vec![Event::Closed {
                reason: CloseReason::UnbindTimeout
            }]
        );
    }

    #[test]
    fn inbound_window_overflow_is_throttled() {
        let now = Instant::now();
        let mut mc = bound_mc(now, Config::default());
        let mut burst = Vec::new();
        for seq in 10..=20 {
            burst.extend(encode(seq, &submit_sm("79161234567", "929", b"x")));
        }
        mc.handle_input(now, &burst);
        let requests: Vec<u32> = events(&mut mc)
            .into_iter()
            .map(|e| match e {
                Event::Request { seq, .. } => seq,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(requests, (10..=19).collect::<Vec<_>>());
        assert_eq!(
            summary(&transmitted(&mut mc)),
            vec![(CommandId::SubmitSmResp, CommandStatus::EsmeRthrottled, 20)]
        );
        // Answering one frees a slot.
        mc.respond(10, OK, Some(submit_sm_resp("m-10").unwrap()))
            .unwrap();
        let out = transmitted(&mut mc);
        assert_eq!(summary(&out), vec![(CommandId::SubmitSmResp, OK, 10)]);
        assert_eq!(
            out[0].body.as_ref().and_then(response_message_id),
            Some("m-10")
        );
        mc.handle_input(now, &encode(21, &submit_sm("79161234567", "929", b"x")));
        assert!(matches!(
            events(&mut mc).as_slice(),
            [Event::Request { seq: 21, .. }]
        ));
    }

    #[test]
    fn a_peer_unbind_waits_for_the_answers_it_is_owed() {
        let now = Instant::now();
        let mut mc = bound_mc(now, Config::default());
        let mut input = encode(40, &submit_sm("79161234567", "929", b"x"));
        input.extend(encode(41, &Pdu::Unbind));
        mc.handle_input(now, &input);
        assert!(matches!(
            events(&mut mc).as_slice(),
            [Event::Request { seq: 40, .. }]
        ));
        assert_eq!(
            transmitted(&mut mc),
            vec![],
            "no unbind_resp before the answer"
        );
        assert_eq!(mc.state(), State::Unbinding);
        // Anything new after the unbind is refused.
        mc.handle_input(now, &encode(42, &submit_sm("79161234567", "929", b"y")));
        assert_eq!(
            summary(&transmitted(&mut mc)),
            vec![(CommandId::SubmitSmResp, CommandStatus::EsmeRinvbndsts, 42)]
        );
        // The MO sent again, and the unbind too: neither gets an answer of
        // its own before the real ones.
        let mut again = encode(40, &submit_sm("79161234567", "929", b"x"));
        again.extend(encode(43, &Pdu::Unbind));
        mc.handle_input(now, &again);
        assert_eq!(transmitted(&mut mc), vec![]);
        // The answer goes out, then the unbind_resps, then the session ends.
        mc.respond(40, OK, None).unwrap();
        assert_eq!(
            summary(&transmitted(&mut mc)),
            vec![
                (CommandId::SubmitSmResp, OK, 40),
                (CommandId::UnbindResp, OK, 41),
                (CommandId::UnbindResp, OK, 43)
            ]
        );
        assert_eq!(
            events(&mut mc),
            vec![
                Event::Unbound,
                Event::Closed {
                    reason: CloseReason::PeerUnbind
                }
            ]
        );
    }

    #[test]
    fn a_peer_unbind_is_answered_after_response_timeout_if_the_answer_never_comes() {
        let now = Instant::now();
        let config = Config::default();
        let mut mc = bound_mc(now, config.clone());
        let mut input = encode(50, &submit_sm("79161234567", "929", b"x"));
        input.extend(encode(51, &Pdu::Unbind));
        mc.handle_input(now, &input);
        let _ = events(&mut mc);
        let deadline = now + config.response_timeout;
        assert_eq!(mc.poll_timeout().map(|t| t <= deadline), Some(true));
        mc.handle_timeout(deadline);
        assert_eq!(
            summary(&transmitted(&mut mc)),
            vec![(CommandId::UnbindResp, OK, 51)]
        );
        assert_eq!(mc.state(), State::Closed);
        assert_eq!(mc.respond(50, OK, None), Err(SessionError::Closed));
    }

    #[test]
    fn retransmitted_request_with_a_pending_seq_is_not_handed_over_twice() {
        let now = Instant::now();
        let mut mc = bound_mc(now, Config::default());
        let pdu = encode(30, &submit_sm("79161234567", "929", b"x"));
        mc.handle_input(now, &pdu);
        mc.handle_input(now, &pdu);
        assert_eq!(events(&mut mc).len(), 1);
        assert_eq!(transmitted(&mut mc), vec![]);
        mc.respond(30, OK, None).unwrap();
        assert_eq!(
            summary(&transmitted(&mut mc)),
            vec![(CommandId::SubmitSmResp, OK, 30)]
        );
        assert_eq!(
            mc.respond(30, OK, None),
            Err(SessionError::UnknownSequence { seq: 30 })
        );
    }

    #[test]
    fn respond_checks_the_body_and_drops_it_on_error() {
        let now = Instant::now();
        let mut mc = bound_mc(now, Config::default());
        mc.handle_input(now, &encode(40, &submit_sm("79161234567", "929", b"x")));
        assert_eq!(
            mc.respond(40, OK, Some(Pdu::DeliverSmResp(Default::default()))),
            Err(SessionError::WrongResponse {
                request: CommandId::SubmitSm,
                got: CommandId::DeliverSmResp
            })
        );
        mc.respond(
            40,
            CommandStatus::EsmeRsubmitfail,
            Some(submit_sm_resp("ignored").unwrap()),
        )
        .unwrap();
        let out = transmitted(&mut mc);
        assert_eq!(
            summary(&out),
            vec![(CommandId::SubmitSmResp, CommandStatus::EsmeRsubmitfail, 40)]
        );
        assert_eq!(out[0].header.command_length, 16);
    }

    #[test]
    fn outbound_window_full_is_refused() {
        let now = Instant::now();
        let config = Config {
            send_window_max: 2,
            ..Config::default()
        };
        let mut mc = bound_mc(now, config);
        for _ in 0..2 {
            mc.send_request(now, deliver_sm("929", "79161234567", b"x"))
                .unwrap();
        }
        assert_eq!(
            mc.send_request(now, deliver_sm("929", "79161234567", b"x")),
            Err(SessionError::WindowFull { send_window_max: 2 })
        );
        assert_eq!(
            mc.send_request(now, submit_sm("929", "79161234567", b"x")),
            Err(SessionError::WrongDirection {
                command_id: CommandId::SubmitSm,
                role: Role::Mc
            })
        );
        assert_eq!(
            mc.send_request(now, Pdu::EnquireLink),
            Err(SessionError::NotSendable {
                command_id: CommandId::EnquireLink
            })
        );
    }

    #[test]
    fn response_timeout_then_the_late_response_is_unmatched() {
        let mut pair = Pair::bound(Config::default());
        let seq = pair
            .mc
            .send_request(pair.now, deliver_sm("929", "79161234567", b"hi"))
            .unwrap();
        pair.drive();
        let [Event::Request { seq: esme_seq, .. }] = pair.esme_events.as_slice() else {
            panic!("{:?}", pair.esme_events)
        };
        let esme_seq = *esme_seq;
        pair.advance(Duration::from_secs(29));
        assert!(!pair.mc_events.contains(&Event::ResponseTimeout { seq }));
        pair.advance(Duration::from_secs(1));
        assert!(pair.mc_events.contains(&Event::ResponseTimeout { seq }));
        assert_eq!(pair.mc.outstanding_len(), 0);
        pair.esme.respond(esme_seq, OK, None).unwrap();
        pair.drive();
        assert_eq!(
            pair.mc_events.last(),
            Some(&Event::UnmatchedResponse {
                seq,
                command_id: CommandId::DeliverSmResp,
                status: OK
            })
        );
        // Keepalive ran meanwhile and nobody closed.
        assert_eq!(
            (pair.esme.state(), pair.mc.state()),
            (State::BoundTrx, State::BoundTrx)
        );
    }

    #[test]
    fn keepalive_after_idle_and_close_when_unanswered() {
        let t0 = Instant::now();
        let config = Config {
            enquire_link_interval: Duration::from_secs(10),
            ..Config::default()
        };
        let mut mc = bound_mc(t0, config);
        assert_eq!(mc.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        mc.handle_timeout(t0 + Duration::from_secs(9));
        assert_eq!(transmitted(&mut mc), vec![]);
        let t1 = t0 + Duration::from_secs(10);
        mc.handle_timeout(t1);
        let out = transmitted(&mut mc);
        assert_eq!(summary(&out), vec![(CommandId::EnquireLink, OK, 1)]);
        // The peer answers: alive, next probe an interval after that.
        mc.handle_input(t1, &encode_header_only(CommandId::EnquireLinkResp, OK, 1));
        assert_eq!(mc.poll_timeout(), Some(t1 + Duration::from_secs(10)));
        let t2 = t1 + Duration::from_secs(10);
        mc.handle_timeout(t2);
        assert_eq!(
            summary(&transmitted(&mut mc)),
            vec![(CommandId::EnquireLink, OK, 2)]
        );
        // This time it stays silent.
        mc.handle_timeout(t2 + Duration::from_secs(30));
        assert_eq!(
            events(&mut mc),
            vec![Event::Closed {
                reason: CloseReason::KeepaliveTimeout
            }]
        );
        assert_eq!(mc.poll_timeout(), None);
    }

    #[test]
    fn bind_timeout_closes_an_unbound_connection() {
        let now = Instant::now();
        let mut mc = mc_session(now, Config::default());
        assert_eq!(mc.poll_timeout(), Some(now + Duration::from_secs(30)));
        mc.handle_timeout(now + Duration::from_secs(29));
        assert_eq!(events(&mut mc), vec![]);
        mc.handle_timeout(now + Duration::from_secs(30));
        assert_eq!(
            events(&mut mc),
            vec![Event::Closed {
                reason: CloseReason::BindTimeout
            }]
        );
    }

    #[test]
    fn generic_nack_answers_the_outstanding_request() {
        let now = Instant::now();
        let mut mc = bound_mc(now, Config::default());
        let seq = mc
            .send_request(now, deliver_sm("929", "79161234567", b"x"))
            .unwrap();
        transmitted(&mut mc);
        mc.handle_input(
            now,
            &encode_header_only(CommandId::GenericNack, CommandStatus::EsmeRsyserr, seq),
        );
        assert_eq!(
            events(&mut mc),
            vec![Event::Response {
                seq,
                command_id: CommandId::GenericNack,
                status: CommandStatus::EsmeRsyserr,
                pdu: Some(Pdu::GenericNack)
            }]
        );
        assert_eq!(mc.outstanding_len(), 0);
        assert_eq!(transmitted(&mut mc), vec![], "a nack is never answered");
    }

    #[test]
    fn malformed_response_is_nacked_and_reported() {
        let now = Instant::now();
        let mut mc = bound_mc(now, Config::default());
        let seq = mc
            .send_request(now, deliver_sm("929", "79161234567", b"x"))
            .unwrap();
        transmitted(&mut mc);
        let mut resp = header_bytes(0, 0x8000_0005, 0, seq);
        resp.extend_from_slice(b"abc"); // message_id without its NUL
        fix_len(&mut resp);
        mc.handle_input(now, &resp);
        assert_eq!(
            summary(&transmitted(&mut mc)),
            vec![(CommandId::GenericNack, CommandStatus::EsmeRinvmsgid, seq)]
        );
        let [Event::MalformedResponse { seq: s, status, .. }] = events(&mut mc)[..] else {
            panic!()
        };
        assert_eq!((s, status), (seq, OK));
        assert_eq!(mc.state(), State::BoundTrx);
    }

    #[test]
    fn framing_loss_nacks_aborts_and_closes() {
        let now = Instant::now();
        let mut mc = bound_mc(now, Config::default());
        let seq = mc
            .send_request(now, deliver_sm("929", "79161234567", b"x"))
            .unwrap();
        transmitted(&mut mc);
        mc.handle_input(now, &header_bytes(1 << 20, 0x0000_0004, 0, 66));
        assert_eq!(
            summary(&transmitted(&mut mc)),
            vec![(CommandId::GenericNack, CommandStatus::EsmeRinvcmdlen, 66)]
        );
        let evs = events(&mut mc);
        assert_eq!(evs[0], Event::Aborted { seq });
        assert!(matches!(
            evs[1],
            Event::Closed {
                reason: CloseReason::FramingLost(DecodeError::CommandLengthTooLong { .. })
            }
        ));
        mc.handle_input(now, &encode(67, &Pdu::EnquireLink));
        assert_eq!(transmitted(&mut mc), vec![]);
        assert_eq!(
            mc.send_request(now, deliver_sm("929", "1", b"x")),
            Err(SessionError::Closed)
        );
    }

    #[test]
    fn disconnect_aborts_outstanding_requests() {
        let now = Instant::now();
        let mut mc = bound_mc(now, Config::default());
        let seq = mc
            .send_request(now, deliver_sm("929", "79161234567", b"x"))
            .unwrap();
        mc.handle_disconnect();
        assert_eq!(
            events(&mut mc),
            vec![
                Event::Aborted { seq },
                Event::Closed {
                    reason: CloseReason::Disconnected
                }
            ]
        );
    }

    /// *929# over USSD end to end: the USSD centre (MC) sends a PSSR
    /// indication, the gateway (ESME) answers with a PSSR response in the
    /// same dialogue, and gets the MC's message_id back.
    #[test]
    fn ussd_pssr_round_trip() {
        let mut pair = Pair::bound(Config::default());
        let now = pair.now;
        let indication = MtMessage {
            service_type: "USSD".into(),
            source_addr: "79161234567".into(),
            source_ton: 1,
            source_npi: 1,
            dest_addr: "*929#".into(),
            ussd_service_op: Some(ussd_service_op::PSSR_INDICATION),
            its_session_info: Some(0x1234),
            user_message_reference: Some(7),
            ..MtMessage::default()
        }
        .with_payload(0x0F, b"*929#".to_vec());
        pair.mc
            .send_request(now, indication.to_deliver_sm().unwrap())
            .unwrap();
        pair.drive();
        let [Event::Request { seq, pdu }] = pair.esme_events.as_slice() else {
            panic!("{:?}", pair.esme_events)
        };
        let (mo_seq, mo) = (*seq, MoMessage::from_pdu(pdu).unwrap());
        assert_eq!(
            (
                mo.ussd_service_op,
                mo.its_session_info,
                mo.payload.as_slice()
            ),
            (Some(1), Some(0x1234), &b"*929#"[..])
        );
        assert!(!mo.is_delivery_receipt());

        pair.esme.respond(mo_seq, OK, None).unwrap();
        let answer = MtMessage::reply_to(&mo).with_payload(
            0x08,
            "Пакет обновлён"
                .encode_utf16()
                .flat_map(u16::to_be_bytes)
                .collect(),
        );
        let sent = pair
            .esme
            .send_request(now, answer.to_submit_sm().unwrap())
            .unwrap();
        pair.esme_events.clear();
        pair.drive();
        let got: Vec<MoMessage> = pair
            .mc_events
            .iter()
            .filter_map(|e| match e {
                Event::Request { pdu, .. } => Some(MoMessage::from_pdu(pdu).unwrap()),
                _ => None,
            })
            .collect();
        let [reply] = got.as_slice() else {
            panic!("{:?}", pair.mc_events)
        };
        assert_eq!(reply.ussd_service_op, Some(ussd_service_op::PSSR_RESPONSE));
        assert_eq!(
            (reply.its_session_info, reply.user_message_reference),
            (Some(0x1234), Some(7))
        );
        assert_eq!(
            (
                reply.source_addr.as_str(),
                reply.dest_addr.as_str(),
                reply.dest_ton
            ),
            ("*929#", "79161234567", 1)
        );
        assert_eq!(
            (
                reply.esm_class,
                reply.data_coding,
                reply.service_type.as_str()
            ),
            (0, 0x08, "USSD")
        );
        assert!(pair.mc_events.contains(&Event::Response {
            seq: 1,
            command_id: CommandId::DeliverSmResp,
            status: OK,
            pdu: Some(Pdu::DeliverSmResp(Default::default()))
        }));

        let Some(Event::Request { seq: mc_seq, .. }) = pair.mc_events.last().cloned() else {
            panic!()
        };
        pair.mc
            .respond(mc_seq, OK, Some(submit_sm_resp("msg-1").unwrap()))
            .unwrap();
        pair.drive();
        let [Event::Response {
            seq,
            status,
            pdu: Some(body),
            ..
        }] = pair.esme_events.as_slice()
        else {
            panic!("{:?}", pair.esme_events)
        };
        assert_eq!(
            (*seq, *status, response_message_id(body)),
            (sent, OK, Some("msg-1"))
        );
    }

    #[test]
    fn delivery_receipt_arrives_flagged() {
        let mut pair = Pair::bound(Config::default());
        let receipt = MtMessage {
            esm_class: 0x04,
            receipted_message_id: Some("msg-1".into()),
            ..mt("79161234567", "929", b"id:msg-1 stat:DELIVRD")
        };
        pair.mc
            .send_request(pair.now, receipt.to_deliver_sm().unwrap())
            .unwrap();
        pair.drive();
        let [Event::Request { pdu, .. }] = pair.esme_events.as_slice() else {
            panic!()
        };
        let mo = MoMessage::from_pdu(pdu).unwrap();
        assert!(mo.is_delivery_receipt());
        assert_eq!(mo.receipted_message_id.as_deref(), Some("msg-1"));
    }

    #[test]
    fn sequence_numbers_wrap_and_skip_outstanding() {
        let now = Instant::now();
        let mut mc = bound_mc(now, Config::default());
        mc.next_seq = SEQ_MAX;
        let a = mc.send_request(now, deliver_sm("929", "1", b"x")).unwrap();
        let b = mc.send_request(now, deliver_sm("929", "1", b"x")).unwrap();
        mc.next_seq = a;
        let c = mc.send_request(now, deliver_sm("929", "1", b"x")).unwrap();
        assert_eq!((a, b, c), (SEQ_MAX, 1, 2));
    }

    proptest! {
        #[test]
        fn random_input_never_panics(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            chunk in 1usize..128,
            bound in any::<bool>(),
        ) {
            let now = Instant::now();
            let config = Config { pdu_len_max: 512, ..Config::default() };
            let mut mc = if bound { bound_mc(now, config) } else { mc_session(now, config) };
            for piece in data.chunks(chunk) {
                mc.handle_input(now, piece);
                // At most one answer per 16 octets received.
                let mut n = 0;
                while mc.poll_transmit().is_some() { n += 1; }
                prop_assert!(n <= piece.len() / 16 + 1);
            }
            // Whatever it was fed, a silent peer is closed by the timers.
            for _ in 0..10 {
                let Some(t) = mc.poll_timeout() else { break };
                mc.handle_timeout(t);
            }
            prop_assert_eq!(mc.state(), State::Closed);
        }
    }
}

//! The network side of the gateway, for tools and tests: an async SMPP
//! ESME that binds to the gateway's listener ([`EsmePeer`], a USSDC or an
//! SMSC that binds to an application), and a fake SMSC the gateway binds to
//! ([`McListener`] / [`McPeer`]).
//!
//! Both drive the protocol crate's sans-IO [`Session`] over a tokio TCP
//! stream. Incoming messages (deliver_sm to the ESME, submit_sm to the MC)
//! are acknowledged with ESME_ROK at once and surface as [`PeerEvent::Mt`];
//! responses to what the peer sent surface as [`PeerEvent::Response`].
//! Used by the replay tool's `--wire` mode and the end-to-end tests; it is
//! test equipment, never a production path.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use shortcode_protocol::segment;
use shortcode_protocol::smpp::{
    deliver_sm_resp, submit_sm_resp, ussd_service_op, BindMode, CloseReason, CommandId,
    CommandStatus, EsmeCredentials, Event, MoMessage, MtMessage, Pdu, PeerTable, Session, State,
};
use shortcode_protocol::text;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out waiting for the peer")]
    Timeout,
    #[error("bind refused: {0:?}")]
    BindRefused(CommandStatus),
    #[error("session closed: {0}")]
    Closed(String),
    #[error("session: {0}")]
    Session(String),
}

/// Something the other side did.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerEvent {
    /// The response to a request we sent (by sequence number).
    Response {
        seq: u32,
        command_id: CommandId,
        status: CommandStatus,
        pdu: Option<Pdu>,
    },
    /// A message the other side sent us (already acknowledged).
    Mt(MoMessage),
    /// The session is over.
    Closed(String),
}

/// One TCP connection under a session: what both peers share
/// ([`EsmePeer`] and [`McPeer`] dereference to it).
pub struct Link {
    stream: TcpStream,
    session: Session,
    events: VecDeque<PeerEvent>,
    message_ids: u64,
    buf: Vec<u8>,
    closed: Option<CloseReason>,
    /// Answer incoming messages with ESME_ROK at once (the default); off,
    /// they stay unanswered (a peer that drops the link before acking).
    auto_ack: bool,
}

impl Link {
    fn new(stream: TcpStream, session: Session) -> Link {
        let _ = stream.set_nodelay(true);
        Link {
            stream,
            session,
            events: VecDeque::new(),
            message_ids: 0,
            buf: vec![0; 16 * 1024],
            closed: None,
            auto_ack: true,
        }
    }

    /// Turn session events into peer events; answer incoming messages.
    fn collect(&mut self) -> Option<(String, BindMode)> {
        let mut bound = None;
        while let Some(ev) = self.session.poll_event() {
            match ev {
                Event::Bound { system_id, mode } => bound = Some((system_id, mode)),
                Event::Request { seq, pdu } => {
                    if self.auto_ack {
                        let body = match pdu.command_id() {
                            CommandId::SubmitSm => {
                                self.message_ids += 1;
                                submit_sm_resp(&format!("m{}", self.message_ids)).ok()
                            }
                            CommandId::DeliverSm => Some(deliver_sm_resp()),
                            _ => None,
                        };
                        let _ = self.session.respond(seq, CommandStatus::EsmeRok, body);
                    }
                    if let Ok(mo) = MoMessage::from_pdu(&pdu) {
                        self.events.push_back(PeerEvent::Mt(mo));
                    }
                }
                Event::Response {
                    seq,
                    command_id,
                    status,
                    pdu,
                } => self.events.push_back(PeerEvent::Response {
                    seq,
                    command_id,
                    status,
                    pdu,
                }),
                Event::ResponseTimeout { seq } | Event::Aborted { seq } => {
                    self.events.push_back(PeerEvent::Response {
                        seq,
                        command_id: CommandId::GenericNack,
                        status: CommandStatus::EsmeRsyserr,
                        pdu: None,
                    })
                }
                Event::MalformedResponse { seq, status, .. } => {
                    self.events.push_back(PeerEvent::Response {
                        seq,
                        command_id: CommandId::GenericNack,
                        status,
                        pdu: None,
                    })
                }
                // Answers to raw PDUs written past the session (tests).
                Event::UnmatchedResponse {
                    seq,
                    command_id,
                    status,
                } => self.events.push_back(PeerEvent::Response {
                    seq,
                    command_id,
                    status,
                    pdu: None,
                }),
                Event::Unbound => {}
                Event::Closed { reason } => {
                    self.events
                        .push_back(PeerEvent::Closed(format!("{reason:?}")));
                    self.closed = Some(reason);
                }
            }
        }
        bound
    }

    async fn flush(&mut self) -> Result<(), PeerError> {
        while let Some(bytes) = self.session.poll_transmit() {
            if let Err(e) = self.stream.write_all(&bytes).await {
                if matches!(self.session.state(), State::Unbinding | State::Closed) {
                    // The other side closed after our unbind (e.g. while we
                    // acknowledged a message it sent just before): the
                    // session is over whatever we still had to say.
                    while self.session.poll_transmit().is_some() {}
                    return Ok(());
                }
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// One round: write what is queued, then read or wait for a timer,
    /// at most until `deadline`.
    async fn turn(&mut self, deadline: Instant) -> Result<Option<(String, BindMode)>, PeerError> {
        self.flush().await?;
        let timer = self
            .session
            .poll_timeout()
            .map(Instant::from_std)
            .map_or(deadline, |t| t.min(deadline));
        tokio::select! {
            r = self.stream.read(&mut self.buf) => match r {
                Ok(0) | Err(_) => self.session.handle_disconnect(),
                Ok(n) => self.session.handle_input(Instant::now().into_std(), &self.buf[..n]),
            },
            _ = tokio::time::sleep_until(timer) => {
                self.session.handle_timeout(Instant::now().into_std());
            }
        }
        let bound = self.collect();
        self.flush().await?;
        Ok(bound)
    }

    async fn wait_bound(&mut self, timeout: Duration) -> Result<(String, BindMode), PeerError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(b) = self.turn(deadline).await? {
                return Ok(b);
            }
            match &self.closed {
                Some(CloseReason::BindRefused(status)) => {
                    return Err(PeerError::BindRefused(*status))
                }
                Some(other) => return Err(PeerError::Closed(format!("{other:?}"))),
                None => {}
            }
            if Instant::now() >= deadline {
                return Err(PeerError::Timeout);
            }
        }
    }

    /// Send a request (e.g. `mo.to_submit_sm()`); its response comes as an event.
    pub async fn send(&mut self, pdu: Pdu) -> Result<u32, PeerError> {
        let seq = self
            .session
            .send_request(Instant::now().into_std(), pdu)
            .map_err(|e| PeerError::Session(e.to_string()))?;
        self.flush().await?;
        Ok(seq)
    }

    /// The next event, waiting at most `timeout`.
    pub async fn next_event(&mut self, timeout: Duration) -> Result<PeerEvent, PeerError> {
        self.wait_for(timeout, |_| true).await
    }

    /// The first event (queued or still to come) that `want` accepts;
    /// events it skips stay queued, in order, for later calls.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        mut want: impl FnMut(&PeerEvent) -> bool,
    ) -> Result<PeerEvent, PeerError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(ev) = self
                .events
                .iter()
                .position(&mut want)
                .and_then(|i| self.events.remove(i))
            {
                return Ok(ev);
            }
            if let Some(r) = &self.closed {
                return Err(PeerError::Closed(format!("{r:?}")));
            }
            if Instant::now() >= deadline {
                return Err(PeerError::Timeout);
            }
            self.turn(deadline).await?;
        }
    }

    async fn unbind(&mut self, timeout: Duration) -> Result<(), PeerError> {
        self.session
            .unbind(Instant::now().into_std())
            .map_err(|e| PeerError::Session(e.to_string()))?;
        let deadline = Instant::now() + timeout;
        while self.closed.is_none() {
            if Instant::now() >= deadline {
                return Err(PeerError::Timeout);
            }
            self.turn(deadline).await?;
        }
        self.flush().await?;
        Ok(())
    }
}

/// How long binds and unbinds may take.
const HANDSHAKE: Duration = Duration::from_secs(5);

/// An ESME bound to the gateway's listener: sends MO as submit_sm and
/// receives the gateway's answers as deliver_sm.
pub struct EsmePeer {
    link: Link,
}

impl EsmePeer {
    /// Connect and bind as a transceiver.
    pub async fn connect(
        addr: SocketAddr,
        system_id: &str,
        password: &str,
    ) -> Result<EsmePeer, PeerError> {
        Self::connect_mode(addr, system_id, password, BindMode::Transceiver).await
    }

    pub async fn connect_mode(
        addr: SocketAddr,
        system_id: &str,
        password: &str,
        mode: BindMode,
    ) -> Result<EsmePeer, PeerError> {
        let stream = TcpStream::connect(addr).await?;
        let mut creds = EsmeCredentials::new(system_id, password);
        creds.mode = mode;
        let session = Session::esme(
            Instant::now().into_std(),
            shortcode_protocol::smpp::Config::default(),
            creds,
        )
        .map_err(|e| PeerError::Session(e.to_string()))?;
        let mut link = Link::new(stream, session);
        link.wait_bound(HANDSHAKE).await?;
        Ok(EsmePeer { link })
    }

    pub async fn unbind(mut self) -> Result<(), PeerError> {
        self.link.unbind(HANDSHAKE).await
    }

    /// Unbind, then hand back the TCP stream (to watch the other side
    /// close it).
    pub async fn unbind_keep_stream(mut self) -> Result<TcpStream, PeerError> {
        self.link.unbind(HANDSHAKE).await?;
        match self.link.closed {
            Some(CloseReason::LocalUnbind) => Ok(self.link.stream),
            other => Err(PeerError::Closed(format!("no unbind_resp: {other:?}"))),
        }
    }
}

/// A fake SMSC/USSDC the gateway binds to (its ESME role).
pub struct McListener {
    listener: TcpListener,
    peers: PeerTable,
}

impl McListener {
    /// Listen on loopback, any free port.
    pub async fn bind(system_id: &str, password: &str) -> Result<McListener, PeerError> {
        Ok(McListener {
            listener: TcpListener::bind("127.0.0.1:0").await?,
            peers: PeerTable::new().with_peer(system_id, password),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Accept the gateway's connection and its bind.
    pub async fn accept(&self, timeout: Duration) -> Result<McPeer, PeerError> {
        let (stream, _) = tokio::time::timeout(timeout, self.listener.accept())
            .await
            .map_err(|_| PeerError::Timeout)??;
        let session = Session::mc(
            Instant::now().into_std(),
            shortcode_protocol::smpp::Config::default(),
            "fake-smsc",
            self.peers.clone(),
        )
        .map_err(|e| PeerError::Session(e.to_string()))?;
        let mut link = Link::new(stream, session);
        let (system_id, mode) = link.wait_bound(HANDSHAKE).await?;
        Ok(McPeer {
            link,
            system_id,
            mode,
        })
    }
}

/// The fake SMSC's side of one bind from the gateway: sends MO as
/// deliver_sm, receives answers as submit_sm.
pub struct McPeer {
    link: Link,
    pub system_id: String,
    pub mode: BindMode,
}

impl McPeer {
    /// Drop the TCP connection without unbinding (a link failure).
    pub fn drop_link(self) {}

    pub async fn unbind(mut self) -> Result<(), PeerError> {
        self.link.unbind(HANDSHAKE).await
    }
}

impl Link {
    /// Collect events until `want` says stop or `timeout` passes.
    pub async fn collect_until(
        &mut self,
        timeout: Duration,
        mut want: impl FnMut(&[PeerEvent]) -> bool,
    ) -> Vec<PeerEvent> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while !want(&got) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left).await {
                Ok(ev) => got.push(ev),
                Err(_) => break,
            }
        }
        got
    }

    /// With `false`, incoming messages are reported but not answered (to
    /// drop the link before acknowledging them).
    pub fn set_auto_ack(&mut self, on: bool) {
        self.auto_ack = on;
    }

    /// Write raw bytes past the session (malformed PDUs for tests); the
    /// gateway's answers still come back as events.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), PeerError> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    pub fn session(&self) -> &Session {
        &self.session
    }
}

macro_rules! deref_to_link {
    ($t:ty) => {
        impl std::ops::Deref for $t {
            type Target = Link;
            fn deref(&self) -> &Link {
                &self.link
            }
        }
        impl std::ops::DerefMut for $t {
            fn deref_mut(&mut self) -> &mut Link {
                &mut self.link
            }
        }
    };
}
deref_to_link!(EsmePeer);
deref_to_link!(McPeer);

/// A USSD request as the network sends it: PSSR indication from `msisdn`.
pub fn ussd_request(msisdn: &str, text: &str, session_info: u16) -> MtMessage {
    let enc = text::encode_reply(text);
    MtMessage {
        service_type: "USSD".into(),
        source_addr: msisdn.into(),
        source_ton: 1,
        source_npi: 1,
        dest_addr: "929".into(),
        ussd_service_op: Some(ussd_service_op::PSSR_INDICATION),
        its_session_info: Some(session_info),
        ..MtMessage::default()
    }
    .with_payload(enc.data_coding, enc.bytes)
}

/// An SMS from `msisdn` to `to`, split into concatenated parts when long.
pub fn sms_parts(msisdn: &str, to: &str, text: &str, reference: u8) -> Vec<MtMessage> {
    let seg = match segment::segment(text, reference) {
        Ok(s) => s,
        Err(_) => return Vec::new(),
    };
    seg.parts
        .iter()
        .map(|p| MtMessage {
            source_addr: msisdn.into(),
            source_ton: 1,
            source_npi: 1,
            dest_addr: to.into(),
            esm_class: seg.esm_class(0),
            data_coding: seg.data_coding,
            payload: p.short_message(),
            ..MtMessage::default()
        })
        .collect()
}

/// The text of a received message (decoded by its data_coding; a UDH is
/// stripped).
pub fn mt_text(mo: &MoMessage) -> String {
    let body = if mo.has_udh() {
        segment::split_udh(&mo.payload).map_or(&mo.payload[..], |(_, rest)| rest)
    } else {
        &mo.payload[..]
    };
    text::decode_short_message(mo.data_coding, body)
}

//! `--wire`: the same scenarios over real SMPP on loopback.
//!
//! This module owns the wire [`Driver`]: it starts the gateway's own
//! [`Server`] over a fresh store, with a [`ManualClock`] it sets before each
//! step, so time follows the fixture exactly as in-process. Replay plays
//! the network, in either of the gateway's two roles ([`Role`]):
//! - the gateway listens (its MC role, on 127.0.0.1, any free port) and
//!   replay binds to it as an ESME ([`EsmePeer`]): each MO goes out as a
//!   submit_sm, the USSD answer and every SMS come back as deliver_sm;
//! - the gateway binds out (`[connect]`, its ESME role) to replay playing
//!   the SMSC ([`McListener`] / [`McPeer`]): each MO goes out as a
//!   deliver_sm, the answers come back as submit_sm.
//!
//! Operator steps and the nightly run go through the running server's one
//! engine queue ([`Server::execute`]), so they are ordered with the traffic
//! as in production.
//!
//! SMPP carries no outcome code, so the wire run reads each request's
//! outcome from the request journal (G5), the gateway's own record of it;
//! the reply and SMS texts are what actually arrived over the socket.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use shortcode_protocol::segment;
use shortcode_protocol::smpp::{ussd_service_op, MoMessage, MtMessage};
use shortcode_protocol::text;

use super::fixture::{Scenario, TrafficKind};
use super::run::{fresh_gateway, status_name, Driver, Fatal, Traffic};
use crate::config::{Config, ConnectConfig, ListenConfig, PeerConfig};
use crate::engine::model::Channel;
use crate::engine::{Applied, Command};
use crate::gateway::Request;
use crate::peer::{mt_text, EsmePeer, McListener, McPeer, PeerError, PeerEvent};
use crate::server::{Clock, ManualClock, Server};
use crate::store::Store;

/// The credentials replay binds with (the server under replay accepts only them).
const SYSTEM_ID: &str = "replay";
const PASSWORD: &str = "replay";
/// How long one response or USSD answer may take before the run gives up.
const ANSWER_WAIT: Duration = Duration::from_secs(15);
/// How long the outbox may take to deliver a step's SMS. The server's
/// connection retries the outbox every 2 s when it missed a signal.
const SMS_WAIT: Duration = Duration::from_secs(20);
/// A quiet spell that, with an empty outbox, means a step's SMS are all in.
const QUIET: Duration = Duration::from_millis(20);

/// Which side of the link the gateway under replay is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The gateway listens; replay binds to it as an ESME.
    GatewayListens,
    /// The gateway binds out to replay, which plays the SMSC.
    GatewayConnects,
}

/// Replay's end of the SMPP link, in either role.
enum Peer {
    Esme(EsmePeer),
    Mc(McPeer),
}

impl Peer {
    /// An MO as this role sends it: submit_sm from an ESME, deliver_sm from an MC.
    async fn send(&mut self, m: &MtMessage) -> Result<u32, Fatal> {
        let pdu = match self {
            Peer::Esme(_) => m.to_submit_sm(),
            Peer::Mc(_) => m.to_deliver_sm(),
        }
        .map_err(|e| format!("building the MO PDU: {e}"))?;
        match self {
            Peer::Esme(p) => p.send(pdu).await,
            Peer::Mc(p) => p.send(pdu).await,
        }
        .map_err(peer_err)
    }

    async fn next_event(&mut self, timeout: Duration) -> Result<PeerEvent, PeerError> {
        match self {
            Peer::Esme(p) => p.next_event(timeout).await,
            Peer::Mc(p) => p.next_event(timeout).await,
        }
    }

    async fn wait_for(
        &mut self,
        timeout: Duration,
        want: impl FnMut(&PeerEvent) -> bool,
    ) -> Result<PeerEvent, PeerError> {
        match self {
            Peer::Esme(p) => p.wait_for(timeout, want).await,
            Peer::Mc(p) => p.wait_for(timeout, want).await,
        }
    }

    async fn unbind(self) -> Result<(), PeerError> {
        match self {
            Peer::Esme(p) => p.unbind().await,
            Peer::Mc(p) => p.unbind().await,
        }
    }
}

pub struct Wire {
    // Dropped last: the server and the peer need it to shut down.
    rt: tokio::runtime::Runtime,
    server: Option<Server>,
    peer: Option<Peer>,
    clock: Arc<ManualClock>,
    store: Arc<dyn Store>,
}

impl Wire {
    pub fn new(scenario: &Scenario, config: &Config, role: Role) -> Result<Wire, Fatal> {
        let gateway = fresh_gateway(scenario, config)?;
        let store = gateway.store().clone();
        let clock = Arc::new(ManualClock::new(scenario.start));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("starting the runtime: {e}"))?;
        let server_clock: Arc<dyn Clock> = clock.clone();
        let mut cfg = config.clone();
        // The fixture's own steps run the nightly, on its clock.
        cfg.service.nightly_at = "off".into();
        let (server, peer) = rt.block_on(async {
            match role {
                Role::GatewayListens => {
                    cfg.listen = Some(ListenConfig {
                        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                        peers: vec![PeerConfig {
                            system_id: SYSTEM_ID.into(),
                            password: PASSWORD.into(),
                        }],
                    });
                    cfg.connect = None;
                    let server = Server::start(gateway, &cfg, server_clock)
                        .await
                        .map_err(|e| format!("starting the gateway: {e}"))?;
                    let Some(addr) = server.local_addr else {
                        server.shutdown().await;
                        return Err("the gateway did not listen".to_string());
                    };
                    match EsmePeer::connect(addr, SYSTEM_ID, PASSWORD).await {
                        Ok(peer) => Ok((server, Peer::Esme(peer))),
                        Err(e) => {
                            server.shutdown().await;
                            Err(format!("binding to the gateway at {addr}: {e}"))
                        }
                    }
                }
                Role::GatewayConnects => {
                    let smsc = McListener::bind(SYSTEM_ID, PASSWORD)
                        .await
                        .map_err(|e| format!("listening as the SMSC: {e}"))?;
                    cfg.listen = None;
                    cfg.connect = Some(ConnectConfig {
                        addr: smsc.local_addr().to_string(),
                        system_id: SYSTEM_ID.into(),
                        password: PASSWORD.into(),
                        ..ConnectConfig::default()
                    });
                    let server = Server::start(gateway, &cfg, server_clock)
                        .await
                        .map_err(|e| format!("starting the gateway: {e}"))?;
                    match smsc.accept(ANSWER_WAIT).await {
                        Ok(peer) => Ok((server, Peer::Mc(peer))),
                        Err(e) => {
                            server.shutdown().await;
                            Err(format!("waiting for the gateway to bind: {e}"))
                        }
                    }
                }
            }
        })?;
        Ok(Wire {
            rt,
            server: Some(server),
            peer: Some(peer),
            clock,
            store,
        })
    }
}

fn peer_err(e: PeerError) -> Fatal {
    format!("SMPP: {e}")
}

impl Driver for Wire {
    fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn set_time(&mut self, now: DateTime<Utc>) {
        self.clock.set(now);
    }

    fn traffic(
        &mut self,
        _kind: TrafficKind,
        messages: &[MtMessage],
        _now: DateTime<Utc>,
    ) -> Result<Traffic, Fatal> {
        let store = self.store.clone();
        let peer = self.peer.as_mut().ok_or("the SMPP link is gone")?;
        self.rt.block_on(async {
            let journal_before = store.journal(None).map_err(|e| e.to_string())?.len();
            let mut out = Traffic::default();
            for m in messages {
                let seq = peer.send(m).await?;
                let response = peer
                    .wait_for(
                        ANSWER_WAIT,
                        |ev| matches!(ev, PeerEvent::Response { seq: s, .. } if *s == seq),
                    )
                    .await
                    .map_err(|e| format!("no response to the MO: {e}"))?;
                if let PeerEvent::Response { status, .. } = response {
                    out.status = status_name(status);
                }
            }
            // The response comes after the commit (G3): the journal already
            // says what the request was.
            let journal = store.journal(None).map_err(|e| e.to_string())?;
            let new = journal.get(journal_before..).unwrap_or_default();
            out.outcome = new.last().map(|l| l.outcome);
            let ussd = new.iter().any(|l| l.channel == Channel::Ussd);
            if ussd {
                let answer = peer
                    .wait_for(ANSWER_WAIT, |ev| {
                        matches!(ev, PeerEvent::Mt(m)
                            if m.ussd_service_op == Some(ussd_service_op::PSSR_RESPONSE))
                    })
                    .await
                    .map_err(|e| format!("no USSD answer: {e}"))?;
                if let PeerEvent::Mt(m) = answer {
                    out.reply = Some(mt_text(&m));
                }
            }
            (out.sms, out.sms_parts) = collect_sms(peer, store.as_ref()).await?;
            if !ussd && out.outcome.is_some() {
                out.reply = out.sms.first().cloned();
            }
            Ok(out)
        })
    }

    fn execute(&mut self, request: Request) -> Result<Result<Applied, String>, Fatal> {
        let server = self.server.as_ref().ok_or("the gateway is stopped")?;
        Ok(self
            .rt
            .block_on(server.execute(request))
            .map_err(|e| e.to_string()))
    }

    fn nightly(
        &mut self,
        date: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<Result<(), String>, Fatal> {
        // The server's queue takes one account per request; the nightly
        // command is per account in the engine too (Gateway::nightly is
        // the same loop, committed in chunks).
        let server = self.server.as_ref().ok_or("the gateway is stopped")?;
        let store = self.store.clone();
        self.rt.block_on(async {
            let mut after: Option<String> = None;
            loop {
                let chunk = store
                    .accounts_after(after.as_deref(), 1000)
                    .map_err(|e| e.to_string())?;
                let Some(last) = chunk.last() else { break };
                after = Some(last.account.msisdn.clone());
                for st in chunk {
                    let request = Request {
                        msisdn: st.account.msisdn,
                        command: Command::Nightly { date },
                        now,
                    };
                    if let Err(e) = server.execute(request).await {
                        return Ok(Err(e.to_string()));
                    }
                }
            }
            Ok(Ok(()))
        })
    }

    fn finish(&mut self) {
        let peer = self.peer.take();
        let server = self.server.take();
        self.rt.block_on(async {
            if let Some(peer) = peer {
                let _ = peer.unbind().await;
            }
            if let Some(server) = server {
                server.shutdown().await;
            }
        });
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        if self.server.is_some() || self.peer.is_some() {
            self.finish();
        }
    }
}

/// The SMS a step made the gateway send, with how many parts each came
/// in: read until the outbox is empty and the link has been quiet, joining
/// concatenated parts.
async fn collect_sms(
    peer: &mut Peer,
    store: &dyn Store,
) -> Result<(Vec<String>, Vec<usize>), Fatal> {
    let deadline = tokio::time::Instant::now() + SMS_WAIT;
    let mut texts = Vec::new();
    let mut counts = Vec::new();
    // (sender, reference, total) → seq → text.
    let mut partial: BTreeMap<(String, u16, u8), BTreeMap<u8, String>> = BTreeMap::new();
    loop {
        match peer.next_event(QUIET).await {
            Ok(PeerEvent::Mt(m)) => {
                if m.ussd_service_op.is_some() {
                    // A USSD answer belongs to the request that asked for it.
                    continue;
                }
                match concat_part(&m) {
                    None => {
                        texts.push(mt_text(&m));
                        counts.push(1);
                    }
                    Some((reference, total, seq, body)) => {
                        let key = (m.source_addr.clone(), reference, total);
                        let parts = partial.entry(key.clone()).or_default();
                        parts.insert(seq, body);
                        if parts.len() == usize::from(total) {
                            let whole: String = parts.values().map(String::as_str).collect();
                            partial.remove(&key);
                            texts.push(whole);
                            counts.push(usize::from(total));
                        }
                    }
                }
            }
            Ok(PeerEvent::Response { .. }) => {}
            Ok(PeerEvent::Closed(reason)) => return Err(format!("SMPP link closed: {reason}")),
            Err(PeerError::Timeout) => {
                let queued = store.outbox(1).map_err(|e| e.to_string())?;
                if queued.is_empty() && partial.is_empty() {
                    return Ok((texts, counts));
                }
            }
            Err(e) => return Err(peer_err(e)),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "SMS still undelivered after {} s",
                SMS_WAIT.as_secs()
            ));
        }
    }
}

/// A part of a concatenated SMS: (reference, total, seq, decoded text).
fn concat_part(m: &MoMessage) -> Option<(u16, u8, u8, String)> {
    if !m.has_udh() {
        return None;
    }
    let (udh, body) = segment::split_udh(&m.payload).ok()?;
    let c = udh.concat.filter(|c| c.total > 1)?;
    Some((
        c.reference,
        c.total,
        c.seq,
        text::decode_short_message(m.data_coding, body),
    ))
}

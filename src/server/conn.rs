//! One SMPP connection, either role: drives the sans-IO [`Session`] over a
//! TCP stream and connects it to the engine queue and the outbox.
//!
//! The loop (mini-redis style) `select!`s between socket input, finished
//! engine requests, the session's next timer, the outbox signal and the
//! shutdown signal. It writes everything the session queued after each
//! step. An MO is answered (`*_resp`) only when its engine result is
//! committed (G3); a USSD answer follows in the same session right after.
//!
//! Graceful shutdown: stop taking requests from the network (new ones get
//! ESME_RTHROTTLED, so the peer retries elsewhere or later; that includes
//! those already in our socket buffer), finish the ones in flight and the
//! MT they queued (USSD answers, outbox parts), unbind, wait for
//! unbind_resp (bounded), close. A session not bound yet closes at once.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use shortcode_protocol::segment;
use shortcode_protocol::smpp::{
    data_sm_resp, deliver_sm_resp, submit_sm_resp, BindMode, CommandStatus, Event, MessageCommand,
    MoMessage, MtMessage, Pdu, Role, Session, SessionError, State,
};
use shortcode_protocol::text;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::mo::MoAction;
use super::queue::QueueError;
use super::Shared;
use crate::engine::model::{Channel, Notice};
use crate::engine::Applied;

/// An engine request that finished, back in its connection.
struct Done {
    seq: u32,
    command: MessageCommand,
    ussd: Option<MoMessage>,
    msisdn: String,
    channel: Channel,
    started: Instant,
    result: Result<Applied, QueueError>,
}

/// What an MT we sent was for.
#[derive(Debug, Clone, Copy)]
enum MtPurpose {
    /// The USSD answer: nothing to do when it is acknowledged.
    UssdAnswer,
    /// Part of an outbox SMS.
    Outbox { id: u64 },
}

/// Outbox SMS this connection is sending: parts still unacknowledged.
struct OutboxSend {
    parts_left: usize,
    failed: bool,
}

/// How long a graceful close waits for in-flight work and unbind_resp.
const DRAIN_MAX: Duration = Duration::from_secs(10);
/// Outbox entries read per pump.
const OUTBOX_BATCH: usize = 32;
/// Retry pause for outbox entries that failed or found no window.
const OUTBOX_RETRY: Duration = Duration::from_secs(2);
/// How long a draining link keeps reading before it unbinds, so requests
/// already on the wire are answered rather than cut off by our unbind.
const DRAIN_QUIET: Duration = Duration::from_millis(50);

/// How a connection ended.
pub(crate) struct ConnEnd {
    pub(crate) reason: String,
    pub(crate) was_bound: bool,
}

/// The byte stream a connection runs over: TCP today; a TLS stream wraps
/// the TCP one without touching anything else here.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

pub(crate) struct Conn<S> {
    id: u64,
    routed_tx: mpsc::UnboundedSender<MtMessage>,
    routed_rx: mpsc::UnboundedReceiver<MtMessage>,
    shared: Arc<Shared>,
    session: Session,
    stream: S,
    peer: String,
    /// MT PDUs waiting for room in the session's send window.
    pending_mt: VecDeque<(Pdu, MtPurpose)>,
    sent_mt: HashMap<u32, MtPurpose>,
    outbox: HashMap<u64, OutboxSend>,
    in_flight: usize,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    draining: bool,
    drain_deadline: Option<Instant>,
    unbind_after: Option<Instant>,
    last_rx: Instant,
    bound_mode: Option<BindMode>,
}

impl<S: Transport> Conn<S> {
    pub(crate) fn new(shared: Arc<Shared>, session: Session, stream: S, peer: String) -> Conn<S> {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (routed_tx, routed_rx) = mpsc::unbounded_channel();
        Conn {
            id: shared
                .conn_ids
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            routed_tx,
            routed_rx,
            shared,
            session,
            stream,
            peer,
            pending_mt: VecDeque::new(),
            sent_mt: HashMap::new(),
            outbox: HashMap::new(),
            in_flight: 0,
            done_tx,
            done_rx,
            draining: false,
            drain_deadline: None,
            unbind_after: None,
            last_rx: Instant::now(),
            bound_mode: None,
        }
    }

    /// Can this bind carry MT (answers and outbox SMS) towards the peer?
    fn carries_mt(&self) -> bool {
        match (self.session.role(), self.bound_mode) {
            // We are the MC: deliver_sm goes to a receiver or transceiver.
            (Role::Mc, Some(m)) => m != BindMode::Transmitter,
            // We are the ESME: submit_sm needs a transmitter or transceiver.
            (Role::Esme, Some(m)) => m != BindMode::Receiver,
            (_, None) => false,
        }
    }

    fn mt_pdu(&self, mt: &MtMessage) -> Option<Pdu> {
        let built = match self.session.role() {
            Role::Mc => mt.to_deliver_sm(),
            Role::Esme => mt.to_submit_sm(),
        };
        match built {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!(peer = %self.peer, error = %e, "cannot build MT");
                None
            }
        }
    }

    /// Run until the session closes. Returns the close reason for logs.
    pub(crate) async fn run(mut self, shutdown: watch::Receiver<bool>) -> ConnEnd {
        let reason = self.drive(shutdown).await;
        self.shared.remove_route(self.id);
        ConnEnd {
            reason,
            was_bound: self.bound_mode.is_some(),
        }
    }

    async fn drive(&mut self, mut shutdown: watch::Receiver<bool>) -> String {
        let mut buf = vec![0u8; 16 * 1024];
        let idle = Duration::from_millis(self.shared.smpp.idle_timeout_ms);
        let mut outbox_signal = self.shared.engine.outbox.subscribe();
        let mut retry = tokio::time::interval(OUTBOX_RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The server dropped without `shutdown`: stop as if it had been called.
        let mut server_gone = false;
        loop {
            if let Some(reason) = self.step().await {
                return reason;
            }
            if (server_gone || *shutdown.borrow()) && !self.draining {
                self.draining = true;
                let now = Instant::now();
                self.drain_deadline = Some(now + DRAIN_MAX);
                // What the peer sent before we stop is still read and
                // answered (throttled if new) during a short quiet period,
                // not left behind our unbind unanswered.
                self.unbind_after = Some(now + DRAIN_QUIET);
                continue;
            }
            let quiet = self.unbind_after.is_none_or(|t| Instant::now() >= t);
            if self.draining && quiet && self.drained() {
                let state = self.session.state();
                if state.is_bound() || state == State::Open {
                    // Bound: unbind and wait for unbind_resp. Open (no bind
                    // yet, or ours still unanswered): close at once.
                    let _ = self.session.unbind(Instant::now().into_std());
                    continue;
                }
            }
            let timer = self
                .session
                .poll_timeout()
                .map(Instant::from_std)
                .into_iter()
                .chain(self.drain_deadline)
                .chain(self.unbind_after.filter(|t| *t > Instant::now()))
                .chain(Some(self.last_rx + idle))
                .min()
                .unwrap_or_else(|| Instant::now() + idle);
            tokio::select! {
                read = self.stream.read(&mut buf) => {
                    let now = Instant::now();
                    match read {
                        Ok(0) | Err(_) => self.session.handle_disconnect(),
                        Ok(n) => {
                            self.last_rx = now;
                            self.session.handle_input(now.into_std(), &buf[..n]);
                        }
                    }
                }
                Some(done) = self.done_rx.recv() => {
                    // One commit answers many requests: take all that are
                    // ready before writing.
                    self.finish(done);
                    while let Ok(done) = self.done_rx.try_recv() {
                        self.finish(done);
                    }
                }
                Some(mt) = self.routed_rx.recv() => self.send_routed(mt),
                _ = tokio::time::sleep_until(timer) => {
                    let now = Instant::now();
                    if self.drain_deadline.is_some_and(|d| now >= d) {
                        tracing::warn!(peer = %self.peer, "drain deadline passed; closing");
                        self.session.handle_disconnect();
                    } else if now >= self.last_rx + idle {
                        tracing::info!(peer = %self.peer, "idle timeout");
                        self.last_rx = now;
                        if self.session.unbind(now.into_std()).is_err() {
                            self.session.handle_disconnect();
                        }
                    } else {
                        self.session.handle_timeout(now.into_std());
                    }
                }
                Ok(()) = outbox_signal.changed(), if self.carries_mt() && !self.draining => {
                    self.pump_outbox();
                }
                _ = retry.tick(), if self.carries_mt() && !self.draining => {
                    self.pump_outbox();
                }
                changed = shutdown.changed(), if !self.draining => {
                    server_gone |= changed.is_err();
                }
            }
        }
    }

    /// While draining: nothing of ours is left to finish on this link. An
    /// unbound session has no way to send what is pending.
    fn drained(&self) -> bool {
        self.in_flight == 0
            && (!self.session.state().is_bound()
                || (self.pending_mt.is_empty() && self.sent_mt.is_empty()))
    }

    /// Handle queued events, then write queued PDUs. `Some(reason)` when
    /// the session is over.
    async fn step(&mut self) -> Option<String> {
        let mut closed = None;
        while let Some(ev) = self.session.poll_event() {
            match ev {
                Event::Bound { system_id, mode } => {
                    tracing::info!(peer = %self.peer, %system_id, ?mode, "bound");
                    self.bound_mode = Some(mode);
                    if self.carries_mt() {
                        self.shared
                            .add_route(&system_id, self.id, self.routed_tx.clone());
                        self.pump_outbox();
                    }
                }
                Event::Request { seq, pdu } => self.request(seq, pdu),
                Event::Response { seq, status, .. } => {
                    self.mt_answered(seq, status == CommandStatus::EsmeRok)
                }
                Event::MalformedResponse { seq, .. }
                | Event::ResponseTimeout { seq }
                | Event::Aborted { seq } => self.mt_answered(seq, false),
                Event::UnmatchedResponse {
                    seq,
                    command_id,
                    status,
                } => {
                    tracing::debug!(peer = %self.peer, seq, ?command_id, ?status, "unmatched response");
                }
                Event::Unbound => tracing::info!(peer = %self.peer, "unbound"),
                Event::Closed { reason } => closed = Some(format!("{reason:?}")),
            }
        }
        self.flush_pending_mt();
        // One write for everything queued: a commit's worth of answers is
        // one syscall, not one per PDU.
        let mut out = Vec::new();
        while let Some(bytes) = self.session.poll_transmit() {
            if out.is_empty() {
                out = bytes;
            } else {
                out.extend_from_slice(&bytes);
            }
        }
        if !out.is_empty() {
            // The loop waits here, so a peer that stops reading must not
            // hold it: no timer, read or drain deadline runs meanwhile.
            let mut limit = Duration::from_millis(self.shared.smpp.write_timeout_ms);
            if let Some(d) = self.drain_deadline {
                limit = limit.min(d.saturating_duration_since(Instant::now()));
            }
            match tokio::time::timeout(limit, self.stream.write_all(&out)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => self.session.handle_disconnect(),
                Err(_) => {
                    tracing::warn!(peer = %self.peer, bytes = out.len(), "the peer reads nothing of ours: closing");
                    self.session.handle_disconnect();
                }
            }
        }
        if closed.is_some() {
            let _ = self.stream.shutdown().await;
            // Outbox entries this link was sending go back to the pool.
            let mut locks = self
                .shared
                .outbox_locks
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for id in self.outbox.keys() {
                locks.remove(id);
            }
        }
        closed
    }

    fn request(&mut self, seq: u32, pdu: Pdu) {
        let mo = match MoMessage::from_pdu(&pdu) {
            Ok(mo) => mo,
            Err(e) => {
                let _ = self.session.respond(seq, CommandStatus::from(&e), None);
                return;
            }
        };
        if self.draining {
            let _ = self
                .session
                .respond(seq, CommandStatus::EsmeRthrottled, None);
            return;
        }
        let now = self.shared.clock.now();
        match self
            .shared
            .routing
            .classify(&mo, now, self.shared.mono_ms())
        {
            MoAction::Respond(status) => self.respond_ok_or(seq, mo.command, status),
            MoAction::Receipt { message_id, state } => {
                tracing::info!(peer = %self.peer, ?message_id, ?state, "delivery receipt");
                self.respond_ok_or(seq, mo.command, CommandStatus::EsmeRok);
            }
            MoAction::Engine { request, ussd } => {
                self.in_flight += 1;
                let engine = self.shared.engine.clone();
                let tx = self.done_tx.clone();
                let command = mo.command;
                let msisdn = request.msisdn.clone();
                let channel = request.command.channel();
                let started = Instant::now();
                tokio::spawn(async move {
                    let result = engine.execute(request).await;
                    let _ = tx.send(Done {
                        seq,
                        command,
                        ussd,
                        msisdn,
                        channel,
                        started,
                        result,
                    });
                });
            }
        }
    }

    /// Answer an MO: with ESME_ROK the body the command wants (a message_id
    /// for submit_sm and data_sm), otherwise a bare error status.
    fn respond_ok_or(&mut self, seq: u32, command: MessageCommand, status: CommandStatus) {
        let body = if status == CommandStatus::EsmeRok {
            let id = self.shared.next_message_id();
            match command {
                MessageCommand::SubmitSm => submit_sm_resp(&id).ok(),
                MessageCommand::DeliverSm => Some(deliver_sm_resp()),
                MessageCommand::DataSm => data_sm_resp(&id).ok(),
            }
        } else {
            None
        };
        if let Err(e) = self.session.respond(seq, status, body) {
            tracing::debug!(peer = %self.peer, seq, error = %e, "response not sent");
        }
    }

    fn finish(&mut self, done: Done) {
        self.in_flight -= 1;
        let latency_us = done.started.elapsed().as_micros() as u64;
        match done.result {
            Ok(applied) => {
                tracing::info!(
                    msisdn = %done.msisdn,
                    channel = ?done.channel,
                    outcome = %applied.outcome,
                    latency_us,
                    "request"
                );
                // Committed: now the peer may forget the MO (G3).
                self.respond_ok_or(done.seq, done.command, CommandStatus::EsmeRok);
                if let Some(mo) = done.ussd {
                    self.ussd_answer(&mo, &applied.reply);
                }
            }
            Err(e) => {
                tracing::error!(msisdn = %done.msisdn, error = %e, latency_us, "request failed");
                // Not committed: the peer keeps the MO and may retry.
                self.respond_ok_or(done.seq, done.command, CommandStatus::EsmeRsyserr);
            }
        }
    }

    fn ussd_answer(&mut self, mo: &MoMessage, reply: &str) {
        let enc = text::encode_reply(reply);
        let mt = MtMessage::reply_to(mo).with_payload(enc.data_coding, enc.bytes);
        let answer = if self.carries_mt() {
            self.mt_pdu(&mt)
        } else {
            None
        };
        match answer {
            Some(pdu) => self.queue_ussd_answer(pdu),
            None => {
                // A transmitter-only bind: the answer goes out on a receiver
                // bind of the same system_id, if there is one.
                let sent = self
                    .session
                    .peer_system_id()
                    .is_some_and(|sid| self.shared.route_mt(sid, mt.clone()));
                if !sent {
                    tracing::warn!(peer = %self.peer, msisdn = %mo.source_addr, "no bind can carry the USSD answer");
                }
            }
        }
    }

    /// An MT routed here from another connection of the same peer.
    fn send_routed(&mut self, mt: MtMessage) {
        if let Some(pdu) = self.mt_pdu(&mt) {
            self.queue_ussd_answer(pdu);
        }
    }

    /// A USSD answer goes out before any queued outbox SMS (after earlier
    /// answers): the subscriber's session is open only for seconds, an SMS
    /// can wait for the peer to acknowledge the ones before it.
    fn queue_ussd_answer(&mut self, pdu: Pdu) {
        let at = self
            .pending_mt
            .iter()
            .position(|(_, p)| matches!(p, MtPurpose::Outbox { .. }))
            .unwrap_or(self.pending_mt.len());
        self.pending_mt.insert(at, (pdu, MtPurpose::UssdAnswer));
    }

    fn flush_pending_mt(&mut self) {
        if !self.session.state().is_bound() {
            return;
        }
        // Outbox SMS never take the whole send window: a quarter (at least
        // one slot) stays for USSD answers, which can't wait for a slow
        // SMSC to acknowledge SMS.
        let window = self.shared.smpp.window_max;
        let outbox_cap = window.saturating_sub((window / 4).max(1)).max(1);
        // Counted once per flush, not per PDU: this runs after every read.
        let mut outbox_in_flight = self
            .sent_mt
            .values()
            .filter(|p| matches!(p, MtPurpose::Outbox { .. }))
            .count();
        while let Some((pdu, purpose)) = self.pending_mt.pop_front() {
            let outbox = matches!(purpose, MtPurpose::Outbox { .. });
            if outbox && outbox_in_flight >= outbox_cap {
                self.pending_mt.push_front((pdu, purpose));
                break;
            }
            match self
                .session
                .send_request(Instant::now().into_std(), pdu.clone())
            {
                Ok(seq) => {
                    outbox_in_flight += usize::from(outbox);
                    self.sent_mt.insert(seq, purpose);
                }
                Err(SessionError::WindowFull { .. }) => {
                    // Keep the order, retry after a response.
                    self.pending_mt.push_front((pdu, purpose));
                    break;
                }
                Err(e) => {
                    // It can never go (e.g. too long to encode): waiting for
                    // it would stall every MT behind it.
                    tracing::error!(peer = %self.peer, error = %e, ?purpose, "MT not sent");
                    self.mt_done(purpose, false);
                }
            }
        }
    }

    fn mt_answered(&mut self, seq: u32, ok: bool) {
        if let Some(purpose) = self.sent_mt.remove(&seq) {
            self.mt_done(purpose, ok);
        }
    }

    /// One MT we sent is answered (or can never be sent).
    fn mt_done(&mut self, purpose: MtPurpose, ok: bool) {
        let MtPurpose::Outbox { id } = purpose else {
            return;
        };
        let Some(send) = self.outbox.get_mut(&id) else {
            return;
        };
        send.parts_left = send.parts_left.saturating_sub(1);
        send.failed |= !ok;
        if send.parts_left > 0 {
            return;
        }
        let failed = send.failed;
        self.outbox.remove(&id);
        let shared = self.shared.clone();
        if failed {
            // Released for a later retry (the retry tick re-reads the outbox).
            shared.unlock_outbox(id, false);
            return;
        }
        // Every part acknowledged: remove it durably, then release the lock.
        tokio::spawn(async move {
            let removed = shared.engine.dequeue(id).await;
            if let Err(e) = &removed {
                tracing::error!(id, error = %e, "outbox removal failed");
            }
            shared.unlock_outbox(id, removed.is_ok());
        });
    }

    /// Take queued SMS from the store and send them on this bind.
    fn pump_outbox(&mut self) {
        if !self.session.state().is_bound() || self.pending_mt.len() >= OUTBOX_BATCH {
            return;
        }
        let entries = match self.shared.store.outbox(OUTBOX_BATCH) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "reading the outbox");
                return;
            }
        };
        for (id, notice) in entries {
            if !self.shared.lock_outbox(id) {
                continue;
            }
            let pdus: Option<Vec<Pdu>> = self
                .notice_mts(id, &notice)
                .iter()
                .map(|mt| self.mt_pdu(mt))
                .collect();
            let Some(pdus) = pdus.filter(|p| !p.is_empty()) else {
                self.shared.unlock_outbox(id, false);
                continue;
            };
            self.outbox.insert(
                id,
                OutboxSend {
                    parts_left: pdus.len(),
                    failed: false,
                },
            );
            for pdu in pdus {
                self.pending_mt.push_back((pdu, MtPurpose::Outbox { id }));
            }
        }
    }

    /// The SMS parts of a notice, from the short number.
    fn notice_mts(&self, id: u64, notice: &Notice) -> Vec<MtMessage> {
        let Ok(seg) = segment::segment(&notice.text, (id % 256) as u8) else {
            tracing::error!(id, "notice too long to send");
            return Vec::new();
        };
        seg.parts
            .iter()
            .map(|p| MtMessage {
                source_addr: self.shared.routing.short_number.clone(),
                dest_addr: notice.msisdn.clone(),
                dest_ton: 1,
                dest_npi: 1,
                esm_class: seg.esm_class(0),
                registered_delivery: 1,
                data_coding: seg.data_coding,
                payload: p.short_message(),
                ..MtMessage::default()
            })
            .collect()
    }
}

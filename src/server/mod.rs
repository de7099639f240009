//! The tokio shell: SMPP listener (MC role), SMPP client (ESME role), the
//! engine queue, the outbox sender and graceful shutdown.
//!
//! - [`queue`]: the one queue into the engine, with group commit.
//! - [`mo`]: what an incoming message asks for (routing, reassembly, G4 keys).
//! - `nightly`: the daily nightly run (N1–N4) at `service.nightly_at`,
//!   through the same queue.
//! - `conn`: one connection of either role over the sans-IO session.
//!
//! [`Server::start`] runs whichever roles the config enables; both may run
//! at once. [`Server::shutdown`] stops accepting, lets every connection
//! finish its in-flight requests and unbind, commits what is queued and
//! returns (mini-redis's pattern: a watch channel tells every task, and each
//! task holds a sender clone so the server knows when all have drained).

pub mod mo;
pub mod queue;

mod conn;
mod nightly;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use shortcode_protocol::smpp::{self, EsmeCredentials, MtMessage, PeerTable, Session};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::config::{Config, ConnectConfig, ListenConfig, SmppConfig};
use crate::gateway::Gateway;
use crate::store::Store;
use conn::Conn;
use mo::Routing;
use queue::{Committer, EngineHandle};

/// Where the engine's time comes from. Production uses [`SystemClock`];
/// the replay tool drives a [`ManualClock`] so time follows its fixture.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to (tests and replay).
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> ManualClock {
        ManualClock(Mutex::new(at))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("config: {0}")]
    Config(String),
}

/// How long an outbound link must have lasted for its loss to restart the
/// reconnect backoff from the minimum.
const STABLE_LINK: Duration = Duration::from_secs(30);

/// Backoff for an outbox SMS the network refused.
const OUTBOX_RETRY_MIN: Duration = Duration::from_secs(1);
const OUTBOX_RETRY_MAX: Duration = Duration::from_secs(600);

/// Connection id and MT sender of each receiver-capable bind, by system_id.
type MtRoutes = HashMap<String, Vec<(u64, mpsc::UnboundedSender<MtMessage>)>>;

/// What every connection shares.
pub(crate) struct Shared {
    engine: EngineHandle,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    routing: Routing,
    smpp: SmppConfig,
    outbox_locks: Mutex<HashSet<u64>>,
    /// Outbox ids the network refused: failures so far and when to try again.
    outbox_retry: Mutex<HashMap<u64, (u32, std::time::Instant)>>,
    started: std::time::Instant,
    message_ids: AtomicU64,
    /// Receiver-capable binds by peer system_id, for answers to a request
    /// that came in on a transmitter-only bind.
    mt_routes: Mutex<MtRoutes>,
    conn_ids: AtomicU64,
}

impl Shared {
    fn mono_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn next_message_id(&self) -> String {
        format!("{:x}", self.message_ids.fetch_add(1, Ordering::Relaxed))
    }

    /// Claim outbox entry `id` for sending: false when another link has it,
    /// or when it failed recently and its backoff has not run out.
    fn lock_outbox(&self, id: u64) -> bool {
        let retry = self.outbox_retry.lock().unwrap_or_else(|e| e.into_inner());
        if retry
            .get(&id)
            .is_some_and(|(_, next)| std::time::Instant::now() < *next)
        {
            return false;
        }
        self.outbox_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id)
    }

    /// Release `id`; `delivered` or not, which sets its retry backoff.
    fn unlock_outbox(&self, id: u64, delivered: bool) {
        {
            let mut retry = self.outbox_retry.lock().unwrap_or_else(|e| e.into_inner());
            if delivered {
                retry.remove(&id);
            } else {
                // Never dropped (no SMS is lost), but a message the network
                // keeps refusing is retried less and less often: 2 s doubling
                // to 10 min.
                let failures = retry.get(&id).map_or(0, |(n, _)| *n) + 1;
                let pause = OUTBOX_RETRY_MIN
                    .saturating_mul(1 << failures.min(9))
                    .min(OUTBOX_RETRY_MAX);
                retry.insert(id, (failures, std::time::Instant::now() + pause));
            }
        }
        self.outbox_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    fn route_mt(&self, system_id: &str, mt: MtMessage) -> bool {
        let routes = self.mt_routes.lock().unwrap_or_else(|e| e.into_inner());
        routes
            .get(system_id)
            .and_then(|v| v.iter().find(|(_, tx)| !tx.is_closed()))
            .is_some_and(|(_, tx)| tx.send(mt).is_ok())
    }

    fn add_route(&self, system_id: &str, conn_id: u64, tx: mpsc::UnboundedSender<MtMessage>) {
        let mut routes = self.mt_routes.lock().unwrap_or_else(|e| e.into_inner());
        routes
            .entry(system_id.to_string())
            .or_default()
            .push((conn_id, tx));
    }

    fn remove_route(&self, conn_id: u64) {
        let mut routes = self.mt_routes.lock().unwrap_or_else(|e| e.into_inner());
        for v in routes.values_mut() {
            v.retain(|(id, _)| *id != conn_id);
        }
        routes.retain(|_, v| !v.is_empty());
    }
}

fn session_config(s: &SmppConfig) -> smpp::Config {
    smpp::Config {
        pdu_len_max: s.pdu_len_max as u32,
        window_max: s.window_max,
        send_window_max: s.window_max,
        response_timeout: Duration::from_millis(s.response_timeout_ms),
        enquire_link_interval: Duration::from_millis(s.enquire_link_interval_ms),
        ..smpp::Config::default()
    }
}

/// Our system_id in bind_resp (MC role).
const MC_SYSTEM_ID: &str = "shortcode-gw";

/// A running gateway.
pub struct Server {
    /// The listener's address (MC role), when listening.
    pub local_addr: Option<SocketAddr>,
    shutdown_tx: watch::Sender<bool>,
    /// Each task holds a clone; `recv` returns `None` once all are gone.
    drained_rx: mpsc::Receiver<()>,
    committer: Committer,
    shared: Arc<Shared>,
}

impl Server {
    /// Start the roles `config` enables, over `gateway`, with `clock`.
    pub async fn start(
        gateway: Gateway,
        config: &Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Server, ServeError> {
        let routing = Routing::new(&config.service).map_err(ServeError::Config)?;
        config.check_roles().map_err(ServeError::Config)?;
        let nightly_at = config.service.nightly_time().map_err(ServeError::Config)?;
        let zone = gateway.engine().zone();
        let store = gateway.store().clone();
        let (committer, engine) = Committer::start(gateway, config.smpp.batch_max, 4096);
        let shared = Arc::new(Shared {
            engine,
            store,
            clock,
            routing,
            smpp: config.smpp.clone(),
            outbox_locks: Mutex::new(HashSet::new()),
            outbox_retry: Mutex::new(HashMap::new()),
            started: std::time::Instant::now(),
            message_ids: AtomicU64::new(1),
            mt_routes: Mutex::new(HashMap::new()),
            conn_ids: AtomicU64::new(1),
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (drained_tx, drained_rx) = mpsc::channel::<()>(1);

        let mut local_addr = None;
        if let Some(listen) = &config.listen {
            let listener =
                TcpListener::bind(listen.addr)
                    .await
                    .map_err(|source| ServeError::Listen {
                        addr: listen.addr,
                        source,
                    })?;
            let addr = listener.local_addr().map_err(|source| ServeError::Listen {
                addr: listen.addr,
                source,
            })?;
            tracing::info!(%addr, "listening for SMPP binds (MC role)");
            local_addr = Some(addr);
            tokio::spawn(accept_loop(
                listener,
                listen.clone(),
                shared.clone(),
                shutdown_rx.clone(),
                drained_tx.clone(),
            ));
        }
        if let Some(connect) = &config.connect {
            tokio::spawn(client_loop(
                connect.clone(),
                shared.clone(),
                shutdown_rx.clone(),
                drained_tx.clone(),
            ));
        }
        if let Some(at) = nightly_at {
            tokio::spawn(nightly::nightly_loop(
                shared.clone(),
                zone,
                at,
                config.service.nightly_record.clone(),
                shutdown_rx.clone(),
                drained_tx.clone(),
            ));
        }
        tokio::spawn(reassembly_loop(shared.clone(), shutdown_rx, drained_tx));
        Ok(Server {
            local_addr,
            shutdown_tx,
            drained_rx,
            committer,
            shared,
        })
    }

    /// Graceful shutdown: stop accepting, drain connections, commit, return.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        let _ = self.drained_rx.recv().await;
        // The last engine handles go with `shared`; the committer then
        // finishes what is queued and stops.
        drop(self.shared);
        let committer = self.committer;
        let _ = tokio::task::spawn_blocking(move || committer.join()).await;
        tracing::info!("shut down");
    }

    /// Requests committed and batches used so far (group-commit ratio),
    /// and the log syncs they shared when the store has a log.
    pub fn commit_stats(&self) -> (u64, u64, Option<u64>) {
        let s = &self.shared.engine.stats;
        (
            s.requests.load(Ordering::Relaxed),
            s.batches.load(Ordering::Relaxed),
            self.shared.store.log_syncs(),
        )
    }

    /// Send one engine request through the server's one queue, ordered and
    /// committed with the traffic like any other (the replay tool's
    /// operator steps in `--wire` mode).
    pub async fn execute(
        &self,
        request: crate::gateway::Request,
    ) -> Result<crate::engine::Applied, queue::QueueError> {
        self.shared.engine.execute(request).await
    }
}

async fn accept_loop(
    listener: TcpListener,
    listen: ListenConfig,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    drained: mpsc::Sender<()>,
) {
    let limit = Arc::new(Semaphore::new(shared.smpp.connections_max));
    let peers: Arc<PeerTable> = Arc::new(listen.peers.iter().fold(PeerTable::new(), |t, p| {
        t.with_peer(&p.system_id, &p.password)
    }));
    let mut backoff = Duration::from_millis(10);
    loop {
        // The permit is taken before accept, so the limit holds.
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.changed() => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, addr) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(10);
                a
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, ?backoff, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let session = match Session::mc(
            std::time::Instant::now(),
            session_config(&shared.smpp),
            MC_SYSTEM_ID,
            peers.clone(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "session setup");
                continue;
            }
        };
        let conn = Conn::new(shared.clone(), session, stream, addr.to_string());
        let shutdown = shutdown.clone();
        let drained = drained.clone();
        tokio::spawn(async move {
            let end = conn.run(shutdown).await;
            tracing::info!(peer = %addr, reason = %end.reason, "connection closed");
            drop(permit);
            drop(drained);
        });
    }
}

async fn client_loop(
    cfg: ConnectConfig,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    _drained: mpsc::Sender<()>,
) {
    let min = Duration::from_millis(cfg.reconnect_min_ms);
    let max = Duration::from_millis(cfg.reconnect_max_ms);
    let mut backoff = min;
    while !*shutdown.borrow() {
        let connected = tokio::select! {
            c = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&cfg.addr)) => c,
            _ = shutdown.changed() => break,
        };
        match connected {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                let mut creds = EsmeCredentials::new(cfg.system_id.clone(), cfg.password.clone());
                creds.system_type = cfg.system_type.clone();
                match Session::esme(
                    std::time::Instant::now(),
                    session_config(&shared.smpp),
                    creds,
                ) {
                    Ok(session) => {
                        tracing::info!(addr = %cfg.addr, "connected; binding (ESME role)");
                        let conn = Conn::new(shared.clone(), session, stream, cfg.addr.clone());
                        let up = std::time::Instant::now();
                        let end = conn.run(shutdown.clone()).await;
                        tracing::warn!(addr = %cfg.addr, reason = %end.reason, "link down");
                        // A link that held for a while starts the backoff
                        // afresh; one the SMSC drops right after the bind
                        // keeps backing off, not re-binding several times
                        // a second for ever.
                        if end.was_bound && up.elapsed() >= STABLE_LINK {
                            backoff = min;
                        }
                    }
                    Err(e) => {
                        // Bad credentials in config: retrying cannot help.
                        tracing::error!(error = %e, "cannot build the bind; check [connect]");
                        return;
                    }
                }
            }
            Ok(Err(e)) => tracing::warn!(addr = %cfg.addr, error = %e, "connect failed"),
            Err(_) => tracing::warn!(addr = %cfg.addr, "connect timed out"),
        }
        if *shutdown.borrow() {
            break;
        }
        // Exponential backoff with jitter, so a fleet does not reconnect in step.
        let jitter = rand::thread_rng().gen_range(0..=backoff.as_millis() as u64 / 2);
        let pause = backoff + Duration::from_millis(jitter);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => break,
        }
        backoff = (backoff * 2).min(max);
    }
}

/// Concatenated SMS whose parts stopped coming become requests (see [`mo`]).
async fn reassembly_loop(
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    _drained: mpsc::Sender<()>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => {
                // Parts we acknowledged live only in memory: rather than
                // vanish with the process, what arrived is taken as the
                // text now (C2), as the reassembly timeout would take it.
                // (A crash still loses them; see README.)
                for request in shared.routing.expired(shared.clock.now(), u64::MAX) {
                    if let Err(e) = shared.engine.execute(request).await {
                        tracing::error!(error = %e, "partial SMS request at shutdown failed");
                    }
                }
                return;
            }
        }
        for request in shared.routing.expired(shared.clock.now(), shared.mono_ms()) {
            let engine = shared.engine.clone();
            tokio::spawn(async move {
                if let Err(e) = engine.execute(request).await {
                    tracing::error!(error = %e, "partial SMS request failed");
                }
            });
        }
    }
}

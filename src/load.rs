//! `shortcode-gw load`: an SMPP load generator that behaves like a USSDC/SMSC
//! binding to the gateway, and the bulk generator of demo stores.
//!
//! # What it does
//!
//! [`run`] opens `connections` transceiver binds to `addr` (loopback only)
//! and keeps `window` requests outstanding on each: `*929#` USSD (a
//! `submit_sm` with `ussd_service_op` 1, PSSR indication) and SMS to the
//! short number (`submit_sm` to 9290), from a seeded set of demo
//! subscribers. It stops after `duration` or `count` requests, lets the
//! requests in flight finish (at most `drain`), unbinds, and reports
//! requests/s, latency percentiles from an HDR histogram, and counts by
//! outcome and by error.
//!
//! # When a request is complete ("the final answer")
//!
//! - **Gateway mode, USSD**: the `deliver_sm` carrying `ussd_service_op` 17
//!   (PSSR response) for the request's `its_session_info` /
//!   `user_message_reference`, *and* the `submit_sm_resp`. The gateway sends
//!   both only after the charge is committed (G3), so this is "MO sent →
//!   durable answer received".
//! - **Gateway mode, SMS**: the `submit_sm_resp`. It is sent only after the
//!   commit; the answer SMS itself is queued in the durable outbox in the
//!   same commit and delivered asynchronously (it may wait for the outbox
//!   pump), so it is counted (`notices`) but not timed.
//! - **Echo mode** (the node-smpp peer): the `submit_sm_resp`, for both.
//!
//! USSD and SMS latencies are reported separately and together.
//!
//! # Uniqueness
//!
//! Every request carries a unique (`user_message_reference`,
//! `its_session_info`) pair (a 32-bit counter that starts from the clock),
//! so the gateway's G4 dedup (60 s window, key includes both) never
//! collapses two load requests into one, and the PSSR answer is matched to
//! its request by them.
//!
//! # Open or closed loop
//!
//! Without `rate`, each connection sends as fast as answers come back,
//! keeping `window` outstanding (closed loop: the maximum rate). With
//! `rate`, requests are scheduled at `rate/connections` per connection;
//! `window` still caps what is outstanding. Latency is always MO sent →
//! final answer received; with `rate` the report adds `latency_scheduled`,
//! measured from the *scheduled* send instant, so a stalled server is not
//! hidden by the generator waiting for it (coordinated omission). That one
//! includes the pacing timer's slack (tokio timers tick in milliseconds).
//!
//! # Bulk generation
//!
//! [`generate_store`] writes the demo catalog and `n` demo accounts straight
//! into an empty store in chunked commits (no accounts file, no per-account
//! lookup): the 10-million-account scale test uses it.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use shortcode_protocol::smpp::{
    self, deliver_sm_resp, ussd_service_op, CommandStatus, EsmeCredentials, Event, MoMessage,
    MtMessage, Pdu, Session,
};
use shortcode_protocol::text;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::data::demo;
use crate::engine::model::{AccountState, Outcome};
use crate::engine::texts::Texts;
use crate::gateway::Gateway;
use crate::store::{Store, StoreError, Write};

/// What the server at the other end is, which decides when a request is
/// complete (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// shortcode-gw: USSD completes on the PSSR answer, SMS on submit_sm_resp.
    #[default]
    Gateway,
    /// An echo SMSC (the node-smpp peer): everything completes on submit_sm_resp.
    Echo,
}

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// host:port; every address it resolves to must be loopback.
    pub addr: String,
    pub connections: usize,
    /// Requests outstanding per connection.
    pub window: usize,
    /// Stop sending after this long (default 10 s when `count` is unset).
    pub duration: Option<Duration>,
    /// Stop after this many requests in all (split across connections).
    pub count: Option<u64>,
    /// Requests per second over all connections; `None`: as fast as answered.
    pub rate: Option<f64>,
    /// Subscribers are demo accounts `0..subscribers`.
    pub subscribers: usize,
    pub seed: u64,
    /// Share of requests sent as SMS (0.0 = all USSD, 1.0 = all SMS).
    pub sms_ratio: f64,
    pub system_id: String,
    pub password: String,
    pub mode: Mode,
    /// How long to wait for requests in flight after sending stops.
    pub drain: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            addr: "127.0.0.1:2775".into(),
            connections: 4,
            window: 64,
            duration: None,
            count: None,
            rate: None,
            subscribers: 1000,
            seed: 1,
            sms_ratio: 0.2,
            system_id: "demo".into(),
            password: "demo".into(),
            mode: Mode::Gateway,
            drain: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the load tool only targets loopback; {addr} resolves to {ip}, which is not")]
    NotLoopback { addr: String, ip: std::net::IpAddr },
    #[error("cannot resolve {addr}: {detail}")]
    Resolve { addr: String, detail: String },
    #[error("{0}")]
    Config(String),
    #[error("connection {conn}: {detail}")]
    Connection { conn: usize, detail: String },
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: (h.mean() * 10.0).round() / 10.0,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub mode: Mode,
    pub addr: String,
    pub connections: usize,
    pub window: usize,
    pub rate_target: Option<f64>,
    /// Requests sent (submit_sm written).
    pub sent: u64,
    /// Requests that got their final answer with ESME_ROK.
    pub answered: u64,
    /// Requests that got an error status, timed out or were never answered.
    pub failed: u64,
    pub ussd_sent: u64,
    pub sms_sent: u64,
    /// From the first request to the last answer, seconds.
    pub elapsed_s: f64,
    /// `answered / elapsed_s`.
    pub requests_per_s: f64,
    pub latency_all: Latency,
    pub latency_ussd: Latency,
    pub latency_sms: Latency,
    /// With `rate`: all requests, from the scheduled send instant.
    pub latency_scheduled: Option<Latency>,
    /// Completed requests by outcome (gateway: read from the USSD answer's
    /// text; SMS requests are `SMS_ACCEPTED`, their outcome arrives in the
    /// answer SMS, counted under `notices`). Echo mode: `ECHO_OK`.
    pub outcomes: BTreeMap<String, u64>,
    /// Failures by SMPP status name, `response_timeout`, `no_answer`, ...
    pub errors: BTreeMap<String, u64>,
    /// deliver_sm parts that were not USSD answers (outbox SMS: answers to
    /// SMS requests and USSD confirmations), by outcome of their text.
    pub notices: BTreeMap<String, u64>,
    /// Group commit, when the gateway ran in this process (`--in-process`).
    pub commits: Option<CommitStats>,
    /// With `--in-process`, on Linux: the process's peak resident memory
    /// (`VmHWM`) in MiB, gateway and load tool together — what a run that
    /// holds more in memory (e.g. a larger `--checkpoint-mib`) costs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<u64>,
}

/// The committer's counters over a run: requests (engine jobs and outbox
/// removals), the store commits (batches) they were applied in, and — with
/// the write-ahead log — the `fdatasync`s those commits shared.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CommitStats {
    pub batch_max: usize,
    pub jobs: u64,
    pub commits: u64,
    pub jobs_per_commit: f64,
    pub syncs: Option<u64>,
    pub jobs_per_sync: Option<f64>,
}

impl LoadReport {
    /// A short human summary (the JSON report has everything).
    pub fn summary(&self) -> String {
        let l = &self.latency_all;
        let scheduled = self
            .latency_scheduled
            .as_ref()
            .map(|s| {
                format!(
                    "; from the schedule p50 {} us p99 {} us",
                    s.p50_us, s.p99_us
                )
            })
            .unwrap_or_default();
        let line = format!(
            "{mode:?} {addr}: {conns}x{win} sent {sent} answered {ans} failed {failed} in {el:.2} s = {rps:.0} req/s; \
             latency p50 {p50} us p90 {p90} us p99 {p99} us p99.9 {p999} us max {max} us",
            mode = self.mode,
            addr = self.addr,
            conns = self.connections,
            win = self.window,
            sent = self.sent,
            ans = self.answered,
            failed = self.failed,
            el = self.elapsed_s,
            rps = self.requests_per_s,
            p50 = l.p50_us,
            p90 = l.p90_us,
            p99 = l.p99_us,
            p999 = l.p999_us,
            max = l.max_us,
        );
        line + &scheduled
    }
}

/// Resolve `addr` and refuse anything that is not loopback.
pub fn loopback_addr(addr: &str) -> Result<SocketAddr, LoadError> {
    let resolved: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| LoadError::Resolve {
            addr: addr.into(),
            detail: e.to_string(),
        })?
        .collect();
    if let Some(bad) = resolved.iter().find(|a| !a.ip().is_loopback()) {
        return Err(LoadError::NotLoopback {
            addr: addr.into(),
            ip: bad.ip(),
        });
    }
    resolved
        .into_iter()
        .next()
        .ok_or_else(|| LoadError::Resolve {
            addr: addr.into(),
            detail: "no address".into(),
        })
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds")
}

/// Outcome of a gateway answer, recognised by the default texts' fixed
/// prefixes (the part before the first placeholder).
struct Classifier {
    prefixes: Vec<(String, &'static str)>,
}

impl Classifier {
    fn new() -> Classifier {
        let t = Texts::default();
        let mut prefixes: Vec<(String, &'static str)> = Outcome::ALL
            .iter()
            .filter(|o| **o != Outcome::Ok)
            .map(|o| (t.short(*o), o.code()))
            .chain([(t.renewed_sms.as_str(), "RENEWED")])
            .map(|(tpl, code)| {
                let fixed = tpl.split('{').next().unwrap_or_default();
                (fixed.chars().take(24).collect::<String>(), code)
            })
            .filter(|(p, _)| !p.is_empty())
            .collect();
        // Longest prefix first, so a prefix of another never wins.
        prefixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Classifier { prefixes }
    }

    fn classify(&self, text: &str) -> &'static str {
        self.prefixes
            .iter()
            .find(|(p, _)| text.starts_with(p.as_str()))
            .map_or("OTHER", |(_, code)| code)
    }
}

/// A request waiting for its answer(s).
struct Pending {
    /// When the MO was written.
    start: Instant,
    /// When it was due (rate mode); `start` otherwise.
    scheduled: Instant,
    ussd: bool,
    key: u32,
}

/// Per-connection tallies, merged at the end.
struct Tally {
    sent: u64,
    ussd_sent: u64,
    sms_sent: u64,
    answered: u64,
    failed: u64,
    all: Histogram<u64>,
    ussd: Histogram<u64>,
    sms: Histogram<u64>,
    scheduled: Histogram<u64>,
    outcomes: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    notices: BTreeMap<String, u64>,
    first_send: Option<Instant>,
    last_answer: Option<Instant>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            sent: 0,
            ussd_sent: 0,
            sms_sent: 0,
            answered: 0,
            failed: 0,
            all: new_histogram(),
            ussd: new_histogram(),
            sms: new_histogram(),
            scheduled: new_histogram(),
            outcomes: BTreeMap::new(),
            errors: BTreeMap::new(),
            notices: BTreeMap::new(),
            first_send: None,
            last_answer: None,
        }
    }

    fn error(&mut self, what: impl Into<String>) {
        self.failed += 1;
        *self.errors.entry(what.into()).or_default() += 1;
    }

    fn done(&mut self, p: &Pending, outcome: &str, now: Instant) {
        let us = now.saturating_duration_since(p.start).as_micros() as u64;
        let us = us.max(1);
        let since_due = now.saturating_duration_since(p.scheduled).as_micros() as u64;
        self.scheduled.saturating_record(since_due.max(1));
        self.all.saturating_record(us);
        if p.ussd {
            self.ussd.saturating_record(us);
        } else {
            self.sms.saturating_record(us);
        }
        self.answered += 1;
        *self.outcomes.entry(outcome.to_string()).or_default() += 1;
        self.last_answer = Some(now);
    }

    fn merge(&mut self, o: Tally) {
        self.sent += o.sent;
        self.ussd_sent += o.ussd_sent;
        self.sms_sent += o.sms_sent;
        self.answered += o.answered;
        self.failed += o.failed;
        let _ = self.all.add(&o.all);
        let _ = self.ussd.add(&o.ussd);
        let _ = self.sms.add(&o.sms);
        let _ = self.scheduled.add(&o.scheduled);
        for (mine, theirs) in [
            (&mut self.outcomes, o.outcomes),
            (&mut self.errors, o.errors),
            (&mut self.notices, o.notices),
        ] {
            for (k, v) in theirs {
                *mine.entry(k).or_default() += v;
            }
        }
        self.first_send = match (self.first_send, o.first_send) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_answer = match (self.last_answer, o.last_answer) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

fn status_name(s: CommandStatus) -> String {
    format!("{s:?}")
}

/// Run the load. Must be called inside a tokio runtime.
pub async fn run(cfg: &LoadConfig) -> Result<LoadReport, LoadError> {
    let addr = loopback_addr(&cfg.addr)?;
    if cfg.connections == 0 || cfg.window == 0 {
        return Err(LoadError::Config(
            "connections and window must be at least 1".into(),
        ));
    }
    if cfg.subscribers == 0 {
        return Err(LoadError::Config("subscribers must be at least 1".into()));
    }
    if !(0.0..=1.0).contains(&cfg.sms_ratio) {
        return Err(LoadError::Config("sms_ratio must be within 0..=1".into()));
    }
    if cfg.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(LoadError::Config("rate must be positive".into()));
    }
    let duration = match (cfg.duration, cfg.count) {
        (None, None) => Some(Duration::from_secs(10)),
        (d, _) => d,
    };
    // Unique (user_message_reference, its_session_info) pairs, starting
    // from the clock so a re-run inside the dedup window does not repeat.
    let start_key = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u32);
    let keys = Arc::new(AtomicU32::new(start_key));
    let classifier = Arc::new(Classifier::new());

    // Bind everything first, then start all connections together.
    let mut links = Vec::with_capacity(cfg.connections);
    for conn in 0..cfg.connections {
        links.push(Link::open(conn, addr, cfg).await?);
    }
    let start = Instant::now();
    let deadline = duration.map(|d| start + d);
    let mut tasks = Vec::with_capacity(links.len());
    for (conn, link) in links.into_iter().enumerate() {
        let share = cfg.count.map(|n| {
            let c = cfg.connections as u64;
            n / c + u64::from((conn as u64) < n % c)
        });
        let plan = Plan {
            start,
            deadline,
            count: share,
            interval: cfg
                .rate
                .map(|r| Duration::from_secs_f64(cfg.connections as f64 / r)),
            window: cfg.window,
            subscribers: cfg.subscribers,
            sms_ratio: cfg.sms_ratio,
            mode: cfg.mode,
            drain: cfg.drain,
            rng: SmallRng::seed_from_u64(
                cfg.seed.wrapping_mul(1_000_003).wrapping_add(conn as u64),
            ),
            keys: keys.clone(),
            classifier: classifier.clone(),
        };
        tasks.push(tokio::spawn(link.drive(plan)));
    }
    let mut total = Tally::new();
    for (conn, t) in tasks.into_iter().enumerate() {
        let tally = t.await.map_err(|e| LoadError::Connection {
            conn,
            detail: format!("task failed: {e}"),
        })??;
        total.merge(tally);
    }
    let elapsed = match (total.first_send, total.last_answer) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => start.elapsed(),
    };
    let elapsed_s = elapsed.as_secs_f64();
    Ok(LoadReport {
        mode: cfg.mode,
        addr: addr.to_string(),
        connections: cfg.connections,
        window: cfg.window,
        rate_target: cfg.rate,
        sent: total.sent,
        answered: total.answered,
        failed: total.failed,
        ussd_sent: total.ussd_sent,
        sms_sent: total.sms_sent,
        elapsed_s: (elapsed_s * 1000.0).round() / 1000.0,
        requests_per_s: if elapsed_s > 0.0 {
            (total.answered as f64 / elapsed_s).round()
        } else {
            0.0
        },
        latency_all: Latency::of(&total.all),
        latency_ussd: Latency::of(&total.ussd),
        latency_sms: Latency::of(&total.sms),
        latency_scheduled: cfg.rate.map(|_| Latency::of(&total.scheduled)),
        outcomes: total.outcomes,
        errors: total.errors,
        notices: total.notices,
        commits: None,
        peak_rss_mib: None,
    })
}

/// Start the gateway in this process on `127.0.0.1:0` over `store`, run
/// the load against it, shut it down, and add its commit counters to the
/// report. The gateway's inbound window is raised to `window` so the load
/// is not throttled.
pub async fn run_in_process(
    cfg: &LoadConfig,
    store: Arc<dyn Store>,
    batch_max: usize,
) -> Result<LoadReport, Box<dyn std::error::Error>> {
    use crate::config::{Config, ListenConfig, PeerConfig};
    let mut config = Config {
        listen: Some(ListenConfig {
            addr: "127.0.0.1:0".parse()?,
            peers: vec![PeerConfig {
                system_id: cfg.system_id.clone(),
                password: cfg.password.clone(),
            }],
        }),
        ..Config::default()
    };
    config.smpp.window_max = config.smpp.window_max.max(cfg.window);
    // A measurement of subscriber traffic: no nightly run in the middle.
    config.service.nightly_at = "off".into();
    config.smpp.batch_max = batch_max.max(1);
    let gateway = Gateway::open(store, crate::engine::EngineConfig::default())?;
    let server =
        crate::server::Server::start(gateway, &config, Arc::new(crate::server::SystemClock))
            .await?;
    let addr = server
        .local_addr
        .ok_or("the in-process gateway is not listening")?;
    let (jobs0, commits0, syncs0) = server.commit_stats();
    let cfg = LoadConfig {
        addr: addr.to_string(),
        ..cfg.clone()
    };
    let result = run(&cfg).await;
    let (jobs1, commits1, syncs1) = server.commit_stats();
    server.shutdown().await;
    let mut report = result?;
    let (jobs, commits) = (jobs1 - jobs0, commits1 - commits0);
    let per = |n: u64| {
        if n > 0 {
            ((jobs as f64 / n as f64) * 10.0).round() / 10.0
        } else {
            0.0
        }
    };
    let syncs = syncs1.zip(syncs0).map(|(b, a)| b - a);
    report.commits = Some(CommitStats {
        batch_max: config.smpp.batch_max,
        jobs,
        commits,
        jobs_per_commit: per(commits),
        syncs,
        jobs_per_sync: syncs.map(per),
    });
    report.peak_rss_mib = peak_rss_mib();
    Ok(report)
}

/// This process's peak resident set (`VmHWM` of `/proc/self/status`), MiB;
/// `None` where there is no such file.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib / 1024)
}

/// What one connection is to do.
struct Plan {
    start: Instant,
    deadline: Option<Instant>,
    count: Option<u64>,
    interval: Option<Duration>,
    window: usize,
    subscribers: usize,
    sms_ratio: f64,
    mode: Mode,
    drain: Duration,
    rng: SmallRng,
    keys: Arc<AtomicU32>,
    classifier: Arc<Classifier>,
}

/// One bound connection.
struct Link {
    conn: usize,
    stream: TcpStream,
    session: Session,
    buf: Vec<u8>,
    out: Vec<u8>,
}

const READ_BUF: usize = 64 * 1024;

impl Link {
    async fn open(conn: usize, addr: SocketAddr, cfg: &LoadConfig) -> Result<Link, LoadError> {
        let fail = |detail: String| LoadError::Connection { conn, detail };
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| fail(format!("connect {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let config = smpp::Config {
            // Answers (deliver_sm) are acknowledged at once; the inbound
            // window only has to absorb one read's worth.
            window_max: 1 << 16,
            send_window_max: cfg.window,
            response_timeout: Duration::from_secs(30),
            enquire_link_interval: Duration::from_secs(30),
            bind_timeout: Duration::from_secs(10),
            ..smpp::Config::default()
        };
        let creds = EsmeCredentials::new(cfg.system_id.clone(), cfg.password.clone());
        let session = Session::esme(Instant::now(), config, creds)
            .map_err(|e| fail(format!("bind PDU: {e}")))?;
        let mut link = Link {
            conn,
            stream,
            session,
            buf: vec![0u8; READ_BUF],
            out: Vec::with_capacity(READ_BUF),
        };
        let bind_deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            link.flush()
                .await
                .map_err(|e| fail(format!("write: {e}")))?;
            while let Some(ev) = link.session.poll_event() {
                match ev {
                    Event::Bound { .. } => return Ok(link),
                    Event::Closed { reason } => {
                        return Err(fail(format!("bind failed: {reason:?}")));
                    }
                    _ => {}
                }
            }
            let n = tokio::time::timeout_at(bind_deadline, link.stream.read(&mut link.buf))
                .await
                .map_err(|_| fail("no bind_resp within 10 s".into()))?
                .map_err(|e| fail(format!("read: {e}")))?;
            if n == 0 {
                return Err(fail("closed during bind".into()));
            }
            link.session.handle_input(Instant::now(), &link.buf[..n]);
        }
    }

    /// Write everything the session queued, in one syscall when possible.
    async fn flush(&mut self) -> std::io::Result<()> {
        self.out.clear();
        while let Some(b) = self.session.poll_transmit() {
            self.out.extend_from_slice(&b);
        }
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
        }
        Ok(())
    }

    async fn drive(mut self, mut plan: Plan) -> Result<Tally, LoadError> {
        let conn = self.conn;
        let mut tally = Tally::new();
        // submit_sm sequence number -> request.
        let mut by_seq: HashMap<u32, Pending> = HashMap::with_capacity(plan.window * 2);
        // USSD requests acknowledged, waiting for the PSSR answer, by key.
        let mut by_key: HashMap<u32, Pending> = HashMap::with_capacity(plan.window * 2);
        // PSSR answers that arrived before their submit_sm_resp.
        let mut early: HashMap<u32, &'static str> = HashMap::new();
        let mut in_flight = 0usize;
        let mut next_at = plan.start;
        let mut stopped = false;
        let mut drain_deadline: Option<Instant> = None;
        loop {
            let now = Instant::now();
            // 1. What came in.
            while let Some(ev) = self.session.poll_event() {
                match ev {
                    Event::Response {
                        seq, status, pdu, ..
                    } => {
                        let Some(p) = by_seq.remove(&seq) else {
                            continue;
                        };
                        if status != CommandStatus::EsmeRok {
                            in_flight -= 1;
                            tally.error(status_name(status));
                            continue;
                        }
                        match (plan.mode, p.ussd) {
                            (Mode::Gateway, true) => {
                                if let Some(outcome) = early.remove(&p.key) {
                                    in_flight -= 1;
                                    tally.done(&p, outcome, now);
                                } else {
                                    by_key.insert(p.key, p);
                                }
                            }
                            (Mode::Gateway, false) => {
                                in_flight -= 1;
                                let ok = pdu.is_some();
                                tally.done(
                                    &p,
                                    if ok { "SMS_ACCEPTED" } else { "SMS_NO_BODY" },
                                    now,
                                );
                            }
                            (Mode::Echo, _) => {
                                in_flight -= 1;
                                tally.done(&p, "ECHO_OK", now);
                            }
                        }
                    }
                    Event::Request { seq, pdu } => {
                        let answer = match &pdu {
                            Pdu::DeliverSm(_) => Some(deliver_sm_resp()),
                            _ => None,
                        };
                        let _ = self.session.respond(seq, CommandStatus::EsmeRok, answer);
                        let Ok(mo) = MoMessage::from_pdu(&pdu) else {
                            *tally.notices.entry("UNREADABLE".into()).or_default() += 1;
                            continue;
                        };
                        if mo.ussd_service_op == Some(ussd_service_op::PSSR_RESPONSE) {
                            let key = request_key(&mo);
                            let text = text::decode_short_message(mo.data_coding, &mo.payload);
                            let outcome = plan.classifier.classify(&text);
                            if let Some(p) = by_key.remove(&key) {
                                in_flight -= 1;
                                tally.done(&p, outcome, now);
                            } else {
                                early.insert(key, outcome);
                            }
                        } else {
                            let (body, later_part) = match mo.has_udh() {
                                true => match shortcode_protocol::segment::split_udh(&mo.payload) {
                                    Ok((udh, rest)) => {
                                        (rest, udh.concat.is_some_and(|c| c.seq > 1))
                                    }
                                    Err(_) => (&mo.payload[..], false),
                                },
                                false => (&mo.payload[..], false),
                            };
                            let outcome = if later_part {
                                "(part 2+ of a long SMS)"
                            } else {
                                let text = text::decode_short_message(mo.data_coding, body);
                                plan.classifier.classify(&text)
                            };
                            *tally.notices.entry(outcome.into()).or_default() += 1;
                        }
                    }
                    Event::ResponseTimeout { seq }
                    | Event::Aborted { seq }
                    | Event::MalformedResponse { seq, .. } => {
                        if by_seq.remove(&seq).is_some() {
                            in_flight -= 1;
                            tally.error("response_timeout_or_aborted");
                        }
                    }
                    Event::Closed { reason } => {
                        for _ in 0..in_flight {
                            tally.error(format!("closed: {reason:?}"));
                        }
                        return Ok(tally);
                    }
                    Event::Bound { .. } | Event::Unbound | Event::UnmatchedResponse { .. } => {}
                }
            }

            // 2. Stop?
            if !stopped {
                let out_of_time = plan.deadline.is_some_and(|d| now >= d);
                let out_of_count = plan.count.is_some_and(|c| tally.sent >= c);
                if out_of_time || out_of_count {
                    stopped = true;
                    drain_deadline = Some(now + plan.drain);
                }
            }

            // 3. Send up to the window (and, with a rate, up to the schedule).
            while !stopped && in_flight < plan.window {
                if plan.count.is_some_and(|c| tally.sent >= c) {
                    break;
                }
                let scheduled = match plan.interval {
                    Some(iv) => {
                        if next_at > now {
                            break;
                        }
                        let s = next_at;
                        next_at += iv;
                        s
                    }
                    None => now,
                };
                let key = plan.keys.fetch_add(1, Ordering::Relaxed);
                let sub = plan.rng.gen_range(0..plan.subscribers);
                let is_sms = plan.sms_ratio > 0.0 && plan.rng.gen_bool(plan.sms_ratio);
                let pdu = build_request(sub, key, is_sms);
                let seq = match self.session.send_request(now, pdu) {
                    Ok(seq) => seq,
                    Err(e) => {
                        return Err(LoadError::Connection {
                            conn,
                            detail: format!("send: {e}"),
                        })
                    }
                };
                tally.first_send.get_or_insert(now);
                tally.sent += 1;
                if is_sms {
                    tally.sms_sent += 1;
                } else {
                    tally.ussd_sent += 1;
                }
                in_flight += 1;
                by_seq.insert(
                    seq,
                    Pending {
                        start: now,
                        scheduled,
                        ussd: !is_sms,
                        key,
                    },
                );
            }

            // 4. Done?
            if stopped && in_flight == 0 {
                break;
            }
            if drain_deadline.is_some_and(|d| now >= d) {
                for _ in 0..in_flight {
                    tally.error("no_answer");
                }
                break;
            }

            // 5. Write, then wait for input or the next timer.
            if let Err(e) = self.flush().await {
                return Err(LoadError::Connection {
                    conn,
                    detail: format!("write: {e}"),
                });
            }
            let mut wake = self.session.poll_timeout();
            for t in [plan.deadline.filter(|_| !stopped), drain_deadline] {
                wake = match (wake, t) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            if plan.interval.is_some() && !stopped && in_flight < plan.window {
                wake = Some(wake.map_or(next_at, |w| w.min(next_at)));
            }
            let wake = tokio::time::Instant::from_std(
                wake.unwrap_or_else(|| Instant::now() + Duration::from_secs(1)),
            );
            tokio::select! {
                read = self.stream.read(&mut self.buf) => match read {
                    Ok(0) | Err(_) => self.session.handle_disconnect(),
                    Ok(n) => self.session.handle_input(Instant::now(), &self.buf[..n]),
                },
                _ = tokio::time::sleep_until(wake) => {
                    self.session.handle_timeout(Instant::now());
                }
            }
        }
        self.close().await;
        Ok(tally)
    }

    /// Unbind and wait (briefly) for unbind_resp, answering what still comes.
    async fn close(&mut self) {
        if self.session.unbind(Instant::now()).is_err() {
            return;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            if self.flush().await.is_err() {
                return;
            }
            while let Some(ev) = self.session.poll_event() {
                match ev {
                    Event::Closed { .. } => {
                        let _ = self.flush().await;
                        let _ = self.stream.shutdown().await;
                        return;
                    }
                    Event::Request { seq, pdu } => {
                        let answer = matches!(pdu, Pdu::DeliverSm(_)).then(deliver_sm_resp);
                        let _ = self.session.respond(seq, CommandStatus::EsmeRok, answer);
                    }
                    _ => {}
                }
            }
            match tokio::time::timeout_at(deadline, self.stream.read(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => self.session.handle_input(Instant::now(), &self.buf[..n]),
                _ => return,
            }
        }
    }
}

/// The 32-bit request key carried as (user_message_reference,
/// its_session_info).
fn request_key(mo: &MoMessage) -> u32 {
    (u32::from(mo.user_message_reference.unwrap_or(0)) << 16)
        | u32::from(mo.its_session_info.unwrap_or(0))
}

/// The MO a USSDC/SMSC would send for demo subscriber `sub`.
pub fn build_request(sub: usize, key: u32, sms: bool) -> Pdu {
    let mt = MtMessage {
        service_type: if sms { String::new() } else { "USSD".into() },
        source_addr: demo::demo_msisdn(sub),
        source_ton: 1,
        source_npi: 1,
        dest_addr: if sms { "9290".into() } else { "929".into() },
        dest_ton: 0,
        dest_npi: 0,
        data_coding: 0,
        payload: if sms {
            b"RENEW".to_vec()
        } else {
            b"*929#".to_vec()
        },
        ussd_service_op: (!sms).then_some(ussd_service_op::PSSR_INDICATION),
        its_session_info: Some(key as u16),
        user_message_reference: Some((key >> 16) as u16),
        ..MtMessage::default()
    };
    mt.to_submit_sm()
        .expect("a demo MSISDN and fixed text always build")
}

/// `shortcode-gw load` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// The SMPP server (loopback only).
    #[arg(long, default_value = "127.0.0.1:2775")]
    pub addr: String,
    /// Binds (transceiver) to open.
    #[arg(long, short = 'c', default_value_t = 4)]
    pub connections: usize,
    /// Requests outstanding per connection.
    #[arg(long, short = 'w', default_value_t = 64)]
    pub window: usize,
    /// Seconds to send for (default 10 when --count is not given).
    #[arg(long)]
    pub duration_s: Option<f64>,
    /// Requests to send in all.
    #[arg(long)]
    pub count: Option<u64>,
    /// Requests per second over all connections (open loop); default: as
    /// fast as answers come back.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Subscribers are demo accounts 0..N (MSISDN 79000000000 + i).
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of requests sent as SMS to 9290 (the rest are *929# USSD).
    #[arg(long, default_value_t = 0.2)]
    pub sms_ratio: f64,
    #[arg(long, default_value = "demo")]
    pub system_id: String,
    #[arg(long, default_value = "demo")]
    pub password: String,
    /// gateway: USSD completes on the PSSR answer; echo: on submit_sm_resp.
    #[arg(long, value_enum, default_value = "gateway")]
    pub mode: Mode,
    /// Seconds to wait for answers in flight once sending stops.
    #[arg(long, default_value_t = 10.0)]
    pub drain_s: f64,
    /// Instead of a load run: write the demo catalog and N demo accounts
    /// straight into the (empty) store at --data-dir / --store, and exit.
    #[arg(long, value_name = "N")]
    pub generate: Option<usize>,
    /// Run the gateway in this process over the store at --data-dir /
    /// --store (filled with `--generate` first), and report its group
    /// commit counters; --addr is ignored.
    #[arg(long)]
    pub in_process: bool,
    /// With --in-process: keep the gateway's state in the in-memory store
    /// (no disk, no fsync), filled with --subscribers demo accounts: the
    /// ceiling of everything but the durable store.
    #[arg(long, requires = "in_process")]
    pub memory: bool,
    /// With --in-process: the gateway's smpp.batch_max (1 = one commit,
    /// one fsync, per request).
    #[arg(long, default_value_t = 512)]
    pub batch_max: usize,
    /// With --in-process: commit straight into the backend, without the
    /// write-ahead log (store.write_ahead_log = false).
    #[arg(long, requires = "in_process")]
    pub no_log: bool,
    /// With --in-process: the log's store.checkpoint_mib.
    #[arg(long, requires = "in_process")]
    pub checkpoint_mib: Option<u64>,
    /// Accounts per commit for --generate.
    #[arg(long, default_value_t = 100_000)]
    pub chunk: usize,
    /// The "today" of --generate (default: today in the catalog's zone).
    #[arg(long)]
    pub today: Option<NaiveDate>,
}

impl LoadArgs {
    pub fn config(&self) -> LoadConfig {
        LoadConfig {
            addr: self.addr.clone(),
            connections: self.connections,
            window: self.window,
            duration: self.duration_s.map(|s| Duration::from_secs_f64(s.max(0.0))),
            count: self.count,
            rate: self.rate,
            subscribers: self.subscribers,
            seed: self.seed,
            sms_ratio: self.sms_ratio,
            system_id: self.system_id.clone(),
            password: self.password.clone(),
            mode: self.mode,
            drain: Duration::from_secs_f64(self.drain_s.max(0.0)),
        }
    }
}

/// The `load` command: a load run (JSON report on stdout, summary on
/// stderr) or, with `--generate`, a bulk store generation.
pub fn main(
    args: LoadArgs,
    store_kind: crate::store::StoreKind,
    data_dir: std::path::PathBuf,
) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(n) = args.generate {
        // Bulk generation commits 100 k accounts per transaction: the log
        // would only write everything twice.
        let store = crate::store::open_with(store_kind, &data_dir, false)?;
        let report = generate_store(&store, n, args.seed, today(args.today)?, args.chunk)?;
        drop(store);
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let cfg = args.config();
    let report = if args.in_process {
        let store: Arc<dyn Store> = if args.memory {
            let store: Arc<dyn Store> = Arc::new(crate::store::memory::MemoryStore::new());
            generate_store(
                &store,
                args.subscribers,
                args.seed,
                today(args.today)?,
                args.chunk,
            )?;
            store
        } else {
            let mut sc = crate::config::StoreConfig {
                write_ahead_log: !args.no_log,
                ..Default::default()
            };
            if let Some(m) = args.checkpoint_mib {
                sc.checkpoint_mib = m;
            }
            crate::store::open_with_options(store_kind, &data_dir, sc.log_options())?
        };
        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(run_in_process(&cfg, store, args.batch_max))?
    } else {
        // Resolve (and refuse non-loopback) before starting a runtime.
        loopback_addr(&cfg.addr)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(run(&cfg))?
    };
    eprintln!("{}", report.summary());
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// `given`, or today in the demo catalog's zone (what `serve` uses).
fn today(given: Option<NaiveDate>) -> Result<NaiveDate, Box<dyn std::error::Error>> {
    Ok(match given {
        Some(d) => d,
        None => {
            let tz: chrono_tz::Tz = demo::demo_catalog().timezone.parse()?;
            chrono::Utc::now().with_timezone(&tz).date_naive()
        }
    })
}

/// What [`generate_store`] did.
#[derive(Debug, Clone, Serialize)]
pub struct GenReport {
    pub accounts: u64,
    pub seed: u64,
    pub today: String,
    pub chunk: usize,
    pub elapsed_s: f64,
    pub accounts_per_s: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Gateway(#[from] crate::gateway::GatewayError),
    #[error("the store already holds {0} accounts; generate into an empty store (or use `import accounts`)")]
    NotEmpty(u64),
}

/// Write the demo catalog (if the store has none) and demo accounts
/// `0..n` straight into an empty `store`, `chunk` accounts per commit.
///
/// One thread generates the accounts while the calling thread commits the
/// previous chunk, so the two overlap on two cores.
pub fn generate_store(
    store: &Arc<dyn Store>,
    n: usize,
    seed: u64,
    today: NaiveDate,
    chunk: usize,
) -> Result<GenReport, GenError> {
    let started = Instant::now();
    let existing = store.account_count()?;
    if existing > 0 {
        return Err(GenError::NotEmpty(existing));
    }
    if store.catalog()?.is_none() {
        Gateway::import_catalog(store.as_ref(), demo::demo_catalog())?;
    }
    let chunk = chunk.max(1);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Write>>(2);
    let producer = std::thread::Builder::new()
        .name("demo-generator".into())
        .spawn(move || {
            let mut accounts = demo::demo_accounts(n, seed, today);
            loop {
                let writes: Vec<Write> = accounts
                    .by_ref()
                    .take(chunk)
                    .map(|a| Write::PutAccount(AccountState::imported(a)))
                    .collect();
                if writes.is_empty() || tx.send(writes).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| StoreError::Io(format!("spawning the generator: {e}")))?;
    let mut written = 0u64;
    let mut result = Ok(());
    for writes in rx {
        let len = writes.len() as u64;
        if let Err(e) = store.commit(writes) {
            result = Err(e);
            break;
        }
        written += len;
    }
    let _ = producer.join();
    result?;
    let elapsed_s = started.elapsed().as_secs_f64();
    Ok(GenReport {
        accounts: written,
        seed,
        today: today.to_string(),
        chunk,
        elapsed_s: (elapsed_s * 1000.0).round() / 1000.0,
        accounts_per_s: (written as f64 / elapsed_s.max(1e-9)).round(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_loopback() {
        assert!(matches!(
            loopback_addr("10.1.2.3:2775"),
            Err(LoadError::NotLoopback { .. })
        ));
        assert!(matches!(
            loopback_addr("[2001:db8::1]:2775"),
            Err(LoadError::NotLoopback { .. })
        ));
        assert!(loopback_addr("127.0.0.1:2775").is_ok());
        assert!(loopback_addr("[::1]:2775").is_ok());
    }

    #[test]
    fn classifies_default_texts() {
        let c = Classifier::new();
        assert_eq!(
            c.classify("Пакет обновлён: -450,00 руб., следующее списание 22.12.2026. Детали в SMS"),
            "RENEWED"
        );
        assert_eq!(
            c.classify("Недостаточно средств: нужно 450,00 руб., на счёте 10,00 руб."),
            "INSUFFICIENT_FUNDS"
        );
        assert_eq!(
            c.classify("Пакет не обновлён: на номере есть блокировка"),
            "BLOCKED"
        );
        assert_eq!(c.classify("«Обнови пакет»: списано 1 руб."), "RENEWED");
        assert_eq!(c.classify("something else"), "OTHER");
    }

    #[test]
    fn request_keys_round_trip() {
        for (key, sms) in [(0u32, false), (0x1234_5678, true), (u32::MAX, false)] {
            let pdu = build_request(7, key, sms);
            let mo = MoMessage::from_pdu(&pdu).unwrap();
            assert_eq!(request_key(&mo), key);
            assert_eq!(mo.source_addr, "79000000007");
            assert_eq!(
                mo.ussd_service_op,
                (!sms).then_some(ussd_service_op::PSSR_INDICATION)
            );
        }
    }

    #[test]
    fn generate_store_fills_an_empty_store_and_refuses_a_full_one() {
        let store: Arc<dyn Store> = Arc::new(crate::store::memory::MemoryStore::new());
        let today = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        let r = generate_store(&store, 1000, 1, today, 300).unwrap();
        assert_eq!(r.accounts, 1000);
        assert_eq!(store.account_count().unwrap(), 1000);
        assert_eq!(
            store
                .account(&demo::demo_msisdn(999))
                .unwrap()
                .unwrap()
                .account,
            demo::demo_account(999, 1, today)
        );
        assert!(matches!(
            generate_store(&store, 10, 1, today, 300),
            Err(GenError::NotEmpty(1000))
        ));
    }
}

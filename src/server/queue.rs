//! The one queue every engine command goes through, and group commit.
//!
//! Connections (and later an admin API) send [`Request`]s through an
//! [`EngineHandle`]; one blocking thread owns the [`Gateway`]. It takes
//! whatever has queued up (at most `batch_max`), applies it in arrival order
//! and stages it as one atomic commit ([`crate::store::Store::stage`]); a
//! second thread waits for each commit to be durable, in order, and answers
//! its waiters. Behind the write-ahead log, commits staged while a sync runs
//! share the next `fdatasync`, so the group size follows the load: one
//! request alone is synced at once, a burst shares one sync. There is no
//! timer and no fixed sleep. Without a log (`stage` = `commit`) the batch
//! is what queued up during the previous commit.

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot, watch};

use std::sync::atomic::Ordering;

use crate::engine::{Applied, Effect, EngineError};
use crate::gateway::{Gateway, Request};
use crate::store::{Pending, StoreError, Write};

/// Why a request got no engine result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    #[error("store commit failed: {0}")]
    Store(String),
    #[error("the engine queue is shut down")]
    Closed,
}

impl From<StoreError> for QueueError {
    fn from(e: StoreError) -> Self {
        QueueError::Store(e.to_string())
    }
}

enum Job {
    Engine {
        request: Request,
        reply: oneshot::Sender<Result<Applied, QueueError>>,
    },
    /// Remove a delivered SMS from the outbox, in the next commit.
    Dequeue {
        id: u64,
        done: oneshot::Sender<Result<(), QueueError>>,
    },
}

/// Statistics of the committer, for logs and the load report.
#[derive(Debug, Default)]
pub struct QueueStats {
    pub batches: std::sync::atomic::AtomicU64,
    pub requests: std::sync::atomic::AtomicU64,
}

/// A cheap, cloneable sender into the engine queue.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Job>,
    /// Bumped after every commit that queued an SMS. A watch, not a
    /// `Notify`: a connection busy writing when the commit lands still sees
    /// the change at its next `changed()`, so no SMS waits for the retry
    /// tick.
    pub outbox: Arc<watch::Sender<u64>>,
    pub stats: Arc<QueueStats>,
}

impl EngineHandle {
    /// Submit one request; resolves once its batch is durable.
    pub async fn execute(&self, request: Request) -> Result<Applied, QueueError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::Engine { request, reply })
            .await
            .map_err(|_| QueueError::Closed)?;
        rx.await.map_err(|_| QueueError::Closed)?
    }

    /// Remove outbox entry `id` (its SMS was acknowledged by the network).
    pub async fn dequeue(&self, id: u64) -> Result<(), QueueError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Job::Dequeue { id, done })
            .await
            .map_err(|_| QueueError::Closed)?;
        rx.await.map_err(|_| QueueError::Closed)?
    }
}

/// One applied batch on its way to the replier.
struct Staged {
    jobs: Vec<Job>,
    result: Result<(Vec<Result<Applied, EngineError>>, Pending), StoreError>,
}

impl Staged {
    /// Wait until the batch is durable, then answer every waiter.
    fn finish(self, outbox: &watch::Sender<u64>) {
        let Staged { jobs, result } = self;
        match result.and_then(|(results, pending)| pending.wait().map(|_| results)) {
            Ok(results) => {
                let queued = results.iter().any(|r| {
                    r.as_ref()
                        .is_ok_and(|a| a.effects.iter().any(|e| matches!(e, Effect::Notice(_))))
                });
                let mut results = results.into_iter();
                for job in jobs {
                    match job {
                        Job::Engine { reply, .. } => {
                            // One result per request, in order.
                            let r = results
                                .next()
                                .map(|r| r.map_err(QueueError::from))
                                .unwrap_or(Err(QueueError::Closed));
                            let _ = reply.send(r);
                        }
                        Job::Dequeue { done, .. } => {
                            let _ = done.send(Ok(()));
                        }
                    }
                }
                if queued {
                    outbox.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
            Err(e) => {
                // Nothing of this batch is known durable: every waiter
                // hears so, and none of them is acknowledged.
                tracing::error!(error = %e, batch = jobs.len(), "store commit failed");
                let err = QueueError::from(e);
                for job in jobs {
                    match job {
                        Job::Engine { reply, .. } => {
                            let _ = reply.send(Err(err.clone()));
                        }
                        Job::Dequeue { done, .. } => {
                            let _ = done.send(Err(err.clone()));
                        }
                    }
                }
            }
        }
    }
}

/// `f`, or `None` if it panicked (the panic is still printed by the hook).
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

/// What `jobs` give the engine: their requests in order, and the outbox
/// removals that ride along in the same commit.
fn engine_input(jobs: &[Job]) -> (Vec<Request>, Vec<Write>) {
    let mut requests = Vec::with_capacity(jobs.len());
    let mut extra = Vec::new();
    for j in jobs {
        match j {
            Job::Engine { request, .. } => requests.push(request.clone()),
            Job::Dequeue { id, .. } => extra.push(Write::Dequeue(*id)),
        }
    }
    (requests, extra)
}

/// One job applied and staged on its own; a panic is its error alone.
fn one_by_one(gateway: &Gateway, job: Job) -> Staged {
    let (requests, extra) = engine_input(std::slice::from_ref(&job));
    let result = guarded(|| gateway.stage_with(&requests, extra)).unwrap_or_else(|| {
        let who = requests.first().map_or("-", |r| r.msisdn.as_str());
        tracing::error!(msisdn = %who, "the engine panicked on this request: answered with an error");
        Err(StoreError::Io(
            "internal error applying this request (see the gateway's log)".into(),
        ))
    });
    Staged {
        jobs: vec![job],
        result,
    }
}

/// The committer thread. Dropping every [`EngineHandle`] ends it after the
/// last batch is committed; `join` waits for that (graceful shutdown).
pub struct Committer {
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// Start the committer over `gateway`. `queue_max` bounds the requests
    /// waiting for the engine (back-pressure on connections beyond it).
    pub fn start(
        gateway: Gateway,
        batch_max: usize,
        queue_max: usize,
    ) -> (Committer, EngineHandle) {
        let (tx, mut rx) = mpsc::channel::<Job>(queue_max.max(1));
        let outbox = Arc::new(watch::Sender::new(0u64));
        let stats = Arc::new(QueueStats::default());
        let handle = EngineHandle {
            tx,
            outbox: outbox.clone(),
            stats: stats.clone(),
        };
        // Pipelined when the store has a log: this thread applies batch
        // N+1 while the replier waits for batch N's sync, and answers in
        // order, so no answer leaves before everything it read is durable
        // (G3). batch_max 1 is the unbatched baseline: each request waits
        // for its own sync before the next is applied.
        let pipelined = batch_max > 1;
        let (done_tx, done_rx) = std::sync::mpsc::channel::<Staged>();
        let replier = {
            let outbox = outbox.clone();
            std::thread::Builder::new()
                .name("engine-replier".into())
                .spawn(move || {
                    for staged in done_rx {
                        staged.finish(&outbox);
                    }
                })
                .expect("spawning the replier thread")
        };
        let thread = std::thread::Builder::new()
            .name("engine-committer".into())
            .spawn(move || {
                let mut jobs: Vec<Job> = Vec::with_capacity(batch_max);
                'run: while let Some(first) = rx.blocking_recv() {
                    jobs.push(first);
                    while jobs.len() < batch_max {
                        match rx.try_recv() {
                            Ok(j) => jobs.push(j),
                            Err(_) => break,
                        }
                    }
                    let (requests, extra) = engine_input(&jobs);
                    stats.batches.fetch_add(1, Ordering::Relaxed);
                    stats
                        .requests
                        .fetch_add(requests.len() as u64, Ordering::Relaxed);
                    let batches = match guarded(|| gateway.stage_with(&requests, extra)) {
                        Some(result) => vec![Staged {
                            jobs: std::mem::take(&mut jobs),
                            result,
                        }],
                        // A bug met by one request must not take everyone
                        // (nor the committer) down: the batch is applied
                        // again a request at a time, and only the request
                        // that fails again gets an error.
                        None => {
                            tracing::error!(
                                batch = jobs.len(),
                                "the engine panicked on a batch: applying it one request at a time"
                            );
                            jobs.drain(..)
                                .map(|job| one_by_one(&gateway, job))
                                .collect()
                        }
                    };
                    for staged in batches {
                        if pipelined {
                            if done_tx.send(staged).is_err() {
                                break 'run;
                            }
                        } else {
                            staged.finish(&outbox);
                        }
                    }
                }
                drop(done_tx);
                let _ = replier.join();
            })
            .expect("spawning the committer thread");
        (
            Committer {
                thread: Some(thread),
            },
            handle,
        )
    }

    /// Wait until every queued request has been committed and answered.
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::{
        AccountState, Catalog, Channel, JournalLine, Notice, StatementLine,
    };
    use crate::engine::{Command, EngineConfig};
    use crate::store::memory::MemoryStore;
    use crate::store::{Committed, LogMarks, Store};

    const POISON: &str = "79000000002";

    /// A store that panics when asked to write anything of one subscriber
    /// (standing in for any bug met while applying a request).
    struct Panicky(MemoryStore, std::sync::atomic::AtomicBool);

    impl Store for Panicky {
        fn backend(&self) -> &'static str {
            "panicky"
        }
        fn catalog(&self) -> Result<Option<Catalog>, StoreError> {
            self.0.catalog()
        }
        fn account(&self, msisdn: &str) -> Result<Option<AccountState>, StoreError> {
            self.0.account(msisdn)
        }
        fn accounts_after(
            &self,
            after: Option<&str>,
            limit: usize,
        ) -> Result<Vec<AccountState>, StoreError> {
            self.0.accounts_after(after, limit)
        }
        fn account_count(&self) -> Result<u64, StoreError> {
            self.0.account_count()
        }
        fn commit(&self, writes: Vec<Write>) -> Result<Committed, StoreError> {
            let poisoned = writes.iter().any(|w| match w {
                Write::PutAccount(a) => a.account.msisdn == POISON,
                Write::Journal(l) => l.msisdn == POISON,
                _ => false,
            });
            let armed = self.1.load(Ordering::Relaxed);
            assert!(!(armed && poisoned), "a bug met while writing {POISON}");
            self.0.commit(writes)
        }
        fn log_marks(&self) -> Result<LogMarks, StoreError> {
            self.0.log_marks()
        }
        fn statement(&self, msisdn: &str) -> Result<Vec<StatementLine>, StoreError> {
            self.0.statement(msisdn)
        }
        fn journal(&self, msisdn: Option<&str>) -> Result<Vec<JournalLine>, StoreError> {
            self.0.journal(msisdn)
        }
        fn outbox(&self, limit: usize) -> Result<Vec<(u64, Notice)>, StoreError> {
            self.0.outbox(limit)
        }
    }

    fn renew(msisdn: &str) -> Request {
        Request {
            msisdn: msisdn.into(),
            command: Command::Renew {
                channel: Channel::Ussd,
                request: "*929#".into(),
                dedup_key: None,
            },
            now: "2026-11-22T07:00:00Z".parse().unwrap(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_that_panics_fails_alone_and_the_committer_goes_on() {
        let today = "2026-11-22".parse().unwrap();
        let panicky = Arc::new(Panicky(
            MemoryStore::new(),
            std::sync::atomic::AtomicBool::new(false),
        ));
        let store: Arc<dyn Store> = panicky.clone();
        Gateway::import_catalog(store.as_ref(), crate::data::demo::demo_catalog()).unwrap();
        let gw = Gateway::open(store.clone(), EngineConfig::default()).unwrap();
        gw.import_accounts(
            crate::data::demo::demo_accounts(8, 1, today).collect(),
            renew(POISON).now,
        )
        .unwrap();
        panicky.1.store(true, Ordering::Relaxed);
        let (committer, engine) = Committer::start(gw, 512, 64);
        // Sent together, so they share a batch.
        let who = ["79000000000", POISON, "79000000001"];
        let answers = futures_join(&engine, &who).await;
        assert!(answers[0].is_ok(), "{:?}", answers[0]);
        assert!(
            matches!(answers[1], Err(QueueError::Store(_))),
            "{:?}",
            answers[1]
        );
        assert!(answers[2].is_ok(), "{:?}", answers[2]);
        // Everyone else is still served.
        assert!(engine.execute(renew("79000000003")).await.is_ok());
        assert_eq!(store.journal(None).unwrap().len(), 3);
        drop(engine);
        committer.join();
    }

    async fn futures_join(
        engine: &EngineHandle,
        who: &[&str],
    ) -> Vec<Result<crate::engine::Applied, QueueError>> {
        let mut set = tokio::task::JoinSet::new();
        for (i, m) in who.iter().enumerate() {
            let engine = engine.clone();
            let request = renew(m);
            set.spawn(async move { (i, engine.execute(request).await) });
        }
        let mut out: Vec<_> = set.join_all().await;
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, r)| r).collect()
    }
}

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
                while let Some(first) = rx.blocking_recv() {
                    jobs.push(first);
                    while jobs.len() < batch_max {
                        match rx.try_recv() {
                            Ok(j) => jobs.push(j),
                            Err(_) => break,
                        }
                    }
                    let mut requests = Vec::with_capacity(jobs.len());
                    let mut extra = Vec::new();
                    for j in &jobs {
                        match j {
                            Job::Engine { request, .. } => requests.push(request.clone()),
                            Job::Dequeue { id, .. } => extra.push(Write::Dequeue(*id)),
                        }
                    }
                    let staged = gateway.stage_with(&requests, extra);
                    stats.batches.fetch_add(1, Ordering::Relaxed);
                    stats
                        .requests
                        .fetch_add(requests.len() as u64, Ordering::Relaxed);
                    let staged = Staged {
                        jobs: std::mem::take(&mut jobs),
                        result: staged,
                    };
                    if pipelined {
                        if done_tx.send(staged).is_err() {
                            break;
                        }
                    } else {
                        staged.finish(&outbox);
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

//! The gateway core: the engine over the store, one commit per batch.
//!
//! Every engine command, whoever sends it (the SMPP front-end, the CLI, the
//! replay tool, later an admin API), goes through [`Gateway::execute`]: the
//! commands of one batch are applied in order against the stored accounts
//! (later commands see earlier ones' changes), and everything they change
//! lands in one atomic, durable store commit before any result is returned
//! (G3). The SMPP shell feeds it from one queue, so grouping requests that
//! arrive together into one batch is what makes one fsync serve many.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};

use crate::engine::model::{AccountState, Catalog, StatementKind, StatementLine};
use crate::engine::{Applied, Command, Effect, Engine, EngineConfig, EngineError};
use crate::store::{Pending, Store, StoreError, Write};

/// One command for one subscriber at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub msisdn: String,
    pub command: Command,
    pub now: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the store has no catalog yet: run `shortcode-gw import catalog FILE` first")]
    NoCatalog,
    #[error("the new catalog lacks plan {plan} version {version}, which account {msisdn} is on")]
    CatalogDropsPlan {
        plan: String,
        version: String,
        msisdn: String,
    },
}

/// What a nightly run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NightlyReport {
    pub date: String,
    pub accounts: u64,
    pub changed: u64,
    pub statement_lines: u64,
}

/// Accounts read and committed per store transaction by bulk operations.
const BULK_CHUNK: usize = 10_000;

/// Stored accounts by MSISDN, as read for one batch.
type AccountReads<'r> = Vec<(&'r str, Option<AccountState>)>;

/// Threads that read a large batch's accounts (see `read_accounts`).
const READ_THREADS: usize = 4;
/// Distinct subscribers in a batch from which reading them in parallel pays
/// for starting the threads.
const PARALLEL_READS_FROM: usize = 16;
/// Average account read (ns) above which reads are taken to go to the disk:
/// a read served from memory takes a few µs, one from the disk 0.1 ms or
/// more.
const SLOW_READ_NS: u64 = 50_000;

pub struct Gateway {
    store: Arc<dyn Store>,
    engine: Engine,
    /// Moving average of one account read, in ns (see `read_accounts`).
    read_ns: AtomicU64,
}

impl Gateway {
    /// The engine over the store's catalog.
    pub fn open(store: Arc<dyn Store>, config: EngineConfig) -> Result<Gateway, GatewayError> {
        let catalog = store.catalog()?.ok_or(GatewayError::NoCatalog)?;
        Ok(Gateway {
            engine: Engine::new(catalog, config)?,
            store,
            read_ns: AtomicU64::new(0),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Apply `requests` in order and commit everything in one transaction.
    /// An operator error in one request fails only that request.
    pub fn execute(
        &self,
        requests: &[Request],
    ) -> Result<Vec<Result<Applied, EngineError>>, StoreError> {
        self.execute_with(requests, Vec::new())
    }

    /// [`execute`](Self::execute), with `extra` writes (outbox removals) in
    /// the same commit.
    pub fn execute_with(
        &self,
        requests: &[Request],
        extra: Vec<Write>,
    ) -> Result<Vec<Result<Applied, EngineError>>, StoreError> {
        let (results, pending) = self.stage_with(requests, extra)?;
        pending.wait()?;
        Ok(results)
    }

    /// The stored accounts of a batch's subscribers. While reads go to the
    /// disk (their moving average is over [`SLOW_READ_NS`], as after a
    /// restart with a cold page cache) a large batch is read on
    /// [`READ_THREADS`] threads at once, because one at a time those reads
    /// set the pace of the whole gateway (measured cold, 10 alternating
    /// pairs: 7.9–9.5 k → 10.5–13.5 k req/s). From memory they are read in
    /// turn: there the threads only cost (measured at 7,200 req/s: p99 12 →
    /// 22 ms when always on;
    /// benches/RESULTS.md, session 4). The clock only picks how reads are
    /// scheduled, never what is read or decided; the batch is still applied
    /// in order on the caller's thread.
    fn read_accounts<'r>(
        &self,
        requests: &'r [Request],
    ) -> Result<HashMap<&'r str, Option<AccountState>>, StoreError> {
        let mut wanted: Vec<&str> = requests.iter().map(|r| r.msisdn.as_str()).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let parallel = wanted.len() >= PARALLEL_READS_FROM
            && self.read_ns.load(Ordering::Relaxed) > SLOW_READ_NS;
        let parts: Vec<Result<(AccountReads<'r>, Duration), StoreError>> = if parallel {
            let chunk = wanted.len().div_ceil(READ_THREADS);
            std::thread::scope(|scope| {
                let started: Vec<_> = wanted
                    .chunks(chunk)
                    .map(|part| {
                        let thread = std::thread::Builder::new()
                            .name("account-read".into())
                            .spawn_scoped(scope, move || self.read_part(part));
                        (part, thread)
                    })
                    .collect();
                // Every thread is joined before any error is returned.
                started
                    .into_iter()
                    .map(|(part, thread)| match thread {
                        Ok(t) => t.join().unwrap_or_else(|_| {
                            Err(StoreError::Io("an account read panicked".into()))
                        }),
                        // No thread to be had: read this part here.
                        Err(_) => self.read_part(part),
                    })
                    .collect()
            })
        } else {
            vec![self.read_part(&wanted)]
        };
        let mut out = HashMap::with_capacity(wanted.len());
        let mut busy = Duration::ZERO;
        for part in parts {
            let (reads, took) = part?;
            busy += took;
            out.extend(reads);
        }
        if !wanted.is_empty() {
            // Time spent reading (not starting threads), per account.
            let sample = u64::try_from(busy.as_nanos() / wanted.len() as u128).unwrap_or(u64::MAX);
            let old = self.read_ns.load(Ordering::Relaxed);
            self.read_ns
                .store(old - old / 8 + sample / 8, Ordering::Relaxed);
        }
        Ok(out)
    }

    /// Read these accounts in turn, and how long that took.
    fn read_part<'r>(&self, part: &[&'r str]) -> Result<(AccountReads<'r>, Duration), StoreError> {
        let started = Instant::now();
        let reads = part
            .iter()
            .map(|&m| Ok((m, self.store.account(m)?)))
            .collect::<Result<_, StoreError>>()?;
        Ok((reads, started.elapsed()))
    }

    /// [`Gateway::execute_with`] without waiting for durability: the
    /// results may be acted on only once the [`Pending`] resolves (G3), but
    /// the next batch can be applied meanwhile ([`Store::stage`]).
    pub fn stage_with(
        &self,
        requests: &[Request],
        extra: Vec<Write>,
    ) -> Result<(Vec<Result<Applied, EngineError>>, Pending), StoreError> {
        let mut overlay: HashMap<&str, Option<AccountState>> = self.read_accounts(requests)?;
        let mut dirty: Vec<&str> = Vec::new();
        let mut writes = Vec::new();
        let mut results = Vec::with_capacity(requests.len());
        for r in requests {
            let current = overlay.get(r.msisdn.as_str()).cloned().flatten();
            let applied = self
                .engine
                .apply(&r.msisdn, current.as_ref(), &r.command, r.now);
            if let Ok(a) = &applied {
                if a.changed {
                    if !dirty.contains(&r.msisdn.as_str()) {
                        dirty.push(&r.msisdn);
                    }
                    overlay.insert(&r.msisdn, a.state.clone());
                }
                writes.extend(effect_writes(&a.effects));
            }
            results.push(applied);
        }
        let accounts = dirty
            .iter()
            .filter_map(|m| overlay.get(m).cloned().flatten())
            .map(Write::PutAccount);
        let mut all: Vec<Write> = accounts.collect();
        all.extend(writes);
        all.extend(extra);
        let pending = if all.is_empty() {
            Pending::done(Default::default())
        } else {
            self.store.stage(all)?
        };
        Ok((results, pending))
    }

    /// One request on its own (CLI, tests).
    pub fn execute_one(&self, request: Request) -> Result<Applied, GatewayError> {
        let mut r = self.execute(std::slice::from_ref(&request))?;
        Ok(r.pop().expect("one request gives one result")?)
    }

    /// The nightly run for local date `date` over every account, committed
    /// in chunks. Safe to interrupt and repeat: N4 makes a second run of the
    /// same date change nothing.
    pub fn nightly(
        &self,
        date: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<NightlyReport, GatewayError> {
        let mut report = NightlyReport {
            date: date.to_string(),
            ..NightlyReport::default()
        };
        let mut after: Option<String> = None;
        loop {
            let chunk = self.store.accounts_after(after.as_deref(), BULK_CHUNK)?;
            let Some(last) = chunk.last() else { break };
            after = Some(last.account.msisdn.clone());
            let mut writes = Vec::new();
            for st in &chunk {
                report.accounts += 1;
                let a = self.engine.apply(
                    &st.account.msisdn,
                    Some(st),
                    &Command::Nightly { date },
                    now,
                )?;
                if a.changed {
                    report.changed += 1;
                    if let Some(s) = a.state {
                        writes.push(Write::PutAccount(s));
                    }
                }
                report.statement_lines += a
                    .effects
                    .iter()
                    .filter(|e| matches!(e, Effect::Statement(_)))
                    .count() as u64;
                writes.extend(effect_writes(&a.effects));
            }
            if !writes.is_empty() {
                self.store.commit(writes)?;
            }
        }
        Ok(report)
    }

    /// Replace the catalog. Refused when an account is on a plan version the
    /// new catalog drops (its fees would be unknown).
    pub fn import_catalog(store: &dyn Store, catalog: Catalog) -> Result<(), GatewayError> {
        let engine = Engine::new(catalog.clone(), EngineConfig::default())?;
        let mut after: Option<String> = None;
        loop {
            let chunk = store.accounts_after(after.as_deref(), BULK_CHUNK)?;
            let Some(last) = chunk.last() else { break };
            after = Some(last.account.msisdn.clone());
            if let Some(a) = chunk
                .iter()
                .map(|s| &s.account)
                .find(|a| engine.plan(&a.plan, &a.plan_version).is_none())
            {
                return Err(GatewayError::CatalogDropsPlan {
                    plan: a.plan.to_string(),
                    version: a.plan_version.to_string(),
                    msisdn: a.msisdn.clone(),
                });
            }
        }
        store.commit(vec![Write::PutCatalog(catalog)])?;
        Ok(())
    }

    /// Load accounts in one commit (all or nothing). A number already in the
    /// store is replaced by the file's version; its bookkeeping is kept and a
    /// changed balance is booked as an adjustment so G2 keeps holding.
    pub fn import_accounts(
        &self,
        accounts: Vec<crate::engine::model::Account>,
        now: DateTime<Utc>,
    ) -> Result<usize, GatewayError> {
        let n = accounts.len();
        let mut writes = Vec::with_capacity(n);
        for account in accounts {
            match self.store.account(&account.msisdn)? {
                None => writes.push(Write::PutAccount(AccountState::imported(account))),
                Some(mut old) => {
                    let delta = account.balance - old.account.balance;
                    if !delta.is_zero() {
                        writes.push(Write::Statement(StatementLine {
                            at: self.engine.local_stamp(now),
                            msisdn: account.msisdn.clone(),
                            kind: StatementKind::Adjustment,
                            amount: delta,
                            balance_after: account.balance,
                            description: "Корректировка баланса при импорте".into(),
                            period_from: None,
                            period_to: None,
                        }));
                    }
                    old.account = account;
                    writes.push(Write::PutAccount(old));
                }
            }
        }
        self.store.commit(writes)?;
        Ok(n)
    }
}

/// The store writes that carry an engine result's effects.
pub fn effect_writes(effects: &[Effect]) -> impl Iterator<Item = Write> + '_ {
    effects.iter().map(|e| match e {
        Effect::Statement(s) => Write::Statement(s.clone()),
        Effect::Journal(j) => Write::Journal(j.clone()),
        Effect::Notice(n) => Write::Enqueue(n.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::demo::demo_msisdn;
    use crate::engine::model::Channel;

    fn filled() -> Arc<dyn Store> {
        let store: Arc<dyn Store> = Arc::new(crate::store::memory::MemoryStore::new());
        let today = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        crate::load::generate_store(&store, 64, 7, today, 64).unwrap();
        store
    }

    /// A batch read on several threads (as when reads go to the disk) gives
    /// the same results, and leaves the same accounts, as its requests one
    /// at a time — including a subscriber who asks twice in the batch and
    /// must see the first answer's change.
    #[test]
    fn a_large_batch_equals_its_requests_one_at_a_time() {
        let now: DateTime<Utc> = "2026-11-22T09:00:00Z".parse().unwrap();
        // Subscribers 0..20 twice each, and two requests from a number the
        // store does not know.
        let known = PARALLEL_READS_FROM + 4;
        let requests: Vec<Request> = (0..2 * known + 2)
            .map(|i| Request {
                msisdn: if i < 2 * known {
                    demo_msisdn(i % known)
                } else {
                    "79999999999".into()
                },
                command: Command::Renew {
                    channel: Channel::Ussd,
                    dedup_key: None,
                    request: "*929#".into(),
                },
                now,
            })
            .collect();
        let (a, b) = (filled(), filled());
        let gw = Gateway::open(a.clone(), EngineConfig::default()).unwrap();
        // As if reads went to the disk: the batch is read on threads.
        gw.read_ns.store(u64::MAX / 2, Ordering::Relaxed);
        let batched = gw.execute_with(&requests, Vec::new()).unwrap();
        let one = Gateway::open(b.clone(), EngineConfig::default()).unwrap();
        let single: Vec<_> = requests
            .iter()
            .map(|r| {
                one.execute_with(std::slice::from_ref(r), Vec::new())
                    .unwrap()
                    .remove(0)
            })
            .collect();
        assert_eq!(batched, single);
        assert!(
            batched.iter().any(|r| r.as_ref().is_ok_and(|a| a.changed)),
            "some request changed an account"
        );
        for i in 0..known {
            let m = demo_msisdn(i);
            assert_eq!(a.account(&m).unwrap(), b.account(&m).unwrap(), "{m}");
        }
    }
}

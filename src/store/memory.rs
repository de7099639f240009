//! In-memory store: BTreeMaps behind a mutex.
//!
//! Same semantics as the disk backends (ordering, id assignment, atomic
//! commits) but nothing survives the process. Used by pure tests, benches and
//! the in-process replay, and it is the model the conformance suite compares
//! the disk backends against.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use super::{Committed, Store, StoreError, Write};
use crate::engine::model::{AccountState, Catalog, JournalLine, Notice, StatementLine};

/// A non-durable [`Store`].
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    accounts: BTreeMap<String, AccountState>,
    catalog: Option<Catalog>,
    journal: Vec<JournalLine>,
    /// Positions in `journal` per MSISDN, ascending.
    journal_by_msisdn: BTreeMap<String, Vec<usize>>,
    statements: BTreeMap<String, Vec<StatementLine>>,
    outbox: BTreeMap<u64, Notice>,
    /// Last outbox id handed out (ids start at 1 and are never reused).
    last_outbox_id: u64,
    log_seq: u64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        // A poisoned lock means a panic inside a commit; nothing in `apply`
        // panics, but refuse rather than serve possibly half-applied state.
        self.inner
            .lock()
            .map_err(|_| StoreError::Io("memory store lock poisoned by a panic".into()))
    }
}

impl Inner {
    fn apply(&mut self, writes: Vec<Write>) -> Committed {
        let mut committed = Committed::default();
        for w in writes {
            match w {
                Write::PutAccount(a) => {
                    self.accounts.insert(a.account.msisdn.clone(), a);
                }
                Write::Journal(line) => {
                    self.journal_by_msisdn
                        .entry(line.msisdn.clone())
                        .or_default()
                        .push(self.journal.len());
                    self.journal.push(line);
                }
                Write::Statement(line) => {
                    self.statements
                        .entry(line.msisdn.clone())
                        .or_default()
                        .push(line);
                }
                Write::Enqueue(n) => {
                    self.last_outbox_id += 1;
                    self.outbox.insert(self.last_outbox_id, n);
                    committed.enqueued.push(self.last_outbox_id);
                }
                Write::Dequeue(id) => {
                    self.outbox.remove(&id);
                }
                Write::PutCatalog(c) => self.catalog = Some(c),
                Write::EnqueueAt(id, n) => {
                    self.last_outbox_id = self.last_outbox_id.max(id);
                    self.outbox.insert(id, n);
                }
                Write::LogMark(m) => {
                    self.log_seq = m.log_seq;
                    self.last_outbox_id = self.last_outbox_id.max(m.next_outbox_id - 1);
                }
            }
        }
        committed
    }
}

impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn catalog(&self) -> Result<Option<Catalog>, StoreError> {
        Ok(self.lock()?.catalog.clone())
    }

    fn account(&self, msisdn: &str) -> Result<Option<AccountState>, StoreError> {
        Ok(self.lock()?.accounts.get(msisdn).cloned())
    }

    fn accounts_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AccountState>, StoreError> {
        use std::ops::Bound;
        let inner = self.lock()?;
        let lower = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        Ok(inner
            .accounts
            .range::<str, _>((lower, Bound::Unbounded))
            .take(limit)
            .map(|(_, a)| a.clone())
            .collect())
    }

    fn account_count(&self) -> Result<u64, StoreError> {
        Ok(self.lock()?.accounts.len() as u64)
    }

    fn commit(&self, writes: Vec<Write>) -> Result<Committed, StoreError> {
        Ok(self.lock()?.apply(writes))
    }

    fn log_marks(&self) -> Result<super::LogMarks, StoreError> {
        let inner = self.lock()?;
        Ok(super::LogMarks {
            log_seq: inner.log_seq,
            next_outbox_id: inner.last_outbox_id + 1,
        })
    }

    fn statement(&self, msisdn: &str) -> Result<Vec<StatementLine>, StoreError> {
        Ok(self
            .lock()?
            .statements
            .get(msisdn)
            .cloned()
            .unwrap_or_default())
    }

    fn journal(&self, msisdn: Option<&str>) -> Result<Vec<JournalLine>, StoreError> {
        let inner = self.lock()?;
        Ok(match msisdn {
            None => inner.journal.clone(),
            Some(m) => inner
                .journal_by_msisdn
                .get(m)
                .map(|idx| idx.iter().map(|&i| inner.journal[i].clone()).collect())
                .unwrap_or_default(),
        })
    }

    fn outbox(&self, limit: usize) -> Result<Vec<(u64, Notice)>, StoreError> {
        Ok(self
            .lock()?
            .outbox
            .iter()
            .take(limit)
            .map(|(id, n)| (*id, n.clone()))
            .collect())
    }
}

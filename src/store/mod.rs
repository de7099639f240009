//! Durable state behind one small trait.
//!
//! The store owns accounts (with the engine's bookkeeping), the catalog, the
//! request journal, the statement ledger and the outbox of SMS still to be
//! delivered. Everything one group of engine commands changes is handed to
//! [`Store::commit`] as one [`Write`] list: it lands atomically, and is on disk
//! when `commit` returns (G3). Keeping the gateway behind this trait is the
//! seam for running on a shared distributed store later.

use crate::engine::model::{AccountState, Catalog, JournalLine, Notice, StatementLine};

/// One change inside an atomic commit. Serialisable because the
/// write-ahead log ([`wal`]) records commits as lists of these.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Write {
    /// Insert or replace an account (keyed by its MSISDN).
    PutAccount(AccountState),
    /// Append to the request journal.
    Journal(JournalLine),
    /// Append to the statement ledger of `line.msisdn`.
    Statement(StatementLine),
    /// Queue an SMS for delivery; the commit returns its outbox id.
    Enqueue(Notice),
    /// Remove a delivered SMS from the outbox (unknown ids are ignored).
    Dequeue(u64),
    /// Replace the tariff catalog.
    PutCatalog(Catalog),
    /// Queue an SMS under an id chosen by the caller (the write-ahead log
    /// hands ids out before the backend sees the write); the backend's own
    /// counter moves past it so ids are still never reused.
    EnqueueAt(u64, Notice),
    /// The write-ahead log is applied up to `log_seq`, and has handed out
    /// outbox ids below `next_outbox_id`; lands in the same transaction as
    /// the writes it covers.
    LogMark(LogMarks),
}

/// What a backend remembers for the write-ahead log in front of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogMarks {
    /// Last log sequence number whose writes are in this store (0: none).
    pub log_seq: u64,
    /// The next outbox id the store would hand out (ids start at 1).
    pub next_outbox_id: u64,
}

/// A commit that reads already see and that becomes durable when
/// [`Pending::wait`] returns `Ok` (see [`Store::stage`]).
#[must_use = "a staged commit is not durable until waited for"]
pub struct Pending {
    committed: Committed,
    durable: Option<Box<dyn FnOnce() -> Result<(), StoreError> + Send>>,
}

impl Pending {
    /// A commit that is already durable.
    pub fn done(committed: Committed) -> Self {
        Pending {
            committed,
            durable: None,
        }
    }

    /// A commit that is durable once `wait` returns `Ok`.
    pub fn waiting(
        committed: Committed,
        wait: impl FnOnce() -> Result<(), StoreError> + Send + 'static,
    ) -> Self {
        Pending {
            committed,
            durable: Some(Box::new(wait)),
        }
    }

    /// Block until the commit is durable.
    pub fn wait(self) -> Result<Committed, StoreError> {
        if let Some(w) = self.durable {
            w()?;
        }
        Ok(self.committed)
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("committed", &self.committed)
            .field("durable", &self.durable.is_none())
            .finish()
    }
}

/// What a commit assigned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Outbox ids of the `Enqueue` writes, in order.
    pub enqueued: Vec<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O: {0}")]
    Io(String),
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
    #[error("store at {path} is in use by another process")]
    Locked { path: String },
}

pub trait Store: Send + Sync + 'static {
    /// Short name for logs: "redb", "sled", "memory".
    fn backend(&self) -> &'static str;
    fn catalog(&self) -> Result<Option<Catalog>, StoreError>;
    fn account(&self, msisdn: &str) -> Result<Option<AccountState>, StoreError>;
    /// Accounts in MSISDN order, strictly after `after`, at most `limit`.
    fn accounts_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AccountState>, StoreError>;
    fn account_count(&self) -> Result<u64, StoreError>;
    /// Atomic and durable when it returns Ok.
    fn commit(&self, writes: Vec<Write>) -> Result<Committed, StoreError>;
    /// Atomic like `commit`, and visible to reads when it returns, but
    /// durable only once the [`Pending`] is waited for: the caller can apply
    /// the next batch while this one is being synced (pipelined group
    /// commit). Stores without a log commit synchronously here.
    fn stage(&self, writes: Vec<Write>) -> Result<Pending, StoreError> {
        self.commit(writes).map(Pending::done)
    }
    /// The log marks kept by this store (see [`wal`]).
    fn log_marks(&self) -> Result<LogMarks, StoreError>;
    /// Log syncs (`fdatasync`) made so far, for stores that group staged
    /// commits into shared syncs; `None` when every commit syncs itself.
    fn log_syncs(&self) -> Option<u64> {
        None
    }
    /// One subscriber's statement, oldest first.
    fn statement(&self, msisdn: &str) -> Result<Vec<StatementLine>, StoreError>;
    /// The journal, oldest first; one subscriber's lines when `msisdn` is set.
    fn journal(&self, msisdn: Option<&str>) -> Result<Vec<JournalLine>, StoreError>;
    /// Queued SMS, oldest first, at most `limit`.
    fn outbox(&self, limit: usize) -> Result<Vec<(u64, Notice)>, StoreError>;
}

/// Values on disk are JSON: readable with the backend's own tools.
pub(crate) fn encode<T: serde::Serialize>(table: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Io(format!("encoding a {table} value: {e}")))
}

/// A value that does not decode is corruption, named by table and key.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    table: &str,
    key: impl std::fmt::Display,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt(format!("table {table}, key {key}: {e}")))
}

pub mod memory;
pub mod paced;
pub mod redb_store;
pub mod sled_store;
pub mod wal;

#[cfg(test)]
mod conformance;

/// Which durable backend [`open`] uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum StoreKind {
    /// redb: fsync-durable when `commit` returns (the default).
    #[default]
    Redb,
    /// sled 0.34: survives a process crash; see [`sled_store`] for why it
    /// does not promise survival of a power loss.
    Sled,
}

impl StoreKind {
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Redb => "redb",
            StoreKind::Sled => "sled",
        }
    }
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for StoreKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "redb" => Ok(StoreKind::Redb),
            "sled" => Ok(StoreKind::Sled),
            other => Err(format!(
                "unknown store backend {other:?} (expected \"redb\" or \"sled\")"
            )),
        }
    }
}

/// Open (creating if needed) the store of `kind` in directory `dir`, with
/// the write-ahead log in front of it (the default: see [`wal`]).
///
/// The directory is created when missing. redb keeps one file,
/// `dir/gateway.redb`; sled keeps its own directory, `dir/sled`; the log
/// keeps `dir/wal-*.log`. A store already open elsewhere (another process,
/// or another handle in this one) gives [`StoreError::Locked`] naming the
/// path.
pub fn open(
    kind: StoreKind,
    dir: impl AsRef<std::path::Path>,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    open_with(kind, dir, true)
}

/// [`open`], choosing whether the write-ahead log fronts the backend.
///
/// Without it every commit is a backend transaction with its own sync.
/// Either way a log left by an earlier run is replayed into the backend
/// first, so the two modes can be switched between restarts.
pub fn open_with(
    kind: StoreKind,
    dir: impl AsRef<std::path::Path>,
    log: bool,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    open_with_options(kind, dir, log.then(wal::LogOptions::default))
}

/// [`open_with`], with the log's tuning (`None`: no log).
pub fn open_with_options(
    kind: StoreKind,
    dir: impl AsRef<std::path::Path>,
    log: Option<wal::LogOptions>,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    let dir = dir.as_ref();
    // The other backend's data in this directory means a wrong --store: an
    // empty store of the asked kind beside it would hide every account.
    let other = match kind {
        StoreKind::Redb => dir.join(sled_store::DIR_NAME),
        StoreKind::Sled => dir.join(redb_store::FILE_NAME),
    };
    if other.exists() {
        let (asked, found) = match kind {
            StoreKind::Redb => ("redb", "sled"),
            StoreKind::Sled => ("sled", "redb"),
        };
        return Err(StoreError::Io(format!(
            "{} holds a {found} store ({}), not a {asked} one: open it with --store {found} (store.kind)",
            dir.display(),
            other.display()
        )));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::Io(format!("creating store directory {}: {e}", dir.display())))?;
    let base: std::sync::Arc<dyn Store> = match kind {
        StoreKind::Redb => std::sync::Arc::new(redb_store::RedbStore::open(
            dir.join(redb_store::FILE_NAME),
        )?),
        StoreKind::Sled => {
            std::sync::Arc::new(sled_store::SledStore::open(dir.join(sled_store::DIR_NAME))?)
        }
    };
    if let Some(opts) = log {
        Ok(std::sync::Arc::new(wal::LogStore::open(base, dir, opts)?))
    } else {
        wal::replay_into(&base, dir)?;
        Ok(base)
    }
}

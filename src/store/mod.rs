//! Durable state behind one small trait.
//!
//! The store owns accounts (with the engine's bookkeeping), the catalog, the
//! request journal, the statement ledger and the outbox of SMS still to be
//! delivered. Everything one group of engine commands changes is handed to
//! [`Store::commit`] as one [`Write`] list: it lands atomically, and is on disk
//! when `commit` returns (G3). Keeping the gateway behind this trait is the
//! seam for running on a shared distributed store later.

use crate::engine::model::{AccountState, Catalog, JournalLine, Notice, StatementLine};

/// One change inside an atomic commit.
#[derive(Debug, Clone, PartialEq)]
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
pub mod redb_store;
pub mod sled_store;

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

/// Open (creating if needed) the store of `kind` in directory `dir`.
///
/// The directory is created when missing. redb keeps one file,
/// `dir/gateway.redb`; sled keeps its own directory, `dir/sled`. A store
/// already open elsewhere (another process, or another handle in this one)
/// gives [`StoreError::Locked`] naming the path.
pub fn open(
    kind: StoreKind,
    dir: impl AsRef<std::path::Path>,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::Io(format!("creating store directory {}: {e}", dir.display())))?;
    Ok(match kind {
        StoreKind::Redb => std::sync::Arc::new(redb_store::RedbStore::open(
            dir.join(redb_store::FILE_NAME),
        )?),
        StoreKind::Sled => {
            std::sync::Arc::new(sled_store::SledStore::open(dir.join(sled_store::DIR_NAME))?)
        }
    })
}

//! The second backend: sled 0.34.7 (the design card's store).
//!
//! Same layout as [`super::redb_store`], one sled tree per table. Every
//! [`Store::commit`] is one sled transaction over all trees, followed by
//! `Db::flush()` before `commit` returns.
//!
//! ## What "durable" means here (measured)
//!
//! sled 0.34.7's `Db::flush()` on Linux (without the `io_uring` feature)
//! writes its log buffers with `pwrite64` and then calls
//! `sync_file_range(fd, off, len, SYNC_FILE_RANGE_WAIT_BEFORE |
//! SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER)` on the range it
//! wrote; it never calls `fsync`/`fdatasync` on that path (`fsync` only at
//! open/shutdown and from sled's background flusher thread, every
//! `flush_every_ms` = 500 ms by default). Measured with
//! `strace -f -c -e trace=fsync,fdatasync,sync_file_range` on the crash
//! test's probe mode (one [PutAccount, Statement, Journal] commit each,
//! store already seeded), Linux 6.18, ext4 on a virtio disk:
//!
//! | commits | sled `sync_file_range` | sled `fsync` | redb `fdatasync` |
//! |---:|---:|---:|---:|
//! | 0 | 0 | 3 | 6 |
//! | 100 | 210 | 4 | 106 |
//! | 1000 | 2118 | 7 | 1006 |
//!
//! Per sled commit: two `pwrite64` + two `sync_file_range` (a 24-byte batch
//! manifest, then the ~850-byte transaction), e.g.
//!
//! ```text
//! pwrite64(3, "\211\315\373\35\3\10\0\377e\375..., 24, 51733) = 24
//! sync_file_range(3, 51733, 24, SYNC_FILE_RANGE_WAIT_BEFORE|SYNC_FILE_RANGE_WRITE|SYNC_FILE_RANGE_WAIT_AFTER) = 0
//! pwrite64(3, "\224j\325!\n\361\234\0\4\0\v79161000000\361\215{\"accoun"..., 841, 51757) = 841
//! sync_file_range(3, 51757, 841, SYNC_FILE_RANGE_WAIT_BEFORE|SYNC_FILE_RANGE_WRITE|SYNC_FILE_RANGE_WAIT_AFTER) = 0
//! ```
//!
//! redb, for comparison, issues exactly one `fdatasync` per commit.
//!
//! (Latencies on that VM mean nothing — `fdatasync` took ~16 µs, so its
//! virtual disk acknowledges flushes from a host cache — only the syscalls
//! matter.)
//!
//! What that means: once `commit` returns, the transaction is in the kernel
//! and written back to the device (not flushed from its cache), so it **survives a
//! process crash** — `tests/store_crash.rs` SIGKILLs writers and finds every
//! acknowledged command. It is **not guaranteed to survive a power loss or
//! kernel crash**: `sync_file_range` does not flush the disk's volatile
//! write cache and does not commit file metadata (the log file grows as it
//! is written, and a size change is only made durable by `fsync`); the
//! man page says it gives no guarantee that data is available after a crash.
//! The background `fsync` narrows that window to about `flush_every_ms` but
//! an acknowledged renewal can still be lost. That is why redb is the
//! default and G3 ("on disk before answered") is only fully met with redb.
//!
//! Trees (values are serde_json bytes; integers big-endian so byte order is
//! numeric order):
//!
//! | tree | key | value |
//! |---|---|---|
//! | `accounts` | MSISDN bytes | [`AccountState`] JSON |
//! | `catalog` | `b"catalog"` | [`Catalog`] JSON |
//! | `journal` | global seq `u64` BE (from 1) | [`JournalLine`] JSON |
//! | `journal_by_msisdn` | `len(MSISDN) u32 BE ‖ MSISDN ‖ seq u64 BE` | empty |
//! | `statement` | `len(MSISDN) u32 BE ‖ MSISDN ‖ seq u64 BE`, seq global | [`StatementLine`] JSON |
//! | `outbox` | id `u64` BE (from 1, never reused) | [`Notice`] JSON |
//! | `meta` | counter name | `u64` BE (next ids, account count) |
//!
//! The length prefix makes a prefix scan for one MSISDN exact whatever bytes
//! the MSISDN holds. sled transactions take a global write lock while they
//! apply and every single read takes the read side, so a reader never sees
//! half a commit; unlike redb there is no snapshot *across* several reads.

use std::fmt::Display;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError,
    TransactionalTree,
};
use sled::{Db, Transactional, Tree};

use super::{decode, encode, Committed, Store, StoreError, Write};
use crate::engine::model::{AccountState, Catalog, JournalLine, Notice, StatementLine};

/// Directory name inside the store directory (see [`super::open`]).
pub const DIR_NAME: &str = "sled";

const CATALOG_KEY: &[u8] = b"catalog";
const NEXT_JOURNAL: &[u8] = b"next_journal_seq";
const NEXT_STATEMENT: &[u8] = b"next_statement_seq";
const NEXT_OUTBOX: &[u8] = b"next_outbox_id";
const LOG_SEQ: &[u8] = b"log_seq";
const ACCOUNT_COUNT: &[u8] = b"account_count";

/// A [`Store`] in a sled directory.
pub struct SledStore {
    db: Db,
    path: PathBuf,
    accounts: Tree,
    catalog: Tree,
    journal: Tree,
    journal_idx: Tree,
    statement: Tree,
    outbox: Tree,
    meta: Tree,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish()
    }
}

fn err(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Corruption { at, bt: _ } => {
            StoreError::Corrupt(format!("sled: corruption at {at:?}"))
        }
        other => StoreError::Io(format!("sled: {other}")),
    }
}

fn decode_u64(table: &str, key: impl Display, bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| {
        StoreError::Corrupt(format!(
            "table {table}, key {key}: expected 8 bytes, found {}",
            bytes.len()
        ))
    })?;
    Ok(u64::from_be_bytes(arr))
}

/// `len(msisdn) u32 BE ‖ msisdn` — the prefix of one subscriber's keys.
fn msisdn_prefix(msisdn: &str) -> Result<Vec<u8>, StoreError> {
    let len = u32::try_from(msisdn.len())
        .map_err(|_| StoreError::Io(format!("MSISDN of {} bytes is too long", msisdn.len())))?;
    let mut k = Vec::with_capacity(4 + msisdn.len() + 8);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(msisdn.as_bytes());
    Ok(k)
}

fn seq_of(table: &str, prefix_len: usize, key: &[u8]) -> Result<u64, StoreError> {
    key.get(prefix_len..)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt(format!("table {table}: malformed key {key:?}")))
}

/// One write, encoded before the transaction so the (possibly retried)
/// transaction closure only moves bytes.
enum Enc {
    Account { key: Vec<u8>, value: Vec<u8> },
    Journal { prefix: Vec<u8>, value: Vec<u8> },
    Statement { prefix: Vec<u8>, value: Vec<u8> },
    Enqueue(Vec<u8>),
    Dequeue(u64),
    Catalog(Vec<u8>),
    EnqueueAt(u64, Vec<u8>),
    LogMark(super::LogMarks),
}

type TxResult<T> = ConflictableTransactionResult<T, StoreError>;

fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

fn read_counter(meta: &TransactionalTree, name: &[u8], default: u64) -> TxResult<u64> {
    match meta.get(name)? {
        None => Ok(default),
        Some(v) => decode_u64("meta", String::from_utf8_lossy(name), &v).map_err(abort),
    }
}

impl SledStore {
    /// Open or create the sled directory at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = sled::Config::new()
            .path(&path)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref io) if io.to_string().contains("could not acquire lock") => {
                    StoreError::Locked {
                        path: path.display().to_string(),
                    }
                }
                other => match err(other) {
                    StoreError::Io(m) => StoreError::Io(format!("opening {}: {m}", path.display())),
                    StoreError::Corrupt(m) => {
                        StoreError::Corrupt(format!("opening {}: {m}", path.display()))
                    }
                    other => other,
                },
            })?;
        let tree = |name: &str| db.open_tree(name).map_err(err);
        Ok(SledStore {
            accounts: tree("accounts")?,
            catalog: tree("catalog")?,
            journal: tree("journal")?,
            journal_idx: tree("journal_by_msisdn")?,
            statement: tree("statement")?,
            outbox: tree("outbox")?,
            meta: tree("meta")?,
            db,
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Store for SledStore {
    fn backend(&self) -> &'static str {
        "sled"
    }

    fn catalog(&self) -> Result<Option<Catalog>, StoreError> {
        self.catalog
            .get(CATALOG_KEY)
            .map_err(err)?
            .map(|v| decode("catalog", "catalog", &v))
            .transpose()
    }

    fn account(&self, msisdn: &str) -> Result<Option<AccountState>, StoreError> {
        self.accounts
            .get(msisdn.as_bytes())
            .map_err(err)?
            .map(|v| decode("accounts", msisdn, &v))
            .transpose()
    }

    fn accounts_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AccountState>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let lower = match after {
            Some(a) => Bound::Excluded(a.as_bytes()),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for entry in self.accounts.range::<&[u8], _>((lower, Bound::Unbounded)) {
            let (k, v) = entry.map_err(err)?;
            out.push(decode("accounts", String::from_utf8_lossy(&k), &v)?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn account_count(&self) -> Result<u64, StoreError> {
        match self.meta.get(ACCOUNT_COUNT).map_err(err)? {
            None => Ok(0),
            Some(v) => decode_u64("meta", "account_count", &v),
        }
    }

    fn log_marks(&self) -> Result<super::LogMarks, StoreError> {
        let get = |name: &[u8], default: u64| -> Result<u64, StoreError> {
            match self.meta.get(name).map_err(err)? {
                None => Ok(default),
                Some(v) => decode_u64("meta", String::from_utf8_lossy(name), &v),
            }
        };
        Ok(super::LogMarks {
            log_seq: get(LOG_SEQ, 0)?,
            next_outbox_id: get(NEXT_OUTBOX, 1)?,
        })
    }

    fn commit(&self, writes: Vec<Write>) -> Result<Committed, StoreError> {
        if writes.is_empty() {
            return Ok(Committed::default());
        }
        let mut enc = Vec::with_capacity(writes.len());
        for w in &writes {
            enc.push(match w {
                Write::PutAccount(a) => Enc::Account {
                    key: a.account.msisdn.as_bytes().to_vec(),
                    value: encode("accounts", a)?,
                },
                Write::Journal(l) => Enc::Journal {
                    prefix: msisdn_prefix(&l.msisdn)?,
                    value: encode("journal", l)?,
                },
                Write::Statement(l) => Enc::Statement {
                    prefix: msisdn_prefix(&l.msisdn)?,
                    value: encode("statement", l)?,
                },
                Write::Enqueue(n) => Enc::Enqueue(encode("outbox", n)?),
                Write::Dequeue(id) => Enc::Dequeue(*id),
                Write::PutCatalog(c) => Enc::Catalog(encode("catalog", c)?),
                Write::EnqueueAt(id, n) => Enc::EnqueueAt(*id, encode("outbox", n)?),
                Write::LogMark(m) => Enc::LogMark(*m),
            });
        }
        drop(writes);

        let trees = (
            &self.accounts,
            &self.catalog,
            &self.journal,
            &self.journal_idx,
            &self.statement,
            &self.outbox,
            &self.meta,
        );
        let result = trees.transaction(
            |(accounts, catalog, journal, journal_idx, statement, outbox, meta)| {
                let mut committed = Committed::default();
                let mut next_journal = read_counter(meta, NEXT_JOURNAL, 1)?;
                let mut next_statement = read_counter(meta, NEXT_STATEMENT, 1)?;
                let mut next_outbox = read_counter(meta, NEXT_OUTBOX, 1)?;
                let mut count = read_counter(meta, ACCOUNT_COUNT, 0)?;
                let before = (next_journal, next_statement, next_outbox, count);
                for e in &enc {
                    match e {
                        Enc::Account { key, value } => {
                            if accounts.insert(key.as_slice(), value.as_slice())?.is_none() {
                                count += 1;
                            }
                        }
                        Enc::Journal { prefix, value } => {
                            let seq = next_journal.to_be_bytes();
                            journal.insert(&seq, value.as_slice())?;
                            let mut k = prefix.clone();
                            k.extend_from_slice(&seq);
                            journal_idx.insert(k, &[] as &[u8])?;
                            next_journal += 1;
                        }
                        Enc::Statement { prefix, value } => {
                            let mut k = prefix.clone();
                            k.extend_from_slice(&next_statement.to_be_bytes());
                            statement.insert(k, value.as_slice())?;
                            next_statement += 1;
                        }
                        Enc::Enqueue(value) => {
                            outbox.insert(&next_outbox.to_be_bytes(), value.as_slice())?;
                            committed.enqueued.push(next_outbox);
                            next_outbox += 1;
                        }
                        Enc::Dequeue(id) => {
                            outbox.remove(&id.to_be_bytes())?;
                        }
                        Enc::Catalog(value) => {
                            catalog.insert(CATALOG_KEY, value.as_slice())?;
                        }
                        Enc::EnqueueAt(id, value) => {
                            outbox.insert(&id.to_be_bytes(), value.as_slice())?;
                            next_outbox = next_outbox.max(id + 1);
                        }
                        Enc::LogMark(m) => {
                            meta.insert(LOG_SEQ, &m.log_seq.to_be_bytes())?;
                            next_outbox = next_outbox.max(m.next_outbox_id);
                        }
                    }
                }
                let after = (next_journal, next_statement, next_outbox, count);
                if after.0 != before.0 {
                    meta.insert(NEXT_JOURNAL, &after.0.to_be_bytes())?;
                }
                if after.1 != before.1 {
                    meta.insert(NEXT_STATEMENT, &after.1.to_be_bytes())?;
                }
                if after.2 != before.2 {
                    meta.insert(NEXT_OUTBOX, &after.2.to_be_bytes())?;
                }
                if after.3 != before.3 {
                    meta.insert(ACCOUNT_COUNT, &after.3.to_be_bytes())?;
                }
                Ok(committed)
            },
        );
        let committed = result.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => err(e),
        })?;
        // The transaction is only in sled's in-memory log buffers until this
        // flush writes them out (see the module doc for what it syncs).
        self.db.flush().map_err(err)?;
        Ok(committed)
    }

    fn statement(&self, msisdn: &str) -> Result<Vec<StatementLine>, StoreError> {
        let prefix = msisdn_prefix(msisdn)?;
        let mut out = Vec::new();
        for entry in self.statement.scan_prefix(&prefix) {
            let (k, v) = entry.map_err(err)?;
            let seq = seq_of("statement", prefix.len(), &k)?;
            out.push(decode("statement", format!("({msisdn}, {seq})"), &v)?);
        }
        Ok(out)
    }

    fn journal(&self, msisdn: Option<&str>) -> Result<Vec<JournalLine>, StoreError> {
        let mut out = Vec::new();
        match msisdn {
            None => {
                for entry in self.journal.iter() {
                    let (k, v) = entry.map_err(err)?;
                    let seq = decode_u64("journal", format_args!("{k:?}"), &k)?;
                    out.push(decode("journal", seq, &v)?);
                }
            }
            Some(m) => {
                let prefix = msisdn_prefix(m)?;
                for entry in self.journal_idx.scan_prefix(&prefix) {
                    let (k, _) = entry.map_err(err)?;
                    let seq = seq_of("journal_by_msisdn", prefix.len(), &k)?;
                    let v = self
                        .journal
                        .get(seq.to_be_bytes())
                        .map_err(err)?
                        .ok_or_else(|| {
                            StoreError::Corrupt(format!(
                                "table journal_by_msisdn, key ({m}, {seq}): no journal line {seq}"
                            ))
                        })?;
                    out.push(decode("journal", seq, &v)?);
                }
            }
        }
        Ok(out)
    }

    fn outbox(&self, limit: usize) -> Result<Vec<(u64, Notice)>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for entry in self.outbox.iter() {
            let (k, v) = entry.map_err(err)?;
            let id = decode_u64("outbox", format_args!("{k:?}"), &k)?;
            out.push((id, decode("outbox", id, &v)?));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

//! The default store: one redb file, fsync-durable when `commit` returns.
//!
//! Every [`Store::commit`] is one redb write transaction with
//! [`Durability::Immediate`]. redb 2.6 commits in one phase with checksums:
//! it writes the dirty B-tree pages and the 320-byte header, then calls
//! `fdatasync` once before `commit()` returns (measured with `strace -f`:
//! exactly 1 `fdatasync` per commit — 1006 for 1000 commits, the other 6 at
//! open and clean close; no `fsync`). The file goes through
//! [`PacedFile`], which writes a big commit's pages (more than a MiB) out a
//! MiB at a time
//! (`sync_file_range`) just before that `fdatasync`, so a big commit (a log
//! checkpoint) does not hold up the log's own syncs. `fdatasync`
//! flushes the data, the metadata needed to read it back (file size) and the
//! disk's write cache, so an `Ok` from `commit` means the writes survive a
//! process crash *and* a power loss (given a disk that honours flushes) — the
//! G3 promise. Compare [`super::sled_store`], which does not give the second
//! half.
//!
//! After an unclean shutdown (SIGKILL, power loss) redb repairs the file on
//! the next open; `tests/store_crash.rs` exercises that.
//!
//! Layout (values are serde_json text stored as bytes, so `redb` dumps stay
//! human-readable; keys are plain redb types):
//!
//! | table | key | value |
//! |---|---|---|
//! | `subscribers` | `(MSISDN, 0, 0)` | [`AccountState`] JSON |
//! | `subscribers` | `(MSISDN, 1, seq)` | empty — this subscriber's journal line `seq` |
//! | `subscribers` | `(MSISDN, 2, seq)`, seq global from 1 | [`StatementLine`] JSON |
//! | `catalog` | `"catalog"` | [`Catalog`] JSON |
//! | `journal` | global seq `u64` (from 1) | [`JournalLine`] JSON |
//! | `outbox` | id `u64` (from 1, never reused) | [`Notice`] JSON |
//! | `meta` | counter name | next `u64` to hand out; `accounts`: how many; `log_seq`: the last write-ahead log record applied; `layout`: 2 |
//!
//! Why one `subscribers` table: a renewal changes the account, adds a
//! statement line and indexes a journal line, all of one subscriber. Keyed by
//! MSISDN first, the three are neighbours in one B-tree instead of spread
//! over three, so while a subscriber's history is short (tens of records)
//! they share a 4 KiB leaf and a commit or log checkpoint copies one random
//! page for them, not three; a long history spreads over its own leaves
//! again. The journal and the outbox only grow at their tails. Measured on
//! a freshly generated 1 M-account store this bought nothing (every first
//! touch splits a full leaf in either layout: benches/RESULTS.md, session 3).
//! `accounts_after` (the nightly sweep, catalog import) seeks past a
//! subscriber whose history is long instead of reading it.
//! Layout 1 (separate `accounts`, `statement` and `journal_by_msisdn`
//! tables, before 2026-11-22) is moved into layout 2 in one transaction the
//! first time such a file is opened.
//!
//! Corrupt JSON is reported as [`StoreError::Corrupt`] naming table, record
//! kind and key; no value read from disk is unwrapped. Keys are decoded by
//! redb 2 itself, which panics on a damaged key (a string that is not UTF-8,
//! a tuple length past the end); every operation runs under `shielded`,
//! which turns that panic into a Corrupt error naming the file.
//! `meta.layout` names the layout; a file with a newer one is refused.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableTable, TableDefinition, TableHandle};

use super::paced::PacedFile;
use super::{decode, encode, Committed, Store, StoreError, Write};
use crate::engine::model::{AccountState, Catalog, JournalLine, Notice, StatementLine};

/// File name inside the store directory (see [`super::open`]).
pub const FILE_NAME: &str = "gateway.redb";

/// Per-subscriber records: `(MSISDN, kind, seq)` (see the module docs).
const SUBSCRIBERS: TableDefinition<(&str, u8, u64), &[u8]> = TableDefinition::new("subscribers");
const CATALOG: TableDefinition<&str, &[u8]> = TableDefinition::new("catalog");
const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Record kinds inside `subscribers`, in key order.
const ACCOUNT: u8 = 0;
const JOURNAL_REF: u8 = 1;
const STATEMENT: u8 = 2;

/// Layout 1 tables, read once by [`migrate_layout_1`].
const OLD_ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");
const OLD_JOURNAL_BY_MSISDN: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("journal_by_msisdn");
const OLD_STATEMENT: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("statement");

const CATALOG_KEY: &str = "catalog";
const NEXT_JOURNAL: &str = "next_journal_seq";
const NEXT_STATEMENT: &str = "next_statement_seq";
const NEXT_OUTBOX: &str = "next_outbox_id";
const LOG_SEQ: &str = "log_seq";
const ACCOUNT_COUNT: &str = "accounts";
/// History records `accounts_after` reads past before it seeks to the next
/// subscriber instead.
const HISTORY_SKIP: usize = 16;
/// How corruption reports name account records (table and kind).
const ACCOUNT_RECORDS: &str = "subscribers (accounts)";
const LAYOUT: &str = "layout";

/// A [`Store`] in one redb file.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

fn err(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Corrupted(msg) => StoreError::Corrupt(format!("redb: {msg}")),
        other => StoreError::Io(format!("redb: {other}")),
    }
}

/// redb page cache size.
const CACHE_BYTES: usize = 256 << 20;

impl RedbStore {
    /// Open or create the redb file at `path` (its directory must exist).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        shielded(&path.clone(), || Self::open_at(path))
    }

    fn open_at(path: PathBuf) -> Result<Self, StoreError> {
        // redb's default page cache is 1 GiB; 256 MiB keeps `serve` on a
        // 10 M-account store under 512 MiB RSS at no measured throughput
        // cost (benches/RESULTS.md §8).
        // What `Builder::create` does, with the paced flush in between.
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(redb::DatabaseError::from)
            .and_then(PacedFile::new)
            .and_then(|file| {
                redb::Builder::new()
                    .set_cache_size(CACHE_BYTES)
                    .create_with_backend(file)
            });
        let db = match opened {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::Locked {
                    path: path.display().to_string(),
                })
            }
            Err(e) => {
                return Err(match err(e) {
                    StoreError::Io(m) => StoreError::Io(format!("opening {}: {m}", path.display())),
                    StoreError::Corrupt(m) => {
                        StoreError::Corrupt(format!("opening {}: {m}", path.display()))
                    }
                    other => other,
                })
            }
        };
        // Create every table up front so readers never meet a missing one.
        let mut txn = db.begin_write().map_err(err)?;
        txn.set_durability(Durability::Immediate);
        {
            let names: Vec<String> = txn
                .list_tables()
                .map_err(err)?
                .map(|t| t.name().to_string())
                .collect();
            txn.open_table(SUBSCRIBERS).map_err(err)?;
            txn.open_table(CATALOG).map_err(err)?;
            txn.open_table(JOURNAL).map_err(err)?;
            txn.open_table(OUTBOX).map_err(err)?;
            let mut meta = txn.open_table(META).map_err(err)?;
            let layout = meta.get(LAYOUT).map_err(err)?.map(|v| v.value());
            if let Some(l) = layout.filter(|&l| l > 2) {
                return Err(StoreError::Corrupt(format!(
                    "{} has store layout {l}, written by a newer shortcode-gw; this one reads layouts 1 and 2",
                    path.display()
                )));
            }
            if names.iter().any(|n| n == OLD_ACCOUNTS.name()) {
                drop(meta);
                migrate_layout_1(&txn)?;
                meta = txn.open_table(META).map_err(err)?;
            }
            meta.insert(LAYOUT, 2).map_err(err)?;
        }
        txn.commit().map_err(err)?;
        Ok(RedbStore { db, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `def` in a fresh read transaction (the table keeps it alive).
    fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        def: TableDefinition<K, V>,
    ) -> Result<redb::ReadOnlyTable<K, V>, StoreError> {
        self.db
            .begin_read()
            .map_err(err)?
            .open_table(def)
            .map_err(err)
    }
}

fn next_counter(meta: &redb::Table<&str, u64>, name: &str) -> Result<u64, StoreError> {
    Ok(meta.get(name).map_err(err)?.map_or(1, |v| v.value()))
}

/// Move a layout-1 file's `accounts`, `statement` and `journal_by_msisdn`
/// into `subscribers`, inside the caller's transaction (all or nothing).
fn migrate_layout_1(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut subs = txn.open_table(SUBSCRIBERS).map_err(err)?;
    // Added to what `subscribers` already counts (a file can have both when
    // an older binary reopened a layout-2 file and wrote to its own table).
    let mut added = 0u64;
    {
        let old = txn.open_table(OLD_ACCOUNTS).map_err(err)?;
        for entry in old.iter().map_err(err)? {
            let (k, v) = entry.map_err(err)?;
            let previous = subs
                .insert((k.value(), ACCOUNT, 0), v.value())
                .map_err(err)?;
            if previous.is_none() {
                added += 1;
            }
        }
    }
    {
        let old = txn.open_table(OLD_STATEMENT).map_err(err)?;
        for entry in old.iter().map_err(err)? {
            let (k, v) = entry.map_err(err)?;
            let (m, seq) = k.value();
            subs.insert((m, STATEMENT, seq), v.value()).map_err(err)?;
        }
    }
    {
        let old = txn.open_table(OLD_JOURNAL_BY_MSISDN).map_err(err)?;
        for entry in old.iter().map_err(err)? {
            let (k, _) = entry.map_err(err)?;
            let (m, seq) = k.value();
            subs.insert((m, JOURNAL_REF, seq), [].as_slice())
                .map_err(err)?;
        }
    }
    drop(subs);
    txn.delete_table(OLD_ACCOUNTS).map_err(err)?;
    txn.delete_table(OLD_STATEMENT).map_err(err)?;
    txn.delete_table(OLD_JOURNAL_BY_MSISDN).map_err(err)?;
    let mut meta = txn.open_table(META).map_err(err)?;
    let count = meta
        .get(ACCOUNT_COUNT)
        .map_err(err)?
        .map_or(0, |v| v.value())
        + added;
    meta.insert(ACCOUNT_COUNT, count).map_err(err)?;
    tracing::info!(
        accounts = count,
        "store moved to layout 2 (one subscribers table)"
    );
    Ok(())
}

/// Apply one commit's writes inside `txn` (the caller commits or aborts).
fn apply_writes(
    txn: &redb::WriteTransaction,
    writes: Vec<Write>,
    committed: &mut Committed,
) -> Result<(), StoreError> {
    let mut subs = txn.open_table(SUBSCRIBERS).map_err(err)?;
    let mut catalog = txn.open_table(CATALOG).map_err(err)?;
    let mut journal = txn.open_table(JOURNAL).map_err(err)?;
    let mut outbox = txn.open_table(OUTBOX).map_err(err)?;
    let mut meta = txn.open_table(META).map_err(err)?;
    let mut next_journal = next_counter(&meta, NEXT_JOURNAL)?;
    let mut next_statement = next_counter(&meta, NEXT_STATEMENT)?;
    let mut next_outbox = next_counter(&meta, NEXT_OUTBOX)?;
    let mut accounts = meta
        .get(ACCOUNT_COUNT)
        .map_err(err)?
        .map_or(0, |v| v.value());
    let (j0, s0, o0, a0) = (next_journal, next_statement, next_outbox, accounts);

    for w in writes {
        match w {
            Write::PutAccount(a) => {
                let v = encode("accounts", &a)?;
                let old = subs
                    .insert((a.account.msisdn.as_str(), ACCOUNT, 0), v.as_slice())
                    .map_err(err)?;
                if old.is_none() {
                    accounts += 1;
                }
            }
            Write::Journal(line) => {
                let v = encode("journal", &line)?;
                journal.insert(next_journal, v.as_slice()).map_err(err)?;
                subs.insert(
                    (line.msisdn.as_str(), JOURNAL_REF, next_journal),
                    [].as_slice(),
                )
                .map_err(err)?;
                next_journal += 1;
            }
            Write::Statement(line) => {
                let v = encode("statement", &line)?;
                subs.insert(
                    (line.msisdn.as_str(), STATEMENT, next_statement),
                    v.as_slice(),
                )
                .map_err(err)?;
                next_statement += 1;
            }
            Write::Enqueue(n) => {
                let v = encode("outbox", &n)?;
                outbox.insert(next_outbox, v.as_slice()).map_err(err)?;
                committed.enqueued.push(next_outbox);
                next_outbox += 1;
            }
            Write::Dequeue(id) => {
                outbox.remove(id).map_err(err)?;
            }
            Write::PutCatalog(c) => {
                let v = encode("catalog", &c)?;
                catalog.insert(CATALOG_KEY, v.as_slice()).map_err(err)?;
            }
            Write::EnqueueAt(id, n) => {
                let v = encode("outbox", &n)?;
                outbox.insert(id, v.as_slice()).map_err(err)?;
                next_outbox = next_outbox.max(id + 1);
            }
            Write::LogMark(m) => {
                meta.insert(LOG_SEQ, m.log_seq).map_err(err)?;
                next_outbox = next_outbox.max(m.next_outbox_id);
            }
        }
    }
    for (name, old, new) in [
        (NEXT_JOURNAL, j0, next_journal),
        (NEXT_STATEMENT, s0, next_statement),
        (NEXT_OUTBOX, o0, next_outbox),
        (ACCOUNT_COUNT, a0, accounts),
    ] {
        if new != old {
            meta.insert(name, new).map_err(err)?;
        }
    }
    Ok(())
}

/// Run one store operation, turning a panic inside redb into an error.
///
/// redb 2 decodes keys itself and panics on a damaged one (a string that is
/// not UTF-8, a tuple length past the end) instead of returning an error.
/// Caught here it becomes [`StoreError::Corrupt`] naming the file: the
/// requests that meet the damaged record are refused, the process and
/// everyone else's requests go on. A panic that left one of redb's locks
/// poisoned makes later calls panic, and be refused, the same way. A write
/// transaction must not be dropped by the unwinding (redb then skips its
/// rollback): `commit` catches inside it and aborts it.
fn shielded<T>(path: &Path, op: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(op)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(StoreError::Corrupt(format!(
            "{}: redb failed on a damaged record ({why}); restore the file from a backup",
            path.display()
        )))
    })
}

impl Store for RedbStore {
    fn backend(&self) -> &'static str {
        "redb"
    }

    fn catalog(&self) -> Result<Option<Catalog>, StoreError> {
        shielded(&self.path, || {
            let t = self.table(CATALOG)?;
            let v = t.get(CATALOG_KEY).map_err(err)?;
            v.map(|v| decode("catalog", CATALOG_KEY, v.value()))
                .transpose()
        })
    }

    fn account(&self, msisdn: &str) -> Result<Option<AccountState>, StoreError> {
        shielded(&self.path, || {
            let t = self.table(SUBSCRIBERS)?;
            let v = t.get((msisdn, ACCOUNT, 0)).map_err(err)?;
            v.map(|v| decode(ACCOUNT_RECORDS, msisdn, v.value()))
                .transpose()
        })
    }

    fn accounts_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AccountState>, StoreError> {
        shielded(&self.path, || {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let t = self.table(SUBSCRIBERS)?;
            let mut out = Vec::new();
            // Walk the accounts, stepping over each subscriber's history: a few
            // history records are cheaper to read past than a new descent, a
            // long history is not (the nightly sweep reads every account).
            let mut resume: Option<String> = after.map(str::to_owned);
            'seek: loop {
                // Past every record of `resume`: its last possible key, excluded.
                let lower = match resume.as_deref() {
                    Some(a) => Bound::Excluded((a, u8::MAX, u64::MAX)),
                    None => Bound::Unbounded,
                };
                let mut history = 0usize;
                for entry in t
                    .range::<(&str, u8, u64)>((lower, Bound::Unbounded))
                    .map_err(err)?
                {
                    let (k, v) = entry.map_err(err)?;
                    let (m, kind, _) = k.value();
                    if kind == ACCOUNT {
                        history = 0;
                        out.push(decode(ACCOUNT_RECORDS, m, v.value())?);
                        if out.len() >= limit {
                            break 'seek;
                        }
                    } else {
                        history += 1;
                        if history > HISTORY_SKIP {
                            resume = Some(m.to_owned());
                            continue 'seek;
                        }
                    }
                }
                break;
            }
            Ok(out)
        })
    }

    fn account_count(&self) -> Result<u64, StoreError> {
        shielded(&self.path, || {
            let meta = self.table(META)?;
            Ok(meta
                .get(ACCOUNT_COUNT)
                .map_err(err)?
                .map_or(0, |v| v.value()))
        })
    }

    fn commit(&self, writes: Vec<Write>) -> Result<Committed, StoreError> {
        shielded(&self.path, || {
            let mut committed = Committed::default();
            if writes.is_empty() {
                return Ok(committed);
            }
            let mut txn = self.db.begin_write().map_err(err)?;
            txn.set_durability(Durability::Immediate);
            // A panic while applying (a damaged key) must not drop the
            // transaction while unwinding: redb then skips its rollback and
            // the pages it allocated stay marked used for good. Caught here,
            // the transaction is aborted once the unwinding is over.
            if let Err(e) = shielded(&self.path, || apply_writes(&txn, writes, &mut committed)) {
                let _ = txn.abort();
                return Err(e);
            }
            txn.commit().map_err(err)?;
            Ok(committed)
        })
    }

    fn log_marks(&self) -> Result<super::LogMarks, StoreError> {
        shielded(&self.path, || {
            let meta = self.table(META)?;
            let get = |name: &str, default: u64| -> Result<u64, StoreError> {
                Ok(meta.get(name).map_err(err)?.map_or(default, |v| v.value()))
            };
            Ok(super::LogMarks {
                log_seq: get(LOG_SEQ, 0)?,
                next_outbox_id: get(NEXT_OUTBOX, 1)?,
            })
        })
    }

    fn statement(&self, msisdn: &str) -> Result<Vec<StatementLine>, StoreError> {
        shielded(&self.path, || {
            let t = self.table(SUBSCRIBERS)?;
            let mut out = Vec::new();
            for entry in t
                .range((msisdn, STATEMENT, 0u64)..=(msisdn, STATEMENT, u64::MAX))
                .map_err(err)?
            {
                let (k, v) = entry.map_err(err)?;
                let (_, _, seq) = k.value();
                out.push(decode(
                    "subscribers (statement)",
                    format!("({msisdn}, {STATEMENT}, {seq})"),
                    v.value(),
                )?);
            }
            Ok(out)
        })
    }

    fn journal(&self, msisdn: Option<&str>) -> Result<Vec<JournalLine>, StoreError> {
        shielded(&self.path, || {
            // Lines and their index from one snapshot.
            let txn = self.db.begin_read().map_err(err)?;
            let t = txn.open_table(JOURNAL).map_err(err)?;
            let mut out = Vec::new();
            match msisdn {
                None => {
                    for entry in t.iter().map_err(err)? {
                        let (k, v) = entry.map_err(err)?;
                        out.push(decode("journal", k.value(), v.value())?);
                    }
                }
                Some(m) => {
                    let idx = txn.open_table(SUBSCRIBERS).map_err(err)?;
                    for entry in idx
                        .range((m, JOURNAL_REF, 0u64)..=(m, JOURNAL_REF, u64::MAX))
                        .map_err(err)?
                    {
                        let (k, _) = entry.map_err(err)?;
                        let (_, _, seq) = k.value();
                        let v = t.get(seq).map_err(err)?.ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "table subscribers, key ({m}, {JOURNAL_REF}, {seq}): no journal line {seq}"
                        ))
                    })?;
                        out.push(decode("journal", seq, v.value())?);
                    }
                }
            }
            Ok(out)
        })
    }

    fn outbox(&self, limit: usize) -> Result<Vec<(u64, Notice)>, StoreError> {
        shielded(&self.path, || {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let t = self.table(OUTBOX)?;
            let mut out = Vec::new();
            for entry in t.iter().map_err(err)? {
                let (k, v) = entry.map_err(err)?;
                out.push((k.value(), decode("outbox", k.value(), v.value())?));
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
    }
}

/// Overwrite the stored bytes of one account, bypassing every check (tests
/// of corruption reporting).
#[cfg(test)]
pub(crate) fn poke_account_bytes(path: &Path, msisdn: &str, bytes: &[u8]) {
    let db = Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(SUBSCRIBERS)
        .unwrap()
        .insert((msisdn, ACCOUNT, 0), bytes)
        .unwrap();
    txn.commit().unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{account, journal, notice, statement};

    /// A file written by the layout-1 code (three per-subscriber tables) is
    /// moved into `subscribers` on open, nothing lost, and is layout 2 after.
    #[test]
    fn layout_1_file_is_migrated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let (a, b) = ("79160000001", "79160000002");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut acc = txn.open_table(OLD_ACCOUNTS).unwrap();
                for (m, k) in [(a, 100), (b, 200)] {
                    acc.insert(m, encode("accounts", &account(m, k)).unwrap().as_slice())
                        .unwrap();
                }
                let mut j = txn.open_table(JOURNAL).unwrap();
                let mut idx = txn.open_table(OLD_JOURNAL_BY_MSISDN).unwrap();
                for (seq, m) in [(1u64, a), (2, b), (3, a)] {
                    let line = journal(m, &format!("*929#{seq}"));
                    j.insert(seq, encode("journal", &line).unwrap().as_slice())
                        .unwrap();
                    idx.insert((m, seq), ()).unwrap();
                }
                let mut st = txn.open_table(OLD_STATEMENT).unwrap();
                st.insert(
                    (b, 1u64),
                    encode("statement", &statement(b, -100, 100))
                        .unwrap()
                        .as_slice(),
                )
                .unwrap();
                let mut out = txn.open_table(OUTBOX).unwrap();
                out.insert(7u64, encode("outbox", &notice(a, "hi")).unwrap().as_slice())
                    .unwrap();
                let mut meta = txn.open_table(META).unwrap();
                meta.insert(NEXT_JOURNAL, 4).unwrap();
                meta.insert(NEXT_STATEMENT, 2).unwrap();
                meta.insert(NEXT_OUTBOX, 8).unwrap();
            }
            txn.commit().unwrap();
        }
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.account_count().unwrap(), 2);
        assert_eq!(s.account(a).unwrap(), Some(account(a, 100)));
        let requests: Vec<String> = s
            .journal(Some(a))
            .unwrap()
            .into_iter()
            .map(|l| l.request)
            .collect();
        assert_eq!(requests, ["*929#1", "*929#3"]);
        assert_eq!(s.journal(None).unwrap().len(), 3);
        assert_eq!(s.statement(b).unwrap(), vec![statement(b, -100, 100)]);
        assert!(s.statement(a).unwrap().is_empty());
        // Counters carry on where layout 1 left them.
        let c = s
            .commit(vec![
                Write::Statement(statement(a, -5, 95)),
                Write::Enqueue(notice(b, "x")),
            ])
            .unwrap();
        assert_eq!(c.enqueued, vec![8]);
        assert_eq!(s.outbox(10).unwrap().len(), 2);
        drop(s);
        // The old tables are gone; a second open does not migrate again.
        let s = RedbStore::open(&path).unwrap();
        let txn = s.db.begin_read().unwrap();
        let names: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_string())
            .collect();
        assert!(!names.iter().any(|n| n == "accounts"), "{names:?}");
        assert_eq!(
            txn.open_table(META)
                .unwrap()
                .get(LAYOUT)
                .unwrap()
                .unwrap()
                .value(),
            2
        );
        drop(txn);
        assert_eq!(s.account_count().unwrap(), 2);
        assert_eq!(s.statement(a).unwrap().len(), 1);
    }

    /// Subscribers with long histories (more records than `accounts_after`
    /// reads past before seeking) between accounts, including MSISDNs that
    /// are prefixes of each other: pages still list every account once, in
    /// order.
    #[test]
    fn accounts_after_steps_over_long_histories() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(dir.path().join(FILE_NAME)).unwrap();
        let ms = ["7", "7916", "79161", "79161234567", "8"];
        for (i, m) in ms.iter().enumerate() {
            let mut w = vec![Write::PutAccount(account(m, i as i64))];
            // Long histories for some, none for others.
            for n in 0..(if i % 2 == 0 { 3 * HISTORY_SKIP } else { 0 }) {
                w.push(Write::Journal(journal(m, &format!("*929#{n}"))));
                w.push(Write::Statement(statement(m, -1, 0)));
            }
            s.commit(w).unwrap();
        }
        for limit in [1, 2, 5, 10] {
            let mut seen = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = s.accounts_after(after.as_deref(), limit).unwrap();
                if page.is_empty() {
                    break;
                }
                assert!(page.len() <= limit);
                after = page.last().map(|a| a.account.msisdn.clone());
                seen.extend(page.into_iter().map(|a| a.account.msisdn));
            }
            assert_eq!(seen, ms, "limit {limit}");
        }
        assert_eq!(s.account_count().unwrap(), 5);
        assert_eq!(s.journal(Some("7")).unwrap().len(), 3 * HISTORY_SKIP);
        assert_eq!(s.statement("79161").unwrap().len(), 3 * HISTORY_SKIP);
    }

    /// A file with both layouts' tables (an older binary wrote to its own
    /// `accounts` table in a layout-2 file) keeps both sets, counted once.
    #[test]
    fn migration_adds_to_accounts_already_in_layout_2() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        {
            let s = RedbStore::open(&path).unwrap();
            s.commit(vec![
                Write::PutAccount(account("79160000001", 1)),
                Write::PutAccount(account("79160000002", 2)),
            ])
            .unwrap();
        }
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut acc = txn.open_table(OLD_ACCOUNTS).unwrap();
                for (m, k) in [("79160000002", 20), ("79160000003", 30)] {
                    acc.insert(m, encode("accounts", &account(m, k)).unwrap().as_slice())
                        .unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.account_count().unwrap(), 3);
        // The older binary's write is the newer one.
        assert_eq!(
            s.account("79160000002").unwrap(),
            Some(account("79160000002", 20))
        );
        assert_eq!(s.accounts_after(None, 10).unwrap().len(), 3);
    }

    /// A layout this build does not know is refused, not misread.
    #[test]
    fn a_newer_layout_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        drop(RedbStore::open(&path).unwrap());
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META).unwrap().insert(LAYOUT, 3).unwrap();
            txn.commit().unwrap();
        }
        let e = RedbStore::open(&path).unwrap_err().to_string();
        assert!(e.contains("layout 3") && e.contains("newer"), "{e}");
    }

    /// A key damaged on disk (its MSISDN no longer UTF-8, page checksums
    /// left as they were) makes redb 2 panic while decoding it; the store
    /// answers the calls that meet it with a Corrupt error naming the file
    /// instead, and a later call still gets an answer.
    #[test]
    fn a_damaged_key_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let damaged = "79160000002";
        {
            let s = RedbStore::open(&path).unwrap();
            let w = ["79160000001", damaged, "79160000003"]
                .iter()
                .map(|m| Write::PutAccount(account(m, 1)))
                .collect();
            s.commit(w).unwrap();
        }
        // Every copy of the MSISDN (key and JSON value) gets a byte that is
        // not UTF-8.
        let mut bytes = std::fs::read(&path).unwrap();
        let needle = damaged.as_bytes();
        let mut hits = 0;
        for i in 0..bytes.len().saturating_sub(needle.len()) {
            if &bytes[i..i + needle.len()] == needle {
                bytes[i + needle.len() - 1] = 0xff;
                hits += 1;
            }
        }
        assert!(hits >= 2, "key and value found: {hits}");
        std::fs::write(&path, bytes).unwrap();

        let s = RedbStore::open(&path).unwrap();
        let listed = s.accounts_after(None, 10).unwrap_err().to_string();
        assert!(
            listed.contains("corrupt") && listed.contains(&path.display().to_string()),
            "{listed}"
        );
        let looked_up = s.account("79160000003").unwrap_err().to_string();
        assert!(looked_up.contains("corrupt"), "{looked_up}");
        // The store still answers (here: with the same error), it did not
        // take the process down.
        assert!(s.accounts_after(None, 10).is_err());
        // A write that has to pass the damaged key is refused whole (redb
        // panics inside the write transaction, which is rolled back), and
        // the next one is refused the same way rather than aborting.
        for m in ["79160000003", "79160000004"] {
            let w = s.commit(vec![Write::PutAccount(account(m, 5))]);
            assert!(matches!(w, Err(StoreError::Corrupt(_))), "{m}: {w:?}");
        }
        assert_eq!(s.account_count().unwrap(), 3);
        // Refused writes leave no pages behind: each of these allocates
        // ~100 KB of outbox before it meets the damaged key (a transaction
        // dropped while unwinding keeps them allocated for good: ~750 pages).
        let pages = || {
            s.db.begin_write()
                .unwrap()
                .stats()
                .unwrap()
                .allocated_pages()
        };
        let before = pages();
        for _ in 0..30 {
            let mut w: Vec<Write> = (0..100)
                .map(|_| Write::Enqueue(notice("79160000001", &"x".repeat(1000))))
                .collect();
            w.push(Write::PutAccount(account("79160000003", 5)));
            assert!(s.commit(w).is_err());
        }
        let after = pages();
        assert!(after < before + 100, "pages in use: {before} -> {after}");
    }
}

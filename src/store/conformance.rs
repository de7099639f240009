//! One behaviour suite, run against every backend.
//!
//! `memory`, `redb` and `sled` each get the same tests (see the
//! `conformance!` macro at the bottom); the disk backends additionally get
//! reopen, locking and corruption tests, and a model-based proptest that
//! compares them against [`MemoryStore`] step by step with random reopens
//! (after sled's own `fuzz_model.rs`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;

use super::memory::MemoryStore;
use super::{open, Committed, Store, StoreError, StoreKind, Write};
use crate::engine::model::{
    Account, AccountState, Billing, Catalog, Channel, DedupEntry, JournalLine, Location, Notice,
    Outcome, Overage, Package, Plan, RegionFees, Saved, StatementKind, StatementLine,
};

// ---------------------------------------------------------------- fixtures

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid test date")
}

pub(super) fn account(msisdn: &str, kopecks: i64) -> AccountState {
    let mut st = AccountState::imported(Account {
        msisdn: msisdn.to_string(),
        region: "moscow".into(),
        plan: "smart".into(),
        plan_version: "2024".into(),
        balance: Decimal::new(kopecks, 2),
        billing: Billing::Monthly,
        next_charge: date(2026, 12, 5),
        anchor_day: 5,
        blocks: vec![],
        unpaid: false,
        discount_pct: Decimal::new(125, 1),
        services: vec!["package".into()],
        location: Location::Home,
        main: Package {
            minutes: 120,
            sms: 300,
            data_mb: 2048,
        },
        saved: Some(Saved {
            minutes: 1,
            sms: 2,
            data_mb: 3,
            valid_until: date(2026, 12, 5),
        }),
    });
    st.last_nightly = Some(date(2026, 11, 30));
    st.recent.push(DedupEntry {
        key: format!("ussd|{msisdn}|*929#"),
        at: Utc
            .with_ymd_and_hms(2026, 11, 30, 10, 0, 0)
            .single()
            .expect("valid test instant")
            + chrono::Duration::nanoseconds(123_456_789),
        outcome: Outcome::Renewed,
        reply: "Пакет обновлён".into(),
    });
    st
}

fn catalog(version: &str) -> Catalog {
    let mut regions = BTreeMap::new();
    regions.insert(
        "moscow".to_string(),
        RegionFees {
            monthly_fee: Decimal::new(55000, 2),
            daily_fee: Decimal::new(1900, 2),
        },
    );
    Catalog {
        currency: "RUB".into(),
        timezone: "Europe/Moscow".into(),
        plans: vec![Plan {
            id: "smart".into(),
            name: "Smart".into(),
            version: version.into(),
            archived: false,
            renewal: true,
            package: Package {
                minutes: 500,
                sms: 500,
                data_mb: 15360,
            },
            overage: Overage {
                minute: Decimal::new(200, 2),
                sms: Decimal::new(150, 2),
                mb: Decimal::new(10, 2),
            },
            regions,
        }],
    }
}

pub(super) fn journal(msisdn: &str, request: &str) -> JournalLine {
    JournalLine {
        at: "2026-11-30T10:00:00+03:00".into(),
        channel: Channel::Ussd,
        msisdn: msisdn.into(),
        request: request.into(),
        outcome: Outcome::Renewed,
        reply: format!("ответ на {request}"),
        duplicate: request.ends_with('!'),
    }
}

pub(super) fn statement(msisdn: &str, kopecks: i64, after: i64) -> StatementLine {
    StatementLine {
        at: "2026-11-30T10:00:00+03:00".into(),
        msisdn: msisdn.into(),
        kind: if kopecks < 0 {
            StatementKind::MonthlyFee
        } else {
            StatementKind::Topup
        },
        amount: Decimal::new(kopecks, 2),
        balance_after: Decimal::new(after, 2),
        description: "Списание ежемесячной платы по Тарифному плану".into(),
        period_from: (kopecks < 0).then(|| date(2026, 11, 30)),
        period_to: (kopecks < 0).then(|| date(2026, 12, 29)),
    }
}

pub(super) fn notice(msisdn: &str, text: &str) -> Notice {
    Notice {
        msisdn: msisdn.into(),
        text: text.into(),
    }
}

/// A backend under test, with its directory kept alive.
struct Fixture {
    kind: Option<StoreKind>,
    /// Behind the write-ahead log (checkpointing every few hundred bytes, so
    /// reads merge overlay and backend all the time).
    log: bool,
    dir: tempfile::TempDir,
    store: Option<Arc<dyn Store>>,
}

fn open_fixture_store(
    kind: StoreKind,
    dir: &Path,
    log: bool,
) -> Result<Arc<dyn Store>, StoreError> {
    let base = super::open_with(kind, dir, false)?;
    if !log {
        return Ok(base);
    }
    let opts = super::wal::LogOptions {
        checkpoint_bytes: 600,
        checkpoint_interval: std::time::Duration::from_millis(20),
        segment_bytes: 1 << 10,
    };
    Ok(Arc::new(super::wal::LogStore::open(base, dir, opts)?))
}

impl Fixture {
    fn with(kind: Option<StoreKind>, log: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = match kind {
            None => Arc::new(MemoryStore::new()),
            Some(k) => open_fixture_store(k, dir.path(), log).expect("open store"),
        };
        Fixture {
            kind,
            log,
            dir,
            store: Some(store),
        }
    }

    fn s(&self) -> &dyn Store {
        self.store.as_deref().expect("store is open")
    }

    fn close(&mut self) {
        self.store = None;
    }

    fn reopen(&mut self) {
        let kind = self.kind.expect("only disk backends reopen");
        self.store = None;
        let store = while_locked(
            || open_fixture_store(kind, self.dir.path(), self.log),
            |e| matches!(e, crate::store::StoreError::Locked { .. }),
        );
        self.store = Some(store.expect("reopen store"));
    }
}

/// `open` again while it fails with what `locked` recognises, up to ~2 s:
/// sled's background flusher may hold the directory lock for a moment after
/// the last handle drops (a real restart waits the same way).
fn while_locked<T, E>(
    mut open: impl FnMut() -> Result<T, E>,
    locked: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let mut tries = 0;
    loop {
        match open() {
            Err(e) if tries < 100 && locked(&e) => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Everything a caller can observe, for the MSISDNs given.
#[derive(Debug, PartialEq)]
struct Snapshot {
    catalog: Option<Catalog>,
    accounts: Vec<AccountState>,
    count: u64,
    journal: Vec<JournalLine>,
    journal_by: Vec<Vec<JournalLine>>,
    statements: Vec<Vec<StatementLine>>,
    outbox: Vec<(u64, Notice)>,
    single: Vec<Option<AccountState>>,
}

fn snapshot(s: &dyn Store, msisdns: &[&str]) -> Snapshot {
    Snapshot {
        catalog: s.catalog().expect("catalog"),
        accounts: s.accounts_after(None, usize::MAX).expect("accounts"),
        count: s.account_count().expect("count"),
        journal: s.journal(None).expect("journal"),
        journal_by: msisdns
            .iter()
            .map(|m| s.journal(Some(m)).expect("journal by msisdn"))
            .collect(),
        statements: msisdns
            .iter()
            .map(|m| s.statement(m).expect("statement"))
            .collect(),
        outbox: s.outbox(usize::MAX).expect("outbox"),
        single: msisdns
            .iter()
            .map(|m| s.account(m).expect("account"))
            .collect(),
    }
}

// ---------------------------------------------------------------- the suite

fn empty_store_reads_empty(f: Fixture) {
    let s = f.s();
    assert_eq!(s.catalog().unwrap(), None);
    assert_eq!(s.account("79161234567").unwrap(), None);
    assert!(s.accounts_after(None, 10).unwrap().is_empty());
    assert_eq!(s.account_count().unwrap(), 0);
    assert!(s.statement("79161234567").unwrap().is_empty());
    assert!(s.journal(None).unwrap().is_empty());
    assert!(s.journal(Some("79161234567")).unwrap().is_empty());
    assert!(s.outbox(10).unwrap().is_empty());
    assert_eq!(s.commit(vec![]).unwrap(), Committed::default());
}

fn commit_makes_all_writes_visible(f: Fixture) {
    let s = f.s();
    let a = account("79161234567", 100_000);
    let b = account("79031112233", 5_00);
    let c = s
        .commit(vec![
            Write::PutCatalog(catalog("2024")),
            Write::PutAccount(a.clone()),
            Write::Enqueue(notice("79161234567", "first")),
            Write::PutAccount(b.clone()),
            Write::Journal(journal("79161234567", "*929#")),
            Write::Statement(statement("79161234567", -55_000, 45_000)),
            Write::Enqueue(notice("79031112233", "second")),
        ])
        .unwrap();
    assert_eq!(c.enqueued.len(), 2);
    assert!(c.enqueued[0] < c.enqueued[1]);
    assert_eq!(s.catalog().unwrap(), Some(catalog("2024")));
    assert_eq!(s.account("79161234567").unwrap(), Some(a.clone()));
    assert_eq!(s.account("79031112233").unwrap(), Some(b.clone()));
    assert_eq!(s.account_count().unwrap(), 2);
    assert_eq!(s.accounts_after(None, 10).unwrap(), vec![b, a]);
    assert_eq!(
        s.journal(None).unwrap(),
        vec![journal("79161234567", "*929#")]
    );
    assert_eq!(
        s.statement("79161234567").unwrap(),
        vec![statement("79161234567", -55_000, 45_000)]
    );
    assert_eq!(
        s.outbox(10).unwrap(),
        vec![
            (c.enqueued[0], notice("79161234567", "first")),
            (c.enqueued[1], notice("79031112233", "second")),
        ]
    );
}

fn put_account_replaces_and_catalog_replaces(f: Fixture) {
    let s = f.s();
    s.commit(vec![
        Write::PutAccount(account("79161234567", 1_00)),
        Write::PutCatalog(catalog("2023")),
    ])
    .unwrap();
    // Later writes in one commit win, like later commits do.
    s.commit(vec![
        Write::PutAccount(account("79161234567", 2_00)),
        Write::PutAccount(account("79161234567", 3_00)),
        Write::PutCatalog(catalog("2024")),
    ])
    .unwrap();
    assert_eq!(
        s.account("79161234567").unwrap(),
        Some(account("79161234567", 3_00))
    );
    assert_eq!(s.account_count().unwrap(), 1);
    assert_eq!(s.catalog().unwrap(), Some(catalog("2024")));
}

fn journal_and_statement_keep_order(f: Fixture) {
    let s = f.s();
    let ms = ["79161234567", "79031112233", "79990000000"];
    let mut expect_journal = Vec::new();
    let mut expect_stmt: BTreeMap<&str, Vec<StatementLine>> = BTreeMap::new();
    for round in 0..6i64 {
        let mut writes = Vec::new();
        for (i, m) in ms.iter().enumerate() {
            if (round + i as i64) % 3 == 0 {
                continue;
            }
            let j = journal(m, &format!("req-{round}-{i}"));
            let st = statement(m, round * 100 + i as i64, round);
            expect_journal.push(j.clone());
            expect_stmt.entry(m).or_default().push(st.clone());
            writes.push(Write::Journal(j));
            writes.push(Write::Statement(st));
        }
        s.commit(writes).unwrap();
    }
    assert_eq!(s.journal(None).unwrap(), expect_journal);
    for m in ms {
        assert_eq!(
            s.statement(m).unwrap(),
            expect_stmt.get(m).cloned().unwrap_or_default(),
            "statement of {m}"
        );
    }
}

fn journal_filtered_by_msisdn(f: Fixture) {
    let s = f.s();
    // MSISDNs that are prefixes of each other must not leak into each other.
    let ms = ["7916", "79161", "79161234567", "7916123456", "8"];
    let mut writes = Vec::new();
    for n in 0..4 {
        for m in ms {
            writes.push(Write::Journal(journal(m, &format!("{m}#{n}"))));
            writes.push(Write::Statement(statement(m, n, n)));
        }
    }
    s.commit(writes).unwrap();
    s.commit(vec![Write::Journal(journal("79161", "late"))])
        .unwrap();
    for m in ms {
        let mut want: Vec<JournalLine> = (0..4).map(|n| journal(m, &format!("{m}#{n}"))).collect();
        if m == "79161" {
            want.push(journal("79161", "late"));
        }
        assert_eq!(s.journal(Some(m)).unwrap(), want, "journal of {m}");
        let st: Vec<StatementLine> = (0..4).map(|n| statement(m, n, n)).collect();
        assert_eq!(s.statement(m).unwrap(), st, "statement of {m}");
    }
    assert!(s.journal(Some("791")).unwrap().is_empty());
    assert!(s.statement("791612345678").unwrap().is_empty());
    assert_eq!(s.journal(None).unwrap().len(), 21);
}

fn outbox_ids_increase_and_dequeue_removes(f: Fixture) {
    let s = f.s();
    let c1 = s
        .commit(vec![
            Write::Enqueue(notice("1", "a")),
            Write::Enqueue(notice("2", "b")),
            Write::Enqueue(notice("3", "c")),
        ])
        .unwrap();
    let ids = c1.enqueued.clone();
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // Dequeue the middle one and an unknown id (ignored).
    let c2 = s
        .commit(vec![Write::Dequeue(ids[1]), Write::Dequeue(999_999)])
        .unwrap();
    assert!(c2.enqueued.is_empty());
    assert_eq!(
        s.outbox(10).unwrap(),
        vec![(ids[0], notice("1", "a")), (ids[2], notice("3", "c"))]
    );
    assert_eq!(s.outbox(1).unwrap(), vec![(ids[0], notice("1", "a"))]);
    assert!(s.outbox(0).unwrap().is_empty());
    // Remove everything, then enqueue: ids are never reused.
    s.commit(vec![Write::Dequeue(ids[0]), Write::Dequeue(ids[2])])
        .unwrap();
    assert!(s.outbox(10).unwrap().is_empty());
    let c3 = s.commit(vec![Write::Enqueue(notice("4", "d"))]).unwrap();
    assert_eq!(c3.enqueued.len(), 1);
    assert!(c3.enqueued[0] > ids[2]);
    // Enqueue and dequeue of the same notice in one commit cancels out
    // only when the id is known beforehand, which it is not: the dequeue
    // of c3's id and a new enqueue land together.
    let c4 = s
        .commit(vec![
            Write::Dequeue(c3.enqueued[0]),
            Write::Enqueue(notice("5", "e")),
        ])
        .unwrap();
    assert!(c4.enqueued[0] > c3.enqueued[0]);
    assert_eq!(
        s.outbox(10).unwrap(),
        vec![(c4.enqueued[0], notice("5", "e"))]
    );
}

fn accounts_after_paginates_in_msisdn_order(f: Fixture) {
    let s = f.s();
    // Insert in a scrambled order over a few commits.
    let mut ms: Vec<String> = (0..25u64)
        .map(|i| format!("79{:09}", (i * 7_919) % 1_000))
        .collect();
    ms.push("7".into());
    ms.push("8".into());
    for chunk in ms.chunks(6) {
        s.commit(
            chunk
                .iter()
                .map(|m| Write::PutAccount(account(m, 1_00)))
                .collect(),
        )
        .unwrap();
    }
    let mut sorted = ms.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(s.account_count().unwrap(), sorted.len() as u64);

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s.accounts_after(after.as_deref(), 7).unwrap();
        assert!(page.len() <= 7);
        if page.is_empty() {
            break;
        }
        after = Some(page.last().unwrap().account.msisdn.clone());
        seen.extend(page.into_iter().map(|a| a.account.msisdn));
    }
    assert_eq!(seen, sorted);
    assert!(s.accounts_after(None, 0).unwrap().is_empty());
    // `after` need not be an existing key.
    let from = s.accounts_after(Some("790"), 3).unwrap();
    let want: Vec<&String> = sorted
        .iter()
        .filter(|m| m.as_str() > "790")
        .take(3)
        .collect();
    assert_eq!(
        from.iter().map(|a| &a.account.msisdn).collect::<Vec<_>>(),
        want
    );
    assert!(s.accounts_after(Some("9"), 10).unwrap().is_empty());
}

fn concurrent_commits_all_land(f: Fixture) {
    let s: Arc<dyn Store> = f.store.clone().expect("open");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for n in 0..10 {
                    let m = format!("7900000000{t}");
                    let c = s
                        .commit(vec![
                            Write::PutAccount(account(&m, n)),
                            Write::Journal(journal(&m, &format!("t{t}n{n}"))),
                            Write::Statement(statement(&m, 1, n)),
                            Write::Enqueue(notice(&m, &format!("t{t}n{n}"))),
                        ])
                        .expect("commit");
                    ids.extend(c.enqueued);
                }
                ids
            })
        })
        .collect();
    let mut all: Vec<u64> = threads
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .collect();
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!(all.len(), n, "outbox ids are unique");
    assert_eq!(s.journal(None).unwrap().len(), 40);
    assert_eq!(s.outbox(usize::MAX).unwrap().len(), 40);
    for t in 0..4 {
        let m = format!("7900000000{t}");
        let j = s.journal(Some(&m)).unwrap();
        let want: Vec<String> = (0..10).map(|n| format!("t{t}n{n}")).collect();
        assert_eq!(
            j.iter().map(|l| l.request.clone()).collect::<Vec<_>>(),
            want
        );
        assert_eq!(s.statement(&m).unwrap().len(), 10);
        assert_eq!(s.account(&m).unwrap(), Some(account(&m, 9)));
    }
}

// ------------------------------------------------------- disk-only tests

fn fill(s: &dyn Store) -> Vec<u64> {
    let mut ids = Vec::new();
    for i in 0..5 {
        let m = format!("7916000000{i}");
        let c = s
            .commit(vec![
                Write::PutAccount(account(&m, 1_000 + i)),
                Write::Journal(journal(&m, "*929#")),
                Write::Statement(statement(&m, -55_000, 45_000)),
                Write::Enqueue(notice(&m, "renewed")),
                Write::PutCatalog(catalog(&format!("v{i}"))),
            ])
            .unwrap();
        ids.extend(c.enqueued);
    }
    s.commit(vec![Write::Dequeue(ids[0])]).unwrap();
    ids
}

fn reopen_keeps_everything(mut f: Fixture) {
    let ms = [
        "79160000000",
        "79160000001",
        "79160000002",
        "79160000003",
        "79160000004",
    ];
    let ids = fill(f.s());
    let before = snapshot(f.s(), &ms);
    f.reopen();
    assert_eq!(snapshot(f.s(), &ms), before);
    // Counters continue after a reopen: no id or sequence is reused.
    let c = f
        .s()
        .commit(vec![
            Write::Enqueue(notice("79160000000", "after reopen")),
            Write::Journal(journal("79160000000", "after reopen")),
            Write::Statement(statement("79160000000", 1, 2)),
        ])
        .unwrap();
    assert!(c.enqueued[0] > *ids.iter().max().unwrap());
    f.reopen();
    let j = f.s().journal(Some("79160000000")).unwrap();
    assert_eq!(j.last().unwrap().request, "after reopen");
    assert_eq!(j.len(), 2);
    assert_eq!(f.s().journal(None).unwrap().len(), 6);
    assert_eq!(f.s().statement("79160000000").unwrap().len(), 2);
    assert_eq!(f.s().account_count().unwrap(), 5);
}

fn second_open_is_locked(f: Fixture) {
    let kind = f.kind.expect("disk backend");
    match open(kind, f.dir.path()) {
        Err(StoreError::Locked { path }) => {
            assert!(
                path.starts_with(&f.dir.path().display().to_string()),
                "{path}"
            );
            let msg = StoreError::Locked { path: path.clone() }.to_string();
            assert!(msg.contains("in use by another process"), "{msg}");
        }
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("expected Locked, second open succeeded"),
    }
    // The first handle is unaffected.
    f.s()
        .commit(vec![Write::PutAccount(account("7", 1))])
        .unwrap();
}

/// Write garbage under an account key with the raw engine, then read it
/// through the store: a Corrupt error naming table and key, no panic.
fn corrupt_json_is_reported(mut f: Fixture) {
    let kind = f.kind.expect("disk backend");
    f.s()
        .commit(vec![Write::PutAccount(account("79161234567", 1))])
        .unwrap();
    f.close();
    poke_garbage(kind, f.dir.path(), "79160000000");
    f.reopen();
    let e = f.s().account("79160000000").unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, StoreError::Corrupt(_)), "{msg}");
    assert!(
        msg.contains("accounts") && msg.contains("79160000000"),
        "{msg}"
    );
    let e = f.s().accounts_after(None, 10).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt(_)), "{e}");
    // The good account is still readable.
    assert_eq!(
        f.s().account("79161234567").unwrap(),
        Some(account("79161234567", 1))
    );
}

fn poke_garbage(kind: StoreKind, dir: &Path, key: &str) {
    match kind {
        StoreKind::Redb => {
            super::redb_store::poke_account_bytes(
                &dir.join(super::redb_store::FILE_NAME),
                key,
                b"{not json",
            );
        }
        StoreKind::Sled => {
            let path = dir.join(super::sled_store::DIR_NAME);
            // sled reports its lock as an I/O error (WouldBlock).
            let db = while_locked(|| sled::open(&path), |e| matches!(e, sled::Error::Io(_)))
                .expect("open sled for poking");
            db.open_tree("accounts")
                .unwrap()
                .insert(key.as_bytes(), b"\xff{not json".as_slice())
                .unwrap();
            db.flush().unwrap();
        }
    }
}

// --------------------------------------------------- model-based proptest

const POOL: [&str; 5] = ["7", "7916", "79161", "79161234567", "8"];

#[derive(Debug, Clone)]
enum W {
    Put(usize, i64),
    Journal(usize, u8),
    Statement(usize, i64),
    Enqueue(usize, u8),
    Dequeue(u64),
    Catalog(u8),
}

#[derive(Debug, Clone)]
enum Op {
    Commit(Vec<W>),
    Reopen,
}

impl W {
    fn write(&self) -> Write {
        match *self {
            W::Put(m, k) => Write::PutAccount(account(POOL[m], k)),
            W::Journal(m, r) => Write::Journal(journal(POOL[m], &format!("r{r}"))),
            W::Statement(m, k) => Write::Statement(statement(POOL[m], k, k * 2)),
            W::Enqueue(m, t) => Write::Enqueue(notice(POOL[m], &format!("sms {t}"))),
            W::Dequeue(id) => Write::Dequeue(id),
            W::Catalog(v) => Write::PutCatalog(catalog(&format!("v{v}"))),
        }
    }
}

fn w_strategy() -> impl Strategy<Value = W> {
    let m = 0..POOL.len();
    prop_oneof![
        3 => (m.clone(), -100_000i64..100_000).prop_map(|(m, k)| W::Put(m, k)),
        3 => (m.clone(), any::<u8>()).prop_map(|(m, r)| W::Journal(m, r)),
        3 => (m.clone(), -100_000i64..100_000).prop_map(|(m, k)| W::Statement(m, k)),
        2 => (m, any::<u8>()).prop_map(|(m, t)| W::Enqueue(m, t)),
        2 => (0u64..12).prop_map(W::Dequeue),
        1 => any::<u8>().prop_map(W::Catalog),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec(w_strategy(), 0..6).prop_map(Op::Commit),
        1 => Just(Op::Reopen),
    ]
}

fn run_model(kind: StoreKind, log: bool, ops: &[Op]) -> Result<(), TestCaseError> {
    let model = MemoryStore::new();
    let mut disk = Fixture::with(Some(kind), log);
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Reopen => disk.reopen(),
            Op::Commit(ws) => {
                let writes: Vec<Write> = ws.iter().map(W::write).collect();
                let want = model.commit(writes.clone()).expect("model commit");
                let got = disk.s().commit(writes).expect("disk commit");
                prop_assert_eq!(got, want, "commit result at step {}", step);
            }
        }
        prop_assert_eq!(
            snapshot(disk.s(), &POOL),
            snapshot(&model, &POOL),
            "state after step {}: {:?}",
            step,
            op
        );
        for after in [None, Some("7"), Some("79"), Some("79161")] {
            prop_assert_eq!(
                disk.s().accounts_after(after, 2).expect("page"),
                model.accounts_after(after, 2).expect("page")
            );
        }
    }
    Ok(())
}

macro_rules! conformance {
    ($name:ident, $kind:expr, $log:expr) => {
        mod $name {
            use super::*;

            fn fx() -> Fixture {
                Fixture::with($kind, $log)
            }

            #[test]
            fn empty_store_reads_empty() {
                super::empty_store_reads_empty(fx());
            }
            #[test]
            fn commit_makes_all_writes_visible() {
                super::commit_makes_all_writes_visible(fx());
            }
            #[test]
            fn put_account_replaces_and_catalog_replaces() {
                super::put_account_replaces_and_catalog_replaces(fx());
            }
            #[test]
            fn journal_and_statement_keep_order() {
                super::journal_and_statement_keep_order(fx());
            }
            #[test]
            fn journal_filtered_by_msisdn() {
                super::journal_filtered_by_msisdn(fx());
            }
            #[test]
            fn outbox_ids_increase_and_dequeue_removes() {
                super::outbox_ids_increase_and_dequeue_removes(fx());
            }
            #[test]
            fn accounts_after_paginates_in_msisdn_order() {
                super::accounts_after_paginates_in_msisdn_order(fx());
            }
            #[test]
            fn concurrent_commits_all_land() {
                super::concurrent_commits_all_land(fx());
            }
        }
    };
}

macro_rules! disk_suite {
    ($name:ident, $kind:expr, $log:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn reopen_keeps_everything() {
                super::reopen_keeps_everything(Fixture::with(Some($kind), $log));
            }
            #[test]
            fn second_open_is_locked() {
                super::second_open_is_locked(Fixture::with(Some($kind), $log));
            }
            #[test]
            fn corrupt_json_is_reported() {
                super::corrupt_json_is_reported(Fixture::with(Some($kind), $log));
            }

            proptest! {
                #![proptest_config(ProptestConfig {
                    cases: 16,
                    max_shrink_iters: 200,
                    ..ProptestConfig::default()
                })]
                #[test]
                fn matches_memory_model(ops in proptest::collection::vec(op_strategy(), 1..24)) {
                    super::run_model($kind, $log, &ops)?;
                }
            }
        }
    };
}

conformance!(memory, None, false);

mod redb_backend {
    use super::*;
    conformance!(common, Some(StoreKind::Redb), false);
    disk_suite!(disk, StoreKind::Redb, false);
}

mod sled_backend {
    use super::*;
    conformance!(common, Some(StoreKind::Sled), false);
    disk_suite!(disk, StoreKind::Sled, false);
}

mod redb_logged {
    use super::*;
    conformance!(common, Some(StoreKind::Redb), true);
    disk_suite!(disk, StoreKind::Redb, true);
}

mod sled_logged {
    use super::*;
    conformance!(common, Some(StoreKind::Sled), true);
    disk_suite!(disk, StoreKind::Sled, true);
}

#[test]
fn store_kind_parses_and_defaults_to_redb() {
    assert_eq!(StoreKind::default(), StoreKind::Redb);
    assert_eq!("redb".parse::<StoreKind>(), Ok(StoreKind::Redb));
    assert_eq!(" SLED ".parse::<StoreKind>(), Ok(StoreKind::Sled));
    let e = "rocksdb".parse::<StoreKind>().unwrap_err();
    assert!(e.contains("rocksdb") && e.contains("redb"), "{e}");
    for k in [StoreKind::Redb, StoreKind::Sled] {
        assert_eq!(k.to_string().parse::<StoreKind>(), Ok(k));
    }
}

#[test]
fn open_creates_missing_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    for kind in [StoreKind::Redb, StoreKind::Sled] {
        let path = dir.path().join(kind.name()).join("nested");
        let s = open(kind, &path).expect("open");
        assert_eq!(s.backend(), kind.name());
        s.commit(vec![Write::PutAccount(account("7", 1))]).unwrap();
        assert!(path.is_dir());
    }
    assert_eq!(MemoryStore::new().backend(), "memory");
}

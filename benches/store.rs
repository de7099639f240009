//! Store commits: one renewal per commit (one fsync per request) against
//! 256 renewals per commit (what group commit does under load), for redb
//! (fdatasync per commit), sled (flush: sync_file_range, see
//! src/store/sled_store.rs) and the in-memory store (no disk, the floor).
//!
//! Each store is a fresh temporary directory filled with
//! `SHORTCODE_BENCH_ACCOUNTS` demo accounts (default 100,000) through
//! `load::generate_store`; the write sets are the engine's own for USSD
//! renewals of distinct renewable accounts (account, statement line,
//! journal line, queued SMS), spread over the whole key range.
//!
//! Run: `cargo bench --bench store`

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use shortcode_gw::data::demo;
use shortcode_gw::engine::model::{AccountState, Channel, Outcome};
use shortcode_gw::engine::{Command, Engine, EngineConfig};
use shortcode_gw::gateway::effect_writes;
use shortcode_gw::load::generate_store;
use shortcode_gw::store::{self, memory::MemoryStore, Store, StoreKind, Write};

const GROUP: usize = 256;
const POOL: usize = 8192;

fn accounts() -> usize {
    std::env::var("SHORTCODE_BENCH_ACCOUNTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// The writes of `POOL` USSD renewals of distinct accounts.
fn write_sets(n: usize, today: NaiveDate, now: DateTime<Utc>) -> Vec<Vec<Write>> {
    let engine = Engine::new(demo::demo_catalog(), EngineConfig::default()).expect("catalog");
    let step = (n / POOL).max(1);
    (0..n)
        .step_by(step)
        .filter(|&i| demo::demo_profile_info(i).outcome == Outcome::Renewed)
        .chain((0..n).filter(|&i| demo::demo_profile_info(i).outcome == Outcome::Renewed))
        .take(POOL)
        .map(|i| {
            let st = AccountState::imported(demo::demo_account(i, 1, today));
            let cmd = Command::Renew {
                channel: Channel::Ussd,
                request: "*929#".into(),
                dedup_key: Some(format!("ussd|{}|*929#|{i}||", st.account.msisdn)),
            };
            let a = engine
                .apply(&st.account.msisdn, Some(&st), &cmd, now)
                .expect("renew");
            assert_eq!(a.outcome, Outcome::Renewed);
            let mut w: Vec<Write> = a.state.into_iter().map(Write::PutAccount).collect();
            w.extend(effect_writes(&a.effects));
            w
        })
        .collect()
}

fn bench_store(c: &mut Criterion, name: &str, store: Arc<dyn Store>, sets: &[Vec<Write>]) {
    let mut group = c.benchmark_group(format!("store_commit/{name}"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("single", |b| {
        b.iter_batched(
            || {
                i = (i + 1) % sets.len();
                sets[i].clone()
            },
            |w| store.commit(w).expect("commit"),
            BatchSize::SmallInput,
        )
    });
    group.throughput(Throughput::Elements(GROUP as u64));
    let mut j = 0usize;
    group.bench_function(format!("grouped_{GROUP}"), |b| {
        b.iter_batched(
            || {
                let mut all = Vec::with_capacity(GROUP * 5);
                for _ in 0..GROUP {
                    j = (j + 1) % sets.len();
                    all.extend(sets[j].iter().cloned());
                }
                all
            },
            |w| store.commit(w).expect("commit"),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn commits(c: &mut Criterion) {
    let n = accounts();
    let today = NaiveDate::from_ymd_opt(2026, 11, 22).expect("date");
    let now: DateTime<Utc> = "2026-11-22T07:00:00Z".parse().expect("instant");
    let sets = write_sets(n, today, now);
    for kind in [StoreKind::Redb, StoreKind::Sled] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store::open(kind, dir.path()).expect("open store");
        generate_store(&store, n, 1, today, 50_000).expect("fill store");
        bench_store(c, kind.name(), store, &sets);
    }
    let memory: Arc<dyn Store> = Arc::new(MemoryStore::new());
    generate_store(&memory, n, 1, today, 50_000).expect("fill store");
    bench_store(c, "memory", memory, &sets);
}

criterion_group!(benches, commits);
criterion_main!(benches);

//! The billing engine alone, one core, in memory: renew decisions per
//! second (`Engine::apply` with `Command::Renew`), over the 16 demo
//! profiles (every outcome: renewals with and without a saved package,
//! each refusal), with the G4 dedup key set as the SMPP front-end sets it.
//! Each decision starts from the account as imported; nothing is stored.
//! (issue 5 target: ≥ 1,000,000 decisions/s on one core.) Allocation is
//! with mimalloc, as in the `shortcode-gw` binary.
//!
//! Run: `cargo bench --bench engine`

use std::hint::black_box;

use chrono::{DateTime, NaiveDate, Utc};
use criterion::{criterion_group, Criterion, Throughput};
use shortcode_gw::data::demo;
use shortcode_gw::engine::model::{AccountState, Channel, Outcome};
use shortcode_gw::engine::{Command, Engine, EngineConfig};

// The gateway's allocator (src/main.rs), so the figure is the engine as it
// runs there; glibc malloc/free were ~40 % of a decision's instructions here.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ACCOUNTS: usize = 1024;

fn setup() -> (Engine, Vec<AccountState>, Vec<Command>, DateTime<Utc>) {
    let engine = Engine::new(demo::demo_catalog(), EngineConfig::default()).expect("demo catalog");
    let today = NaiveDate::from_ymd_opt(2026, 11, 22).expect("date");
    let now: DateTime<Utc> = "2026-11-22T07:00:00Z".parse().expect("instant");
    let states: Vec<AccountState> = demo::demo_accounts(ACCOUNTS, 1, today)
        .map(AccountState::imported)
        .collect();
    let commands = (0..ACCOUNTS)
        .map(|i| Command::Renew {
            channel: if i % 5 == 4 {
                Channel::Sms
            } else {
                Channel::Ussd
            },
            request: "*929#".into(),
            dedup_key: Some(format!("ussd|{}|*929#|{i}||", states[i].account.msisdn)),
        })
        .collect();
    (engine, states, commands, now)
}

fn renew(c: &mut Criterion) {
    let (engine, states, commands, now) = setup();
    // Sanity: the profiles give the outcomes the demo module promises.
    for (i, st) in states.iter().enumerate().take(16) {
        let a = engine
            .apply(&st.account.msisdn, Some(st), &commands[i], now)
            .expect("renew never errors");
        assert_eq!(a.outcome, demo::demo_profile_info(i).outcome, "profile {i}");
    }
    let mut group = c.benchmark_group("engine_renew");
    group.throughput(Throughput::Elements(ACCOUNTS as u64));
    group.bench_function("all_profiles_1024", |b| {
        b.iter(|| {
            let mut renewed = 0usize;
            for (st, cmd) in states.iter().zip(&commands) {
                let a = engine
                    .apply(&st.account.msisdn, Some(black_box(st)), cmd, now)
                    .expect("renew never errors");
                renewed += usize::from(a.outcome == Outcome::Renewed);
            }
            renewed
        })
    });
    let renewable: Vec<(&AccountState, &Command)> = states
        .iter()
        .zip(&commands)
        .filter(|(st, _)| {
            demo::demo_index(&st.account.msisdn)
                .is_some_and(|i| demo::demo_profile_info(i).outcome == Outcome::Renewed)
        })
        .collect();
    group.throughput(Throughput::Elements(renewable.len() as u64));
    group.bench_function("renewed_only", |b| {
        b.iter(|| {
            for (st, cmd) in &renewable {
                black_box(
                    engine
                        .apply(&st.account.msisdn, Some(black_box(st)), cmd, now)
                        .expect("renew never errors"),
                );
            }
        })
    });
    group.finish();
}

criterion_group!(benches, renew);

/// `ENGINE_ITERS=N cargo bench --bench engine` (or the bench binary under
/// `valgrind --tool=callgrind`): run N × 1024 decisions without criterion,
/// so instruction counts per decision can be compared on a noisy machine.
fn main() {
    if let Some(n) = std::env::var("ENGINE_ITERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        let (engine, states, commands, now) = setup();
        let mut renewed = 0usize;
        for _ in 0..n {
            for (st, cmd) in states.iter().zip(&commands) {
                let a = engine
                    .apply(&st.account.msisdn, Some(black_box(st)), cmd, now)
                    .expect("renew never errors");
                renewed += usize::from(a.outcome == Outcome::Renewed);
            }
        }
        println!("{} decisions, {renewed} renewed", n * ACCOUNTS);
        return;
    }
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}

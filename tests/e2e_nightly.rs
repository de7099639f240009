//! The nightly run while the gateway serves: at `service.nightly_at` in the
//! operator's zone, through the engine queue, once per date, and caught up
//! after a restart from the record `serve` keeps.

mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use common::*;
use shortcode_gw::engine::model::AccountState;
use shortcode_gw::engine::EngineConfig;
use shortcode_gw::gateway::Gateway;
use shortcode_gw::store::Store;

const ACCOUNTS: usize = 64;

fn accounts(store: &dyn Store) -> Vec<AccountState> {
    store.accounts_after(None, 10_000).unwrap()
}

/// The accounts of a fresh demo store after the CLI's nightly runs for
/// `dates` at `now`: what the gateway's own runs must leave.
fn expected_after(dates: &[NaiveDate], now: DateTime<Utc>) -> Vec<AccountState> {
    let dir = tempfile::tempdir().unwrap();
    let store = seed_store(dir.path(), ACCOUNTS);
    let gw = Gateway::open(store.clone(), EngineConfig::default()).unwrap();
    for &d in dates {
        gw.nightly(d, now).unwrap();
    }
    accounts(store.as_ref())
}

/// Wait until the gateway's accounts equal `want` (the run is in the
/// background); fail naming the first account that differs.
async fn wait_for_accounts(gw: &Gw, want: &[AccountState]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = accounts(gw.store.as_ref());
        if got == want {
            return;
        }
        if Instant::now() > deadline {
            let diff = got.iter().zip(want).find(|(g, w)| g != w);
            panic!(
                "the nightly run did not leave the accounts expected; first difference: {diff:#?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nightly_runs_once_when_its_hour_comes() {
    // t0 is 10:00 in Moscow on the 22nd: that day's 00:00 has passed, and a
    // new store has no record, so nothing runs at start.
    let gw = start_with(listen_config(), ACCOUNTS).await;
    let before = accounts(gw.store.as_ref());
    assert_eq!(
        before,
        expected_after(&[], t0()),
        "the demo store is what the test expects"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        accounts(gw.store.as_ref()),
        before,
        "nothing may run before the hour"
    );

    // 00:00:30 in Moscow on the 23rd.
    let midnight: DateTime<Utc> = "2026-11-22T21:00:30Z".parse().unwrap();
    gw.clock.set(midnight);
    let want = expected_after(&[date("2026-11-23")], midnight);
    assert_ne!(
        want, before,
        "the demo accounts include some the 23rd's run changes"
    );
    wait_for_accounts(&gw, &want).await;

    // Later the same night: the date is done, nothing is charged twice.
    gw.clock.set("2026-11-22T23:00:00Z".parse().unwrap());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(accounts(gw.store.as_ref()), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_catches_up_the_nights_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    let store = seed_store(dir.path(), ACCOUNTS);
    let record = dir.path().join("nightly-done");
    std::fs::write(&record, "2026-11-20\n").unwrap();
    let mut config = listen_config();
    config.service.nightly_record = Some(record.clone());
    let gw = start_on(dir, store, config).await;

    // At 10:00 on the 22nd the 21st and the 22nd are due, in that order.
    let want = expected_after(&[date("2026-11-21"), date("2026-11-22")], t0());
    wait_for_accounts(&gw, &want).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&record).unwrap().trim() != "2026-11-22" {
        assert!(Instant::now() < deadline, "the record was not moved on");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_nightly_hour_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = seed_store(dir.path(), 1);
    let mut config = listen_config();
    config.service.nightly_at = "25:00".into();
    let gw = Gateway::open(store, EngineConfig::default()).unwrap();
    let clock = std::sync::Arc::new(shortcode_gw::server::ManualClock::new(t0()));
    let err = shortcode_gw::server::Server::start(gw, &config, clock)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("nightly_at"), "{err}");
}

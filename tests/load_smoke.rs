//! Smoke run of the load tool (issue 5): the gateway in this process on
//! 127.0.0.1:0 over a temporary redb store with a few hundred demo
//! accounts, a couple of seconds of pipelined USSD + SMS load, and every
//! request must get its final answer. No timing is asserted: how fast is
//! what `benches/compare.sh` and `benches/RESULTS.md` are for.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use shortcode_gw::load::{self, LoadConfig, LoadError, Mode};
use shortcode_gw::store::{self, Store, StoreKind};

fn today() -> NaiveDate {
    // What `serve` and the engine use for "today": the catalog's zone.
    let tz: chrono_tz::Tz = shortcode_gw::data::demo::demo_catalog()
        .timezone
        .parse()
        .unwrap();
    chrono::Utc::now().with_timezone(&tz).date_naive()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_its_final_answer() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = store::open(StoreKind::Redb, dir.path()).unwrap();
    let gen = load::generate_store(&store, 320, 7, today(), 100).unwrap();
    assert_eq!(gen.accounts, 320);

    let cfg = LoadConfig {
        connections: 2,
        window: 8,
        duration: Some(Duration::from_secs(2)),
        subscribers: 320,
        seed: 7,
        sms_ratio: 0.3,
        mode: Mode::Gateway,
        drain: Duration::from_secs(20),
        ..LoadConfig::default()
    };
    let report = load::run_in_process(&cfg, store, 64).await.unwrap();
    eprintln!("{}", report.summary());

    assert!(report.sent > 0, "nothing was sent: {report:?}");
    assert_eq!(report.answered, report.sent, "{report:?}");
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.ussd_sent + report.sms_sent, report.sent);
    assert!(report.ussd_sent > 0 && report.sms_sent > 0, "{report:?}");
    // Every USSD answer was one of the service's texts.
    assert!(
        !report.outcomes.contains_key("OTHER"),
        "{:?}",
        report.outcomes
    );
    let by_outcome: u64 = report.outcomes.values().sum();
    assert_eq!(by_outcome, report.answered);
    assert_eq!(report.latency_all.count, report.answered);
    let commits = report.commits.expect("in-process run reports commits");
    assert!(commits.commits > 0 && commits.jobs >= report.answered);
    // The gateway's memory is reported with it (the store's cache alone is
    // more than a MiB once touched).
    if cfg!(target_os = "linux") {
        let rss = report.peak_rss_mib.expect("peak RSS on Linux");
        assert!(rss >= 1, "{rss} MiB");
    }
}

#[tokio::test]
async fn a_fixed_count_is_sent_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = store::open(StoreKind::Redb, dir.path()).unwrap();
    load::generate_store(&store, 64, 3, today(), 1000).unwrap();
    let cfg = LoadConfig {
        connections: 3,
        window: 4,
        count: Some(100),
        subscribers: 64,
        seed: 3,
        sms_ratio: 0.5,
        ..LoadConfig::default()
    };
    let report = load::run_in_process(&cfg, store, 512).await.unwrap();
    assert_eq!(report.sent, 100, "{report:?}");
    assert_eq!(report.answered, 100, "{report:?}");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

#[tokio::test]
async fn only_loopback_is_ever_targeted() {
    for addr in ["192.0.2.1:2775", "[2001:db8::1]:2775"] {
        let cfg = LoadConfig {
            addr: addr.into(),
            count: Some(1),
            ..LoadConfig::default()
        };
        match load::run(&cfg).await {
            Err(LoadError::NotLoopback { .. }) => {}
            other => panic!("{addr}: expected a refusal, got {other:?}"),
        }
    }
}

//! Shared harness for end-to-end tests: a gateway over a fresh store on a
//! loopback port, with demo data and a manual clock.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use shortcode_gw::config::{Config, ListenConfig};
use shortcode_gw::data::demo;
use shortcode_gw::engine::model::StatementKind;
use shortcode_gw::engine::EngineConfig;
use shortcode_gw::gateway::Gateway;
use shortcode_gw::peer::{mt_text, Link, PeerEvent};
use shortcode_gw::server::{ManualClock, Server};
use shortcode_gw::store::{self, Store, StoreKind};
use shortcode_protocol::segment;
use shortcode_protocol::smpp::{CommandStatus, MoMessage};

/// 2026-11-22 10:00 Moscow: the demo data's "today".
pub fn t0() -> DateTime<Utc> {
    "2026-11-22T07:00:00Z".parse().unwrap()
}

pub fn today() -> NaiveDate {
    "2026-11-22".parse().unwrap()
}

pub struct Gw {
    pub server: Option<Server>,
    pub addr: SocketAddr,
    pub store: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
    pub dir: tempfile::TempDir,
    pub config: Config,
}

/// Fill a fresh store in `dir` with the demo catalog and `n` demo accounts.
pub fn seed_store(dir: &std::path::Path, n: usize) -> Arc<dyn Store> {
    let store = store::open(StoreKind::Redb, dir).unwrap();
    Gateway::import_catalog(store.as_ref(), demo::demo_catalog()).unwrap();
    let gw = Gateway::open(store.clone(), EngineConfig::default()).unwrap();
    gw.import_accounts(demo::demo_accounts(n, 1, today()).collect(), t0())
        .unwrap();
    store
}

/// The listener role on 127.0.0.1:0 with the demo peer.
pub fn listen_config() -> Config {
    Config {
        listen: Some(ListenConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..ListenConfig::default()
        }),
        ..Config::default()
    }
}

pub async fn start_with(config: Config, accounts: usize) -> Gw {
    let dir = tempfile::tempdir().unwrap();
    let store = seed_store(dir.path(), accounts);
    start_on(dir, store, config).await
}

pub async fn start_on(dir: tempfile::TempDir, store: Arc<dyn Store>, config: Config) -> Gw {
    let clock = Arc::new(ManualClock::new(t0()));
    let gw = Gateway::open(store.clone(), EngineConfig::default()).unwrap();
    let server = Server::start(gw, &config, clock.clone()).await.unwrap();
    let addr = server
        .local_addr
        .unwrap_or_else(|| "127.0.0.1:9".parse().unwrap());
    Gw {
        server: Some(server),
        addr,
        store,
        clock,
        dir,
        config,
    }
}

pub async fn start(accounts: usize) -> Gw {
    start_with(listen_config(), accounts).await
}

// ---- helpers shared by the end-to-end tests (either peer role) ----

/// How long a test waits for an event before failing.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub fn msisdn(i: u64) -> String {
    (79_000_000_000 + i).to_string()
}

pub fn is_response_to(seq: u32) -> impl Fn(&PeerEvent) -> bool {
    move |e| matches!(e, PeerEvent::Response { seq: s, .. } if *s == seq)
}

pub fn status_of(ev: &PeerEvent) -> CommandStatus {
    match ev {
        PeerEvent::Response { status, .. } => *status,
        other => panic!("not a response: {other:?}"),
    }
}

pub fn into_mt(ev: PeerEvent) -> MoMessage {
    match ev {
        PeerEvent::Mt(m) => m,
        other => panic!("not a message: {other:?}"),
    }
}

/// Every part of the next SMS from 9290 to `to`, reassembled.
pub async fn sms_from_9290(peer: &mut Link, to: &str) -> (usize, String) {
    let is_sms_to = |to: String| {
        move |e: &PeerEvent| {
            matches!(e, PeerEvent::Mt(m)
                if m.source_addr == "9290" && m.dest_addr == to && m.ussd_service_op.is_none())
        }
    };
    let first = into_mt(
        peer.wait_for(WAIT, is_sms_to(to.to_string()))
            .await
            .expect("an SMS from 9290"),
    );
    let concat = |m: &MoMessage| {
        m.has_udh()
            .then(|| segment::split_udh(&m.payload).ok()?.0.concat)
            .flatten()
    };
    let Some(c) = concat(&first) else {
        return (1, mt_text(&first));
    };
    let mut parts = vec![(c.seq, mt_text(&first))];
    while parts.len() < usize::from(c.total) {
        let m = into_mt(
            peer.wait_for(WAIT, is_sms_to(to.to_string()))
                .await
                .expect("the next part"),
        );
        let p = concat(&m).expect("a part of the same message");
        assert_eq!((p.reference, p.total), (c.reference, c.total));
        parts.push((p.seq, mt_text(&m)));
    }
    parts.sort();
    (parts.len(), parts.into_iter().map(|(_, t)| t).collect())
}

pub fn monthly_fees(gw: &Gw, who: &str) -> usize {
    gw.store
        .statement(who)
        .unwrap()
        .iter()
        .filter(|l| l.kind == StatementKind::MonthlyFee)
        .count()
}

pub fn balance(gw: &Gw, who: &str) -> Decimal {
    gw.store.account(who).unwrap().unwrap().account.balance
}

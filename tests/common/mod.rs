//! Shared harness for end-to-end tests: a gateway over a fresh store on a
//! loopback port, with demo data and a manual clock.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use shortcode_gw::config::{Config, ListenConfig};
use shortcode_gw::data::demo;
use shortcode_gw::engine::EngineConfig;
use shortcode_gw::gateway::Gateway;
use shortcode_gw::server::{ManualClock, Server};
use shortcode_gw::store::{self, Store, StoreKind};

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

//! The gateway's TOML configuration (`serve --config FILE`).
//!
//! Every key has a default, so an empty file (or none) is the embedded
//! default: listen on 127.0.0.1:2775, accept the demo peer, store in
//! `./data`. Unknown keys are refused at start with the key named, so a typo
//! never silently falls back to a default. Limits carry their unit in the
//! name (`window_max`, `response_timeout_ms`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::engine::texts::Texts;
use crate::store::StoreKind;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub store: StoreConfig,
    pub service: ServiceConfig,
    /// MC role: accept binds from these peers (`serve --listen`).
    pub listen: Option<ListenConfig>,
    /// ESME role: bind out to the operator's SMSC/USSDC (`serve --connect`).
    pub connect: Option<ConnectConfig>,
    pub smpp: SmppConfig,
    pub texts: Texts,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(deserialize_with = "de_from_str")]
    pub kind: StoreKind,
    pub data_dir: PathBuf,
    /// Commit through the write-ahead log (`store::wal`): one append and
    /// one fdatasync per group, checkpointed into the backend in the
    /// background. `false` makes every group a backend transaction.
    pub write_ahead_log: bool,
    /// Checkpoint the log into the backend every this many MiB of log.
    /// Smaller: less memory (overlay, and the backend's dirty pages of one
    /// checkpoint transaction) and shorter disk bursts; larger: fewer
    /// backend transactions. Not a buffer for peaks: what is not yet
    /// checkpointed (up to twice this much log) stays in memory at about
    /// 3 × its log size (measured: ~3 KB per request), and at saturation
    /// the checkpoints set the pace whatever their size (benches/RESULTS.md,
    /// session 6).
    pub checkpoint_mib: u64,
}

impl StoreConfig {
    /// The write-ahead log's tuning, or `None` without a log.
    pub fn log_options(&self) -> Option<crate::store::wal::LogOptions> {
        self.write_ahead_log.then(|| crate::store::wal::LogOptions {
            checkpoint_bytes: self.checkpoint_mib.max(1) << 20,
            ..crate::store::wal::LogOptions::default()
        })
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Redb,
            data_dir: PathBuf::from("./data"),
            write_ahead_log: true,
            checkpoint_mib: crate::store::wal::LogOptions::default().checkpoint_bytes >> 20,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// USSD strings that renew, written as dialled (C3).
    pub ussd_codes: Vec<String>,
    /// The SMS short number: any MO to it renews (C2).
    pub short_number: String,
    /// Country code for national / trunk-form numbers (C5).
    pub country_code: String,
    /// G4 window.
    pub dedup_window_s: i64,
    /// Operator time zone for local dates (billing days). Default: the
    /// catalog's `timezone` (the demo catalog says Europe/Moscow).
    pub timezone: Option<String>,
    /// Local time ("HH:MM", operator zone) at which `serve` starts each
    /// day's nightly run (N1–N4) through the engine queue; "off": never
    /// (then run `shortcode-gw nightly` while the gateway is stopped).
    pub nightly_at: String,
    /// Where `serve` records the last local date whose nightly run
    /// finished, so that a restart catches up the nights it was down for.
    /// Set by `serve` (`data_dir/nightly-done`), not read from the file:
    /// without it nothing is caught up at start.
    #[serde(skip)]
    pub nightly_record: Option<PathBuf>,
}

impl ServiceConfig {
    /// [`ServiceConfig::nightly_at`] parsed: `None` when "off".
    pub fn nightly_time(&self) -> Result<Option<chrono::NaiveTime>, String> {
        let v = self.nightly_at.trim();
        if v.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        chrono::NaiveTime::parse_from_str(v, "%H:%M")
            .map(Some)
            .map_err(|_| {
                format!("service.nightly_at {v:?}: expected a local time \"HH:MM\" or \"off\"")
            })
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            ussd_codes: vec!["*929#".into()],
            short_number: "9290".into(),
            country_code: "7".into(),
            dedup_window_s: 60,
            timezone: None,
            nightly_at: "00:00".into(),
            nightly_record: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenConfig {
    pub addr: SocketAddr,
    pub peers: Vec<PeerConfig>,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            addr: "127.0.0.1:2775".parse().expect("literal address"),
            peers: vec![PeerConfig {
                system_id: DEMO_PEER.into(),
                password: DEMO_PEER.into(),
            }],
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub system_id: String,
    pub password: String,
}

/// Never print a password, even in debug logs.
impl std::fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConfig")
            .field("system_id", &self.system_id)
            .field("password", &"***")
            .finish()
    }
}

#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectConfig {
    pub addr: String,
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    /// Reconnect backoff: doubles from min to max, with jitter.
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        ConnectConfig {
            addr: "127.0.0.1:2775".into(),
            system_id: "shortcode-gw".into(),
            password: String::new(),
            system_type: String::new(),
            reconnect_min_ms: 200,
            reconnect_max_ms: 30_000,
        }
    }
}

impl std::fmt::Debug for ConnectConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectConfig")
            .field("addr", &self.addr)
            .field("system_id", &self.system_id)
            .field("password", &"***")
            .field("system_type", &self.system_type)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmppConfig {
    /// Unanswered requests a peer may have in flight before it is throttled.
    pub window_max: usize,
    /// Largest PDU accepted; a longer command_length closes the link.
    pub pdu_len_max: usize,
    pub response_timeout_ms: u64,
    pub enquire_link_interval_ms: u64,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout_ms: u64,
    /// A peer that takes nothing of what we write for this long is closed
    /// (otherwise one that never reads would hold its connection slot, and
    /// shutdown, for ever).
    pub write_timeout_ms: u64,
    /// Simultaneous inbound connections (MC role).
    pub connections_max: usize,
    /// Requests the engine commits in one store transaction at most.
    pub batch_max: usize,
}

impl Default for SmppConfig {
    fn default() -> Self {
        SmppConfig {
            // The load tool's default window (issue 5), and common among
            // USSD centres; 64 connections × 64 stay within the engine
            // queue's 4,096.
            window_max: 64,
            pdu_len_max: 8192,
            response_timeout_ms: 30_000,
            enquire_link_interval_ms: 30_000,
            idle_timeout_ms: 300_000,
            write_timeout_ms: 10_000,
            connections_max: 64,
            batch_max: 512,
        }
    }
}

fn de_from_str<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr<Err = String>,
{
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&path.display().to_string(), &text)
    }

    /// Parse and validate; errors name the key.
    pub fn parse(path: &str, text: &str) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_string(),
            message,
        };
        let de = toml::Deserializer::new(text);
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            invalid(format!("key `{key}`: {}", inner.message().trim()))
        })?;
        if cfg.service.ussd_codes.is_empty() {
            return Err(invalid(
                "key `service.ussd_codes`: at least one code".into(),
            ));
        }
        cfg.texts
            .validate(&cfg.service.ussd_codes[0])
            .map_err(&invalid)?;
        for (i, code) in cfg.service.ussd_codes.iter().enumerate() {
            if shortcode_protocol::ussd::parse_code_config(code).is_err() {
                return Err(invalid(format!(
                    "key `service.ussd_codes[{i}]`: {code:?} is not a USSD code like \"*929#\""
                )));
            }
        }
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(&cfg.service.short_number) {
            return Err(invalid("key `service.short_number`: digits only".into()));
        }
        if !digits(&cfg.service.country_code) {
            return Err(invalid("key `service.country_code`: digits only".into()));
        }
        if let Some(tz) = &cfg.service.timezone {
            if tz.parse::<chrono_tz::Tz>().is_err() {
                return Err(invalid(format!(
                    "key `service.timezone`: {tz:?} is not an IANA time zone like \"Europe/Moscow\""
                )));
            }
        }
        if cfg.service.dedup_window_s < 0 {
            return Err(invalid("key `service.dedup_window_s`: must be ≥ 0".into()));
        }
        let s = &cfg.smpp;
        for (key, v) in [
            ("smpp.window_max", s.window_max),
            ("smpp.batch_max", s.batch_max),
            ("smpp.connections_max", s.connections_max),
        ] {
            if v == 0 {
                return Err(invalid(format!("key `{key}`: must be at least 1")));
            }
        }
        if !(64..=1 << 20).contains(&s.pdu_len_max) {
            return Err(invalid(
                "key `smpp.pdu_len_max`: 64 to 1048576 bytes".into(),
            ));
        }
        if let Some(c) = &cfg.connect {
            if c.reconnect_min_ms == 0 || c.reconnect_max_ms < c.reconnect_min_ms {
                return Err(invalid(
                    "key `connect.reconnect_min_ms`: must be ≥ 1 and ≤ reconnect_max_ms".into(),
                ));
            }
        }
        for (key, v) in [
            ("store.checkpoint_mib", cfg.store.checkpoint_mib),
            ("smpp.write_timeout_ms", cfg.smpp.write_timeout_ms),
        ] {
            if v == 0 {
                return Err(invalid(format!("key `{key}`: must be at least 1")));
            }
        }
        cfg.service.nightly_time().map_err(&invalid)?;
        cfg.check_roles().map_err(&invalid)?;
        Ok(cfg)
    }

    /// The engine settings this configuration gives (`serve`, every
    /// one-shot command and the replay tool use the same texts, dedup
    /// window, USSD code and time zone).
    pub fn engine_config(&self) -> crate::engine::EngineConfig {
        crate::engine::EngineConfig {
            texts: self.texts.clone(),
            dedup_window_s: self.service.dedup_window_s,
            ussd_code: self.service.ussd_codes.first().cloned().unwrap_or_default(),
            timezone: self.service.timezone.clone(),
        }
    }

    /// What must hold of the SMPP roles once the command line has had its
    /// say (`serve --listen/--connect` change them after the file is read):
    /// someone can bind to a listener, the built-in demo peer only listens
    /// on loopback, and an outbound address has a port.
    pub fn check_roles(&self) -> Result<(), String> {
        if let Some(l) = &self.listen {
            if l.peers.is_empty() {
                return Err("key `listen.peers`: no peer could bind; add [[listen.peers]]".into());
            }
            let demo = l
                .peers
                .iter()
                .any(|p| p.system_id == DEMO_PEER && p.password == DEMO_PEER);
            if demo && !l.addr.ip().is_loopback() {
                return Err(format!(
                    "key `listen.peers`: the demo peer (demo/demo) may only bind on a loopback address, not {}; configure [[listen.peers]] with real credentials",
                    l.addr
                ));
            }
        }
        if let Some(c) = &self.connect {
            let port = c
                .addr
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(p))) if !host.is_empty() && p != 0) {
                return Err(format!(
                    "key `connect.addr`: {:?} is not host:port (like \"smsc.example:2775\")",
                    c.addr
                ));
            }
        }
        Ok(())
    }
}

/// The built-in peer of the embedded defaults (system_id and password).
pub const DEMO_PEER: &str = "demo";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_the_embedded_default() {
        let c = Config::parse("x.toml", "").unwrap();
        assert_eq!(c.service.short_number, "9290");
        assert_eq!(c.service.ussd_codes, ["*929#"]);
        assert_eq!(c.smpp.window_max, 64);
        assert_eq!(c.smpp.pdu_len_max, 8192);
        assert_eq!(c.store.kind, StoreKind::Redb);
    }

    #[test]
    fn bad_keys_are_named() {
        let rows = [
            ("[smpp]\nwindow_maxx = 3\n", "smpp"),
            ("[smpp]\nwindow_max = \"ten\"\n", "smpp.window_max"),
            ("[store]\nkind = \"rocks\"\n", "store.kind"),
            (
                "[service]\nussd_codes = [\"*92a#\"]\n",
                "service.ussd_codes[0]",
            ),
            ("[texts]\nblocked = \"{oops}\"\n", "texts.blocked"),
            (
                "[texts]\nblocked = \"Пакет не обновлён: на номере есть блокировка, обратитесь в салон связи или позвоните 0890\"\n",
                "texts.blocked: 89 UCS2 characters",
            ),
            ("[listen]\naddr = \"nowhere\"\n", "listen.addr"),
            ("[smpp]\nwindow_max = 0\n", "smpp.window_max"),
            (
                "[service]\ntimezone = \"Mars/Olympus\"\n",
                "service.timezone",
            ),
            ("[service]\nnightly_at = \"25:00\"\n", "service.nightly_at"),
            ("[store]\ncheckpoint_mib = 0\n", "store.checkpoint_mib"),
            ("[smpp]\nwrite_timeout_ms = 0\n", "smpp.write_timeout_ms"),
            // Anyone reaching the port could bind as demo/demo.
            (
                "[listen]\naddr = \"0.0.0.0:2775\"\n",
                "demo peer (demo/demo) may only bind on a loopback",
            ),
            ("[listen]\npeers = []\n", "listen.peers"),
            ("[connect]\naddr = \"nohost\"\n", "connect.addr"),
            ("[connect]\naddr = \":2775\"\n", "connect.addr"),
        ];
        for (text, key) in rows {
            let e = Config::parse("gw.toml", text).unwrap_err().to_string();
            assert!(e.starts_with("config gw.toml: "), "{e}");
            assert!(e.contains(key), "{text:?} → {e}");
        }
    }

    #[test]
    fn the_shipped_example_config_is_valid() {
        let text = include_str!("../deploy/shortcode-gw.toml");
        let c = Config::parse("deploy/shortcode-gw.toml", text).unwrap();
        assert_eq!(c.listen.unwrap().peers[0].system_id, "ussdc1");
        assert_eq!(c.connect.unwrap().reconnect_max_ms, 30000);
    }

    #[test]
    fn passwords_never_reach_debug_output() {
        let c = Config::parse(
            "x",
            "[listen]\n[[listen.peers]]\nsystem_id = \"u\"\npassword = \"s3cret\"\n\
             [connect]\npassword = \"hunter2\"\n",
        )
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cret") && !dbg.contains("hunter2"), "{dbg}");
    }
}

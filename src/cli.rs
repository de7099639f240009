//! The command line: a thin clap layer over [`Gateway`](crate::gateway::Gateway).
//!
//! Results go to stdout as JSON (one object, or JSON Lines for lists);
//! errors go to stderr with a non-zero exit. Every instant is RFC 3339 with
//! an offset (`--at`, default: the machine's clock, read here in the shell
//! and passed to the engine); dates are local dates in the catalog's zone.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use rust_decimal::Decimal;

use crate::data;
use crate::engine::model::{BlockKind, Channel, UsageKind};
use crate::engine::{Command, EngineConfig};
use crate::gateway::{Gateway, Request};
use crate::store::{self, Store, StoreKind};

#[derive(Debug, Parser)]
#[command(
    name = "shortcode-gw",
    version,
    about = "«Обнови пакет» USSD/SMS short-code gateway"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Args)]
pub struct Global {
    /// TOML config file (see deploy/shortcode-gw.toml). Every command reads
    /// its store, time zone and texts from it, so `import`, `nightly`, …
    /// act on the store `serve` uses, with the same local dates [default:
    /// the embedded defaults].
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Directory of the embedded store [default: ./data, or the config's store.data_dir].
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Store backend [default: redb, or the config's store.kind].
    #[arg(long, global = true)]
    pub store: Option<StoreKind>,
}

impl Global {
    /// The config file (or the embedded defaults) with `--data-dir` and
    /// `--store` applied over it.
    fn settings(&self) -> Result<crate::config::Config, Box<dyn std::error::Error>> {
        let mut cfg = match &self.config {
            Some(p) => crate::config::Config::load(p)?,
            None => crate::config::Config::default(),
        };
        if let Some(d) = &self.data_dir {
            cfg.store.data_dir = d.clone();
        }
        if let Some(k) = self.store {
            cfg.store.kind = k;
        }
        Ok(cfg)
    }
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the gateway: SMPP listener and/or client over the store.
    ///
    /// With no flags: listen on 127.0.0.1:2775 for the demo peer
    /// (demo/demo), store in ./data, demo data loaded into an empty store.
    Serve {
        /// Listen for binds on this address (MC role).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Bind out to this SMSC/USSDC (ESME role).
        #[arg(long)]
        connect: Option<String>,
        /// Demo accounts to generate into an empty store.
        #[arg(long, default_value_t = 1000)]
        demo_accounts: usize,
    },
    /// Load a catalog (JSON/TOML) or an accounts file (JSON Lines), all or nothing.
    Import {
        #[command(subcommand)]
        what: ImportWhat,
    },
    /// Print an account as one line of the accounts-file schema.
    Account {
        /// Subscriber number, E.164 without "+" (e.g. 79161234567).
        msisdn: String,
    },
    /// Print a subscriber's statement (JSON Lines).
    Statement {
        /// Subscriber number, E.164 without "+" (e.g. 79161234567).
        msisdn: String,
    },
    /// Print the request journal (JSON Lines), optionally for one subscriber.
    Journal {
        /// Only this subscriber's lines [default: everyone's].
        msisdn: Option<String>,
    },
    /// Renew the package («Обнови пакет») as if the subscriber asked.
    Renew {
        /// Subscriber number, E.164 without "+" (e.g. 79161234567).
        msisdn: String,
        /// How the subscriber asked: a *929# USSD dial or an SMS to 9290.
        #[arg(long, value_enum, default_value = "ussd")]
        channel: ChannelArg,
        #[command(flatten)]
        at: At,
    },
    /// Record usage (saved package first, then main, then out-of-bundle).
    Usage {
        /// Subscriber number, E.164 without "+" (e.g. 79161234567).
        msisdn: String,
        /// What was used.
        #[arg(long, value_enum)]
        kind: UsageArg,
        /// Units used (minutes, SMS or MB), at most 1000000000.
        #[arg(long)]
        amount: u64,
        #[command(flatten)]
        at: At,
    },
    /// Credit the balance, e.g. `topup 79161234567 100.00`.
    Topup {
        /// Subscriber number, E.164 without "+" (e.g. 79161234567).
        msisdn: String,
        /// Amount with two decimals, as in the data files (e.g. 100.00).
        #[arg(value_parser = crate::engine::model::money::parse)]
        amount: Decimal,
        #[command(flatten)]
        at: At,
    },
    /// Put a block on the account.
    Block {
        /// Subscriber number, E.164 without "+" (e.g. 79161234567).
        msisdn: String,
        /// Kind of block.
        #[arg(long, value_enum, default_value = "voluntary")]
        kind: BlockArg,
        #[command(flatten)]
        at: At,
    },
    /// Lift one kind of block, or all with no --kind.
    Unblock {
        /// Subscriber number, E.164 without "+" (e.g. 79161234567).
        msisdn: String,
        /// Kind of block to lift [default: all].
        #[arg(long, value_enum)]
        kind: Option<BlockArg>,
        #[command(flatten)]
        at: At,
    },
    /// Set the discount on the monthly fee (percent, 0–100).
    Discount {
        /// Subscriber number, E.164 without "+" (e.g. 79161234567).
        msisdn: String,
        /// Percent off the monthly fee, 0 to 100.
        pct: Decimal,
        #[command(flatten)]
        at: At,
    },
    /// Move the account to another plan version of the catalog.
    Plan {
        /// Subscriber number, E.164 without "+" (e.g. 79161234567).
        msisdn: String,
        /// Plan id in the catalog (e.g. smart).
        plan: String,
        /// Plan version in the catalog (e.g. 2024).
        version: String,
        #[command(flatten)]
        at: At,
    },
    /// Add or remove a service on the number (the renewal needs "package").
    Service {
        /// Add or remove.
        #[arg(value_enum)]
        action: ServiceAction,
        msisdn: String,
        /// Service name (the renewal needs "package").
        service: String,
        #[command(flatten)]
        at: At,
    },
    /// The nightly run for a local date (idempotent per date).
    Nightly {
        /// Local date N (YYYY-MM-DD) in the operator's time zone.
        #[arg(long)]
        date: NaiveDate,
        #[command(flatten)]
        at: At,
    },
    /// Write the bundled demo catalog and a generated demo account set.
    DemoData {
        /// Where to write catalog.json and accounts.jsonl.
        #[arg(long, default_value = "demo")]
        out: PathBuf,
        /// Accounts to generate.
        #[arg(long, default_value_t = 1000)]
        accounts: usize,
        /// Generator seed: the same seed gives the same accounts.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The "today" the generated billing dates are around.
        #[arg(long, default_value = "2026-11-22")]
        today: NaiveDate,
    },
    /// SMPP load against a loopback server (gateway or echo peer), or
    /// `--generate N` demo accounts straight into the store (issue 5).
    Load(crate::load::LoadArgs),
    /// Replay scenario fixtures against a fresh gateway (fixtures/README.md);
    /// exits non-zero when any expectation fails or a fixture is refused.
    Replay {
        /// Scenario files (TOML), or directories of them.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Over real SMPP on loopback (the gateway's server, replay as the
        /// network) instead of in-process.
        #[arg(long)]
        wire: bool,
        /// With --wire: the gateway binds out ([connect]) to replay playing
        /// the SMSC, instead of replay binding to the gateway's listener.
        #[arg(long, requires = "wire")]
        gateway_connects: bool,
        /// Also write a JUnit XML report to this file.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Write what happened as a new fixture (a directory when several).
        #[arg(long)]
        record: Option<PathBuf>,
        /// The gateway config whose [service] and [texts] to replay under
        /// (default: the embedded one). The store is always a fresh one.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportWhat {
    /// Replace the tariff catalog (refused if it drops a plan accounts use).
    Catalog {
        /// Catalog file, JSON or TOML (see the spec's data formats).
        file: PathBuf,
    },
    /// Add or replace accounts; a changed balance is booked as an adjustment.
    Accounts {
        /// Accounts file, JSON Lines, one account per line.
        file: PathBuf,
        #[command(flatten)]
        at: At,
    },
}

#[derive(Debug, Args)]
pub struct At {
    /// The instant of the command, RFC 3339 with offset (default: now).
    #[arg(long)]
    pub at: Option<DateTime<chrono::FixedOffset>>,
}

impl At {
    fn instant(&self) -> DateTime<Utc> {
        self.at
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(Utc::now)
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ChannelArg {
    Ussd,
    Sms,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum UsageArg {
    Minutes,
    Sms,
    #[value(name = "data_mb", alias = "data")]
    DataMb,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BlockArg {
    Financial,
    Voluntary,
    #[value(name = "lost_sim")]
    LostSim,
    Fraud,
    Other,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ServiceAction {
    Add,
    Remove,
}

impl From<BlockArg> for BlockKind {
    fn from(b: BlockArg) -> Self {
        match b {
            BlockArg::Financial => BlockKind::Financial,
            BlockArg::Voluntary => BlockKind::Voluntary,
            BlockArg::LostSim => BlockKind::LostSim,
            BlockArg::Fraud => BlockKind::Fraud,
            BlockArg::Other => BlockKind::Other,
        }
    }
}

type CliResult = Result<(), Box<dyn std::error::Error>>;

fn print_json(v: &impl serde::Serialize) -> CliResult {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// One-shot commands commit once or in bulk, where a log in front of the
/// backend saves nothing; any log a crashed `serve` left is replayed first.
fn open_store(g: &Global) -> Result<Arc<dyn Store>, Box<dyn std::error::Error>> {
    let cfg = g.settings()?;
    Ok(store::open_with(
        cfg.store.kind,
        &cfg.store.data_dir,
        false,
    )?)
}

fn gateway(g: &Global) -> Result<Gateway, Box<dyn std::error::Error>> {
    let cfg = g.settings()?;
    let store = store::open_with(cfg.store.kind, &cfg.store.data_dir, false)?;
    Ok(Gateway::open(store, cfg.engine_config())?)
}

/// Run an operator command and print the account it left.
fn operate(g: &Global, msisdn: &str, command: Command, at: &At) -> CliResult {
    let gw = gateway(g)?;
    let applied = gw.execute_one(Request {
        msisdn: msisdn.to_string(),
        command,
        now: at.instant(),
    })?;
    match applied.state {
        Some(st) => print_json(&st.account),
        None => Err(format!("no account {msisdn}").into()),
    }
}

pub fn run(cli: Cli) -> CliResult {
    let g = &cli.global;
    match cli.command {
        Cmd::Serve {
            listen,
            connect,
            demo_accounts,
        } => serve(g, listen, connect, demo_accounts),
        Cmd::Import { what } => match what {
            ImportWhat::Catalog { file } => {
                let catalog = data::load_catalog(&file)?;
                let plans = catalog.plans.len();
                let store = open_store(g)?;
                Gateway::import_catalog(store.as_ref(), catalog)?;
                print_json(&serde_json::json!({"imported": "catalog", "plans": plans}))
            }
            ImportWhat::Accounts { file, at } => {
                let gw = gateway(g)?;
                let accounts = data::load_accounts(&file, gw.engine().catalog())?;
                let n = gw.import_accounts(accounts, at.instant())?;
                print_json(&serde_json::json!({"imported": "accounts", "accounts": n}))
            }
        },
        Cmd::Account { msisdn } => {
            let store = open_store(g)?;
            match store.account(&msisdn)? {
                Some(st) => print_json(&st.account),
                None => Err(format!("no account {msisdn}").into()),
            }
        }
        Cmd::Statement { msisdn } => {
            let store = open_store(g)?;
            // An empty statement is an account with no lines yet; a number
            // with no account is a mistake worth an exit code.
            if store.account(&msisdn)?.is_none() {
                return Err(format!("no account {msisdn}").into());
            }
            for line in store.statement(&msisdn)? {
                print_json(&line)?;
            }
            Ok(())
        }
        Cmd::Journal { msisdn } => {
            let store = open_store(g)?;
            for line in store.journal(msisdn.as_deref())? {
                print_json(&line)?;
            }
            Ok(())
        }
        Cmd::Renew {
            msisdn,
            channel,
            at,
        } => {
            let gw = gateway(g)?;
            let (channel, request) = match channel {
                ChannelArg::Ussd => (Channel::Ussd, gw.engine().config().ussd_code.clone()),
                ChannelArg::Sms => (Channel::Sms, String::new()),
            };
            let applied = gw.execute_one(Request {
                msisdn: msisdn.clone(),
                command: Command::Renew {
                    channel,
                    request,
                    dedup_key: None,
                },
                now: at.instant(),
            })?;
            let notice = applied.effects.iter().find_map(|e| match e {
                crate::engine::Effect::Notice(n) => Some(n.text.clone()),
                _ => None,
            });
            print_json(&serde_json::json!({
                "msisdn": msisdn,
                "channel": channel,
                "outcome": applied.outcome,
                "reply": applied.reply,
                "sms": notice,
            }))
        }
        Cmd::Usage {
            msisdn,
            kind,
            amount,
            at,
        } => {
            let kind = match kind {
                UsageArg::Minutes => UsageKind::Minutes,
                UsageArg::Sms => UsageKind::Sms,
                UsageArg::DataMb => UsageKind::DataMb,
            };
            operate(g, &msisdn, Command::Usage { kind, amount }, &at)
        }
        Cmd::Topup { msisdn, amount, at } => operate(g, &msisdn, Command::TopUp { amount }, &at),
        Cmd::Block { msisdn, kind, at } => {
            operate(g, &msisdn, Command::Block { kind: kind.into() }, &at)
        }
        Cmd::Unblock { msisdn, kind, at } => operate(
            g,
            &msisdn,
            Command::Unblock {
                kind: kind.map(Into::into),
            },
            &at,
        ),
        Cmd::Discount { msisdn, pct, at } => operate(g, &msisdn, Command::SetDiscount { pct }, &at),
        Cmd::Plan {
            msisdn,
            plan,
            version,
            at,
        } => operate(g, &msisdn, Command::ChangePlan { plan, version }, &at),
        Cmd::Service {
            action,
            msisdn,
            service,
            at,
        } => {
            let command = match action {
                ServiceAction::Add => Command::AddService { service },
                ServiceAction::Remove => Command::RemoveService { service },
            };
            operate(g, &msisdn, command, &at)
        }
        Cmd::Nightly { date, at } => {
            let gw = gateway(g)?;
            print_json(&gw.nightly(date, at.instant())?)
        }
        Cmd::DemoData {
            out,
            accounts,
            seed,
            today,
        } => write_demo(&out, accounts, seed, today),
        Cmd::Load(args) => {
            let cfg = g.settings()?;
            crate::load::main(args, cfg.store.kind, cfg.store.data_dir)
        }
        Cmd::Replay {
            files,
            wire,
            gateway_connects,
            junit,
            record,
            config,
        } => crate::replay::cli(crate::replay::Options {
            files,
            config,
            mode: match (wire, gateway_connects) {
                (false, _) => crate::replay::Mode::InProcess,
                (true, false) => crate::replay::Mode::Wire,
                (true, true) => crate::replay::Mode::WireGatewayConnects,
            },
            junit,
            record,
            progress: true,
        }),
    }
}

fn serve(
    g: &Global,
    listen: Option<std::net::SocketAddr>,
    connect: Option<String>,
    demo_accounts: usize,
) -> CliResult {
    use crate::config::{ConnectConfig, ListenConfig};
    let config = g.config.as_deref();
    let mut cfg = g.settings()?;
    if let Some(addr) = listen {
        cfg.listen.get_or_insert_with(ListenConfig::default).addr = addr;
    }
    if let Some(addr) = connect {
        cfg.connect.get_or_insert_with(ConnectConfig::default).addr = addr;
    }
    if cfg.listen.is_none() && cfg.connect.is_none() {
        cfg.listen = Some(ListenConfig::default());
    }
    // Before anything is opened or created.
    cfg.check_roles().map_err(|m| {
        format!(
            "{}: {m}",
            config.map_or("serve".into(), |p| p.display().to_string())
        )
    })?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let store =
        store::open_with_options(cfg.store.kind, &cfg.store.data_dir, cfg.store.log_options())?;
    let now = Utc::now();
    if store.catalog()?.is_none() && store.account_count()? == 0 {
        if let Some(p) = config {
            // An operator's setup never serves invented subscribers: an
            // empty store there is a wrong data_dir or a missed import.
            return Err(format!(
                "{}: the store in {} has no catalog and no accounts; load them first (`shortcode-gw --data-dir {} import catalog FILE`, then `import accounts FILE`). Only `serve` without --config fills an empty store with demo data",
                p.display(),
                cfg.store.data_dir.display(),
                cfg.store.data_dir.display()
            )
            .into());
        }
        let catalog = data::demo::demo_catalog();
        Gateway::import_catalog(store.as_ref(), catalog)?;
        let gw = Gateway::open(store.clone(), EngineConfig::default())?;
        let today = gw.engine().local_date(now);
        let accounts: Vec<_> = data::demo::demo_accounts(demo_accounts, 1, today).collect();
        let n = gw.import_accounts(accounts, now)?;
        tracing::info!(accounts = n, dir = %cfg.store.data_dir.display(), "empty store: loaded the demo catalog and accounts");
    }
    let gw = Gateway::open(store, cfg.engine_config())?;
    tracing::info!(
        backend = gw.store().backend(),
        accounts = gw.store().account_count()?,
        "store open"
    );
    cfg.service.nightly_record = Some(cfg.store.data_dir.join("nightly-done"));
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let stop = shutdown_signal()?;
        let server =
            crate::server::Server::start(gw, &cfg, Arc::new(crate::server::SystemClock)).await?;
        stop.await;
        tracing::info!("shutdown requested: draining");
        server.shutdown().await;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}

/// ctrl-c or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled: a SIGTERM arriving while the server
/// starts must drain it, not kill the process with the default action.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

fn write_demo(out: &Path, n: usize, seed: u64, today: NaiveDate) -> CliResult {
    std::fs::create_dir_all(out)?;
    let catalog_path = out.join("catalog.json");
    // The bundled file itself, byte for byte.
    std::fs::write(&catalog_path, data::demo::DEMO_CATALOG_JSON)?;
    let accounts_path = out.join("accounts.jsonl");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&accounts_path)?);
    for a in data::demo::demo_accounts(n, seed, today) {
        writeln!(w, "{}", data::account_line(&a))?;
    }
    w.flush()?;
    print_json(&serde_json::json!({
        "catalog": catalog_path,
        "accounts": accounts_path,
        "count": n,
    }))
}

/// Used by `main`: parse, run, map errors to stderr and exit code 1.
pub fn main_with(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shortcode-gw: {e}");
            1
        }
    }
}

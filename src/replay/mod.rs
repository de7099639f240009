//! Fixture traffic replay for testers: `shortcode-gw replay FILES…`.
//!
//! A scenario file (TOML, documented in `fixtures/README.md`) names a
//! catalog and accounts and lists timed steps: subscriber traffic (USSD,
//! SMS, delivery receipts), operator operations and nightly runs, each with
//! expectations. Replay runs each scenario against a fresh in-memory
//! gateway, in-process or over real SMPP (`--wire`), and reports every
//! expectation that did not hold.
//!
//! - [`fixture`]: the format, loading and checking a fixture;
//! - [`run`]: the step loop and the in-process driver;
//! - [`wire`]: the SMPP driver (the gateway's server on loopback);
//! - [`check`]: expectations against what happened;
//! - [`report`]: the text report and JUnit XML;
//! - [`record`]: `--record`, a run written back as a fixture.
//!
//! Runs are deterministic (G1): the clock is the fixture's, the store is
//! fresh, and the report carries no wall-clock time.

pub mod check;
pub mod fixture;
pub mod record;
pub mod report;
pub mod run;
pub mod wire;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use crate::config::Config;
use fixture::Scenario;
use report::{Entry, Summary};
use run::ScenarioRun;

/// How a replay reaches the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    InProcess,
    /// Over SMPP: replay binds to the gateway's listener as an ESME.
    Wire,
    /// Over SMPP: the gateway binds out to replay playing the SMSC.
    WireGatewayConnects,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::InProcess => "in-process",
            Mode::Wire => "wire",
            Mode::WireGatewayConnects => "wire, gateway connects",
        }
    }
}

/// What `shortcode-gw replay` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Scenario files, or directories whose `*.toml` files are scenarios.
    pub files: Vec<PathBuf>,
    /// A gateway config file for the service settings and texts.
    pub config: Option<PathBuf>,
    pub mode: Mode,
    pub junit: Option<PathBuf>,
    pub record: Option<PathBuf>,
    /// Draw a progress bar on stderr (only ever when it is a terminal).
    pub progress: bool,
}

/// Scenario files named by `paths`: files as given, directories' `*.toml`
/// in name order.
pub fn expand(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "toml") && f.is_file())
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Load every file; a refused one becomes its entry's error.
pub fn load_all(
    files: &[PathBuf],
    config: &Config,
) -> Vec<Result<Scenario, fixture::FixtureError>> {
    files.iter().map(|f| fixture::load(f, config)).collect()
}

/// Run one loaded scenario.
pub fn run_one(
    scenario: &Scenario,
    config: &Config,
    mode: Mode,
    on_step: &mut dyn FnMut(),
) -> ScenarioRun {
    match mode {
        Mode::InProcess => run::in_process(scenario, config, on_step),
        Mode::Wire | Mode::WireGatewayConnects => {
            let role = if mode == Mode::Wire {
                wire::Role::GatewayListens
            } else {
                wire::Role::GatewayConnects
            };
            match wire::Wire::new(scenario, config, role) {
                Ok(mut driver) => run::run_steps(scenario, &mut driver, on_step),
                Err(fatal) => run::not_started(scenario, fatal),
            }
        }
    }
}

/// Load and run `files`; the entries in file order, with the scenarios that
/// loaded (for `--record`).
pub fn replay(
    files: &[PathBuf],
    config: &Config,
    mode: Mode,
    progress: bool,
) -> (Vec<Entry>, Vec<(Scenario, ScenarioRun)>) {
    let loaded = load_all(files, config);
    let total: usize = loaded
        .iter()
        .filter_map(|l| l.as_ref().ok())
        .map(|s| s.steps.len())
        .sum();
    let bar = if progress && std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {wide_msg}")
        {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut entries = Vec::with_capacity(loaded.len());
    let mut ran = Vec::new();
    for l in loaded {
        match l {
            Ok(scenario) => {
                bar.set_message(scenario.name.clone());
                let run = run_one(&scenario, config, mode, &mut || bar.inc(1));
                entries.push(Entry::Ran(run.clone()));
                ran.push((scenario, run));
            }
            Err(e) => entries.push(Entry::Refused(e)),
        }
    }
    bar.finish_and_clear();
    (entries, ran)
}

/// Where `--record` writes scenario `s`: `out` itself for a single
/// scenario, `out/<file name>` when several were replayed.
fn record_path(out: &Path, s: &Scenario, several: bool) -> PathBuf {
    if several || out.is_dir() {
        out.join(s.path.file_name().unwrap_or_default())
    } else {
        out.to_path_buf()
    }
}

/// `shortcode-gw replay`: print the report, write JUnit and recordings;
/// an error when anything failed (so the exit code is non-zero).
pub fn cli(opts: Options) -> Result<(), Box<dyn std::error::Error>> {
    let config = match &opts.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let files = expand(&opts.files)?;
    if files.is_empty() {
        return Err("replay: no scenario files found".into());
    }
    let (entries, ran) = replay(&files, &config, opts.mode, opts.progress);
    print!("{}", report::text(&entries, opts.mode.name()));
    if let Some(path) = &opts.junit {
        std::fs::write(path, report::junit(&entries))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    if let Some(out) = &opts.record {
        let several = ran.len() > 1;
        if several {
            std::fs::create_dir_all(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
        }
        for (scenario, run) in &ran {
            let path = record_path(out, scenario, several);
            let text = record::recorded(scenario, run, &path)?;
            std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
            eprintln!("recorded {} → {}", scenario.file, path.display());
        }
    }
    let summary = Summary::of(&entries);
    if summary.ok() {
        Ok(())
    } else {
        Err(format!(
            "replay: {} of {} steps failed, {} fixture(s) refused",
            summary.failed, summary.steps, summary.refused
        )
        .into())
    }
}

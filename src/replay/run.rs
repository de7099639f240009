//! Running a scenario: a fresh gateway, the steps in order, what actually
//! happened after each.
//!
//! This module owns the step loop and the in-process driver. The loop is
//! the same for both modes; a [`Driver`] is what differs: [`InProcess`]
//! builds each MO's PDU, reads it back as the gateway's connection would,
//! classifies it with the server's own [`Routing`] and commits it through
//! [`Gateway::execute`]; the wire driver (`super::wire`) sends the same
//! PDUs over loopback SMPP to a running [`crate::server::Server`]. Either
//! way the store is a fresh in-memory one, and what the checks read
//! (account, statement lines) comes from that store.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use shortcode_protocol::segment;
use shortcode_protocol::smpp::{CommandStatus, MoMessage, MtMessage};

use super::check::{check, Mismatch};
use super::fixture::{Action, Scenario, TrafficKind};
use crate::config::Config;
use crate::engine::model::{Account, Outcome, StatementLine};
use crate::engine::{Applied, Effect};
use crate::gateway::{Gateway, Request};
use crate::server::mo::{MoAction, Routing};
use crate::store::memory::MemoryStore;
use crate::store::Store;

/// What happened in one step, as the checks see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Actual {
    /// The engine's outcome; `None` when no engine request was made (a
    /// receipt, a part of a longer SMS, a refused address).
    pub outcome: Option<Outcome>,
    /// The SMPP command_status the (last) MO was answered with; traffic only.
    pub status: Option<String>,
    /// What the subscriber read: the USSD answer, or the answer SMS.
    pub reply: Option<String>,
    /// Every SMS the step sent the subscriber (the confirmation after a
    /// USSD renewal; the answer to an SMS).
    pub sms: Vec<String>,
    /// How many parts each SMS went out as.
    pub sms_parts: Vec<usize>,
    /// An operator command the engine refused.
    pub error: Option<String>,
    /// The checked account after the step.
    pub account: Option<Account>,
    /// The statement lines the step added to the checked account.
    pub statement: Vec<StatementLine>,
}

/// One step's result.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRun {
    pub index: usize,
    pub line: usize,
    /// The step's instant in the catalog's zone.
    pub at: String,
    pub summary: String,
    pub actual: Actual,
    pub mismatches: Vec<Mismatch>,
}

impl StepRun {
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// One scenario's result.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioRun {
    pub file: String,
    pub name: String,
    pub covers: Vec<String>,
    /// Steps that ran, in order.
    pub steps: Vec<StepRun>,
    /// Steps the scenario has (more than ran when it stopped early).
    pub total_steps: usize,
    /// Why the run stopped before its end (store failure, SMPP link lost).
    pub fatal: Option<String>,
}

impl ScenarioRun {
    pub fn passed_steps(&self) -> usize {
        self.steps.iter().filter(|s| s.passed()).count()
    }

    pub fn failed_steps(&self) -> usize {
        self.total_steps - self.passed_steps()
    }

    pub fn passed(&self) -> bool {
        self.fatal.is_none() && self.failed_steps() == 0
    }
}

/// What one traffic step did at the SMPP boundary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Traffic {
    pub outcome: Option<Outcome>,
    pub status: String,
    pub reply: Option<String>,
    pub sms: Vec<String>,
    pub sms_parts: Vec<usize>,
}

/// `Err` from a driver is fatal: the run cannot go on.
pub type Fatal = String;

/// How a scenario's steps reach the gateway.
pub trait Driver {
    /// The store the gateway commits to (the checks read it).
    fn store(&self) -> &Arc<dyn Store>;
    /// The gateway's clock, before each step.
    fn set_time(&mut self, now: DateTime<Utc>);
    /// MO messages from the network, in order.
    fn traffic(
        &mut self,
        kind: TrafficKind,
        messages: &[MtMessage],
        now: DateTime<Utc>,
    ) -> Result<Traffic, Fatal>;
    /// One operator command; the inner `Err` is the engine refusing it.
    fn execute(&mut self, request: Request) -> Result<Result<Applied, String>, Fatal>;
    /// The nightly run for a local date.
    fn nightly(&mut self, date: NaiveDate, now: DateTime<Utc>)
        -> Result<Result<(), String>, Fatal>;
    /// Stop whatever runs in the background.
    fn finish(&mut self) {}
}

/// A fresh in-memory gateway holding the scenario's catalog and accounts.
pub fn fresh_gateway(scenario: &Scenario, config: &Config) -> Result<Gateway, Fatal> {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    Gateway::import_catalog(store.as_ref(), scenario.catalog.clone())
        .map_err(|e| format!("importing the catalog: {e}"))?;
    let gateway = Gateway::open(store, config.engine_config())
        .map_err(|e| format!("opening the gateway: {e}"))?;
    gateway
        .import_accounts(scenario.accounts.clone(), scenario.start)
        .map_err(|e| format!("importing the accounts: {e}"))?;
    Ok(gateway)
}

/// The SMPP name of a status, as fixtures write it (`ESME_RINVDSTADR`).
pub fn status_name(status: CommandStatus) -> String {
    let debug = format!("{status:?}");
    match debug.strip_prefix("Esme") {
        Some(rest) => format!("ESME_{}", rest.to_ascii_uppercase()),
        None => debug,
    }
}

/// Run every step of `scenario` through `driver`. `on_step` is called after
/// each step (the progress bar).
pub fn run_steps(
    scenario: &Scenario,
    driver: &mut dyn Driver,
    on_step: &mut dyn FnMut(),
) -> ScenarioRun {
    let tz: chrono_tz::Tz = scenario.timezone.parse().unwrap_or(chrono_tz::UTC);
    let mut run = ScenarioRun {
        file: scenario.file.clone(),
        name: scenario.name.clone(),
        covers: scenario.covers.clone(),
        steps: Vec::with_capacity(scenario.steps.len()),
        total_steps: scenario.steps.len(),
        fatal: None,
    };
    for step in &scenario.steps {
        match run_step(driver, step) {
            Ok(actual) => {
                let mismatches = check(&step.expect, &actual);
                run.steps.push(StepRun {
                    index: step.index,
                    line: step.line,
                    at: step
                        .at
                        .with_timezone(&tz)
                        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false),
                    summary: step.summary.clone(),
                    actual,
                    mismatches,
                });
            }
            Err(fatal) => {
                run.fatal = Some(format!("step {} (line {}): {fatal}", step.index, step.line));
                break;
            }
        }
        on_step();
    }
    driver.finish();
    run
}

fn run_step(driver: &mut dyn Driver, step: &super::fixture::Step) -> Result<Actual, Fatal> {
    let store = driver.store().clone();
    let statement_before = store
        .statement(&step.check)
        .map_err(|e| e.to_string())?
        .len();
    driver.set_time(step.at);
    let mut actual = Actual::default();
    match &step.action {
        Action::Traffic { kind, messages } => {
            let t = driver.traffic(*kind, messages, step.at)?;
            actual.outcome = t.outcome;
            actual.status = Some(t.status);
            actual.reply = t.reply;
            actual.sms = t.sms;
            actual.sms_parts = t.sms_parts;
        }
        Action::Operations(commands) => {
            for command in commands {
                let request = Request {
                    msisdn: step.msisdn.clone(),
                    command: command.clone(),
                    now: step.at,
                };
                match driver.execute(request)? {
                    Ok(applied) => actual.outcome = Some(applied.outcome),
                    Err(e) => {
                        actual.outcome = None;
                        actual.error = Some(e);
                        break;
                    }
                }
            }
        }
        Action::Nightly(date) => match driver.nightly(*date, step.at)? {
            Ok(()) => actual.outcome = Some(Outcome::Ok),
            Err(e) => actual.error = Some(e),
        },
        Action::Check => {}
    }
    actual.account = store
        .account(&step.check)
        .map_err(|e| e.to_string())?
        .map(|s| s.account);
    let mut lines = store.statement(&step.check).map_err(|e| e.to_string())?;
    actual.statement = lines.split_off(statement_before.min(lines.len()));
    Ok(actual)
}

/// In-process: the gateway core, fed exactly what the server's connection
/// would feed it.
pub struct InProcess {
    gateway: Gateway,
    routing: Routing,
    store: Arc<dyn Store>,
}

impl InProcess {
    pub fn new(scenario: &Scenario, config: &Config) -> Result<InProcess, Fatal> {
        let gateway = fresh_gateway(scenario, config)?;
        Ok(InProcess {
            routing: Routing::new(&config.service)?,
            store: gateway.store().clone(),
            gateway,
        })
    }
}

impl Driver for InProcess {
    fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn set_time(&mut self, _now: DateTime<Utc>) {}

    fn traffic(
        &mut self,
        _kind: TrafficKind,
        messages: &[MtMessage],
        now: DateTime<Utc>,
    ) -> Result<Traffic, Fatal> {
        let mut out = Traffic::default();
        for m in messages {
            let pdu = m
                .to_submit_sm()
                .map_err(|e| format!("building the submit_sm: {e}"))?;
            // Read back through the PDU, as the server's connection does.
            let mo = match MoMessage::from_pdu(&pdu) {
                Ok(mo) => mo,
                Err(e) => {
                    out.status = status_name(CommandStatus::from(&e));
                    continue;
                }
            };
            // Reassembly timeouts never fire in-process: a monotonic clock
            // that stays at zero keeps a scenario's parts together.
            match self.routing.classify(&mo, now, 0) {
                MoAction::Respond(status) => out.status = status_name(status),
                MoAction::Receipt { .. } => out.status = status_name(CommandStatus::EsmeRok),
                MoAction::Engine { request, ussd } => {
                    let mut results = self
                        .gateway
                        .execute(std::slice::from_ref(&request))
                        .map_err(|e| format!("store commit failed: {e}"))?;
                    match results.pop() {
                        Some(Ok(applied)) => {
                            out.status = status_name(CommandStatus::EsmeRok);
                            out.outcome = Some(applied.outcome);
                            out.sms = notices(&applied);
                            // The parts the server's outbox sends it as.
                            out.sms_parts = out
                                .sms
                                .iter()
                                .map(|t| segment::segment(t, 0).map_or(0, |s| s.parts.len()))
                                .collect();
                            out.reply = if ussd.is_some() {
                                Some(applied.reply)
                            } else {
                                // An SMS is answered by SMS: the reply is that SMS.
                                out.sms.first().cloned()
                            };
                        }
                        Some(Err(e)) => {
                            out.status = status_name(CommandStatus::EsmeRsyserr);
                            out.reply = Some(format!("engine error: {e}"));
                        }
                        None => return Err("the gateway returned no result".into()),
                    }
                }
            }
        }
        Ok(out)
    }

    fn execute(&mut self, request: Request) -> Result<Result<Applied, String>, Fatal> {
        let mut results = self
            .gateway
            .execute(std::slice::from_ref(&request))
            .map_err(|e| format!("store commit failed: {e}"))?;
        match results.pop() {
            Some(r) => Ok(r.map_err(|e| e.to_string())),
            None => Err("the gateway returned no result".into()),
        }
    }

    fn nightly(
        &mut self,
        date: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<Result<(), String>, Fatal> {
        match self.gateway.nightly(date, now) {
            Ok(_) => Ok(Ok(())),
            Err(crate::gateway::GatewayError::Store(e)) => Err(format!("store: {e}")),
            Err(e) => Ok(Err(e.to_string())),
        }
    }
}

/// The SMS texts an engine result queued.
fn notices(applied: &Applied) -> Vec<String> {
    applied
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Notice(n) => Some(n.text.clone()),
            _ => None,
        })
        .collect()
}

/// Run one scenario in-process.
pub fn in_process(scenario: &Scenario, config: &Config, on_step: &mut dyn FnMut()) -> ScenarioRun {
    match InProcess::new(scenario, config) {
        Ok(mut driver) => run_steps(scenario, &mut driver, on_step),
        Err(fatal) => not_started(scenario, fatal),
    }
}

/// A run that could not start (no gateway, no SMPP link).
pub fn not_started(scenario: &Scenario, fatal: Fatal) -> ScenarioRun {
    ScenarioRun {
        file: scenario.file.clone(),
        name: scenario.name.clone(),
        covers: scenario.covers.clone(),
        steps: Vec::new(),
        total_steps: scenario.steps.len(),
        fatal: Some(fatal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_are_smpp_names() {
        assert_eq!(status_name(CommandStatus::EsmeRok), "ESME_ROK");
        assert_eq!(
            status_name(CommandStatus::EsmeRinvdstadr),
            "ESME_RINVDSTADR"
        );
    }
}

//! `--record FILE`: the scenario as it ran, with every step's expectations
//! filled from what actually happened, so a tester can keep a session as a
//! regression case.
//!
//! This module owns turning a run back into a fixture. The actions, times
//! and the scenario's header are kept as written (comments are not: the
//! file is rewritten); `catalog_file` / `accounts_file` are re-pointed
//! relative to where the new file goes.

use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use super::fixture::{
    InlineAccount, RawExpect, RawLine, RawSaved, RawStep, SavedSpec, Scenario, Stamp, Strings,
};
use super::run::{Actual, ScenarioRun};
use crate::engine::model::{money, Catalog, Outcome};

/// The file `--record` writes: [`super::fixture::RawScenario`]'s keys.
#[derive(Serialize)]
struct Recorded<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    covers: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<&'a Stamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    msisdn: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    catalog_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    accounts_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    catalog: Option<&'a Catalog>,
    #[serde(skip_serializing_if = "Option::is_none")]
    accounts: Option<Vec<&'a InlineAccount>>,
    steps: Vec<RawStep>,
}

/// The recorded fixture's text, for writing to `out`.
pub fn recorded(scenario: &Scenario, run: &ScenarioRun, out: &Path) -> Result<String, String> {
    if let Some(fatal) = &run.fatal {
        return Err(format!(
            "{}: not recorded: the run stopped at {fatal}",
            scenario.file
        ));
    }
    let raw = &scenario.raw;
    let base = scenario.path.parent().unwrap_or(Path::new("."));
    let out_dir = out.parent().unwrap_or(Path::new("."));
    let repoint = |rel: &Option<String>| {
        rel.as_ref()
            .map(|r| path_text(&relative_to(&base.join(r), out_dir)))
    };
    let steps = raw
        .steps
        .iter()
        .zip(&run.steps)
        .zip(&scenario.steps)
        .map(|((written, ran), step)| {
            let mut s = written.get_ref().clone();
            let keep = s.expect.take();
            s.expect = Some(expectations(step, &ran.actual, keep.as_ref()));
            s
        })
        .collect();
    let doc = Recorded {
        name: raw.name.as_deref(),
        description: raw.description.as_deref(),
        covers: &raw.covers,
        start: raw.start.as_ref(),
        msisdn: raw.msisdn.as_deref(),
        catalog_file: repoint(&raw.catalog_file),
        accounts_file: repoint(&raw.accounts_file),
        catalog: raw.catalog.as_ref().map(|c| c.get_ref()),
        accounts: raw
            .accounts
            .as_ref()
            .map(|a| a.iter().map(|a| a.get_ref()).collect()),
        steps,
    };
    let body = toml::to_string_pretty(&doc).map_err(|e| format!("writing TOML: {e}"))?;
    let newline = if body.ends_with('\n') { "" } else { "\n" };
    Ok(format!(
        "# Recorded by `shortcode-gw replay --record` from {}.\n\
         # Every expectation is what the gateway did: check it says what it should.\n\n{body}{newline}",
        scenario.file
    ))
}

/// Expectations that hold for exactly what happened.
fn expectations(step: &super::fixture::Step, a: &Actual, written: Option<&RawExpect>) -> RawExpect {
    use super::fixture::Action;
    let traffic = matches!(step.action, Action::Traffic { .. });
    let acted = !matches!(step.action, Action::Check);
    let code = |o: Option<Outcome>| o.map_or_else(|| "NONE".to_string(), |o| o.code().to_string());
    let mut e = RawExpect {
        // Which account is checked stays the tester's choice.
        account: written.and_then(|w| w.account.clone()),
        outcome: (acted && a.error.is_none()).then(|| code(a.outcome)),
        status: if traffic { a.status.clone() } else { None },
        reply: a.reply.clone(),
        sms: traffic.then(|| a.sms.clone()),
        sms_parts: (traffic && !a.sms.is_empty()).then(|| a.sms_parts.clone()),
        ussd_screen: written.and_then(|w| w.ussd_screen).map(|_| {
            a.reply
                .as_deref()
                .is_some_and(shortcode_protocol::text::fits_ussd_screen)
        }),
        error: a.error.clone(),
        statement: Some(
            a.statement
                .iter()
                .map(|l| RawLine {
                    kind: Some(l.kind),
                    amount: Some(money::format(l.amount)),
                    balance_after: Some(money::format(l.balance_after)),
                    description: Some(l.description.clone()),
                    period_from: l.period_from.map(|d| Stamp(d.to_string())),
                    period_to: l.period_to.map(|d| Stamp(d.to_string())),
                })
                .collect(),
        ),
        ..RawExpect::default()
    };
    if let Some(acc) = &a.account {
        e.balance = Some(money::format(acc.balance));
        e.next_charge = Some(Stamp(acc.next_charge.to_string()));
        e.anchor_day = Some(acc.anchor_day);
        e.billing = Some(acc.billing);
        e.main = Some(acc.main);
        e.saved = Some(match acc.saved {
            None => RawSaved::None,
            Some(s) => RawSaved::Package(SavedSpec {
                minutes: Some(s.minutes),
                sms: Some(s.sms),
                data_mb: Some(s.data_mb),
                valid_until: Some(Stamp(s.valid_until.to_string())),
            }),
        });
        e.blocks = Some(acc.blocks.clone());
        e.unpaid = Some(acc.unpaid);
        if written.is_some_and(|w| w.discount_pct.is_some()) {
            e.discount_pct = Some(acc.discount_pct.normalize().to_string());
        }
    }
    // Fragments the tester wrote stay only while they still hold.
    if let Some(w) = written {
        let keep = |frags: &Option<Strings>, hay: &[&str]| {
            frags.as_ref().and_then(|f| {
                let kept: Vec<String> =
                    f.0.iter()
                        .filter(|x| hay.iter().any(|h| h.contains(x.as_str())))
                        .cloned()
                        .collect();
                (!kept.is_empty()).then_some(Strings(kept))
            })
        };
        let reply: Vec<&str> = a.reply.as_deref().into_iter().collect();
        e.reply_contains = keep(&w.reply_contains, &reply);
        let sms: Vec<&str> = a.sms.iter().map(String::as_str).collect();
        e.sms_contains = keep(&w.sms_contains, &sms);
    }
    e
}

fn path_text(p: &Path) -> String {
    // Forward slashes on every platform, so fixtures travel between machines.
    p.to_string_lossy().replace('\\', "/")
}

/// An absolute, `..`-free form of `p` (the real path when it exists).
fn absolute(p: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(p) {
        return real;
    }
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// `target` as a path relative to directory `dir` (absolute when they
/// share no root).
pub fn relative_to(target: &Path, dir: &Path) -> PathBuf {
    let target = absolute(target);
    let dir = absolute(dir);
    let t: Vec<Component> = target.components().collect();
    let d: Vec<Component> = dir.components().collect();
    let common = t.iter().zip(&d).take_while(|(a, b)| a == b).count();
    // Sharing only the root: `../../..` would say less than the absolute path.
    if common <= 1 {
        return target;
    }
    let mut out = PathBuf::new();
    for _ in common..d.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_to_the_common_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a/b");
        let c = tmp.path().join("c");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&c).unwrap();
        std::fs::write(c.join("cat.json"), "{}").unwrap();
        assert_eq!(
            relative_to(&c.join("cat.json"), &a),
            Path::new("../../c/cat.json")
        );
        assert_eq!(relative_to(&c.join("cat.json"), &c), Path::new("cat.json"));
        // Nothing in common but the root: absolute.
        assert!(relative_to(Path::new("/nonexistent-x/y"), &a).is_absolute());
    }
}

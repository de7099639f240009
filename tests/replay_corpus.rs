//! The replay corpus (`fixtures/scenarios/`) and the replay tool itself.
//!
//! The whole corpus replays in-process and over real SMPP on loopback (in
//! both of the gateway's roles) and passes; two in-process runs print byte-identical reports (G1); the wire
//! and in-process runs see the same outcomes, replies, SMS and accounts at
//! every step; the scenarios between them cover every rule id; a wrong
//! expectation fails with a readable diff; a bad fixture is refused naming
//! file, line, step and problem; `--record` writes a fixture that replays.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use shortcode_gw::config::Config;
use shortcode_gw::replay::fixture::{self, required_ids, Scenario};
use shortcode_gw::replay::report::{self, Entry, Summary};
use shortcode_gw::replay::{self, record, Mode};

const CORPUS: &str = "fixtures/scenarios";

fn corpus_files() -> Vec<PathBuf> {
    let files = replay::expand(&[PathBuf::from(CORPUS)]).expect("reading the corpus directory");
    assert!(files.len() >= 20, "the corpus is missing: {files:?}");
    files
}

fn corpus() -> Vec<Scenario> {
    let config = Config::default();
    corpus_files()
        .iter()
        .map(|f| fixture::load(f, &config).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn run(files: &[PathBuf], mode: Mode) -> Vec<Entry> {
    replay::replay(files, &Config::default(), mode, false).0
}

fn assert_all_pass(entries: &[Entry], mode: Mode) {
    let summary = Summary::of(entries);
    assert!(
        summary.ok() && summary.steps > 100,
        "{}",
        report::text(entries, mode.name())
    );
}

#[test]
fn corpus_covers_every_rule_id_and_claims_are_exercised() {
    let scenarios = corpus();
    let mut covered = BTreeSet::new();
    for s in &scenarios {
        assert!(!s.covers.is_empty(), "{}: covers no rule id", s.file);
        covered.extend(s.covers.iter().cloned());
        // A scenario claiming a refusal (or C3) must expect that outcome at
        // some step, so `covers` cannot drift from what the steps show.
        for (id, code) in [
            ("R0", "UNKNOWN_SUBSCRIBER"),
            ("R1", "BLOCKED"),
            ("R2", "UNPAID_PERIOD"),
            ("R3", "NO_SERVICE"),
            ("R4", "DAILY_BILLING"),
            ("R5", "FULL_DISCOUNT"),
            ("R6", "INSUFFICIENT_FUNDS"),
            ("C3", "UNKNOWN_COMMAND"),
        ] {
            if s.covers.iter().any(|c| c == id) {
                let expected = s.steps.iter().any(|st| {
                    st.expect
                        .outcome
                        .flatten()
                        .is_some_and(|o| o.code() == code)
                });
                assert!(expected, "{} covers {id} but never expects {code}", s.file);
            }
        }
    }
    let missing: Vec<String> = required_ids()
        .into_iter()
        .filter(|id| !covered.contains(id))
        .collect();
    assert!(missing.is_empty(), "no scenario covers {missing:?}");
}

#[test]
fn corpus_ships_the_receipt_and_year_scenarios() {
    let scenarios = corpus();
    let receipt = scenarios
        .iter()
        .find(|s| s.file.ends_with("receipt_to_9290_does_not_renew.toml"))
        .expect("the receipt scenario");
    assert!(receipt.steps.iter().any(|s| matches!(
        s.action,
        fixture::Action::Traffic {
            kind: fixture::TrafficKind::Receipt,
            ..
        }
    )));
    let year = scenarios
        .iter()
        .find(|s| s.file.ends_with("year_of_a_subscriber.toml"))
        .expect("the year scenario");
    let span = year.steps.last().unwrap().at - year.steps.first().unwrap().at;
    assert!(
        span.num_days() >= 350,
        "the year spans {} days",
        span.num_days()
    );
}

#[test]
fn corpus_passes_in_process_and_two_runs_print_identical_reports() {
    let files = corpus_files();
    let first = run(&files, Mode::InProcess);
    assert_all_pass(&first, Mode::InProcess);
    let second = run(&files, Mode::InProcess);
    let (a, b) = (
        report::text(&first, "in-process"),
        report::text(&second, "in-process"),
    );
    assert_eq!(a, b, "G1: two runs printed different reports");
    assert_eq!(report::junit(&first), report::junit(&second));
    // Not only the verdicts: every actual value of every step is the same.
    assert_eq!(first, second);
}

#[test]
fn corpus_passes_over_the_wire_in_both_roles_with_the_same_outcomes_and_replies() {
    let files = corpus_files();
    let local = run(&files, Mode::InProcess);
    for mode in [Mode::Wire, Mode::WireGatewayConnects] {
        let wire = run(&files, mode);
        assert_all_pass(&wire, mode);
        assert_eq!(wire.len(), local.len());
        for (w, l) in wire.iter().zip(&local) {
            let (Entry::Ran(w), Entry::Ran(l)) = (w, l) else {
                panic!("a corpus fixture was refused");
            };
            assert_eq!(w.steps.len(), l.steps.len(), "{}", w.file);
            for (ws, ls) in w.steps.iter().zip(&l.steps) {
                assert_eq!(
                    ws.actual,
                    ls.actual,
                    "{} step {} ({}): {} and in-process differ",
                    w.file,
                    ws.index,
                    ws.summary,
                    mode.name()
                );
            }
        }
    }
}

/// A corpus fixture with one text replaced, loaded as if it lived beside
/// the corpus (so its relative catalog path resolves).
fn altered(name: &str, from: &str, to: &str) -> Scenario {
    let path = Path::new(CORPUS).join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{name} does not contain {from:?}");
    let text = text.replacen(from, to, 1);
    fixture::parse(
        &path.display().to_string(),
        &path,
        &text,
        &Config::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_wrong_expectation_fails_with_a_readable_diff() {
    // The renewal leaves 0.00; the fixture now claims 1.00 and a wrong reply.
    let s = altered(
        "r6_insufficient_funds_names_amounts.toml",
        "outcome = \"RENEWED\"\nbalance = \"0.00\"",
        "outcome = \"RENEWED\"\nbalance = \"1.00\"\nreply = \"Готово\"",
    );
    let ran = replay::run_one(&s, &Config::default(), Mode::InProcess, &mut || {});
    assert_eq!(ran.failed_steps(), 1);
    let failed = ran.steps.iter().find(|st| !st.passed()).unwrap();
    assert_eq!(failed.index, 4);
    let fields: Vec<&str> = failed.mismatches.iter().map(|m| m.field.as_str()).collect();
    assert_eq!(fields, ["reply", "balance"]);

    let entries = [Entry::Ran(ran)];
    let text = report::text(&entries, "in-process");
    assert!(
        text.contains(
            "FAIL  fixtures/scenarios/r6_insufficient_funds_names_amounts.toml  3/4 steps passed"
        ),
        "{text}"
    );
    // The step is named by index, line, time and what it did ...
    assert!(
        text.contains(
            "step 4, line 45, 2026-11-22T10:03:00+03:00: ussd \"*929#\" from 79161234567"
        ),
        "{text}"
    );
    // ... and expected and actual stand side by side.
    let balance_row = text
        .lines()
        .find(|l| l.trim_start().starts_with("balance"))
        .unwrap_or_else(|| panic!("{text}"));
    let cells: Vec<&str> = balance_row.split_whitespace().collect();
    assert_eq!(cells, ["balance", "1.00", "0.00"], "{text}");
    assert!(text.contains("expected  \"Готово\""), "{text}");
    assert!(
        text.contains("actual    \"Пакет обновлён: -550.00 руб., следующее списание 22.12.2026. Детали в SMS\""),
        "{text}"
    );
    assert!(
        text.ends_with("summary: 1 scenarios, 4 steps, 3 passed, 1 failed\n"),
        "{text}"
    );
    assert!(!Summary::of(&entries).ok());

    let xml = report::junit(&entries);
    assert!(
        xml.contains("tests=\"4\" failures=\"1\" errors=\"0\""),
        "{xml}"
    );
    assert!(
        xml.contains("<failure message=\"reply: expected &quot;Готово&quot;"),
        "{xml}"
    );
}

#[test]
fn an_unexpected_operator_error_fails_the_step() {
    let s = altered(
        "r6_insufficient_funds_names_amounts.toml",
        "topup = \"0.01\"",
        "topup = \"-0.01\"",
    );
    let ran = replay::run_one(&s, &Config::default(), Mode::InProcess, &mut || {});
    let step = &ran.steps[2];
    assert_eq!(step.mismatches[0].field, "error", "{:?}", step.mismatches);
    assert!(step.mismatches[0]
        .actual
        .contains("a top-up is a positive amount"));
}

/// Write `text` as a fixture in a temp dir; return the error text.
fn refused(name: &str, text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let catalog = std::fs::canonicalize("fixtures/demo/catalog.json").unwrap();
    let text = text.replace("CATALOG", &catalog.display().to_string());
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let err = fixture::load(&path, &Config::default()).expect_err("the fixture must be refused");
    // Every problem line starts with the file as named.
    for line in err.lines() {
        assert!(line.starts_with(&path.display().to_string()), "{line}");
    }
    err.to_string()
        .replace(&dir.path().display().to_string(), "DIR")
}

const HEAD: &str = "start = \"2026-11-22T10:00:00+03:00\"\ncatalog_file = \"CATALOG\"\n\n\
[[accounts]]\nmsisdn = \"79161234567\"\nregion = \"moscow\"\nplan = \"smart\"\n\
plan_version = \"2024\"\nbalance = \"1000.00\"\nnext_charge = \"2026-12-05\"\n";
// HEAD is 10 lines; a step table right after it starts on line 11.

#[test]
fn bad_fixture_syntax_names_file_line_and_column() {
    let e = refused(
        "syntax.toml",
        &format!("{HEAD}[[steps]]\nat = \"+1h\nussd = \"*929#\"\n"),
    );
    assert_eq!(e, "DIR/syntax.toml:12:10: invalid basic string");
}

#[test]
fn bad_fixture_type_names_step_and_key_path() {
    let e = refused(
        "money.toml",
        &format!(
            "{HEAD}[[steps]]\nat = \"+1h\"\nussd = \"*929#\"\n\n[[steps]]\nat = \"+2h\"\nsms = \"\"\n\
             [steps.expect]\nbalance = 450.00\n"
        ),
    );
    assert_eq!(
        e,
        "DIR/money.toml:19:11: step 2: steps[1].expect.balance: invalid type: floating point \
         `450.0`, expected a string (money and percentages are strings like \"550.00\", never numbers)"
    );
}

#[test]
fn bad_fixture_unknown_key_is_named_with_the_keys_allowed() {
    let e = refused(
        "typo.toml",
        &format!(
            "{HEAD}[[steps]]\nat = \"+1h\"\nussd = \"*929#\"\n[steps.expect]\nbalanse = \"1.00\"\n"
        ),
    );
    assert!(
        e.starts_with(
            "DIR/typo.toml:15:1: step 1: steps[0].expect.balanse: unknown field `balanse`"
        ),
        "{e}"
    );
    assert!(e.contains("`balance`"), "{e}");
}

#[test]
fn bad_fixture_meaning_names_each_step_and_its_line() {
    let e = refused(
        "meaning.toml",
        &format!(
            "{HEAD}\n[[steps]]\nat = \"+1h\"\nussd = \"*929#\"\ntopup = \"5.00\"\n\n\
             [[steps]]\nat = \"+2h\"\nussd = \"*929#\"\n[steps.expect]\noutcome = \"RENEW\"\n\n\
             [[steps]]\nat = \"+30m\"\nsms = \"\"\n\n\
             [[steps]]\nat = \"+3h\"\nmsisdn = \"79990000000\"\nblock = \"voluntary\"\n"
        ),
    );
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines[0], "DIR/meaning.toml: refused, 4 problems:", "{e}");
    assert_eq!(
        lines[1],
        "  DIR/meaning.toml:12: step 1: one action per step, found ussd and topup: split them into steps"
    );
    assert!(
        lines[2].starts_with(
            "  DIR/meaning.toml:17: step 2: expect.outcome: unknown outcome \"RENEW\""
        ),
        "{e}"
    );
    assert!(
        lines[3].starts_with("  DIR/meaning.toml:23: step 3: at: time goes backwards"),
        "{e}"
    );
    assert_eq!(
        lines[4],
        "  DIR/meaning.toml:27: step 4: msisdn: 79990000000 is not an account of this scenario; operations need one"
    );
}

#[test]
fn bad_fixture_top_level_problems_are_named() {
    let e = refused(
        "covers.toml",
        &format!("covers = [\"R9\"]\n{HEAD}[[steps]]\nat = \"+1h\"\nussd = \"*929#\"\n"),
    );
    assert!(e.contains("covers: unknown rule id \"R9\""), "{e}");

    let e = refused(
        "nocatalog.toml",
        "start = \"2026-11-22T10:00:00+03:00\"\n[[steps]]\nat = \"+1h\"\nussd = \"*929#\"\n",
    );
    assert!(
        e.ends_with("catalog: no catalog: give catalog_file = \"…\" or an inline [catalog]"),
        "{e}"
    );

    let e = refused(
        "missing.toml",
        "catalog_file = \"nowhere.json\"\n[[steps]]\nat = \"2026-11-22T10:00:00+03:00\"\nussd = \"*929#\"\n",
    );
    assert!(
        e.contains("catalog_file: DIR/nowhere.json: cannot read"),
        "{e}"
    );

    let e = refused(
        "offset.toml",
        "catalog_file = \"CATALOG\"\n[[steps]]\nat = \"+1h\"\nussd = \"*929#\"\n",
    );
    assert!(
        e.contains(":2: step 1: at: \"+1h\" is an offset: give the scenario a start"),
        "{e}"
    );
}

#[test]
fn bad_inline_account_names_its_index_and_line() {
    let e = refused(
        "account.toml",
        &format!(
            "{}\n[[accounts]]\nmsisdn = \"7916\"\nregion = \"moscow\"\nplan = \"smart\"\n\
             plan_version = \"2024\"\nbalance = \"1.00\"\nnext_charge = \"2026-12-05\"\n\
             [[steps]]\nat = \"+1h\"\nmsisdn = \"79161234567\"\nussd = \"*929#\"\n",
            HEAD
        ),
    );
    assert_eq!(
        e,
        "DIR/account.toml:12: accounts[1].msisdn: \"7916\" is not 7 to 15 digits (E.164 without \"+\", like \"79161234567\")"
    );
}

#[test]
fn record_writes_a_fixture_that_replays_and_records_the_same_again() {
    let config = Config::default();
    let source = Path::new(CORPUS).join("step6_ussd_answer_then_one_confirmation_sms.toml");
    let scenario = fixture::load(&source, &config).unwrap();
    let ran = replay::run_one(&scenario, &config, Mode::InProcess, &mut || {});
    assert!(ran.passed());

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("recorded.toml");
    let text = record::recorded(&scenario, &ran, &out).unwrap();
    std::fs::write(&out, &text).unwrap();
    // The catalog path now points from the new place to the same file.
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("catalog_file = "))
        .unwrap()
        .trim_matches('"');
    assert_eq!(
        std::fs::canonicalize(dir.path().join(rel)).unwrap(),
        std::fs::canonicalize("fixtures/demo/catalog.json").unwrap()
    );
    assert!(text.contains(
        "reply = \"Пакет обновлён: -550.00 руб., следующее списание 22.12.2026. Детали в SMS\""
    ));
    assert!(text.contains("sms_parts = [3]"), "{text}");

    let again = fixture::load(&out, &config).unwrap_or_else(|e| panic!("{e}\n{text}"));
    // The recording holds more expectations than the original, all true.
    let n = |s: &Scenario| {
        s.steps
            .iter()
            .map(|st| format!("{:?}", st.expect).matches("Some(").count())
            .sum::<usize>()
    };
    assert!(n(&again) > n(&scenario));
    let rerun = replay::run_one(&again, &config, Mode::InProcess, &mut || {});
    assert!(
        rerun.passed(),
        "{}",
        report::text(&[Entry::Ran(rerun.clone())], "in-process")
    );
    let out2 = dir.path().join("recorded2.toml");
    let text2 = record::recorded(&again, &rerun, &out2).unwrap();
    let body = |t: &str| t.lines().skip(2).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&text), body(&text2));
}

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shortcode-gw"))
}

#[test]
fn cli_exit_code_and_junit_follow_the_result() {
    let ok = binary()
        .args([
            "replay",
            "fixtures/scenarios/r6_insufficient_funds_names_amounts.toml",
        ])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let stdout = String::from_utf8(ok.stdout).unwrap();
    assert!(
        stdout.ends_with("summary: 1 scenarios, 4 steps, 4 passed, 0 failed\n"),
        "{stdout}"
    );
    // Not a terminal: no progress bar on stderr.
    assert!(
        ok.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[steps]]\nat = 5\n").unwrap();
    let junit = dir.path().join("replay.xml");
    let failed = binary()
        .arg("replay")
        .arg("fixtures/scenarios/r6_insufficient_funds_names_amounts.toml")
        .arg(&bad)
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(1));
    let stdout = String::from_utf8(failed.stdout).unwrap();
    assert!(stdout.contains("REFUSED  "), "{stdout}");
    assert!(
        stdout.contains("bad.toml:2:6: step 1: steps[0].at: "),
        "{stdout}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites"));
    assert!(xml.contains("errors=\"1\""), "{xml}");
    assert!(xml.trim_end().ends_with("</testsuites>"));
}

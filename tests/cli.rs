//! The command line as an operator uses it: the real binary, a temp store.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn gw(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shortcode-gw"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .output()
        .expect("running shortcode-gw")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_str(ok(out).trim()).unwrap()
}

const AT: &str = "2026-11-22T10:00:00+03:00";

/// demo-data, then both imports into a fresh store.
fn loaded_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let d = demo.to_str().unwrap();
    ok(&gw(
        dir.path(),
        &["demo-data", "--out", d, "--accounts", "32"],
    ));
    let cat = demo.join("catalog.json");
    let acc = demo.join("accounts.jsonl");
    let r = json(&gw(
        dir.path(),
        &["import", "catalog", cat.to_str().unwrap()],
    ));
    assert!(r["plans"].as_u64().unwrap() >= 16, "{r}");
    let r = json(&gw(
        dir.path(),
        &["import", "accounts", acc.to_str().unwrap()],
    ));
    assert_eq!(r["accounts"], 32);
    dir
}

#[test]
fn renew_prints_outcome_and_reply_and_books_the_fee() {
    let dir = loaded_store();
    let r = json(&gw(
        dir.path(),
        &["renew", "79000000001", "--channel", "ussd", "--at", AT],
    ));
    assert_eq!(r["outcome"], "RENEWED", "{r}");
    assert!(
        r["reply"].as_str().unwrap().starts_with("Пакет обновлён"),
        "{r}"
    );
    assert!(
        r["sms"]
            .as_str()
            .unwrap()
            .contains("Следующее списание 22.12.2026"),
        "{r}"
    );
    // The exact-balance profile: the balance is now zero.
    let a = json(&gw(dir.path(), &["account", "79000000001"]));
    assert_eq!(a["balance"], "0.00");
    assert_eq!(a["next_charge"], "2026-12-22");
    let st = ok(&gw(dir.path(), &["statement", "79000000001"]));
    let line: Value = serde_json::from_str(st.lines().next().unwrap()).unwrap();
    assert_eq!(line["kind"], "monthly_fee");
    assert_eq!(line["period_from"], "2026-11-22");
    assert_eq!(line["period_to"], "2026-12-21");
    // A second try is refused by R6, and both are journaled (G5).
    let r = json(&gw(
        dir.path(),
        &["renew", "79000000001", "--channel", "sms", "--at", AT],
    ));
    assert_eq!(r["outcome"], "INSUFFICIENT_FUNDS");
    let j = ok(&gw(dir.path(), &["journal", "79000000001"]));
    assert_eq!(j.lines().count(), 2);
}

#[test]
fn account_export_reimports_unchanged() {
    let dir = loaded_store();
    let before = ok(&gw(dir.path(), &["account", "79000000014"]));
    let file = dir.path().join("one.jsonl");
    std::fs::write(&file, &before).unwrap();
    ok(&gw(
        dir.path(),
        &["import", "accounts", file.to_str().unwrap()],
    ));
    assert_eq!(ok(&gw(dir.path(), &["account", "79000000014"])), before);
    // No balance change, so no adjustment line either.
    assert_eq!(ok(&gw(dir.path(), &["statement", "79000000014"])), "");
    // A number with no account is an error, not an empty statement.
    let out = gw(dir.path(), &["statement", "71111111111"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no account 71111111111"));
    // Amounts on the command line follow the files' form.
    for bad in ["1e2", "100", "1.005"] {
        let out = gw(dir.path(), &["topup", "79000000014", bad]);
        assert!(!out.status.success(), "{bad} accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("bad money string"),
            "{bad}"
        );
    }
}

#[test]
fn operator_commands_and_nightly() {
    let dir = loaded_store();
    let a = json(&gw(
        dir.path(),
        &["topup", "79000000002", "5000.00", "--at", AT],
    ));
    assert!(a["balance"].as_str().unwrap().parse::<f64>().is_ok());
    let a = json(&gw(
        dir.path(),
        &["block", "79000000000", "--kind", "fraud", "--at", AT],
    ));
    assert_eq!(a["blocks"], serde_json::json!(["fraud"]));
    let r = json(&gw(dir.path(), &["renew", "79000000000", "--at", AT]));
    assert_eq!(r["outcome"], "BLOCKED");
    let a = json(&gw(
        dir.path(),
        &[
            "usage",
            "79000000000",
            "--kind",
            "minutes",
            "--amount",
            "3",
            "--at",
            AT,
        ],
    ));
    assert!(a["main"]["minutes"].is_u64());
    let n1 = json(&gw(
        dir.path(),
        &[
            "nightly",
            "--date",
            "2026-11-23",
            "--at",
            "2026-11-23T00:00:00+03:00",
        ],
    ));
    assert_eq!(n1["accounts"], 32);
    let n2 = json(&gw(
        dir.path(),
        &[
            "nightly",
            "--date",
            "2026-11-23",
            "--at",
            "2026-11-23T00:05:00+03:00",
        ],
    ));
    assert_eq!(n2["changed"], 0, "N4: the same date twice changes nothing");
    assert_eq!(n2["statement_lines"], 0);
}

#[test]
fn errors_go_to_stderr_with_a_non_zero_exit() {
    let dir = loaded_store();
    let rows: &[(&[&str], &str)] = &[
        (&["account", "79999999999"], "no account 79999999999"),
        (
            &["discount", "79000000000", "150", "--at", AT],
            "discount must be between 0 and 100",
        ),
        (
            &["plan", "79000000000", "nope", "1", "--at", AT],
            "plan nope version 1 is not in the catalog",
        ),
        (
            &[
                "import",
                "accounts",
                "fixtures/bad/accounts_bad_money.jsonl",
            ],
            "accounts_bad_money.jsonl:",
        ),
        (
            &["renew", "79000000000", "--at", "yesterday"],
            "invalid value",
        ),
    ];
    for (args, want) in rows {
        let out = gw(dir.path(), args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
}

#[test]
fn a_bad_accounts_file_loads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cat = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo/catalog.json");
    ok(&gw(
        dir.path(),
        &["import", "catalog", cat.to_str().unwrap()],
    ));
    let file = dir.path().join("mixed.jsonl");
    let good = r#"{"msisdn":"79161234567","region":"moscow","plan":"smart","plan_version":"2024","balance":"1000.00","billing":"monthly","next_charge":"2026-12-05","anchor_day":5,"blocks":[],"unpaid":false,"discount_pct":"0","services":["package"],"location":"home","main":{"minutes":120,"sms":300,"data_mb":2048},"saved":null}"#;
    let bad = good
        .replace("79161234567", "79161234568")
        .replace("\"1000.00\"", "1000");
    std::fs::write(&file, format!("{good}\n{bad}\n")).unwrap();
    let out = gw(dir.path(), &["import", "accounts", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mixed.jsonl:2"), "{err}");
    let out = gw(dir.path(), &["account", "79161234567"]);
    assert!(!out.status.success(), "the good line was not loaded either");
}

#[test]
fn serve_on_embedded_defaults_then_sigterm_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    // Port 0 keeps parallel test runs apart; the default is 127.0.0.1:2775.
    let mut child = Command::new(env!("CARGO_BIN_EXE_shortcode-gw"))
        .current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--demo-accounts", "64"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("listening")) {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => seen.push(l),
            Err(_) => break,
        }
        assert!(Instant::now() < deadline);
    }
    assert!(
        seen.iter()
            .any(|l| l.contains("loaded the demo catalog and accounts")),
        "{seen:?}"
    );
    assert!(dir.path().join("data").is_dir(), "store in ./data");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");

    // A second start finds data and loads nothing new.
    let out = Command::new(env!("CARGO_BIN_EXE_shortcode-gw"))
        .current_dir(dir.path())
        .args(["account", "79000000063"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn serve_refuses_a_setup_that_would_expose_or_invent_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    // The built-in demo peer on every interface: refused before anything
    // is created.
    let out = gw(dir.path(), &["serve", "--listen", "0.0.0.0:2775"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("demo peer (demo/demo) may only bind on a loopback address"),
        "{err}"
    );
    assert!(!dir.path().join("data").exists(), "nothing created");

    // An operator's config on an empty store: no demo accounts, an error.
    let cfg = dir.path().join("gw.toml");
    std::fs::write(
        &cfg,
        "[listen]\naddr = \"127.0.0.1:0\"\npeers = [{ system_id = \"u\", password = \"p\" }]\n",
    )
    .unwrap();
    let out = gw(dir.path(), &["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no catalog and no accounts"), "{err}");
    assert!(!err.contains("demo catalog"), "{err}");

    // A redb store opened as sled is refused, not shadowed by an empty one.
    let out = gw(dir.path(), &["--store", "sled", "account", "79000000000"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds a redb store"), "{err}");
}

#[test]
fn one_shot_commands_follow_the_config_serve_uses() {
    let dir = loaded_store();
    // The config says where the store is and which zone local dates are in.
    let cfg = dir.path().join("gw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[store]\ndata_dir = {:?}\n[service]\ntimezone = \"Asia/Vladivostok\"\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shortcode-gw"))
        .current_dir(elsewhere.path())
        .args(["--config", cfg.to_str().unwrap()])
        // 20:30 in Moscow is already the 23rd in Vladivostok.
        .args([
            "renew",
            "79000000001",
            "--channel",
            "ussd",
            "--at",
            "2026-11-22T20:30:00+03:00",
        ])
        .output()
        .unwrap();
    let r: Value = serde_json::from_str(ok(&out).trim()).unwrap();
    assert_eq!(r["outcome"], "RENEWED", "{r}");
    assert!(
        !elsewhere.path().join("data").exists(),
        "used the config's store"
    );
    let st = ok(&gw(dir.path(), &["statement", "79000000001"]));
    let line: Value = serde_json::from_str(st.lines().next().unwrap()).unwrap();
    assert_eq!(
        line["period_from"], "2026-11-23",
        "the config's zone: {line}"
    );
}

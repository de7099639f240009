//! Interop with SMPP code nobody here wrote: Python `smpplib` binds to the
//! gateway's listener, node-smpp plays the SMSC the gateway binds to, and
//! tshark dissects a captured session.
//!
//! The peers are installed by `.ci/install-peers`. Without them each test
//! says it skipped; with `SHORTCODE_GW_REQUIRE_INTEROP=1` (CI) a missing
//! peer fails the test.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use shortcode_gw::config::{Config, ConnectConfig};
use shortcode_gw::engine::model::StatementKind;

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// True when `check` finds the peer; otherwise skip (or fail in CI).
fn have(what: &str, check: &mut Command) -> bool {
    let ok = check
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("SHORTCODE_GW_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!("interop peer {what} is not installed (run .ci/install-peers)");
        }
        eprintln!("SKIPPED: interop peer {what} is not installed (run .ci/install-peers)");
    }
    ok
}

fn have_smpplib() -> bool {
    have(
        "python smpplib",
        Command::new("python3").args(["-c", "import smpplib"]),
    )
}

fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn ucs2_hex(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect();
    shortcode_protocol::ucs2::decode(&bytes)
}

/// Run the smpplib client against `addr`; its JSON lines.
async fn run_smpplib(addr: std::net::SocketAddr, msisdn: &str) -> Vec<Value> {
    let script = interop_dir().join("smpplib_client.py");
    let msisdn = msisdn.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .arg(msisdn)
            .output()
            .expect("running python3")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "smpplib client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_lines(&out.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smpplib_binds_and_renews_by_ussd_and_sms() {
    if !have_smpplib() {
        return;
    }
    let gw = common::start(16).await;
    let answers = run_smpplib(gw.addr, "79000000000").await;

    let ussd = answers
        .iter()
        .find(|a| a["ussd_service_op"] == 17)
        .unwrap_or_else(|| panic!("no PSSR response in {answers:?}"));
    assert_eq!(ussd["command"], "deliver_sm");
    assert_eq!(ussd["its_session_info"], 0x2A00, "session echoed");
    assert_eq!(ussd["dest"], "79000000000");
    assert_eq!(ussd["data_coding"], 8, "Cyrillic goes as UCS2");
    let text = ucs2_hex(ussd["short_message_hex"].as_str().unwrap());
    assert!(text.starts_with("Пакет обновлён"), "{text}");

    let sms: Vec<&Value> = answers.iter().filter(|a| a["source"] == "9290").collect();
    assert!(
        !sms.is_empty(),
        "the confirmation SMS comes from 9290: {answers:?}"
    );
    assert!(sms.iter().all(|a| a["dest"] == "79000000000"));

    // Both requests are journaled; the USSD one renewed.
    let journal = gw.store.journal(Some("79000000000")).unwrap();
    assert_eq!(journal.len(), 2, "{journal:?}");
    assert_eq!(journal[0].outcome.code(), "RENEWED");
    gw.server.unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_smpp_smsc_is_served_in_the_esme_role() {
    let dir = interop_dir();
    if !have(
        "node smpp",
        Command::new("node")
            .current_dir(&dir)
            .args(["-e", "require('smpp')"]),
    ) {
        return;
    }
    let mut child = Command::new("node")
        .current_dir(&dir)
        .args(["node_smsc.js", "79000000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting node");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("node prints its port");
    let port = serde_json::from_str::<Value>(&first).unwrap()["port"]
        .as_u64()
        .expect("port");

    let config = Config {
        connect: Some(ConnectConfig {
            addr: format!("127.0.0.1:{port}"),
            system_id: "gw".into(),
            password: "secret".into(),
            reconnect_min_ms: 50,
            reconnect_max_ms: 500,
            ..ConnectConfig::default()
        }),
        ..Config::default()
    };
    let gw = common::start_with(config, 16).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "node SMSC did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let lines: Vec<Value> = rx
        .try_iter()
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    assert!(status.success(), "node SMSC exited {status:?}: {lines:?}");

    assert!(lines.iter().any(|l| l["bind"] == "ok"), "{lines:?}");
    for what in ["ussd", "receipt"] {
        let resp = lines.iter().find(|l| l["deliver_resp"] == what);
        assert_eq!(
            resp.map(|r| r["status"].clone()),
            Some(Value::from(0)),
            "{what}: {lines:?}"
        );
    }
    let ussd = lines
        .iter()
        .find(|l| l["ussd_service_op"] == 17)
        .unwrap_or_else(|| panic!("no PSSR response: {lines:?}"));
    assert_eq!(ussd["command"], "submit_sm");
    assert_eq!(ussd["its_session_info"], 0x4200);
    assert_eq!(ussd["dest"], "79000000000");
    assert!(
        lines.iter().any(|l| l["source"] == "9290"),
        "confirmation SMS from 9290: {lines:?}"
    );

    // The receipt to 9290 did not renew: exactly one charge, one request.
    let statement = gw.store.statement("79000000000").unwrap();
    let fees = statement
        .iter()
        .filter(|s| s.kind == StatementKind::MonthlyFee)
        .count();
    assert_eq!(fees, 1, "{statement:?}");
    let journal = gw.store.journal(Some("79000000000")).unwrap();
    assert_eq!(journal.len(), 1, "{journal:?}");
    gw.server.unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tshark_dissects_a_session_cleanly() {
    if !have_smpplib() || !have("tshark", Command::new("tshark").arg("--version")) {
        return;
    }
    let gw = common::start(16).await;
    let port = gw.addr.port();
    let pcap = gw.dir.path().join("session.pcap");
    let mut tshark = Command::new("tshark")
        .args(["-i", "lo", "-f", &format!("tcp port {port}"), "-w"])
        .arg(&pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting tshark");
    // tshark says "Capturing on 'Loopback: lo'" once it is listening.
    let stderr = tshark.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) if l.contains("Capturing on") => break,
            Ok(_) => {}
            Err(_) => panic!("tshark did not start capturing"),
        }
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    let answers = run_smpplib(gw.addr, "79000000000").await;
    assert!(answers.iter().any(|a| a["ussd_service_op"] == 17));
    // Let the last segments reach the capture, then stop tshark.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sigint(tshark.id());
    let _ = tshark.wait();

    let decode = |extra: &[&str]| {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&pcap)
            .args(["-d", &format!("tcp.port=={port},smpp")])
            .args(extra)
            .output()
            .expect("tshark -r");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let malformed = decode(&["-Y", "_ws.malformed || _ws.expert.severity >= 8388608"]);
    assert!(
        malformed.trim().is_empty(),
        "malformed packets:\n{malformed}"
    );
    let ops = decode(&[
        "-Y",
        "smpp.ussd_service_op",
        "-T",
        "fields",
        "-e",
        "smpp.ussd_service_op",
    ]);
    let ops: Vec<&str> = ops.lines().map(str::trim).collect();
    assert!(ops.contains(&"1"), "PSSR indication seen: {ops:?}");
    assert!(ops.contains(&"17"), "PSSR response seen: {ops:?}");
    let commands = decode(&["-Y", "smpp", "-T", "fields", "-e", "smpp.command_id"]);
    for id in [
        "0x00000009",
        "0x80000009",
        "0x00000004",
        "0x80000004",
        "0x00000005",
    ] {
        assert!(commands.contains(id), "{id} in capture:\n{commands}");
    }
    gw.server.unwrap().shutdown().await;
}

/// SIGINT so tshark flushes and closes the capture file.
fn sigint(pid: u32) {
    let _ = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
}

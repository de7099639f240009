//! Crash test for the durable backends (G2, G3).
//!
//! For each of redb and sled, plain and behind the write-ahead log (with a
//! checkpoint every few KiB, so kills also land inside checkpoints and
//! segment deletions), the parent seeds 50 accounts, then runs
//! [`ROUNDS`] rounds of: start a child process (this same test binary,
//! re-executed with `SHORTCODE_CRASH_CHILD=run` so it only runs
//! [`crash_child_entry`]); the child opens the store (recovering from the
//! previous kill), prints `READY`, and from [`CHILD_THREADS`] threads commits
//! realistic charge/top-up commands, printing `ACK <request id>` after each
//! `commit` returned. The parent SIGKILLs it 5–60 ms after `READY`
//! (seeded RNG), reopens the store and checks that
//!
//! * every acknowledged command is in the journal (G3),
//! * no request id is journaled twice,
//! * at most one unacknowledged command per child thread per round landed
//!   (the one in flight when the kill came),
//! * every account has as many statement lines as journal lines (the three
//!   writes of a command are atomic), and
//! * G2: `opening_balance + Σ statement amounts == balance`, with each line's
//!   `balance_after` chaining from the previous one.
//!
//! Set `SHORTCODE_CRASH_SEED` to replay a run; the seed is printed.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use shortcode_gw::engine::model::{
    Account, AccountState, Billing, Channel, JournalLine, Location, Outcome, Package,
    StatementKind, StatementLine,
};
use shortcode_gw::store::wal::LogOptions;
use shortcode_gw::store::{open_with_options, Store, StoreError, StoreKind, Write};

const ROUNDS: u32 = 30;
const ACCOUNTS: usize = 50;
const CHILD_THREADS: usize = 2;
const DEFAULT_SEED: u64 = 0x5EED_C0DE_0929;

const ENV_CHILD: &str = "SHORTCODE_CRASH_CHILD";
const ENV_KIND: &str = "SHORTCODE_CRASH_KIND";
const ENV_DIR: &str = "SHORTCODE_CRASH_DIR";
const ENV_ROUND: &str = "SHORTCODE_CRASH_ROUND";
const ENV_SEED: &str = "SHORTCODE_CRASH_SEED";
const ENV_LOG: &str = "SHORTCODE_CRASH_LOG";

/// The store as the test opens it: plain, or logged with tiny checkpoints.
fn open(
    kind: StoreKind,
    dir: impl AsRef<Path>,
    log: bool,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    let opts = log.then(|| LogOptions {
        checkpoint_bytes: 8 << 10,
        checkpoint_interval: Duration::from_millis(10),
        segment_bytes: 16 << 10,
    });
    open_with_options(kind, dir, opts)
}

fn msisdn(i: usize) -> String {
    format!("7916{:07}", 1_000_000 + i * 37)
}

fn seed_account(i: usize, rng: &mut StdRng) -> AccountState {
    AccountState::imported(Account {
        msisdn: msisdn(i),
        region: "moscow".into(),
        plan: "smart".into(),
        plan_version: "2024".into(),
        balance: Decimal::new(rng.gen_range(0..200_000), 2),
        billing: Billing::Monthly,
        next_charge: NaiveDate::from_ymd_opt(2026, 12, 5).expect("date"),
        anchor_day: 5,
        blocks: vec![],
        unpaid: false,
        discount_pct: Decimal::ZERO,
        services: vec!["package".into()],
        location: Location::Home,
        main: Package {
            minutes: 500,
            sms: 500,
            data_mb: 15360,
        },
        saved: None,
    })
}

fn seed() -> u64 {
    std::env::var(ENV_SEED)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

// ------------------------------------------------------------------ child

/// Not a test of its own: the entry point of the child process. In a normal
/// run (no `SHORTCODE_CRASH_CHILD` in the environment) it returns at once.
#[test]
fn crash_child_entry() {
    let Ok(mode) = std::env::var(ENV_CHILD) else {
        return;
    };
    let kind: StoreKind = std::env::var(ENV_KIND)
        .expect("kind")
        .parse()
        .expect("kind");
    let dir = std::env::var(ENV_DIR).expect("dir");
    let log = std::env::var(ENV_LOG).is_ok_and(|v| v == "1");
    let round: u32 = std::env::var(ENV_ROUND)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    // sled's background flusher may hold the lock for a moment after the
    // parent's verifying handle drops; a real restart waits the same way.
    let mut tries = 0;
    let opened = loop {
        match open(kind, &dir, log) {
            Err(StoreError::Locked { .. }) if tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => break other,
        }
    };
    let store = match opened {
        Ok(s) => s,
        Err(e) => {
            say(&format!("ERR open: {e}"));
            std::process::exit(3);
        }
    };
    say("READY");
    if mode == "probe" {
        // `strace -f -c` target: N single-command commits through the real
        // store (see the sled_store module doc for the measured syscalls).
        let n: u64 = std::env::var("SHORTCODE_CRASH_PROBE_N")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(100);
        let mut rng = StdRng::seed_from_u64(seed());
        if store.account(&msisdn(0)).ok().flatten().is_none() {
            let writes = (0..ACCOUNTS)
                .map(|i| Write::PutAccount(seed_account(i, &mut rng)))
                .collect();
            store.commit(writes).expect("seed accounts");
        }
        say("SEEDED");
        for n in 0..n {
            let id = format!("probe-n{n}");
            child_command(&*store, &msisdn(0), &id, &mut rng).expect("probe commit");
        }
        say("DONE");
        return;
    }
    if mode == "hold" {
        // Keep the store open until killed (bounded, in case the parent died).
        std::thread::sleep(Duration::from_secs(30));
        std::process::exit(0);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let threads: Vec<_> = (0..CHILD_THREADS)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(seed() ^ (u64::from(round) << 8) ^ t as u64);
                let mut n = 0u64;
                while Instant::now() < deadline {
                    // Each thread owns the accounts i ≡ t (mod CHILD_THREADS),
                    // so its read-modify-write never races another thread.
                    let i = rng.gen_range(0..ACCOUNTS / CHILD_THREADS) * CHILD_THREADS + t;
                    let id = format!("r{round}-t{t}-n{n}");
                    if let Err(e) = child_command(&*store, &msisdn(i), &id, &mut rng) {
                        say(&format!("ERR {id}: {e}"));
                        std::process::exit(4);
                    }
                    say(&format!("ACK {id}"));
                    n += 1;
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    std::process::exit(0);
}

/// One line to stdout, flushed; exits when the parent is gone.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
        std::process::exit(5);
    }
}

/// A renewal-style charge, or a top-up when the balance does not cover it:
/// one commit of [PutAccount, Statement, Journal].
fn child_command(
    store: &dyn Store,
    msisdn: &str,
    id: &str,
    rng: &mut StdRng,
) -> Result<(), StoreError> {
    let mut st = store
        .account(msisdn)?
        .ok_or_else(|| StoreError::Corrupt(format!("account {msisdn} vanished")))?;
    let fee = [
        Decimal::new(1900, 2),
        Decimal::new(50000, 2),
        Decimal::new(55000, 2),
    ][rng.gen_range(0..3)];
    let (kind, amount, outcome) = if rng.gen_bool(0.6) && st.account.balance >= fee {
        (StatementKind::MonthlyFee, -fee, Outcome::Renewed)
    } else {
        (
            StatementKind::Topup,
            Decimal::new(rng.gen_range(100..=1000) * 100 + rng.gen_range(0..100), 2),
            Outcome::Ok,
        )
    };
    st.account.balance += amount;
    let line = StatementLine {
        at: "2026-11-30T10:00:00+03:00".into(),
        msisdn: msisdn.into(),
        kind,
        amount,
        balance_after: st.account.balance,
        description: format!("{kind:?} {id}"),
        period_from: None,
        period_to: None,
    };
    let journal = JournalLine {
        at: "2026-11-30T10:00:00+03:00".into(),
        channel: Channel::Ussd,
        msisdn: msisdn.into(),
        request: id.into(),
        outcome,
        reply: format!("{outcome} {amount}"),
        duplicate: false,
    };
    store.commit(vec![
        Write::PutAccount(st),
        Write::Statement(line),
        Write::Journal(journal),
    ])?;
    Ok(())
}

// ----------------------------------------------------------------- parent

/// Kills the child if the parent test panics before doing so.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

enum Line {
    Ready,
    Ack(String),
    Err(String),
}

fn spawn_child(
    mode: &str,
    kind: StoreKind,
    log: bool,
    dir: &Path,
    round: u32,
) -> (Guard, mpsc::Receiver<Line>) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "crash_child_entry",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(ENV_CHILD, mode)
        .env(ENV_KIND, kind.name())
        .env(ENV_LOG, if log { "1" } else { "0" })
        .env(ENV_DIR, dir)
        .env(ENV_ROUND, round.to_string())
        .env(ENV_SEED, seed().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut buf = String::new();
        loop {
            buf.clear();
            match r.read_line(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            // A line cut by the kill has no newline: it was never a full
            // acknowledgement.
            let Some(line) = buf.strip_suffix('\n') else {
                break;
            };
            let msg = if line == "READY" {
                Line::Ready
            } else if let Some(id) = line.strip_prefix("ACK ") {
                Line::Ack(id.to_string())
            } else if let Some(e) = line.strip_prefix("ERR ") {
                Line::Err(e.to_string())
            } else {
                continue; // libtest chatter
            };
            if tx.send(msg).is_err() {
                break;
            }
        }
    });
    (Guard(child), rx)
}

fn wait_ready(rx: &mpsc::Receiver<Line>, what: &str) {
    match rx.recv_timeout(Duration::from_secs(15)) {
        Ok(Line::Ready) => {}
        Ok(Line::Err(e)) => panic!("{what}: child failed: {e}"),
        Ok(Line::Ack(_)) => panic!("{what}: ACK before READY"),
        Err(e) => panic!("{what}: child never became ready: {e}"),
    }
}

#[derive(Default)]
struct Totals {
    acked: usize,
    in_flight_landed: usize,
    recovery_ms_max: u128,
}

fn verify(
    store: &dyn Store,
    acked: &HashSet<String>,
    round: u32,
    label: &str,
    totals: &mut Totals,
) {
    let ctx = format!("{label} round {round}");
    let journal = store.journal(None).expect("journal");
    let mut seen = HashSet::new();
    let mut unacked_per_round: BTreeMap<String, usize> = BTreeMap::new();
    for line in &journal {
        assert!(
            seen.insert(line.request.clone()),
            "{ctx}: request {} applied twice",
            line.request
        );
        if !acked.contains(&line.request) {
            let round_thread = line
                .request
                .rsplit_once("-n")
                .map(|(rt, _)| rt.to_string())
                .unwrap_or_default();
            *unacked_per_round.entry(round_thread).or_default() += 1;
        }
    }
    for id in acked {
        assert!(
            seen.contains(id),
            "{ctx}: acknowledged request {id} is missing after the crash"
        );
    }
    for (rt, n) in &unacked_per_round {
        assert!(
            *n <= 1,
            "{ctx}: {n} unacknowledged commands of {rt} landed (at most the one in flight may)"
        );
    }
    totals.in_flight_landed = unacked_per_round.values().sum();
    assert_eq!(
        store.account_count().expect("count"),
        ACCOUNTS as u64,
        "{ctx}"
    );
    for i in 0..ACCOUNTS {
        let m = msisdn(i);
        let st = store.account(&m).expect("account").expect("account exists");
        let lines = store.statement(&m).expect("statement");
        let jl = store.journal(Some(&m)).expect("journal by msisdn");
        assert_eq!(
            lines.len(),
            jl.len(),
            "{ctx}: {m} has {} statement lines but {} journal lines",
            lines.len(),
            jl.len()
        );
        let mut bal = st.opening_balance;
        for l in &lines {
            bal += l.amount;
            assert_eq!(l.balance_after, bal, "{ctx}: {m} balance_after chain");
        }
        assert_eq!(
            st.opening_balance + lines.iter().map(|l| l.amount).sum::<Decimal>(),
            st.account.balance,
            "{ctx}: G2 broken for {m}"
        );
    }
}

fn crash_rounds(kind: StoreKind, log: bool) {
    let seed = seed();
    let label = format!("{kind}{}", if log { "+log" } else { "" });
    let kind_label = &label;
    eprintln!("{kind_label} crash test: seed {seed} ({ENV_SEED} to replay), {ROUNDS} rounds");
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = StdRng::seed_from_u64(seed ^ (kind as u64 + 1) << 32);
    {
        let store = open(kind, dir.path(), log).expect("open for seeding");
        let writes = (0..ACCOUNTS)
            .map(|i| Write::PutAccount(seed_account(i, &mut rng)))
            .collect();
        store.commit(writes).expect("seed accounts");
    }
    let mut acked = HashSet::new();
    let mut totals = Totals::default();
    let mut per_round = Vec::new();
    for round in 0..ROUNDS {
        let (mut child, rx) = spawn_child("run", kind, log, dir.path(), round);
        wait_ready(&rx, &format!("{kind_label} round {round}"));
        let delay = rng.gen_range(5..=60);
        std::thread::sleep(Duration::from_millis(delay));
        child.0.kill().expect("SIGKILL child");
        let status = child.0.wait().expect("wait child");
        drop(child);
        let mut n = 0;
        for line in rx.iter() {
            match line {
                Line::Ack(id) => {
                    assert!(acked.insert(id.clone()), "{id} acknowledged twice");
                    n += 1;
                }
                Line::Err(e) => panic!("{kind_label} round {round}: child failed: {e}"),
                Line::Ready => panic!("{kind_label} round {round}: second READY"),
            }
        }
        assert!(
            status.code().is_none(),
            "{kind_label} round {round}: child exited on its own ({status}) instead of being killed"
        );
        per_round.push((delay, n));
        let t = Instant::now();
        let store = open(kind, dir.path(), log).expect("reopen after crash");
        totals.recovery_ms_max = totals.recovery_ms_max.max(t.elapsed().as_millis());
        verify(&*store, &acked, round, kind_label, &mut totals);
    }
    totals.acked = acked.len();
    eprintln!(
        "{kind_label} crash test: {} rounds in {:.1?}, {} acknowledged commands, {} in-flight commands \
         landed unacknowledged, slowest reopen {} ms; (kill delay ms, acks) per round: {per_round:?}",
        ROUNDS,
        started.elapsed(),
        totals.acked,
        totals.in_flight_landed,
        totals.recovery_ms_max
    );
    assert!(
        per_round.iter().filter(|(_, n)| *n > 0).count() >= ROUNDS as usize / 2,
        "{kind_label}: most rounds should acknowledge something: {per_round:?}"
    );
}

#[test]
fn redb_survives_sigkill() {
    crash_rounds(StoreKind::Redb, false);
}

#[test]
fn sled_survives_sigkill() {
    crash_rounds(StoreKind::Sled, false);
}

#[test]
fn redb_with_log_survives_sigkill() {
    crash_rounds(StoreKind::Redb, true);
}

#[test]
fn sled_with_log_survives_sigkill() {
    crash_rounds(StoreKind::Sled, true);
}

fn second_process_gets_locked(kind: StoreKind) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_child, rx) = spawn_child("hold", kind, true, dir.path(), 0);
    wait_ready(&rx, &format!("{kind} hold"));
    match open(kind, dir.path(), false) {
        Err(StoreError::Locked { path }) => {
            assert!(
                path.starts_with(&dir.path().display().to_string()),
                "{path}"
            );
        }
        Err(e) => panic!("{kind}: expected Locked, got {e}"),
        Ok(_) => panic!("{kind}: second process opened a store that is in use"),
    }
}

#[test]
fn redb_second_process_gets_locked() {
    second_process_gets_locked(StoreKind::Redb);
}

#[test]
fn sled_second_process_gets_locked() {
    second_process_gets_locked(StoreKind::Sled);
}

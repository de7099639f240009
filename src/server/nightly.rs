//! The daily nightly run (N1–N4) while the gateway serves.
//!
//! Once a second the task looks at the server's clock: when the operator's
//! local time has passed `service.nightly_at` on a date whose run has not
//! finished, it runs that date. Every account gets a `Command::Nightly`
//! through the one engine queue, a chunk at a time, so subscriber requests
//! are interleaved with it and nothing is read outside the committer and
//! written back later (a renewal committed meanwhile can't be overwritten).
//!
//! Restarts: `serve` keeps the last finished date in `data_dir/nightly-done`.
//! At start every date after it that is already due is run, oldest first
//! (a missed night still charges its daily fees, N2; a monthly charge is
//! taken once whatever was missed, N1). Without that file (a new store) a
//! start runs nothing: the first run is the next `nightly_at`. A run cut
//! short (shutdown, a store error) is repeated in full later; N4 makes that
//! safe; so is an account that fails: the others go on, and the date is
//! run again after a pause (1 min, doubling to 1 h). The file is kept
//! beside the store, not in it, and written durably (fsync of file and
//! directory). A stale file only means a date is repeated (harmless); a
//! lost one means the nights missed while down are not caught up (their
//! monthly charges still come at the next run, N1, but not their daily
//! fees, N2) — restore it, or run `shortcode-gw nightly --date D` for each
//! missed date with `serve` stopped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use tokio::sync::{mpsc, watch};

use super::Shared;
use crate::engine::Command;
use crate::gateway::Request;

/// How often the clock is looked at (a manual clock moves without waking
/// anyone, so this polls rather than sleeps until the hour).
const POLL: Duration = Duration::from_secs(1);
/// Pause before running a failed date again, doubling up to the max.
const RETRY_MIN: Duration = Duration::from_secs(60);
const RETRY_MAX: Duration = Duration::from_secs(3600);
/// Accounts per chunk in flight through the queue.
const CHUNK: usize = 1024;
/// At most this many missed dates are caught up at once; older ones are
/// left (their monthly charges are still taken once, N1) with a warning.
const CATCH_UP_MAX: i64 = 31;

/// The latest local date whose nightly hour has come at local time `now`.
pub(crate) fn due_date(now: NaiveDateTime, at: NaiveTime) -> NaiveDate {
    if now.time() >= at {
        now.date()
    } else {
        now.date().pred_opt().unwrap_or(NaiveDate::MIN)
    }
}

/// The dates to run, oldest first, after `done` up to `due`, at most
/// [`CATCH_UP_MAX`] of the latest.
pub(crate) fn dates_to_run(done: NaiveDate, due: NaiveDate) -> Vec<NaiveDate> {
    let from = done
        .succ_opt()
        .unwrap_or(done)
        .max(due - chrono::Days::new(CATCH_UP_MAX as u64 - 1));
    from.iter_days().take_while(|d| *d <= due).collect()
}

/// The date recorded in `path`; `None` when there is no file or it does not
/// hold a date (said in the log, naming the file).
pub(crate) fn read_record(path: &Path) -> Option<NaiveDate> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read the nightly record: nothing is caught up at start");
            return None;
        }
    };
    match text.trim().parse::<NaiveDate>() {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "the nightly record does not hold a date (YYYY-MM-DD): nothing is caught up at start");
            None
        }
    }
}

/// Record `date` as finished: written beside and renamed over, so a crash
/// leaves the old date or the new one.
pub(crate) fn write_record(path: &Path, date: NaiveDate) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(format!("{date}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// What one date's run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunCounts {
    pub accounts: u64,
    pub changed: u64,
    pub failed: u64,
}

/// Run the nightly for `date` over every account, through the queue.
/// `Err` when a request failed or shutdown began (the run is repeated later).
/// The accounts are read here only for their numbers; the committer reads
/// each again when it applies the command (the store has no key-only scan,
/// and a night is one pass).
pub(crate) async fn run_date(
    shared: &Shared,
    date: NaiveDate,
    shutdown: &watch::Receiver<bool>,
) -> Result<RunCounts, String> {
    let mut counts = RunCounts::default();
    let mut failure: Option<String> = None;
    let mut after: Option<String> = None;
    loop {
        if *shutdown.borrow() {
            return Err("shutdown began".into());
        }
        let store = shared.store.clone();
        let from = after.clone();
        let chunk =
            tokio::task::spawn_blocking(move || store.accounts_after(from.as_deref(), CHUNK))
                .await
                .map_err(|e| format!("reading accounts: {e}"))?
                .map_err(|e| format!("reading accounts: {e}"))?;
        let Some(last) = chunk.last() else { break };
        after = Some(last.account.msisdn.clone());
        let now = shared.clock.now();
        let mut set = tokio::task::JoinSet::new();
        for st in chunk {
            let engine = shared.engine.clone();
            let request = Request {
                msisdn: st.account.msisdn,
                command: Command::Nightly { date },
                now,
            };
            set.spawn(async move { engine.execute(request).await });
        }
        while let Some(joined) = set.join_next().await {
            counts.accounts += 1;
            match joined
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            {
                Ok(applied) => counts.changed += u64::from(applied.changed),
                // One account failing must not hold back everyone after it:
                // go on, and repeat the date later (N4 skips the done ones).
                Err(e) => {
                    counts.failed += 1;
                    failure.get_or_insert(e);
                }
            }
        }
    }
    match failure {
        Some(e) => Err(format!(
            "{} of {} accounts failed, first: {e}",
            counts.failed, counts.accounts
        )),
        None => Ok(counts),
    }
}

/// The task: poll the clock, run what is due, record it.
pub(crate) async fn nightly_loop(
    shared: Arc<Shared>,
    zone: chrono_tz::Tz,
    at: NaiveTime,
    record: Option<PathBuf>,
    mut shutdown: watch::Receiver<bool>,
    _drained: mpsc::Sender<()>,
) {
    let local = |shared: &Shared| shared.clock.now().with_timezone(&zone).naive_local();
    let mut done = record
        .as_deref()
        .and_then(read_record)
        .unwrap_or_else(|| due_date(local(&shared), at));
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // After a failed run: not before this, and twice as long each time.
    let mut retry: Option<(std::time::Instant, Duration)> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let due = due_date(local(&shared), at);
        if due <= done || retry.is_some_and(|(t, _)| std::time::Instant::now() < t) {
            continue;
        }
        if (due - done).num_days() > CATCH_UP_MAX {
            tracing::warn!(last_done = %done, due = %due, "more than {CATCH_UP_MAX} nightly runs were missed: only the latest {CATCH_UP_MAX} are run");
        }
        for date in dates_to_run(done, due) {
            let started = std::time::Instant::now();
            match run_date(&shared, date, &shutdown).await {
                Ok(c) => {
                    tracing::info!(%date, accounts = c.accounts, changed = c.changed, took_ms = started.elapsed().as_millis() as u64, "nightly run done");
                    done = date;
                    retry = None;
                    if let Some(path) = &record {
                        if let Err(e) = write_record(path, date) {
                            tracing::warn!(file = %path.display(), error = %e, "cannot record the nightly run: it may be repeated after a restart (harmless)");
                        }
                    }
                }
                Err(e) => {
                    if *shutdown.borrow() {
                        return;
                    }
                    // Not recorded: the date is run again (N4 makes that
                    // harmless), after a pause that grows, so a store error
                    // does not turn into a full pass every second.
                    let pause = retry.map_or(RETRY_MIN, |(_, p)| (p * 2).min(RETRY_MAX));
                    tracing::error!(%date, error = %e, retry_in_s = pause.as_secs(), "nightly run not complete");
                    retry = Some((std::time::Instant::now() + pause, pause));
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn the_due_date_turns_at_the_nightly_hour() {
        let cases = [
            ("2026-12-04 00:00", "00:00", "2026-12-04"),
            ("2026-12-03 23:59", "00:00", "2026-12-03"),
            ("2026-12-04 02:59", "03:00", "2026-12-03"),
            ("2026-12-04 03:00", "03:00", "2026-12-04"),
            ("2026-01-01 00:30", "01:00", "2025-12-31"),
        ];
        for (now, at, want) in cases {
            let at = NaiveTime::parse_from_str(at, "%H:%M").unwrap();
            assert_eq!(due_date(dt(now), at), d(want), "{now} at {at}");
        }
    }

    #[test]
    fn missed_dates_are_run_oldest_first_up_to_a_month() {
        assert_eq!(dates_to_run(d("2026-12-03"), d("2026-12-03")), vec![]);
        assert_eq!(
            dates_to_run(d("2026-12-01"), d("2026-12-03")),
            vec![d("2026-12-02"), d("2026-12-03")]
        );
        let long = dates_to_run(d("2026-01-01"), d("2026-12-03"));
        assert_eq!(long.len(), CATCH_UP_MAX as usize);
        assert_eq!(long.last(), Some(&d("2026-12-03")));
        assert_eq!(long.first(), Some(&d("2026-11-03")));
    }

    #[test]
    fn the_record_keeps_a_date_and_ignores_anything_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nightly-done");
        assert_eq!(read_record(&path), None);
        write_record(&path, d("2026-12-04")).unwrap();
        assert_eq!(read_record(&path), Some(d("2026-12-04")));
        std::fs::write(&path, "yesterday\n").unwrap();
        assert_eq!(read_record(&path), None);
    }
}

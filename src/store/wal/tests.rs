//! The log's own promises: what a crash leaves is replayed exactly once,
//! torn tails are dropped, real damage is named, ids are never reused, and
//! a failed write stops the store instead of serving undurable state.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::store::conformance::{account, journal, notice, statement};
use crate::store::memory::MemoryStore;

/// Checkpoints only when asked (or at drop).
fn manual() -> LogOptions {
    LogOptions {
        checkpoint_bytes: u64::MAX,
        checkpoint_interval: Duration::from_secs(3600),
        segment_bytes: 64 << 10,
    }
}

fn renewal(m: &str, kopecks: i64) -> Vec<Write> {
    vec![
        Write::PutAccount(account(m, kopecks)),
        Write::Journal(journal(m, "*929#")),
        Write::Statement(statement(m, -55_000, kopecks)),
        Write::Enqueue(notice(m, "renewed")),
    ]
}

/// Copy every log segment of `from` into `to` (a crash "snapshot": what
/// an acknowledged commit left on disk).
fn copy_segments(from: &Path, to: &Path) {
    for n in segments(from).unwrap() {
        std::fs::copy(segment_path(from, n), segment_path(to, n)).unwrap();
    }
}

fn seg_files(dir: &Path) -> Vec<u64> {
    segments(dir).unwrap()
}

#[test]
fn acknowledged_commits_survive_a_crash_without_checkpoint() {
    let live = tempfile::tempdir().unwrap();
    let crash = tempfile::tempdir().unwrap();
    let base: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let s = LogStore::open(base.clone(), live.path(), manual()).unwrap();
    let c1 = s.commit(renewal("79160000001", 100)).unwrap();
    let c2 = s.commit(renewal("79160000002", 200)).unwrap();
    s.commit(vec![Write::Dequeue(c1.enqueued[0])]).unwrap();
    // The backend has seen nothing yet: it is all in the log.
    assert_eq!(base.account("79160000001").unwrap(), None);
    copy_segments(live.path(), crash.path());
    drop(s);

    // A fresh backend (as it was before the writes) plus the crash's log.
    let base2: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let r = LogStore::open(base2.clone(), crash.path(), manual()).unwrap();
    assert_eq!(
        r.account("79160000002").unwrap(),
        Some(account("79160000002", 200))
    );
    assert_eq!(r.journal(None).unwrap().len(), 2);
    assert_eq!(r.statement("79160000001").unwrap().len(), 1);
    assert_eq!(
        r.outbox(10).unwrap(),
        vec![(c2.enqueued[0], notice("79160000002", "renewed"))]
    );
    // Recovery checkpointed into the backend and removed the log.
    assert_eq!(base2.journal(None).unwrap().len(), 2);
    assert_eq!(base2.log_marks().unwrap().log_seq, 3);
    assert!(seg_files(crash.path()).is_empty());
    // Ids continue past everything the log handed out.
    let c3 = r.commit(vec![Write::Enqueue(notice("7", "next"))]).unwrap();
    assert_eq!(c3.enqueued, vec![c2.enqueued[0] + 1]);
}

#[test]
fn records_already_checkpointed_are_not_applied_twice() {
    let dir = tempfile::tempdir().unwrap();
    let keep = tempfile::tempdir().unwrap();
    let base: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let s = LogStore::open(base.clone(), dir.path(), manual()).unwrap();
    s.commit(renewal("79160000001", 100)).unwrap();
    // The crash comes after the checkpoint's backend commit but before its
    // segments were deleted: keep a copy of them.
    copy_segments(dir.path(), keep.path());
    s.checkpoint().unwrap();
    s.commit(renewal("79160000001", 50)).unwrap();
    copy_segments(dir.path(), keep.path());
    let base_snapshot = MemoryStore::new();
    base_snapshot
        .commit({
            let mut w = renewal("79160000001", 100);
            w.push(Write::LogMark(LogMarks {
                log_seq: 1,
                next_outbox_id: 2,
            }));
            w
        })
        .unwrap();
    drop(s);

    let base2: Arc<dyn Store> = Arc::new(base_snapshot);
    let r = LogStore::open(base2, keep.path(), manual()).unwrap();
    let j = r.journal(Some("79160000001")).unwrap();
    assert_eq!(j.len(), 2, "each request journaled once: {j:?}");
    assert_eq!(
        r.account("79160000001").unwrap(),
        Some(account("79160000001", 50))
    );
    assert_eq!(r.statement("79160000001").unwrap().len(), 2);
}

#[test]
fn a_torn_tail_is_dropped_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(Arc::new(MemoryStore::new()), dir.path(), manual()).unwrap();
    s.commit(renewal("79160000001", 100)).unwrap();
    s.commit(renewal("79160000002", 200)).unwrap();
    let crash = tempfile::tempdir().unwrap();
    copy_segments(dir.path(), crash.path());
    drop(s);
    let last = *seg_files(crash.path()).last().unwrap();
    let path = segment_path(crash.path(), last);
    let mut bytes = std::fs::read(&path).unwrap();
    // A third record whose write was cut short by the crash.
    let mut extra = Vec::new();
    frame(3, &renewal("79160000003", 300), &mut extra).unwrap();
    bytes.extend_from_slice(&extra[..extra.len() / 2]);
    std::fs::write(&path, &bytes).unwrap();

    let r = LogStore::open(Arc::new(MemoryStore::new()), crash.path(), manual()).unwrap();
    assert_eq!(r.journal(None).unwrap().len(), 2);
    assert_eq!(r.account("79160000003").unwrap(), None);
    // And new commits carry on with the next sequence number.
    r.commit(renewal("79160000003", 300)).unwrap();
    assert_eq!(r.log_marks().unwrap().log_seq, 3);
}

#[test]
fn a_flipped_byte_in_the_last_record_drops_only_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(Arc::new(MemoryStore::new()), dir.path(), manual()).unwrap();
    s.commit(renewal("79160000001", 100)).unwrap();
    s.commit(renewal("79160000002", 200)).unwrap();
    let crash = tempfile::tempdir().unwrap();
    copy_segments(dir.path(), crash.path());
    drop(s);
    let path = segment_path(crash.path(), *seg_files(crash.path()).last().unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    // The segment is zero-filled past what was written.
    let n = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    bytes[n - 3] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let r = LogStore::open(Arc::new(MemoryStore::new()), crash.path(), manual()).unwrap();
    assert!(r.account("79160000001").unwrap().is_some());
    assert_eq!(r.account("79160000002").unwrap(), None);
}

#[test]
fn damage_before_the_newest_segment_is_named_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(Arc::new(MemoryStore::new()), dir.path(), manual()).unwrap();
    s.commit(renewal("79160000001", 100)).unwrap();
    let crash = tempfile::tempdir().unwrap();
    copy_segments(dir.path(), crash.path());
    drop(s);
    let first = seg_files(crash.path())[0];
    let path = segment_path(crash.path(), first);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEADER + 2] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    // A newer segment exists, so the bad record is not a torn tail.
    let mut next = Vec::new();
    frame(2, &renewal("79160000002", 1), &mut next).unwrap();
    std::fs::write(segment_path(crash.path(), first + 1), &next).unwrap();

    let base: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let e = LogStore::open(base, crash.path(), manual())
        .err()
        .expect("corruption refused");
    let msg = e.to_string();
    assert!(matches!(e, StoreError::Corrupt(_)), "{msg}");
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("byte 0"),
        "{msg}"
    );
    // Nothing was deleted: an operator can look at the files.
    assert_eq!(seg_files(crash.path()).len(), 2);
}

#[test]
fn missing_records_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    frame(1, &renewal("79160000001", 1), &mut bytes).unwrap();
    frame(3, &renewal("79160000003", 3), &mut bytes).unwrap();
    std::fs::write(segment_path(dir.path(), 1), &bytes).unwrap();
    let e = LogStore::open(Arc::new(MemoryStore::new()), dir.path(), manual())
        .err()
        .expect("gap refused");
    assert!(e.to_string().contains("record 3 follows 1"), "{e}");
}

#[test]
fn checkpoints_run_by_size_and_reads_stay_consistent_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let base: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let opts = LogOptions {
        checkpoint_bytes: 4 << 10,
        checkpoint_interval: Duration::from_secs(3600),
        segment_bytes: 8 << 10,
    };
    let s = Arc::new(LogStore::open(base.clone(), dir.path(), opts).unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A reader that must never see a journal line twice or lose one.
    let reader = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = 0usize;
            let mut reads = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let j = s.journal(Some("79160000001")).unwrap();
                assert!(j.len() >= seen, "journal shrank from {seen} to {}", j.len());
                for (i, line) in j.iter().enumerate() {
                    assert_eq!(line.request, format!("r{i}"), "line {i} of {}", j.len());
                }
                seen = j.len();
                reads += 1;
            }
            reads
        })
    };
    for i in 0..400i64 {
        s.commit(vec![
            Write::PutAccount(account("79160000001", i)),
            Write::Journal(journal("79160000001", &format!("r{i}"))),
        ])
        .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    // Checkpoints happen on their own: the backend catches up part way and
    // old segments are gone. (In the background: under a loaded test run
    // the checkpointer may still be behind when the last commit returns.)
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while (base.journal(None).unwrap().len() < 100 || seg_files(dir.path()).len() > 2)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(base.log_marks().unwrap().log_seq > 0);
    assert!(base.journal(None).unwrap().len() >= 100);
    assert!(
        seg_files(dir.path()).len() <= 2,
        "{:?}",
        seg_files(dir.path())
    );
    assert_eq!(s.journal(None).unwrap().len(), 400);
    assert_eq!(
        s.account("79160000001").unwrap(),
        Some(account("79160000001", 399))
    );
    let s = Arc::try_unwrap(s).ok().expect("only handle");
    drop(s);
    // Clean close: all in the backend, nothing left to replay.
    assert_eq!(base.journal(None).unwrap().len(), 400);
    assert!(seg_files(dir.path()).is_empty());
}

#[test]
fn a_failed_log_write_stops_the_store() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("store");
    std::fs::create_dir(&dir).unwrap();
    let s = LogStore::open(Arc::new(MemoryStore::new()), &dir, manual()).unwrap();
    s.commit(renewal("79160000001", 100)).unwrap();
    s.checkpoint().unwrap();
    // Soon a record needs a new segment file, in a directory that is gone.
    // (The checkpointer may be writing a spare segment into it right now,
    // which makes one removal fail with the directory not empty.)
    let mut removed = std::fs::remove_dir_all(&dir);
    for _ in 0..100 {
        if removed.is_ok() || !dir.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        removed = std::fs::remove_dir_all(&dir);
    }
    assert!(!dir.exists(), "{removed:?}");
    let e = (0..1000)
        .find_map(|i| s.commit(renewal(&format!("7916{i:07}"), 200)).err())
        .expect("a commit fails once the segment is full");
    assert!(matches!(e, StoreError::Io(_)), "{e}");
    // Every later call refuses rather than serve what may not be durable.
    let e = s.account("79160000002").unwrap_err();
    assert!(e.to_string().contains("restart"), "{e}");
    assert!(s.commit(renewal("79160000003", 1)).is_err());
    assert!(s.stage(renewal("79160000003", 1)).is_err());
}

#[test]
fn staged_writes_are_read_before_they_are_durable_and_waited_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(Arc::new(MemoryStore::new()), dir.path(), manual()).unwrap();
    let p1 = s.stage(renewal("79160000001", 100)).unwrap();
    let p2 = s.stage(renewal("79160000001", 90)).unwrap();
    assert_eq!(
        s.account("79160000001").unwrap(),
        Some(account("79160000001", 90))
    );
    let c2 = p2.wait().unwrap();
    let c1 = p1.wait().unwrap();
    assert_eq!(c2.enqueued, vec![c1.enqueued[0] + 1]);
    assert_eq!(s.log_marks().unwrap().log_seq, 2);
}

#[test]
fn opening_without_the_log_replays_what_a_logged_run_left() {
    let dir = tempfile::tempdir().unwrap();
    let crash = tempfile::tempdir().unwrap();
    {
        let s = crate::store::open(crate::store::StoreKind::Redb, dir.path()).unwrap();
        s.commit(renewal("79160000001", 100)).unwrap();
        copy_segments(dir.path(), crash.path());
    }
    // Put the log back as a crash would have left it, then open plain.
    std::fs::remove_file(dir.path().join(crate::store::redb_store::FILE_NAME)).unwrap();
    copy_segments(crash.path(), dir.path());
    let plain = crate::store::open_with(crate::store::StoreKind::Redb, dir.path(), false).unwrap();
    assert_eq!(
        plain.account("79160000001").unwrap(),
        Some(account("79160000001", 100))
    );
    assert_eq!(plain.journal(None).unwrap().len(), 1);
    assert!(seg_files(dir.path()).is_empty());
}

#[test]
fn an_sms_queued_and_delivered_between_checkpoints_skips_the_backend_but_not_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let base: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let s = LogStore::open(base.clone(), dir.path(), manual()).unwrap();
    let kept = s.commit(vec![Write::Enqueue(notice("7", "kept"))]).unwrap();
    let sent = s.commit(vec![Write::Enqueue(notice("7", "sent"))]).unwrap();
    s.commit(vec![Write::Dequeue(sent.enqueued[0])]).unwrap();
    s.checkpoint().unwrap();
    assert_eq!(
        base.outbox(10).unwrap(),
        vec![(kept.enqueued[0], notice("7", "kept"))]
    );
    drop(s);
    let s = LogStore::open(base, dir.path(), manual()).unwrap();
    let next = s.commit(vec![Write::Enqueue(notice("7", "next"))]).unwrap();
    assert_eq!(
        next.enqueued,
        vec![sent.enqueued[0] + 1],
        "ids never reused"
    );
}

/// Back-pressure decisions, table-driven: nothing waits without a running
/// checkpoint estimate below the cap; the cap always waits for the end; in
/// between, what is admitted follows the checkpoint's expected progress.
#[test]
fn back_pressure_follows_the_checkpoints_expected_progress() {
    let ms = Duration::from_millis;
    let cap = 1_000;
    let later = Some(Some(ms(1)));
    type Row = (u64, Option<(Duration, Duration)>, Option<Option<Duration>>);
    #[rustfmt::skip]
    let table: &[Row] = &[
        // staged, (elapsed, expected), decision
        (0,     None,                    None),       // no estimate yet: only the cap
        (999,   None,                    None),
        (1_000, None,                    Some(None)), // the cap: wait for the end
        (5_000, Some((ms(10), ms(100))), Some(None)),
        (249,   Some((ms(0), ms(100))),  None),       // a quarter passes at once
        (250,   Some((ms(0), ms(100))),  later),
        (600,   Some((ms(50), ms(100))), None),       // 62.5 % admitted halfway
        (625,   Some((ms(50), ms(100))), later),
        (999,   Some((ms(99), ms(100))), later),
        (999,   Some((ms(100), ms(100))), None),      // overdue: only the cap
        (999,   Some((ms(500), ms(100))), None),
    ];
    for &(staged, progress, want) in table {
        assert_eq!(
            hold_back(staged, cap, progress),
            want,
            "staged {staged}, progress {progress:?}"
        );
    }
}

/// Files a crash left half zero-filled (never renamed into use) are removed
/// at the next open; a real segment beside them is still replayed.
#[test]
fn half_written_spares_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let base: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let s = LogStore::open(base.clone(), dir.path(), manual()).unwrap();
    s.commit(renewal("79160000001", 100)).unwrap();
    let crash = tempfile::tempdir().unwrap();
    copy_segments(dir.path(), crash.path());
    drop(s);
    let partials = [
        crash.path().join("wal-0000000000000009.log.partial"),
        crash.path().join("wal-spare.tmp.partial"),
    ];
    for p in &partials {
        std::fs::write(p, [0u8; 100]).unwrap();
    }
    let fresh: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let r = LogStore::open(fresh, crash.path(), manual()).unwrap();
    assert_eq!(
        r.account("79160000001").unwrap(),
        Some(account("79160000001", 100))
    );
    for p in &partials {
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

/// Open leaves a zero-filled spare of the segment size ready for the first
/// commit, replacing one a run with other options left.
#[test]
fn open_prepares_the_first_segment() {
    let dir = tempfile::tempdir().unwrap();
    let spare = spare_path(dir.path());
    std::fs::write(&spare, b"from a run with other options").unwrap();
    let base: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let opts = manual();
    let s = LogStore::open(base, dir.path(), opts.clone()).unwrap();
    let bytes = std::fs::read(&spare).unwrap();
    assert_eq!(bytes.len() as u64, opts.segment_bytes);
    assert!(bytes.iter().all(|&b| b == 0));
    assert!(seg_files(dir.path()).is_empty());
    s.commit(renewal("79160000001", 100)).unwrap();
    assert_eq!(seg_files(dir.path()).len(), 1);
}

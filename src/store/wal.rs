//! A write-ahead log in front of a backend store: durable commits cost one
//! sequential append and one `fdatasync`, not a B-tree transaction.
//!
//! Why: with redb alone every group commit rewrites the scattered B-tree
//! pages it touched and syncs them (benches/RESULTS.md §9); the committer
//! spent most of each batch there. Here a commit is
//!
//! 1. *staged* ([`Store::stage`]): outbox ids are assigned, the writes are
//!    framed into the log buffer and applied to an in-memory overlay, so the
//!    next batch already reads them;
//! 2. made *durable* by the syncer thread, which writes every staged record
//!    so far with one `write` + one `fdatasync` — commits staged while a sync
//!    runs share the next one, so the group size follows the load with no
//!    timer;
//! 3. *checkpointed* later by the checkpointer thread: when the log holds
//!    [`LogOptions::checkpoint_bytes`], the overlay is frozen, written to the
//!    backend as one transaction together with [`Write::LogMark`] (the last
//!    sequence number it covers), and the finished log segments it covers
//!    are deleted.
//!
//! The overlay keeps accounts changed since the last checkpoint, the
//! journal/statement lines and outbox changes in commit order, the whole
//! outbox (it is small: SMS not yet delivered) and the catalog. Reads look
//! at the overlay first and fall through to the backend; reads that merge
//! both (pages of accounts, statements, journals) hold the checkpoint gate,
//! so a checkpoint never shows a line twice or not at all.
//!
//! Segments (`wal-<n>.log`) are zero-filled to [`LogOptions::segment_bytes`]
//! before use (the first at open, then the checkpointer keeps a spare
//! ready), so appending a record
//! and syncing it changes no file metadata; a zero header marks the end of
//! what was written. The syncer starts a new segment when one is full; a
//! checkpoint deletes the finished segments whose records it covers.
//!
//! Record format (little endian):
//! `len u32 ‖ crc32(seq ‖ payload) u32 ‖ seq u64 ‖ payload`, where the
//! payload is the JSON list of [`Write`]s of one commit (outbox ids already
//! assigned: `EnqueueAt`). Sequence numbers increase by one.
//!
//! Recovery ([`LogStore::open`], [`replay_into`]): records whose seq is at
//! most the backend's `log_seq` are already in it and are skipped; the rest
//! are applied in order and checkpointed at once. A record cut short or
//! failing its CRC at the end of the last segment is a write that was never
//! acknowledged (the crash came before its sync) and is dropped with a
//! warning; anywhere else it is corruption and opening fails naming the file
//! and offset.
//!
//! Failure: if a log write or sync fails, the overlay may hold writes that
//! are not durable, so the store refuses every later call until the process
//! restarts and recovers from what is on disk (after a failed `fsync` the
//! kernel may have dropped the dirty pages: retrying could report data as
//! durable that is not).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::paced::write_out;
use super::{Committed, LogMarks, Pending, Store, StoreError, Write};
use crate::engine::model::{AccountState, Catalog, JournalLine, Notice, StatementLine};

const HEADER: usize = 16;
const PREFIX: &str = "wal-";
const SUFFIX: &str = ".log";

/// Tuning of the log.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Checkpoint into the backend once this many log bytes were written
    /// since the last checkpoint. Bounds the overlay's memory and the
    /// replay time after a crash.
    pub checkpoint_bytes: u64,
    /// Also checkpoint when anything is pending and this much time passed,
    /// so a quiet gateway's backend does not lag far behind.
    pub checkpoint_interval: Duration,
    /// Size of a log segment. Segments are zero-filled to this size before
    /// use, so a record's `fdatasync` changes no file metadata and does not
    /// have to wait for a file-system journal commit (which on ext4 would
    /// also flush the backend's checkpoint writes: measured 300 ms stalls).
    pub segment_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            // 4 MiB of log is ~2,500 renewals. Measured on a 10 M-account
            // store under saturating load: 16 MiB peaked at 596 MiB RSS
            // (overlays, their copy for the backend, the backend's dirty
            // pages), 4 MiB at 494 MiB, next to redb's 256 MiB cache.
            checkpoint_bytes: 4 << 20,
            checkpoint_interval: Duration::from_secs(5),
            segment_bytes: 32 << 20,
        }
    }
}

/// A [`Store`] whose commits go to a write-ahead log first.
pub struct LogStore {
    shared: Arc<Shared>,
    syncer: Option<JoinHandle<()>>,
    checkpointer: Option<JoinHandle<()>>,
}

struct Shared {
    base: Arc<dyn Store>,
    dir: PathBuf,
    opts: LogOptions,
    state: Mutex<State>,
    /// Syncer: records staged, or shutdown.
    staged: Condvar,
    /// Waiters: `durable_seq` moved, or the store failed.
    durable: Condvar,
    /// Checkpointer: enough bytes, or shutdown.
    wake_checkpointer: Condvar,
    /// Held by a checkpoint from its backend commit until the frozen
    /// overlay is dropped, and by reads that merge overlay and backend.
    gate: Mutex<()>,
    /// `fdatasync`s of the log so far.
    syncs: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Overlay {
    /// Accounts written since the overlay began (latest value).
    accounts: BTreeMap<String, AccountState>,
    /// Every other write, in commit order.
    ops: Vec<Write>,
}

impl Overlay {
    fn is_empty(&self) -> bool {
        self.accounts.is_empty() && self.ops.is_empty()
    }
}

struct State {
    last_seq: u64,
    durable_seq: u64,
    failed: Option<String>,
    /// Framed records not yet written.
    pending: Vec<u8>,
    /// Segments the syncer has finished (synced, no longer written), with
    /// the last sequence number in each: a checkpoint covering that number
    /// deletes them.
    closed: Vec<(u64, u64)>,
    /// The syncer started a segment: prepare the next spare.
    spare_wanted: bool,
    bytes_since_checkpoint: u64,
    /// When the running checkpoint froze its overlay.
    checkpoint_started: Option<Instant>,
    /// How long the last full-size checkpoint took, scaled to
    /// `checkpoint_bytes`: the pace back-pressure admits new bytes at.
    checkpoint_takes: Option<Duration>,
    current: Overlay,
    /// The overlay a running checkpoint is writing to the backend.
    frozen: Option<Arc<Overlay>>,
    outbox: BTreeMap<u64, Notice>,
    next_outbox: u64,
    catalog: Option<Catalog>,
    stop_checkpointer: bool,
    stop_syncer: bool,
}

fn io(what: impl std::fmt::Display, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(format!("{what}: {e}"))
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{n:016}{SUFFIX}"))
}

/// A zero-filled segment ready to be renamed into place.
fn spare_path(dir: &Path) -> PathBuf {
    dir.join("wal-spare.tmp")
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir.display(), e))
}

/// Write a zero-filled file of `len` bytes at `path` (via a temporary name,
/// so a half-written spare is never taken) and make it durable. The zeros
/// go out a step at a time ([`super::paced`]): a log `fdatasync` issued
/// while 32 MiB of them were in flight took 14 ms instead of 0.2 ms at p99
/// (in steps: 1 ms; benches/RESULTS.md, session 4).
fn zero_file(dir: &Path, path: &Path, len: u64) -> Result<(), StoreError> {
    // Named after the target: the syncer and the checkpointer may both be
    // preparing a file at once.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp).map_err(|e| io(tmp.display(), e))?;
    let zeros = vec![0u8; super::paced::STEP_BYTES as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n]).map_err(|e| io(tmp.display(), e))?;
        write_out(&f, done, n as u64).map_err(|e| io(tmp.display(), e))?;
        done += n as u64;
    }
    f.sync_all().map_err(|e| io(tmp.display(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path.display(), e))?;
    sync_dir(dir)
}

/// The segment the syncer is writing.
struct Segment {
    n: u64,
    file: File,
    pos: u64,
    last_seq: u64,
}

/// Segment numbers present in `dir`, ascending.
fn segments(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| io(dir.display(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io(dir.display(), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.strip_suffix(SUFFIX))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn frame(seq: u64, writes: &[Write], out: &mut Vec<u8>) -> Result<usize, StoreError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER]);
    if let Err(e) = serde_json::to_writer(&mut *out, writes) {
        out.truncate(start);
        return Err(StoreError::Io(format!("encoding a log record: {e}")));
    }
    let len = out.len() - start - HEADER;
    let Ok(len32) = u32::try_from(len) else {
        out.truncate(start);
        return Err(StoreError::Io(format!(
            "a commit of {len} bytes does not fit a log record"
        )));
    };
    out[start + 8..start + 16].copy_from_slice(&seq.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&len32.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.finalize().to_le_bytes());
    Ok(out.len() - start)
}

/// One record read back from a segment.
struct Record {
    seq: u64,
    writes: Vec<Write>,
}

/// Parse a segment. `last` says whether a bad record at the end may be a
/// torn, never-acknowledged write (only in the newest segment).
fn read_segment(path: &Path, bytes: &[u8], last: bool) -> Result<Vec<Record>, StoreError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let torn = |why: &str| -> Result<(), StoreError> {
            if last {
                tracing::warn!(
                    file = %path.display(),
                    offset = at,
                    dropped_bytes = rest.len(),
                    "write-ahead log ends in {why}: a write cut short by a crash before its sync; dropped"
                );
                Ok(())
            } else {
                Err(StoreError::Corrupt(format!(
                    "write-ahead log {} at byte {at}: {why} in a segment that is not the newest",
                    path.display()
                )))
            }
        };
        if rest.len() < HEADER {
            torn("a partial record header")?;
            break;
        }
        if rest[..HEADER].iter().all(|&b| b == 0) {
            break; // the zero-filled, never written part of the segment
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if rest.len() - HEADER < len {
            torn("a partial record")?;
            break;
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&rest[8..HEADER + len]);
        if h.finalize() != crc {
            torn("a record failing its checksum")?;
            break;
        }
        let seq = u64::from_le_bytes(rest[8..16].try_into().expect("8 bytes"));
        let writes: Vec<Write> =
            serde_json::from_slice(&rest[HEADER..HEADER + len]).map_err(|e| {
                StoreError::Corrupt(format!(
                    "write-ahead log {} at byte {at}: record {seq} does not decode: {e}",
                    path.display()
                ))
            })?;
        out.push(Record { seq, writes });
        at += HEADER + len;
    }
    Ok(out)
}

/// What recovery found: records newer than the backend, in order.
struct Recovered {
    records: Vec<Record>,
    segments: Vec<u64>,
}

fn recover(base: &dyn Store, dir: &Path) -> Result<Recovered, StoreError> {
    let marks = base.log_marks()?;
    let segments = segments(dir)?;
    let mut records = Vec::new();
    let mut expect = marks.log_seq + 1;
    for (i, &n) in segments.iter().enumerate() {
        let path = segment_path(dir, n);
        let bytes = std::fs::read(&path).map_err(|e| io(path.display(), e))?;
        for r in read_segment(&path, &bytes, i + 1 == segments.len())? {
            if r.seq <= marks.log_seq {
                continue; // already checkpointed into the backend
            }
            if r.seq != expect {
                return Err(StoreError::Corrupt(format!(
                    "write-ahead log {}: record {} follows {} (records are missing)",
                    path.display(),
                    r.seq,
                    expect - 1
                )));
            }
            expect += 1;
            records.push(r);
        }
    }
    Ok(Recovered { records, segments })
}

fn remove_segment(dir: &Path, n: u64) -> Result<(), StoreError> {
    let p = segment_path(dir, n);
    std::fs::remove_file(&p).map_err(|e| io(p.display(), e))
}

/// Remove what a crash in the middle of `zero_file` left (`*.partial`, never
/// renamed into use, so never holding a record).
fn remove_partial_files(dir: &Path) -> Result<(), StoreError> {
    let entries = std::fs::read_dir(dir).map_err(|e| io(dir.display(), e))?;
    for entry in entries {
        let path = entry.map_err(|e| io(dir.display(), e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(PREFIX) && name.ends_with(".partial") {
            std::fs::remove_file(&path).map_err(|e| io(path.display(), e))?;
        }
    }
    Ok(())
}

fn remove_all_segments(dir: &Path) -> Result<(), StoreError> {
    segments(dir)?
        .into_iter()
        .try_for_each(|n| remove_segment(dir, n))
}

/// Back-pressure while a checkpoint runs, given the log bytes staged since
/// it started, the cap on them, and (elapsed, expected duration) of the
/// checkpoint when an earlier one gave an estimate. `None`: go on;
/// `Some(None)`: wait for the checkpoint to end (the cap is reached);
/// `Some(Some(d))`: ahead of the checkpoint's expected progress, look again
/// after `d`. A quarter of the cap passes at once (bursts), the rest as the
/// checkpoint is expected to progress.
fn hold_back(
    staged: u64,
    cap: u64,
    progress: Option<(Duration, Duration)>,
) -> Option<Option<Duration>> {
    if staged >= cap {
        return Some(None);
    }
    let (elapsed, takes) = progress?;
    if elapsed >= takes {
        return None;
    }
    let share = 0.25 + 0.75 * elapsed.as_secs_f64() / takes.as_secs_f64();
    let allowed = (cap as f64 * share) as u64;
    (staged >= allowed).then_some(Some(Duration::from_millis(1)))
}

/// Give the calling thread a lower CPU priority (nice +10), so that at peak
/// the checkpointer yields the cores to the threads answering subscribers;
/// back-pressure in `stage` keeps it from falling behind without bound.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread's own id; no memory is
    // passed. On Linux a thread id is a valid PRIO_PROCESS target and
    // affects only that thread.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, 10) != 0 {
            tracing::debug!("could not lower the checkpointer's priority");
        }
    }
}

/// Apply a log left by an earlier run to `base` and delete it; used when the
/// store is opened without the log so the backend is never behind it.
pub fn replay_into(base: &Arc<dyn Store>, dir: &Path) -> Result<(), StoreError> {
    let rec = recover(base.as_ref(), dir)?;
    if let Some(last) = rec.records.last().map(|r| r.seq) {
        let mut writes: Vec<Write> = rec.records.into_iter().flat_map(|r| r.writes).collect();
        // The replayed EnqueueAt writes move the backend's outbox counter.
        writes.push(Write::LogMark(LogMarks {
            log_seq: last,
            next_outbox_id: 1,
        }));
        base.commit(writes)?;
    }
    remove_partial_files(dir)?;
    if !rec.segments.is_empty() {
        remove_all_segments(dir)?;
    }
    Ok(())
}

impl LogStore {
    /// Recover the log in `dir` into `base`, then serve through the log.
    pub fn open(base: Arc<dyn Store>, dir: &Path, opts: LogOptions) -> Result<Self, StoreError> {
        let first_segment = segments(dir)?.last().map_or(1, |n| n + 1);
        replay_into(&base, dir)?;
        // The first segment is ready before the first commit, so the first
        // subscribers do not wait for it to be zero-filled (it replaces any
        // spare left by a previous run, which may be from other options).
        zero_file(dir, &spare_path(dir), opts.segment_bytes)?;
        let marks = base.log_marks()?;
        let outbox: BTreeMap<u64, Notice> = base.outbox(usize::MAX)?.into_iter().collect();
        let catalog = base.catalog()?;
        let shared = Arc::new(Shared {
            base,
            dir: dir.to_path_buf(),
            opts,
            state: Mutex::new(State {
                last_seq: marks.log_seq,
                durable_seq: marks.log_seq,
                failed: None,
                pending: Vec::with_capacity(64 << 10),
                closed: Vec::new(),
                spare_wanted: false,
                bytes_since_checkpoint: 0,
                checkpoint_started: None,
                checkpoint_takes: None,
                current: Overlay::default(),
                frozen: None,
                outbox,
                next_outbox: marks.next_outbox_id.max(1),
                catalog,
                stop_checkpointer: false,
                stop_syncer: false,
            }),
            staged: Condvar::new(),
            durable: Condvar::new(),
            wake_checkpointer: Condvar::new(),
            gate: Mutex::new(()),
            syncs: std::sync::atomic::AtomicU64::new(0),
        });
        let s = shared.clone();
        let syncer = std::thread::Builder::new()
            .name("wal-sync".into())
            .spawn(move || s.sync_loop(first_segment))
            .map_err(|e| io("starting the log syncer", e))?;
        let s = shared.clone();
        let checkpointer = std::thread::Builder::new()
            .name("wal-checkpoint".into())
            .spawn(move || s.checkpoint_loop())
            .map_err(|e| io("starting the checkpointer", e))?;
        Ok(LogStore {
            shared,
            syncer: Some(syncer),
            checkpointer: Some(checkpointer),
        })
    }

    /// Write everything staged so far into the backend now (tests, tools).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.shared.checkpoint()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the
        // state is still consistent per record, so carry on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn gate(&self) -> MutexGuard<'_, ()> {
        self.gate.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        let st = self.lock();
        match &st.failed {
            Some(why) => Err(StoreError::Io(format!(
                "the store stopped after a failed write ({why}); restart to recover from disk"
            ))),
            None => Ok(st),
        }
    }

    fn wait_durable(&self, seq: u64) -> Result<(), StoreError> {
        let mut st = self.lock();
        loop {
            if let Some(why) = &st.failed {
                return Err(StoreError::Io(format!("log write failed: {why}")));
            }
            if st.durable_seq >= seq {
                return Ok(());
            }
            st = self.durable.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Whether a commit must wait for the running checkpoint (see
    /// [`hold_back`]).
    fn held_back(&self, st: &State) -> Option<Option<Duration>> {
        st.frozen.as_ref()?;
        let progress = st
            .checkpoint_started
            .map(|s| s.elapsed())
            .zip(st.checkpoint_takes);
        hold_back(
            st.bytes_since_checkpoint,
            self.opts.checkpoint_bytes,
            progress,
        )
    }

    fn stage(self: &Arc<Self>, writes: Vec<Write>) -> Result<Pending, StoreError> {
        let mut st = self.live()?;
        // Back-pressure: while a checkpoint runs, let at most another
        // `checkpoint_bytes` pile up behind it, so the overlays (memory) and
        // the log (replay time) stay bounded when the backend is slower
        // than the log. The allowance grows with the checkpoint's expected
        // progress, so a saturating load is slowed a little on every commit
        // rather than stopped for the rest of the checkpoint (measured at
        // saturation before this: p99 ~370 ms, all of it such stops).
        while let Some(wait) = self.held_back(&st) {
            st = match wait {
                None => self.durable.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    self.durable
                        .wait_timeout(st, d)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            if st.failed.is_some() {
                drop(st);
                st = self.live()?;
            }
        }
        if writes.is_empty() {
            let seq = st.last_seq;
            drop(st);
            let me = self.clone();
            return Ok(Pending::waiting(Committed::default(), move || {
                me.wait_durable(seq)
            }));
        }
        let mut committed = Committed::default();
        let mut next_outbox = st.next_outbox;
        let writes: Vec<Write> = writes
            .into_iter()
            .filter(|w| !matches!(w, Write::LogMark(_)))
            .map(|w| match w {
                Write::Enqueue(n) => {
                    let id = next_outbox;
                    next_outbox += 1;
                    committed.enqueued.push(id);
                    Write::EnqueueAt(id, n)
                }
                Write::EnqueueAt(id, n) => {
                    next_outbox = next_outbox.max(id + 1);
                    Write::EnqueueAt(id, n)
                }
                other => other,
            })
            .collect();
        let seq = st.last_seq + 1;
        let bytes = frame(seq, &writes, &mut st.pending)?;
        st.last_seq = seq;
        st.next_outbox = next_outbox;
        st.bytes_since_checkpoint += bytes as u64;
        for w in writes {
            st.apply(w);
        }
        let want_checkpoint = st.bytes_since_checkpoint >= self.opts.checkpoint_bytes;
        drop(st);
        self.staged.notify_one();
        if want_checkpoint {
            self.wake_checkpointer.notify_one();
        }
        let me = self.clone();
        Ok(Pending::waiting(committed, move || me.wait_durable(seq)))
    }

    /// The syncer: write what is staged, one `fdatasync`, wake the waiters.
    fn sync_loop(&self, first_segment: u64) {
        let mut seg: Option<Segment> = None;
        let mut next = first_segment;
        let mut buf = Vec::with_capacity(64 << 10);
        loop {
            let upto = {
                let mut st = self.lock();
                while st.pending.is_empty() && !st.stop_syncer {
                    st = self.staged.wait(st).unwrap_or_else(|p| p.into_inner());
                }
                if st.pending.is_empty() {
                    return;
                }
                // Swap buffers: stagers keep the capacity of the last one.
                buf.clear();
                std::mem::swap(&mut st.pending, &mut buf);
                st.last_seq
            };
            let result = self.write_synced(&mut seg, &mut next, &buf, upto);
            let mut st = self.lock();
            match result {
                Ok(()) => st.durable_seq = upto,
                Err(e) => {
                    tracing::error!(error = %e, "write-ahead log write failed; the store stops");
                    st.failed = Some(e.to_string());
                }
            }
            drop(st);
            self.durable.notify_all();
        }
    }

    /// Write `bytes` (whole records) at the end of the current segment,
    /// starting a new one when it would overflow, then `fdatasync`.
    fn write_synced(
        &self,
        seg: &mut Option<Segment>,
        next: &mut u64,
        bytes: &[u8],
        upto: u64,
    ) -> Result<(), StoreError> {
        use std::os::unix::fs::FileExt;
        let full = seg
            .as_ref()
            .is_some_and(|s| s.pos > 0 && s.pos + bytes.len() as u64 > self.opts.segment_bytes);
        if seg.is_none() || full {
            let s = self.start_segment(*next)?;
            *next += 1;
            if let Some(old) = seg.replace(s) {
                // Already synced with its last record.
                self.lock().closed.push((old.n, old.last_seq));
            }
            self.lock().spare_wanted = true;
            self.wake_checkpointer.notify_one();
        }
        let s = seg.as_mut().expect("segment started above");
        let path = || segment_path(&self.dir, s.n);
        s.file
            .write_all_at(bytes, s.pos)
            .map_err(|e| io(path().display(), e))?;
        s.file.sync_data().map_err(|e| io(path().display(), e))?;
        self.syncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        s.pos += bytes.len() as u64;
        s.last_seq = upto;
        Ok(())
    }

    /// Segment `n`: the prepared spare renamed into place (open prepares the
    /// first), or, when the checkpointer fell behind preparing the next, a
    /// new zero-filled file.
    fn start_segment(&self, n: u64) -> Result<Segment, StoreError> {
        let path = segment_path(&self.dir, n);
        match std::fs::rename(spare_path(&self.dir), &path) {
            Ok(()) => sync_dir(&self.dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                zero_file(&self.dir, &path, self.opts.segment_bytes)?
            }
            Err(e) => return Err(io(path.display(), e)),
        }
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io(path.display(), e))?;
        Ok(Segment {
            n,
            file,
            pos: 0,
            last_seq: 0,
        })
    }

    /// The checkpointer: checkpoints when enough log piled up (or the
    /// interval passed with something pending), and keeps a zero-filled
    /// spare segment ready for the syncer.
    fn checkpoint_loop(&self) {
        lower_priority();
        loop {
            let mut st = self.lock();
            let due = loop {
                if st.stop_checkpointer {
                    return;
                }
                if st.bytes_since_checkpoint >= self.opts.checkpoint_bytes {
                    break true;
                }
                if st.spare_wanted {
                    break false;
                }
                let (g, waited) = self
                    .wake_checkpointer
                    .wait_timeout(st, self.opts.checkpoint_interval)
                    .unwrap_or_else(|p| p.into_inner());
                st = g;
                if waited.timed_out() && !st.current.is_empty() {
                    break true;
                }
            };
            let spare = std::mem::take(&mut st.spare_wanted);
            drop(st);
            if spare && !spare_path(&self.dir).exists() {
                if let Err(e) =
                    zero_file(&self.dir, &spare_path(&self.dir), self.opts.segment_bytes)
                {
                    // Not fatal: the syncer zero-fills its own next segment.
                    tracing::warn!(error = %e, "preparing a spare log segment failed");
                }
            }
            if due {
                if let Err(e) = self.checkpoint() {
                    tracing::error!(error = %e, "checkpoint into the backend failed");
                    return;
                }
            }
        }
    }

    /// Freeze the overlay, write it to the backend with its log mark, drop
    /// the log segments it covers.
    fn checkpoint(&self) -> Result<(), StoreError> {
        let _gate = self.gate();
        let (frozen, marks, frozen_bytes) = {
            let mut st = self.live()?;
            if st.current.is_empty() {
                st.bytes_since_checkpoint = 0;
                return Ok(());
            }
            let frozen = Arc::new(std::mem::take(&mut st.current));
            st.frozen = Some(frozen.clone());
            let frozen_bytes = st.bytes_since_checkpoint;
            st.bytes_since_checkpoint = 0;
            st.checkpoint_started = Some(Instant::now());
            let marks = LogMarks {
                log_seq: st.last_seq,
                next_outbox_id: st.next_outbox,
            };
            (frozen, marks, frozen_bytes)
        };
        let upto = marks.log_seq;
        // Only what is durable in the log may reach the backend.
        self.wait_durable(upto)?;
        let mut writes: Vec<Write> =
            Vec::with_capacity(frozen.accounts.len() + frozen.ops.len() + 1);
        writes.extend(frozen.accounts.values().cloned().map(Write::PutAccount));
        // An SMS queued and delivered within this overlay never needs to
        // reach the backend (the mark still moves its id counter past it).
        // (Only a Dequeue that comes after its EnqueueAt cancels it.)
        let mut enqueued = std::collections::HashSet::new();
        let mut delivered = std::collections::HashSet::new();
        for w in &frozen.ops {
            match w {
                Write::EnqueueAt(id, _) => {
                    enqueued.insert(*id);
                }
                Write::Dequeue(id) if enqueued.contains(id) => {
                    delivered.insert(*id);
                }
                _ => {}
            }
        }
        writes.extend(
            frozen
                .ops
                .iter()
                .filter(|w| match w {
                    Write::EnqueueAt(id, _) | Write::Dequeue(id) => !delivered.contains(id),
                    _ => true,
                })
                .cloned(),
        );
        writes.push(Write::LogMark(marks));
        if let Err(e) = self.base.commit(writes) {
            // The log still has everything; but the overlay cannot be
            // merged back safely, so stop and let a restart replay it.
            let mut st = self.lock();
            st.failed = Some(format!("checkpoint: {e}"));
            drop(st);
            self.durable.notify_all();
            return Err(e);
        }
        let covered: Vec<u64> = {
            let mut st = self.lock();
            st.frozen = None;
            // Only checkpoints near full size say how fast the backend
            // takes a full one (small ones are mostly fixed cost).
            if let Some(started) = st.checkpoint_started.take() {
                if frozen_bytes >= self.opts.checkpoint_bytes / 2 {
                    let per_byte = started.elapsed().as_secs_f64() / frozen_bytes as f64;
                    st.checkpoint_takes = Some(Duration::from_secs_f64(
                        (per_byte * self.opts.checkpoint_bytes as f64).min(60.0),
                    ));
                }
            }
            let (done, keep) = std::mem::take(&mut st.closed)
                .into_iter()
                .partition(|&(_, last)| last <= upto);
            st.closed = keep;
            done.into_iter().map(|(n, _)| n).collect()
        };
        self.durable.notify_all(); // stagers held back by back-pressure
        covered
            .into_iter()
            .try_for_each(|n| remove_segment(&self.dir, n))
    }

    /// The lines `pick` takes from the overlays' ops, oldest first (the
    /// caller holds the gate and appends them to the backend's).
    fn overlay_lines<T>(&self, pick: impl Fn(&Write) -> Option<T>) -> Result<Vec<T>, StoreError> {
        Ok(self
            .overlays(|o| o.ops.iter().filter_map(&pick).collect::<Vec<_>>())?
            .into_iter()
            .flatten()
            .collect())
    }

    /// Every overlay, oldest first, for reads that merge with the backend.
    fn overlays<T>(&self, f: impl Fn(&Overlay) -> T) -> Result<Vec<T>, StoreError> {
        let st = self.live()?;
        let mut out = Vec::with_capacity(2);
        if let Some(fz) = &st.frozen {
            out.push(f(fz));
        }
        out.push(f(&st.current));
        Ok(out)
    }
}

impl State {
    fn apply(&mut self, w: Write) {
        match w {
            Write::PutAccount(a) => {
                self.current.accounts.insert(a.account.msisdn.clone(), a);
            }
            Write::EnqueueAt(id, n) => {
                self.outbox.insert(id, n.clone());
                self.current.ops.push(Write::EnqueueAt(id, n));
            }
            Write::Dequeue(id) => {
                self.outbox.remove(&id);
                self.current.ops.push(Write::Dequeue(id));
            }
            Write::PutCatalog(c) => {
                self.catalog = Some(c.clone());
                self.current.ops.push(Write::PutCatalog(c));
            }
            // Converted or dropped by `stage`.
            Write::Enqueue(_) | Write::LogMark(_) => {}
            w @ (Write::Journal(_) | Write::Statement(_)) => self.current.ops.push(w),
        }
    }

    fn account(&self, msisdn: &str) -> Option<&AccountState> {
        self.current
            .accounts
            .get(msisdn)
            .or_else(|| self.frozen.as_ref()?.accounts.get(msisdn))
    }
}

impl Store for LogStore {
    fn backend(&self) -> &'static str {
        self.shared.base.backend()
    }

    fn catalog(&self) -> Result<Option<Catalog>, StoreError> {
        Ok(self.shared.live()?.catalog.clone())
    }

    fn account(&self, msisdn: &str) -> Result<Option<AccountState>, StoreError> {
        {
            let st = self.shared.live()?;
            if let Some(a) = st.account(msisdn) {
                return Ok(Some(a.clone()));
            }
        }
        // Not in an overlay: either never written since the last checkpoint
        // or already checkpointed; the backend has the latest value.
        self.shared.base.account(msisdn)
    }

    fn accounts_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AccountState>, StoreError> {
        use std::ops::Bound;
        let _gate = self.shared.gate();
        let mut merged: BTreeMap<String, AccountState> = self
            .shared
            .base
            .accounts_after(after, limit)?
            .into_iter()
            .map(|a| (a.account.msisdn.clone(), a))
            .collect();
        let lower = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        for page in self.shared.overlays(|o| {
            o.accounts
                .range::<str, _>((lower, Bound::Unbounded))
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>()
        })? {
            merged.extend(page);
        }
        Ok(merged.into_values().take(limit).collect())
    }

    fn account_count(&self) -> Result<u64, StoreError> {
        let _gate = self.shared.gate();
        let mut keys: Vec<String> = Vec::new();
        for ks in self
            .shared
            .overlays(|o| o.accounts.keys().cloned().collect::<Vec<_>>())?
        {
            keys.extend(ks);
        }
        keys.sort_unstable();
        keys.dedup();
        let mut new = 0u64;
        for k in &keys {
            if self.shared.base.account(k)?.is_none() {
                new += 1;
            }
        }
        Ok(self.shared.base.account_count()? + new)
    }

    fn commit(&self, writes: Vec<Write>) -> Result<Committed, StoreError> {
        self.shared.stage(writes)?.wait()
    }

    fn stage(&self, writes: Vec<Write>) -> Result<Pending, StoreError> {
        self.shared.stage(writes)
    }

    fn log_syncs(&self) -> Option<u64> {
        Some(self.shared.syncs.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn log_marks(&self) -> Result<LogMarks, StoreError> {
        let st = self.shared.live()?;
        Ok(LogMarks {
            log_seq: st.durable_seq,
            next_outbox_id: st.next_outbox,
        })
    }

    fn statement(&self, msisdn: &str) -> Result<Vec<StatementLine>, StoreError> {
        let _gate = self.shared.gate();
        let mut out = self.shared.base.statement(msisdn)?;
        out.extend(self.shared.overlay_lines(|w| match w {
            Write::Statement(l) if l.msisdn == msisdn => Some(l.clone()),
            _ => None,
        })?);
        Ok(out)
    }

    fn journal(&self, msisdn: Option<&str>) -> Result<Vec<JournalLine>, StoreError> {
        let _gate = self.shared.gate();
        let mut out = self.shared.base.journal(msisdn)?;
        out.extend(self.shared.overlay_lines(|w| match w {
            Write::Journal(l) if msisdn.is_none_or(|m| l.msisdn == m) => Some(l.clone()),
            _ => None,
        })?);
        Ok(out)
    }

    fn outbox(&self, limit: usize) -> Result<Vec<(u64, Notice)>, StoreError> {
        Ok(self
            .shared
            .live()?
            .outbox
            .iter()
            .take(limit)
            .map(|(id, n)| (*id, n.clone()))
            .collect())
    }
}

impl Drop for LogStore {
    /// Clean close: a last checkpoint, so the next open has nothing to
    /// replay. (A crash instead leaves the log, which the next open replays.)
    fn drop(&mut self) {
        self.shared.lock().stop_checkpointer = true;
        self.shared.wake_checkpointer.notify_all();
        if let Some(t) = self.checkpointer.take() {
            let _ = t.join();
        }
        // No handle is left to stage more, so this covers everything.
        let last = self.shared.checkpoint();
        if let Err(e) = &last {
            tracing::warn!(error = %e, "final checkpoint failed; the log is replayed at the next open");
        }
        self.shared.lock().stop_syncer = true;
        self.shared.staged.notify_all();
        if let Some(t) = self.syncer.take() {
            let _ = t.join();
        }
        if last.is_ok() {
            let _ = remove_all_segments(&self.shared.dir);
            let _ = std::fs::remove_file(spare_path(&self.shared.dir));
        }
    }
}

#[cfg(test)]
mod tests;

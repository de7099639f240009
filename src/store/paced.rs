//! Big flushes written out a MiB at a time, so that the log's small
//! `fdatasync`s issued meanwhile do not wait behind them.
//!
//! Why: the project's disk (a virtio disk with a volatile write cache and no
//! FUA) makes every flush carry whatever anyone wrote before it. A log
//! checkpoint into redb dirties ~50 MB of scattered pages (at 7,800 req/s
//! one every ~0.47 s); written by one `fdatasync` they took 25–100 ms, and
//! the log syncs issued meanwhile took 5–22 ms instead of 0.2 ms — the p99
//! of the answers. Started and waited for a MiB at a time with
//! `sync_file_range` first, the final `fdatasync` has nothing left to write
//! and every log sync in between carries at most a MiB of the checkpoint's
//! pages: p99 at 7,800 req/s 7.4–12.4 → 4.2–4.9 ms, peak throughput −3 %
//! (benches/RESULTS.md, session 5; 256 KiB steps gave 3.2–3.6 ms but −10 %
//! peak).
//!
//! `sync_file_range` writes no metadata and flushes no disk cache: the
//! `fdatasync` that follows is still what makes the data durable. But a
//! write error it waits for is reported to it and not again to that
//! `fdatasync` (the kernel hands each error to one caller per open file),
//! so [`write_out`] returns it and the flush fails. Where the call does not
//! exist or does not apply to the file, the `fdatasync` does all the work.

use std::fs::File;
use std::io;
use std::sync::Mutex;

/// Dirty bytes written out per step.
pub const STEP_BYTES: u64 = 1 << 20;

/// Start writing `len` bytes at `offset` of `f` to the device and wait for
/// them. An error is a write that failed (the caller must not report the
/// data durable); `Ok` also when the call is not available for this file,
/// leaving everything to the caller's `fsync`.
pub fn write_out(f: &File, offset: u64, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (
            libc::off64_t::try_from(offset),
            libc::off64_t::try_from(len),
        ) else {
            return Ok(());
        };
        // SAFETY: a valid descriptor borrowed for the call; no memory is
        // passed.
        let rc = unsafe {
            libc::sync_file_range(
                f.as_raw_fd(),
                offset,
                len,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            // Not a regular file, or no such call: nothing was waited for.
            if !matches!(
                e.raw_os_error(),
                Some(libc::ESPIPE | libc::ENOSYS | libc::EINVAL)
            ) {
                return Err(e);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (f, offset, len);
    Ok(())
}

/// Group the written ranges `(offset, len)` (sorted by offset) into spans
/// `(start, end)` holding at least `step` written bytes each (the last may
/// hold less). A span may cover bytes nobody wrote; writing them out costs
/// nothing, as they are clean.
fn steps(written: &[(u64, u64)], step: u64) -> Vec<(u64, u64)> {
    let step = step.max(1);
    let mut out = Vec::new();
    let mut i = 0;
    while i < written.len() {
        let start = written[i].0;
        let (mut end, mut bytes) = (start, 0);
        while i < written.len() && bytes < step {
            let (offset, len) = written[i];
            end = end.max(offset + len);
            bytes += len;
            i += 1;
        }
        out.push((start, end));
    }
    out
}

/// redb's file backend with the paced flush above: it remembers where redb
/// wrote since the last sync, and `sync_data` writes those ranges out
/// [`STEP_BYTES`] at a time before the `fdatasync`.
#[derive(Debug)]
pub struct PacedFile {
    inner: redb::backends::FileBackend,
    /// The same open file (a duplicate descriptor) for `sync_file_range`;
    /// redb's backend does not lend its own.
    file: File,
    written: Mutex<Vec<(u64, u64)>>,
}

impl PacedFile {
    /// Wrap `file` (opened read-write); takes redb's exclusive lock on it
    /// like redb's own backend ([`redb::DatabaseError::DatabaseAlreadyOpen`]
    /// when another process has it).
    pub fn new(file: File) -> Result<PacedFile, redb::DatabaseError> {
        let dup = file.try_clone()?;
        Ok(PacedFile {
            inner: redb::backends::FileBackend::new(file)?,
            file: dup,
            written: Mutex::new(Vec::new()),
        })
    }

    fn take_written(&self) -> Vec<(u64, u64)> {
        std::mem::take(&mut *self.written.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl redb::StorageBackend for PacedFile {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, io::Error> {
        self.inner.read(offset, len)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.inner.set_len(len)
    }

    fn sync_data(&self, eventual: bool) -> Result<(), io::Error> {
        let mut written = self.take_written();
        // A small commit (one request without the log) is one step anyway:
        // writing it out first would only add a round trip to its fsync.
        if written.iter().map(|&(_, len)| len).sum::<u64>() > STEP_BYTES {
            written.sort_unstable();
            for (start, end) in steps(&written, STEP_BYTES) {
                write_out(&self.file, start, end - start)?;
            }
        }
        self.inner.sync_data(eventual)
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.inner.write(offset, data)?;
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((offset, data.len() as u64));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::StorageBackend;

    #[test]
    fn steps_hold_a_step_of_written_bytes_each() {
        type Ranges = &'static [(u64, u64)];
        // (written ranges, step) → spans
        let cases: &[(Ranges, u64, Ranges)] = &[
            (&[], 10, &[]),
            (&[(0, 4)], 10, &[(0, 4)]),
            // Two pages with a gap fill one step: one span over the gap.
            (&[(0, 4), (100, 4)], 8, &[(0, 104)]),
            (&[(0, 4), (100, 4), (200, 4)], 8, &[(0, 104), (200, 204)]),
            // A write bigger than a step is a span of its own.
            (&[(0, 64), (64, 4)], 8, &[(0, 64), (64, 68)]),
            // Overlapping writes (a page written twice) stay in one span.
            (&[(0, 8), (4, 8)], 16, &[(0, 12)]),
            // A zero step is one write per span, not a loop that never ends.
            (&[(0, 4), (8, 4)], 0, &[(0, 4), (8, 12)]),
        ];
        for (written, step, want) in cases {
            assert_eq!(steps(written, *step), *want, "{written:?} step {step}");
        }
    }

    #[test]
    #[cfg(target_os = "linux")] // O_PATH, and the only OS with the call
    fn write_out_reports_a_failure_and_skips_what_it_cannot_apply_to() {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = File::create(&path).unwrap();
        f.write_all(&[7u8; 3 * 4096]).unwrap();
        write_out(&f, 0, 3 * 4096).unwrap();
        // A descriptor that cannot do I/O: the kernel refuses (EBADF), and
        // the caller hears it rather than going on to call the data durable.
        let no_io = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(&path)
            .unwrap();
        let e = write_out(&no_io, 0, 4096).expect_err("EBADF is an error");
        assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
        // A pipe is no file to write out: left to the fsync, not an error.
        let (_r, w) = std::io::pipe().unwrap();
        let pipe = File::from(std::os::fd::OwnedFd::from(w));
        write_out(&pipe, 0, 4096).unwrap();
    }

    #[test]
    fn steps_cover_every_write_with_full_steps() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
        for case in 0..300 {
            let step = rng.gen_range(1..20_000u64);
            let mut written: Vec<(u64, u64)> = (0..rng.gen_range(0..200))
                .map(|_| (rng.gen_range(0..1_000_000u64), rng.gen_range(1..9_000u64)))
                .collect();
            written.sort_unstable();
            let spans = steps(&written, step);
            for &(offset, len) in &written {
                assert!(
                    spans.iter().any(|&(s, e)| s <= offset && offset + len <= e),
                    "case {case}: ({offset}, {len}) outside {spans:?}"
                );
            }
            // Every span but the last carries at least a step of writes.
            for &(s, e) in spans.iter().rev().skip(1) {
                let bytes: u64 = written
                    .iter()
                    .filter(|&&(o, _)| s <= o && o < e)
                    .map(|&(_, l)| l)
                    .sum();
                assert!(
                    bytes >= step,
                    "case {case}: span ({s}, {e}) holds {bytes} < {step}"
                );
            }
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_failed_write_out_fails_the_sync() {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        // The descriptor used for the write-out cannot do I/O (EBADF), as
        // a device that fails the writes would make it fail.
        let no_io = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(&path)
            .unwrap();
        let f = PacedFile {
            inner: redb::backends::FileBackend::new(file).unwrap(),
            file: no_io,
            written: Mutex::new(Vec::new()),
        };
        f.set_len(2 * STEP_BYTES).unwrap();
        for p in 0..(2 * STEP_BYTES / 4096) {
            f.write(p * 4096, &[1u8; 4096]).unwrap();
        }
        let e = f.sync_data(false).expect_err("the write-out failed");
        assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
    }

    #[test]
    fn a_paced_sync_keeps_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .unwrap()
        };
        let f = PacedFile::new(open()).unwrap();
        // More than a few steps, scattered and out of order.
        let page = 4096u64;
        let pages: Vec<u64> = (0..1500u64).map(|i| (i * 7919) % 3000).collect();
        f.set_len(3000 * page).unwrap();
        for &p in &pages {
            f.write(p * page, &[(p % 251) as u8; 4096]).unwrap();
        }
        f.sync_data(false).unwrap();
        assert!(f.take_written().is_empty(), "a sync forgets what it wrote");
        // A small commit (less than a step) takes the plain fsync.
        let small = [3001u64, 3002];
        f.set_len(3003 * page).unwrap();
        for &p in &small {
            f.write(p * page, &[(p % 251) as u8; 4096]).unwrap();
        }
        f.sync_data(false).unwrap();
        assert!(f.take_written().is_empty());
        let pages: Vec<u64> = pages.into_iter().chain(small).collect();
        // A second open of the file is refused while this one holds it.
        assert!(matches!(
            PacedFile::new(open()),
            Err(redb::DatabaseError::DatabaseAlreadyOpen)
        ));
        drop(f);
        let back = std::fs::read(&path).unwrap();
        for &p in &pages {
            let at = (p * page) as usize;
            assert!(
                back[at..at + 4096].iter().all(|&b| b == (p % 251) as u8),
                "page {p}"
            );
        }
    }
}

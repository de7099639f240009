// glibc malloc/free were ~20 % of the committer's samples (benches/RESULTS.md, section 10).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    no_transparent_huge_pages();
    std::process::exit(shortcode_gw::cli::main_with(std::env::args_os()));
}

/// Opt this process out of transparent huge pages (`PR_SET_THP_DISABLE`;
/// later page faults get 4 KiB pages, whatever the system setting).
///
/// Why: mimalloc asks for huge pages on its arena (`MADV_HUGEPAGE`) and
/// gives freed ranges back with `MADV_DONTNEED`, which splits them (229
/// huge-page faults and 132 splits in 10 s at 7,800 req/s). On the
/// project's KVM guest the committer stalled ~5 ms at a time in those
/// faults, in the middle of pure engine work, and that set the p99: 28–39
/// ms with huge pages, 7–9 ms without (one run of five: 27 ms), at the same
/// peak throughput (benches/RESULTS.md, session 5). mimalloc's own
/// `MIMALLOC_ALLOW_THP=0` does the same, but it is read from the
/// environment only, after mimalloc has started. A refusal (an old kernel)
/// or another OS leaves the system's setting: still correct, only slower.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments only; it changes a flag of this
    // process's memory map and touches no memory of ours. They are passed
    // as unsigned longs, as the kernel reads them (an int in a variadic
    // call may leave the upper half undefined, and any bit set in the
    // unused ones makes the call fail).
    unsafe {
        let (on, unused): (libc::c_ulong, libc::c_ulong) = (1, 0);
        libc::prctl(libc::PR_SET_THP_DISABLE, on, unused, unused, unused);
    }
}

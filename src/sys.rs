//! The one place tocsin calls the C library directly.

/// Returns freed heap memory to the operating system (glibc `malloc_trim`).
///
/// Why: every scrape allocates and frees its body, parsed samples and write batch (~20 MB at 100k
/// series); glibc keeps freed memory in per-thread arenas, so RSS settles far above the live heap.
/// Trimming after each store flush (every few seconds, a few ms of work) measured ~35% less RSS at
/// 100k series. A no-op on other C libraries.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only walks glibc's own arenas; it takes no pointers from us and is
        // thread-safe (it locks each arena).
        unsafe {
            malloc_trim(0);
        }
    }
}

/// How many malloc arenas glibc may create for the daemon's threads (`M_ARENA_MAX`).
pub const MALLOC_ARENAS: i32 = 2;

/// Caps glibc's malloc arenas at [`MALLOC_ARENAS`] (as `MALLOC_ARENA_MAX=2` would); `main`
/// calls it unless the environment sets `MALLOC_ARENA_MAX` itself. Call before the runtime
/// starts its threads.
///
/// Why: glibc gives each contending thread an arena of its own, up to 8 per core; the daemon's
/// worker, blocking and evaluation threads (30-40 with many rule groups) each kept a 13-65 MB
/// arena whose free memory [`release_free_memory`] cannot return while a chunk at its top
/// lives. Measured with `benches/vmalert.sh` at 10,000 rules: RSS 123 → 111 MB with the cap;
/// the daemon's allocation pattern is many small objects, for which a shared arena costs
/// little contention. A no-op on other C libraries.
pub fn limit_malloc_arenas() {
    /// glibc's `M_ARENA_MAX` (malloc.h)
    const M_ARENA_MAX: i32 = -8;
    mallopt(M_ARENA_MAX, MALLOC_ARENAS);
}

/// Sets one glibc malloc tunable (`mallopt`); a no-op on other C libraries. Only before the
/// runtime starts its threads.
fn mallopt(param: i32, value: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // SAFETY: mallopt only sets a glibc tunable; it takes no pointers from us and is called
        // before the runtime starts its threads
        unsafe {
            mallopt(param, value);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = (param, value);
}

/// Blocks of at least this many bytes are mapped apart and unmapped when freed (`M_MMAP_THRESHOLD`).
/// Above the HTTP client's read buffer (412 KB at most): mapped apart, every buffer a scrape
/// reads into was fresh memory (10 a second at 100k series, page faults 6% of the CPU).
pub const MALLOC_MMAP_THRESHOLD: i32 = 512 << 10;
/// Free memory above this at the heap's top goes back at once (`M_TRIM_THRESHOLD`).
pub const MALLOC_TRIM_THRESHOLD: i32 = 1 << 20;

/// Sets glibc's mmap threshold to [`MALLOC_MMAP_THRESHOLD`] (when `mmap`) and its trim
/// threshold to [`MALLOC_TRIM_THRESHOLD`] (when `trim`); `main` leaves out the one whose glibc
/// variable (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`) the environment sets. Call before
/// the runtime starts its threads.
///
/// Why: by default glibc raises its mmap threshold to the largest block freed so far (up to 32
/// MiB), so after the first scrape a scrape's parsed batch and a flush's write-ahead buffers
/// (megabytes each at 100k series, every second) come from the heap, and what they leave free
/// between flushes stays in it. Measured with tocsin alone on `target.py` at 100k series @ 1 s
/// (RSS mean over 120 s): 134 MB by default, 106 MB with 64 KB and 128 KB (anonymous 114 ->
/// 86 MB). At 512 KB and 1 MB the HTTP client's read buffers are reused instead of mapped
/// afresh: CPU -10%, RSS +1 MB (`benches/` A/B, two runs each). A no-op on other C libraries.
pub fn tune_malloc_thresholds(mmap: bool, trim: bool) {
    /// glibc's `M_TRIM_THRESHOLD` and `M_MMAP_THRESHOLD` (malloc.h)
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    if mmap {
        mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD);
    }
    if trim {
        mallopt(M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD);
    }
}

/// The message [`exit_clearly_on_bus_error`] writes, built before the handler is installed (a
/// signal handler may not allocate).
static BUS_ERROR_MESSAGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

/// The exit code after a bus error: `EX_IOERR`, an input/output error.
pub const BUS_ERROR_EXIT_CODE: i32 = 74;

/// Turns a bus error into a clear exit: on SIGBUS the process writes one line to stderr naming
/// the store and exits with [`BUS_ERROR_EXIT_CODE`].
///
/// Why: SQLite maps its `-shm` file (WAL mode) into memory; when the file system under the store
/// fills up, is remounted read-only or goes away, touching that memory raises SIGBUS, whose
/// default action kills the process with no log line at all. Surviving it is not possible (the
/// faulting access would repeat), so the daemon says why it stops and stops; the store's last
/// flush is durable and `tocsin run` resumes from it. The handler only calls `write` and
/// `_exit`, both async-signal-safe. Installed once by `tocsin run`; later calls keep the first
/// message.
pub fn exit_clearly_on_bus_error(store: &std::path::Path) {
    let message = format!(
        "tocsin: fatal: bus error (SIGBUS) on a memory-mapped file of the store {}: its file system is full, read-only or gone; exiting with code {BUS_ERROR_EXIT_CODE} (data up to the last flush is kept)\n",
        store.display()
    );
    if BUS_ERROR_MESSAGE.set(message.into_bytes()).is_err() {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        const SIGBUS: i32 = 7;
        unsafe extern "C" {
            fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
        }
        // SAFETY: installs a handler that only reads a message initialised above and calls
        // async-signal-safe functions.
        unsafe {
            signal(SIGBUS, on_bus_error);
        }
    }
}

#[cfg(target_os = "linux")]
extern "C" fn on_bus_error(_signum: i32) {
    unsafe extern "C" {
        fn write(fd: i32, buf: *const u8, count: usize) -> isize;
        fn _exit(status: i32) -> !;
    }
    // SAFETY: the message was set before the handler was installed and is never changed; write
    // and _exit are async-signal-safe.
    unsafe {
        if let Some(m) = BUS_ERROR_MESSAGE.get() {
            write(2, m.as_ptr(), m.len());
        }
        _exit(BUS_ERROR_EXIT_CODE);
    }
}

/// `sysconf(_SC_CLK_TCK)` and `sysconf(_SC_PAGESIZE)`: the units of `/proc/self/stat`'s CPU times
/// and resident pages (100 and 4096 where sysconf is not available).
pub fn clock_ticks_and_page_size() -> (i64, u64) {
    #[cfg(target_os = "linux")]
    {
        const SC_CLK_TCK: i32 = 2;
        const SC_PAGESIZE: i32 = 30;
        unsafe extern "C" {
            fn sysconf(name: i32) -> i64;
        }
        // SAFETY: sysconf reads a constant of the C library; it takes no pointers.
        let (ticks, page) = unsafe { (sysconf(SC_CLK_TCK), sysconf(SC_PAGESIZE)) };
        (
            if ticks > 0 { ticks } else { 100 },
            if page > 0 { page as u64 } else { 4096 },
        )
    }
    #[cfg(not(target_os = "linux"))]
    {
        (100, 4096)
    }
}

/// Asks the processor to bring the cache line holding `p` into every cache level, without
/// waiting for it: the head's appends call this for memory a later sample's append reads (the
/// series' entry, its open chunk), so those reads overlap instead of each stalling in turn. Any
/// address is fine: a prefetch dereferences nothing and cannot fault. On other architectures
/// than x86-64 it does nothing.
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: SSE is part of x86-64; a prefetch is a hint that dereferences nothing and
        // cannot fault, whatever the address
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The nice value API queries run at: below rule evaluations (0), so a burst of heavy ad-hoc
/// queries slows the queries, not the alerting.
pub const QUERY_NICE: i32 = 10;

/// Sets the calling thread's nice value (Linux: nice is per thread; `setpriority` with `who` 0
/// is the calling thread). Raising it needs no privilege; it is never lowered again, so only
/// threads dedicated to lower-priority work call this. Returns whether it took effect.
pub fn lower_thread_priority(nice: i32) -> bool {
    #[cfg(target_os = "linux")]
    {
        const PRIO_PROCESS: i32 = 0;
        unsafe extern "C" {
            fn setpriority(which: i32, who: u32, prio: i32) -> i32;
        }
        // SAFETY: setpriority takes no pointers; who 0 is the calling thread on Linux.
        unsafe { setpriority(PRIO_PROCESS, 0, nice) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = nice;
        false
    }
}

/// Hands the kernel back the pages of the daemon's own executable that are resident but unused
/// since (`madvise(MADV_PAGEOUT)` over its read-only, unmodified mappings); returns the bytes of
/// mappings advised. Code still in use faults back in at its next call, from the page cache.
///
/// Why: start-up runs code the steady state never runs again (configuration and rule parsing,
/// the store's open and replay, the first evaluation's compilation), and the kernel maps the
/// executable's pages around each faulting one too (fault-around), so ~22 of a 21 MB text's
/// pages were resident at 100k series, most for nothing. Measured with tocsin alone on
/// `target.py` at 100k series @ 1 s: the executable's resident pages 21.9 → 11.3 MB after the
/// advice, and 11.4 MB a minute later (`benches/`: `compare_prometheus.py` reports the RSS with
/// and without the anonymous part). Mappings written to (relocated data) are left alone, so no
/// page goes to swap. Linux only; elsewhere, and on kernels before 5.4, it does nothing.
pub fn release_unused_code_pages() -> std::io::Result<u64> {
    #[cfg(target_os = "linux")]
    {
        const MADV_PAGEOUT: i32 = 21;
        unsafe extern "C" {
            fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
        }
        let exe = std::fs::read_link("/proc/self/exe")?;
        let smaps = std::fs::read_to_string("/proc/self/smaps")?;
        let mut advised = 0u64;
        for (start, end) in clean_read_only_mappings_of(&smaps, &exe.to_string_lossy()) {
            // SAFETY: the range is a whole mapping of the executable that is not writable and
            // holds no modified page; MADV_PAGEOUT only drops resident pages, whose contents
            // the file gives back at the next access, so no memory the program sees changes.
            let rc = unsafe { madvise(start as *mut std::ffi::c_void, end - start, MADV_PAGEOUT) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            advised += (end - start) as u64;
        }
        Ok(advised)
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(0)
    }
}

/// The address ranges of `/proc/self/smaps` entries that map `exe`, are not writable and hold no
/// anonymous (modified) page.
fn clean_read_only_mappings_of(smaps: &str, exe: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    // the mapping being read: its range, and whether it qualifies so far
    let mut current: Option<(usize, usize)> = None;
    let mut close = |current: &mut Option<(usize, usize)>| {
        if let Some(range) = current.take() {
            out.push(range);
        }
    };
    for line in smaps.lines() {
        let mut fields = line.split_ascii_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            close(&mut current);
            let perms = fields.next().unwrap_or_default();
            // offset, device, inode, then the path (which may hold spaces, or end in " (deleted)")
            let path = line.splitn(6, ' ').nth(5).unwrap_or_default().trim_start();
            let path = path.strip_suffix(" (deleted)").unwrap_or(path);
            if path == exe && !perms.contains('w') && b > a {
                current = Some((a, b));
            }
        } else if first == "Anonymous:" && fields.next() != Some("0") {
            current = None;
        }
    }
    close(&mut current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0a0000000-55d0a0200000 r--p 00000000 fd:01 42 /opt/tocsin/bin/tocsin
Rss:                1024 kB
Anonymous:             0 kB
55d0a0200000-55d0a1600000 r-xp 00200000 fd:01 42 /opt/tocsin/bin/tocsin
Rss:               16000 kB
Anonymous:             0 kB
55d0a1600000-55d0a1800000 r--p 01600000 fd:01 42 /opt/tocsin/bin/tocsin
Rss:                1800 kB
Anonymous:          1792 kB
55d0a1800000-55d0a1801000 rw-p 01800000 fd:01 42 /opt/tocsin/bin/tocsin
Anonymous:             4 kB
55d0a1801000-55d0a1802000 r-xp 00000000 fd:01 43 /opt/tocsin/bin/tocsin-old
Anonymous:             0 kB
7f0000000000-7f0000100000 r-xp 00000000 fd:01 44 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7f0000200000-7f0000300000 rw-p 00000000 00:00 0
Anonymous:          1024 kB
";

    #[test]
    fn only_the_executables_unmodified_read_only_mappings_are_released() {
        assert_eq!(
            clean_read_only_mappings_of(SMAPS, "/opt/tocsin/bin/tocsin"),
            vec![
                (0x55d0a0000000, 0x55d0a0200000),
                (0x55d0a0200000, 0x55d0a1600000)
            ]
        );
        let deleted = SMAPS.replace("/bin/tocsin\n", "/bin/tocsin (deleted)\n");
        assert_eq!(
            clean_read_only_mappings_of(&deleted, "/opt/tocsin/bin/tocsin").len(),
            2,
            "a replaced executable's mappings end in \" (deleted)\""
        );
        assert!(clean_read_only_mappings_of(SMAPS, "/usr/bin/other").is_empty());
        assert!(clean_read_only_mappings_of("garbage\n-\nzz-yy r-xp\n", "").is_empty());
    }

    /// The executable's resident pages, from `/proc/self/status` (`RssFile` counts the shared
    /// libraries' too, which the advice leaves alone).
    #[cfg(target_os = "linux")]
    fn resident_file_kb() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssFile:")).unwrap();
        line.split_ascii_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn released_code_pages_leave_the_resident_set_and_the_code_still_runs() {
        let before = resident_file_kb();
        let advised = match release_unused_code_pages() {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(22) => {
                eprintln!("skipped: this kernel has no MADV_PAGEOUT (before Linux 5.4): {e}");
                return;
            }
            Err(e) => panic!("madvise failed: {e}"),
        };
        assert!(advised > 0, "the test binary's text was not found in smaps");
        let after = resident_file_kb();
        assert!(
            after < before,
            "resident file pages {before} kB before the advice, {after} kB after"
        );
        // and what was released comes back when it runs
        assert!(clean_read_only_mappings_of(SMAPS, "/opt/tocsin/bin/tocsin").len() == 2);
    }
}

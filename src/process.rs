//! The `process_*` self-metrics every Prometheus client library exports (CPU, memory, file
//! descriptors, start time), read from Linux's `/proc/self`, so dashboards and alerts written
//! for other exporters work on tocsin unchanged. Elsewhere nothing is exported.

use std::fmt::Write;

/// One reading of the process's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_memory_bytes: u64,
    pub virtual_memory_bytes: u64,
    pub start_time_seconds: f64,
    pub threads: u64,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

/// Parses `/proc/self/stat` (`man 5 proc`): fields after the command name, which is in
/// parentheses and may itself hold spaces and parentheses. `ticks` is `_SC_CLK_TCK`, `page` the
/// page size, `boot_time` the `btime` of `/proc/stat` (seconds since the epoch).
pub fn parse_stat(stat: &str, ticks: f64, page: u64, boot_time: f64) -> Option<ProcessStats> {
    let after = &stat[stat.rfind(')')? + 1..];
    // after the name: field 3 (state) is index 0
    let f: Vec<&str> = after.split_ascii_whitespace().collect();
    let num = |field: usize| -> Option<u64> { f.get(field - 3)?.parse().ok() };
    let utime = num(14)?;
    let stime = num(15)?;
    let threads = num(20)?;
    let start_ticks = num(22)?;
    let vsize = num(23)?;
    let rss_pages = num(24)?;
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / ticks,
        resident_memory_bytes: rss_pages.saturating_mul(page),
        virtual_memory_bytes: vsize,
        start_time_seconds: boot_time + start_ticks as f64 / ticks,
        threads,
        open_fds: None,
        max_fds: None,
    })
}

/// `btime` of `/proc/stat`: when the machine booted, seconds since the epoch.
pub fn parse_boot_time(proc_stat: &str) -> Option<f64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit of `Max open files` in `/proc/self/limits` (None when unlimited).
pub fn parse_max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Reads the process's stats now (blocking: a few small reads of `/proc`); None where `/proc`
/// is not Linux's.
pub fn read() -> Option<ProcessStats> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = parse_boot_time(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let (ticks, page) = crate::sys::clock_ticks_and_page_size();
    let mut s = parse_stat(&stat, ticks as f64, page, boot)?;
    s.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    s.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| parse_max_fds(&l));
    Some(s)
}

/// Appends the stats in the text exposition format (OpenMetrics and Prometheus 0.0.4 alike),
/// under the names client libraries use.
pub fn encode(s: &ProcessStats, out: &mut String) {
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{} {value}\n",
            if kind == "counter" { "_total" } else { "" }
        );
    };
    metric(
        "process_cpu_seconds",
        "counter",
        "Total user and system CPU time spent in seconds.",
        format!("{}", s.cpu_seconds),
    );
    metric(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        s.resident_memory_bytes.to_string(),
    );
    metric(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        s.virtual_memory_bytes.to_string(),
    );
    metric(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        format!("{}", s.start_time_seconds),
    );
    metric(
        "process_threads",
        "gauge",
        "Number of OS threads in the process.",
        s.threads.to_string(),
    );
    if let Some(n) = s.open_fds {
        metric(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            n.to_string(),
        );
    }
    if let Some(n) = s.max_fds {
        metric(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            n.to_string(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line, with a command name holding a space and a parenthesis.
    const STAT: &str = "4242 (tocsin (x) y) S 1 4242 4242 0 -1 4194560 25000 0 0 0 350 150 0 0 20 0 9 0 123400 987654321 5000 18446744073709551615 1 1 0 0 0 0 0 4096 17615 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let s = parse_stat(STAT, 100.0, 4096, 1_700_000_000.0).unwrap();
        assert_eq!(s.cpu_seconds, 5.0);
        assert_eq!(s.threads, 9);
        assert_eq!(s.virtual_memory_bytes, 987_654_321);
        assert_eq!(s.resident_memory_bytes, 5000 * 4096);
        assert_eq!(s.start_time_seconds, 1_700_001_234.0);
        assert_eq!(parse_stat("4242 (truncated", 100.0, 4096, 0.0), None);
        assert_eq!(parse_stat("4242 (x) S 1 2", 100.0, 4096, 0.0), None);
    }

    #[test]
    fn boot_time_and_fd_limit_are_found_by_name() {
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000.0)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        assert_eq!(
            parse_max_fds(
                "Max open files            unlimited            unlimited            files\n"
            ),
            None
        );
    }

    #[test]
    fn this_process_is_read_and_encoded_under_the_client_library_names() {
        let Some(s) = read() else {
            return; // not Linux
        };
        assert!(s.threads >= 1 && s.resident_memory_bytes > 0);
        assert!(s.open_fds.is_some_and(|n| n >= 3));
        let mut out = String::new();
        encode(&s, &mut out);
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_start_time_seconds ",
            "process_open_fds ",
        ] {
            assert!(out.contains(name), "{name} in {out}");
        }
        assert!(out.contains("# TYPE process_cpu_seconds counter"), "{out}");
    }
}

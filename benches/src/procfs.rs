//! What `/proc` says about a process: CPU time (utime + stime) and resident memory.

use std::time::Duration;

/// Clock ticks per second of `/proc/*/stat` times (`getconf CLK_TCK`; 100 on every Linux
/// this runs on, asked once in case it is not).
pub fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t: &u64| t > 0)
            .unwrap_or(100)
    })
}

/// utime + stime from the text of a `stat` file (fields 14 and 15, counted after the `comm`
/// field, which may itself hold spaces and parentheses).
fn stat_cpu(text: &str) -> Option<Duration> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state): utime is field 14, so the 12th here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime + stime;
    let hz = clock_ticks();
    Some(Duration::from_secs(ticks / hz) + Duration::from_nanos((ticks % hz) * 1_000_000_000 / hz))
}

/// CPU time (user + system) process `pid` has used so far, all threads included.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU time used so far by this process's threads whose name starts with `prefix` (tokio
/// runtimes here name their threads, so the load generator and the in-process mocks can be
/// told apart).
pub fn own_threads_cpu(prefix: &str) -> Duration {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm"))
                .is_ok_and(|c| c.trim_end().starts_with(prefix))
        })
        .filter_map(|e| stat_cpu(&std::fs::read_to_string(e.path().join("stat")).ok()?))
        .sum()
}

/// A `/proc/PID/status` line in KiB, e.g. `VmRSS` or `VmHWM` (peak RSS).
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let text = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1 1 1";
        let hz = clock_ticks();
        assert_eq!(
            stat_cpu(text),
            Some(Duration::from_nanos(300 * 1_000_000_000 / hz))
        );
    }

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(process_cpu(pid).is_some());
        assert!(status_kib(pid, "VmRSS").is_some_and(|k| k > 0));
    }
}

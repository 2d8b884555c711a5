//! `pairgate_build_info` and the `process_*` metrics Prometheus users expect, read from
//! `/proc/self` at scrape time (Linux; elsewhere only what can be known is written).

use std::fmt::Write as _;

/// What `pairgate_build_info` reports; the binary fills it from its build script.
#[derive(Debug, Clone, Copy)]
pub struct BuildInfo {
    /// The crate version.
    pub version: &'static str,
    /// The commit built (`unknown` outside a git checkout).
    pub commit: &'static str,
    /// The compiler's version line.
    pub rustc: &'static str,
}

/// Appends `pairgate_build_info` and the process metrics to `out`.
pub fn render(out: &mut String, build: &BuildInfo) {
    let _ = writeln!(
        out,
        "# HELP pairgate_build_info The running build; always 1.\n# TYPE pairgate_build_info gauge\npairgate_build_info{{version=\"{}\",commit=\"{}\",rustc=\"{}\"}} 1",
        label(build.version),
        label(build.commit),
        label(build.rustc)
    );
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let fields = stat.as_deref().and_then(stat_fields);
    let ticks = clock_ticks();
    if let Some(f) = &fields {
        let cpu = (f.utime + f.stime) as f64 / ticks;
        gauge(
            out,
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
            cpu,
        );
        if let Some(boot) = boot_time() {
            let start = boot as f64 + f.starttime as f64 / ticks;
            gauge(
                out,
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since the Unix epoch, in seconds.",
                start,
            );
        }
        gauge(
            out,
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            f.vsize as f64,
        );
    }
    if let Some(kib) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(resident_kib)
    {
        gauge(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            (kib * 1024) as f64,
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            out,
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            dir.count() as f64,
        );
    }
    if let Some(max) = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .as_deref()
        .and_then(max_open_files)
    {
        gauge(
            out,
            "process_max_fds",
            "gauge",
            "The limit on open file descriptors.",
            max as f64,
        );
    }
}

fn gauge(out: &mut String, name: &str, kind: &str, help: &str, v: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
    );
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', " ")
}

/// The fields of `/proc/self/stat` used here (proc(5) numbering: utime 14, stime 15,
/// starttime 22, vsize 23).
#[derive(Debug, PartialEq)]
struct StatFields {
    utime: u64,
    stime: u64,
    starttime: u64,
    vsize: u64,
}

fn stat_fields(stat: &str) -> Option<StatFields> {
    // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (state).
    let f: Vec<&str> = rest.split_whitespace().collect();
    let at = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some(StatFields {
        utime: at(14)?,
        stime: at(15)?,
        starttime: at(22)?,
        vsize: at(23)?,
    })
}

fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    // "Max open files            1024                 524288               files"
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn boot_time() -> Option<u64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

/// `sysconf(_SC_CLK_TCK)` is 100 on every Linux architecture Rust targets (the kernel's
/// USER_HZ); reading it would need libc, which the workspace keeps out.
fn clock_ticks() -> f64 {
    100.0
}

/// `VmRSS` of `/proc/self/status`, in KiB (exact, unlike `stat`'s page count times a guessed
/// page size).
fn resident_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let stat = "42 (pair gate) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1234 567890 321 18446744073709551615";
        assert_eq!(
            stat_fields(stat),
            Some(StatFields {
                utime: 250,
                stime: 50,
                starttime: 1234,
                vsize: 567_890,
            })
        );
    }

    #[test]
    fn parses_resident_memory() {
        assert_eq!(
            resident_kib("Name:\tpairgate\nVmRSS:\t  12345 kB\n"),
            Some(12_345)
        );
    }

    #[test]
    fn parses_the_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
    }

    #[test]
    fn renders_on_this_machine() {
        let mut out = String::new();
        render(
            &mut out,
            &BuildInfo {
                version: "1.2.3",
                commit: "abc",
                rustc: "rustc 1.90.0",
            },
        );
        assert!(out.contains(
            "pairgate_build_info{version=\"1.2.3\",commit=\"abc\",rustc=\"rustc 1.90.0\"} 1"
        ));
        if cfg!(target_os = "linux") {
            for name in [
                "process_cpu_seconds_total ",
                "process_resident_memory_bytes ",
                "process_open_fds ",
                "process_max_fds ",
                "process_start_time_seconds ",
            ] {
                assert!(out.contains(name), "{name} missing:\n{out}");
            }
        }
    }
}

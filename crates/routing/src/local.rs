//! Failures caused by the gateway's own resources (file descriptors), not by an account: a
//! probe or a request that could not even open a socket says nothing about the account it was
//! meant for. They are counted here (exported as `pairgate_local_resource_errors_total`) and
//! logged at most once a second per place, never fed to health checking.
//!
//! No IO: this only reads errors and counts.

use std::error::Error as StdError;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Which resource ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalKind {
    /// The process's descriptor limit (`EMFILE`, `RLIMIT_NOFILE`).
    ProcessFiles,
    /// The system-wide descriptor limit (`ENFILE`).
    SystemFiles,
}

/// Where the gateway ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalSite {
    /// Accepting a client connection.
    Accept,
    /// A health probe's connection.
    Probe,
    /// A request's upstream connection.
    Upstream,
}

impl LocalKind {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            LocalKind::ProcessFiles => "emfile",
            LocalKind::SystemFiles => "enfile",
        }
    }

    const ALL: [LocalKind; 2] = [LocalKind::ProcessFiles, LocalKind::SystemFiles];
}

impl LocalSite {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            LocalSite::Accept => "accept",
            LocalSite::Probe => "probe",
            LocalSite::Upstream => "upstream",
        }
    }

    const ALL: [LocalSite; 3] = [LocalSite::Accept, LocalSite::Probe, LocalSite::Upstream];
}

// EMFILE and ENFILE have these numbers on Linux, macOS and the BSDs.
#[cfg(unix)]
const EMFILE: i32 = 24;
#[cfg(unix)]
const ENFILE: i32 = 23;

/// The local resource an IO error reports running out of, if any.
pub fn io_local_kind(err: &std::io::Error) -> Option<LocalKind> {
    #[cfg(unix)]
    match err.raw_os_error() {
        Some(EMFILE) => return Some(LocalKind::ProcessFiles),
        Some(ENFILE) => return Some(LocalKind::SystemFiles),
        _ => {}
    }
    let _ = err;
    None
}

/// [`io_local_kind`] of the first IO error in `err` or its chain of sources.
pub fn local_kind(err: &(dyn StdError + 'static)) -> Option<LocalKind> {
    let mut at = Some(err);
    while let Some(e) = at {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(kind) = io_local_kind(io) {
                return Some(kind);
            }
            // An IO error wrapping another: its `source()` skips the wrapped error itself.
            if let Some(inner) = io.get_ref() {
                at = Some(inner);
                continue;
            }
        }
        at = e.source();
    }
    None
}

/// Counters of local resource errors, by kind and place.
pub struct LocalErrors {
    counts: [[AtomicU64; 3]; 2],
    /// Per place: milliseconds since `epoch()` of the last warning (0: never).
    last_warned: [AtomicU64; 3],
}

/// The process's counters: descriptors are a process-wide resource.
pub static LOCAL_ERRORS: LocalErrors = LocalErrors {
    counts: [const { [const { AtomicU64::new(0) }; 3] }; 2],
    last_warned: [const { AtomicU64::new(0) }; 3],
};

/// A warning at most this often per place.
const WARN_EVERY_MS: u64 = 1000;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl LocalErrors {
    /// Counts one error and warns, at most once a second per place.
    pub fn record(&self, kind: LocalKind, site: LocalSite) {
        let total = self.counts[kind as usize][site as usize].fetch_add(1, Ordering::Relaxed) + 1;
        // +1: 0 means "never warned".
        let now = u64::try_from(epoch().elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = &self.last_warned[site as usize];
        let before = last.load(Ordering::Relaxed);
        if (before == 0 || now.saturating_sub(before) >= WARN_EVERY_MS)
            && last
                .compare_exchange(before, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                kind = kind.label(),
                at = site.label(),
                total,
                "the gateway is out of file descriptors; not counted against any account (raise the descriptor limit or lower limits.max_connections)"
            );
        }
    }

    /// Every counter: (kind, place, count).
    pub fn counts(&self) -> impl Iterator<Item = (&'static str, &'static str, u64)> + '_ {
        LocalKind::ALL.into_iter().flat_map(move |kind| {
            LocalSite::ALL.into_iter().map(move |site| {
                (
                    kind.label(),
                    site.label(),
                    self.counts[kind as usize][site as usize].load(Ordering::Relaxed),
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_errors_are_local_and_others_are_not() {
        #[cfg(unix)]
        {
            let emfile = std::io::Error::from_raw_os_error(EMFILE);
            assert_eq!(io_local_kind(&emfile), Some(LocalKind::ProcessFiles));
            let enfile = std::io::Error::from_raw_os_error(ENFILE);
            assert_eq!(io_local_kind(&enfile), Some(LocalKind::SystemFiles));
            // Wrapped, as hyper-util's connect errors wrap the socket error.
            let wrapped = std::io::Error::other(emfile);
            assert_eq!(local_kind(&wrapped), Some(LocalKind::ProcessFiles));
        }
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(io_local_kind(&refused), None);
        assert_eq!(local_kind(&refused), None);
    }
}

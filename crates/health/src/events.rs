//! The bounded in-memory event log: transitions, health verdicts and (later) operator actions.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use pairgate_failover::{Health, Side};

/// Why a tenant moved, as events and logs spell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CauseInfo {
    /// `primary_unhealthy`, `passive_5xx` (the account left was ejected for consecutive live
    /// 5xx), `region_outage`, `region_marked_down`, `secondary_unhealthy`, `failback`,
    /// `pinned`, `unpinned`, `manual_failback`, `both_down`, `recovered`, `reconfigured`.
    pub label: &'static str,
    /// The region involved, for region causes.
    pub region: Option<Arc<str>>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A tenant's active side or reject flag changed (one atomic store).
    Transition {
        /// Tenant name.
        tenant: Arc<str>,
        /// Side before.
        from: Side,
        /// Side after.
        to: Side,
        /// Whether the tenant now answers 503 (`both_down = "reject"`).
        reject: bool,
        /// Why.
        cause: CauseInfo,
        /// The tenant's generation after the change.
        generation: u64,
    },
    /// An operator pinned or unpinned a tenant.
    Pin {
        /// Tenant name.
        tenant: Arc<str>,
        /// `primary`, `secondary` or `auto`.
        mode: &'static str,
        /// The operator's reason.
        reason: String,
    },
    /// A hold on a region was taken or released.
    RegionState {
        /// Region name.
        region: Arc<str>,
        /// The region's state after the change: `down` (some hold remains) or `auto`.
        state: &'static str,
        /// `hold`, `release` or `release_all`.
        action: &'static str,
        /// The holder id (`operator`, `incident:<tracking id>`), `*` for `release_all`.
        holder: String,
        /// Why (an alert's tracking id, an operator's note).
        reason: String,
        /// `operator` or `azure-monitor`.
        source: &'static str,
    },
    /// An operator change (pin, region state) could not be written to the state file and was
    /// refused.
    StateNotPersisted {
        /// What was asked, e.g. `tenant contoso mode secondary`.
        change: String,
        /// The write's error.
        error: String,
    },
    /// A config was loaded (or rejected).
    Reload {
        /// The config generation now serving.
        generation: u64,
        /// Whether the new config was accepted.
        accepted: bool,
        /// Problems, when rejected.
        problems: Vec<String>,
    },
    /// Fleet mode: this replica's own verdict on an account differs from the fleet's.
    Disagreement {
        /// Account name.
        account: Arc<str>,
        /// This replica's verdict.
        local: Health,
        /// The fleet's verdict (majority of the replicas probing it).
        fleet: Health,
    },
    /// An account's verdict changed.
    AccountHealth {
        /// Account name.
        account: Arc<str>,
        /// New verdict.
        health: Health,
        /// What tipped it: a probe result label or `passive` (live traffic).
        reason: &'static str,
    },
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Increasing sequence number, starting at 1.
    pub seq: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// What happened.
    pub kind: EventKind,
}

struct Inner {
    buf: VecDeque<Event>,
    next_seq: u64,
}

/// A bounded, append-only log; the oldest events fall off once `capacity` is reached.
pub struct EventLog {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl EventLog {
    /// A log keeping at most `capacity` events.
    pub fn new(capacity: usize) -> EventLog {
        EventLog {
            inner: Mutex::new(Inner {
                buf: VecDeque::with_capacity(capacity.min(1024)),
                next_seq: 1,
            }),
            capacity: capacity.max(1),
        }
    }

    /// Appends several events under one lock; returns the last sequence number used.
    pub fn extend(&self, kinds: impl IntoIterator<Item = EventKind>) -> u64 {
        let at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for kind in kinds {
            let seq = inner.next_seq;
            inner.next_seq += 1;
            if inner.buf.len() == self.capacity {
                inner.buf.pop_front();
            }
            inner.buf.push_back(Event {
                seq,
                at_unix_ms,
                kind,
            });
        }
        inner.next_seq - 1
    }

    /// Appends one event; returns its sequence number.
    pub fn push(&self, kind: EventKind) -> u64 {
        self.extend([kind])
    }

    /// Up to `limit` events with `seq > after`, oldest first.
    pub fn after(&self, after: u64, limit: usize) -> Vec<Event> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Sequence numbers are contiguous in the buffer, so the start index is arithmetic.
        let first = inner.buf.front().map_or(after + 1, |e| e.seq);
        let skip = usize::try_from((after + 1).saturating_sub(first)).unwrap_or(usize::MAX);
        inner.buf.iter().skip(skip).take(limit).cloned().collect()
    }

    /// The newest sequence number (0 when empty).
    pub fn last_seq(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_seq
            - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(n: u64) -> EventKind {
        EventKind::AccountHealth {
            account: format!("a{n}").into(),
            health: Health::Healthy,
            reason: "success",
        }
    }

    #[test]
    fn bounded_and_paged_by_sequence() {
        let log = EventLog::new(3);
        for n in 0..5 {
            log.push(health(n));
        }
        assert_eq!(log.last_seq(), 5);
        let seqs: Vec<u64> = log.after(0, 10).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5], "oldest fall off");
        let seqs: Vec<u64> = log.after(3, 10).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![4, 5]);
        assert!(log.after(5, 10).is_empty());
        assert_eq!(log.after(0, 1).len(), 1);
    }
}

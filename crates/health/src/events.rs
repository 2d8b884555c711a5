//! The bounded in-memory event log: transitions, health verdicts, operator actions and reloads.

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
    /// A hold on an account was taken or released (a Service Health incident sent for its
    /// subscription, the operator).
    AccountState {
        /// Account name.
        account: Arc<str>,
        /// The account's state after the change: `down` (some hold remains) or `auto`.
        state: &'static str,
        /// `hold`, `release` or `release_all`.
        action: &'static str,
        /// The holder id (`operator`, `incident:<tracking id>`), `*` for `release_all`.
        holder: String,
        /// Why (the incident's tracking id and subscription, an operator's note).
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
        /// Why the probe failed (`tls: invalid peer certificate: Expired`), at most
        /// [`MAX_EVENT_TEXT`] bytes (the prober keeps less already).
        detail: Option<Arc<str>>,
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

/// The longest free text (a reason, one problem line) an event keeps, in bytes.
pub const MAX_EVENT_TEXT: usize = 512;
/// The most problems a reload event keeps; the rest are counted in a last line.
pub const MAX_EVENT_PROBLEMS: usize = 20;

impl EventKind {
    /// The event with its free text bounded ([`MAX_EVENT_TEXT`], [`MAX_EVENT_PROBLEMS`]): the log
    /// holds a fixed number of events, and this makes each one's size fixed too, whatever an
    /// alert, an operator or a broken config put in it.
    fn bounded(mut self) -> EventKind {
        match &mut self {
            EventKind::Pin { reason, .. } => pairgate_config::clamp_text(reason, MAX_EVENT_TEXT),
            EventKind::RegionState { reason, holder, .. }
            | EventKind::AccountState { reason, holder, .. } => {
                pairgate_config::clamp_text(reason, MAX_EVENT_TEXT);
                pairgate_config::clamp_text(holder, MAX_EVENT_TEXT);
            }
            EventKind::StateNotPersisted { change, error } => {
                pairgate_config::clamp_text(change, MAX_EVENT_TEXT);
                pairgate_config::clamp_text(error, MAX_EVENT_TEXT);
            }
            EventKind::Reload { problems, .. } => bound_lines(problems),
            EventKind::AccountHealth {
                detail: Some(detail),
                ..
            } if detail.len() > MAX_EVENT_TEXT => {
                let mut text = detail.to_string();
                pairgate_config::clamp_text(&mut text, MAX_EVENT_TEXT);
                *detail = text.into();
            }
            EventKind::Transition { .. }
            | EventKind::Disagreement { .. }
            | EventKind::AccountHealth { .. } => {}
        }
        self
    }
}

/// Keeps at most [`MAX_EVENT_PROBLEMS`] lines of at most [`MAX_EVENT_TEXT`] bytes, the last one
/// saying how many were left out.
pub fn bound_lines(lines: &mut Vec<String>) {
    if lines.len() > MAX_EVENT_PROBLEMS {
        let more = lines.len() - (MAX_EVENT_PROBLEMS - 1);
        lines.truncate(MAX_EVENT_PROBLEMS - 1);
        lines.push(format!("... and {more} more"));
    }
    for line in lines.iter_mut() {
        pairgate_config::clamp_text(line, MAX_EVENT_TEXT);
    }
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
                kind: kind.bounded(),
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
            detail: None,
        }
    }

    #[test]
    fn every_event_has_a_bounded_size() {
        let log = EventLog::new(10);
        let huge = "x".repeat(1 << 20);
        log.push(EventKind::Pin {
            tenant: "t".into(),
            mode: "primary",
            reason: huge.clone(),
        });
        log.push(EventKind::RegionState {
            region: "eastus".into(),
            state: "down",
            action: "hold",
            holder: format!("incident:{huge}"),
            reason: format!("é{huge}"),
            source: "operator",
        });
        log.push(EventKind::AccountHealth {
            account: "a".into(),
            health: Health::Unhealthy,
            reason: "connect_failed",
            detail: Some(huge.as_str().into()),
        });
        log.push(EventKind::Reload {
            generation: 2,
            accepted: false,
            problems: vec![huge; 1000],
        });
        for event in log.after(0, 10) {
            match event.kind {
                EventKind::Pin { reason, .. } => {
                    assert!(reason.len() <= MAX_EVENT_TEXT, "{}", reason.len());
                    assert!(reason.ends_with('…'));
                }
                EventKind::RegionState { reason, holder, .. } => {
                    assert!(reason.len() <= MAX_EVENT_TEXT && reason.ends_with('…'));
                    assert!(holder.len() <= MAX_EVENT_TEXT && holder.ends_with('…'));
                }
                EventKind::AccountHealth { detail, .. } => {
                    let detail = detail.expect("a detail was given");
                    assert!(detail.len() <= MAX_EVENT_TEXT && detail.ends_with('…'));
                }
                EventKind::Reload { problems, .. } => {
                    assert_eq!(problems.len(), MAX_EVENT_PROBLEMS);
                    assert!(problems.iter().all(|p| p.len() <= MAX_EVENT_TEXT));
                    assert_eq!(problems[MAX_EVENT_PROBLEMS - 1], "... and 981 more");
                }
                other => panic!("unexpected {other:?}"),
            }
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

//! A tenant's active side, packed into one atomic word.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use pairgate_failover::{Health, Side};

/// One consistent reading of an [`ActiveSlot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Active {
    /// The side requests go to.
    pub side: Side,
    /// Both sides are down and the tenant's policy is `both_down = "reject"`: answer 503.
    pub reject: bool,
    /// Bumped by every store; lets logs and the admin API say which decision served a request.
    pub generation: u64,
}

const SIDE_BIT: u64 = 1;
const REJECT_BIT: u64 = 2;
const GENERATION_SHIFT: u32 = 2;

/// The tenant's active side, written by the failover engine with one store and read by the data
/// plane with one load. Side, reject flag and generation share one `AtomicU64`, so a reader can
/// never see a side from one decision and a generation from another.
#[derive(Debug, Default)]
pub struct ActiveSlot(AtomicU64);

impl ActiveSlot {
    /// A slot on the primary side at generation 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the slot (one `Acquire` load).
    pub fn load(&self) -> Active {
        let word = self.0.load(Ordering::Acquire);
        Active {
            side: if word & SIDE_BIT == 0 {
                Side::Primary
            } else {
                Side::Secondary
            },
            reject: word & REJECT_BIT != 0,
            generation: word >> GENERATION_SHIFT,
        }
    }

    /// Publishes a decision (one `Release` store). The failover engine is the single writer and
    /// owns the generation counter.
    pub fn store(&self, active: Active) {
        let mut word = active.generation << GENERATION_SHIFT;
        if active.side == Side::Secondary {
            word |= SIDE_BIT;
        }
        if active.reject {
            word |= REJECT_BIT;
        }
        self.0.store(word, Ordering::Release);
    }
}

/// An account's current verdict, written by the health controller and read by the data plane
/// (for example: never replay onto an unhealthy account). Carried across reloads by the
/// account's identity, so a reload never heals an account.
#[derive(Debug, Default)]
pub struct HealthCell {
    verdict: AtomicU8,
    /// Consecutive 5xx answers or gateway errors from live traffic (outlier detection); reset
    /// by a live success and by an ejection.
    consecutive_5xx: AtomicU32,
    /// Woken when the verdict turns unhealthy, so requests still waiting on the account can
    /// give up on it.
    turned_unhealthy: tokio::sync::Notify,
}

impl HealthCell {
    /// Reads the verdict.
    pub fn load(&self) -> Health {
        match self.verdict.load(Ordering::Acquire) {
            1 => Health::Healthy,
            2 => Health::Unhealthy,
            _ => Health::Unknown,
        }
    }

    /// Publishes a verdict; a turn to unhealthy wakes every [`HealthCell::turned_unhealthy`]
    /// waiter.
    pub fn store(&self, health: Health) {
        let v = match health {
            Health::Unknown => 0,
            Health::Healthy => 1,
            Health::Unhealthy => 2,
        };
        let old = self.verdict.swap(v, Ordering::AcqRel);
        if v == 2 && old != 2 {
            self.turned_unhealthy.notify_waiters();
        }
    }

    /// Counts one more consecutive 5xx (or gateway error) from live traffic; returns the count.
    pub fn note_5xx(&self) -> u32 {
        self.consecutive_5xx
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
    }

    /// A live request succeeded: the consecutive count restarts. One load, and a store only
    /// when the count was not already zero, so the common case writes nothing.
    pub fn note_success(&self) {
        if self.consecutive_5xx.load(Ordering::Relaxed) != 0 {
            self.consecutive_5xx.store(0, Ordering::Relaxed);
        }
    }

    /// Restarts the consecutive count (the account was just ejected).
    pub fn reset_5xx(&self) {
        self.consecutive_5xx.store(0, Ordering::Relaxed);
    }

    /// Consecutive 5xx answers or gateway errors from live traffic so far.
    pub fn consecutive_5xx(&self) -> u32 {
        self.consecutive_5xx.load(Ordering::Relaxed)
    }

    /// Completes when the verdict next turns unhealthy after this call (even if the future is
    /// first polled later).
    pub fn turned_unhealthy(&self) -> tokio::sync::futures::Notified<'_> {
        self.turned_unhealthy.notified()
    }
}

//! [`IdleTimer`]: how long something has made no progress, for every idle limit of the data
//! plane (the head timeout, request and response bodies, writes to a slow client).

use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Counts a stall from the first time a poll finds nothing to do after the last progress; one
/// timer per owner, allocated on the first stall and reset (not re-created) on later ones, and
/// never touched while things move.
pub(crate) struct IdleTimer {
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    /// A stall is being timed.
    armed: bool,
}

impl IdleTimer {
    pub(crate) fn new(limit: Duration) -> Self {
        IdleTimer {
            limit,
            sleep: None,
            armed: false,
        }
    }

    /// Something moved: the next stall is timed from its own start.
    pub(crate) fn progress(&mut self) {
        self.armed = false;
    }

    /// Nothing moved on this poll. True once the current stall has lasted the limit; otherwise
    /// the task is woken when it would.
    pub(crate) fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.armed {
            self.armed = true;
            let at = Instant::now() + self.limit;
            match &mut self.sleep {
                // A disarmed timer may still fire once: that wake-up finds nothing to do.
                Some(sleep) => sleep.as_mut().reset(at),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
            }
        }
        let fired = self
            .sleep
            .as_mut()
            .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready());
        if fired {
            self.armed = false;
        }
        fired
    }
}

//! The persister: writes the state file on a blocking thread, one write at a time, so no runtime
//! worker ever waits for the disk.
//!
//! Ordering guarantee: operator overrides are applied and answered in the order the controller
//! received them, each only after a write containing it (and every override received before
//! it) has succeeded. While a write is in flight, later overrides queue up and the next write
//! carries all of them (the last state wins); each caller gets the result of the write that
//! included its change. Other commands (verdicts, reads, reloads, ticks, fleet decisions) are
//! handled meanwhile, so they may take effect before an override received earlier.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::state::{PersistedState, save};

/// Writes the state file: [`crate::state::save`] in production; tests stand in a slow or
/// failing filesystem. Called on a blocking thread, never on a runtime worker.
pub type StateWriter =
    Arc<dyn Fn(&Path, &PersistedState) -> std::io::Result<()> + Send + Sync + 'static>;

/// The production writer: the atomic [`save`].
pub fn file_writer() -> StateWriter {
    Arc::new(save)
}

/// The write in flight, if any, and what waits for it.
pub(super) struct Persister<W> {
    writer: StateWriter,
    /// The write running on a blocking thread, and the waiters whose changes it carries.
    in_flight: Option<(JoinHandle<std::io::Result<()>>, Vec<W>)>,
    /// Waiters whose changes are not written yet; the next write carries them all.
    queued: Vec<W>,
    /// The committed state changed without a waiter (a reload dropped entries): write it.
    dirty: bool,
}

/// A finished write: its result and the waiters whose changes it carried.
pub(super) struct Written<W> {
    /// The write's result (an error's text: the write may have panicked).
    pub(super) result: Result<(), String>,
    /// Waiters whose changes the write carried, in arrival order.
    pub(super) waiters: Vec<W>,
}

impl<W> Persister<W> {
    /// A persister writing with `writer`.
    pub(super) fn new(writer: StateWriter) -> Self {
        Persister {
            writer,
            in_flight: None,
            queued: Vec::new(),
            dirty: false,
        }
    }

    /// Replaces the writer (tests); takes effect from the next write.
    pub(super) fn set_writer(&mut self, writer: StateWriter) {
        self.writer = writer;
    }

    /// Queues a waiter; [`Persister::start`] writes it with every other queued one.
    pub(super) fn queue(&mut self, waiter: W) {
        self.queued.push(waiter);
    }

    /// Asks for the committed state to be written even though nobody waits for it.
    pub(super) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Whether a write is running.
    pub(super) fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The queued waiters, in arrival order.
    pub(super) fn queued(&self) -> &[W] {
        &self.queued
    }

    /// Whether the committed state must be written even if no queued change alters it.
    pub(super) fn dirty(&self) -> bool {
        self.dirty
    }

    /// Whether anything waits to be written (queued waiters or a dirty state).
    pub(super) fn has_work(&self) -> bool {
        !self.queued.is_empty() || self.dirty
    }

    /// Takes the queued waiters without writing (no state file, or nothing changed).
    pub(super) fn take_queued(&mut self) -> Vec<W> {
        self.dirty = false;
        std::mem::take(&mut self.queued)
    }

    /// Starts writing `state` to `path` on a blocking thread, carrying every queued waiter.
    /// Call only when not [`busy`](Persister::busy).
    pub(super) fn start(&mut self, path: PathBuf, state: PersistedState) {
        debug_assert!(self.in_flight.is_none(), "one write at a time");
        let writer = Arc::clone(&self.writer);
        let job = tokio::task::spawn_blocking(move || writer(&path, &state));
        self.dirty = false;
        self.in_flight = Some((job, std::mem::take(&mut self.queued)));
    }

    /// Waits for the write in flight; pending forever when there is none (for `select!`).
    pub(super) async fn finished(&mut self) -> Written<W> {
        let Some((job, _)) = &mut self.in_flight else {
            return std::future::pending().await;
        };
        let result = match job.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(join) => Err(format!("the state writer failed: {join}")),
        };
        let waiters = self.in_flight.take().map(|(_, w)| w).unwrap_or_default();
        Written { result, waiters }
    }
}

//! A log writer that never blocks the thread that logs: lines go through a bounded queue to one
//! dedicated OS thread that writes them; a full queue drops the line and counts it.
//!
//! Why not write to stderr directly: `tracing_subscriber::fmt` writes each event on the thread
//! that emits it, and the access log is emitted on the request's tokio worker. A slow or full
//! stderr (a pipe to a log shipper that stalls, a terminal scrolled back) then stalls every
//! request on that worker. Here a worker pays for formatting the line and one `try_send`; the
//! writing thread batches lines in a `BufWriter` and flushes whenever the queue runs empty, so a
//! reader of the log (a test polling the process's stderr, `journalctl -f`) still sees each
//! line promptly.
//!
//! `tracing-appender` does the same but is not a dependency of the workspace; this is the part
//! of it pairgate needs (about a hundred lines).

use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// Lines the queue holds before new ones are dropped: at a few hundred bytes a line, a few MiB
/// at most, and several seconds of access log at the request rates one gateway serves.
pub const QUEUE_LINES: usize = 16 * 1024;

/// How long [`WriterGuard`]'s drop waits for the queued lines to be written at exit: a stderr
/// that does not drain in that time is not waited for (the process exits anyway).
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// What the writing thread receives.
enum Msg {
    /// One formatted line (or whatever one event wrote), newline included.
    Line(Vec<u8>),
    /// Flush, then answer: everything queued before has been written.
    Sync(SyncSender<()>),
    /// Flush and stop: the guard is dropped. The subscriber keeps its senders for the life of
    /// the process, so the channel itself never disconnects.
    Shutdown,
}

/// The `MakeWriter` handed to `tracing_subscriber::fmt().with_writer(..)`; cheap to clone.
#[derive(Clone)]
pub struct NonBlocking {
    tx: SyncSender<Msg>,
    dropped: &'static AtomicU64,
}

/// Owns the writing thread: dropping it writes out what is queued (within [`SHUTDOWN_WAIT`])
/// and joins the thread. Keep it until the process's last log line.
#[must_use = "dropping the guard stops the log writer"]
pub struct WriterGuard {
    tx: SyncSender<Msg>,
    /// Disconnects when the writing thread ends (its sender is dropped with the thread).
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
    wait: Duration,
}

/// The writer one event gets: it collects what the formatter writes, and hands the whole line
/// to the queue when dropped (the formatter writes each event once, then drops its writer).
pub struct LineWriter<'a> {
    buf: Vec<u8>,
    sink: &'a NonBlocking,
}

/// The writing thread could not be started.
#[derive(Debug, thiserror::Error)]
#[error("starting the log writer thread")]
pub struct SpawnError(#[source] io::Error);

impl NonBlocking {
    /// Starts the writing thread over `out`, with a queue of `capacity` lines; lines dropped
    /// because the queue was full are counted in `dropped`.
    pub fn new<W>(
        out: W,
        capacity: usize,
        dropped: &'static AtomicU64,
    ) -> Result<(NonBlocking, WriterGuard), SpawnError>
    where
        W: Write + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(capacity);
        let (done_tx, done) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("pairgate-log".into())
            .spawn(move || {
                let _done = done_tx;
                drain(&rx, out);
            })
            .map_err(SpawnError)?;
        let guard = WriterGuard {
            tx: tx.clone(),
            done,
            thread: Some(thread),
            wait: SHUTDOWN_WAIT,
        };
        Ok((NonBlocking { tx, dropped }, guard))
    }

    /// Waits, at most `within`, until every line queued before the call has been written and
    /// flushed; `false` when that did not happen in time. For text written to stderr directly
    /// that must follow the log lines (the binary's last error message). It blocks: call it
    /// from the main thread, never from a runtime worker.
    pub fn sync(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let (ack, acked) = mpsc::sync_channel(1);
        let mut msg = Msg::Sync(ack);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    msg = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return false,
            }
        }
        acked
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }

    /// Queues one line, or drops and counts it when the queue is full or the writer stopped.
    fn send(&self, line: Vec<u8>) {
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl<'a> MakeWriter<'a> for NonBlocking {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            buf: Vec::new(),
            sink: self,
        }
    }
}

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.sink.send(std::mem::take(&mut self.buf));
        }
    }
}

/// The writing thread: write what arrives, flush when nothing more is waiting, stop at
/// `Shutdown`. Write errors are ignored: there is nowhere left to report them.
fn drain<W: Write>(rx: &Receiver<Msg>, out: W) {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    while let Ok(msg) = rx.recv() {
        let mut next = Some(msg);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Line(line) => {
                    let _ = out.write_all(&line);
                }
                Msg::Sync(ack) => {
                    let _ = out.flush();
                    let _ = ack.try_send(());
                }
                Msg::Shutdown => {
                    let _ = out.flush();
                    return;
                }
            }
            next = rx.try_recv().ok();
        }
        // The queue is empty for now: whatever is buffered goes out before waiting again.
        let _ = out.flush();
    }
    let _ = out.flush();
}

impl WriterGuard {
    /// Waits at most `wait` at drop instead of [`SHUTDOWN_WAIT`].
    pub fn with_shutdown_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        let deadline = Instant::now() + self.wait;
        // The queue may be full: retry until the writer takes the message or time is up.
        let mut msg = Msg::Shutdown;
        loop {
            match self.tx.try_send(msg) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    msg = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TrySendError::Full(_)) => return,
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        // `done` disconnects when the thread ends; a message never comes.
        if let Err(RecvTimeoutError::Disconnected) = self.done.recv_timeout(left)
            && let Some(thread) = self.thread.take()
        {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A target whose writes wait for a permit, so a test can stall the writing thread.
    struct Gated {
        out: Arc<Mutex<Vec<u8>>>,
        entered: mpsc::Sender<()>,
        permits: Receiver<()>,
    }

    impl Write for Gated {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let _ = self.entered.send(());
            self.permits
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| io::Error::other("no permit"))?;
            self.out
                .lock()
                .expect("not poisoned")
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn line(nb: &NonBlocking, text: &str) {
        let mut w = nb.make_writer();
        // Two writes for one line: the line is queued whole, when the writer is dropped.
        w.write_all(text.as_bytes()).expect("in memory");
        w.write_all(b"\n").expect("in memory");
    }

    #[test]
    fn delivers_lines_in_order_and_counts_drops_while_the_target_stalls() {
        let dropped: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
        let out = Arc::new(Mutex::new(Vec::new()));
        let (entered_tx, entered) = mpsc::channel();
        let (permit, permits) = mpsc::channel();
        let target = Gated {
            out: Arc::clone(&out),
            entered: entered_tx,
            permits,
        };
        let (nb, guard) = NonBlocking::new(target, 4, dropped).expect("thread");
        line(&nb, "first");
        // The writing thread took "first" and is stuck writing it: the queue is empty.
        entered
            .recv_timeout(Duration::from_secs(10))
            .expect("the writer flushes the first line");
        for i in 0..7 {
            line(&nb, &format!("line {i}"));
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 3, "4 queued, 3 dropped");
        // Let every write through, then stop: the guard waits for the queue to be written.
        for _ in 0..100 {
            let _ = permit.send(());
        }
        drop(guard.with_shutdown_wait(Duration::from_secs(10)));
        let text = String::from_utf8(out.lock().expect("not poisoned").clone()).expect("utf-8");
        assert_eq!(text, "first\nline 0\nline 1\nline 2\nline 3\n");
        // After shutdown nothing is written, and nothing blocks: the line is counted.
        line(&nb, "late");
        assert_eq!(dropped.load(Ordering::Relaxed), 4);
    }

    /// A target a test can read while the writer still runs.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .expect("not poisoned")
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn sync_returns_once_earlier_lines_are_written() {
        let dropped: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
        let out = Shared::default();
        let (nb, guard) = NonBlocking::new(out.clone(), QUEUE_LINES, dropped).expect("thread");
        for i in 0..100 {
            line(&nb, &format!("line {i}"));
        }
        assert!(nb.sync(Duration::from_secs(10)), "the writer answers");
        let text = String::from_utf8(out.0.lock().expect("not poisoned").clone()).expect("utf-8");
        assert_eq!(
            text.lines().count(),
            100,
            "all written before sync returned"
        );
        assert!(text.ends_with("line 99\n"), "{text}");
        drop(guard);
        assert!(
            !nb.sync(Duration::from_millis(100)),
            "no writer after shutdown"
        );
    }

    #[test]
    fn a_reader_sees_each_line_without_waiting_for_more() {
        let dropped: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
        let out = Shared::default();
        let (nb, guard) = NonBlocking::new(out.clone(), QUEUE_LINES, dropped).expect("thread");
        let subscriber = tracing_subscriber::fmt()
            .with_writer(nb)
            .with_ansi(false)
            .without_time()
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(n = 1, "hello");
        });
        // The line shows while the writer keeps running: it was flushed because the queue ran
        // empty (the `BufWriter` holds 64 KiB), not because the writer stopped.
        let deadline = Instant::now() + Duration::from_secs(10);
        let text = loop {
            let text =
                String::from_utf8(out.0.lock().expect("not poisoned").clone()).expect("utf-8");
            if text.ends_with('\n') || Instant::now() > deadline {
                break text;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(text.contains("hello n=1"), "{text:?}");
        assert_eq!(dropped.load(Ordering::Relaxed), 0);
        drop(guard);
    }
}

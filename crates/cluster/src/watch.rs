//! [`WatchStream`]: a watch's newline-delimited JSON answers, read as they arrive.

use bytes::{Buf, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;

use crate::client::parse_json;
use crate::error::EtcdError;
use crate::types::WatchEvent;
use crate::wire;

/// Longest answer line accepted (one revision's events); etcd's own request limit is 1.5 MiB.
const MAX_LINE: usize = 64 * 1024 * 1024;

/// Splits a streamed response body into lines (the gateway ends each message with `\n`).
pub(crate) struct LineReader {
    body: Incoming,
    buf: BytesMut,
    /// How much of `buf` is known to hold no `\n` (so a long line is scanned once).
    scanned: usize,
    eof: bool,
}

impl LineReader {
    pub(crate) fn new(body: Incoming) -> Self {
        LineReader {
            body,
            buf: BytesMut::new(),
            scanned: 0,
            eof: false,
        }
    }

    /// The next non-empty line (without its `\n`), `None` at the end of the body. Cancel-safe:
    /// a partial line stays buffered.
    pub(crate) async fn next_line(&mut self) -> Result<Option<BytesMut>, String> {
        loop {
            if let Some(offset) = self.buf[self.scanned..].iter().position(|b| *b == b'\n') {
                let line = self.buf.split_to(self.scanned + offset);
                self.scanned = 0;
                self.buf.advance(1);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(line));
            }
            self.scanned = self.buf.len();
            if self.eof {
                self.scanned = 0;
                if self.buf.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                return Ok(Some(self.buf.split()));
            }
            if self.buf.len() > MAX_LINE {
                return Err(format!("answer line longer than {MAX_LINE} bytes"));
            }
            match self.body.frame().await {
                None => self.eof = true,
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(frame)) => {
                    // Trailers (`Grpc-Trailer-*`) carry nothing this client needs.
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// The events of a watch started by [`crate::Etcd::watch_prefix`].
///
/// Dropping it closes its connection, which cancels the watch in etcd.
pub struct WatchStream {
    lines: LineReader,
    done: bool,
}

/// One watch answer, classified.
enum Message {
    /// The watch was set up.
    Created,
    /// Events of one revision (empty for a progress notification).
    Events(i64, Vec<WatchEvent>),
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream")
            .field("buffered", &self.lines.buf.len())
            .field("done", &self.done)
            .finish()
    }
}

impl WatchStream {
    pub(crate) fn new(lines: LineReader) -> Self {
        WatchStream { lines, done: false }
    }

    /// The next batch of events, in revision order: `(revision, events)`, where `revision` is
    /// the `mod_revision` of the batch's last event: everything up to it has been delivered, so
    /// a new watch from `revision + 1` misses nothing and repeats nothing. A live watch sends
    /// one revision per batch (all writes of one transaction); a watch catching up on history
    /// may batch several revisions, each event carrying its own in `kv.mod_revision`.
    ///
    /// `None` only after an error was returned: a watch does not end cleanly. Errors are
    /// [`EtcdError::Unavailable`] (the connection broke: resync and watch again),
    /// [`EtcdError::Compacted`] (the start revision is gone: resync), or what etcd reported.
    /// Cancel-safe, so it can be raced in `tokio::select!`.
    pub async fn next(&mut self) -> Option<Result<(i64, Vec<WatchEvent>), EtcdError>> {
        while !self.done {
            match self.message().await {
                Ok(Message::Events(revision, events)) if !events.is_empty() => {
                    return Some(Ok((revision, events)));
                }
                Ok(_) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }

    /// Waits for etcd's confirmation that the watch exists (its first answer).
    pub(crate) async fn created(&mut self) -> Result<(), EtcdError> {
        match self.message().await {
            Ok(Message::Created) => Ok(()),
            Ok(Message::Events(..)) => Err(EtcdError::Protocol(
                "watch answered with events before confirming its creation".to_owned(),
            )),
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }

    /// Reads and classifies the next answer.
    async fn message(&mut self) -> Result<Message, EtcdError> {
        let line = self
            .lines
            .next_line()
            .await
            .map_err(|e| EtcdError::Unavailable(format!("watch stream broke: {e}")))?
            .ok_or_else(|| EtcdError::Unavailable("watch stream ended".to_owned()))?;
        let answer = parse_json(&line)?;
        if let Some(err) = wire::error(&answer) {
            return Err(err);
        }
        let result = answer
            .get("result")
            .ok_or_else(|| EtcdError::Protocol(format!("watch answer without result: {answer}")))?;
        classify(result)
    }
}

/// A `WatchResponse`: created, canceled (compacted or refused), or events.
fn classify(result: &Value) -> Result<Message, EtcdError> {
    if wire::boolean(result, "canceled") {
        let compact_revision = wire::int(result, "compact_revision")?;
        if compact_revision > 0 {
            return Err(EtcdError::Compacted { compact_revision });
        }
        let reason = wire::string(result, "cancel_reason");
        return Err(EtcdError::Status {
            code: 1,
            message: format!("watch canceled by etcd: {reason}"),
        });
    }
    if wire::boolean(result, "created") {
        return Ok(Message::Created);
    }
    let events = wire::list(result, "events")
        .iter()
        .map(wire::event)
        .collect::<Result<Vec<_>, _>>()?;
    // A live watch sends one revision per answer, but a catching-up watch batches many (up to
    // 1000 revisions) under the store's current header revision, even when more follow. The
    // last event's own revision is therefore the only safe resume point; a progress
    // notification (no events) reports the header's.
    let revision = match events.last() {
        Some(last) => last.kv.mod_revision,
        None => wire::header_revision(result)?,
    };
    Ok(Message::Events(revision, events))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::types::EventKind;

    #[test]
    fn classifies_answers() {
        let created = json!({"header": {"revision": "6"}, "created": true});
        assert!(matches!(classify(&created), Ok(Message::Created)));

        let compacted = json!({"header": {}, "canceled": true, "compact_revision": "3"});
        assert!(matches!(
            classify(&compacted),
            Err(EtcdError::Compacted {
                compact_revision: 3
            })
        ));

        let canceled = json!({"canceled": true, "cancel_reason": "permission denied"});
        assert!(matches!(classify(&canceled), Err(EtcdError::Status { .. })));

        let events = json!({"header": {"revision": "8"}, "events": [
            {"kv": {"key": "YWI=", "create_revision": "7", "mod_revision": "7", "version": "1", "value": "Yg=="}},
            {"type": "DELETE", "kv": {"key": "YWM=", "mod_revision": "7"}},
        ]});
        let Ok(Message::Events(revision, events)) = classify(&events) else {
            panic!("events expected");
        };
        assert_eq!(revision, 7);
        assert_eq!(events[0].kind, EventKind::Put);
        assert_eq!(events[0].kv.value, b"b");
        assert_eq!(events[1].kind, EventKind::Delete);

        let progress = json!({"header": {"revision": "9"}});
        assert!(matches!(classify(&progress), Ok(Message::Events(9, ref e)) if e.is_empty()));
    }
}

//! The one HTTP body type used on both sides of the manager, and its constructors.

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::mpsc;

/// Errors carried by bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed, streaming body. `Unsync` because hyper's `Incoming` need not be shared.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A body of known bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// A body streamed through unchanged, frame by frame.
pub fn incoming(body: Incoming) -> Body {
    body.map_err(BoxError::from).boxed_unsync()
}

/// A body fed by a channel: each message is sent as one chunk as soon as it arrives, which is
/// what `docker events` and docker-py's chunked readers expect.
pub fn channel(rx: mpsc::Receiver<Bytes>) -> Body {
    let frames = stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, BoxError>(Frame::data(chunk)), rx))
    });
    StreamBody::new(frames).boxed_unsync()
}

/// Reads a whole body, refusing more than `limit` bytes.
pub async fn collect_limited<B>(body: B, limit: u64) -> Result<Bytes, CollectError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    collect_within(body, limit, None).await
}

/// Bytes several reads share: the answers of every engine to one call, together.
#[derive(Debug)]
pub struct Budget {
    left: std::sync::atomic::AtomicU64,
    total: u64,
}

impl Budget {
    /// A budget of `total` bytes.
    pub fn new(total: u64) -> Budget {
        Budget { left: std::sync::atomic::AtomicU64::new(total), total }
    }

    /// Takes `n` bytes; false when fewer are left.
    fn take(&self, n: u64) -> bool {
        use std::sync::atomic::Ordering;
        self.left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(n)).is_ok()
    }
}

/// [`collect_limited`], also taking every byte from `budget` when given.
pub async fn collect_within<B>(body: B, limit: u64, budget: Option<&Budget>) -> Result<Bytes, CollectError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CollectError::Read(e.into()))?;
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > limit {
                return Err(CollectError::TooLarge { limit });
            }
            if let Some(b) = budget.filter(|b| !b.take(data.len() as u64)) {
                return Err(CollectError::OverBudget { total: b.total });
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// A body that could not be read whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectError {
    /// More than the limit.
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in force.
        limit: u64,
    },
    /// More than the bytes shared with other reads.
    #[error("the answers to one call exceed the shared limit of {total} bytes")]
    OverBudget {
        /// The shared limit.
        total: u64,
    },
    /// The peer failed mid-body.
    #[error("failed to read body")]
    Read(#[source] BoxError),
}

/// Longest line read from an engine's JSON-lines stream (events, pull progress): a stream that
/// never sends a newline cannot grow the manager's memory past it.
pub const MAX_ENGINE_LINE_BYTES: usize = 1 << 20;

/// A line longer than its splitter allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an engine sent a line longer than {0} bytes")]
pub struct LineTooLong(pub usize);

/// Splits a byte stream into newline-terminated lines, each scanned once, none longer than
/// `max` bytes.
#[derive(Debug)]
pub struct Lines {
    buf: bytes::BytesMut,
    scanned: usize,
    max: usize,
}

impl Lines {
    /// A splitter for lines of at most `max` bytes.
    pub fn new(max: usize) -> Lines {
        Lines { buf: bytes::BytesMut::new(), scanned: 0, max }
    }

    /// Adds `data`; appends the lines it completes, newline included, to `lines` (those come
    /// out even when the partial line after them is too long).
    pub fn push(&mut self, data: &[u8], lines: &mut Vec<Bytes>) -> Result<(), LineTooLong> {
        self.buf.extend_from_slice(data);
        while let Some(pos) = self.buf[self.scanned..].iter().position(|b| *b == b'\n') {
            let end = self.scanned + pos + 1;
            lines.push(self.buf.split_to(end).freeze());
            self.scanned = 0;
        }
        self.scanned = self.buf.len();
        if self.buf.len() > self.max {
            self.buf.clear();
            self.scanned = 0;
            return Err(LineTooLong(self.max));
        }
        Ok(())
    }

    /// What is left after the stream ended (a last line without a newline).
    pub fn rest(self) -> Bytes {
        self.buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_sharing_a_budget_fail_together_past_it() {
        let budget = Budget::new(10);
        let six = || Full::new(Bytes::from_static(b"123456"));
        assert_eq!(collect_within(six(), 100, Some(&budget)).await.unwrap(), Bytes::from_static(b"123456"));
        assert!(matches!(collect_within(six(), 100, Some(&budget)).await, Err(CollectError::OverBudget { total: 10 })));
        assert!(matches!(collect_within(six(), 5, None).await, Err(CollectError::TooLarge { limit: 5 })));
    }

    #[test]
    fn lines_split_across_frames_and_overlong_ones_fail() {
        let mut l = Lines::new(8);
        let mut out = Vec::new();
        l.push(b"ab", &mut out).unwrap();
        assert!(out.is_empty());
        l.push(b"c\nde\nf", &mut out).unwrap();
        assert_eq!(out, vec![Bytes::from("abc\n"), Bytes::from("de\n")]);
        out.clear();
        assert_eq!(l.push(b"g\n123456789", &mut out).unwrap_err(), LineTooLong(8));
        assert_eq!(out, vec![Bytes::from("fg\n")]);
        out.clear();
        l.push(b"x\n", &mut out).unwrap();
        assert_eq!(out, vec![Bytes::from("x\n")]);
        l.push(b"tail", &mut out).unwrap();
        assert_eq!(l.rest(), Bytes::from("tail"));
    }
}

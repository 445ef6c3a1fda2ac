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

/// A body streamed through unchanged until `cut` resolves; then it fails with `why`, so that
/// the client's connection breaks rather than reads a clean but short end.
pub fn incoming_until(
    body: Incoming,
    cut: impl std::future::Future<Output = ()> + Send + 'static,
    why: &'static str,
) -> Body {
    let cut: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = Box::pin(cut);
    let frames = stream::unfold((body, Some(cut)), move |(mut body, cut)| async move {
        let mut cut = cut?;
        tokio::select! {
            frame = body.frame() => frame.map(|f| (f.map_err(BoxError::from), (body, Some(cut)))),
            _ = &mut cut => Some((Err(BoxError::from(why)), (body, None))),
        }
    });
    StreamBody::new(frames).boxed_unsync()
}

/// A body fed by a channel: each message is sent as one chunk as soon as it arrives, which is
/// what `docker events` and docker-py's chunked readers expect.
pub fn channel(rx: mpsc::Receiver<Bytes>) -> Body {
    let frames =
        stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|chunk| (Ok::<_, BoxError>(Frame::data(chunk)), rx)) },
        );
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

/// What the request bodies buffered at once may hold together, counted in units (KiB for JSON
/// bodies, MiB for `docker load` and `import` archives, read whole to be sent to every engine).
#[derive(Debug, Clone)]
pub struct BodyMemory {
    units: std::sync::Arc<tokio::sync::Semaphore>,
    capacity: usize,
    unit: u64,
    total: u64,
    /// The flag that sets `total`, for the error.
    flag: &'static str,
}

/// A body's bytes, and its share of a [`BodyMemory`] until the last copy is dropped.
struct HeldUpload {
    data: Vec<u8>,
    _share: tokio::sync::OwnedSemaphorePermit,
}

impl AsRef<[u8]> for HeldUpload {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl BodyMemory {
    /// A memory of `total` bytes, counted in `unit`s (rounded up), set by `flag`.
    pub fn new(total: u64, unit: u64, flag: &'static str) -> BodyMemory {
        let units =
            usize::try_from(total.div_ceil(unit)).unwrap_or(usize::MAX).clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        BodyMemory {
            units: std::sync::Arc::new(tokio::sync::Semaphore::new(units)),
            capacity: units,
            unit,
            total,
            flag,
        }
    }

    /// Reads a whole body of at most `limit` bytes; its size stays taken from this memory
    /// until every copy of the returned bytes is dropped (an archive: sent to every engine).
    pub async fn collect<B>(&self, body: B, limit: u64) -> Result<Bytes, CollectError>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        let mut body = body;
        let mut data = Vec::new();
        let full = || CollectError::MemoryFull { total: self.total, flag: self.flag };
        let mut share = self.units.clone().try_acquire_owned().map_err(|_| full())?;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| CollectError::Read(e.into()))?;
            if let Ok(chunk) = frame.into_data() {
                let len = (data.len() + chunk.len()) as u64;
                if len > limit {
                    return Err(CollectError::TooLarge { limit });
                }
                let needed = usize::try_from(len.div_ceil(self.unit)).unwrap_or(usize::MAX).max(1);
                if needed > share.num_permits() {
                    let more = u32::try_from(needed - share.num_permits()).map_err(|_| full())?;
                    share.merge(self.units.clone().try_acquire_many_owned(more).map_err(|_| full())?);
                }
                data.extend_from_slice(&chunk);
            }
        }
        Ok(Bytes::from_owner(HeldUpload { data, _share: share }))
    }

    /// Units free now.
    pub fn free_units(&self) -> usize {
        self.units.available_permits()
    }

    /// Bytes held now, in whole units.
    pub fn held_bytes(&self) -> u64 {
        (self.capacity.saturating_sub(self.free_units()) as u64).saturating_mul(self.unit)
    }
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
    /// The bodies being buffered hold all the memory they may share.
    #[error("requests in progress already hold the {total} bytes their bodies may share ({flag}); try again")]
    MemoryFull {
        /// The shared limit.
        total: u64,
        /// The flag that sets it.
        flag: &'static str,
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

    #[tokio::test]
    async fn uploads_share_their_memory_until_every_copy_is_gone() {
        let memory = BodyMemory::new(3 << 20, 1 << 20, "--x");
        let two_mib = || Full::new(Bytes::from(vec![7u8; 2 << 20]));
        let first = memory.collect(two_mib(), 4 << 20).await.unwrap();
        let copy = first.clone();
        assert_eq!(memory.free_units(), 1);
        assert!(matches!(memory.collect(two_mib(), 4 << 20).await, Err(CollectError::MemoryFull { .. })));
        assert_eq!(memory.free_units(), 1, "a refused upload gives back what it took");
        drop(first);
        assert_eq!(memory.free_units(), 1);
        drop(copy);
        assert_eq!(memory.free_units(), 3);
        assert_eq!(memory.collect(two_mib(), 4 << 20).await.unwrap().len(), 2 << 20);
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

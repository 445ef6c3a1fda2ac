//! Writes applied once. A write that carries a request ID (`X-Swarm-Request-Id`, set by the
//! load balancer or by the follower that forwards it) is run once by the leader: the same
//! request sent again (a load balancer's retry after its manager died, a follower's resend
//! after it lost the answer) waits for the first run and gets its answer. The run does not
//! belong to the connection that asked: it finishes, and its answer is kept, even when that
//! connection is gone.
//!
//! This covers one leader. Across a leader change the journal is empty, and the handlers
//! settle the request from what the replicated store and the engines hold (`once.rs`).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::body::{self, Body};

/// The request ID header: the load balancer's unique ID, or one a follower minted.
pub const REQUEST_ID_HEADER: &str = "x-swarm-request-id";

/// Largest answer kept for a resend: the answers of the writes journaled are small JSON.
const MAX_ANSWER_BYTES: u64 = 1 << 20;

/// What a request asks, under its ID: an ID reused for another request names another request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestKey(String);

impl RequestKey {
    /// The key of request `id` asking `method` on `target` (path and query) with `body`.
    pub fn of(id: &str, method: &Method, target: &str, body: &[u8]) -> RequestKey {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [id.as_bytes(), method.as_str().as_bytes(), target.as_bytes(), body] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        RequestKey(hex::encode(ctx.finish()))
    }

    /// 64 hex digits, as a swarm ID is.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The request ID a request carries, if any (the first, should a proxy have added another).
pub fn request_id(headers: &HeaderMap) -> Option<&str> {
    headers.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty() && v.len() <= 256)
}

/// A new request ID, for a write a follower forwards without one.
pub fn mint_request_id() -> HeaderValue {
    let bytes: [u8; 16] = rand::random();
    HeaderValue::from_str(&hex::encode(bytes)).unwrap_or(HeaderValue::from_static("0"))
}

/// A kept answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The route class, for metrics.
    route: &'static str,
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

impl Answer {
    /// Reads a whole answer to keep (refused when larger than [`MAX_ANSWER_BYTES`]).
    pub async fn read(route: &'static str, resp: Response<Body>) -> Result<Answer, String> {
        let (parts, incoming) = resp.into_parts();
        let body = body::collect_limited(incoming, MAX_ANSWER_BYTES).await.map_err(|e| e.to_string())?;
        Ok(Answer { route, status: parts.status, content_type: parts.headers.get(header::CONTENT_TYPE).cloned(), body })
    }

    /// The answer as a response, with its route class.
    pub fn response(&self) -> (&'static str, Response<Body>) {
        let mut resp = Response::builder().status(self.status);
        if let Some(ct) = &self.content_type {
            resp = resp.header(header::CONTENT_TYPE, ct);
        }
        (self.route, resp.body(body::full(self.body.clone())).unwrap_or_else(|_| Response::new(body::empty())))
    }
}

enum Entry {
    /// Running; the sender publishes its answer (None: it ended without one).
    Running(watch::Sender<Option<Result<Answer, String>>>),
    Done(Answer),
}

/// Answers by request key, for [`Journal::keep`].
pub struct Journal {
    entries: Mutex<Entries>,
    keep: Duration,
    max: usize,
}

#[derive(Default)]
struct Entries {
    by_key: HashMap<RequestKey, Entry>,
    /// Finished keys, oldest first, to forget them in order.
    finished: VecDeque<(Instant, RequestKey)>,
}

impl Entries {
    fn forget_old(&mut self, keep: Duration, max: usize) {
        let now = Instant::now();
        while let Some((at, key)) = self.finished.front() {
            if now.duration_since(*at) < keep && self.finished.len() <= max {
                break;
            }
            if matches!(self.by_key.get(key), Some(Entry::Done(_))) {
                self.by_key.remove(key);
            }
            self.finished.pop_front();
        }
    }
}

enum Turn {
    First(watch::Sender<Option<Result<Answer, String>>>),
    Wait(watch::Receiver<Option<Result<Answer, String>>>),
    Done(Answer),
}

impl Journal {
    /// A journal keeping answers for `keep`, at most `max` of them.
    pub fn new(keep: Duration, max: usize) -> Journal {
        Journal { entries: Mutex::new(Entries::default()), keep, max }
    }

    fn turn(&self, key: &RequestKey) -> Turn {
        let mut entries = self.entries.lock();
        entries.forget_old(self.keep, self.max);
        match entries.by_key.get(key) {
            Some(Entry::Done(answer)) => Turn::Done(answer.clone()),
            Some(Entry::Running(tx)) => Turn::Wait(tx.subscribe()),
            None => {
                let (tx, _) = watch::channel(None);
                entries.by_key.insert(key.clone(), Entry::Running(tx.clone()));
                Turn::First(tx)
            }
        }
    }

    fn finish(&self, key: &RequestKey, answer: Result<Answer, String>) {
        let mut entries = self.entries.lock();
        let Some(Entry::Running(tx)) = entries.by_key.remove(key) else { return };
        tx.send_replace(Some(answer.clone()));
        if let Ok(answer) = answer {
            entries.by_key.insert(key.clone(), Entry::Done(answer));
            entries.finished.push_back((Instant::now(), key.clone()));
        }
    }

    /// Serves request `key` once: the first call runs `serve` in a task of its own and keeps
    /// its answer; calls made meanwhile or after get the same answer.
    pub async fn keep<F>(self: &std::sync::Arc<Self>, key: RequestKey, serve: F) -> (&'static str, Response<Body>)
    where
        F: Future<Output = (&'static str, Response<Body>)> + Send + 'static,
    {
        let mut rx = match self.turn(&key) {
            Turn::Done(answer) => return answer.response(),
            Turn::Wait(rx) => rx,
            Turn::First(tx) => {
                let rx = tx.subscribe();
                let journal = self.clone();
                tokio::spawn(async move {
                    // Whatever happens to the caller, the run finishes and its answer is kept;
                    // a run that ends without one (a panic) releases those waiting on it.
                    let mut run = Run { journal, key, finished: false };
                    let (route, resp) = serve.await;
                    let answer = Answer::read(route, resp).await;
                    run.finish(answer);
                    drop(tx);
                });
                rx
            }
        };
        let outcome = rx.wait_for(Option::is_some).await.map(|a| a.clone());
        match outcome {
            Ok(Some(Ok(answer))) => answer.response(),
            Ok(Some(Err(e))) => {
                ("journal", super::ApiError::internal(format!("the answer could not be kept: {e}")).into_response())
            }
            _ => (
                "journal",
                super::ApiError::internal("the request's first run ended without an answer").into_response(),
            ),
        }
    }
}

/// One run of a request, which always ends its journal entry.
struct Run {
    journal: std::sync::Arc<Journal>,
    key: RequestKey,
    finished: bool,
}

impl Run {
    fn finish(&mut self, answer: Result<Answer, String>) {
        self.finished = true;
        self.journal.finish(&self.key, answer);
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if !self.finished {
            self.journal.finish(&self.key, Err("the run ended without an answer".to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    fn ok(n: usize) -> (&'static str, Response<Body>) {
        ("test", Response::builder().status(StatusCode::CREATED).body(body::full(format!("{{\"n\":{n}}}"))).unwrap())
    }

    async fn text((route, resp): (&'static str, Response<Body>)) -> (StatusCode, String) {
        let a = Answer::read(route, resp).await.unwrap();
        (a.status, String::from_utf8(a.body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_request_sent_twice_runs_once_and_both_get_its_answer() {
        let journal = Arc::new(Journal::new(Duration::from_secs(60), 100));
        let runs = Arc::new(AtomicUsize::new(0));
        let key = RequestKey::of("id-1", &Method::POST, "/containers/create", b"{}");
        let run = |runs: Arc<AtomicUsize>| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            ok(runs.fetch_add(1, Ordering::SeqCst))
        };
        let (a, b) =
            tokio::join!(journal.keep(key.clone(), run(runs.clone())), journal.keep(key.clone(), run(runs.clone())));
        let later = journal.keep(key, run(runs.clone())).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "one run for three sends");
        for resp in [a, b, later] {
            assert_eq!(text(resp).await, (StatusCode::CREATED, "{\"n\":0}".to_string()));
        }
    }

    #[tokio::test]
    async fn the_run_finishes_when_its_caller_goes_away() {
        let journal = Arc::new(Journal::new(Duration::from_secs(60), 100));
        let runs = Arc::new(AtomicUsize::new(0));
        let key = RequestKey::of("id-2", &Method::POST, "/containers/x/start", b"");
        let counted = runs.clone();
        let first = journal.keep(key.clone(), async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            ok(counted.fetch_add(1, Ordering::SeqCst))
        });
        // The caller's connection closes: its future is dropped mid-run.
        assert!(tokio::time::timeout(Duration::from_millis(10), first).await.is_err());
        let again = journal.keep(key, async { ok(99) }).await;
        assert_eq!(text(again).await.1, "{\"n\":0}", "the resend gets the first run's answer");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_run_that_panics_releases_those_waiting_and_runs_again() {
        let journal = Arc::new(Journal::new(Duration::from_secs(60), 100));
        let key = RequestKey::of("id-3", &Method::POST, "/containers/x/kill", b"");
        let failed = journal.keep(key.clone(), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            panic!("a handler failed");
        });
        let (status, _) = text(tokio::time::timeout(Duration::from_secs(5), failed).await.expect("released")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let again = journal.keep(key, async { ok(7) }).await;
        assert_eq!(text(again).await.1, "{\"n\":7}", "a request whose run failed runs again when sent again");
    }

    #[test]
    fn the_same_id_for_another_request_is_another_key() {
        let a = RequestKey::of("id", &Method::POST, "/containers/a/start", b"");
        assert_eq!(a, RequestKey::of("id", &Method::POST, "/containers/a/start", b""));
        assert_ne!(a, RequestKey::of("id", &Method::POST, "/containers/b/start", b""));
        assert_ne!(a, RequestKey::of("id", &Method::DELETE, "/containers/a/start", b""));
        assert_ne!(a, RequestKey::of("id2", &Method::POST, "/containers/a/start", b""));
        assert_eq!(a.as_str().len(), 64);
    }

    #[tokio::test]
    async fn old_answers_are_forgotten() {
        let journal = Arc::new(Journal::new(Duration::from_secs(60), 2));
        for i in 0..5 {
            let key = RequestKey::of(&format!("id{i}"), &Method::POST, "/x", b"");
            journal.keep(key, async move { ok(i) }).await;
        }
        assert!(journal.entries.lock().by_key.len() <= 3, "at most the bound, plus the one just kept");
    }
}

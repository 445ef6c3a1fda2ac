//! The HTTP client for a Docker API peer (an engine, or the leading manager): one kept-alive
//! connection per peer (more while calls overlap) over TCP, TLS or a unix socket, bounded connect
//! and header waits, and raw connections for hijacked streams. Used by the cluster, discovery,
//! Raft and the front alike.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::body::{self, Body, BoxError};

/// Largest JSON answer the manager reads from an engine (a `ps -a` of many containers).
const MAX_ENGINE_JSON_BYTES: u64 = 256 << 20;

/// What went wrong talking to an engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// No connection, or the connection broke.
    #[error("cannot connect to the Docker engine at {addr}")]
    Unreachable {
        /// Engine address.
        addr: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// No answer in time.
    #[error("the Docker engine at {addr} did not answer within {after:?}")]
    Timeout {
        /// Engine address.
        addr: String,
        /// The bound that passed.
        after: Duration,
    },
    /// The engine answered with an error status.
    #[error("{message}")]
    Status {
        /// The engine's status.
        status: StatusCode,
        /// The engine's `message`, or its body.
        message: String,
    },
    /// The manager refuses this engine (not an engine, or a duplicate ID).
    #[error("{reason}")]
    Refused {
        /// Engine address.
        addr: String,
        /// The classic message.
        reason: String,
    },
    /// The engine's answer is not what the API promises.
    #[error("unexpected answer from the Docker engine at {addr}: {detail}")]
    Protocol {
        /// Engine address.
        addr: String,
        /// What was wrong.
        detail: String,
    },
}

impl EngineError {
    /// Whether the engine itself failed to answer (counts against its health), as opposed to
    /// answering an error.
    pub fn is_connection_error(&self) -> bool {
        matches!(self, EngineError::Unreachable { .. } | EngineError::Timeout { .. })
    }
}

/// Where an engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineAddr {
    /// `host:port`.
    Tcp(String),
    /// A unix socket.
    Unix(PathBuf),
}

impl EngineAddr {
    /// Reads `unix:///path`, `tcp://host:port` or `host:port`.
    pub fn parse(text: &str) -> EngineAddr {
        match text.strip_prefix("unix://") {
            Some(path) => EngineAddr::Unix(PathBuf::from(path)),
            None => EngineAddr::Tcp(text.strip_prefix("tcp://").unwrap_or(text).to_string()),
        }
    }

    fn authority(&self) -> &str {
        match self {
            EngineAddr::Tcp(hp) => hp,
            EngineAddr::Unix(_) => "localhost",
        }
    }

    /// The IP or host part, for events' `node.ip`.
    pub fn host(&self) -> String {
        match self {
            EngineAddr::Tcp(hp) => hp.rsplit_once(':').map_or(hp.as_str(), |(h, _)| h).to_string(),
            EngineAddr::Unix(_) => "127.0.0.1".to_string(),
        }
    }
}

impl std::fmt::Display for EngineAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineAddr::Tcp(hp) => f.write_str(hp),
            EngineAddr::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

// === impl EngineStream ===

/// A connection to an engine.
#[derive(Debug)]
pub enum EngineStream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix socket.
    Unix(UnixStream),
    /// TLS to an engine or another manager.
    TlsClient(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// TLS from an API client.
    TlsServer(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for EngineStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            EngineStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            EngineStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            EngineStream::TlsClient(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            EngineStream::TlsServer(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for EngineStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            EngineStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            EngineStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            EngineStream::TlsClient(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            EngineStream::TlsServer(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            EngineStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            EngineStream::Unix(s) => Pin::new(s).poll_flush(cx),
            EngineStream::TlsClient(s) => Pin::new(s.as_mut()).poll_flush(cx),
            EngineStream::TlsServer(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            EngineStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            EngineStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            EngineStream::TlsClient(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            EngineStream::TlsServer(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

async fn connect(
    addr: &EngineAddr,
    timeout: Duration,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> io::Result<EngineStream> {
    let attempt = async {
        Ok(match addr {
            EngineAddr::Tcp(hp) => {
                let s = TcpStream::connect(hp.as_str()).await?;
                // Small request/response pairs: Nagle would add delay to every proxied call.
                s.set_nodelay(true)?;
                match tls {
                    Some(config) => {
                        let name = crate::tls::server_name(hp).ok_or_else(|| {
                            io::Error::new(io::ErrorKind::InvalidInput, format!("{hp} has no host name for TLS"))
                        })?;
                        let stream = tokio_rustls::TlsConnector::from(config.clone()).connect(name, s).await?;
                        EngineStream::TlsClient(Box::new(stream))
                    }
                    None => EngineStream::Tcp(s),
                }
            }
            EngineAddr::Unix(p) => EngineStream::Unix(UnixStream::connect(p).await?),
        })
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connect timed out after {timeout:?}")))?
}

// === impl EngineClient ===

/// A cheap-to-clone client for one engine.
#[derive(Clone)]
pub struct EngineClient {
    inner: Arc<Inner>,
}

struct Inner {
    addr: EngineAddr,
    /// The kept-alive connection, between calls; a call that finds it busy opens another.
    kept: parking_lot::Mutex<Option<Kept>>,
    timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Parsed once: every proxied request needs both.
    authority: http::uri::Authority,
    host: http::HeaderValue,
    /// Time to each answer's head, by [`call_kind`], when the owner counts them.
    call_duration: Option<prometheus::HistogramVec>,
}

impl std::fmt::Debug for EngineClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineClient").field("addr", &self.inner.addr).finish()
    }
}

/// The read buffer of every engine connection, fixed: hyper's adaptive buffer grows to
/// the largest answer read and keeps that size (16 KiB after one list of thirty containers), on
/// each of two connections per engine. An engine's answer head must fit in it (dockerd's are
/// about 300 bytes); bodies stream through it a buffer at a time.
pub const ENGINE_READ_BUFFER_BYTES: usize = 8 * 1024;

/// One connection per peer is kept alive between calls: with the event stream, two descriptors
/// per engine in steady state (see `open_files`). Concurrent calls open more, each closed once
/// its answer is read.
///
/// How long an unused kept-alive connection is trusted: one idle for longer is closed when the
/// next call comes, and that call opens a fresh one (a peer or a middlebox may have dropped it
/// without a word).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A kept-alive connection and when it last carried a call.
struct Kept {
    sender: SendRequest<Body>,
    used: Instant,
}

impl EngineClient {
    /// A client for `addr`; `timeout` bounds connecting and the manager's own calls.
    pub fn new(addr: &str, timeout: Duration) -> Self {
        Self::with_tls(addr, timeout, None)
    }

    /// A client that speaks TLS over TCP with `tls` (unix sockets stay plain).
    pub fn with_tls(addr: &str, timeout: Duration, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        Self::build(addr, timeout, tls, None)
    }

    /// [`EngineClient::with_tls`], each call's time to its answer's head observed in
    /// `call_duration` under its [`call_kind`].
    pub fn timed(
        addr: &str,
        timeout: Duration,
        tls: Option<Arc<rustls::ClientConfig>>,
        call_duration: prometheus::HistogramVec,
    ) -> Self {
        Self::build(addr, timeout, tls, Some(call_duration))
    }

    fn build(
        addr: &str,
        timeout: Duration,
        tls: Option<Arc<rustls::ClientConfig>>,
        call_duration: Option<prometheus::HistogramVec>,
    ) -> Self {
        let addr = EngineAddr::parse(addr);
        let authority = addr.authority().parse().unwrap_or_else(|_| http::uri::Authority::from_static("localhost"));
        let host = http::HeaderValue::from_str(addr.authority())
            .unwrap_or_else(|_| http::HeaderValue::from_static("localhost"));
        let kept = parking_lot::Mutex::new(None);
        EngineClient { inner: Arc::new(Inner { addr, kept, timeout, tls, authority, host, call_duration }) }
    }

    /// Where the engine listens.
    pub fn addr(&self) -> &EngineAddr {
        &self.inner.addr
    }

    /// The bound on the manager's own calls.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// A URI for `path_and_query` on this engine.
    pub fn uri(&self, path_and_query: &str) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTP);
        parts.authority = Some(self.inner.authority.clone());
        parts.path_and_query = path_and_query.parse().ok();
        Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("http://localhost/"))
    }

    /// The `Host` header for requests to this engine.
    pub fn host_header(&self) -> http::HeaderValue {
        self.inner.host.clone()
    }

    /// A fresh, unpooled connection (hijacked streams need a connection of their own).
    pub async fn connect_raw(&self) -> Result<EngineStream, EngineError> {
        connect(&self.inner.addr, self.inner.timeout, self.inner.tls.as_ref())
            .await
            .map_err(|e| self.unreachable(e.into()))
    }

    fn unreachable(&self, source: BoxError) -> EngineError {
        EngineError::Unreachable { addr: self.inner.addr.to_string(), source }
    }

    /// Sends a request on the kept-alive connection, or on a new one when that one is busy;
    /// the response body streams. Only connecting is bounded: a `stop` or a `wait` may take as
    /// long as the container does. The connection is kept again once its answer has been read.
    pub async fn send(&self, req: Request<Body>) -> Result<Response<Incoming>, EngineError> {
        let (resp, mut sender) = self.dispatch(req).await?;
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            if sender.ready().await.is_ok() {
                if let Some(inner) = inner.upgrade() {
                    keep(&inner, sender);
                }
            }
        });
        Ok(resp)
    }

    /// Sends `req` on the kept connection if it is idle, else on a new one; the answer's head
    /// and the connection that carries it.
    async fn dispatch(&self, req: Request<Body>) -> Result<(Response<Incoming>, SendRequest<Body>), EngineError> {
        let Some(durations) = &self.inner.call_duration else { return self.dispatch_untimed(req).await };
        let timer = durations.with_label_values(&[call_kind(req.method(), req.uri().path())]).start_timer();
        let answer = self.dispatch_untimed(req).await;
        timer.observe_duration();
        answer
    }

    async fn dispatch_untimed(
        &self,
        mut req: Request<Body>,
    ) -> Result<(Response<Incoming>, SendRequest<Body>), EngineError> {
        // Origin form, as a proxy-less HTTP/1 client sends it, with the peer's Host.
        if let Some(pq) = req.uri().path_and_query().cloned() {
            *req.uri_mut() = Uri::from(pq);
        }
        req.headers_mut().entry(http::header::HOST).or_insert_with(|| self.inner.host.clone());
        let (mut sender, reused) = match self.take_kept() {
            Some(sender) => (sender, true),
            None => (self.open().await?, false),
        };
        match sender.try_send_request(req).await {
            Ok(resp) => Ok((resp, sender)),
            // The peer closed a kept connection before the request went out: it is safe to
            // send it once more, on a fresh one.
            Err(mut e) => match e.take_message().filter(|_| reused) {
                Some(req) => {
                    let mut sender = self.open().await?;
                    let resp = sender.send_request(req).await.map_err(|e| self.unreachable(e.into()))?;
                    Ok((resp, sender))
                }
                None => Err(self.unreachable(e.into_error().into())),
            },
        }
    }

    /// The kept connection, if it is idle and still trusted.
    fn take_kept(&self) -> Option<SendRequest<Body>> {
        let mut slot = self.inner.kept.lock();
        let kept = slot.take()?;
        let usable = !kept.sender.is_closed() && kept.sender.is_ready() && kept.used.elapsed() <= POOL_IDLE_TIMEOUT;
        usable.then_some(kept.sender)
    }

    /// A new connection, ready for a request.
    async fn open(&self) -> Result<SendRequest<Body>, EngineError> {
        let stream = self.connect_raw().await?;
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .read_buf_exact_size(Some(ENGINE_READ_BUFFER_BYTES))
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.unreachable(e.into()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "Engine connection ended.");
            }
        });
        sender.ready().await.map_err(|e| self.unreachable(e.into()))?;
        Ok(sender)
    }

    /// Sends a request and reads the whole answer within `timeout`.
    pub async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
        headers: &HeaderMap,
        timeout: Option<Duration>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), EngineError> {
        self.call_within(method, path_and_query, body, headers, timeout, None).await
    }

    /// [`EngineClient::call`], the answer's bytes also taken from `budget`.
    pub async fn call_within(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
        headers: &HeaderMap,
        timeout: Option<Duration>,
        budget: Option<&body::Budget>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), EngineError> {
        let mut req = Request::builder().method(method).uri(self.uri(path_and_query));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(body.map_or_else(body::empty, body::full)).map_err(|e| self.protocol_error(e))?;
        let exchange = async {
            let (resp, mut sender) = self.dispatch(req).await?;
            let (parts, incoming) = resp.into_parts();
            let bytes = body::collect_within(incoming, MAX_ENGINE_JSON_BYTES, budget).await.map_err(|e| match e {
                body::CollectError::Read(source) => self.unreachable(source),
                // Too much is not a broken engine: say so, and let its health be.
                other => self.protocol_error(other),
            })?;
            // Kept before the next call of this task: waiting here for the connection to say
            // it is idle (it does once it has read the answer's end) is what spares a call made
            // right after this one a connection of its own.
            if sender.ready().await.is_ok() {
                keep(&self.inner, sender);
            }
            Ok((parts.status, parts.headers, bytes))
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, exchange)
                .await
                .map_err(|_| EngineError::Timeout { addr: self.inner.addr.to_string(), after: t })?,
            None => exchange.await,
        }
    }

    /// `GET` a JSON document within the client's timeout; error statuses become
    /// [`EngineError::Status`].
    pub async fn get_json(&self, path_and_query: &str) -> Result<serde_json::Value, EngineError> {
        let bytes = self.get_ok(path_and_query).await?;
        serde_json::from_slice(&bytes).map_err(|e| self.protocol_error(e))
    }

    /// `GET` within the client's timeout, the body unparsed; error statuses become
    /// [`EngineError::Status`].
    pub async fn get_ok(&self, path_and_query: &str) -> Result<Bytes, EngineError> {
        let (status, _, bytes) =
            self.call(Method::GET, path_and_query, None, &HeaderMap::new(), Some(self.inner.timeout)).await?;
        if !status.is_success() {
            return Err(EngineError::Status { status, message: error_message(&bytes) });
        }
        Ok(bytes)
    }

    /// An answer of this peer that does not parse.
    pub fn protocol_error(&self, e: impl std::fmt::Display) -> EngineError {
        EngineError::Protocol { addr: self.inner.addr.to_string(), detail: e.to_string() }
    }

    /// `GET /_ping` within `timeout`: the light health probe.
    pub async fn ping(&self, timeout: Duration) -> Result<(), EngineError> {
        let (status, _, body) = self.call(Method::GET, "/_ping", None, &HeaderMap::new(), Some(timeout)).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(EngineError::Status { status, message: error_message(&body) })
        }
    }
}

/// What an engine call is, for its latency: one of a few kinds, never an ID or a name.
pub fn call_kind(method: &Method, path: &str) -> &'static str {
    let (_, path) = crate::api_version::split_path(path);
    let mut segments = path.trim_start_matches('/').split('/');
    let (first, second, third) = (segments.next(), segments.next(), segments.next());
    match (first, second, third) {
        (Some("_ping"), None, _) => "ping",
        (Some("info"), None, _) => "info",
        (Some("version"), None, _) => "version",
        (Some("events"), None, _) => "events",
        (Some("containers"), Some("json"), None) => "container_list",
        (Some("containers"), Some("create"), None) => "container_create",
        (Some("containers"), Some(_), None) if method == Method::DELETE => "container_remove",
        (Some("containers"), Some(_), Some("json")) => "container_inspect",
        (Some("containers"), Some(_), Some("start")) => "container_start",
        (Some("containers"), Some(_), Some("stop" | "kill" | "restart")) => "container_stop",
        (Some("containers"), Some(_), Some("wait")) => "container_wait",
        (Some("containers"), Some(_), Some("logs" | "attach")) => "container_stream",
        (Some("containers"), ..) => "container_other",
        (Some("images"), Some("create"), None) => "image_pull",
        (Some("images"), Some("json"), None) => "image_list",
        (Some("images"), ..) => "image_other",
        (Some("exec"), ..) => "exec",
        (Some("networks"), ..) => "network",
        (Some("volumes"), ..) => "volume",
        (Some("build"), ..) => "build",
        _ => "other",
    }
}

/// Keeps `sender`, idle, as its peer's connection between calls, unless one is kept already (then
/// it closes).
fn keep(inner: &Inner, sender: SendRequest<Body>) {
    let mut slot = inner.kept.lock();
    if slot.as_ref().is_none_or(|k| k.sender.is_closed()) {
        *slot = Some(Kept { sender, used: Instant::now() });
    }
}

/// The `message` of a Docker error body, or the body as text.
pub fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::Full;
    use hyper::service::service_fn;

    use super::*;

    #[test]
    fn call_kinds_name_the_call_and_never_an_id() {
        let cases = [
            (Method::GET, "/_ping", "ping"),
            (Method::GET, "/v1.41/containers/json", "container_list"),
            (Method::POST, "/v1.45/containers/create", "container_create"),
            (Method::GET, "/containers/abc123/json", "container_inspect"),
            (Method::DELETE, "/v1.41/containers/abc123", "container_remove"),
            (Method::POST, "/containers/abc/kill", "container_stop"),
            (Method::POST, "/containers/abc/rename", "container_other"),
            (Method::POST, "/v1.41/images/create", "image_pull"),
            (Method::GET, "/events", "events"),
            (Method::GET, "/v1.41/some/thing", "other"),
        ];
        for (method, path, kind) in cases {
            assert_eq!(call_kind(&method, path), kind, "{method} {path}");
        }
    }

    /// A peer on loopback that answers 64 KiB (`/slow`: after 300 ms), a body longer than one
    /// read buffer as an engine's list is, keeping connections alive
    /// unless `keep_alive` is false; counts the connections it accepted.
    async fn peer(keep_alive: bool) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let svc = service_fn(|req: Request<Incoming>| async move {
                    if req.uri().path() == "/slow" {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(vec![b'x'; 64 * 1024]))))
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .keep_alive(keep_alive)
                    .serve_connection(TokioIo::new(stream), svc);
                tokio::spawn(conn);
            }
        });
        (addr, accepted)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_one_after_another_share_one_connection() {
        let (addr, accepted) = peer(true).await;
        let client = EngineClient::new(&addr, Duration::from_secs(5));
        for _ in 0..200 {
            assert_eq!(client.get_ok("/info").await.expect("answer").len(), 64 * 1024);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "200 calls made one after another");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_made_while_another_waits_opens_its_own_and_one_is_kept() {
        let (addr, accepted) = peer(true).await;
        let client = EngineClient::new(&addr, Duration::from_secs(5));
        let slow = {
            let client = client.clone();
            tokio::spawn(async move { client.get_ok("/slow").await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        client.get_ok("/fast").await.expect("answer while the other waits");
        slow.await.expect("task").expect("slow answer");
        for _ in 0..20 {
            client.get_ok("/info").await.expect("answer");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "one connection per call in flight, then one kept");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_that_closes_after_each_answer_is_still_served() {
        let (addr, accepted) = peer(false).await;
        let client = EngineClient::new(&addr, Duration::from_secs(5));
        for _ in 0..20 {
            client.get_ok("/info").await.expect("answer on a fresh connection");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 20);
    }
}

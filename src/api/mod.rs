//! The Docker Remote API front: one virtual engine over the cluster.
//!
//! - `router`: (method, path) → handler; `/vX.Y` prefixes; 404 for the rest.
//! - `system`: `/_ping`, `/version`, `/info`, `/events`, `/metrics`.
//! - `containers`, `exec`, `images`, `networks`, `volumes`: one file per resource group.
//! - `proxy`: forwarding to one engine, streams and hijacked connections included.
//! - `fanout`: one call to many engines.
//! - `error`, `query`, `version`: Docker's error shape, query parsing, API versions.

pub mod containers;
pub mod error;
pub mod exec;
pub mod fanout;
pub mod images;
pub mod journal;
pub mod networks;
pub mod proxy;
pub mod query;
pub mod replica;
pub mod router;
pub mod routes;
pub mod slots;
pub mod system;
/// API version helpers live outside the front, for the cluster's use too.
pub use crate::api_version as version;
pub mod volumes;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use crate::body::{self, Body};
use crate::cluster::Cluster;
use crate::config::ManageConfig;
use crate::metrics::Metrics;
use crate::transport::EngineStream;
pub use error::ApiError;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<StateInner>,
}

/// The parts of [`ApiState`].
pub struct StateInner {
    /// The engines.
    pub cluster: Cluster,
    /// Creates and placement.
    pub orchestrator: crate::orchestrator::Orchestrator,
    /// Settings.
    pub config: ManageConfig,
    /// Metrics.
    pub metrics: Metrics,
    /// The registry `/metrics` serves.
    pub registry: prometheus::Registry,
    /// The manager's host name (for `/info`).
    pub hostname: String,
    /// Raft RPCs, the registry, membership and the token service.
    pub control: crate::control::ControlPlane,
    /// Who leads.
    pub leadership: crate::leadership::Leadership,
    /// The pooled client to the current leader, for followers.
    pub leader_client: parking_lot::Mutex<Option<(String, crate::transport::EngineClient)>>,
    /// `--tls`/`--tlsverify`: the API front serves TLS, and calls to managers use it.
    pub tls: Option<crate::tls::Tls>,
    /// What buffered archives (`docker load`, `import`) may hold together.
    pub uploads: crate::body::BodyMemory,
    /// What buffered JSON bodies may hold together.
    pub bodies: crate::body::BodyMemory,
    /// The answers of writes that carry a request ID, for their resends.
    pub journal: Arc<journal::Journal>,
    /// Creates being served here as leader: a leader that stops lets them finish before it
    /// hands leadership over.
    pub leader_work: Arc<tokio::sync::watch::Sender<usize>>,
}

/// Counts one write served here while it runs (see [`StateInner::leader_work`]).
struct LeaderWork(Arc<tokio::sync::watch::Sender<usize>>);

impl LeaderWork {
    fn start(state: &ApiState) -> LeaderWork {
        state.leader_work.send_modify(|n| *n += 1);
        LeaderWork(state.leader_work.clone())
    }
}

impl Drop for LeaderWork {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl std::ops::Deref for ApiState {
    type Target = StateInner;
    fn deref(&self) -> &StateInner {
        &self.inner
    }
}

impl ApiState {
    /// Bundles the parts.
    pub fn new(inner: StateInner) -> Self {
        ApiState { inner: Arc::new(inner) }
    }

    /// Reads a client's JSON body: at most `--api-max-body-bytes`, within `--api-body-timeout`,
    /// its size taken from what bodies share (`--api-max-body-total-bytes`) while it is held.
    pub async fn read_body(&self, body: Body) -> Result<bytes::Bytes, ApiError> {
        let limits = &self.config.limits;
        match tokio::time::timeout(limits.body_timeout, self.bodies.collect(body, limits.max_body_bytes)).await {
            Ok(read) => Ok(read?),
            Err(_) => Err(ApiError::new(
                http::StatusCode::REQUEST_TIMEOUT,
                format!("request body not received within {:?} (--api-body-timeout)", limits.body_timeout),
            )),
        }
    }

    /// dockerd's check of a JSON body's `Content-Type` (its `CheckForJSON`): `application/json`,
    /// with any parameters, or none at all for an empty body. It also keeps web pages out:
    /// a browser sends `text/plain` across origins without asking first.
    pub fn check_json_content_type(headers: &http::HeaderMap) -> Result<(), ApiError> {
        let ct = headers.get(http::header::CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let has_body = headers.contains_key(http::header::TRANSFER_ENCODING)
            || headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                .is_some_and(|n| n > 0);
        let ct = ct.unwrap_or_default();
        if ct.is_empty() && !has_body {
            return Ok(());
        }
        let media = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if media == "application/json" {
            return Ok(());
        }
        Err(ApiError::bad_request(format!("Content-Type specified ({ct}) must be 'application/json'")))
    }

    /// The API version the manager advertises: the lowest of its engines'.
    pub fn api_version(&self) -> String {
        self.cluster.min_api_version().unwrap_or_else(|| version::DEFAULT_API_VERSION.to_string())
    }
}

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix socket.
    Unix(UnixListener),
}

/// Serves the API on `listener`: accepts connections until `stop_accepting`, and serves them
/// until `shutdown` (then each finishes the request it is serving). Connections are tracked on
/// `tracker` so the caller can drain them.
pub async fn serve(
    listener: Listener,
    state: ApiState,
    stop_accepting: CancellationToken,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let tls = state.tls.as_ref().map(|t| tokio_rustls::TlsAcceptor::from(t.server.clone()));
    let limits = state.config.limits.clone();
    let slots = slots::Slots::new(limits.max_connections);
    let mut http = http1::Builder::new();
    // The timer is what makes hyper enforce the header timeout, which also closes a
    // kept-alive connection left idle that long.
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).max_header_size(limits.max_header_bytes);
    loop {
        let accepted = tokio::select! {
            _ = stop_accepting.cancelled() => return,
            a = accept(&listener) => a,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                debug!(error = %e, "Accept failed.");
                // Out of descriptors or similar: back off instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some((held, evicted)) = slots.take().await else {
            state.metrics.refused_connections.inc();
            tracker.spawn(refuse_busy(stream, limits.max_connections));
            continue;
        };
        if evicted {
            state.metrics.evicted_connections.inc();
        }
        let state = state.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        let http = http.clone();
        tracker.spawn(async move {
            let slot = held.slot.clone();
            let _held = held;
            // The handshake runs here, not in the accept loop, so a slow client delays no one.
            let stream = match (tls, stream) {
                (Some(acceptor), EngineStream::Tcp(tcp)) => {
                    match tokio::time::timeout(state.config.limits.tls_handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => EngineStream::TlsServer(Box::new(tls)),
                        Ok(Err(e)) => return debug!(error = %e, "TLS handshake failed."),
                        Err(_) => return debug!("TLS handshake timed out."),
                    }
                }
                (_, stream) => stream,
            };
            let link = Arc::new(replica::LeaderLink::default());
            let used = slot.clone();
            let svc = service_fn(move |req| {
                used.mark_used();
                let (state, link) = (state.clone(), link.clone());
                async move { Ok::<_, Infallible>(handle(state, req, &link).await) }
            });
            let conn = http.serve_connection(TokioIo::new(stream), svc).with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        debug!(error = %e, "Client connection ended.");
                    }
                    return;
                }
                _ = shutdown.cancelled() => {}
                // Closed to make room: it has sent nothing, so nothing is lost.
                _ = slot.close.cancelled() => return,
            }
            // The request being served is answered; an idle connection closes now.
            conn.as_mut().graceful_shutdown();
            if let Err(e) = conn.await {
                debug!(error = %e, "Client connection ended while draining.");
            }
        });
    }
}

/// A connection past `--api-max-connections`: a 503 in Docker's error shape (plain-text
/// connections only; a TLS client would not read it), then closed.
async fn refuse_busy(mut stream: EngineStream, max: usize) {
    use tokio::io::AsyncWriteExt;
    if !matches!(stream, EngineStream::Tcp(_) | EngineStream::Unix(_)) {
        return;
    }
    let body = format!(
        "{{\"message\":\"too many connections: the manager serves at most {max} at once (--api-max-connections)\"}}\n"
    );
    let head = format!("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), write).await;
}

/// TLS, when on, applies to TCP listeners; unix sockets are guarded by file permissions.
async fn accept(listener: &Listener) -> std::io::Result<EngineStream> {
    Ok(match listener {
        Listener::Tcp(l) => {
            let (s, _) = l.accept().await?;
            s.set_nodelay(true)?;
            EngineStream::Tcp(s)
        }
        Listener::Unix(l) => EngineStream::Unix(l.accept().await?.0),
    })
}

/// Which of Docker's common headers a response carries; a handler may say so in the
/// response's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommonHeaders {
    All,
    VersionOnly,
    None,
}

/// Serves one request: version checks, routing, Docker's common headers, metrics.
/// `link` is the client connection's own connection to the leader, used when following.
pub async fn handle(state: ApiState, req: Request<Incoming>, link: &replica::LeaderLink) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let route = routes::route_of(req.method(), req.uri().path(), state.config.cors);
    let control = match route.handler {
        routes::Handler::Control(c) => Some(c),
        _ => None,
    };
    // Who may use a control route is decided here, before anything is read or forwarded.
    let checked = match control.map(|c| state.control.authorize(c, &req)) {
        Some(Err(refusal)) => {
            state.metrics.control_refused.with_label_values(&[refusal.label()]).inc();
            tracing::debug!(path = %req.uri().path(), reason = refusal.label(), "Control request refused.");
            return crate::control::refused(refusal);
        }
        Some(Ok(checked)) => checked,
        None => None,
    };
    let req = req.map(body::incoming);
    // A stopping leader serves no new request: they wait for its successor.
    let follower = state.leadership.is_replicated()
        && route.serves != routes::Serves::Anywhere
        && (!state.leadership.is_leader() || state.leadership.is_stopping());
    let (class, mut resp) = if follower && !replica::serves_stream(&state, &route, &req) {
        replica::forward(&state, route, req, checked, link).await
    } else {
        serve_here(&state, route, req, checked).await
    };
    if class == "raft" {
        return resp;
    }
    // dockerd's 404 for an unknown route carries none of its common headers, and its
    // version check only the API version and OS type.
    let common = match class {
        "unknown" => CommonHeaders::None,
        "version-check" => CommonHeaders::VersionOnly,
        _ => resp.extensions().get::<CommonHeaders>().copied().unwrap_or(CommonHeaders::All),
    };
    let headers = resp.headers_mut();
    if common != CommonHeaders::None {
        if let Ok(v) = HeaderValue::from_str(&state.api_version()) {
            headers.insert("api-version", v);
        }
        headers.entry("ostype").or_insert(HeaderValue::from_static("linux"));
    }
    if common == CommonHeaders::All {
        headers.entry("docker-experimental").or_insert(HeaderValue::from_static(if state.config.experimental {
            "true"
        } else {
            "false"
        }));
    }
    headers.insert(header::SERVER, HeaderValue::from_static(concat!("Swarm/", env!("CARGO_PKG_VERSION"), " (linux)")));
    if state.config.cors {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Origin, X-Requested-With, Content-Type, Accept, X-Registry-Auth"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("HEAD, GET, POST, DELETE, PUT, OPTIONS"),
        );
    }
    let code = resp.status().as_u16().to_string();
    if class == replica::FORWARDED {
        // The leader counted it: summed over managers, each request counts once.
        state.metrics.forwarded.with_label_values(&[method.as_str(), &code]).inc();
        return resp;
    }
    state.metrics.api_requests.with_label_values(&[method.as_str(), class, &code]).inc();
    state.metrics.api_duration.with_label_values(&[method.as_str(), class]).observe(started.elapsed().as_secs_f64());
    resp
}

/// Serves a request here: the control plane before the Docker API. A write that carries a
/// request ID is run once however often it arrives (`journal`).
pub(crate) async fn serve_here(
    state: &ApiState,
    route: routes::Route,
    req: Request<Body>,
    checked: Option<crate::auth::Checked>,
) -> (&'static str, Response<Body>) {
    if let routes::Handler::Control(c) = route.handler {
        return state.control.serve(c, req, checked).await;
    }
    if !route.journaled {
        return router::serve(state, route, req).await;
    }
    // A create needs leadership to its end (it records and clears its record); other changes
    // record themselves before the engine hears of them, and can finish under the successor.
    let work = route.is_create().then(|| LeaderWork::start(state));
    let Some(id) = journal::request_id(req.headers()).map(str::to_string) else {
        return router::serve(state, route, req).await;
    };
    let (parts, incoming) = req.into_parts();
    let bytes = match state.read_body(incoming).await {
        Ok(b) => b,
        Err(e) => return ("journal", e.into_response()),
    };
    let target = parts.uri.path_and_query().map_or("", |p| p.as_str());
    let key = journal::RequestKey::of(&id, &parts.method, target, &bytes);
    let mut req = Request::from_parts(parts, body::full(bytes));
    req.extensions_mut().insert(key.clone());
    let state2 = state.clone();
    state
        .journal
        .keep(key, async move {
            let _work = work;
            router::serve(&state2, route, req).await
        })
        .await
}

/// Logs where the API listens.
pub fn log_listening(addr: &str) {
    info!(addr = %addr, "Listening for Docker API requests.");
}

//! A follower's answers: `/_ping`, `/info`, `/metrics` and the registry's reads locally, the
//! streams that need no leader (`/events`, a known container's logs, stats, wait, attach and
//! exec sessions) from its own engine watches and connections, everything else forwarded to
//! the leader byte for byte. It never answers a write from its own cache.
//!
//! A request the leader could not take is held for the next one, within
//! `--replication-leader-wait`: one never written (the leader refused the connection, or is
//! known to be gone), a read whatever became of it, and a write that carries a request ID
//! (minted here when the client sent none), which the leader applies once however often it
//! arrives (`journal.rs`).

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tracing::debug;

use super::error::{ApiError, NOT_PRIMARY_HEADER};
use super::journal::{mint_request_id, request_id, REQUEST_ID_HEADER};
use super::routes::{Handler, Route, Serves};
use super::{proxy, version, ApiState};
use crate::body::{self, Body};
use crate::leadership::Role;
use crate::transport::EngineClient;

/// Largest request body kept to be sent again to the next leader; larger ones (archives,
/// build contexts) stream through once.
pub const RESEND_BODY_BYTES: u64 = 1 << 20;

/// Pause before asking a leader that lost a request again, when no other has been elected
/// meanwhile: a refused connection comes back at once.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Whether a follower serves this stream route itself, from its own engine watches and
/// connections, so that it outlives the leader's death: events always, a container's stream
/// once the follower's cache knows the container (created a moment ago, it goes to the
/// leader), an exec session when the client upgrades to it.
pub fn serves_stream(state: &ApiState, route: &Route, req: &Request<Body>) -> bool {
    if route.serves != Serves::Stream {
        return false;
    }
    match route.handler {
        Handler::Events => true,
        Handler::Exec => proxy::wants_upgrade(req),
        Handler::Container => {
            let (_, rest) = version::split_path(req.uri().path());
            let id = super::routes::segments(rest).into_iter().nth(1).unwrap_or_default();
            state.cluster.find_container(&id).is_ok()
        }
        _ => false,
    }
}

/// The connection one client connection keeps to the leader, as a proxy keeps one per client:
/// no pool to search, and its requests follow each other as the client's do.
#[derive(Default)]
pub struct LeaderLink(parking_lot::Mutex<Option<(String, SendRequest<Body>)>>);

impl LeaderLink {
    /// The kept connection, if it goes to `leader` and is still open.
    fn take_for(&self, leader: &str) -> Option<SendRequest<Body>> {
        let (addr, sender) = self.0.lock().take()?;
        (addr == leader && !sender.is_closed()).then_some(sender)
    }

    fn keep(&self, leader: &str, sender: SendRequest<Body>) {
        *self.0.lock() = Some((leader.to_string(), sender));
    }
}

/// A request on its way to the leader: its body kept when small, so that it can be sent again.
struct Outgoing {
    parts: http::request::Parts,
    body: Kept,
}

enum Kept {
    Bytes(Bytes),
    /// Streamed through once; `None` once sent.
    Stream(Option<Body>),
}

impl Outgoing {
    async fn read(state: &ApiState, req: Request<Body>) -> Result<Outgoing, ApiError> {
        let (mut parts, incoming) = req.into_parts();
        let length = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let chunked = parts.headers.contains_key(header::TRANSFER_ENCODING);
        let body = match (length, chunked) {
            (Some(n), false) if n <= RESEND_BODY_BYTES => Kept::Bytes(state.read_body(incoming).await?),
            (None, false) => Kept::Bytes(Bytes::new()),
            _ => Kept::Stream(Some(incoming)),
        };
        if !matches!(parts.method, Method::GET | Method::HEAD) && request_id(&parts.headers).is_none() {
            parts.headers.insert(REQUEST_ID_HEADER, mint_request_id());
        }
        Ok(Outgoing { parts, body })
    }

    /// Whether it may be sent again once it has reached a leader that then went silent: a read,
    /// or a write the leader recognises by its request ID; in both cases only with its body.
    fn resendable(&self) -> bool {
        matches!(self.body, Kept::Bytes(_))
    }

    /// The request to send, or `None` when its streamed body has gone already.
    fn request(&mut self) -> Option<Request<Body>> {
        let body = match &mut self.body {
            Kept::Bytes(b) => body::full(b.clone()),
            Kept::Stream(s) => s.take()?,
        };
        let mut req = Request::new(body);
        *req.method_mut() = self.parts.method.clone();
        *req.uri_mut() = self.parts.uri.clone();
        *req.version_mut() = self.parts.version;
        *req.headers_mut() = self.parts.headers.clone();
        Some(req)
    }
}

/// What became of one send to the leader.
enum Sent {
    Answered(Response<Body>),
    /// Never written: the request may go anywhere.
    Unsent(String),
    /// Written, and no answer came: its outcome is unknown to us.
    Lost(String),
}

/// The metrics class of an answer the leader gave: the leader counts the request, the
/// follower only that it passed it on.
pub const FORWARDED: &str = "leader";
/// The metrics class of a follower's own answer to a request it could not pass on.
pub const FORWARDING: &str = "forwarding";

/// Serves a request that a follower does not answer itself: forwarded to the leader, held for
/// the next one when the leader cannot take it, or served here once this manager leads.
pub async fn forward(
    state: &ApiState,
    route: Route,
    req: Request<Body>,
    checked: Option<crate::auth::Checked>,
    link: &LeaderLink,
) -> (&'static str, Response<Body>) {
    let Some(replication) = &state.config.replication else {
        return super::serve_here(state, route, req, checked).await;
    };
    let deadline = Instant::now() + replication.leader_wait;
    if proxy::wants_upgrade(&req) {
        return match wait_for_leader(state, None, deadline).await {
            Some(Role::Follower { leader: Some(addr) }) => hijack(state, req, &addr).await,
            Some(_) => super::serve_here(state, route, req, checked).await,
            None => (FORWARDING, no_leader()),
        };
    }
    let mut out = match Outgoing::read(state, req).await {
        Ok(out) => out,
        Err(e) => return (FORWARDING, e.into_response()),
    };
    let mut failed: Option<String> = None;
    loop {
        let leader = match wait_for_leader(state, failed.as_deref(), deadline).await {
            Some(Role::Follower { leader: Some(addr) }) => addr,
            Some(_) => match out.request() {
                // Elected while the request waited: it is ours to serve.
                Some(req) => return super::serve_here(state, route, req, checked).await,
                None => return (FORWARDING, lost_stream()),
            },
            None => {
                return (
                    FORWARDING,
                    failed.map_or_else(no_leader, |l| unreachable_leader(&l, "no other primary was elected in time")),
                )
            }
        };
        let Some(req) = out.request() else { return (FORWARDING, lost_stream()) };
        state.metrics.proxied.with_label_values(&["leader"]).inc();
        let started = std::time::Instant::now();
        let sent = send_on_link(state, req, &leader, link).await;
        state.metrics.leader_proxy_duration.observe(started.elapsed().as_secs_f64());
        match sent {
            Sent::Answered(resp) if resp.headers().contains_key(NOT_PRIMARY_HEADER) => {
                debug!(leader = %leader, "The leader stepped down before serving; waiting for the next one.");
                failed = Some(leader);
            }
            Sent::Answered(resp) => return (FORWARDED, resp),
            Sent::Unsent(e) => {
                debug!(leader = %leader, error = %e, "The leader did not take the request; waiting for the next one.");
                failed = Some(leader);
            }
            Sent::Lost(e) if out.resendable() => {
                debug!(leader = %leader, error = %e, "The leader lost the request; sending it again to the next one.");
                failed = Some(leader);
            }
            Sent::Lost(e) => return (FORWARDING, unreachable_leader(&leader, &e)),
        }
        if Instant::now() >= deadline {
            let leader = failed.unwrap_or_default();
            return (
                FORWARDING,
                unreachable_leader(&leader, "no primary took the request in time (--replication-leader-wait)"),
            );
        }
    }
}

/// Waits until a leader is known, other than `failed` (one that just failed a request), and
/// returns the role then; after a pause with no other, `failed` again (it may have been a
/// passing fault). `None` past `deadline`.
async fn wait_for_leader(state: &ApiState, failed: Option<&str>, deadline: Instant) -> Option<Role> {
    let mut role = state.leadership.subscribe();
    let retry_failed_at = Instant::now() + RETRY_PAUSE;
    loop {
        role.borrow_and_update();
        match state.leadership.role() {
            Role::Leader if !state.leadership.is_stopping() => return Some(Role::Leader),
            Role::Follower { leader: Some(l) } if failed != Some(l.as_str()) || Instant::now() >= retry_failed_at => {
                return Some(Role::Follower { leader: Some(l) })
            }
            _ => {}
        }
        let wake = if failed.is_some() { deadline.min(retry_failed_at) } else { deadline };
        if Instant::now() >= deadline {
            return None;
        }
        let _ = tokio::time::timeout_at(wake, role.changed()).await;
    }
}

fn no_leader() -> Response<Body> {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "No elected primary cluster manager").into_response()
}

fn unreachable_leader(leader: &str, detail: &str) -> Response<Body> {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("Unable to reach primary cluster manager ({leader}): {detail}"),
    )
    .into_response()
}

fn lost_stream() -> Response<Body> {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the primary was lost while this request's body streamed to it; its outcome is unknown",
    )
    .into_response()
}

/// A hijacked stream (attach, exec) to the leader, on a connection of its own.
async fn hijack(state: &ApiState, req: Request<Body>, leader: &str) -> (&'static str, Response<Body>) {
    state.metrics.proxied.with_label_values(&["leader"]).inc();
    let client = leader_client(state, leader);
    let target = req.uri().path_and_query().map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    match proxy::forward_counted(state, &client, req, &target, false).await {
        Ok(resp) => (FORWARDED, resp),
        Err(e) => (FORWARDING, unreachable_leader(leader, &e.message)),
    }
}

async fn send_on_link(state: &ApiState, mut req: Request<Body>, leader: &str, link: &LeaderLink) -> Sent {
    proxy::strip_hop_by_hop(req.headers_mut(), false);
    if let Some(origin) = req.uri().path_and_query().cloned() {
        *req.uri_mut() = origin.into();
    }
    if let Ok(host) = HeaderValue::from_str(leader) {
        req.headers_mut().insert(header::HOST, host);
    }
    let mut kept = link.take_for(leader);
    loop {
        let fresh = kept.is_none();
        let mut sender = match kept.take() {
            Some(sender) => sender,
            None => match connect(state, leader).await {
                Ok(sender) => sender,
                Err(e) => return Sent::Unsent(e),
            },
        };
        if let Err(e) = sender.ready().await {
            if fresh {
                return Sent::Unsent(e.to_string());
            }
            debug!(error = %e, "Kept connection to the leader closed; opening another.");
            continue;
        }
        // A leader that stops answering (frozen, cut off) is deposed long before a client
        // gives up: the request then goes to the next one.
        let sent = tokio::select! {
            sent = sender.try_send_request(req) => sent,
            _ = moved_a_while_ago(state, leader) => return Sent::Lost("the primary changed while the request was in flight".to_string()),
        };
        match sent {
            Ok(resp) => {
                link.keep(leader, sender);
                return Sent::Answered(proxy::streamed(resp));
            }
            Err(mut e) => match e.take_message() {
                // Never written: the kept connection had gone stale. Once more on a new one.
                Some(unsent) if !fresh => req = unsent,
                Some(_) => return Sent::Unsent(e.error().to_string()),
                None => return Sent::Lost(e.error().to_string()),
            },
        }
    }
}

/// How long a leader that has been replaced still gets to answer a request it took: one that
/// stopped gracefully finishes what it began, and a request sent again meanwhile would run
/// beside it; one frozen or cut off is given up after this.
const REPLACED_LEADER_GRACE: Duration = Duration::from_secs(1);

/// Resolves [`REPLACED_LEADER_GRACE`] after this manager stopped forwarding to `leader`.
async fn moved_a_while_ago(state: &ApiState, leader: &str) {
    leader_moved(state, leader).await;
    tokio::time::sleep(REPLACED_LEADER_GRACE).await;
}

/// Resolves once this manager no longer forwards to `leader`.
async fn leader_moved(state: &ApiState, leader: &str) {
    let mut role = state.leadership.subscribe();
    while matches!(&*role.borrow_and_update(), Role::Follower { leader: Some(l) } if l == leader) {
        if role.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn connect(state: &ApiState, leader: &str) -> Result<SendRequest<Body>, String> {
    let stream = leader_client(state, leader).connect_raw().await.map_err(|e| e.to_string())?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            debug!(error = %e, "Connection to the leader ended.");
        }
    });
    Ok(sender)
}

/// One client per leader address (TLS settings, connect bound), replaced when the leader changes.
fn leader_client(state: &ApiState, leader: &str) -> EngineClient {
    let mut cached = state.leader_client.lock();
    match &*cached {
        Some((addr, client)) if addr == leader => client.clone(),
        _ => {
            let client = EngineClient::with_tls(
                leader,
                state.config.timing.engine_timeout,
                state.tls.as_ref().map(|t| t.peer.clone()),
            );
            *cached = Some((leader.to_string(), client.clone()));
            client
        }
    }
}

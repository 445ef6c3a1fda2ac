//! A follower's answers: `/_ping`, `/info`, `/metrics` and the registry's reads locally, everything else forwarded to
//! the leader byte for byte (streams and hijacked connections included). With no leader known
//! it waits a bounded time, then answers 503; it never answers a write from its own cache.

use std::time::Instant;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::error::ApiError;
use super::{proxy, version, ApiState};
use crate::body::Body;
use crate::transport::EngineClient;
use crate::leadership::Role;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tracing::debug;

/// Whether a follower answers this path itself.
pub fn is_local(method: &http::Method, path: &str) -> bool {
    let (_, rest) = version::split_path(path);
    matches!(rest, "/_ping" | "/info" | "/metrics") || (method == http::Method::GET && matches!(path, "/_swarm/nodes" | "/_swarm/members"))
}

/// Where a follower sends a request: the leader's address, `None` when this manager leads (it
/// may have been elected while waiting), or 503 after the bounded wait for a leader.
pub async fn leader_for(state: &ApiState) -> Result<Option<String>, ApiError> {
    let Some(replication) = &state.config.replication else { return Ok(None) };
    match state.leadership.wait_for_leader(replication.leader_wait).await {
        Role::Leader => Ok(None),
        Role::Follower { leader: Some(addr) } => Ok(Some(addr)),
        Role::Follower { leader: None } => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "No elected primary cluster manager")),
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

/// Forwards to the leader at `leader`: hijacks on a connection of their own, everything else
/// on the client connection's `link`.
pub async fn forward(state: &ApiState, req: Request<Incoming>, leader: &str, link: &LeaderLink) -> Result<Response<Body>, ApiError> {
    let started = Instant::now();
    state.metrics.proxied.with_label_values(&["leader"]).inc();
    // No cut when that manager stops leading: it may still finish what it began (a create),
    // and a client told "failed" would then meet a container it removed come back.
    let result = if proxy::wants_upgrade(&req) {
        let client = leader_client(state, leader);
        let target = req.uri().path_and_query().map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
        proxy::forward_counted(state, &client, req, &target, false).await.map_err(|e| e.message)
    } else {
        send_on_link(state, req, leader, link).await
    };
    state.metrics.leader_proxy_duration.observe(started.elapsed().as_secs_f64());
    result.map_err(|detail| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("Unable to reach primary cluster manager ({leader}): {detail}")))
}

async fn send_on_link(state: &ApiState, req: Request<Incoming>, leader: &str, link: &LeaderLink) -> Result<Response<Body>, String> {
    let (mut parts, incoming) = req.into_parts();
    proxy::strip_hop_by_hop(&mut parts.headers, false);
    if let Some(origin) = parts.uri.path_and_query().cloned() {
        parts.uri = origin.into();
    }
    if let Ok(host) = http::HeaderValue::from_str(leader) {
        parts.headers.insert(http::header::HOST, host);
    }
    let mut req = Request::from_parts(parts, crate::body::incoming(incoming));
    let mut kept = link.take_for(leader);
    let mut fresh = false;
    loop {
        let mut sender = match kept.take() {
            Some(sender) => sender,
            None => {
                fresh = true;
                connect(state, leader).await?
            }
        };
        let sent = match sender.ready().await {
            // A leader that stops answering (frozen, cut off) is deposed long before a client
            // gives up: the client hears so then, and retries with the next one.
            Ok(()) => tokio::select! {
                sent = sender.try_send_request(req) => sent,
                _ = leader_moved(state, leader) => return Err("the primary changed while the request was in flight; its outcome is unknown".to_string()),
            },
            Err(e) if !fresh => {
                debug!(error = %e, "Kept connection to the leader closed; opening another.");
                continue;
            }
            Err(e) => return Err(e.to_string()),
        };
        match sent {
            Ok(resp) => {
                link.keep(leader, sender);
                return Ok(proxy::streamed(resp));
            }
            Err(mut e) => match e.take_message() {
                // Never written: the kept connection had gone stale. Once more on a new one.
                Some(unsent) if !fresh => req = unsent,
                _ => return Err(e.error().to_string()),
            },
        }
    }
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
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
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
            let client = EngineClient::with_tls(leader, state.config.timing.engine_timeout, state.tls.as_ref().map(|t| t.peer.clone()));
            *cached = Some((leader.to_string(), client.clone()));
            client
        }
    }
}

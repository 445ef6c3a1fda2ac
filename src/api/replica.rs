//! A follower's answers: `/_ping`, `/info`, `/metrics` and the registry's reads locally, everything else forwarded to
//! the leader byte for byte (streams and hijacked connections included). With no leader known
//! it waits a bounded time, then answers 503; it never answers a write from its own cache.

use std::time::Instant;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::error::ApiError;
use super::{proxy, version, ApiState};
use crate::body::Body;
use crate::cluster::EngineClient;
use crate::leadership::Role;

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

/// Forwards to the leader at `leader`.
pub async fn forward(state: &ApiState, req: Request<Incoming>, leader: &str) -> Result<Response<Body>, ApiError> {
    let client = leader_client(state, leader);
    let target = req.uri().path_and_query().map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    state.metrics.proxied.with_label_values(&["leader"]).inc();
    let result = proxy::forward_counted(state, &client, req, &target, false).await;
    state.metrics.leader_proxy_duration.observe(started.elapsed().as_secs_f64());
    result.map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("Unable to reach primary cluster manager ({leader}): {}", e.message)))
}

/// One pooled client per leader address, replaced when the leader changes.
fn leader_client(state: &ApiState, leader: &str) -> EngineClient {
    let mut cached = state.leader_client.lock();
    match &*cached {
        Some((addr, client)) if addr == leader => client.clone(),
        _ => {
            let client = EngineClient::with_tls(leader, state.config.timing.engine_timeout, state.tls.as_ref().map(|t| t.client.clone()));
            *cached = Some((leader.to_string(), client.clone()));
            client
        }
    }
}

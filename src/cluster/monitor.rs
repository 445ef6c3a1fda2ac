//! The tasks of one node: validate it, then probe it, follow its event stream and refresh it
//! at random intervals, until it leaves discovery or the manager stops.

use std::time::Duration;

use http::{Method, Request};
use http_body_util::BodyExt;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::health::NodeState;
use super::{Cluster, EngineError};
use crate::body;

/// Longest wait between two validation attempts of a pending node.
const MAX_VALIDATE_BACKOFF: Duration = Duration::from_secs(5);

/// Runs until `cancel`.
pub async fn run_node(cluster: Cluster, key: String, cancel: CancellationToken) {
    let mut backoff = crate::backoff::Backoff::new(Duration::from_millis(500), MAX_VALIDATE_BACKOFF);
    let mut attempts = 0u32;
    loop {
        let attempt = tokio::select! {
            _ = cancel.cancelled() => return,
            // Boxed: the node's task keeps its size for life, a validation runs once.
            r = Box::pin(cluster.validate(&key)) => r,
        };
        match attempt {
            Ok(()) => break,
            Err(e) => {
                attempts += 1;
                // The first failure and every fifth are worth a line: an engine that never
                // registers should say why without debug logs.
                if attempts == 1 || attempts.is_multiple_of(5) {
                    tracing::info!(addr = %key, attempts, error = %super::error_chain(&e), "Engine not validated yet.");
                } else {
                    debug!(addr = %key, error = %e, "Engine not validated yet.");
                }
                let refused = matches!(e, crate::transport::EngineError::Refused { .. });
                cluster.with_node_health(&key, |n| {
                    n.refused = refused;
                    n.health.failure(super::error_chain(&e))
                });
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = probe_loop(&cluster, &key) => {}
        _ = event_loop(&cluster, &key) => {}
        _ = refresh_loop(&cluster, &key) => {}
    }
}

fn state(cluster: &Cluster, key: &str) -> Option<NodeState> {
    cluster.with_nodes(|nodes| nodes.get(key).map(|n| n.health.state()))
}

/// `GET /_ping` every probe interval: what turns a stopped or hung engine Unhealthy in seconds.
async fn probe_loop(cluster: &Cluster, key: &str) {
    let Some(client) = cluster.client_of(key) else { return };
    let timeout = cluster.options().timing.probe_timeout;
    // A random phase: engines validated together must not be probed in bursts.
    let phase = rand::rng().random_range(0.0..1.0);
    tokio::time::sleep(cluster.probe_period().mul_f64(phase)).await;
    let mut failing = false;
    loop {
        // A failing engine is probed at the base interval, so that a large cluster's
        // stretched period delays only the first failure seen, not the verdict.
        let period = if failing { cluster.options().timing.probe_interval } else { cluster.probe_period() };
        tokio::time::sleep(period).await;
        // A failed engine is healthy again only once read whole: its containers may have
        // changed while it could not be seen, and its address may now answer as another
        // engine (whose answers are then refused until its own is back).
        let was = state(cluster, key);
        let result = if was == Some(NodeState::Unhealthy) || cluster.is_foreign(key) {
            // Pinged first: an engine that does not answer must not hold one of the few
            // whole-engine reads allowed at once for its timeout (a partition of many engines
            // would hold them all, and delay the refreshes of those that answer).
            match client.ping(timeout).await {
                Ok(()) => cluster.refresh_node(key).await,
                Err(e) => Err(e),
            }
        } else {
            client.ping(timeout).await
        };
        // A ping sent while Healthy does not heal a node failed meanwhile: the next probe
        // reads it whole.
        let stale =
            result.is_ok() && was != Some(NodeState::Unhealthy) && state(cluster, key) == Some(NodeState::Unhealthy);
        if !stale {
            cluster.record(key, result.as_ref().map(|_| ()));
        }
        failing = result.is_err() || state(cluster, key) != Some(NodeState::Healthy);
    }
}

/// Follows `/events`; after every connection, the first included, a full refresh repairs what
/// happened before the stream began (the validation's listing came earlier).
async fn event_loop(cluster: &Cluster, key: &str) {
    let Some(client) = cluster.client_of(key) else { return };
    loop {
        if state(cluster, key) != Some(NodeState::Healthy) {
            tokio::time::sleep(cluster.options().timing.probe_interval).await;
            continue;
        }
        let req = Request::builder().method(Method::GET).uri(client.uri("/events")).body(body::empty());
        let Ok(req) = req else { return };
        let connected = tokio::time::timeout(client.timeout(), client.send(req)).await;
        let resp = match connected {
            Ok(Ok(resp)) if resp.status().is_success() => resp,
            Ok(Ok(resp)) => {
                warn!(addr = %key, status = %resp.status(), "Engine refused its event stream.");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Ok(Err(e)) => {
                cluster.record(key, Err(&e));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(_) => {
                let e = EngineError::Timeout { addr: key.to_string(), after: client.timeout() };
                cluster.record(key, Err(&e));
                continue;
            }
        };
        if let Err(e) = cluster.refresh_node(key).await {
            cluster.record(key, Err(&e));
            // Another engine's events are not this node's.
            if cluster.is_foreign(key) {
                tokio::time::sleep(cluster.options().timing.probe_interval).await;
                continue;
            }
        }
        let mut body = resp.into_body();
        let mut lines = body::Lines::new(body::MAX_ENGINE_LINE_BYTES);
        let mut complete = Vec::new();
        let ended = loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        // An overlong line is dropped; the refresh that follows a reconnect,
                        // or the next periodic one, repairs what it said.
                        if let Err(e) = lines.push(&data, &mut complete) {
                            warn!(addr = %key, error = %e, "Engine event dropped.");
                        }
                        for line in complete.drain(..) {
                            match serde_json::from_slice(line.trim_ascii_end()) {
                                Ok(event) => Box::pin(cluster.apply_event(key, event)).await,
                                Err(e) => debug!(addr = %key, error = %e, "Unreadable engine event."),
                            }
                        }
                    }
                }
                Some(Err(e)) => break Some(e.to_string()),
                None => break None,
            }
        };
        // A stream that ends is an engine going away more often than not: count it, and let
        // the probe confirm or heal.
        let e = EngineError::Unreachable {
            addr: key.to_string(),
            source: ended.unwrap_or_else(|| "event stream closed".into()).into(),
        };
        cluster.record(key, Err(&e));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Full refresh at a random point between the min and max interval, as classic Swarm did to
/// spread refreshes of large clusters.
async fn refresh_loop(cluster: &Cluster, key: &str) {
    let timing = cluster.options().timing.clone();
    loop {
        let spread = timing.refresh_max.saturating_sub(timing.refresh_min);
        let jitter = if spread.is_zero() { Duration::ZERO } else { rand::rng().random_range(Duration::ZERO..spread) };
        tokio::time::sleep(timing.refresh_min + jitter).await;
        if state(cluster, key) == Some(NodeState::Healthy) {
            if let Err(e) = cluster.refresh_node(key).await {
                warn!(addr = %key, error = %e, "Engine refresh failed.");
                cluster.record(key, Err(&e));
            }
        }
    }
}

//! Forwarding a client's request to one engine: bodies stream both ways untouched, and
//! hijacked connections (attach, exec start) are spliced byte for byte, half-close included.

use http::header::{self, HeaderMap, HeaderName};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tracing::debug;

use super::error::ApiError;
use super::ApiState;
use crate::body::{self, Body};
use crate::transport::EngineClient;

const HOP_BY_HOP: [&str; 6] =
    ["keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "proxy-authorization"];

/// Drops hop-by-hop headers; `connection` and `upgrade` stay on hijacks, since dockerd reads
/// `Upgrade` to choose between `101` and a raw `200`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let hop = |name: &HeaderName| {
        HOP_BY_HOP.contains(&name.as_str())
            || (!keep_upgrade && (name == header::CONNECTION || name == header::UPGRADE))
    };
    // One pass over the names: most messages carry none, and removing by name hashes each.
    if !headers.keys().any(hop) {
        return;
    }
    let found: Vec<HeaderName> = headers.keys().filter(|n| hop(n)).cloned().collect();
    for name in found {
        headers.remove(name);
    }
}

/// Whether the client asks to hijack the connection.
pub fn wants_upgrade<B>(req: &Request<B>) -> bool {
    req.headers().contains_key(header::UPGRADE)
}

/// Forwards `req` to `client` at `path_and_query`, streaming the answer back.
pub async fn forward(
    state: &ApiState,
    client: &EngineClient,
    req: Request<Body>,
    path_and_query: &str,
) -> Result<Response<Body>, ApiError> {
    forward_counted(state, client, req, path_and_query, true).await
}

/// [`forward`], counting the request as proxied to an engine when `to_engine`.
pub async fn forward_counted(
    state: &ApiState,
    client: &EngineClient,
    mut req: Request<Body>,
    path_and_query: &str,
    to_engine: bool,
) -> Result<Response<Body>, ApiError> {
    if to_engine {
        state.metrics.proxied.with_label_values(&["engine"]).inc();
    }
    let upgrade = wants_upgrade(&req);
    // Must be taken before the request moves on; it resolves once we answer 101.
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, incoming) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers, upgrade);
    parts.uri = client.uri(path_and_query);
    parts.headers.insert(header::HOST, client.host_header());
    let upstream_req = Request::from_parts(parts, incoming);

    if let Some(client_upgrade) = client_upgrade {
        return hijack(state, client, upstream_req, client_upgrade).await;
    }
    let mutation = to_engine && !matches!(*upstream_req.method(), Method::GET | Method::HEAD);
    let method = upstream_req.method().clone();
    let key = client.addr().to_string();
    let resp = tokio::select! {
        resp = client.send(upstream_req) => resp?,
        // Only the engine's health bounds the wait: a `stop -t 600` or a `wait` may take as
        // long as the container does, but not longer than the engine lives.
        _ = engine_lost(state, &key), if to_engine => {
            return Err(crate::transport::EngineError::Unreachable {
                addr: key,
                source: "the engine turned Unhealthy while this request waited for its answer (it may or may not have been applied)".into(),
            }
            .into());
        }
    };
    if mutation {
        // Who changed what, under which term: evidence for audits (at debug: one per call).
        tracing::debug!(target: "swarm::mutation", term = state.leadership.acting_term(), engine = %client.addr(), %method, path = path_and_query, status = resp.status().as_u16(), "Engine changed.");
    }
    if !to_engine {
        return Ok(streamed(resp));
    }
    // A body that streams as long as the container lives (`wait`, `logs -f`) ends with the
    // engine's health too.
    let (state, why) = (state.clone(), "the engine turned Unhealthy while this answer streamed");
    let (mut parts, incoming) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    Ok(Response::from_parts(parts, body::incoming_until(incoming, async move { engine_lost(&state, &key).await }, why)))
}

/// How often a request waiting for an engine's answer checks that engine's health.
const HEALTH_WATCH_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// Resolves once the engine at `key` is Unhealthy or has left discovery; never for an engine
/// the manager does not know.
async fn engine_lost(state: &ApiState, key: &str) {
    if state.cluster.node(key).is_none() {
        return std::future::pending().await;
    }
    loop {
        // Most answers are done before the first look.
        tokio::time::sleep(HEALTH_WATCH_PERIOD).await;
        match state.cluster.node(key) {
            Some(n) if n.state != crate::cluster::NodeState::Unhealthy => {}
            _ => return,
        }
    }
}

/// An engine's response, its body streamed frame by frame.
pub fn streamed(resp: Response<Incoming>) -> Response<Body> {
    let (mut parts, incoming) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    Response::from_parts(parts, body::incoming(incoming))
}

async fn hijack(
    state: &ApiState,
    client: &EngineClient,
    req: Request<Body>,
    client_upgrade: hyper::upgrade::OnUpgrade,
) -> Result<Response<Body>, ApiError> {
    // A connection of its own: after the 101 it is no longer HTTP.
    let stream = client.connect_raw().await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ApiError::internal(format!("handshake with engine {} failed: {e}", client.addr())))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!(error = %e, "Engine hijack connection ended.");
        }
    });
    let mut resp = sender
        .send_request(req)
        .await
        .map_err(|e| ApiError::internal(format!("engine {} failed during upgrade: {e}", client.addr())))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(streamed(resp));
    }
    let upstream_upgrade = hyper::upgrade::on(&mut resp);
    let gauge = state.metrics.hijacked.clone();
    tokio::spawn(async move {
        match tokio::join!(client_upgrade, upstream_upgrade) {
            (Ok(c), Ok(u)) => {
                gauge.inc();
                // copy_bidirectional shuts down the write side of one end when the other
                // reaches EOF and keeps copying the other way: the CLI's CloseWrite after stdin.
                let result = tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(u)).await;
                gauge.dec();
                if let Err(e) = result {
                    debug!(error = %e, "Hijacked stream ended.");
                }
            }
            (c, u) => debug!(
                client = c.err().map(|e| e.to_string()).unwrap_or_default(),
                engine = u.err().map(|e| e.to_string()).unwrap_or_default(),
                "Upgrade did not complete."
            ),
        }
    });
    let (mut parts, _) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONNECTION, http::HeaderValue::from_static("Upgrade"));
    if !parts.headers.contains_key(header::UPGRADE) {
        parts.headers.insert(header::UPGRADE, http::HeaderValue::from_static("tcp"));
    }
    Ok(Response::from_parts(parts, body::empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_and_upgrades_stay_on_hijacks() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "Upgrade"),
            ("upgrade", "tcp"),
            ("keep-alive", "5"),
            ("te", "trailers"),
            ("content-type", "application/json"),
        ] {
            h.insert(HeaderName::from_static(k), v.parse().unwrap());
        }
        let mut hijack = h.clone();
        strip_hop_by_hop(&mut hijack, true);
        assert_eq!(
            hijack.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["connection", "upgrade", "content-type"]
        );
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.keys().map(HeaderName::as_str).collect::<Vec<_>>(), ["content-type"]);
    }

    #[test]
    fn engine_uris_keep_the_path_and_query() {
        let c = EngineClient::new("127.0.0.1:2375", std::time::Duration::from_secs(1));
        assert_eq!(
            c.uri("/v1.41/containers/json?all=1").to_string(),
            "http://127.0.0.1:2375/v1.41/containers/json?all=1"
        );
        assert_eq!(c.host_header(), "127.0.0.1:2375");
        let u = EngineClient::new("unix:///run/docker.sock", std::time::Duration::from_secs(1));
        assert_eq!(u.uri("/_ping").to_string(), "http://localhost/_ping");
    }
}

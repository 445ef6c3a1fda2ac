//! The token discovery service, on the manager's own listener: the Docker Hub discovery API
//! that `swarm join/manage/list token://…` speak, for closed networks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use parking_lot::Mutex;

use super::{error, json as json_response, query_param, ControlPlane};
use crate::body::{self, Body};

/// Longest registration TTL accepted, so that a typo cannot pin an entry for years.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// `/v1/clusters[/<token>]`.
pub async fn handle(state: &ControlPlane, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').skip_while(|s| *s == "v1").collect();
    match (req.method(), segs.as_slice()) {
        (&Method::POST, ["clusters"]) => {
            let token: [u8; 16] = rand::random();
            Response::new(body::full(hex::encode(token)))
        }
        (&Method::GET, ["clusters", token]) => json_response(StatusCode::OK, &serde_json::json!(state.tokens.entries(token))),
        (&Method::POST, ["clusters", token]) => {
            let token = token.to_string();
            let Some(ttl) = query_param(&req, "ttl").and_then(|t| t.parse::<u64>().ok()) else {
                return error(StatusCode::BAD_REQUEST, "ttl (seconds) is required");
            };
            let ttl = Duration::from_secs(ttl).min(MAX_TTL);
            let addr = match body::collect_limited(req.into_body(), 1024).await {
                Ok(a) => String::from_utf8_lossy(&a).trim().to_string(),
                Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
            };
            if !crate::config::validate_host_port(&addr) {
                return error(StatusCode::BAD_REQUEST, format!("invalid address {addr:?}: expected host:port"));
            }
            state.tokens.register(&token, &addr, ttl);
            Response::new(body::empty())
        }
        (&Method::DELETE, ["clusters", token]) => {
            state.tokens.delete(token);
            Response::new(body::empty())
        }
        _ => error(StatusCode::NOT_FOUND, "page not found"),
    }
}

/// The service side: tokens and their entries, each entry with an expiry.
#[derive(Debug, Default)]
pub struct TokenRegistry {
    clusters: Mutex<HashMap<String, HashMap<String, Instant>>>,
}

impl TokenRegistry {
    /// Records `addr` under `token` for `ttl`.
    pub fn register(&self, token: &str, addr: &str, ttl: Duration) {
        self.clusters.lock().entry(token.to_string()).or_default().insert(addr.to_string(), Instant::now() + ttl);
    }

    /// The live entries of `token`, expired ones dropped.
    pub fn entries(&self, token: &str) -> Vec<String> {
        let now = Instant::now();
        let mut clusters = self.clusters.lock();
        let Some(entries) = clusters.get_mut(token) else { return Vec::new() };
        entries.retain(|_, expiry| *expiry > now);
        let mut list: Vec<String> = entries.keys().cloned().collect();
        list.sort();
        list
    }

    /// Forgets a token.
    pub fn delete(&self, token: &str) {
        self.clusters.lock().remove(token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire() {
        let r = TokenRegistry::default();
        r.register("t", "a:1", Duration::from_secs(60));
        r.register("t", "b:1", Duration::from_millis(0));
        assert_eq!(r.entries("t"), vec!["a:1".to_string()]);
        assert!(r.entries("other").is_empty());
        r.delete("t");
        assert!(r.entries("t").is_empty());
    }
}

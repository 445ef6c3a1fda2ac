//! The token discovery service, on the manager's own listener: the Docker Hub discovery API
//! that `swarm join/manage/list token://…` speak, for closed networks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use parking_lot::Mutex;

use super::{error, json as json_response, query_param, ControlPlane};
use crate::body::{self, Body};

/// Longest registration TTL accepted, so that a typo cannot pin an entry for years.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// Most live entries under a token: a token holder cannot grow the manager without bound.
pub const MAX_ENTRIES: usize = 100_000;

/// The token in `/v1/clusters/<token>` (or `/clusters/<token>`).
pub fn token_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1").unwrap_or(path).strip_prefix("/clusters/")?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

/// Whether `token` is the one this manager serves; compared by digest, so that the time taken
/// tells nothing about the token.
fn serves(state: &ControlPlane, token: &str) -> bool {
    let digest = |t: &str| ring::digest::digest(&ring::digest::SHA256, t.as_bytes());
    state.served_token.as_deref().is_some_and(|s| digest(s).as_ref() == digest(token).as_ref())
}

/// `/v1/clusters[/<token>]`. The token is the credential, as on Docker Hub, but only this
/// manager's own token exists here: nobody can create others, fill memory with them, or read
/// another cluster's. Deleting needs a manager's signature (`manager_signed`).
pub async fn handle(state: &ControlPlane, req: Request<Bytes>, manager_signed: bool) -> Response<Body> {
    let path = req.uri().path().to_string();
    let Some(token) = token_of(&path) else {
        return error(
            StatusCode::FORBIDDEN,
            "this manager serves only the token of its own discovery URL; `swarm create` makes tokens",
        );
    };
    if !serves(state, token) {
        return error(StatusCode::NOT_FOUND, "no such cluster token on this manager");
    }
    match *req.method() {
        Method::GET => json_response(StatusCode::OK, &serde_json::json!(state.tokens.entries(token))),
        Method::POST => {
            let Some(ttl) = query_param(&req, "ttl").and_then(|t| t.parse::<u64>().ok()) else {
                return error(StatusCode::BAD_REQUEST, "ttl (seconds) is required");
            };
            let ttl = Duration::from_secs(ttl).min(MAX_TTL);
            let addr = String::from_utf8_lossy(req.body()).trim().to_string();
            if !crate::config::validate_host_port(&addr) {
                return error(StatusCode::BAD_REQUEST, format!("invalid address {addr:?}: expected host:port"));
            }
            if !state.tokens.register(token, &addr, ttl) {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the token holds {MAX_ENTRIES} entries already"),
                );
            }
            Response::new(body::empty())
        }
        Method::DELETE if manager_signed => {
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
    /// Records `addr` under `token` for `ttl`; false when the token is full.
    pub fn register(&self, token: &str, addr: &str, ttl: Duration) -> bool {
        let now = Instant::now();
        let mut clusters = self.clusters.lock();
        let entries = clusters.entry(token.to_string()).or_default();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(addr) {
            entries.retain(|_, expiry| *expiry > now);
            if entries.len() >= MAX_ENTRIES {
                return false;
            }
        }
        entries.insert(addr.to_string(), now + ttl);
        true
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
        assert!(r.register("t", "a:1", Duration::from_secs(60)));
        assert!(r.register("t", "b:1", Duration::from_millis(0)));
        assert_eq!(r.entries("t"), vec!["a:1".to_string()]);
        assert!(r.entries("other").is_empty());
        r.delete("t");
        assert!(r.entries("t").is_empty());
    }

    #[test]
    fn tokens_are_read_from_their_paths() {
        assert_eq!(token_of("/v1/clusters/abc"), Some("abc"));
        assert_eq!(token_of("/clusters/abc"), Some("abc"));
        assert_eq!(token_of("/v1/clusters"), None);
        assert_eq!(token_of("/v1/clusters/"), None);
        assert_eq!(token_of("/v1/clusters/a/b"), None);
    }
}

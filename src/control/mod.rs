//! The control plane: what managers offer one another and `swarm join` (Raft RPCs under
//! `/_swarm/raft/`, the node registry behind `swarm://` under `/_swarm/nodes`, membership under
//! `/_swarm/members`) and the token discovery service (`/v1/clusters`). Apart from the Docker
//! API: its own router, consulted before the Docker API's, so that one place decides who may
//! use it (see `crate::auth`): managers by the cluster secret, join agents by the join token, token
//! discovery by the token this manager serves. Docker API clients get 403.

pub mod registry;
pub mod token;

use http::{header, Method, Request, Response, StatusCode};

use crate::auth::{Checked, Refusal, Role, Verifier};
use crate::body::{self, Body};
use crate::leadership::raft::RaftNode;
use crate::store::Store;

pub use token::TokenRegistry;

/// Where Raft RPCs arrive.
pub const RAFT_PREFIX: &str = crate::leadership::raft::network::RPC_PREFIX;

/// What the control plane serves from.
pub struct ControlPlane {
    /// Cluster metadata; the registry lives there.
    pub store: Store,
    /// The embedded Raft member, when replicating without etcd.
    pub raft: Option<RaftNode>,
    /// This manager's role, as `docker info` reports it.
    pub leadership: crate::leadership::Leadership,
    /// Most entries of the swarm:// registry (`--registry-max-entries`).
    pub registry_max_entries: usize,
    /// Entries of the registry, as the last registration counted them.
    pub registry_entries: prometheus::IntGauge,
    /// Registrations of the token discovery service.
    pub tokens: TokenRegistry,
    /// Largest Raft RPC body read.
    pub max_rpc_bytes: u64,
    /// Checks managers' and join agents' signatures; `None` without `--cluster-secret-file`,
    /// and then every signed route answers 403.
    pub auth: Option<Verifier>,
    /// The token of this manager's own `token://` discovery, the only one its token service
    /// serves.
    pub served_token: Option<String>,
}

/// Largest body of a control request other than a Raft RPC (a registration's address).
pub const MAX_CONTROL_BODY_BYTES: u64 = 64 << 10;

/// Which control route a path is, if any (paths carry no API version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A Raft RPC: answered by the local member whatever its role.
    Raft,
    /// `/_swarm/nodes`, `/_swarm/members`.
    Registry,
    /// `/v1/clusters`.
    Token,
}

/// Classifies a request path.
pub fn route_of(path: &str) -> Option<Route> {
    if path.starts_with(RAFT_PREFIX) {
        Some(Route::Raft)
    } else if path == READY_PATH {
        // The load balancers' health check, open to all: it tells only whether this manager
        // serves.
        None
    } else if path == "/_swarm" || path.starts_with("/_swarm/") {
        Some(Route::Registry)
    } else if ["/v1/clusters", "/clusters"].iter().any(|p| path == *p || path.starts_with(&format!("{p}/"))) {
        Some(Route::Token)
    } else {
        None
    }
}

/// The health check load balancers use, served by the Docker API front.
pub const READY_PATH: &str = "/_swarm/ready";

/// The answer to a refused control request: 403, or 503 when the nonce memory is full.
pub fn refused(r: Refusal) -> Response<Body> {
    let status = if r == Refusal::Busy { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::FORBIDDEN };
    error(status, r.message())
}

/// A `{"message": ...}` answer, in the Docker API's shape that `swarm` commands read.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json(status, &serde_json::json!({ "message": message.into() }))
}

/// A JSON answer.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body::full(value.to_string() + "\n"))
        .unwrap_or_else(|_| Response::new(body::empty()))
}

/// Who may call a route: `None` for the token service's reads and registrations, whose token
/// is the credential.
fn roles_for(route: Route, method: &Method, path: &str) -> Option<&'static [Role]> {
    const MANAGERS: &[Role] = &[Role::Manager];
    const MANAGERS_AND_AGENTS: &[Role] = &[Role::Manager, Role::Join];
    match route {
        Route::Raft => Some(MANAGERS),
        Route::Registry if path == "/_swarm/nodes" || path.starts_with("/_swarm/nodes/") => Some(MANAGERS_AND_AGENTS),
        Route::Registry => Some(MANAGERS),
        Route::Token if token::token_of(path).is_some() && (method == Method::GET || method == Method::POST) => None,
        Route::Token => Some(MANAGERS),
    }
}

/// The first value of a query parameter.
pub fn query_param<B>(req: &Request<B>, key: &str) -> Option<String> {
    form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

impl ControlPlane {
    /// Decides, from the headers alone and before any body is read or any request forwarded,
    /// whether the caller may use this route: `Err` is the answer (403, or 404 for a token this
    /// manager does not serve).
    pub fn authorize<B>(&self, route: Route, req: &Request<B>) -> Result<Option<Checked>, Refusal> {
        let path = req.uri().path();
        let Some(roles) = roles_for(route, req.method(), path) else {
            return Ok(None);
        };
        let Some(verifier) = &self.auth else { return Err(Refusal::Unsigned) };
        let target = req.uri().path_and_query().map_or(path, |p| p.as_str());
        verifier.check(req.method(), target, req.headers(), roles).map(Some)
    }

    /// Serves one control route the caller may use (see [`ControlPlane::authorize`]); the
    /// route class is for metrics.
    pub async fn serve(
        &self,
        route: Route,
        req: Request<Body>,
        checked: Option<Checked>,
    ) -> (&'static str, Response<Body>) {
        let limit = if route == Route::Raft { self.max_rpc_bytes } else { MAX_CONTROL_BODY_BYTES };
        let (parts, incoming) = req.into_parts();
        let bytes = match body::collect_limited(incoming, limit).await {
            Ok(b) => b,
            Err(e) => return ("control", error(StatusCode::BAD_REQUEST, e.to_string())),
        };
        if checked.as_ref().is_some_and(|c| !c.body_matches(&bytes)) {
            return ("control", refused(Refusal::BodyChanged));
        }
        let req = Request::from_parts(parts, bytes);
        match route {
            Route::Raft => ("raft", self.raft_rpc(req).await),
            Route::Registry => ("registry", registry::handle(self, req).await),
            Route::Token => ("token", token::handle(self, req, checked.is_some()).await),
        }
    }

    /// A Raft RPC from a peer manager, answered by the local member whatever its role.
    async fn raft_rpc(&self, req: Request<bytes::Bytes>) -> Response<Body> {
        let Some(node) = &self.raft else {
            return error(StatusCode::NOT_FOUND, "this manager runs no embedded Raft");
        };
        if req.method() != Method::POST {
            return error(StatusCode::METHOD_NOT_ALLOWED, "raft RPCs are POSTs");
        }
        let rpc = req.uri().path().trim_start_matches(RAFT_PREFIX).to_string();
        match node.serve_rpc(&rpc, req.body()).await {
            Ok(bytes) => Response::builder()
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(body::full(bytes))
                .unwrap_or_else(|_| Response::new(body::empty())),
            Err(msg) => error(StatusCode::BAD_REQUEST, msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_paths_are_told_apart_from_the_docker_api() {
        assert_eq!(route_of(&format!("{RAFT_PREFIX}vote")), Some(Route::Raft));
        assert_eq!(route_of("/_swarm/nodes/127.0.0.1:1"), Some(Route::Registry));
        assert_eq!(route_of("/v1/clusters/abc"), Some(Route::Token));
        assert_eq!(route_of("/v1.41/containers/json"), None);
        assert_eq!(route_of("/clustersx"), None);
    }
}

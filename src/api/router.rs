//! Routing: strips `/vX.Y`, checks the version, and matches (method, segments).

use http::{Method, Request, Response};

use super::error::ApiError;
use super::query::Query;
use super::version::{self, MIN_API_VERSION};
use super::{containers, exec, images, networks, system, volumes, ApiState};
use crate::body::Body;

/// A request's routing facts.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// API version from the path, if any.
    pub version: Option<String>,
    /// Path segments after the version, percent-decoded.
    pub segs: Vec<String>,
    /// Parsed query.
    pub query: Query,
    /// The raw query string.
    pub raw_query: Option<String>,
}

impl Ctx {
    /// The path to send to an engine that speaks up to `engine_api`: the client's version
    /// lowered to the engine's, or no version when the client gave none.
    pub fn engine_path(&self, engine_api: Option<&str>, path: &str, query: Option<&str>) -> String {
        version::engine_path(self.version.as_deref(), engine_api, path, query)
    }

    /// Like [`Ctx::engine_path`] with the request's own query.
    pub fn engine_path_same_query(&self, engine_api: Option<&str>, path: &str) -> String {
        self.engine_path(engine_api, path, self.raw_query.as_deref())
    }
}

/// Percent-encodes one path segment.
pub fn encode_segment(s: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'`')
        .add(b'{')
        .add(b'}')
        .add(b'%');
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// Routes one request; returns the route class (for metrics) and the response.
pub async fn route(state: &ApiState, req: Request<Body>) -> (&'static str, Response<Body>) {
    match dispatch(state, req).await {
        (class, Ok(resp)) => (class, resp),
        (class, Err(e)) => (class, e.into_response()),
    }
}

/// Whether a request creates a container.
pub fn is_create(method: &Method, path: &str) -> bool {
    method == Method::POST && version::split_path(path).1 == "/containers/create"
}

/// Whether a request is a write the leader runs once per request ID (see `journal`): the
/// writes whose answers are small and whose second run would differ from the first.
pub fn journaled(method: &Method, path: &str) -> bool {
    let (_, rest) = version::split_path(path);
    let segs: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    use Method as M;
    matches!(
        (method, segs.as_slice()),
        (&M::POST, ["containers", "create"])
            | (
                &M::POST,
                [
                    "containers",
                    _,
                    "start" | "stop" | "kill" | "restart" | "pause" | "unpause" | "rename" | "update" | "exec"
                ]
            )
            | (&M::DELETE, ["containers", _])
            | (&M::POST, ["networks", "create"] | ["networks", _, "connect" | "disconnect"] | ["volumes", "create"])
            | (&M::DELETE, ["networks", _] | ["volumes", _])
    )
}

async fn dispatch(state: &ApiState, req: Request<Body>) -> (&'static str, Result<Response<Body>, ApiError>) {
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().map(str::to_string);
    let (ver, rest) = version::split_path(&path);
    if let Some(v) = ver {
        if version::compare(v, MIN_API_VERSION).is_lt() {
            return ("version-check", Err(ApiError::bad_request(format!(
                "client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
            ))));
        }
        let max = state.api_version();
        if version::compare(v, &max).is_gt() {
            return (
                "version-check",
                Err(ApiError::bad_request(format!(
                    "client version {v} is too new. Maximum supported API version is {max}"
                ))),
            );
        }
    }
    let segs: Vec<String> = rest
        .trim_start_matches('/')
        .split('/')
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let ctx = Ctx { version: ver.map(str::to_string), segs, query: Query::parse(raw_query.as_deref()), raw_query };
    let method = req.method().clone();
    let segs: Vec<&str> = ctx.segs.iter().map(String::as_str).collect();
    use Method as M;
    match (&method, segs.as_slice()) {
        (&M::GET | &M::HEAD, ["_ping"]) => ("ping", Ok(system::ping(&method))),
        (&M::GET | &M::HEAD, ["_swarm", "ready"]) if ctx.version.is_none() => ("ready", Ok(system::ready(state))),
        (&M::GET, ["version"]) => ("version", Ok(system::version(state))),
        (&M::GET, ["info"]) => ("info", Ok(system::info(state))),
        (&M::GET, ["events"]) => ("events", system::events(state, &ctx).await),
        (&M::GET, ["metrics"]) if ctx.version.is_none() => ("metrics", Ok(system::metrics(state))),
        (&M::POST, ["auth"]) => ("auth", system::login(state, &ctx, req).await),
        (&M::OPTIONS, _) if state.config.cors => ("cors", Ok(Response::new(crate::body::empty()))),

        (&M::GET, ["containers", "json"]) => ("containers.list", containers::list(state, &ctx).await),
        (&M::POST, ["containers", "create"]) => ("containers.create", containers::create(state, &ctx, req).await),
        (&M::POST, ["containers", "prune"]) => {
            ("containers.prune", super::fanout::prune(state, &ctx, "/containers/prune").await)
        }
        // `/containers/{id}` alone is only removed.
        (m, ["containers", _]) if m != M::DELETE => ("unknown", Err(ApiError::not_found("page not found"))),
        (_, ["containers", _, ..]) => ("containers.op", containers::by_id(state, &ctx, req).await),
        (&M::POST, ["commit"]) => ("commit", containers::commit(state, &ctx, req).await),

        (_, ["exec", _, ..]) => ("exec", exec::by_id(state, &ctx, req).await),

        (&M::GET, ["images", "json"]) => ("images.list", images::list(state, &ctx).await),
        (&M::POST, ["images", "create"]) => ("images.create", images::create(state, &ctx, req).await),
        (&M::POST, ["images", "load"]) => ("images.load", images::load(state, &ctx, req).await),
        (&M::GET, ["images", "get"]) => ("images.save", images::save_many(state, &ctx, req).await),
        (&M::GET, ["images", "search"]) => {
            ("images.search", system::any_engine(state, &ctx, req, "/images/search").await)
        }
        (&M::POST, ["images", "prune"]) => ("images.prune", super::fanout::prune(state, &ctx, "/images/prune").await),
        (&M::GET, ["images", "viz"]) => {
            ("images.viz", Err(ApiError::new(http::StatusCode::NOT_IMPLEMENTED, "Not supported in clustering mode.")))
        }
        (_, ["images", _, ..]) => ("images.op", images::by_name(state, &ctx, req).await),
        (&M::POST, ["build"]) => ("build", images::build(state, &ctx, req).await),

        (&M::GET, ["networks"]) => ("networks.list", networks::list(state, &ctx).await),
        (&M::POST, ["networks", "create"]) => ("networks.create", networks::create(state, &ctx, req).await),
        (&M::POST, ["networks", "prune"]) => {
            ("networks.prune", super::fanout::prune(state, &ctx, "/networks/prune").await)
        }
        (_, ["networks", _, ..]) => ("networks.op", networks::by_id(state, &ctx, req).await),

        (&M::GET, ["volumes"]) => ("volumes.list", volumes::list(state, &ctx).await),
        (&M::POST, ["volumes", "create"]) => ("volumes.create", volumes::create(state, &ctx, req).await),
        (&M::POST, ["volumes", "prune"]) => {
            ("volumes.prune", super::fanout::prune(state, &ctx, "/volumes/prune").await)
        }
        (_, ["volumes", _, ..]) => ("volumes.op", volumes::by_name(state, &ctx, req).await),

        _ => ("unknown", Err(ApiError::not_found("page not found"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(version: Option<&str>) -> Ctx {
        Ctx {
            version: version.map(str::to_string),
            segs: vec![],
            query: Query::default(),
            raw_query: Some("all=1".into()),
        }
    }

    #[test]
    fn engine_paths_lower_the_version_to_the_engine() {
        assert_eq!(
            ctx(Some("1.41")).engine_path_same_query(Some("1.40"), "/containers/json"),
            "/v1.40/containers/json?all=1"
        );
        assert_eq!(ctx(Some("1.30")).engine_path(Some("1.41"), "/x", None), "/v1.30/x");
        assert_eq!(ctx(None).engine_path(Some("1.41"), "/x", Some("")), "/x");
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("a b?"), "a%20b%3F");
        assert_eq!(encode_segment("127.0.0.1:25000/busybox:1"), "127.0.0.1:25000/busybox:1");
    }
}

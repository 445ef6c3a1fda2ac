//! Routing: strips `/vX.Y`, checks the version, and matches (method, segments).

use http::{Request, Response};

use super::error::ApiError;
use super::query::Query;
use super::routes::{Handler, Route};
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

/// Serves one request on its route; returns the route class (for metrics) and the response.
pub async fn serve(state: &ApiState, route: Route, req: Request<Body>) -> (&'static str, Response<Body>) {
    match dispatch(state, route, req).await {
        (class, Ok(resp)) => (class, resp),
        (class, Err(e)) => (class, e.into_response()),
    }
}

async fn dispatch(
    state: &ApiState,
    route: Route,
    req: Request<Body>,
) -> (&'static str, Result<Response<Body>, ApiError>) {
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
    let ctx = Ctx {
        version: ver.map(str::to_string),
        segs: super::routes::segments(rest),
        query: Query::parse(raw_query.as_deref()),
        raw_query,
    };
    let method = req.method().clone();
    use Handler as H;
    let result = match route.handler {
        H::Ping => Ok(system::ping(&method)),
        H::Ready => Ok(system::ready(state, &ctx)),
        H::Version => Ok(system::version(state)),
        H::Info => Ok(system::info(state)),
        H::Events => system::events(state, &ctx).await,
        H::Metrics => Ok(system::metrics(state).await),
        H::Auth => system::login(state, &ctx, req).await,
        H::Cors => Ok(Response::new(crate::body::empty())),
        H::ContainersList => containers::list(state, &ctx).await,
        H::ContainersCreate => containers::create(state, &ctx, req).await,
        H::ContainersPrune => super::fanout::prune(state, &ctx, "/containers/prune").await,
        H::Container => containers::by_id(state, &ctx, req).await,
        H::Commit => containers::commit(state, &ctx, req).await,
        H::Exec => exec::by_id(state, &ctx, req).await,
        H::ImagesList => images::list(state, &ctx).await,
        H::ImagesCreate => images::create(state, &ctx, req).await,
        H::ImagesLoad => images::load(state, &ctx, req).await,
        H::ImagesSave => images::save_many(state, &ctx, req).await,
        H::ImagesSearch => system::any_engine(state, &ctx, req, "/images/search").await,
        H::ImagesPrune => super::fanout::prune(state, &ctx, "/images/prune").await,
        H::ImagesViz => Err(ApiError::new(http::StatusCode::NOT_IMPLEMENTED, "Not supported in clustering mode.")),
        H::Image => images::by_name(state, &ctx, req).await,
        H::Build => images::build(state, &ctx, req).await,
        H::NetworksList => networks::list(state, &ctx).await,
        H::NetworksCreate => networks::create(state, &ctx, req).await,
        H::NetworksPrune => super::fanout::prune(state, &ctx, "/networks/prune").await,
        H::Network => networks::by_id(state, &ctx, req).await,
        H::VolumesList => volumes::list(state, &ctx).await,
        H::VolumesCreate => volumes::create(state, &ctx, req).await,
        H::VolumesPrune => super::fanout::prune(state, &ctx, "/volumes/prune").await,
        H::Volume => volumes::by_name(state, &ctx, req).await,
        // The control plane serves its own routes before the Docker API sees them.
        H::Control(_) | H::Unknown => Err(ApiError::not_found("page not found")),
    };
    (route.class, result)
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

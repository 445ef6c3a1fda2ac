//! The route table: what a request is, decided once from its method and path. Each route names
//! its handler and its class (a metrics label), and how it travels between managers: answered
//! by any manager, by the leader only (followers pass it on), or, for streams that need no
//! leader, by a follower from its own engine connections; and whether the leader runs it once
//! per request ID. Control-plane routes are the control plane's to recognise (it decides who
//! may call them, on the raw path); everything else is the Docker API's.

use http::Method;

use super::version;
use crate::control;

/// The handler that serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    Ping,
    /// The load balancers' health check.
    Ready,
    Version,
    Info,
    Events,
    Metrics,
    Auth,
    /// A CORS preflight, answered when `--api-enable-cors` is on.
    Cors,
    ContainersList,
    ContainersCreate,
    ContainersPrune,
    /// `/containers/{id}/…`, and the removal of `/containers/{id}`.
    Container,
    Commit,
    /// `/exec/{id}/…`.
    Exec,
    ImagesList,
    ImagesCreate,
    ImagesLoad,
    ImagesSave,
    ImagesSearch,
    ImagesPrune,
    ImagesViz,
    /// `/images/{name}/…`.
    Image,
    Build,
    NetworksList,
    NetworksCreate,
    NetworksPrune,
    /// `/networks/{id}/…`.
    Network,
    VolumesList,
    VolumesCreate,
    VolumesPrune,
    /// `/volumes/{name}`.
    Volume,
    /// A control-plane route.
    Control(control::Route),
    /// Nothing here: 404.
    Unknown,
}

/// Which managers serve a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// Every manager answers it itself.
    Anywhere,
    /// The leader; a follower passes it on.
    Leader,
    /// A stream that needs no leader: a follower serves it from its own engine watches and
    /// connections (a container's, once its cache knows the container), and passes it on
    /// otherwise.
    Stream,
}

/// One route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// What serves it.
    pub handler: Handler,
    /// Its label in the request metrics.
    pub class: &'static str,
    /// Which managers serve it.
    pub serves: Serves,
    /// A write the leader runs once per request ID (`journal`): its answer is small, and a
    /// second run would differ from the first.
    pub journaled: bool,
}

impl Route {
    const fn new(handler: Handler, class: &'static str, serves: Serves) -> Route {
        Route { handler, class, serves, journaled: false }
    }

    const fn once(self) -> Route {
        Route { journaled: true, ..self }
    }

    /// A container's create: it needs leadership until it ends (it records and clears its
    /// record).
    pub fn is_create(&self) -> bool {
        self.handler == Handler::ContainersCreate
    }
}

/// The percent-decoded segments of a path without its version (`/containers/a%2Fb/json`:
/// `containers`, `a/b`, `json`).
pub fn segments(rest: &str) -> Vec<String> {
    rest.trim_start_matches('/')
        .split('/')
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect()
}

/// The route of `method` on `path` (the raw path, with or without an API version); `cors`:
/// whether preflights are answered (`--api-enable-cors`).
pub fn route_of(method: &Method, path: &str, cors: bool) -> Route {
    use Handler as H;
    use Serves::{Anywhere, Leader, Stream};
    if let Some(c) = control::route_of(path) {
        return match c {
            // Answered by the local member whatever its role.
            control::Route::Raft => Route::new(H::Control(c), "raft", Anywhere),
            // Reads of this manager's own replicated copy.
            control::Route::Registry
                if method == Method::GET
                    && matches!(path, "/_swarm/nodes" | "/_swarm/members" | "/_swarm/members/self") =>
            {
                Route::new(H::Control(c), "registry", Anywhere)
            }
            control::Route::Registry => Route::new(H::Control(c), "registry", Leader),
            control::Route::Token => Route::new(H::Control(c), "token", Leader),
        };
    }
    let (ver, rest) = version::split_path(path);
    let segs = segments(rest);
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let unversioned = ver.is_none();
    use Method as M;
    match (method, segs.as_slice()) {
        (&M::GET | &M::HEAD, ["_ping"]) => Route::new(H::Ping, "ping", Anywhere),
        (&M::GET | &M::HEAD, ["_swarm", "ready"]) if unversioned => Route::new(H::Ready, "ready", Anywhere),
        (&M::GET, ["version"]) => Route::new(H::Version, "version", Leader),
        (&M::GET, ["info"]) => Route::new(H::Info, "info", Anywhere),
        (&M::GET, ["events"]) => Route::new(H::Events, "events", Stream),
        (&M::GET | &M::HEAD, ["metrics"]) if unversioned => Route::new(H::Metrics, "metrics", Anywhere),
        (&M::POST, ["auth"]) => Route::new(H::Auth, "auth", Leader),
        (&M::OPTIONS, _) if cors => Route::new(H::Cors, "cors", Anywhere),

        (&M::GET, ["containers", "json"]) => Route::new(H::ContainersList, "containers.list", Leader),
        (&M::POST, ["containers", "create"]) => Route::new(H::ContainersCreate, "containers.create", Leader).once(),
        (&M::POST, ["containers", "prune"]) => Route::new(H::ContainersPrune, "containers.prune", Leader),
        // `/containers/{id}` alone is only removed.
        (&M::DELETE, ["containers", _]) => Route::new(H::Container, "containers.op", Leader).once(),
        (_, ["containers", _]) => Route::new(H::Unknown, "unknown", Anywhere),
        (&M::GET, ["containers", _, "logs" | "stats"]) | (&M::POST, ["containers", _, "wait" | "attach"]) => {
            Route::new(H::Container, "containers.op", Stream)
        }
        (
            &M::POST,
            ["containers", _, "start" | "stop" | "kill" | "restart" | "pause" | "unpause" | "rename" | "update" | "exec"],
        ) => Route::new(H::Container, "containers.op", Leader).once(),
        (_, ["containers", _, ..]) => Route::new(H::Container, "containers.op", Leader),
        (&M::POST, ["commit"]) => Route::new(H::Commit, "commit", Leader),

        // A session's stream, when the client upgrades to it (checked by the follower).
        (&M::POST, ["exec", _, "start"]) => Route::new(H::Exec, "exec", Stream),
        (_, ["exec", _, ..]) => Route::new(H::Exec, "exec", Leader),

        (&M::GET, ["images", "json"]) => Route::new(H::ImagesList, "images.list", Leader),
        (&M::POST, ["images", "create"]) => Route::new(H::ImagesCreate, "images.create", Leader),
        (&M::POST, ["images", "load"]) => Route::new(H::ImagesLoad, "images.load", Leader),
        (&M::GET, ["images", "get"]) => Route::new(H::ImagesSave, "images.save", Leader),
        (&M::GET, ["images", "search"]) => Route::new(H::ImagesSearch, "images.search", Leader),
        (&M::POST, ["images", "prune"]) => Route::new(H::ImagesPrune, "images.prune", Leader),
        (&M::GET, ["images", "viz"]) => Route::new(H::ImagesViz, "images.viz", Leader),
        (_, ["images", _, ..]) => Route::new(H::Image, "images.op", Leader),
        (&M::POST, ["build"]) => Route::new(H::Build, "build", Leader),

        (&M::GET, ["networks"]) => Route::new(H::NetworksList, "networks.list", Leader),
        (&M::POST, ["networks", "create"]) => Route::new(H::NetworksCreate, "networks.create", Leader).once(),
        (&M::POST, ["networks", "prune"]) => Route::new(H::NetworksPrune, "networks.prune", Leader),
        (&M::POST, ["networks", _, "connect" | "disconnect"]) | (&M::DELETE, ["networks", _]) => {
            Route::new(H::Network, "networks.op", Leader).once()
        }
        (_, ["networks", _, ..]) => Route::new(H::Network, "networks.op", Leader),

        (&M::GET, ["volumes"]) => Route::new(H::VolumesList, "volumes.list", Leader),
        (&M::POST, ["volumes", "create"]) => Route::new(H::VolumesCreate, "volumes.create", Leader).once(),
        (&M::POST, ["volumes", "prune"]) => Route::new(H::VolumesPrune, "volumes.prune", Leader),
        (&M::DELETE, ["volumes", _]) => Route::new(H::Volume, "volumes.op", Leader).once(),
        (_, ["volumes", _, ..]) => Route::new(H::Volume, "volumes.op", Leader),

        // The same 404 wherever it is asked.
        _ => Route::new(H::Unknown, "unknown", Anywhere),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(method: Method, path: &str) -> Route {
        route_of(&method, path, false)
    }

    #[test]
    fn each_request_finds_its_handler_whatever_its_version() {
        assert_eq!(of(Method::GET, "/v1.41/containers/json").handler, Handler::ContainersList);
        assert_eq!(of(Method::GET, "/containers/json").handler, Handler::ContainersList);
        assert_eq!(of(Method::DELETE, "/v1.41/containers/web").handler, Handler::Container);
        assert_eq!(of(Method::GET, "/v1.41/containers/web").handler, Handler::Unknown, "only removed");
        assert_eq!(of(Method::GET, "/v1.41/metrics").handler, Handler::Unknown, "metrics carry no version");
        assert_eq!(of(Method::HEAD, "/metrics").handler, Handler::Metrics, "probes ask with HEAD");
        assert_eq!(of(Method::GET, "/v1.41/images/127.0.0.1:5000/busybox/json").handler, Handler::Image);
        assert_eq!(of(Method::PUT, "/nope").handler, Handler::Unknown);
    }

    #[test]
    fn the_leader_serves_writes_and_reads_of_its_cache_and_followers_serve_what_needs_none() {
        assert_eq!(of(Method::GET, "/_ping").serves, Serves::Anywhere);
        assert_eq!(of(Method::GET, "/v1.41/info").serves, Serves::Anywhere);
        assert_eq!(of(Method::GET, "/_swarm/ready").serves, Serves::Anywhere);
        assert_eq!(of(Method::GET, "/v1.41/containers/json").serves, Serves::Leader);
        assert_eq!(of(Method::POST, "/v1.41/containers/create").serves, Serves::Leader);
        assert_eq!(of(Method::GET, "/v1.41/events").serves, Serves::Stream);
        assert_eq!(of(Method::GET, "/v1.41/containers/web/logs").serves, Serves::Stream);
        assert_eq!(of(Method::POST, "/v1.41/containers/web/wait").serves, Serves::Stream);
        assert_eq!(of(Method::POST, "/v1.41/exec/abc/start").serves, Serves::Stream);
        assert_eq!(of(Method::GET, "/v1.41/exec/abc/json").serves, Serves::Leader);
    }

    #[test]
    fn writes_with_small_answers_run_once_per_request_id() {
        for (m, p) in [
            (Method::POST, "/v1.41/containers/create"),
            (Method::POST, "/v1.41/containers/web/start"),
            (Method::DELETE, "/v1.41/containers/web"),
            (Method::POST, "/v1.41/networks/create"),
            (Method::DELETE, "/v1.41/volumes/data"),
        ] {
            assert!(of(m.clone(), p).journaled, "{m} {p}");
        }
        for (m, p) in [
            (Method::GET, "/v1.41/containers/web/json"),
            (Method::POST, "/v1.41/containers/web/wait"),
            (Method::POST, "/v1.41/images/load"),
            (Method::POST, "/v1.41/exec/abc/start"),
        ] {
            assert!(!of(m.clone(), p).journaled, "{m} {p}");
        }
        assert!(of(Method::POST, "/v1.41/containers/create").is_create());
    }

    #[test]
    fn preflights_are_answered_only_with_cors_on() {
        assert_eq!(route_of(&Method::OPTIONS, "/v1.41/containers/json", true).handler, Handler::Cors);
        assert_eq!(route_of(&Method::OPTIONS, "/v1.41/containers/web/start", false).handler, Handler::Container);
    }

    #[test]
    fn control_routes_are_the_control_plane_s() {
        let raft = of(Method::POST, &format!("{}vote", control::RAFT_PREFIX));
        assert_eq!((raft.handler, raft.serves), (Handler::Control(control::Route::Raft), Serves::Anywhere));
        assert_eq!(of(Method::GET, "/_swarm/nodes").serves, Serves::Anywhere);
        assert_eq!(of(Method::PUT, "/_swarm/nodes/a:1").serves, Serves::Leader);
        assert_eq!(of(Method::GET, "/v1/clusters/abc").handler, Handler::Control(control::Route::Token));
        assert_eq!(of(Method::GET, "/_swarm/ready").handler, Handler::Ready, "the health check is open to all");
    }
}

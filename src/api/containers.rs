//! Containers: the cluster-wide list, scheduled creates, and every per-container route sent to
//! the owning engine.

use std::collections::BTreeMap;

use http::{header, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Map, Value};

use super::error::ApiError;
use super::router::{encode_segment, Ctx};
use super::{proxy, ApiState};
use crate::body::{self, Body};
use crate::cluster::{ContainerRef, NodeState};
use crate::orchestrator::{CreateRequest, EarlierRun};

mod inspect;
mod list;
pub(crate) mod ps;

pub use list::list;

// === list ===

fn name_ok(name: &str) -> bool {
    let n = name.trim_start_matches('/');
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

// === create ===

/// `POST /containers/create`: validated here, scheduled and created by the orchestrator.
pub async fn create(state: &ApiState, ctx: &Ctx, req: Request<Body>) -> Result<Response<Body>, ApiError> {
    ApiState::check_json_content_type(req.headers())?;
    let name = ctx.query.get("name").filter(|n| !n.is_empty()).map(|n| n.trim_start_matches('/').to_string());
    if let Some(n) = &name {
        if !name_ok(n) {
            return Err(ApiError::bad_request(format!(
                "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
    }
    let auth = req.headers().get("x-registry-auth").cloned();
    let request_key = req.extensions().get::<super::journal::RequestKey>().map(|k| k.as_str().to_string());
    let raw = state.read_body(req.into_body()).await?;
    let config: Map<String, Value> = match serde_json::from_slice(&raw) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(ApiError::bad_request("container config must be a JSON object")),
        Err(e) => return Err(ApiError::internal(super::error::go_json_error(&e))),
    };
    let created = state
        .orchestrator
        .create(CreateRequest { config, name, auth, api_version: ctx.version.clone(), request_key })
        .await?;
    let mut resp = Response::builder().status(StatusCode::CREATED);
    if let Some(ct) = created.content_type {
        resp = resp.header(header::CONTENT_TYPE, ct);
    }
    Ok(resp.body(body::full(created.answer)).unwrap_or_else(|_| Response::new(body::empty())))
}

// === per-container routes ===

/// Resolves `/containers/<id>/...` or `/containers/<node>/<name>/...`; returns the container
/// and the remaining segments.
fn resolve<'s>(state: &ApiState, segs: &'s [String]) -> Result<(ContainerRef, &'s [String]), ApiError> {
    // The node is checked first: `<id>/start` read as a node and a name would scan every
    // container for nothing.
    if segs.len() >= 2 && state.cluster.node_by_name(&segs[0]).is_some() {
        if let Ok(r) = state.cluster.find_container(&format!("{}/{}", segs[0], segs[1])) {
            return Ok((r, &segs[2..]));
        }
    }
    let r = state.cluster.find_container(&segs[0])?;
    Ok((r, &segs[1..]))
}

/// Why a lookup of `ident` that missed may not mean "No such container", which `rm -f` takes
/// for done; `named_node` is the node a `node/name` reference names (only it can hold it).
fn miss_unsure(state: &ApiState, ident: &str, named_node: Option<&str>) -> Option<ApiError> {
    // Between a reschedule taking the original out of the cache and caching its copy.
    if state.cluster.is_moving(ident) {
        return Some(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Container {ident} is being rescheduled to a healthy node; retry"),
        ));
    }
    // A leader's cache of an engine it has not read since it took over may miss the previous
    // leader's last changes there, a create included.
    let unread = state
        .leadership
        .leading_since()
        .map(|since| state.cluster.unread_unreachable(since, named_node))
        .unwrap_or_default();
    (!unread.is_empty()).then(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "Container {ident} is not in this manager's view, but node {} does not answer and has not been read since this manager began leading, so it may be there. Retry once it answers or has left discovery",
                unread.join(", ")
            ),
        )
    })
}

/// Runs `find` for the container `ident`, taking a miss for an answer only once it is sure:
/// once every engine has been read (`rm -f` takes "No such container" for success, so a
/// manager still loading must not say it), and unless [`miss_unsure`] says otherwise.
/// `named_node` is the node of a `node/name` reference.
async fn find_sure<T>(
    state: &ApiState,
    ident: &str,
    named_node: impl FnOnce() -> Option<String>,
    find: impl Fn() -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let mut found = find();
    if matches!(&found, Err(e) if e.status == StatusCode::NOT_FOUND)
        && state.cluster.wait_loaded(crate::cluster::CACHE_LOAD_WAIT).await
    {
        found = find();
    }
    match found {
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            Err(miss_unsure(state, ident, named_node().as_deref()).unwrap_or(e))
        }
        other => other,
    }
}

/// Finds the container `ident` names (an ID, a prefix, a name or `node/name`), with the same
/// care over misses as the per-container routes.
pub async fn find_checked(state: &ApiState, ident: &str) -> Result<ContainerRef, ApiError> {
    let named_node = || ident.split_once('/').and_then(|(node, _)| state.cluster.node_by_name(node)).map(|h| h.name);
    find_sure(state, ident, named_node, || state.cluster.find_container(ident).map_err(ApiError::from)).await
}

/// Every `/containers/{id}/...` route: sent to the owner with the name rewritten to the ID.
pub async fn by_id(state: &ApiState, ctx: &Ctx, req: Request<Body>) -> Result<Response<Body>, ApiError> {
    let named_node = || ctx.segs.get(2).and_then(|_| state.cluster.node_by_name(&ctx.segs[1])).map(|h| h.name);
    let found = find_sure(state, &ctx.segs[1], named_node, || resolve(state, &ctx.segs[1..])).await;
    // Set for a write the leader runs once per request ID (see `journal`).
    let key = req.extensions().get::<super::journal::RequestKey>().map(|k| k.as_str().to_string());
    let (c, rest) = match found {
        Ok(found) => found,
        // A removal sent again after an earlier leader made it: done.
        Err(e) if e.status == http::StatusCode::NOT_FOUND && req.method() == Method::DELETE && ctx.segs.len() == 2 => {
            match &key {
                Some(k) if state.orchestrator.removal_begun(k).await => return Ok(no_content()),
                _ => return Err(e),
            }
        }
        Err(e) if e.status == http::StatusCode::NOT_FOUND && ctx.segs.len() == 3 => match ctx.segs[2].as_str() {
            // dockerd wraps this one lookup failure,
            "kill" => {
                return Err(ApiError::not_found(format!("Cannot kill container: {}: {}", ctx.segs[1], e.message)))
            }
            // and answers an attach on the raw stream it has already taken over.
            "attach" => {
                let mut resp = Response::builder()
                    .status(http::StatusCode::NOT_FOUND)
                    .header(header::CONTENT_TYPE, "application/vnd.docker.raw-stream")
                    .body(body::full(format!("{}\r\n", e.message)))
                    .unwrap_or_else(|_| Response::new(body::empty()));
                resp.extensions_mut().insert(super::CommonHeaders::None);
                return Ok(resp);
            }
            _ => return Err(e),
        },
        Err(e) => return Err(e),
    };
    match c.node_state {
        NodeState::Healthy => {}
        NodeState::Disconnected => {
            return Err(ApiError::internal(format!(
                "Container {} is on node {}, which left the cluster",
                ctx.segs[1], c.node_name
            )))
        }
        _ => {
            return Err(ApiError::internal(format!(
                "Container {} running on unhealthy node {}",
                ctx.segs[1], c.node_name
            )))
        }
    }
    let api = c.api_version.clone();
    let action = rest.first().map(String::as_str);
    // The client's own word when the engine reads it the same way, so that the engine's
    // messages name what the client named; the full ID for `node/name` or a swarm ID.
    let ident = ctx.segs[1].trim_start_matches('/');
    let engine_reads_it = rest.len() + 2 == ctx.segs.len()
        && !ident.is_empty()
        && (c.id.starts_with(ident) || state.cluster.container_name(&c.node, &c.id).as_deref() == Some(ident));
    let mut path = format!("/containers/{}", if engine_reads_it { encode_segment(&ctx.segs[1]) } else { c.id.clone() });
    for s in rest {
        path.push('/');
        path.push_str(&encode_segment(s));
    }
    let method = req.method().clone();
    let target = ctx.engine_path_same_query(api.as_deref(), &path);
    let change = match (&method, action) {
        (&Method::DELETE, None) => Some("delete"),
        (&Method::POST, Some(a @ ("start" | "stop" | "kill" | "restart" | "pause" | "unpause" | "rename"))) => Some(a),
        _ => None,
    };
    let mut earlier = EarlierRun::None;
    if let (Some(k), Some(change)) = (&key, change) {
        earlier = state.orchestrator.change_applied_before(k, &c, change, ctx.query.get("name")).await?;
        if earlier == EarlierRun::Applied {
            // What the earlier run would have remembered of the user's intent.
            match change {
                "stop" | "kill" => state.cluster.stopped_by_user(&c.id, true),
                "start" | "restart" | "unpause" => state.cluster.stopped_by_user(&c.id, false),
                _ => {}
            }
            return Ok(no_content());
        }
    }
    match (&method, action) {
        (&Method::GET, Some("json")) => inspect::inspect(state, &c, &target).await,
        (&Method::POST, Some("exec")) => {
            let resp = proxy::forward(state, &c.client, req, &target).await?;
            remember_exec(state, &c.node, resp).await
        }
        (&Method::POST, Some("attach")) if !proxy::wants_upgrade(&req) => {
            Err(ApiError::bad_request("attach needs a hijacked connection: send Connection: Upgrade and Upgrade: tcp"))
        }
        (&Method::POST, Some("rename")) => {
            let new = ctx.query.get("name").unwrap_or_default().trim_start_matches('/').to_string();
            // Its own name is the engine's to refuse, in its words.
            if let Some(holder) = state.cluster.name_holder(&new).filter(|h| *h != c.id) {
                return Err(ApiError::conflict(format!(
                    "Error when allocating new name: Conflict. The container name \"/{new}\" is already in use by container \"{holder}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            forward_and_refresh(state, ctx, &c, req, &target).await
        }
        (&Method::POST, Some("wait")) => wait(state, ctx, &c, req, &target).await,
        (&Method::POST, Some("start" | "stop" | "kill" | "restart" | "pause" | "unpause" | "update")) => {
            forward_and_refresh(state, ctx, &c, req, &target).await
        }
        (&Method::DELETE, None) => {
            let mut resp = proxy::forward(state, &c.client, req, &target).await?;
            if earlier == EarlierRun::Unsettled && resp.status() == StatusCode::CONFLICT {
                resp = removal_in_progress(state, &c, resp).await?;
            }
            if resp.status().is_success() {
                state.cluster.forget_removed(&c.node, &c.id);
                // A reschedule may have replaced it while the removal was in flight: the user
                // removed the container, so its replacement goes too.
                for (node, id, client) in state.cluster.replacements_of(&c.id) {
                    if crate::orchestrator::force_remove(&client, &id).await {
                        tracing::info!(target: "swarm::mutation", term = state.leadership.acting_term(), node = %node, id = %id, "Removed the rescheduled replacement of a removed container.");
                        state.cluster.forget_container(&node, &id);
                    }
                }
            }
            Ok(resp)
        }
        _ => proxy::forward(state, &c.client, req, &target).await,
    }
}

/// How long a removal sent again waits for the engine to finish the one an earlier run began.
const REMOVAL_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A removal sent again while the engine still works on the one an earlier run began (dockerd
/// answers 409 "removal of container … is already in progress"): done once that one is.
async fn removal_in_progress(
    state: &ApiState,
    c: &ContainerRef,
    resp: Response<Body>,
) -> Result<Response<Body>, ApiError> {
    let (parts, incoming) = resp.into_parts();
    let bytes = body::collect_limited(incoming, state.config.limits.max_body_bytes).await?;
    if !crate::transport::error_message(&bytes).contains("is already in progress") {
        return Ok(Response::from_parts(parts, body::full(bytes)));
    }
    let deadline = tokio::time::Instant::now() + REMOVAL_WAIT;
    while tokio::time::Instant::now() < deadline {
        match c.client.get_ok(&format!("/containers/{}/json", c.id)).await {
            Err(crate::transport::EngineError::Status { status: StatusCode::NOT_FOUND, .. }) => return Ok(no_content()),
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    Ok(Response::from_parts(parts, body::full(bytes)))
}

/// 204 with no body: what dockerd answers a change it made.
fn no_content() -> Response<Body> {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(body::empty())
        .unwrap_or_else(|_| Response::new(body::empty()))
}

/// Forwards, then re-reads the container before answering, so that the next `docker ps`
/// through any path sees the change.
async fn forward_and_refresh(
    state: &ApiState,
    ctx: &Ctx,
    c: &ContainerRef,
    req: Request<Body>,
    target: &str,
) -> Result<Response<Body>, ApiError> {
    let action = ctx.segs.last().cloned().unwrap_or_default();
    let sent_at = std::time::Instant::now();
    // Each of these actions is also the name of the last event the engine emits for it.
    let mut event = state.cluster.await_event(&c.node, &c.id, &action);
    let resp = proxy::forward(state, &c.client, req, target).await?;
    if !resp.status().is_success() {
        return Ok(resp);
    }
    let killed = ctx.query.get("signal").is_none_or(|s| matches!(s, "KILL" | "SIGKILL" | "9"));
    match action.as_str() {
        "stop" => state.cluster.stopped_by_user(&c.id, true),
        "kill" if killed => state.cluster.stopped_by_user(&c.id, true),
        "start" | "restart" | "unpause" => state.cluster.stopped_by_user(&c.id, false),
        _ => {}
    }
    let new_name = ctx.query.get("name").map(|n| n.trim_start_matches('/').to_string());
    // Whatever was learnt after the request left (an exit seen by `wait`, an event) is newer.
    let as_of = event.arrived_early().unwrap_or_else(std::time::Instant::now);
    state.cluster.patch_container_as_of(&c.node, &c.id, sent_at, as_of, |cached| match action.as_str() {
        "start" | "restart" => cached.set_run(|r| r.start()),
        "unpause" => cached.set_run(|r| r.paused = false),
        "pause" => cached.set_run(|r| r.paused = true),
        "stop" => cached.set_run(|r| r.stop(r.exit_code)),
        "kill" if killed => cached.set_run(|r| r.stop(137)),
        "rename" => {
            if let Some(n) = &new_name {
                cached.rename(n);
            }
        }
        _ => {}
    });
    // The engine's event re-reads the container; without it, a lagging event stream, the
    // manager re-reads it itself.
    event.reread_unless_it_comes();
    Ok(resp)
}

/// `wait` answers when the container stops: the cache learns the exit before the client does,
/// so a `docker ps` right after `docker run` never shows the container still running.
async fn wait(
    state: &ApiState,
    ctx: &Ctx,
    c: &ContainerRef,
    req: Request<Body>,
    target: &str,
) -> Result<Response<Body>, ApiError> {
    let resp = proxy::forward(state, &c.client, req, target).await?;
    if !resp.status().is_success() {
        return Ok(resp);
    }
    let removed = ctx.query.get("condition") == Some("removed");
    let (cluster, node, id) = (state.cluster.clone(), c.node.clone(), c.id.clone());
    let (parts, incoming) = resp.into_parts();
    let observed = incoming.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            let code = serde_json::from_slice::<Value>(data).ok().and_then(|v| v["StatusCode"].as_i64());
            if let Some(code) = code {
                if removed {
                    cluster.forget_container(&node, &id);
                } else {
                    // Only if the engine's own account (its die event, re-read with its exact
                    // FinishedAt) has not arrived first: under load it often has.
                    cluster.patch_container(&node, &id, |cached| {
                        if cached.facts.run.running {
                            cached.set_run(|r| r.stop(code));
                        }
                    });
                }
            }
        }
        frame
    });
    Ok(Response::from_parts(parts, observed.boxed_unsync()))
}

async fn remember_exec(state: &ApiState, node: &str, resp: Response<Body>) -> Result<Response<Body>, ApiError> {
    let (parts, incoming) = resp.into_parts();
    let bytes = body::collect_limited(incoming, state.config.limits.max_body_bytes).await?;
    if parts.status.is_success() {
        if let Some(id) =
            serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| v["Id"].as_str().map(str::to_string))
        {
            state.cluster.record_exec(&id, node);
        }
    }
    Ok(Response::from_parts(parts, body::full(bytes)))
}

/// `POST /commit?container=…`: sent to the container's engine.
pub async fn commit(state: &ApiState, ctx: &Ctx, req: Request<Body>) -> Result<Response<Body>, ApiError> {
    let ident = ctx.query.get("container").unwrap_or_default();
    let c = find_checked(state, ident).await?;
    let api = c.api_version.clone();
    let mut overrides = BTreeMap::new();
    overrides.insert("container", Some(c.id.clone()));
    let query = ctx.query.encode_with(&overrides);
    let target = ctx.engine_path(api.as_deref(), "/commit", Some(&query));
    let resp = proxy::forward(state, &c.client, req, &target).await?;
    if resp.status().is_success() {
        let _ = state.cluster.refresh_images(&c.node).await;
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockerd_rules() {
        assert!(name_ok("web") && name_ok("/web-1.a_b"));
        assert!(!name_ok("-web") && !name_ok("w") && !name_ok("we b") && !name_ok("node/web"));
    }
}

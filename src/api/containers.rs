//! Containers: the cluster-wide list, scheduled creates, and every per-container route sent to
//! the owning engine.

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::BodyExt;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::router::{encode_segment, Ctx};
use super::{proxy, ApiState};
use crate::body::{self, Body};
use crate::cluster::{labels, ContainerRef, NodeState, PendingCreate};
use crate::scheduler::{ContainerSpec, ContainerView, Expr};

mod inspect;
mod list;
mod ps;
mod spec;

pub use list::list;

pub use spec::{build_spec, image_reference};

// === list ===

fn name_ok(name: &str) -> bool {
    let n = name.trim_start_matches('/');
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

// === create ===

/// `POST /containers/create`: schedule, reserve, create on the engine (pulling the image there
/// if it is missing), cache at once.
pub async fn create(state: &ApiState, ctx: &Ctx, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let name = ctx.query.get("name").filter(|n| !n.is_empty()).map(|n| n.trim_start_matches('/').to_string());
    if let Some(n) = &name {
        if !name_ok(n) {
            return Err(ApiError::bad_request(format!("Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")));
        }
    }
    let auth = req.headers().get("x-registry-auth").cloned();
    let raw = body::collect_limited(req.into_body(), state.config.limits.max_body_bytes).await?;
    let config: Map<String, Value> = match serde_json::from_slice(&raw) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(ApiError::bad_request("container config must be a JSON object")),
        Err(e) => return Err(ApiError::internal(super::error::go_json_error(&e))),
    };
    let created = create_container(state, ctx, config, name, auth).await?;
    let mut resp = Response::builder().status(StatusCode::CREATED);
    if let Some(ct) = created.content_type {
        resp = resp.header(header::CONTENT_TYPE, ct);
    }
    Ok(resp.body(body::full(created.answer)).unwrap_or_else(|_| Response::new(body::empty())))
}

/// A container the engine created.
pub struct Created {
    /// The node's key.
    pub node: String,
    /// The engine's container ID.
    pub id: String,
    /// The engine's answer, passed on to the client.
    answer: Bytes,
    content_type: Option<http::HeaderValue>,
}

/// Schedules and creates a container from a create body: the API's create and the
/// rescheduler's. The swarm ID in the labels is kept, or a new one is given.
pub async fn create_container(
    state: &ApiState,
    ctx: &Ctx,
    mut config: Map<String, Value>,
    name: Option<String>,
    auth: Option<http::HeaderValue>,
) -> Result<Created, ApiError> {
    let spec = build_spec(&mut config)?;
    let swarm_id = match config.get("Labels").and_then(|l| l.get(labels::SWARM_ID)).and_then(Value::as_str) {
        Some(id) => id.to_string(),
        None => {
            let id = random_id();
            let labels_obj = config.entry("Labels").or_insert_with(|| json!({}));
            if !labels_obj.is_object() {
                *labels_obj = json!({});
            }
            labels_obj[labels::SWARM_ID] = json!(id);
            id
        }
    };
    let attempts = 1 + state.config.create_retry;
    let mut excluded: Vec<String> = Vec::new();
    let mut last_err = None;
    for _ in 0..attempts {
        match create_once(state, ctx, &config, &spec, name.as_deref(), &swarm_id, auth.as_ref(), &excluded).await {
            Ok(created) => return Ok(created),
            Err(CreateFailure::Final(e)) => return Err(e),
            Err(CreateFailure::Retryable(node, e) | CreateFailure::Interrupted(node, e)) => {
                excluded.push(node);
                last_err = Some(e);
            }
        }
    }
    Err(last_err.unwrap_or_else(|| ApiError::internal("create failed")))
}

/// Where a create in flight is recorded, by swarm ID.
pub const CREATES_PREFIX: &str = "creates/";

/// A create in flight, as recorded in the store.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct InFlight {
    /// The node it was sent to.
    pub node: String,
    /// Its name, if any.
    pub name: Option<String>,
}

fn store_failure(e: crate::store::StoreError) -> ApiError {
    match e {
        crate::store::StoreError::NotLeader => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "This manager is no longer the primary; retry"),
        other => ApiError::internal(format!("cannot record the create: {other}")),
    }
}

enum CreateFailure {
    Final(ApiError),
    Retryable(String, ApiError),
    /// The engine stopped answering mid-create; a cleanup task now owns the in-flight record.
    Interrupted(String, ApiError),
}

fn random_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

#[allow(clippy::too_many_arguments)]
async fn create_once(
    state: &ApiState,
    ctx: &Ctx,
    config: &Map<String, Value>,
    spec: &ContainerSpec,
    name: Option<&str>,
    swarm_id: &str,
    auth: Option<&http::HeaderValue>,
    excluded: &[String],
) -> Result<Created, CreateFailure> {
    let fail = |e: ApiError| CreateFailure::Final(e);
    let (node, _guard) = {
        let _lock = state.cluster.schedule_lock();
        if let Some(n) = name {
            if let Some(holder) = state.cluster.name_holder(n) {
                state.metrics.decisions.with_label_values(&["conflict"]).inc();
                return Err(fail(ApiError::conflict(format!(
                    "Conflict. The container name \"/{n}\" is already in use by container \"{holder}\". You have to remove (or rename) that container to be able to reuse that name."
                ))));
            }
        }
        let mut nodes = state.cluster.snapshot();
        nodes.retain(|n| !excluded.contains(&n.key));
        let chosen = match state.scheduler.select(&nodes, spec, &mut rand::rng()) {
            Ok(n) => n.key.clone(),
            Err(e) => {
                state.metrics.decisions.with_label_values(&["unschedulable"]).inc();
                return Err(fail(e.into()));
            }
        };
        state.metrics.decisions.with_label_values(&["ok"]).inc();
        let view = ContainerView {
            id: String::new(),
            names: name.map(|n| vec![n.to_string()]).unwrap_or_default(),
            image: spec.image.clone(),
            labels: BTreeMap::from([(labels::SWARM_ID.to_string(), swarm_id.to_string())]),
            host_ports: spec.host_ports.clone(),
            host_mode_ports: spec.host_mode_ports.clone(),
        };
        let guard = state.cluster.reserve(PendingCreate {
            node: chosen.clone(),
            name: name.map(str::to_string),
            cpus: spec.cpus,
            memory: spec.memory,
            view,
        });
        (chosen, guard)
    };
    let Some(handle) = state.cluster.node(&node) else {
        return Err(CreateFailure::Retryable(node.clone(), ApiError::internal("node left the cluster")));
    };
    // Recorded before the engine hears of it, so that a leader that dies now leaves the next
    // one enough to finish or undo it; a deposed leader cannot record, so cannot create.
    let record = format!("{CREATES_PREFIX}{swarm_id}");
    let in_flight = serde_json::to_vec(&InFlight { node: node.clone(), name: name.map(str::to_string) }).unwrap_or_default();
    state.store.put(record.clone(), in_flight, None).await.map_err(|e| fail(store_failure(e)))?;
    let outcome = send_create(state, ctx, config, spec, name, swarm_id, auth, &node, &handle).await;
    // An interrupted create keeps its record until its cleanup confirms that no copy is left.
    if !matches!(outcome, Err(CreateFailure::Interrupted(..))) {
        let _ = state.store.delete(record).await;
    }
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn send_create(
    state: &ApiState,
    ctx: &Ctx,
    config: &Map<String, Value>,
    spec: &ContainerSpec,
    name: Option<&str>,
    swarm_id: &str,
    auth: Option<&http::HeaderValue>,
    node: &str,
    handle: &crate::cluster::NodeHandle,
) -> Result<Created, CreateFailure> {
    let fail = |e: ApiError| CreateFailure::Final(e);
    let node = node.to_string();
    // Classic: CpuShares counts CPUs in swarm; the engine wants real shares.
    let mut body = config.clone();
    if spec.cpus > 0 {
        let ncpu = state.cluster.with_nodes(|n| n.get(&node).and_then(|n| n.info.as_ref().map(|i| i.ncpu))).unwrap_or(1).max(1);
        let shares = (spec.cpus * 1024 + ncpu - 1) / ncpu;
        if let Some(hc) = body.get_mut("HostConfig").and_then(Value::as_object_mut) {
            if hc.get("CpuShares").and_then(Value::as_i64).unwrap_or(0) > 0 {
                hc.insert("CpuShares".into(), json!(shares));
            }
        }
        if body.get("CpuShares").and_then(Value::as_i64).unwrap_or(0) > 0 {
            body.insert("CpuShares".into(), json!(shares));
        }
    }
    let query = name.map(|n| format!("name={}", encode_segment(n)));
    let path = ctx.engine_path(handle.api_version.as_deref(), "/containers/create", query.as_deref());
    let payload = Bytes::from(Value::Object(body).to_string());
    let mut headers = HeaderMap::new();
    if let Some(a) = auth {
        headers.insert("x-registry-auth", a.clone());
    }
    let mut pulled = false;
    loop {
        let bound = Some(state.config.timing.create_timeout);
        let sent = handle.client.call(Method::POST, &path, Some(payload.clone()), &headers, bound).await;
        match sent {
            Ok((status, resp_headers, bytes)) if status == StatusCode::CREATED => {
                let id = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| v["Id"].as_str().map(str::to_string)).unwrap_or_default();
                state.cluster.learn_created(&node, &id, name, config);
                return Ok(Created { node, id, answer: bytes, content_type: resp_headers.get(header::CONTENT_TYPE).cloned() });
            }
            Ok((StatusCode::NOT_FOUND, _, bytes)) if !pulled && crate::cluster::engine::error_message(&bytes).contains("No such image") => {
                pulled = true;
                if pull_on(&handle.client, ctx, handle.api_version.as_deref(), &spec.image, &headers).await.is_err() {
                    return Err(fail(ApiError::not_found(crate::cluster::engine::error_message(&bytes))));
                }
            }
            Ok((status, _, bytes)) => {
                let e = ApiError::new(status, crate::cluster::engine::error_message(&bytes));
                return Err(if status.is_server_error() { CreateFailure::Retryable(node, e) } else { fail(e) });
            }
            Err(e) => {
                // The engine may have created it before failing, or may yet (a hung engine that
                // resumes): keep trying to remove it, so that no half-created copy survives.
                let (client, id, store) = (handle.client.clone(), swarm_id.to_string(), state.store.clone());
                tokio::spawn(async move {
                    if remove_by_swarm_id_until_gone(client, id.clone()).await {
                        let _ = store.delete(format!("{CREATES_PREFIX}{id}")).await;
                    }
                });
                return Err(CreateFailure::Interrupted(node, e.into()));
            }
        }
    }
}

async fn pull_on(
    client: &crate::cluster::EngineClient,
    ctx: &Ctx,
    api: Option<&str>,
    image: &str,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let (repo, tag) = image_reference(image);
    let query = form_urlencoded::Serializer::new(String::new()).append_pair("fromImage", &repo).append_pair("tag", &tag).finish();
    let path = ctx.engine_path(api, "/images/create", Some(&query));
    let (status, _, bytes) = client.call(Method::POST, &path, None, headers, None).await?;
    let failed = !status.is_success()
        || bytes.split(|b| *b == b'\n').filter_map(|l| serde_json::from_slice::<Value>(l).ok()).any(|m| m.get("error").is_some());
    if failed {
        return Err(ApiError::not_found(format!("No such image: {image}")));
    }
    Ok(())
}

/// How long the manager keeps trying to remove a container whose create failed in flight.
const ORPHAN_CLEANUP_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

/// The engine path listing every container (running or not) that carries `label` (`key` or
/// `key=value`).
pub fn list_by_label(label: &str) -> String {
    let filter = json!({"label": [label]}).to_string();
    let query = form_urlencoded::Serializer::new(String::new()).append_pair("all", "1").append_pair("filters", &filter).finish();
    format!("/containers/json?{query}")
}

/// Removes every container carrying `swarm_id`; retries while the engine does not answer,
/// within [`ORPHAN_CLEANUP_WINDOW`]. True once no copy is left.
pub async fn remove_by_swarm_id_until_gone(client: crate::cluster::EngineClient, swarm_id: String) -> bool {
    let path = list_by_label(&format!("{}={swarm_id}", labels::SWARM_ID));
    let deadline = tokio::time::Instant::now() + ORPHAN_CLEANUP_WINDOW;
    while tokio::time::Instant::now() < deadline {
        // A hung engine may still be processing the create: look again after it could have.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let Ok(list) = client.get_json(&path).await else { continue };
        let mut removed_all = true;
        for c in list.as_array().into_iter().flatten() {
            if let Some(id) = c["Id"].as_str() {
                let gone = client.call(Method::DELETE, &format!("/containers/{id}?force=1"), None, &HeaderMap::new(), Some(client.timeout())).await;
                removed_all &= matches!(gone, Ok((s, _, _)) if s.is_success() || s == StatusCode::NOT_FOUND);
            }
        }
        if removed_all {
            tracing::info!(swarm_id = %swarm_id, "Create interrupted in flight: no copy left on the engine.");
            return true;
        }
    }
    tracing::error!(swarm_id = %swarm_id, "Could not confirm removal of a container whose create failed; remove it by its com.docker.swarm.id label.");
    false
}

// === per-container routes ===

/// Resolves `/containers/<id>/...` or `/containers/<node>/<name>/...`; returns the container
/// and the remaining segments.
fn resolve<'s>(state: &ApiState, segs: &'s [String]) -> Result<(ContainerRef, &'s [String]), ApiError> {
    if segs.len() >= 2 {
        if let Ok(r) = state.cluster.find_container(&format!("{}/{}", segs[0], segs[1])) {
            if state.cluster.node_by_name(&segs[0]).is_some() {
                return Ok((r, &segs[2..]));
            }
        }
    }
    let r = state.cluster.find_container(&segs[0])?;
    Ok((r, &segs[1..]))
}

/// Every `/containers/{id}/...` route: sent to the owner with the name rewritten to the ID.
pub async fn by_id(state: &ApiState, ctx: &Ctx, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let (c, rest) = match resolve(state, &ctx.segs[1..]) {
        Ok(found) => found,
        Err(e) if e.status == http::StatusCode::NOT_FOUND && ctx.segs.len() == 3 => match ctx.segs[2].as_str() {
            // dockerd wraps this one lookup failure,
            "kill" => return Err(ApiError::not_found(format!("Cannot kill container: {}: {}", ctx.segs[1], e.message))),
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
    if c.node_state != NodeState::Healthy {
        return Err(ApiError::internal(format!("Container {} running on unhealthy node {}", ctx.segs[1], c.node_name)));
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
            let resp = proxy::forward(state, &c.client, req, &target).await?;
            if resp.status().is_success() {
                state.cluster.forget_container(&c.node, &c.id);
            }
            Ok(resp)
        }
        _ => proxy::forward(state, &c.client, req, &target).await,
    }
}

/// Forwards, then re-reads the container before answering, so that the next `docker ps`
/// through any path sees the change.
async fn forward_and_refresh(state: &ApiState, ctx: &Ctx, c: &ContainerRef, req: Request<Incoming>, target: &str) -> Result<Response<Body>, ApiError> {
    let action = ctx.segs.last().cloned().unwrap_or_default();
    let sent_at = std::time::Instant::now();
    let resp = proxy::forward(state, &c.client, req, target).await?;
    if !resp.status().is_success() {
        return Ok(resp);
    }
    let killed = ctx.query.get("signal").is_none_or(|s| matches!(s, "KILL" | "SIGKILL" | "9"));
    let new_name = ctx.query.get("name").map(|n| n.trim_start_matches('/').to_string());
    // Whatever was learnt after the request left (an exit seen by `wait`, an event) is newer.
    state.cluster.patch_container_unless_newer(&c.node, &c.id, sent_at, |cached| match action.as_str() {
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
    // The engine's event re-reads the container; this re-read covers a lagging event stream.
    let cluster = state.cluster.clone();
    let (node, id) = (c.node.clone(), c.id.clone());
    tokio::spawn(async move {
        if let Err(e) = cluster.refresh_container(&node, &id).await {
            tracing::debug!(id = %id, error = %e, "Refresh after change failed.");
        }
    });
    Ok(resp)
}

/// `wait` answers when the container stops: the cache learns the exit before the client does,
/// so a `docker ps` right after `docker run` never shows the container still running.
async fn wait(state: &ApiState, ctx: &Ctx, c: &ContainerRef, req: Request<Incoming>, target: &str) -> Result<Response<Body>, ApiError> {
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
                    cluster.patch_container(&node, &id, |cached| cached.set_run(|r| r.stop(code)));
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
        if let Some(id) = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| v["Id"].as_str().map(str::to_string)) {
            state.cluster.record_exec(&id, node);
        }
    }
    Ok(Response::from_parts(parts, body::full(bytes)))
}

/// `POST /commit?container=…`: sent to the container's engine.
pub async fn commit(state: &ApiState, ctx: &Ctx, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let ident = ctx.query.get("container").unwrap_or_default();
    let c = state.cluster.find_container(ident)?;
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

/// Parses one expression from `-e constraint:…` and the like, with the classic messages.
pub fn parse_expr(text: &str) -> Result<Expr, ApiError> {
    Expr::parse(text).map_err(|e| ApiError::bad_request(e.to_string()))
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

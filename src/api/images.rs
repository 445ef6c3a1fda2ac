//! Images: the list grouped across engines, pulls and loads fanned out, reads from a holder,
//! tag and remove on every holder, builds scheduled like containers.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::error::ApiError;
use super::fanout::{self, call_all, healthy, stream_all, Merge};
use super::router::{encode_segment, Ctx};
use super::system::json_response;
use super::{proxy, ApiState};
use crate::body::{self, Body};
use crate::cluster::NodeHandle;
use crate::scheduler::ContainerSpec;

/// The request's `filters` without `node`, and the node names asked for.
pub(super) fn split_node_filter(ctx: &Ctx) -> Result<(String, Option<Vec<String>>), ApiError> {
    let (rest, nodes) = ctx.query.engine_filters()?;
    let mut overrides = BTreeMap::new();
    overrides.insert("filters", rest);
    Ok((ctx.query.encode_with(&overrides), nodes))
}

/// Healthy nodes, narrowed by a `node` filter.
pub fn nodes_for(state: &ApiState, names: &Option<Vec<String>>) -> Vec<NodeHandle> {
    state.cluster.healthy_nodes().into_iter().filter(|n| names.as_ref().is_none_or(|ns| ns.contains(&n.name))).collect()
}

/// A list (`GET path?query`) asked of each of `nodes` at once; the answers in their order.
pub async fn list_on(
    state: &ApiState,
    ctx: &Ctx,
    nodes: &[NodeHandle],
    path: &str,
    query: &str,
) -> Vec<fanout::Answer> {
    let path_for = |n: &NodeHandle| ctx.engine_path(n.api_version.as_deref(), path, Some(query));
    call_all(nodes, Method::GET, path_for, None, &HeaderMap::new(), &state.config.limits).await
}

/// `GET /images/json`: one entry per image ID, tags and digests merged, newest first.
pub async fn list(state: &ApiState, ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let (query, node_names) = split_node_filter(ctx)?;
    let nodes = nodes_for(state, &node_names);
    let answers = list_on(state, ctx, &nodes, "/images/json", &query).await;
    if !nodes.is_empty() && answers.iter().all(|a| !matches!(a, Ok((s, _)) if s.is_success())) {
        return Err(fanout::first_error(&answers));
    }
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    for (s, bytes) in answers.iter().filter_map(|a| a.as_ref().ok()) {
        if !s.is_success() {
            continue;
        }
        let Ok(Value::Array(list)) = serde_json::from_slice::<Value>(bytes) else { continue };
        for image in list {
            let id = image["Id"].as_str().unwrap_or_default().to_string();
            match by_id.get_mut(&id) {
                None => {
                    by_id.insert(id, image);
                }
                Some(existing) => {
                    for key in ["RepoTags", "RepoDigests"] {
                        let mut merged: Vec<Value> = existing[key].as_array().cloned().unwrap_or_default();
                        for v in image[key].as_array().into_iter().flatten() {
                            if !merged.contains(v) {
                                merged.push(v.clone());
                            }
                        }
                        existing[key] = Value::Array(merged);
                    }
                }
            }
        }
    }
    let mut out: Vec<Value> = by_id.into_values().collect();
    out.sort_by_key(|i| std::cmp::Reverse(i["Created"].as_i64().unwrap_or(0)));
    Ok(json_response(StatusCode::OK, &Value::Array(out)))
}

fn request(
    n: &NodeHandle,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: Option<Bytes>,
) -> Option<Request<Body>> {
    let mut b = Request::builder().method(method).uri(n.client.uri(path));
    for (k, v) in headers {
        b = b.header(k, v);
    }
    b.body(body.map_or_else(body::empty, body::full)).ok()
}

fn auth_headers(req: &Request<Body>) -> HeaderMap {
    let mut h = HeaderMap::new();
    for name in ["x-registry-auth", "x-registry-config", "content-type"] {
        if let Some(v) = req.headers().get(name) {
            h.insert(name, v.clone());
        }
    }
    h
}

/// `POST /images/create`: a pull (or an import) on every healthy engine, progress merged.
pub async fn create(state: &ApiState, ctx: &Ctx, req: Request<Body>) -> Result<Response<Body>, ApiError> {
    if ctx.query.get("fromImage").is_none() && ctx.query.get("fromSrc").is_none() {
        // Neither a pull nor an import: one engine gives its own answer.
        return super::system::any_engine(state, ctx, req, "/images/create").await;
    }
    let nodes = healthy(state)?;
    let headers = auth_headers(&req);
    let upload = if ctx.query.get("fromSrc") == Some("-") {
        Some(state.uploads.collect(req.into_body(), state.config.limits.max_upload_bytes).await.map_err(upload_error)?)
    } else {
        None
    };
    Ok(stream_all(state, nodes, Merge::PrefixNode, |n| {
        request(
            n,
            Method::POST,
            &ctx.engine_path_same_query(n.api_version.as_deref(), "/images/create"),
            &headers,
            upload.clone(),
        )
    }))
}

fn upload_error(e: crate::body::CollectError) -> ApiError {
    match e {
        crate::body::CollectError::TooLarge { limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("upload is larger than the limit of {limit} bytes (--api-max-upload-bytes)"),
        ),
        other => other.into(),
    }
}

/// `POST /images/load`: the archive is sent to every healthy engine.
pub async fn load(state: &ApiState, ctx: &Ctx, req: Request<Body>) -> Result<Response<Body>, ApiError> {
    let nodes = healthy(state)?;
    let headers = auth_headers(&req);
    let archive =
        state.uploads.collect(req.into_body(), state.config.limits.max_upload_bytes).await.map_err(upload_error)?;
    Ok(stream_all(state, nodes, Merge::Dedupe, |n| {
        request(
            n,
            Method::POST,
            &ctx.engine_path_same_query(n.api_version.as_deref(), "/images/load"),
            &headers,
            Some(archive.clone()),
        )
    }))
}

/// Healthy nodes that hold `name` in the cache first, then the rest.
fn holders_first(state: &ApiState, name: &str) -> Vec<NodeHandle> {
    let holders: Vec<String> = state.cluster.with_nodes(|nodes| {
        nodes
            .values()
            .filter(|n| {
                n.images.iter().any(|i| {
                    i.id == name
                        || i.id.trim_start_matches("sha256:").starts_with(name)
                        || i.repo_tags.iter().any(|t| t == name || t.strip_suffix(":latest") == Some(name))
                })
            })
            .map(|n| n.addr.clone())
            .collect()
    });
    let mut nodes = state.cluster.healthy_nodes();
    nodes.sort_by_key(|n| !holders.contains(&n.key));
    nodes
}

fn image_path(name: &str, action: Option<&str>) -> String {
    let encoded: Vec<String> = name.split('/').map(encode_segment).collect();
    match action {
        Some(a) => format!("/images/{}/{a}", encoded.join("/")),
        None => format!("/images/{}", encoded.join("/")),
    }
}

/// Streams the first successful answer among `nodes` (reads that any holder can serve).
async fn from_first_holder(
    state: &ApiState,
    ctx: &Ctx,
    nodes: &[NodeHandle],
    path: &str,
    missing: String,
) -> Result<Response<Body>, ApiError> {
    let mut last = None;
    for n in nodes {
        let Some(req) = request(
            n,
            Method::GET,
            &ctx.engine_path_same_query(n.api_version.as_deref(), path),
            &HeaderMap::new(),
            None,
        ) else {
            continue;
        };
        match n.client.send(req).await {
            Ok(resp) if resp.status().is_success() => {
                state.metrics.proxied.with_label_values(&["engine"]).inc();
                return Ok(proxy::streamed(resp));
            }
            // The engine's own words, for a name no engine has.
            Ok(resp) => {
                let status = resp.status();
                let bytes = crate::body::collect_limited(resp.into_body(), state.config.limits.max_body_bytes)
                    .await
                    .unwrap_or_default();
                if status != StatusCode::NOT_FOUND || last.is_none() {
                    last = Some(ApiError::new(status, crate::transport::error_message(&bytes)));
                }
            }
            Err(e) => last = Some(e.into()),
        }
    }
    Err(last.unwrap_or_else(|| ApiError::not_found(missing)))
}

/// Every `/images/{name}/…` route; names may hold slashes.
pub async fn by_name(state: &ApiState, ctx: &Ctx, req: Request<Body>) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    let segs = &ctx.segs[1..];
    let (name, action) = match (segs.last().map(String::as_str), &method) {
        (Some(a @ ("json" | "history" | "get")), &Method::GET) if segs.len() > 1 => {
            (segs[..segs.len() - 1].join("/"), Some(a))
        }
        (Some(a @ ("tag" | "push")), &Method::POST) if segs.len() > 1 => (segs[..segs.len() - 1].join("/"), Some(a)),
        (_, &Method::DELETE) => (segs.join("/"), None),
        _ => return Err(ApiError::not_found("page not found")),
    };
    let nodes = holders_first(state, &name);
    if nodes.is_empty() {
        return Err(ApiError::internal("No healthy node available in the cluster"));
    }
    let path = image_path(&name, action);
    match action {
        Some("json" | "history" | "get") => {
            from_first_holder(state, ctx, &nodes, &path, format!("No such image: {name}")).await
        }
        Some("push") => {
            let n = &nodes[0];
            proxy::forward(state, &n.client, req, &ctx.engine_path_same_query(n.api_version.as_deref(), &path)).await
        }
        _ => {
            // Tag and remove act on every engine that has the image.
            let answers = call_all(
                &nodes,
                method.clone(),
                |n| ctx.engine_path_same_query(n.api_version.as_deref(), &path),
                None,
                &HeaderMap::new(),
                &state.config.limits,
            )
            .await;
            let ok: Vec<&Bytes> = answers
                .iter()
                .filter_map(|a| a.as_ref().ok())
                .filter(|(s, _)| s.is_success())
                .map(|(_, b)| b)
                .collect();
            if ok.is_empty() {
                return Err(fanout::first_error(&answers));
            }
            for n in &nodes {
                let _ = state.cluster.refresh_images(&n.key).await;
            }
            if method == Method::DELETE {
                let merged: Vec<Value> =
                    ok.iter().filter_map(|b| serde_json::from_slice::<Vec<Value>>(b).ok()).flatten().collect();
                Ok(json_response(StatusCode::OK, &Value::Array(merged)))
            } else {
                Ok(Response::builder()
                    .status(StatusCode::CREATED)
                    .body(body::empty())
                    .unwrap_or_else(|_| Response::new(body::empty())))
            }
        }
    }
}

/// `GET /images/get?names=…`: a save from one engine holding them.
pub async fn save_many(state: &ApiState, ctx: &Ctx, _req: Request<Body>) -> Result<Response<Body>, ApiError> {
    let names: Vec<&str> = ctx.query.pairs().iter().filter(|(k, _)| k == "names").map(|(_, v)| v.as_str()).collect();
    let nodes = holders_first(state, names.first().copied().unwrap_or_default());
    from_first_holder(
        state,
        ctx,
        &nodes,
        "/images/get",
        format!("Unable to find a healthy engine containing all images: {names:?}"),
    )
    .await
}

/// `POST /build`: scheduled like a container (`--build-arg constraint:…` counts), then the
/// context streams to that engine.
pub async fn build(state: &ApiState, ctx: &Ctx, req: Request<Body>) -> Result<Response<Body>, ApiError> {
    let mut env: Vec<Value> = Vec::new();
    if let Some(args) =
        ctx.query.get("buildargs").and_then(|a| serde_json::from_str::<serde_json::Map<String, Value>>(a).ok())
    {
        for (k, v) in args {
            env.push(json!(format!("{k}={}", v.as_str().unwrap_or_default())));
        }
    }
    let mut config = serde_json::Map::new();
    config.insert("Env".into(), Value::Array(env));
    let mut hc = serde_json::Map::new();
    if let Some(m) = ctx.query.get("memory").and_then(|m| m.parse::<i64>().ok()) {
        hc.insert("Memory".into(), json!(m));
    }
    if let Some(c) = ctx.query.get("cpushares").and_then(|c| c.parse::<i64>().ok()) {
        hc.insert("CpuShares".into(), json!(c));
    }
    config.insert("HostConfig".into(), Value::Object(hc));
    let spec: ContainerSpec = crate::orchestrator::build_spec(&mut config)?;
    let node = state.orchestrator.place(&spec)?;
    let resp =
        proxy::forward(state, &node.client, req, &ctx.engine_path_same_query(node.api_version.as_deref(), "/build"))
            .await?;
    Ok(resp)
}

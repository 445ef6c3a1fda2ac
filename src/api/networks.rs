//! Networks: local ones are per node and shown as `node/name`; global ones once.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::error::ApiError;
use super::fanout::{call_all, first_error, healthy};
use super::images::nodes_for;
use super::router::{encode_segment, Ctx};
use super::system::json_response;
use super::ApiState;
use crate::body;
use crate::body::Body;
use crate::cluster::NodeHandle;

/// `GET /networks`.
pub async fn list(state: &ApiState, ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let (query, names) = super::images::split_node_filter(ctx)?;
    let nodes = nodes_for(state, &names);
    let answers = super::images::list_on(state, ctx, &nodes, "/networks", &query).await;
    let mut out: Vec<Value> = Vec::new();
    for (n, a) in nodes.iter().zip(&answers) {
        let Ok((s, bytes)) = a else { continue };
        if !s.is_success() {
            return Err(first_error(&answers));
        }
        for mut net in serde_json::from_slice::<Vec<Value>>(bytes).unwrap_or_default() {
            if net["Scope"] == "local" {
                net["Name"] = json!(format!("{}/{}", n.name, net["Name"].as_str().unwrap_or_default()));
                out.push(net);
            } else if !out.iter().any(|o| o["Id"] == net["Id"]) {
                out.push(net);
            }
        }
    }
    Ok(json_response(StatusCode::OK, &Value::Array(out)))
}

/// Splits `node/name` into the node and the name; a plain name means every node.
fn target<'a>(state: &ApiState, segs: &'a [String]) -> (Option<NodeHandle>, &'a str, &'a [String]) {
    if segs.len() >= 2 {
        if let Some(n) = state.cluster.node_by_name(&segs[0]) {
            return (Some(n), segs[1].as_str(), &segs[2..]);
        }
    }
    (None, segs[0].as_str(), &segs[1..])
}

/// `POST /networks/create`: on `node/name`'s node, or on every healthy node.
pub async fn create(state: &ApiState, ctx: &Ctx, req: Request<Body>) -> Result<Response<Body>, ApiError> {
    ApiState::check_json_content_type(req.headers())?;
    let raw = state.read_body(req.into_body()).await?;
    let mut config: Value =
        serde_json::from_slice(&raw).map_err(|e| ApiError::bad_request(super::error::go_json_error(&e)))?;
    let name = config["Name"].as_str().unwrap_or_default().to_string();
    let nodes = match name.split_once('/') {
        Some((node, short)) => {
            let n =
                state.cluster.node_by_name(node).ok_or_else(|| ApiError::not_found(format!("No such node: {node}")))?;
            config["Name"] = json!(short);
            vec![n]
        }
        None => healthy(state)?,
    };
    let payload = Bytes::from(config.to_string());
    let answers = call_all(
        &nodes,
        Method::POST,
        |n| ctx.engine_path_same_query(n.api_version.as_deref(), "/networks/create"),
        Some(payload),
        &HeaderMap::new(),
        &state.config.limits,
    )
    .await;
    if answers.iter().any(|a| !matches!(a, Ok((s, _)) if s.is_success())) {
        return Err(first_error(&answers));
    }
    let first = answers.iter().find_map(|a| a.as_ref().ok()).map(|(_, b)| b.clone()).unwrap_or_default();
    Ok(Response::builder()
        .status(StatusCode::CREATED)
        .header("content-type", "application/json")
        .body(body::full(first))
        .unwrap_or_else(|_| Response::new(body::empty())))
}

/// `/networks/{id}` routes: inspect, remove, connect, disconnect.
pub async fn by_id(state: &ApiState, ctx: &Ctx, req: Request<Body>) -> Result<Response<Body>, ApiError> {
    let (node, name, rest) = target(state, &ctx.segs[1..]);
    let method = req.method().clone();
    let action = rest.first().map(String::as_str);
    let mut path = format!("/networks/{}", encode_segment(name));
    if let Some(a) = action {
        path.push('/');
        path.push_str(a);
    }
    match (&method, action) {
        (&Method::POST, Some("connect" | "disconnect")) => {
            ApiState::check_json_content_type(req.headers())?;
            let raw = state.read_body(req.into_body()).await?;
            let mut config: Value =
                serde_json::from_slice(&raw).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
            let ident = config["Container"].as_str().unwrap_or_default().to_string();
            let c = super::containers::find_checked(state, &ident).await?;
            config["Container"] = json!(c.id);
            let n = state.cluster.node(&c.node).ok_or_else(|| ApiError::internal("node left the cluster"))?;
            let answers = call_all(
                &[n],
                Method::POST,
                |n| ctx.engine_path_same_query(n.api_version.as_deref(), &path),
                Some(Bytes::from(config.to_string())),
                &HeaderMap::new(),
                &state.config.limits,
            )
            .await;
            match &answers[0] {
                Ok((s, _)) if s.is_success() => {
                    state.cluster.refresh_container(&c.node, &c.id).await;
                    Ok(Response::builder()
                        .status(*s)
                        .body(body::empty())
                        .unwrap_or_else(|_| Response::new(body::empty())))
                }
                _ => Err(first_error(&answers)),
            }
        }
        (&Method::GET | &Method::DELETE, None) => {
            let nodes = match node {
                Some(n) => vec![n],
                None => healthy(state)?,
            };
            let answers = call_all(
                &nodes,
                method.clone(),
                |n| ctx.engine_path_same_query(n.api_version.as_deref(), &path),
                None,
                &HeaderMap::new(),
                &state.config.limits,
            )
            .await;
            let found: Vec<(&NodeHandle, &Bytes, StatusCode)> = nodes
                .iter()
                .zip(&answers)
                .filter_map(|(n, a)| a.as_ref().ok().filter(|(s, _)| s.is_success()).map(|(s, b)| (n, b, *s)))
                .collect();
            if found.is_empty() {
                // Missing everywhere: the engines' own answer.
                return Err(first_error(&answers));
            }
            if method == Method::DELETE {
                return Ok(Response::builder()
                    .status(StatusCode::NO_CONTENT)
                    .body(body::empty())
                    .unwrap_or_else(|_| Response::new(body::empty())));
            }
            // A local network made on every node (`docker network create x`, compose) answers
            // with the first node's copy, so that clients that inspect before create see it.
            let doc: Value = serde_json::from_slice(found[0].1)
                .map_err(|e| ApiError::internal(format!("engine sent invalid JSON: {e}")))?;
            Ok(json_response(StatusCode::OK, &doc))
        }
        _ => Err(ApiError::not_found("page not found")),
    }
}

//! Volumes: `local` ones shown as `node/name`; created on every node or on `node/name`'s.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::error::ApiError;
use super::fanout::{call_all, first_error, healthy};
use super::images::nodes_for;
use super::router::{encode_segment, Ctx};
use super::system::json_response;
use super::ApiState;
use crate::body::{self, Body};
use crate::cluster::NodeHandle;

/// `GET /volumes`.
pub async fn list(state: &ApiState, ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let (query, names) = super::images::split_node_filter(ctx)
        .map_err(|e| ApiError::bad_request(format!("error reading volume filters: {}", e.message)))?;
    let nodes = nodes_for(state, &names);
    let answers = super::images::list_on(state, ctx, &nodes, "/volumes", &query).await;
    let mut volumes: Vec<Value> = Vec::new();
    let mut warnings: Vec<Value> = Vec::new();
    for (n, a) in nodes.iter().zip(&answers) {
        let Ok((s, bytes)) = a else { continue };
        if !s.is_success() {
            return Err(first_error(&answers));
        }
        let doc: Value = serde_json::from_slice(bytes).unwrap_or_default();
        for mut v in doc["Volumes"].as_array().cloned().unwrap_or_default() {
            if v["Driver"] == "local" {
                v["Name"] = json!(format!("{}/{}", n.name, v["Name"].as_str().unwrap_or_default()));
                volumes.push(v);
            } else if !volumes.iter().any(|o| o["Name"] == v["Name"]) {
                volumes.push(v);
            }
        }
        warnings.extend(doc["Warnings"].as_array().cloned().unwrap_or_default());
    }
    let warnings = if warnings.is_empty() { Value::Null } else { Value::Array(warnings) };
    Ok(json_response(StatusCode::OK, &json!({"Volumes": volumes, "Warnings": warnings})))
}

fn split(state: &ApiState, name: &str) -> Result<(Option<NodeHandle>, String), ApiError> {
    match name.split_once('/') {
        Some((node, short)) if state.cluster.node_by_name(node).is_some() => {
            Ok((state.cluster.node_by_name(node), short.to_string()))
        }
        // Not a node: the engines judge the name.
        _ => Ok((None, name.to_string())),
    }
}

/// `POST /volumes/create`.
pub async fn create(state: &ApiState, ctx: &Ctx, req: Request<Body>) -> Result<Response<Body>, ApiError> {
    ApiState::check_json_content_type(req.headers())?;
    let raw = state.read_body(req.into_body()).await?;
    let mut config: Value = if raw.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&raw).map_err(|e| ApiError::bad_request(super::error::go_json_error(&e)))?
    };
    let (node, short) = split(state, config["Name"].as_str().unwrap_or_default())?;
    let nodes = match node {
        Some(n) => {
            config["Name"] = json!(short);
            vec![n]
        }
        None => healthy(state)?,
    };
    let payload = Bytes::from(config.to_string());
    let answers = call_all(
        &nodes,
        Method::POST,
        |n| ctx.engine_path_same_query(n.api_version.as_deref(), "/volumes/create"),
        Some(payload),
        &HeaderMap::new(),
        &state.config.limits,
    )
    .await;
    if answers.iter().any(|a| !matches!(a, Ok((s, _)) if s.is_success())) {
        return Err(first_error(&answers));
    }
    let mut doc: Value = answers
        .iter()
        .find_map(|a| a.as_ref().ok())
        .and_then(|(_, b)| serde_json::from_slice(b).ok())
        .unwrap_or_default();
    if nodes.len() == 1 && doc["Driver"] == "local" {
        doc["Name"] = json!(format!("{}/{}", nodes[0].name, doc["Name"].as_str().unwrap_or_default()));
    }
    Ok(json_response(StatusCode::CREATED, &doc))
}

/// `GET` and `DELETE /volumes/{name}`.
pub async fn by_name(state: &ApiState, ctx: &Ctx, req: Request<Body>) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    if method != Method::GET && method != Method::DELETE {
        return Err(ApiError::not_found("page not found"));
    }
    let (node, name) = split(state, &ctx.segs[1..].join("/"))?;
    let nodes = match node {
        Some(n) => vec![n],
        None => healthy(state)?,
    };
    let path = format!("/volumes/{}", encode_segment(&name));
    let answers = call_all(
        &nodes,
        method.clone(),
        |n| ctx.engine_path_same_query(n.api_version.as_deref(), &path),
        None,
        &HeaderMap::new(),
        &state.config.limits,
    )
    .await;
    let found: Vec<(&NodeHandle, &Bytes)> = nodes
        .iter()
        .zip(&answers)
        .filter_map(|(n, a)| a.as_ref().ok().filter(|(s, _)| s.is_success()).map(|(_, b)| (n, b)))
        .collect();
    if found.is_empty() {
        let all_missing = answers.iter().all(|a| matches!(a, Ok((s, _)) if *s == StatusCode::NOT_FOUND));
        return Err(if all_missing {
            ApiError::not_found(format!("get {name}: no such volume"))
        } else {
            first_error(&answers)
        });
    }
    if method == Method::DELETE {
        if let Some(err) =
            answers.iter().find(|a| matches!(a, Ok((s, _)) if !s.is_success() && *s != StatusCode::NOT_FOUND))
        {
            return Err(first_error(std::slice::from_ref(err)));
        }
        return Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(body::empty())
            .unwrap_or_else(|_| Response::new(body::empty())));
    }
    let (n, bytes) = found[0];
    let mut doc: Value = serde_json::from_slice(bytes).unwrap_or_default();
    if doc["Driver"] == "local" {
        doc["Name"] = json!(format!("{}/{}", n.name, doc["Name"].as_str().unwrap_or_default()));
    }
    Ok(json_response(StatusCode::OK, &doc))
}

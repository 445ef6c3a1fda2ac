//! One request to many engines: concurrent calls, merged JSON answers, and merged progress
//! streams.

use std::collections::HashSet;

use bytes::Bytes;
use futures_util::future::join_all;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::error::ApiError;
use super::router::Ctx;
use super::system::json_response;
use super::ApiState;
use crate::body::{self, Body};
use crate::cluster::NodeHandle;
use crate::config::Limits;
use crate::transport::EngineError;

/// One engine's whole answer.
pub type Answer = Result<(StatusCode, Bytes), EngineError>;

/// Calls every node concurrently; `path_for` builds each node's path (its API version may
/// differ). Each engine's whole answer is bounded in time by `--engine-fanout-timeout`, and
/// all the answers together in size by `--engine-fanout-max-bytes`.
pub async fn call_all(
    nodes: &[NodeHandle],
    method: Method,
    path_for: impl Fn(&NodeHandle) -> String,
    body: Option<Bytes>,
    headers: &HeaderMap,
    limits: &Limits,
) -> Vec<Answer> {
    let budget = body::Budget::new(limits.fanout_max_bytes);
    let budget = &budget;
    join_all(nodes.iter().map(|n| {
        let (method, path, body) = (method.clone(), path_for(n), body.clone());
        async move {
            n.client
                .call_within(method, &path, body, headers, Some(limits.fanout_timeout), Some(budget))
                .await
                .map(|(s, _, b)| (s, b))
        }
    }))
    .await
}

/// The healthy nodes, or the classic error when there are none.
pub fn healthy(state: &ApiState) -> Result<Vec<NodeHandle>, ApiError> {
    let nodes = state.cluster.healthy_nodes();
    if nodes.is_empty() {
        return Err(ApiError::internal("No healthy node available in the cluster"));
    }
    Ok(nodes)
}

/// The first error among answers, as the client should see it.
pub fn first_error(answers: &[Answer]) -> ApiError {
    for a in answers {
        match a {
            Ok((status, bytes)) if !status.is_success() => {
                return ApiError::new(*status, crate::transport::error_message(bytes));
            }
            Err(e) => return ApiError::internal(crate::cluster::error_chain(e)),
            _ => {}
        }
    }
    ApiError::internal("no engine answered")
}

/// Merges JSON objects: arrays concatenated, numbers summed (prune reports).
pub fn merge_objects(values: impl IntoIterator<Item = Value>) -> Value {
    let mut out = serde_json::Map::new();
    for v in values {
        let Value::Object(m) = v else { continue };
        for (k, v) in m {
            match (out.get_mut(&k), v) {
                (Some(Value::Array(a)), Value::Array(b)) => a.extend(b),
                (Some(Value::Number(a)), Value::Number(b)) => {
                    *a = serde_json::Number::from(a.as_u64().unwrap_or(0) + b.as_u64().unwrap_or(0));
                }
                (Some(Value::Null), v) | (None, v) => {
                    out.insert(k, v);
                }
                _ => {}
            }
        }
    }
    Value::Object(out)
}

/// `POST /…/prune` on every healthy engine, reports merged.
pub async fn prune(state: &ApiState, ctx: &Ctx, path: &str) -> Result<Response<Body>, ApiError> {
    let nodes = healthy(state)?;
    let answers = call_all(
        &nodes,
        Method::POST,
        |n| ctx.engine_path_same_query(n.api_version.as_deref(), path),
        None,
        &HeaderMap::new(),
        &state.config.limits,
    )
    .await;
    let ok: Vec<Value> = answers
        .iter()
        .filter_map(|a| a.as_ref().ok())
        .filter(|(s, _)| s.is_success())
        .filter_map(|(_, b)| serde_json::from_slice(b).ok())
        .collect();
    if ok.is_empty() {
        return Err(first_error(&answers));
    }
    for n in &nodes {
        let _ = state.cluster.refresh_node(&n.key).await;
    }
    Ok(json_response(StatusCode::OK, &merge_objects(ok)))
}

/// How per-node progress lines are presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Every message names its node in `id` (pull, import), as classic Swarm did.
    PrefixNode,
    /// Messages pass unchanged, identical ones once (load: docker-py parses `Loaded image:`).
    Dedupe,
}

/// Sends `req_for(node)` to every node and streams their JSON-lines answers as one chunked
/// response. A node that fails is named; if any failed, the stream ends with an error message,
/// which makes the CLI exit non-zero.
pub fn stream_all(
    state: &ApiState,
    nodes: Vec<NodeHandle>,
    merge: Merge,
    req_for: impl Fn(&NodeHandle) -> Option<Request<Body>>,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let (line_tx, mut line_rx) = mpsc::channel::<(String, Result<Value, String>)>(256);
    for n in nodes {
        let Some(req) = req_for(&n) else { continue };
        let line_tx = line_tx.clone();
        let cluster = state.cluster.clone();
        tokio::spawn(async move {
            let name = n.name.clone();
            let outcome = read_lines(&n, req, &line_tx).await;
            if outcome.is_ok() {
                let _ = cluster.refresh_images(&n.key).await;
            }
            let _ = line_tx.send((name, outcome.map(|()| Value::Null))).await;
        });
    }
    drop(line_tx);
    tokio::spawn(async move {
        let mut seen = HashSet::new();
        let mut failures: Vec<String> = Vec::new();
        while let Some((node, item)) = line_rx.recv().await {
            let out = match item {
                // The end of one node's stream.
                Ok(Value::Null) => continue,
                Err(e) => {
                    failures.push(format!("{node}: {e}"));
                    json!({"status": format!("{node}: {e}")})
                }
                Ok(mut m) => {
                    if let Some(err) = m.get("error").and_then(Value::as_str) {
                        failures.push(format!("{node}: {err}"));
                        json!({"status": format!("{node}: {err}")})
                    } else if merge == Merge::PrefixNode {
                        let id = m.get("id").and_then(Value::as_str).map_or(node.clone(), |id| format!("{node}: {id}"));
                        m["id"] = json!(id);
                        m
                    } else {
                        m
                    }
                }
            };
            let line = out.to_string();
            if merge == Merge::Dedupe && !seen.insert(line.clone()) {
                continue;
            }
            if tx.send(Bytes::from(line + "\r\n")).await.is_err() {
                return;
            }
        }
        if !failures.is_empty() {
            let msg = failures.join("; ");
            let _ =
                tx.send(Bytes::from(json!({"errorDetail": {"message": msg}, "error": msg}).to_string() + "\r\n")).await;
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(body::channel(rx))
        .unwrap_or_else(|_| Response::new(body::empty()))
}

/// Reads one engine's JSON-lines answer into `out`; Err if the engine refused or failed.
async fn read_lines(
    n: &NodeHandle,
    req: Request<Body>,
    out: &mpsc::Sender<(String, Result<Value, String>)>,
) -> Result<(), String> {
    let resp = n.client.send(req).await.map_err(|e| crate::cluster::error_chain(&e))?;
    let status = resp.status();
    let mut incoming = resp.into_body();
    let mut lines = body::Lines::new(body::MAX_ENGINE_LINE_BYTES);
    let mut complete = Vec::new();
    let send_line = |line: &[u8]| -> Option<Value> {
        let trimmed = line.trim_ascii();
        (!trimmed.is_empty()).then(|| {
            serde_json::from_slice(trimmed).unwrap_or_else(|_| json!({"stream": String::from_utf8_lossy(trimmed)}))
        })
    };
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            let overlong = lines.push(&data, &mut complete);
            for line in complete.drain(..) {
                if let Some(v) = send_line(&line) {
                    if !status.is_success() {
                        return Err(v
                            .get("message")
                            .and_then(Value::as_str)
                            .map_or_else(|| v.to_string(), str::to_string));
                    }
                    let _ = out.send((n.name.clone(), Ok(v))).await;
                }
            }
            overlong.map_err(|e| e.to_string())?;
        }
    }
    if let Some(v) = send_line(&lines.rest()) {
        if !status.is_success() {
            return Err(v.get("message").and_then(Value::as_str).map_or_else(|| v.to_string(), str::to_string));
        }
        let _ = out.send((n.name.clone(), Ok(v))).await;
    }
    if !status.is_success() {
        return Err(format!("engine answered {status}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_reports_merge() {
        let merged = merge_objects([
            json!({"ContainersDeleted": ["a"], "SpaceReclaimed": 10}),
            json!({"ContainersDeleted": ["b"], "SpaceReclaimed": 5}),
            json!({"ContainersDeleted": null, "SpaceReclaimed": 0}),
        ]);
        assert_eq!(merged, json!({"ContainersDeleted": ["a", "b"], "SpaceReclaimed": 15}));
    }
}

//! `GET /containers/{id}/json`: the engine's answer with swarm's `Node` object added. The object
//! is spliced into the engine's bytes: decoding and re-encoding the whole document cost more
//! than the engine took to produce it.

use bytes::Bytes;
use http::{header, HeaderMap, Method, Response, StatusCode};
use serde_json::{json, Value};

use super::super::error::ApiError;
use super::super::ApiState;
use crate::body::{self, Body};
use crate::cluster::ContainerRef;

pub(super) async fn inspect(state: &ApiState, c: &ContainerRef, target: &str) -> Result<Response<Body>, ApiError> {
    let (status, _, bytes) =
        c.client.call(Method::GET, target, None, &HeaderMap::new(), Some(c.client.timeout())).await?;
    if !status.is_success() {
        return Err(ApiError::new(status, crate::transport::error_message(&bytes)));
    }
    let node = state.cluster.with_nodes(|nodes| {
        nodes.get(&c.node).map(|n| {
            let (cpus, mem) = n.info.as_ref().map_or((0, 0), |i| (i.ncpu, i.mem_total));
            let labels: serde_json::Map<String, Value> =
                n.info.iter().flat_map(|i| i.labels.iter()).map(|(k, v)| (k.to_string(), json!(&**v))).collect();
            json!({"ID": n.engine_id(), "IP": n.client.addr().host(), "Addr": n.addr, "Name": n.name(), "Cpus": cpus, "Memory": mem, "Labels": labels})
        })
    });
    let document = match node {
        Some(node) => with_member(&bytes, "Node", &node)
            .ok_or_else(|| ApiError::internal("the engine's answer is not a JSON object"))?,
        None => bytes,
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body::full(document))
        .unwrap_or_else(|_| Response::new(body::empty())))
}

/// `document` (a JSON object, as the engine encoded it) with `"key": value` added last; `None`
/// when `document` is not an object.
fn with_member(document: &[u8], key: &str, value: &Value) -> Option<Bytes> {
    let first = document.iter().position(|b| !b.is_ascii_whitespace())?;
    let last = document.iter().rposition(|b| !b.is_ascii_whitespace())?;
    if first >= last || document[first] != b'{' || document[last] != b'}' {
        return None;
    }
    let empty = document[first + 1..last].iter().all(u8::is_ascii_whitespace);
    let mut out = Vec::with_capacity(document.len() + 512);
    out.extend_from_slice(&document[..last]);
    if !empty {
        out.push(b',');
    }
    serde_json::to_writer(&mut out, key).ok()?;
    out.push(b':');
    serde_json::to_writer(&mut out, value).ok()?;
    out.extend_from_slice(&document[last..]);
    Some(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_member_is_added_last_and_the_rest_is_kept_byte_for_byte() {
        let engine = b"{\"Id\":\"abc\",\"Config\":{\"Env\":[\"A=\\\"b\\\"\"]}}\n";
        let out = with_member(engine, "Node", &json!({"Name": "node-1"})).unwrap();
        assert_eq!(
            &out[..],
            &b"{\"Id\":\"abc\",\"Config\":{\"Env\":[\"A=\\\"b\\\"\"]},\"Node\":{\"Name\":\"node-1\"}}\n"[..]
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["Node"]["Name"], "node-1");
        assert_eq!(v["Config"]["Env"][0], "A=\"b\"");
    }

    #[test]
    fn empty_objects_and_non_objects() {
        assert_eq!(&with_member(b" { } ", "Node", &json!(1)).unwrap()[..], b" { \"Node\":1} ");
        assert!(with_member(b"[1]", "Node", &json!(1)).is_none());
        assert!(with_member(b"", "Node", &json!(1)).is_none());
        assert!(with_member(b"{", "Node", &json!(1)).is_none());
        assert!(with_member(b"\"{}\"", "Node", &json!(1)).is_none());
    }
}

//! Services managers offer one another and `swarm join`, under `/_swarm/`: the node registry
//! behind `swarm://` discovery (kept in the replicated store with a TTL) and Raft membership.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use openraft::BasicNode;
use serde_json::json;

use super::error::ApiError;
use super::router::Ctx;
use super::system::json_response;
use super::ApiState;
use crate::body::{self, Body};
use crate::discovery::managers::NODES_PREFIX;
use crate::store::StoreError;

/// Longest registration TTL accepted.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NotLeader => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "No elected primary cluster manager"),
        other => ApiError::internal(other.to_string()),
    }
}

/// `/_swarm/nodes[/<addr>]` and `/_swarm/members[/<addr>]`.
pub async fn handle(state: &ApiState, ctx: &Ctx, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let segs: Vec<&str> = ctx.segs.iter().map(String::as_str).collect();
    match (req.method(), &segs[1..]) {
        (&Method::GET, ["nodes"]) => {
            let entries = state.store.list(NODES_PREFIX.to_string()).await.map_err(store_error)?;
            let addrs: Vec<String> = entries.into_iter().map(|(k, _)| k[NODES_PREFIX.len()..].to_string()).collect();
            Ok(json_response(StatusCode::OK, &json!(addrs)))
        }
        (&Method::PUT, ["nodes", addr]) => {
            if !crate::config::validate_host_port(addr) {
                return Err(ApiError::bad_request(format!("invalid address {addr:?}: expected host:port")));
            }
            let ttl = ctx.query.get("ttl").and_then(|t| t.parse::<u64>().ok()).ok_or_else(|| ApiError::bad_request("ttl (seconds) is required"))?;
            let ttl = Duration::from_secs(ttl.max(1)).min(MAX_TTL);
            state.store.put(format!("{NODES_PREFIX}{addr}"), addr.as_bytes().to_vec(), Some(ttl)).await.map_err(store_error)?;
            Ok(Response::new(body::empty()))
        }
        (&Method::GET, ["members"]) => members(state),
        (&Method::POST, ["members", addr]) => change_members(state, addr, true).await,
        (&Method::DELETE, ["members", addr]) => change_members(state, addr, false).await,
        _ => Err(ApiError::not_found("page not found")),
    }
}

fn raft_node(state: &ApiState) -> Result<&crate::leadership::raft::RaftNode, ApiError> {
    state.raft.as_ref().ok_or_else(|| ApiError::bad_request("this manager does not run embedded Raft (--replication-peers)"))
}

fn members(state: &ApiState) -> Result<Response<Body>, ApiError> {
    let metrics = raft_node(state)?.raft().metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let leader = metrics.current_leader;
    let list: Vec<_> = membership
        .nodes()
        .map(|(id, n)| json!({"Addr": n.addr, "Voter": voters.contains(id), "Leader": leader == Some(*id)}))
        .collect();
    Ok(json_response(StatusCode::OK, &json!(list)))
}

/// Adds a manager (as a learner that catches up, then a voter) or removes one.
async fn change_members(state: &ApiState, addr: &str, add: bool) -> Result<Response<Body>, ApiError> {
    if !crate::config::validate_host_port(addr) {
        return Err(ApiError::bad_request(format!("invalid address {addr:?}: expected host:port")));
    }
    let raft = raft_node(state)?.raft();
    let id = crate::leadership::raft::node_id(addr);
    let fail = |e: String| ApiError::internal(format!("membership change failed: {e}"));
    let mut voters: BTreeSet<u64> = raft.metrics().borrow().membership_config.membership().voter_ids().collect();
    if add {
        raft.add_learner(id, BasicNode { addr: addr.to_string() }, true).await.map_err(|e| fail(e.to_string()))?;
        voters.insert(id);
    } else {
        if !voters.remove(&id) {
            return Err(ApiError::not_found(format!("{addr} is not a manager of this cluster")));
        }
        if voters.is_empty() {
            return Err(ApiError::bad_request("cannot remove the last manager"));
        }
    }
    raft.change_membership(voters, false).await.map_err(|e| fail(e.to_string()))?;
    let nodes: BTreeMap<u64, String> =
        raft.metrics().borrow().membership_config.membership().nodes().map(|(id, n)| (*id, n.addr.clone())).collect();
    Ok(json_response(StatusCode::OK, &json!(nodes.values().collect::<Vec<_>>())))
}

//! Services managers offer one another and `swarm join`, under `/_swarm/`: the node registry
//! behind `swarm://` discovery (kept in the replicated store with a TTL) and Raft membership.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use openraft::BasicNode;
use serde_json::json;

use super::{error, json as json_response, query_param, ControlPlane};
use crate::body::{self, Body};
use crate::discovery::managers::NODES_PREFIX;
use crate::store::StoreError;

/// An error's status and message, answered in Docker's shape.
struct Refusal(StatusCode, String);

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal(status, message.into())
    }
}

/// Longest registration TTL accepted.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// What a registration's entry holds: the TTL it was made with, which a new Raft leader
/// renews it for (see [`lease_of`]).
#[derive(serde::Serialize, serde::Deserialize)]
struct Registration {
    ttl_s: u64,
}

impl Registration {
    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A registration made before entries held their TTL (they held the address) is renewed for
/// the agents' default TTL.
const UNRECORDED_TTL: Duration = Duration::from_secs(180);

/// The lease a new leader renews a store entry for: a registration's TTL; nothing else.
pub fn lease_of(key: &str, value: &[u8]) -> Option<Duration> {
    key.starts_with(NODES_PREFIX)
        .then(|| serde_json::from_slice::<Registration>(value).map_or(UNRECORDED_TTL, |r| Duration::from_secs(r.ttl_s)))
}

fn store_error(e: StoreError) -> Refusal {
    match e {
        StoreError::NotLeader => Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "No elected primary cluster manager"),
        other => Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

/// `/_swarm/nodes[/<addr>]` and `/_swarm/members[/<addr>]`.
pub async fn handle(state: &ControlPlane, req: Request<Bytes>) -> Response<Body> {
    match serve(state, req).await {
        Ok(r) => r,
        Err(Refusal(status, message)) => error(status, message),
    }
}

async fn serve(state: &ControlPlane, req: Request<Bytes>) -> Result<Response<Body>, Refusal> {
    let segs: Vec<String> = req
        .uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (req.method(), &segs[1..]) {
        (&Method::GET, ["nodes"]) => {
            let entries = state.store.list(NODES_PREFIX.to_string()).await.map_err(store_error)?;
            let addrs: Vec<String> = entries.into_iter().map(|(k, _)| k[NODES_PREFIX.len()..].to_string()).collect();
            Ok(json_response(StatusCode::OK, &json!(addrs)))
        }
        (&Method::PUT, ["nodes", addr]) => {
            if !crate::config::validate_host_port(addr) {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    format!("invalid address {addr:?}: expected host:port"),
                ));
            }
            let ttl = query_param(&req, "ttl")
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| Refusal::new(StatusCode::BAD_REQUEST, "ttl (seconds) is required"))?;
            let ttl = Duration::from_secs(ttl.max(1)).min(MAX_TTL);
            if manager_addrs(state).iter().any(|m| m == addr) {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    format!("{addr} is a swarm manager, not a Docker engine: it cannot be registered"),
                ));
            }
            let key = format!("{NODES_PREFIX}{addr}");
            let entries = state.store.list(NODES_PREFIX.to_string()).await.map_err(store_error)?;
            state.registry_entries.set(i64::try_from(entries.len()).unwrap_or(i64::MAX));
            match entries.iter().find(|(k, _)| *k == key) {
                // Another registrant cannot cut a live entry short (an eviction); it lapses first.
                Some((_, held)) => {
                    if let Some(held_s) = lease_of(&key, held).map(|d| d.as_secs()).filter(|h| ttl.as_secs() < *h) {
                        return Err(Refusal::new(
                            StatusCode::CONFLICT,
                            format!("{addr} is registered with a TTL of {held_s}s: a shorter one is refused until that registration lapses"),
                        ));
                    }
                }
                None if entries.len() >= state.registry_max_entries => {
                    return Err(Refusal::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        format!("the registry holds {} engines (--registry-max-entries)", entries.len()),
                    ));
                }
                None => {}
            }
            state
                .store
                .put(key, Registration { ttl_s: ttl.as_secs() }.encode(), Some(ttl))
                .await
                .map_err(store_error)?;
            Ok(Response::new(body::empty()))
        }
        (&Method::GET, ["members"]) => members(state),
        (&Method::GET, ["members", "self"]) => member_status(state),
        // Served by the leader: its copy holds everything committed.
        (&Method::GET, ["snapshot"]) => {
            let backup = raft_node(state)?.backup().await.map_err(|e| {
                Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("no snapshot: this manager cannot confirm it leads ({e})"),
                )
            })?;
            Ok(Response::builder()
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body::full(backup.encode()))
                .unwrap_or_else(|_| Response::new(body::empty())))
        }
        (&Method::POST, ["members", addr]) => change_members(state, addr, true).await,
        (&Method::DELETE, ["members", addr]) => change_members(state, addr, false).await,
        _ => Err(Refusal::new(StatusCode::NOT_FOUND, "page not found")),
    }
}

/// The managers' own addresses: never an engine.
fn manager_addrs(state: &ControlPlane) -> Vec<String> {
    let mut addrs = vec![state.leadership.advertise().to_string()];
    if let Some(node) = &state.raft {
        let m = node.raft().metrics().borrow().membership_config.clone();
        addrs.extend(m.membership().nodes().map(|(_, n)| n.addr.clone()));
    }
    addrs
}

fn raft_node(state: &ControlPlane) -> Result<&crate::leadership::raft::RaftNode, Refusal> {
    state.raft.as_ref().ok_or_else(|| {
        Refusal::new(StatusCode::BAD_REQUEST, "this manager does not run embedded Raft (--replication-peers)")
    })
}

fn members(state: &ControlPlane) -> Result<Response<Body>, Refusal> {
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

/// `GET /_swarm/members/self`: this member's own view, its role as `docker info` gives it.
fn member_status(state: &ControlPlane) -> Result<Response<Body>, Refusal> {
    let status = raft_node(state)?.status();
    let leadership = &state.leadership;
    let role = if leadership.is_leader() {
        "primary"
    } else if status.voter {
        "replica"
    } else if status.member {
        "learner"
    } else {
        "removed"
    };
    let mut out = serde_json::to_value(&status).unwrap_or_default();
    out["Role"] = json!(role);
    out["Primary"] = json!(leadership.leader_addr());
    Ok(json_response(StatusCode::OK, &out))
}

/// Adds a manager (as a learner that catches up, then a voter) or removes one.
async fn change_members(state: &ControlPlane, addr: &str, add: bool) -> Result<Response<Body>, Refusal> {
    if !crate::config::validate_host_port(addr) {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, format!("invalid address {addr:?}: expected host:port")));
    }
    let raft = raft_node(state)?.raft();
    let id = crate::leadership::raft::node_id(addr);
    let fail = |e: String| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, format!("membership change failed: {e}"));
    let mut voters: BTreeSet<u64> = raft.metrics().borrow().membership_config.membership().voter_ids().collect();
    if add {
        raft.add_learner(id, BasicNode { addr: addr.to_string() }, true).await.map_err(|e| fail(e.to_string()))?;
        voters.insert(id);
    } else {
        if !voters.remove(&id) {
            return Err(Refusal::new(StatusCode::NOT_FOUND, format!("{addr} is not a manager of this cluster")));
        }
        if voters.is_empty() {
            return Err(Refusal::new(StatusCode::BAD_REQUEST, "cannot remove the last manager"));
        }
    }
    raft.change_membership(voters, false).await.map_err(|e| fail(e.to_string()))?;
    let nodes: BTreeMap<u64, String> =
        raft.metrics().borrow().membership_config.membership().nodes().map(|(id, n)| (*id, n.addr.clone())).collect();
    Ok(json_response(StatusCode::OK, &json!(nodes.values().collect::<Vec<_>>())))
}

//! The leader's repairs. Every manager remembers, from its own warm cache, which containers
//! ask to be rescheduled (`on-node-failure`) and where they were; whichever manager leads:
//!
//! - recreates those of a node that failed or left discovery on healthy nodes, through the
//!   normal create path (same name, configuration and swarm ID), and starts those that ran;
//! - removes a rescheduled container's stale copy when its node comes back;
//! - on taking over, finishes what the previous leader left: reschedules in progress (whose
//!   records fence the stale copies out of the cache) and creates in flight (kept if the
//!   engine has the container, otherwise removed from the engine they were sent to).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, Method};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::containers::{create_container, remove_by_swarm_id_until_gone, InFlight, CREATES_PREFIX};
use super::query::Query;
use super::router::Ctx;
use super::ApiState;
use crate::cluster::{labels, NodeState, PendingCreate};
use crate::scheduler::ContainerView;

/// How often the loop looks.
const TICK: Duration = Duration::from_millis(500);
/// Wait before retrying a reschedule that failed (no node fits, image missing, ...).
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// A reschedule record outlives a node that never comes back by this long.
const RECORD_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Where reschedules are recorded, by swarm ID.
pub const RESCHEDULES_PREFIX: &str = "reschedules/";

/// A container that asked to be rescheduled, as last seen on a healthy node.
#[derive(Clone)]
struct Candidate {
    node: String,
    id: String,
    swarm_id: String,
    name: Option<String>,
    body: Arc<Value>,
    running: bool,
}

/// A reschedule in the store: the copy it replaced.
#[derive(Debug, Serialize, Deserialize)]
struct Rescheduled {
    from: String,
    old_id: String,
}

/// What the cache says now.
struct View {
    /// Reschedulable containers per healthy node.
    healthy: HashMap<String, Vec<Candidate>>,
    /// Nodes that failed.
    failed: HashSet<String>,
    /// Every node present, whatever its state.
    present: HashSet<String>,
    /// Swarm IDs living on healthy nodes.
    live: HashSet<String>,
}

fn observe(state: &ApiState) -> View {
    state.cluster.with_nodes(|nodes| {
        let mut v = View { healthy: HashMap::new(), failed: HashSet::new(), present: HashSet::new(), live: HashSet::new() };
        for (key, n) in nodes {
            v.present.insert(key.clone());
            match n.health.state() {
                NodeState::Healthy => {
                    let mut cands = Vec::new();
                    for c in n.containers.values() {
                        if let Some(sid) = &c.swarm_id {
                            v.live.insert(sid.clone());
                            if let Some(body) = &c.facts.recreate {
                                cands.push(Candidate {
                                    node: key.clone(),
                                    id: c.id.clone(),
                                    swarm_id: sid.clone(),
                                    name: c.names.first().cloned(),
                                    body: body.clone(),
                                    running: c.state == "running" || c.state == "restarting",
                                });
                            }
                        }
                    }
                    v.healthy.insert(key.clone(), cands);
                }
                NodeState::Unhealthy | NodeState::Disconnected => {
                    v.failed.insert(key.clone());
                }
                NodeState::Pending => {}
            }
        }
        v
    })
}

/// Runs on every manager until `cancel`; acts only while leading.
pub async fn run(state: ApiState, cancel: CancellationToken) {
    let mut known: HashMap<String, Vec<Candidate>> = HashMap::new();
    let mut not_before: HashMap<String, Instant> = HashMap::new();
    let mut leading = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        let view = observe(&state);
        for (node, cands) in &view.healthy {
            known.insert(node.clone(), cands.clone());
        }
        if !state.leadership.is_leader() {
            leading = false;
            continue;
        }
        if !leading {
            leading = true;
            take_over(&state).await;
        }
        let gone: Vec<String> = known.keys().filter(|k| view.failed.contains(*k) || !view.present.contains(*k)).cloned().collect();
        let now = Instant::now();
        let due: Vec<Candidate> = gone
            .iter()
            .flat_map(|node| known[node].iter())
            .filter(|c| !view.live.contains(&c.swarm_id) && not_before.get(&c.swarm_id).is_none_or(|t| *t <= now))
            .cloned()
            .collect();
        if !due.is_empty() {
            let started = Instant::now();
            let results = futures_util::future::join_all(due.iter().map(|c| reschedule(&state, c))).await;
            let done = results.iter().filter(|r| r.is_ok()).count();
            info!(rescheduled = done, failed = due.len() - done, took = ?started.elapsed(), "Rescheduled containers of failed nodes.");
            state.metrics.rescheduled.inc_by(done as u64);
            for (c, r) in due.iter().zip(results) {
                if let Err(e) = r {
                    warn!(name = ?c.name, swarm_id = %c.swarm_id, error = %e, "Reschedule failed; retrying later.");
                    not_before.insert(c.swarm_id.clone(), now + RETRY_AFTER);
                }
            }
        }
        // A node gone for good, all of whose containers live elsewhere, needs no memory.
        known.retain(|node, cands| view.present.contains(node) || cands.iter().any(|c| !view.live.contains(&c.swarm_id)));
        remove_stale_copies(&state).await;
    }
}

/// Recreates `c` on a healthy node and starts it if it ran.
async fn reschedule(state: &ApiState, c: &Candidate) -> Result<(), String> {
    // Out of the cache first, so the name is free for the new copy and `ps` never shows two.
    state.cluster.supersede(&c.node, &c.id);
    let record = format!("{RESCHEDULES_PREFIX}{}", c.swarm_id);
    let value = serde_json::to_vec(&Rescheduled { from: c.node.clone(), old_id: c.id.clone() }).unwrap_or_default();
    if let Err(e) = state.store.put(record.clone(), value, Some(RECORD_TTL)).await {
        state.cluster.unsupersede(&c.id);
        return Err(format!("cannot record the reschedule: {e}"));
    }
    let body = c.body.as_object().cloned().unwrap_or_default();
    let ctx = Ctx { version: None, segs: Vec::new(), query: Query::default(), raw_query: None };
    let created = match create_container(state, &ctx, body, c.name.clone(), None).await {
        Ok(created) => created,
        Err(e) => {
            state.cluster.unsupersede(&c.id);
            let _ = state.store.delete(record).await;
            return Err(e.message);
        }
    };
    info!(name = ?c.name, from = %c.node, to = %created.node, "Container rescheduled.");
    if c.running {
        let handle = state.cluster.node(&created.node).ok_or("the new node left")?;
        let path = format!("/containers/{}/start", created.id);
        match handle.client.call(Method::POST, &path, None, &HeaderMap::new(), Some(handle.client.timeout())).await {
            Ok((s, _, _)) if s.is_success() => {
                state.cluster.patch_container(&created.node, &created.id, |cached| cached.set_state("running", "Up Less than a second"));
            }
            Ok((s, _, body)) => return Err(format!("recreated, but start answered {s}: {}", crate::cluster::engine::error_message(&body))),
            Err(e) => return Err(format!("recreated, but start failed: {e}")),
        }
    }
    Ok(())
}

/// Removes the copies that reschedules replaced, once their nodes answer again.
async fn remove_stale_copies(state: &ApiState) {
    let Ok(records) = state.store.list(RESCHEDULES_PREFIX.to_string()).await else { return };
    for (key, value) in records {
        let Ok(r) = serde_json::from_slice::<Rescheduled>(&value) else { continue };
        let Some(handle) = state.cluster.node(&r.from).filter(|h| h.state == NodeState::Healthy) else { continue };
        let path = format!("/containers/{}?force=1", r.old_id);
        let removed = handle.client.call(Method::DELETE, &path, None, &HeaderMap::new(), Some(handle.client.timeout())).await;
        if matches!(removed, Ok((s, _, _)) if s.is_success() || s == http::StatusCode::NOT_FOUND) {
            info!(node = %handle.name, id = %r.old_id, "Removed the stale copy of a rescheduled container.");
            if state.store.delete(key).await.is_ok() {
                state.cluster.unsupersede(&r.old_id);
            }
        }
    }
}

/// Picks up where the previous leader stopped.
async fn take_over(state: &ApiState) {
    match state.store.list(RESCHEDULES_PREFIX.to_string()).await {
        Ok(records) => {
            for (_, value) in records {
                if let Ok(r) = serde_json::from_slice::<Rescheduled>(&value) {
                    state.cluster.supersede(&r.from, &r.old_id);
                }
            }
        }
        Err(e) => error!(error = %e, "Cannot read reschedules in progress."),
    }
    let creates = match state.store.list(CREATES_PREFIX.to_string()).await {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "Cannot read creates in flight.");
            return;
        }
    };
    for (key, value) in creates {
        let swarm_id = key[CREATES_PREFIX.len()..].to_string();
        let Ok(record) = serde_json::from_slice::<InFlight>(&value) else { continue };
        if state.cluster.is_pending(&swarm_id) {
            continue; // Our own, still in flight.
        }
        if state.cluster.has_swarm_id(&swarm_id) {
            info!(swarm_id = %swarm_id, name = ?record.name, "A create interrupted by a leader change had completed; kept.");
            let _ = state.store.delete(key).await;
            continue;
        }
        let Some(handle) = state.cluster.node(&record.node) else {
            let _ = state.store.delete(key).await;
            continue;
        };
        // Hold the name while the engine might still create it, then make sure it did not.
        let guard = state.cluster.reserve(PendingCreate {
            node: record.node.clone(),
            name: record.name.clone(),
            cpus: 0,
            memory: 0,
            view: ContainerView { labels: [(labels::SWARM_ID.to_string(), swarm_id.clone())].into(), ..Default::default() },
        });
        let store = state.store.clone();
        tokio::spawn(async move {
            if remove_by_swarm_id_until_gone(handle.client, swarm_id.clone()).await {
                let _ = store.delete(key).await;
            }
            drop(guard);
        });
    }
}

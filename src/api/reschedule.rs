//! The leader's repairs. Every manager remembers, from its own warm cache, which containers
//! ask to be rescheduled (`on-node-failure`) and where they were; whichever manager leads:
//!
//! - recreates those of a node that failed or left discovery on healthy nodes, through the
//!   normal create path (same name, configuration and swarm ID), and starts those that ran;
//! - removes a rescheduled container's stale copy when its node comes back, and a second
//!   healthy copy if a reschedule ever raced a leader change (the oldest copy stays);
//! - on taking over, finishes what the previous leader left: reschedules in progress (whose
//!   records fence the stale copies out of the cache) and creates in flight (kept if the
//!   engine has the container, otherwise removed from the engine they were sent to).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, Method};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::containers::{create_container, list_by_label, remove_by_swarm_id_until_gone, InFlight, CREATES_PREFIX};
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
/// A container seen running this recently before its node failed is restarted elsewhere: a
/// daemon that shuts down (or a host going down cleanly) stops its containers first.
const RAN_RECENTLY: Duration = Duration::from_secs(30);
/// Tries to start a recreated container.
const START_ATTEMPTS: u32 = 3;
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

/// A reschedule in the store: the copy it replaced, and whether the new copy must run.
#[derive(Debug, Serialize, Deserialize)]
struct Rescheduled {
    from: String,
    old_id: String,
    #[serde(default)]
    running: bool,
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
    /// Whether a reschedulable swarm ID lives twice among them.
    doubled: bool,
}

fn observe(state: &ApiState) -> View {
    state.cluster.with_nodes(|nodes| {
        let mut v = View { healthy: HashMap::new(), failed: HashSet::new(), present: HashSet::new(), live: HashSet::new(), doubled: false };
        for (key, n) in nodes {
            v.present.insert(key.clone());
            match n.health.state() {
                NodeState::Healthy => {
                    let mut cands = Vec::new();
                    for c in n.containers.values() {
                        if let Some(sid) = &c.swarm_id {
                            let first = v.live.insert(sid.clone());
                            if let Some(body) = &c.facts.recreate {
                                v.doubled |= !first;
                                cands.push(Candidate {
                                    node: key.clone(),
                                    id: c.id.clone(),
                                    swarm_id: sid.clone(),
                                    name: c.names.first().cloned(),
                                    body: body.clone(),
                                    running: matches!(c.state(), "running" | "restarting" | "paused"),
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
    let cleaning: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut ran_at: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        let view = observe(&state);
        for (node, cands) in &view.healthy {
            for c in cands.iter().filter(|c| c.running) {
                ran_at.insert(c.swarm_id.clone(), Instant::now());
            }
            known.insert(node.clone(), cands.clone());
        }
        ran_at.retain(|_, at| at.elapsed() < RAN_RECENTLY);
        if !state.leadership.is_leader() {
            leading = false;
            continue;
        }
        if !leading {
            leading = true;
            take_over(&state).await;
        }
        resolve_creates(&state, &cleaning).await;
        let gone: Vec<String> = known.keys().filter(|k| view.failed.contains(*k) || !view.present.contains(*k)).cloned().collect();
        let now = Instant::now();
        let mut due: Vec<Candidate> = gone
            .iter()
            .flat_map(|node| known[node].iter())
            .filter(|c| !view.live.contains(&c.swarm_id) && not_before.get(&c.swarm_id).is_none_or(|t| *t <= now))
            .cloned()
            .map(|mut c| {
                // A daemon that shuts down stops its containers first: they ran until then.
                c.running |= ran_at.contains_key(&c.swarm_id);
                c
            })
            .collect();
        if !due.is_empty() {
            // The cache may lag what a previous leader just did: ask the engines and the store.
            match copies_on_engines(&state).await {
                Ok(copies) => due.retain(|c| !copies.contains_key(&c.swarm_id)),
                Err(e) => {
                    warn!(error = %e, "Cannot list the engines before rescheduling; retrying.");
                    due.clear();
                }
            }
            match state.store.list(CREATES_PREFIX.to_string()).await {
                Ok(in_flight) => due.retain(|c| !in_flight.iter().any(|(k, _)| k[CREATES_PREFIX.len()..] == c.swarm_id)),
                Err(_) => due.clear(),
            }
        }
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
        remove_doubles(&state, &view).await;
    }
}

/// Reschedulable containers on the healthy engines, by swarm ID, read from the engines
/// themselves: `(node, id, created)` of each copy.
async fn copies_on_engines(state: &ApiState) -> Result<HashMap<String, Vec<(String, String, i64)>>, String> {
    let path = list_by_label(labels::RESCHEDULE_POLICIES);
    let mut copies: HashMap<String, Vec<(String, String, i64)>> = HashMap::new();
    for h in state.cluster.nodes().into_iter().filter(|h| h.state == NodeState::Healthy) {
        let list = h.client.get_json(&path).await.map_err(|e| format!("{}: {e}", h.name))?;
        for c in list.as_array().into_iter().flatten() {
            let (Some(sid), Some(id)) = (c["Labels"][labels::SWARM_ID].as_str(), c["Id"].as_str()) else { continue };
            if state.cluster.is_superseded(id) {
                continue;
            }
            copies.entry(sid.to_string()).or_default().push((h.key.clone(), id.to_string(), c["Created"].as_i64().unwrap_or(0)));
        }
    }
    Ok(copies)
}

/// Two healthy copies of one reschedulable container (a reschedule raced a leader change):
/// keep the oldest, remove the others.
async fn remove_doubles(state: &ApiState, view: &View) {
    if !view.doubled {
        return;
    }
    let Ok(copies) = copies_on_engines(state).await else { return };
    for (sid, mut list) in copies.into_iter().filter(|(_, l)| l.len() > 1) {
        list.sort_by_key(|(_, id, created)| (*created, id.clone()));
        // The first (oldest) copy is the one kept; every later one is a double.
        for (node, id, _) in list.into_iter().skip(1) {
            let Some(h) = state.cluster.node(&node) else { continue };
            let path = format!("/containers/{id}?force=1");
            if let Ok((s, _, _)) = h.client.call(Method::DELETE, &path, None, &HeaderMap::new(), Some(h.client.timeout())).await {
                if s.is_success() || s == http::StatusCode::NOT_FOUND {
                    warn!(swarm_id = %sid, node = %h.name, id = %id, "Removed a second copy of a rescheduled container.");
                    state.cluster.forget_container(&node, &id);
                }
            }
        }
    }
}

/// Recreates `c` on a healthy node and starts it if it ran.
async fn reschedule(state: &ApiState, c: &Candidate) -> Result<(), String> {
    // Out of the cache first, so the name is free for the new copy and `ps` never shows two.
    state.cluster.supersede(&c.node, &c.id);
    let record = format!("{RESCHEDULES_PREFIX}{}", c.swarm_id);
    let value = serde_json::to_vec(&Rescheduled { from: c.node.clone(), old_id: c.id.clone(), running: c.running }).unwrap_or_default();
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
    if !c.running {
        return Ok(());
    }
    // A busy engine (many reschedules at once) gets the create's patience, and a few tries.
    let mut last = String::new();
    for attempt in 0..START_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        match start_copy(state, &created.node, &created.id, state.config.timing.create_timeout).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(format!("recreated, but {last}"))
}

/// Starts container `id` on `node` (already running counts) and records it as running.
async fn start_copy(state: &ApiState, node: &str, id: &str, bound: Duration) -> Result<(), String> {
    let handle = state.cluster.node(node).ok_or("the node left")?;
    let path = format!("/containers/{id}/start");
    match handle.client.call(Method::POST, &path, None, &HeaderMap::new(), Some(bound)).await {
        // 304: an earlier try had started it.
        Ok((s, _, _)) if s.is_success() || s == http::StatusCode::NOT_MODIFIED => {
            state.cluster.patch_container(node, id, |cached| cached.set_run(|r| r.start()));
            Ok(())
        }
        Ok((s, _, body)) => Err(format!("start answered {s}: {}", crate::cluster::engine::error_message(&body))),
        Err(e) => Err(format!("start failed: {e}")),
    }
}

/// The copies of `swarm_id` on healthy nodes: `(node, id, state)`.
fn live_copies(state: &ApiState, swarm_id: &str) -> Vec<(String, String, String)> {
    state.cluster.with_nodes(|nodes| {
        nodes
            .iter()
            .filter(|(_, n)| n.health.state() == NodeState::Healthy)
            .flat_map(|(key, n)| n.containers.values().map(move |c| (key, c)))
            .filter(|(_, c)| c.swarm_id.as_deref() == Some(swarm_id))
            .map(|(key, c)| (key.clone(), c.id.clone(), c.state().to_string()))
            .collect()
    })
}

/// Finishes reschedules: starts a new copy that should run but was only created (its leader
/// died between the two), and removes the copies they replaced once their nodes answer again.
async fn remove_stale_copies(state: &ApiState) {
    let Ok(records) = state.store.list(RESCHEDULES_PREFIX.to_string()).await else { return };
    for (key, value) in records {
        let Ok(r) = serde_json::from_slice::<Rescheduled>(&value) else { continue };
        let swarm_id = &key[RESCHEDULES_PREFIX.len()..];
        let copies = live_copies(state, swarm_id);
        let from = state.cluster.node(&r.from).filter(|h| h.state == NodeState::Healthy);
        // A start that reached the old copy while its node hung (and landed after the
        // reschedule) counts too: the user was told it runs.
        let mut old_running = false;
        if let Some(h) = &from {
            match h.client.get_json(&format!("/containers/{}/json", r.old_id)).await {
                Ok(v) => old_running = v["State"]["Running"] == true,
                Err(crate::cluster::EngineError::Status { .. }) => {}
                Err(_) => continue,
            }
        }
        let mut running = copies.iter().any(|(_, _, st)| st == "running");
        if (r.running || old_running) && !running {
            for (node, id, _) in copies.iter().filter(|(_, _, st)| st == "created") {
                if start_copy(state, node, id, state.config.timing.engine_timeout).await.is_ok() {
                    info!(node = %node, id = %id, "Started a rescheduled copy that should run.");
                    running = true;
                }
            }
        }
        let Some(handle) = from else { continue };
        if (r.running || old_running) && !running {
            continue;
        }
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

/// Picks up the reschedules the previous leader recorded: their stale copies stay out of view.
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
}

/// Settles creates that a leader recorded and never cleared: kept when their engine has the
/// container (the client may have been told), removed for good otherwise (the engine may still
/// be working on it). An engine that does not answer is asked again next time.
async fn resolve_creates(state: &ApiState, cleaning: &Arc<Mutex<HashSet<String>>>) {
    let Ok(creates) = state.store.list(CREATES_PREFIX.to_string()).await else { return };
    for (key, value) in creates {
        let swarm_id = key[CREATES_PREFIX.len()..].to_string();
        let Ok(record) = serde_json::from_slice::<InFlight>(&value) else { continue };
        // Our own, still in flight, or already being cleaned up.
        if state.cluster.is_pending(&swarm_id) || cleaning.lock().contains(&swarm_id) {
            continue;
        }
        let Some(handle) = state.cluster.node(&record.node) else {
            let _ = state.store.delete(key).await;
            continue;
        };
        if handle.state != NodeState::Healthy {
            continue;
        }
        let path = list_by_label(&format!("{}={swarm_id}", labels::SWARM_ID));
        let Ok(found) = handle.client.get_json(&path).await else { continue };
        if found.as_array().is_some_and(|a| !a.is_empty()) {
            info!(swarm_id = %swarm_id, name = ?record.name, "A create interrupted by a leader change had completed; kept.");
            let _ = state.store.delete(key).await;
            continue;
        }
        cleaning.lock().insert(swarm_id.clone());
        // Hold the name while the engine might still create it, then make sure it did not.
        let guard = state.cluster.reserve(PendingCreate {
            node: record.node.clone(),
            name: record.name.clone(),
            cpus: 0,
            memory: 0,
            view: ContainerView { labels: [(labels::SWARM_ID.to_string(), swarm_id.clone())].into(), ..Default::default() },
        });
        let cleaning = cleaning.clone();
        let store = state.store.clone();
        tokio::spawn(async move {
            if remove_by_swarm_id_until_gone(handle.client, swarm_id.clone()).await {
                let _ = store.delete(key).await;
            }
            drop(guard);
            cleaning.lock().remove(&swarm_id);
        });
    }
}

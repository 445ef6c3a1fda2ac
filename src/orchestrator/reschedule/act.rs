//! The reconciler's acting half: each [`Action`](super::plan::Action) done against the engines
//! and the store. Engines and store are asked again before anything irreversible, since the
//! cache may lag what a previous leader just did.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, Method, StatusCode};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::plan::Candidate;
use super::RESCHEDULES_PREFIX;
use crate::cluster::{labels, NodeState, PendingCreate};
use crate::orchestrator::orphans::{self, list_by_label};
use crate::orchestrator::{CreateRequest, InFlight, Orchestrator, CREATES_PREFIX};
use crate::scheduler::ContainerView;
use crate::transport::EngineError;

/// A reschedule record outlives a node that never comes back by this long.
const RECORD_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Tries to start a recreated container.
const START_ATTEMPTS: u32 = 3;
/// Pause between those tries.
const START_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// A reschedule in the store: the copy it replaced, and whether the new copy must run.
#[derive(Debug, Serialize, Deserialize)]
struct Rescheduled {
    from: String,
    old_id: String,
    #[serde(default)]
    running: bool,
    /// The replacement, once created: without it, the reschedule may never have made one.
    #[serde(default)]
    new_id: Option<String>,
}

/// One record per copy replaced, so that a chain of reschedules (a copy whose node failed in
/// turn) keeps every stale copy it left out of view until that copy is removed from its engine.
fn record_key(swarm_id: &str, old_id: &str) -> String {
    format!("{RESCHEDULES_PREFIX}{swarm_id}/{old_id}")
}

/// The swarm ID a record's key names (keys without the copy's ID came from earlier versions).
fn record_swarm_id(key: &str) -> &str {
    let rest = key.strip_prefix(RESCHEDULES_PREFIX).unwrap_or(key);
    rest.split_once('/').map_or(rest, |(swarm_id, _)| swarm_id)
}

/// What a round of rescheduling settled and what it must retry.
#[derive(Default)]
pub(super) struct Rescheduling {
    /// `(node, swarm ID)` of containers recreated, or found alive elsewhere.
    pub(super) settled: Vec<(String, String)>,
    /// Swarm IDs whose reschedule failed.
    pub(super) failed: Vec<String>,
}

/// The copies of one swarm ID on the healthy engines: `(node, id, created)`.
type Copies = HashMap<String, Vec<(String, String, i64)>>;

pub(super) struct Act {
    orch: Orchestrator,
    /// Swarm IDs whose in-flight create a cleanup task is removing.
    cleaning: Arc<Mutex<HashSet<String>>>,
}

impl Act {
    pub(super) fn new(orch: Orchestrator) -> Self {
        Act { orch, cleaning: Arc::default() }
    }

    /// Picks up the reschedules the previous leader recorded: their stale copies stay out of view.
    pub(super) async fn take_over(&self) {
        let inner = &self.orch.inner;
        match inner.store.list(RESCHEDULES_PREFIX.to_string()).await {
            Ok(records) => {
                for (_, value) in records {
                    if let Ok(r) = serde_json::from_slice::<Rescheduled>(&value) {
                        inner.cluster.supersede(&r.from, &r.old_id);
                    }
                }
            }
            Err(e) => error!(error = %e, "Cannot read reschedules in progress."),
        }
    }

    /// Recreates what is due, once the engines and the store confirm that no copy exists nor
    /// is being created.
    pub(super) async fn reschedule(&self, mut due: Vec<Candidate>) -> Rescheduling {
        let inner = &self.orch.inner;
        let mut outcome = Rescheduling::default();
        match self.copies_on_engines().await {
            Ok(copies) => due.retain(|c| {
                let elsewhere = copies.contains_key(&c.swarm_id);
                if elsewhere {
                    outcome.settled.push((c.node.clone(), c.swarm_id.clone()));
                }
                !elsewhere
            }),
            Err(e) => {
                warn!(error = %e, "Cannot list the engines before rescheduling; retrying.");
                return outcome;
            }
        }
        match inner.store.list(CREATES_PREFIX.to_string()).await {
            Ok(in_flight) => due.retain(|c| !in_flight.iter().any(|(k, _)| k[CREATES_PREFIX.len()..] == c.swarm_id)),
            Err(_) => return outcome,
        }
        // An original that a recorded reschedule already replaced is never recreated: with no
        // copy left, a user removed it. (A new leader's first pass may still see the original,
        // read before it took over the records.)
        match inner.store.list(RESCHEDULES_PREFIX.to_string()).await {
            Ok(records) => due.retain(|c| {
                !records.iter().any(|(_, v)| {
                    serde_json::from_slice::<Rescheduled>(v).is_ok_and(|r| r.old_id == c.id && r.new_id.is_some())
                })
            }),
            Err(_) => return outcome,
        }
        if due.is_empty() {
            return outcome;
        }
        let started = Instant::now();
        let results = futures_util::future::join_all(due.iter().map(|c| self.reschedule_one(c))).await;
        let done = results.iter().filter(|r| r.is_ok()).count();
        info!(
            rescheduled = done,
            failed = due.len() - done,
            took_ms = started.elapsed().as_millis() as u64,
            "Rescheduled containers of failed nodes."
        );
        inner.metrics.rescheduled.inc_by(done as u64);
        for (c, r) in due.iter().zip(results) {
            match r {
                Ok(()) => outcome.settled.push((c.node.clone(), c.swarm_id.clone())),
                Err(e) => {
                    warn!(name = c.name.as_deref(), swarm_id = %c.swarm_id, error = %e, "Reschedule failed; retrying later.");
                    outcome.failed.push(c.swarm_id.clone());
                }
            }
        }
        outcome
    }

    /// Reschedulable containers on the healthy engines, by swarm ID, read from the engines
    /// themselves.
    async fn copies_on_engines(&self) -> Result<Copies, String> {
        let cluster = &self.orch.inner.cluster;
        let path = list_by_label(labels::RESCHEDULE_POLICIES);
        let mut copies = Copies::new();
        for h in cluster.nodes().into_iter().filter(|h| h.state == NodeState::Healthy) {
            let list = h.client.get_json(&path).await.map_err(|e| format!("{}: {e}", h.name))?;
            for c in list.as_array().into_iter().flatten() {
                let (Some(sid), Some(id)) = (c["Labels"][labels::SWARM_ID].as_str(), c["Id"].as_str()) else {
                    continue;
                };
                if cluster.is_superseded(id) {
                    continue;
                }
                copies.entry(sid.to_string()).or_default().push((
                    h.key.clone(),
                    id.to_string(),
                    c["Created"].as_i64().unwrap_or(0),
                ));
            }
        }
        Ok(copies)
    }

    /// Two healthy copies of one reschedulable container (a reschedule raced a leader change):
    /// keep the oldest, remove the others.
    pub(super) async fn remove_doubles(&self) {
        let cluster = &self.orch.inner.cluster;
        let Ok(copies) = self.copies_on_engines().await else { return };
        for (sid, mut list) in copies.into_iter().filter(|(_, l)| l.len() > 1) {
            list.sort_by_key(|(_, id, created)| (*created, id.clone()));
            // The first (oldest) copy is the one kept; every later one is a double.
            for (node, id, _) in list.into_iter().skip(1) {
                let Some(h) = cluster.node(&node) else { continue };
                if orphans::remove(&h.client, &id).await {
                    warn!(swarm_id = %sid, node = %h.name, id = %id, "Removed a second copy of a rescheduled container.");
                    cluster.forget_container(&node, &id);
                }
            }
        }
    }

    /// Recreates `c` on a healthy node and starts it if it ran.
    async fn reschedule_one(&self, c: &Candidate) -> Result<(), String> {
        let inner = &self.orch.inner;
        // Out of the cache first, so the name is free for the new copy and `ps` never shows two.
        let moving = inner.cluster.moving(&c.id, c.name.clone(), &c.swarm_id);
        let original = inner.cluster.supersede(&c.node, &c.id);
        // A failed reschedule puts the original back, or lookups would miss it (404, which
        // `rm -f` takes for done) until its failed node is read again.
        let restore = || match original.clone() {
            Some(o) => inner.cluster.restore_superseded(&c.node, o),
            None => inner.cluster.unsupersede(&c.id),
        };
        let record = record_key(&c.swarm_id, &c.id);
        let mut rescheduled =
            Rescheduled { from: c.node.clone(), old_id: c.id.clone(), running: c.running, new_id: None };
        let value = serde_json::to_vec(&rescheduled).unwrap_or_default();
        if let Err(e) = inner.store.put(record.clone(), value, Some(RECORD_TTL)).await {
            restore();
            return Err(format!("cannot record the reschedule: {e}"));
        }
        let config = c.body.as_object().cloned().unwrap_or_default();
        let created = match self
            .orch
            .create(CreateRequest { config, name: c.name.clone(), auth: None, api_version: None, request_key: None })
            .await
        {
            Ok(created) => created,
            Err(e) => {
                restore();
                let _ = inner.store.delete(record).await;
                return Err(e.message);
            }
        };
        inner.cluster.record_replacement(&created.id, &c.id);
        // The copy is cached: lookups find it from here on.
        drop(moving);
        // The user removed the original while it was being recreated (or another copy of it):
        // the new copy goes too.
        if inner.cluster.was_removed(&c.id) || inner.cluster.was_removed_by_user(&c.swarm_id) {
            if let Some(h) = inner.cluster.node(&created.node) {
                if orphans::remove(&h.client, &created.id).await {
                    inner.cluster.forget_container(&created.node, &created.id);
                    let _ = inner.store.delete(record).await;
                    info!(name = c.name.as_deref(), "Removed while rescheduled: the new copy is removed too.");
                    return Ok(());
                }
            }
        }
        info!(term = inner.leadership.acting_term(), name = c.name.as_deref(), from = %c.node, to = %created.node, "Container rescheduled.");
        rescheduled.new_id = Some(created.id.clone());
        if let Err(e) =
            inner.store.put(record, serde_json::to_vec(&rescheduled).unwrap_or_default(), Some(RECORD_TTL)).await
        {
            warn!(swarm_id = %c.swarm_id, error = %e, "Cannot record the rescheduled copy.");
        }
        if !c.running {
            return Ok(());
        }
        // A busy engine (many reschedules at once) gets the create's patience, and a few tries.
        // The copy exists either way: it is settled, and finishing the reschedule starts it.
        let mut last = String::new();
        for attempt in 0..START_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(START_RETRY_PAUSE).await;
            }
            match self.start_copy(&created.node, &created.id, inner.settings.create_timeout).await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        warn!(name = c.name.as_deref(), swarm_id = %c.swarm_id, error = %last, "Recreated, not yet started; starting it later.");
        Ok(())
    }

    /// Starts container `id` on `node` (already running counts) and records it as running.
    async fn start_copy(&self, node: &str, id: &str, bound: Duration) -> Result<(), String> {
        let cluster = &self.orch.inner.cluster;
        let handle = cluster.node(node).ok_or("the node left")?;
        let path = format!("/containers/{id}/start");
        match handle.client.call(Method::POST, &path, None, &HeaderMap::new(), Some(bound)).await {
            // 304: an earlier try had started it.
            Ok((s, _, _)) if s.is_success() || s == StatusCode::NOT_MODIFIED => {
                cluster.patch_container(node, id, |cached| cached.set_run(|r| r.start()));
                Ok(())
            }
            Ok((s, _, body)) => Err(format!("start answered {s}: {}", crate::transport::error_message(&body))),
            Err(e) => Err(format!("start failed: {e}")),
        }
    }

    /// The copies of `swarm_id` on healthy nodes: `(node, id, state)`.
    fn live_copies(&self, swarm_id: &str) -> Vec<(String, String, String)> {
        self.orch.inner.cluster.with_nodes(|nodes| {
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
    pub(super) async fn finish_reschedules(&self) {
        let inner = &self.orch.inner;
        let Ok(records) = inner.store.list(RESCHEDULES_PREFIX.to_string()).await else { return };
        for (key, value) in records {
            let Ok(r) = serde_json::from_slice::<Rescheduled>(&value) else { continue };
            let swarm_id = record_swarm_id(&key);
            let copies = self.live_copies(swarm_id);
            let from = inner.cluster.node(&r.from).filter(|h| h.state == NodeState::Healthy);
            // A start that reached the old copy while its node hung (and landed after the
            // reschedule) counts too: the user was told it runs.
            let mut old_running = false;
            if let Some(h) = &from {
                match h.client.get_json(&format!("/containers/{}/json", r.old_id)).await {
                    Ok(v) => old_running = v["State"]["Running"] == true,
                    Err(EngineError::Status { .. }) => {}
                    Err(_) => continue,
                }
            }
            let must_run = r.running || old_running;
            let mut running = copies.iter().any(|(_, _, st)| st == "running");
            if must_run && !running {
                for (node, id, _) in copies.iter().filter(|(_, _, st)| st == "created") {
                    if self.start_copy(node, id, inner.settings.engine_timeout).await.is_ok() {
                        info!(node = %node, id = %id, "Started a rescheduled copy that should run.");
                        running = true;
                    }
                }
            }
            let Some(handle) = from else { continue };
            if copies.is_empty() && r.new_id.is_none() {
                // No replacement was ever recorded or seen: the original is the container.
                if self.restorable(swarm_id).await && inner.store.delete(key).await.is_ok() {
                    info!(node = %handle.name, id = %r.old_id, "A reschedule never made its copy; the original is kept.");
                    inner.cluster.unsupersede(&r.old_id);
                }
                continue;
            }
            // A replacement that should run but was only created (its start is still to come):
            // keep the original meanwhile. A replacement that ran and stopped (a user stopped
            // it) replaced the original all the same; with no replacement left at all, the
            // user removed it, and the original goes too.
            if must_run && !running && copies.iter().any(|(_, _, st)| st == "created") {
                continue;
            }
            if orphans::remove(&handle.client, &r.old_id).await {
                info!(term = inner.leadership.acting_term(), node = %handle.name, id = %r.old_id, "Removed the stale copy of a rescheduled container.");
                if inner.store.delete(key).await.is_ok() {
                    inner.cluster.unsupersede(&r.old_id);
                }
            }
        }
    }

    /// Whether no engine holds a copy of `swarm_id` besides superseded ones, and none is being
    /// created: asked of the engines and the store, not the cache, which may lag.
    async fn restorable(&self, swarm_id: &str) -> bool {
        let Ok(copies) = self.copies_on_engines().await else { return false };
        let Ok(in_flight) = self.orch.inner.store.list(format!("{CREATES_PREFIX}{swarm_id}")).await else {
            return false;
        };
        !copies.contains_key(swarm_id) && in_flight.is_empty()
    }

    /// Settles creates that a leader recorded and never cleared: kept when their engine has the
    /// container (the client may have been told), removed for good otherwise (the engine may
    /// still be working on it). An engine that does not answer is asked again next time.
    pub(super) async fn resolve_creates(&self) {
        let inner = &self.orch.inner;
        let Ok(creates) = inner.store.list(CREATES_PREFIX.to_string()).await else { return };
        for (key, value) in creates {
            let swarm_id = key[CREATES_PREFIX.len()..].to_string();
            let Ok(record) = serde_json::from_slice::<InFlight>(&value) else { continue };
            // Our own, still in flight, or already being cleaned up.
            if inner.cluster.is_pending(&swarm_id) || self.cleaning.lock().contains(&swarm_id) {
                continue;
            }
            let Some(handle) = inner.cluster.node(&record.node) else {
                let _ = inner.store.delete(key).await;
                continue;
            };
            if handle.state != NodeState::Healthy {
                continue;
            }
            let path = list_by_label(&format!("{}={swarm_id}", labels::SWARM_ID));
            let Ok(found) = handle.client.get_json(&path).await else { continue };
            if found.as_array().is_some_and(|a| !a.is_empty()) {
                info!(swarm_id = %swarm_id, name = record.name.as_deref(), "A create interrupted by a leader change had completed; kept.");
                let _ = inner.store.delete(key).await;
                continue;
            }
            self.cleaning.lock().insert(swarm_id.clone());
            // Hold the name while the engine might still create it, then make sure it did not.
            let guard = inner.cluster.reserve(PendingCreate {
                node: record.node.clone(),
                name: record.name.clone(),
                cpus: 0,
                memory: 0,
                view: ContainerView {
                    labels: [(labels::SWARM_ID.to_string(), swarm_id.clone())].into(),
                    ..Default::default()
                },
            });
            let (cleaning, store) = (self.cleaning.clone(), inner.store.clone());
            tokio::spawn(async move {
                if orphans::remove_by_swarm_id_until_gone(handle.client, swarm_id.clone()).await {
                    let _ = store.delete(key).await;
                }
                drop(guard);
                cleaning.lock().remove(&swarm_id);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_replaced_copy_has_its_own_record_and_every_key_names_its_swarm_id() {
        let (first, second) = (record_key("s1", "a1"), record_key("s1", "b1"));
        assert_ne!(first, second, "a second reschedule must not overwrite the first's record");
        assert_eq!(record_swarm_id(&first), "s1");
        assert_eq!(record_swarm_id(&second), "s1");
        assert_eq!(record_swarm_id("reschedules/s1"), "s1");
    }
}

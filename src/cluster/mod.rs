//! Engines seen from the manager: their clients, cached state, events and health, and the
//! cluster-wide views built from them. The HTTP client itself is `crate::transport`'s.
//!
//! - `health`: the pure node health state machine.
//! - `node`: what is cached per engine.
//! - `refresh`: reading an engine into the cache.
//! - `wire`: the engine fields the manager reads, typed.
//! - `monitor`: the per-node tasks (validate, probe, events, periodic refresh).
//! - `events`: normalising engine events and swarm's own.
//! - `index`: cluster-wide lookups and the scheduler's view, kept current per changed node.

pub mod awaited;
pub mod events;
pub mod health;
pub mod index;
pub mod keyed;
pub mod monitor;
pub mod node;
pub mod refresh;
mod reread;
pub mod run_state;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard, RwLock};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, Instrument};

use crate::config::Timing;
use crate::metrics::Metrics;
use crate::scheduler::{ContainerView, NodeSnapshot};
use crate::transport::{EngineClient, EngineError};
pub use health::{NodeState, Transition};
pub use node::{labels, CachedContainer, Derived, EngineInfo, Node};

/// How long a removed container is remembered as removed.
pub const REMOVED_MEMORY: std::time::Duration = std::time::Duration::from_secs(600);

/// How long the containers of an engine that left discovery still resolve (to an error, not
/// to "No such container", which `docker rm -f` takes for success while the engine may return).
pub const DEPARTED_MEMORY: std::time::Duration = std::time::Duration::from_secs(600);

/// How long an exec instance's node is remembered (a terminal's resizes use it for as long
/// as the session lasts).
pub const EXEC_MEMORY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Container locations remembered at most; past this, the memory starts over.
const LOCATED_MEMORY: usize = 200_000;

/// How long a lookup that misses, or a named create, waits for engines still being read for
/// the first time (see [`Cluster::wait_loaded`]).
pub const CACHE_LOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Settings the cluster needs.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Engine timing.
    pub timing: Timing,
    /// `swarm.overcommit`.
    pub overcommit: f64,
    /// Events buffered per subscriber.
    pub event_buffer: usize,
    /// TLS towards engines (`--tls`, `--tlsverify`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The open-files limit, which bounds the engines served.
    pub open_files: crate::open_files::OpenFiles,
}

/// A container that could not be resolved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LookupError {
    /// Nothing by that ID, name or prefix.
    #[error("No such container: {0}")]
    NotFound(String),
    /// A prefix that fits several containers.
    #[error("Multiple IDs found with provided prefix: {0}")]
    Ambiguous(String),
}

/// Where a container lives.
#[derive(Debug, Clone)]
pub struct ContainerRef {
    /// Node key.
    pub node: String,
    /// Node name.
    pub node_name: String,
    /// Node state now.
    pub node_state: NodeState,
    /// Full engine ID of the container.
    pub id: String,
    /// The engine's client.
    pub client: EngineClient,
    /// The engine's API version, once known.
    pub api_version: Option<String>,
}

/// A node's handle for fan-out calls.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    /// Node key.
    pub key: String,
    /// Node name.
    pub name: String,
    /// Classic engine ID.
    pub engine_id: String,
    /// Client.
    pub client: EngineClient,
    /// State now.
    pub state: NodeState,
    /// Engine API version, once known.
    pub api_version: Option<String>,
}

/// A create that has been scheduled but not yet answered by the engine: it counts for names,
/// ports, slots and resources so that concurrent creates see it.
#[derive(Debug, Clone)]
pub struct PendingCreate {
    /// Node chosen.
    pub node: String,
    /// Container name asked for, if any.
    pub name: Option<String>,
    /// CPUs asked for.
    pub cpus: i64,
    /// Memory asked for.
    pub memory: i64,
    /// The filters' view (ports, labels, image).
    pub view: ContainerView,
}

/// Releases a pending create when dropped, on every path (success, error, panic).
pub struct PendingGuard {
    cluster: Cluster,
    token: u64,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.cluster.shared.pending.lock().remove(&self.token);
        self.cluster.shared.pending_done.notify_waiters();
    }
}

/// The cluster: a clone handle over shared state.
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
}

struct Shared {
    nodes: RwLock<BTreeMap<String, Node>>,
    /// Nodes changed since `index` last read them (every node marks itself here).
    changes: Arc<index::Changes>,
    /// Taken before `nodes`, never while holding it.
    index: Mutex<index::Index>,
    pending: Mutex<HashMap<u64, PendingCreate>>,
    /// Woken whenever a create in flight ends, for those waiting on its name or swarm ID.
    pending_done: tokio::sync::Notify,
    next_pending: AtomicU64,
    /// How many engines discovery names now.
    engine_count: AtomicUsize,
    /// Set once every engine discovery named has been read once (or given up on); a newly
    /// named engine clears it. Spares a named create the scan of every node.
    all_loaded: AtomicBool,
    /// When discovery first named the engines (None until then): before it, an empty cache
    /// is not an empty cluster.
    discovered: Mutex<Option<std::time::Instant>>,
    /// When the cluster was made, to bound the wait for discovery's first answer.
    made: std::time::Instant,
    /// Container ID → the node it was last found on.
    located: Mutex<HashMap<String, String>>,
    /// Serialises scheduling decisions with their reservations (never held across `.await`).
    schedule: Mutex<()>,
    /// Exec instances: the node each lives on, and when it was made.
    execs: Mutex<HashMap<String, (String, std::time::Instant)>>,
    /// The lowest API version among the engines, kept current as engines come and go: every
    /// response carries it.
    min_api_version: RwLock<Option<String>>,
    /// Containers replaced elsewhere by a reschedule, kept out of the cache.
    superseded: RwLock<HashSet<String>>,
    /// Containers being rescheduled, by ID, with their names and swarm IDs: out of the cache,
    /// their new copy not in it yet.
    moving: Mutex<HashMap<String, (Option<String>, String)>>,
    /// Containers removed (by a client or on their engine), and when.
    removed: Mutex<HashMap<String, std::time::Instant>>,
    /// Swarm IDs of which a client removed a copy through the manager, and when: no copy of
    /// them, however many reschedules back, is the container any more.
    removed_by_user: Mutex<HashMap<String, std::time::Instant>>,
    /// Containers a client stopped, and when.
    user_stopped: Mutex<HashMap<String, std::time::Instant>>,
    /// Copies made by reschedules: the original each replaced, and when.
    replacements: Mutex<HashMap<String, (String, std::time::Instant)>>,
    /// Engines that left discovery, with their last cache, and when they left.
    departed: Mutex<BTreeMap<String, (Node, std::time::Instant)>>,
    /// Re-reads of single containers in flight, shared by whoever asks meanwhile.
    rereads: reread::Rereads,
    /// Changes sent through the manager waiting for their engine events.
    awaited: awaited::Awaited,
    /// Whole-engine reads allowed at once (see [`refresh::FULL_READS_AT_ONCE`]).
    full_reads: tokio::sync::Semaphore,
    events: broadcast::Sender<Arc<Value>>,
    opts: ClusterOptions,
    metrics: Metrics,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Cluster {
    /// An empty cluster. Node tasks are spawned on `tracker` and stop with `cancel`.
    pub fn new(opts: ClusterOptions, metrics: Metrics, tracker: TaskTracker, cancel: CancellationToken) -> Self {
        let (events, _) = broadcast::channel(opts.event_buffer.max(16));
        Cluster {
            shared: Arc::new(Shared {
                nodes: RwLock::new(BTreeMap::new()),
                changes: Arc::default(),
                index: Mutex::default(),
                pending: Mutex::new(HashMap::new()),
                pending_done: tokio::sync::Notify::new(),
                next_pending: AtomicU64::new(1),
                engine_count: AtomicUsize::new(0),
                all_loaded: AtomicBool::new(false),
                discovered: Mutex::new(None),
                made: std::time::Instant::now(),
                located: Mutex::new(HashMap::new()),
                schedule: Mutex::new(()),
                execs: Mutex::new(HashMap::new()),
                min_api_version: RwLock::new(None),
                superseded: RwLock::new(HashSet::new()),
                moving: Mutex::new(HashMap::new()),
                removed: Mutex::new(HashMap::new()),
                removed_by_user: Mutex::new(HashMap::new()),
                user_stopped: Mutex::new(HashMap::new()),
                replacements: Mutex::new(HashMap::new()),
                departed: Mutex::new(BTreeMap::new()),
                rereads: reread::Rereads::default(),
                awaited: awaited::Awaited::default(),
                full_reads: tokio::sync::Semaphore::new(refresh::FULL_READS_AT_ONCE),
                events,
                opts,
                metrics,
                tracker,
                cancel,
            }),
        }
    }

    /// Settings.
    pub fn options(&self) -> &ClusterOptions {
        &self.shared.opts
    }

    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Applies a discovery entry set: new entries become pending nodes with their own tasks,
    /// vanished ones are disconnected and forgotten.
    pub fn apply_entries(&self, entries: &BTreeSet<String>) {
        self.shared.discovered.lock().get_or_insert_with(std::time::Instant::now);
        let mut added = Vec::new();
        let mut removed = Vec::new();
        let mut departed = Vec::new();
        {
            let mut nodes = self.shared.nodes.write();
            for addr in entries {
                if !nodes.contains_key(addr) {
                    let node = Node {
                        addr: addr.clone(),
                        client: EngineClient::timed(
                            addr,
                            self.shared.opts.timing.engine_timeout,
                            self.shared.opts.tls.clone(),
                            self.shared.metrics.engine_call_duration.clone(),
                        ),
                        health: health::Health::new(self.shared.opts.timing.failure_retry),
                        info: None,
                        containers: HashMap::new(),
                        forgotten: HashMap::new(),
                        images: Default::default(),
                        updated_at: None,
                        foreign: None,
                        refused: false,
                        found_at: std::time::Instant::now(),
                        cancel: self.shared.cancel.child_token(),
                        overcommit: self.shared.opts.overcommit,
                        derived: Default::default(),
                        changes: self.shared.changes.clone(),
                    };
                    self.shared.changes.mark(addr);
                    self.shared.all_loaded.store(false, Ordering::SeqCst);
                    added.push((addr.clone(), node.cancel.clone()));
                    nodes.insert(addr.clone(), node);
                }
            }
            let gone: Vec<String> = nodes.keys().filter(|k| !entries.contains(*k)).cloned().collect();
            for key in gone {
                if let Some(mut node) = nodes.remove(&key) {
                    self.shared.changes.mark(&key);
                    node.cancel.cancel();
                    if let Some(t) = node.health.removed() {
                        removed.push((t, events::node_fields(&node)));
                    }
                    info!(node = %node.name(), addr = %key, "Engine left discovery.");
                    departed.push(node);
                }
            }
            self.shared.engine_count.store(nodes.len(), Ordering::Relaxed);
        }
        {
            let mut memory = self.shared.departed.lock();
            memory.retain(|_, (_, at)| at.elapsed() < DEPARTED_MEMORY);
            for node in departed {
                memory.insert(node.addr.clone(), (node, std::time::Instant::now()));
            }
        }
        for (t, fields) in removed {
            self.emit_transition(t, fields);
        }
        let (engines, files) = (self.with_nodes(BTreeMap::len) as u64, self.shared.opts.open_files);
        if !added.is_empty() && engines > files.engines_allowed() {
            tracing::error!(
                engines, limit = files.limit, allowed = files.engines_allowed(),
                "More engines than the open-files limit allows: some will fail with \"Too many open files\". Raise the hard limit (ulimit -Hn, LimitNOFILE=)."
            );
        }
        for (addr, cancel) in added {
            info!(addr = %addr, "Engine found in discovery.");
            let task = monitor::run_node(self.clone(), addr.clone(), cancel);
            self.shared.tracker.spawn(task.instrument(tracing::info_span!("node", addr = %addr)));
        }
        self.update_node_gauges();
        self.update_min_api_version();
    }

    /// Waits, up to `bound`, until every engine discovery named in the last `bound` has been
    /// read into the cache once (or has failed): until then a container missing from the cache
    /// may only be not loaded yet, as on a manager that just started and already leads.
    /// True if something was still loading when called.
    pub async fn wait_loaded(&self, bound: std::time::Duration) -> bool {
        if self.shared.all_loaded.load(Ordering::SeqCst) || !self.loading(bound) {
            return false;
        }
        let deadline = tokio::time::Instant::now() + bound;
        while self.loading(bound) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        true
    }

    /// Whether the cache is still being loaded: discovery has not named the engines yet (for
    /// up to `bound` from the start), or an engine it named within `bound` is not read yet.
    fn loading(&self, bound: std::time::Duration) -> bool {
        if self.shared.discovered.lock().is_none() {
            return self.shared.made.elapsed() < bound;
        }
        self.with_nodes(|nodes| {
            let mut unread = nodes
                .values()
                .filter(|n| {
                    n.updated_at.is_none() && matches!(n.health.state(), NodeState::Pending | NodeState::Healthy)
                })
                .peekable();
            if unread.peek().is_none() {
                // Set under the node table's lock, which an engine named meanwhile needs
                // to clear it.
                self.shared.all_loaded.store(true, Ordering::SeqCst);
                return false;
            }
            unread.any(|n| n.found_at.elapsed() < bound)
        })
    }

    /// Whether the cache holds every engine discovery names, read once (or given up on): a
    /// manager that just started is not ready for clients before.
    pub fn is_loaded(&self) -> bool {
        self.shared.all_loaded.load(Ordering::SeqCst) || !self.loading(CACHE_LOAD_WAIT)
    }

    /// Nodes (among `only`, when given) that do not answer, or are failing, and have not been
    /// listed since `since`: their cache may miss what was done on them just before they
    /// stopped answering (by a previous leader, or before this manager started), so a container
    /// missing from it may still be there. (A failed node turns Healthy only once read whole.)
    pub fn unread_unreachable(&self, since: std::time::SystemTime, only: Option<&str>) -> Vec<String> {
        self.with_nodes(|nodes| {
            nodes
                .values()
                .filter(|n| only.is_none_or(|name| n.name() == name))
                .filter(|n| match n.health.state() {
                    NodeState::Pending => !n.refused,
                    NodeState::Unhealthy => true,
                    NodeState::Healthy => n.health.failures() > 0,
                    NodeState::Disconnected => false,
                })
                .filter(|n| n.updated_at.is_none_or(|listed| listed < since))
                .map(|n| n.name().to_string())
                .collect()
        })
    }

    /// The period of each engine's probe: `--engine-probe-interval`, stretched so that all
    /// engines together take at most `--engine-probe-rate` probes a second.
    pub fn probe_period(&self) -> std::time::Duration {
        let timing = &self.shared.opts.timing;
        probe_period(timing.probe_interval, self.shared.engine_count.load(Ordering::Relaxed), timing.probe_rate)
    }

    /// Runs `f` over the nodes under the read lock (keep it short: no `.await` inside).
    pub fn with_nodes<R>(&self, f: impl FnOnce(&BTreeMap<String, Node>) -> R) -> R {
        f(&self.shared.nodes.read())
    }

    /// Runs `f` over the nodes under the write lock; `f` calls [`Node::changed`] on each node
    /// it changes (dropping every node's derived views would make each validation of a
    /// starting cluster rebuild all of them: quadratic in engines).
    pub(crate) fn with_nodes_mut<R>(&self, f: impl FnOnce(&mut BTreeMap<String, Node>) -> R) -> R {
        f(&mut self.shared.nodes.write())
    }

    /// Runs `f` over one node under the write lock; its derived views are rebuilt on their
    /// next use.
    pub(crate) fn with_node_mut<R>(&self, key: &str, f: impl FnOnce(&mut Node) -> R) -> Option<R> {
        self.shared.nodes.write().get_mut(key).map(|n| {
            n.changed();
            f(n)
        })
    }

    /// Like [`Cluster::with_node_mut`] for a change of what nothing derived reads (`health`,
    /// which every probe changes, `refused`): `f` must change nothing else.
    pub(crate) fn with_node_health<R>(&self, key: &str, f: impl FnOnce(&mut Node) -> R) -> Option<R> {
        self.shared.nodes.write().get_mut(key).map(|n| {
            // The scheduler's view holds the health indicator.
            self.shared.changes.mark(key);
            f(n)
        })
    }

    /// The cluster-wide index, brought up to date with the nodes changed since its last use.
    fn index(&self) -> MutexGuard<'_, index::Index> {
        let mut index = self.shared.index.lock();
        index.sync(&self.shared.nodes.read(), &self.shared.changes);
        index
    }

    /// Brings the index up to date now.
    fn sync_index(&self) {
        drop(self.index());
    }

    /// The client of the node with this key.
    pub(crate) fn client_of(&self, key: &str) -> Option<EngineClient> {
        self.with_nodes(|nodes| nodes.get(key).map(|n| n.client.clone()))
    }

    /// Every node's handle.
    pub fn nodes(&self) -> Vec<NodeHandle> {
        self.with_nodes(|nodes| nodes.values().map(handle_of).collect())
    }

    /// The handle of the node with this key.
    pub fn node(&self, key: &str) -> Option<NodeHandle> {
        self.with_nodes(|nodes| nodes.get(key).map(handle_of))
    }

    /// Handles of healthy nodes.
    pub fn healthy_nodes(&self) -> Vec<NodeHandle> {
        self.nodes().into_iter().filter(|n| n.state == NodeState::Healthy).collect()
    }

    /// The node of this key or name.
    pub fn node_by_name(&self, name: &str) -> Option<NodeHandle> {
        let key = self.index().node_key(name)?;
        self.node(&key)
    }

    /// The lowest API version among validated engines: what the manager can promise.
    pub fn min_api_version(&self) -> Option<String> {
        self.shared.min_api_version.read().clone()
    }

    /// Lowers [`Cluster::min_api_version`] to `version`, an engine's that joined, if older:
    /// a scan of every engine per validation would be quadratic in engines.
    pub(crate) fn lower_min_api_version(&self, version: &str) {
        if version.is_empty() {
            return;
        }
        let mut min = self.shared.min_api_version.write();
        if min.as_deref().is_none_or(|m| crate::api_version::compare(version, m).is_lt()) {
            *min = Some(version.to_string());
        }
    }

    /// Recomputes [`Cluster::min_api_version`] after an engine's info changed or it left.
    pub(crate) fn update_min_api_version(&self) {
        // Held across the scan, so that a lowering for an engine validated meanwhile waits
        // for the scan's result instead of being overwritten by it.
        let mut current = self.shared.min_api_version.write();
        let min = self.with_nodes(|nodes| {
            nodes
                .values()
                .filter_map(|n| n.info.as_ref().map(|i| i.api_version.clone()))
                .filter(|v| !v.is_empty())
                .min_by(|a, b| crate::api_version::compare(a, b))
        });
        *current = min;
    }

    /// Serialises a scheduling decision with its reservation.
    pub fn schedule_lock(&self) -> MutexGuard<'_, ()> {
        self.shared.schedule.lock()
    }

    /// Reserves a create in flight until the guard drops.
    pub fn reserve(&self, pending: PendingCreate) -> PendingGuard {
        let token = self.shared.next_pending.fetch_add(1, Ordering::Relaxed);
        self.shared.pending.lock().insert(token, pending);
        PendingGuard { cluster: self.clone(), token }
    }

    /// A cached container's primary name.
    pub fn container_name(&self, node: &str, id: &str) -> Option<String> {
        self.with_nodes(|nodes| nodes.get(node).and_then(|n| n.containers.get(id)).map(|c| c.name().to_string()))
    }

    /// The ID of the container that holds `name` anywhere in the cluster (empty while a create
    /// holds it).
    pub fn name_holder(&self, name: &str) -> Option<String> {
        self.name_holder_for(name, None)
    }

    /// [`Cluster::name_holder`], for a create carrying `swarm_id`: a reschedule's create takes
    /// over the name of the container it moves (same swarm ID), which everyone else must find
    /// taken while it is out of the cache.
    pub fn name_holder_for(&self, name: &str, swarm_id: Option<&str>) -> Option<String> {
        let name = name.trim_start_matches('/');
        if self.name_pending(name) {
            return Some(String::new());
        }
        let moving = self
            .shared
            .moving
            .lock()
            .iter()
            .find(|(_, (n, s))| n.as_deref() == Some(name) && Some(s.as_str()) != swarm_id)
            .map(|(id, _)| id.clone());
        if moving.is_some() {
            return moving;
        }
        self.index().name_holder(name)
    }

    /// Whether a create in flight here holds `name`.
    pub fn name_pending(&self, name: &str) -> bool {
        let name = name.trim_start_matches('/');
        self.shared.pending.lock().values().any(|p| p.name.as_deref() == Some(name))
    }

    /// Waits, up to `deadline`, while a create in flight here holds `name`, or carries
    /// `swarm_id`; true once none does.
    pub async fn wait_not_pending(
        &self,
        name: Option<&str>,
        swarm_id: Option<&str>,
        deadline: tokio::time::Instant,
    ) -> bool {
        loop {
            // Registered before the check, so that an end between the two still wakes us.
            let done = self.shared.pending_done.notified();
            let held = name.is_some_and(|n| self.name_pending(n)) || swarm_id.is_some_and(|s| self.is_pending(s));
            if !held {
                return true;
            }
            if tokio::time::timeout_at(deadline, done).await.is_err() {
                return false;
            }
        }
    }

    /// Whether a create carrying this swarm ID is in flight here.
    pub fn is_pending(&self, swarm_id: &str) -> bool {
        self.shared
            .pending
            .lock()
            .values()
            .any(|p| p.view.labels.get(labels::SWARM_ID).map(String::as_str) == Some(swarm_id))
    }

    /// Whether any cached container carries this swarm ID.
    pub fn has_swarm_id(&self, swarm_id: &str) -> bool {
        self.index().has_swarm_id(swarm_id)
    }

    /// CPUs and memory reserved per node (containers of every state plus creates in flight):
    /// what `docker info` shows, without building the scheduler's views.
    pub fn reservations(&self) -> HashMap<String, (i64, i64)> {
        let mut out: HashMap<String, (i64, i64)> = self.with_nodes(|nodes| {
            nodes
                .values()
                .map(|n| {
                    let facts = &n.derived().facts;
                    (n.addr.clone(), (facts.engine_used_cpus, facts.engine_used_memory))
                })
                .collect()
        });
        for p in self.shared.pending.lock().values() {
            if let Some(r) = out.get_mut(&p.node) {
                r.0 = r.0.saturating_add(p.cpus);
                r.1 = r.1.saturating_add(p.memory);
            }
        }
        out
    }

    /// A copy of the scheduler's view, creates in flight included (tests read it; a create
    /// reads the view in place through [`Cluster::with_schedule_view`]).
    #[cfg(test)]
    pub fn snapshot(&self) -> Vec<NodeSnapshot> {
        self.with_schedule_view(&[], <[NodeSnapshot]>::to_vec)
    }

    /// Runs `f` over every node's snapshot but `excluded`'s, creates in flight counted: what a
    /// schedule decides on, read in place (a create does not copy the cluster). Call under
    /// [`Cluster::schedule_lock`] when the decision reserves.
    pub fn with_schedule_view<R>(&self, excluded: &[String], f: impl FnOnce(&[NodeSnapshot]) -> R) -> R {
        let pending: Vec<PendingCreate> = self.shared.pending.lock().values().cloned().collect();
        // Brought up to date, with what an earlier decision counted taken out again.
        let mut index = self.index();
        for p in pending {
            // A create that finished between reading the reservations and the cache is in
            // both: count it once.
            if p.view.labels.get(labels::SWARM_ID).is_some_and(|s| index.node_has_swarm_id(&p.node, s)) {
                continue;
            }
            if let Some(snap) = index.pending_on(&p.node) {
                snap.pending_cpus = snap.pending_cpus.saturating_add(p.cpus);
                snap.pending_memory = snap.pending_memory.saturating_add(p.memory);
                snap.pending.push(p.view);
            }
        }
        let result = if excluded.is_empty() {
            f(index.view())
        } else {
            let kept: Vec<NodeSnapshot> = index.view().iter().filter(|n| !excluded.contains(&n.key)).cloned().collect();
            f(&kept)
        };
        index.clear_pending();
        result
    }

    /// Resolves a container the classic way: full ID, swarm ID, name (`name`, `/name`,
    /// `node/name`), then a unique ID or swarm-ID prefix. Engines that left discovery lately
    /// are searched last, and resolve with the state `Disconnected`.
    pub fn find_container(&self, ident: &str) -> Result<ContainerRef, LookupError> {
        let ident = ident.trim_start_matches('/');
        if ident.is_empty() {
            return Err(LookupError::NotFound(ident.to_string()));
        }
        // A full ID seen before is looked up on its node only (checked there: it may have
        // moved or gone), not on every node.
        let remembered = self.shared.located.lock().get(ident).cloned();
        if let Some(found) = remembered.and_then(|key| {
            self.with_nodes(|nodes| nodes.get(&key).and_then(|n| n.containers.get(ident).map(|c| container_ref(n, c))))
        }) {
            return Ok(found);
        }
        let found = self.with_nodes(|nodes| lookup(nodes.values(), ident));
        if let Ok(r) = &found {
            self.remember_location(&r.id, &r.node);
        }
        match found {
            Err(LookupError::NotFound(_)) => {
                // An engine back in discovery stands for its departed self once read again.
                let reread: HashSet<String> = self.with_nodes(|nodes| {
                    nodes.values().filter(|n| n.updated_at.is_some()).map(|n| n.addr.clone()).collect()
                });
                let departed = self.shared.departed.lock();
                let recent = departed
                    .values()
                    .filter(|(n, at)| at.elapsed() < DEPARTED_MEMORY && !reread.contains(&n.addr))
                    .map(|(n, _)| n);
                lookup(recent, ident)
            }
            found => found,
        }
    }

    /// Remembers that container `id` is on node `key`, for [`Cluster::find_container`].
    pub fn remember_location(&self, id: &str, key: &str) {
        let mut located = self.shared.located.lock();
        if located.len() >= LOCATED_MEMORY {
            located.clear();
        }
        located.insert(id.to_string(), key.to_string());
    }

    /// Remembers which node an exec instance lives on.
    pub fn record_exec(&self, exec_id: &str, node: &str) {
        let mut execs = self.shared.execs.lock();
        if execs.len().is_multiple_of(512) {
            execs.retain(|_, (_, at)| at.elapsed() < EXEC_MEMORY);
        }
        execs.insert(exec_id.to_string(), (node.to_string(), std::time::Instant::now()));
    }

    /// The node of an exec instance, if this manager saw it created in the last
    /// [`EXEC_MEMORY`].
    pub fn exec_node(&self, exec_id: &str) -> Option<NodeHandle> {
        let key = self
            .shared
            .execs
            .lock()
            .get(exec_id)
            .filter(|(_, at)| at.elapsed() < EXEC_MEMORY)
            .map(|(node, _)| node.clone())?;
        self.node(&key)
    }

    /// Subscribes to the merged event stream.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Value>> {
        self.shared.events.subscribe()
    }

    /// Number of `docker events` listeners.
    pub fn event_listeners(&self) -> usize {
        self.shared.events.receiver_count()
    }

    pub(crate) fn publish(&self, event: Value) {
        // No subscriber is not an error: nobody is running `docker events`.
        let _ = self.shared.events.send(Arc::new(event));
    }

    fn emit_transition(&self, t: Transition, node: Value) {
        self.shared.metrics.node_transitions.with_label_values(&[t.action()]).inc();
        self.publish(events::swarm_event(t.action(), node));
    }

    /// Feeds an outcome of talking to `key` into its health; logs and emits transitions.
    pub(crate) fn record(&self, key: &str, outcome: Result<(), &EngineError>) {
        // Most outcomes are a healthy engine's probe: nothing to change, no write lock.
        if outcome.is_ok()
            && self.with_nodes(|nodes| nodes.get(key).is_some_and(|n| n.foreign.is_none() && n.health.is_clean()))
        {
            return;
        }
        let change = self.with_node_health(key, |n| {
            let t = match (outcome, &n.foreign) {
                (Ok(()), Some(foreign)) => n.health.failure(foreign.clone()),
                (Ok(()), None) => n.health.success(),
                (Err(e), _) => n.health.failure(error_chain(e)),
            };
            if t.is_none() && outcome.is_err() && n.health.failures() == 1 && n.health.state() == NodeState::Healthy {
                // The first failure already ranks the node last for placement: say why.
                info!(node = %n.name(), addr = %key, error = n.health.last_error().unwrap_or(""), "Engine call failed.");
            }
            t.map(|t| (t, events::node_fields(n), n.name().to_string(), n.health.last_error().map(str::to_string)))
        });
        if let Some(Some((t, fields, name, error))) = change {
            match t {
                Transition::Disconnected => {
                    tracing::warn!(node = %name, addr = %key, error = error.as_deref().unwrap_or(""), "Engine marked Unhealthy.")
                }
                _ => info!(node = %name, addr = %key, "Engine healthy again."),
            }
            self.emit_transition(t, fields);
            self.update_node_gauges();
        }
    }

    fn update_node_gauges(&self) {
        let counts = self.with_nodes(|nodes| {
            let mut counts: BTreeMap<&'static str, i64> = BTreeMap::new();
            for s in [NodeState::Pending, NodeState::Healthy, NodeState::Unhealthy, NodeState::Disconnected] {
                counts.insert(s.as_str(), 0);
            }
            for n in nodes.values() {
                *counts.entry(n.health.state().as_str()).or_default() += 1;
            }
            counts
        });
        for (state, count) in counts {
            self.shared.metrics.nodes.with_label_values(&[&state.to_ascii_lowercase()]).set(count);
        }
    }

    /// Stops every node task.
    pub fn shutdown(&self) {
        self.shared.cancel.cancel();
    }
}

/// `interval`, or longer when `engines` probed that often would pass `rate` probes a second.
fn probe_period(interval: std::time::Duration, engines: usize, rate: u32) -> std::time::Duration {
    interval.max(std::time::Duration::from_secs_f64(engines as f64 / f64::from(rate.max(1))))
}

/// An error with its sources, one line, for `docker info`'s `└ Error`.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// [`Cluster::find_container`] over one set of nodes.
fn lookup<'n>(nodes: impl Iterator<Item = &'n Node> + Clone, ident: &str) -> Result<ContainerRef, LookupError> {
    let not_found = || LookupError::NotFound(ident.to_string());
    let found = container_ref;
    let all = || nodes.clone().flat_map(|n| n.containers.values().map(move |c| (n, c)));
    // Exact IDs and names through each node's indexes; only prefixes scan every container.
    let indexed = |n: &'n Node, by: fn(&Derived) -> &keyed::Keyed, key: &str| {
        by(n.derived()).get(key).and_then(|held| n.containers.get(&held.id)).map(|c| (n, c))
    };
    let exact = nodes
        .clone()
        .find_map(|n| n.containers.get(ident).map(|c| (n, c)).or_else(|| indexed(n, |d| &d.swarm_ids, ident)));
    if let Some((n, c)) = exact {
        return Ok(found(n, c));
    }
    let (node_part, name_part) = match ident.split_once('/') {
        Some((node, name)) => (Some(node), name),
        None => (None, ident),
    };
    let by_name: Vec<_> = nodes
        .clone()
        .filter(|n| node_part.is_none_or(|np| np == n.name() || n.info.as_ref().is_some_and(|i| i.id == np)))
        .filter_map(|n| indexed(n, |d| &d.names, name_part))
        .collect();
    match by_name.as_slice() {
        [(n, c)] => return Ok(found(n, c)),
        [_, _, ..] => return Err(not_found()),
        [] => {}
    }
    let by_prefix: Vec<_> = all()
        .filter(|(_, c)| c.id.starts_with(ident) || c.swarm_id.as_deref().is_some_and(|s| s.starts_with(ident)))
        .collect();
    match by_prefix.as_slice() {
        [(n, c)] => Ok(found(n, c)),
        [] => Err(not_found()),
        _ => Err(LookupError::Ambiguous(ident.to_string())),
    }
}

fn container_ref(n: &Node, c: &CachedContainer) -> ContainerRef {
    ContainerRef {
        node: n.addr.clone(),
        node_name: n.name().to_string(),
        node_state: n.health.state(),
        id: c.id.clone(),
        client: n.client.clone(),
        api_version: n.info.as_ref().map(|i| i.api_version.clone()),
    }
}

fn handle_of(n: &Node) -> NodeHandle {
    NodeHandle {
        key: n.addr.clone(),
        name: n.name().to_string(),
        engine_id: n.engine_id(),
        client: n.client.clone(),
        state: n.health.state(),
        api_version: n.info.as_ref().map(|i| i.api_version.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one_node_cluster(addr: &str) -> Cluster {
        cluster_of(&[addr])
    }

    fn cluster_of(addrs: &[&str]) -> Cluster {
        let (_, metrics) = crate::metrics::new_registry().expect("registry");
        let files = crate::open_files::OpenFiles { limit: 1024, raised_from: None };
        let opts = ClusterOptions {
            timing: Timing::classic(),
            overcommit: 0.0,
            event_buffer: 16,
            tls: None,
            open_files: files,
        };
        let cluster = Cluster::new(opts, metrics, TaskTracker::new(), CancellationToken::new());
        for (i, addr) in addrs.iter().enumerate() {
            let info = EngineInfo::from_json(
                &json!({"ID": format!("E{}", i + 1), "Name": format!("node-{}", i + 1), "NCPU": 2, "MemTotal": 1 << 30}),
                &json!({"ApiVersion": "1.41"}),
            );
            add_node(&cluster, addr, info);
        }
        cluster
    }

    fn add_node(cluster: &Cluster, addr: &str, info: EngineInfo) {
        cluster.with_nodes_mut(|nodes| {
            nodes.insert(
                addr.to_string(),
                Node {
                    addr: addr.to_string(),
                    client: EngineClient::new(addr, std::time::Duration::from_secs(1)),
                    health: health::Health::new(3),
                    info: Some(info),
                    containers: HashMap::new(),
                    forgotten: HashMap::new(),
                    images: Default::default(),
                    updated_at: Some(std::time::SystemTime::now()),
                    foreign: None,
                    refused: false,
                    found_at: std::time::Instant::now(),
                    cancel: CancellationToken::new(),
                    overcommit: 0.0,
                    derived: Default::default(),
                    changes: cluster.shared.changes.clone(),
                },
            );
            cluster.shared.changes.mark(addr)
        });
    }

    #[test]
    fn a_create_both_reserved_and_cached_counts_once() {
        let cluster = one_node_cluster("127.0.0.1:1");
        let labels = BTreeMap::from([(labels::SWARM_ID.to_string(), "s1".to_string())]);
        let view = ContainerView { labels, ..Default::default() };
        let _reserved = cluster.reserve(PendingCreate {
            node: "127.0.0.1:1".into(),
            name: Some("c".into()),
            cpus: 0,
            memory: 0,
            view,
        });
        let config = json!({"Image": "busybox", "Labels": {labels::SWARM_ID: "s1"}});
        cluster.learn_created("127.0.0.1:1", "id1", Some("c"), config.as_object().expect("object"));
        assert_eq!(cluster.snapshot()[0].container_count(), 1);
    }

    #[test]
    fn a_container_being_rescheduled_is_found_as_moving_until_its_copy_is_cached() {
        let cluster = one_node_cluster("127.0.0.1:1");
        let config = json!({"Image": "busybox"});
        cluster.learn_created("127.0.0.1:1", "abc123", Some("web"), config.as_object().expect("object"));
        let moving = cluster.moving("abc123", Some("web".into()), "s1");
        cluster.supersede("127.0.0.1:1", "abc123");
        // Out of the cache: the lookup misses, and the miss must not read as "no such container".
        assert!(matches!(cluster.find_container("web"), Err(LookupError::NotFound(_))));
        assert!(
            cluster.is_moving("web")
                && cluster.is_moving("/web")
                && cluster.is_moving("abc")
                && cluster.is_moving("s1")
        );
        assert!(!cluster.is_moving("other") && !cluster.is_moving(""));
        // Its name stays taken, except for the reschedule's own create (same swarm ID).
        assert_eq!(cluster.name_holder("/web").as_deref(), Some("abc123"));
        assert_eq!(cluster.name_holder_for("web", Some("s1")), None);
        drop(moving);
        assert!(!cluster.is_moving("web"));
        assert_eq!(cluster.name_holder("web"), None);
    }

    #[test]
    fn the_index_follows_each_change_and_counts_creates_in_flight_only_while_deciding() {
        let cluster = one_node_cluster("127.0.0.1:1");
        assert_eq!(cluster.node_by_name("node-1").map(|h| h.key).as_deref(), Some("127.0.0.1:1"));
        assert_eq!(cluster.node_by_name("127.0.0.1:1").map(|h| h.name).as_deref(), Some("node-1"));
        assert!(cluster.node_by_name("node-2").is_none());
        let config = json!({"Image": "busybox", "Labels": {labels::SWARM_ID: "s1"}});
        cluster.learn_created("127.0.0.1:1", "id1", Some("web"), config.as_object().expect("object"));
        assert_eq!(cluster.name_holder("web").as_deref(), Some("id1"));
        assert!(cluster.has_swarm_id("s1"));
        let _reserved = cluster.reserve(PendingCreate {
            node: "127.0.0.1:1".into(),
            name: None,
            cpus: 1,
            memory: 0,
            view: ContainerView::default(),
        });
        assert_eq!(cluster.with_schedule_view(&[], |v| (v[0].container_count(), v[0].used_cpus())), (2, 1));
        assert!(cluster.with_schedule_view(&["127.0.0.1:1".to_string()], <[NodeSnapshot]>::is_empty));
        drop(_reserved);
        assert_eq!(cluster.with_schedule_view(&[], |v| (v[0].container_count(), v[0].used_cpus())), (1, 0));
        cluster.with_node_health("127.0.0.1:1", |n| n.health.validated());
        assert_eq!(cluster.snapshot()[0].health_indicator, 100);
        cluster.with_node_health("127.0.0.1:1", |n| n.health.failure("down".into()));
        assert!(cluster.snapshot()[0].health_indicator < 100, "a health change reaches the view");
        cluster.forget_container("127.0.0.1:1", "id1");
        assert_eq!(cluster.name_holder("web"), None);
        assert!(!cluster.has_swarm_id("s1"));
        cluster.apply_entries(&BTreeSet::new());
        assert!(cluster.snapshot().is_empty() && cluster.node_by_name("node-1").is_none());
    }

    #[test]
    fn the_probe_period_stretches_to_keep_the_probe_rate() {
        let second = std::time::Duration::from_secs(1);
        assert_eq!(probe_period(second, 10, 250), second);
        assert_eq!(probe_period(second, 1000, 250), 4 * second);
        assert_eq!(probe_period(second, 5000, 0), 5000 * second);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rereads_asked_while_one_runs_share_one_read_that_starts_after_them() {
        // An engine that accepts and never answers: each read lasts the client's 1 s timeout.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address").to_string();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        let cluster = one_node_cluster(&addr);
        let ask = |cluster: &Cluster| {
            let (cluster, addr) = (cluster.clone(), addr.clone());
            tokio::spawn(async move { cluster.refresh_container(&addr, "c1").await })
        };
        let first = ask(&cluster);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let asked_at = std::time::Instant::now();
        let later: Vec<_> = (0..10).map(|_| ask(&cluster)).collect();
        for t in later {
            t.await.expect("ask");
        }
        let waited = asked_at.elapsed();
        first.await.expect("first ask");
        // The read running when they asked may have missed what they ask about.
        assert!(
            waited >= std::time::Duration::from_millis(1500),
            "served by the read already running: answered after {waited:?}"
        );
        assert_eq!(cluster.metrics().rereads_asked.get(), 11);
        assert_eq!(cluster.metrics().rereads.get(), 2, "eleven asks, two reads");
        // Nothing in flight: the next ask reads again.
        ask(&cluster).await.expect("ask");
        assert_eq!(cluster.metrics().rereads.get(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn whole_engine_reads_take_turns() {
        // Engines that accept and never answer: each read lasts the client's 1 s timeout.
        let accepted = Arc::new(AtomicUsize::new(0));
        let mut addrs = Vec::new();
        for _ in 0..refresh::FULL_READS_AT_ONCE + 8 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            addrs.push(listener.local_addr().expect("address").to_string());
            let accepted = accepted.clone();
            tokio::spawn(async move {
                let mut held = Vec::new();
                while let Ok((conn, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    held.push(conn);
                }
            });
        }
        let cluster = cluster_of(&addrs.iter().map(String::as_str).collect::<Vec<_>>());
        let reads: Vec<_> = addrs
            .iter()
            .map(|a| {
                let (cluster, a) = (cluster.clone(), a.clone());
                tokio::spawn(async move { cluster.refresh_node(&a).await })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), refresh::FULL_READS_AT_ONCE, "engines read at once");
        for r in reads {
            assert!(r.await.expect("read").is_err(), "an engine that does not answer fails its read");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), addrs.len(), "each engine's turn came");
    }

    #[test]
    fn a_patch_dated_by_its_event_yields_to_the_events_read() {
        let (node, id) = ("127.0.0.1:1", "c1");
        let cluster = one_node_cluster(node);
        let config = json!({"Image": "busybox"});
        cluster.learn_created(node, id, Some("web"), config.as_object().expect("object"));
        cluster.patch_container(node, id, |c| c.placeholder = false);
        let entry = || cluster.with_nodes(|n| n[node].containers[id].clone());
        let sent = std::time::Instant::now();
        // The start's event came, and its read began, before the answer was handled.
        let event_came = std::time::Instant::now();
        let read_began = std::time::Instant::now();
        cluster.patch_container_as_of(node, id, sent, event_came, |c| c.set_run(|r| r.start()));
        assert!(entry().state() == "running", "the patch applies");
        assert!(refresh::read_replaces(&entry(), read_began), "the event's read is as new as the change");
        // A read that began before the event is older than the change.
        let old_read = sent - std::time::Duration::from_millis(1);
        assert!(!refresh::read_replaces(&entry(), old_read));
        // Dated by the answer instead, the patch would win over the event's read.
        cluster.patch_container_unless_newer(node, id, std::time::Instant::now(), |c| c.set_run(|r| r.start()));
        assert!(!refresh::read_replaces(&entry(), read_began));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_rereads_its_container_only_when_its_event_does_not_come() {
        let cluster = one_node_cluster("127.0.0.1:1");
        let node = "127.0.0.1:1";
        // The event overtakes the answer: it dates the change, and no re-read of its own.
        let mut early = cluster.await_event(node, "c1", "start");
        let before = std::time::Instant::now();
        cluster.event_arrived(node, "c1", "start");
        assert!(early.arrived_early().is_some_and(|at| at >= before && at <= std::time::Instant::now()));
        early.reread_unless_it_comes();
        // The event comes after the answer, within the grace.
        let mut late = cluster.await_event(node, "c2", "stop");
        assert_eq!(late.arrived_early(), None);
        late.reread_unless_it_comes();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        cluster.event_arrived(node, "c2", "stop");
        // Another event, another node, or none: a re-read once the grace is over.
        for (key, action) in [(node, "die"), ("127.0.0.1:2", "start"), (node, "")] {
            let lost = cluster.await_event(node, "c3", "start");
            if !action.is_empty() {
                cluster.event_arrived(key, "c3", action);
            }
            lost.reread_unless_it_comes();
        }
        // A change that failed stops waiting.
        drop(cluster.await_event(node, "c4", "kill"));
        tokio::time::sleep(awaited::EVENT_GRACE / 2).await;
        assert_eq!(cluster.metrics().rereads_asked.get(), 0, "nothing re-read within the grace");
        tokio::time::sleep(awaited::EVENT_GRACE).await;
        assert_eq!(cluster.metrics().rereads_asked.get(), 3, "one re-read per change whose event did not come");
        assert!(cluster.shared.awaited.is_idle(), "no change left waiting");
    }
}

//! Reading an engine into the cache: validation, full refreshes, and targeted refreshes of one
//! container or the image list after an event or a write through the manager.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde_json::value::RawValue;
use serde_json::Value;
use tracing::{debug, info};

use super::node::{images_from_json, CachedContainer, ContainerFacts, EngineInfo, Summary};
use super::{events, Cluster};
use crate::transport::{EngineClient, EngineError};

fn percent(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Whole-engine reads at once. A manager that starts, or a network that heals, meets every
/// engine at once: reading all of them together held every engine's answers in memory at the
/// same time (a heap peak that stayed resident as fragments), for no gain in time, as parsing
/// is bound by the CPU. An engine that does not answer holds its turn for one call's timeout.
pub const FULL_READS_AT_ONCE: usize = 32;

impl Cluster {
    /// Reads `/info` and `/version`, refuses what is not a usable engine, fills the caches and
    /// marks the node healthy.
    pub(crate) async fn validate(&self, key: &str) -> Result<(), EngineError> {
        let client = self.client_of(key).ok_or_else(|| gone(key))?;
        let (info, version) = tokio::try_join!(client.get_json("/info"), client.get_json("/version"))?;
        let engine = EngineInfo::from_json(&info, &version);
        if engine.ncpu == 0 || engine.mem_total == 0 {
            return Err(EngineError::Refused {
                addr: key.to_string(),
                reason: format!(
                    "cannot get resources for this engine, make sure {key} is a Docker Engine, not a Swarm manager"
                ),
            });
        }
        let (id, name, api_version) = (engine.id.clone(), engine.name.clone(), engine.api_version.clone());
        // Checked and claimed under one write lock: two clones validating at once must not
        // both see the other without an ID yet.
        let claimed = self.with_nodes_mut(|nodes| {
            let other = nodes
                .values()
                .find(|n| n.addr != key && n.info.as_ref().is_some_and(|i| i.id == id))
                .map(|n| n.addr.clone());
            if let Some(other) = other {
                return Err(other);
            }
            // The version it had before, if validated before (a refresh failed after it).
            let before = nodes.get_mut(key).map(|n| {
                n.changed();
                n.info.replace(engine).map(|i| i.api_version)
            });
            Ok(before.flatten())
        });
        match claimed {
            Err(other) => {
                return Err(EngineError::Refused {
                    addr: key.to_string(),
                    reason: format!("ID duplicated. {id} shared by this node {key} and another node {other}"),
                });
            }
            Ok(Some(before)) if before != api_version => self.update_min_api_version(),
            Ok(_) => self.lower_min_api_version(&api_version),
        }
        self.refresh_node(key).await?;
        let transition = self.with_node_health(key, |n| n.health.validated().map(|t| (t, events::node_fields(n))));
        if let Some(Some((t, fields))) = transition {
            info!(node = %name, addr = %key, "Registered Engine.");
            self.emit_transition(t, fields);
            self.update_node_gauges();
        }
        Ok(())
    }

    /// Re-reads a node's info, every container and the image list.
    pub async fn refresh_node(&self, key: &str) -> Result<(), EngineError> {
        // Closed only if the cluster is dropped; then reading on is harmless.
        let _permit = self.shared.full_reads.acquire().await.ok();
        let started = Instant::now();
        // Boxed: each node's resident tasks would otherwise hold room for a whole refresh's
        // state at all times (kilobytes per engine).
        let result = Box::pin(self.refresh_node_inner(key, started)).await;
        // The index takes the node's new containers here, in the background, rather than in
        // the next create: the first create after a quiet minute at 1,000 engines re-derived
        // every node refreshed meanwhile (22 ms after the start).
        self.sync_index();
        self.metrics().refresh_duration.observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.metrics().refresh_errors.inc();
        }
        result
    }

    async fn refresh_node_inner(&self, key: &str, started: Instant) -> Result<(), EngineError> {
        let client = self.client_of(key).ok_or_else(|| gone(key))?;
        // One after another on the kept-alive connection: concurrent calls would each open
        // (and close) a connection, which is most of a refresh's cost at a thousand engines.
        let info = client.get_json("/info").await?;
        let version = client.get_json("/version").await?;
        self.check_same_engine(key, &info)?;
        // What the cache holds is as of this listing, not of the refresh's end.
        let listed_at = SystemTime::now();
        // Left unparsed: each summary is kept as its text, and a parsed list of thirty
        // containers is a few hundred kilobytes, at every engine at once after a start.
        let list = client.get_ok("/containers/json?all=1").await?;
        let list: Vec<&RawValue> = serde_json::from_slice(&list).map_err(|e| client.protocol_error(e))?;
        let images = client.get_json("/images/json").await?;
        let known: HashMap<String, ContainerFacts> = self
            .with_nodes(|nodes| {
                nodes.get(key).map(|n| n.containers.iter().map(|(k, c)| (k.clone(), c.facts.clone())).collect())
            })
            .unwrap_or_default();
        let mut fresh = HashMap::new();
        for raw in list {
            let summary = Summary::from_text(raw.get().to_string());
            let head = summary.head();
            let Some(id) = head.id.clone() else { continue };
            if self.is_superseded(&id) {
                continue;
            }
            // Known facts serve unless the state moved without an event reaching us.
            let facts = match known.get(&id).filter(|f| head.state.as_deref() == Some(f.run.state())) {
                Some(f) => f.clone(),
                None => match client.get_json(&format!("/containers/{id}/json")).await {
                    Ok(inspect) => ContainerFacts::from_inspect(&inspect),
                    // Removed between list and inspect: the next event or refresh settles it.
                    Err(EngineError::Status { .. }) => continue,
                    Err(e) => return Err(e),
                },
            };
            let mut c = CachedContainer::from_parts(summary, head, facts);
            c.written = started;
            fresh.insert(id, Arc::new(c));
        }
        let engine = EngineInfo::from_json(&info, &version);
        let api_version_changed = self.with_node_mut(key, |n| {
            // What was learnt after this refresh listed the engine is newer than the list: a
            // create through the manager, an event's re-read, a removal.
            for (id, c) in n.containers.drain() {
                if c.written > started && !(c.placeholder && fresh.contains_key(&id)) {
                    fresh.insert(id, c);
                }
            }
            fresh.retain(|id, _| n.forgotten.get(id).is_none_or(|at| *at <= started));
            n.forgotten.retain(|_, at| *at > started);
            n.containers = fresh;
            n.images = Arc::new(images_from_json(&images));
            let mut changed = false;
            if n.info.as_ref().is_some_and(|old| old.id == engine.id) {
                changed = n.info.as_ref().is_some_and(|old| old.api_version != engine.api_version);
                n.info = Some(engine);
            }
            n.updated_at = Some(listed_at);
            changed
        });
        // Every engine's refresh would otherwise rescan every engine.
        if api_version_changed == Some(true) {
            self.update_min_api_version();
        }
        debug!(addr = %key, "Engine refreshed.");
        Ok(())
    }

    /// Reads one container; forgets it when the engine no longer has it. Callers go through
    /// [`Cluster::refresh_container`], which shares reads asked for at once.
    pub(super) async fn read_container(&self, key: &str, id: &str) -> Result<(), EngineError> {
        let started = Instant::now();
        let client = self.client_of(key).ok_or_else(|| gone(key))?;
        let filter = percent(&format!("{{\"id\":[\"{id}\"]}}"));
        let list = client.get_ok(&format!("/containers/json?all=1&filters={filter}")).await?;
        let list: Vec<&RawValue> = serde_json::from_slice(&list).map_err(|e| client.protocol_error(e))?;
        let found = list
            .iter()
            .map(|raw| Summary::from_text(raw.get().to_string()))
            .map(|s| (s.head(), s))
            .find(|(h, _)| h.id.as_deref() == Some(id));
        let Some((head, summary)) = found.filter(|_| !self.is_superseded(id)) else {
            self.forget_container(key, id);
            return Ok(());
        };
        let inspect = match client.get_json(&format!("/containers/{id}/json")).await {
            Ok(v) => v,
            Err(EngineError::Status { .. }) => {
                self.forget_container(key, id);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let entry = CachedContainer::from_parts(summary, head, ContainerFacts::from_inspect(&inspect));
        self.with_node_mut(key, |n| {
            if n.containers.get(id).is_none_or(|old| read_replaces(old, started)) {
                n.containers.insert(id.to_string(), Arc::new(entry));
            }
        });
        Ok(())
    }

    /// Records a container the manager has just created, from the create request itself, so
    /// that it is routable at once (the CLI sends `wait` before `start`, on another
    /// connection) without another round trip; the engine's `create` event re-reads it.
    pub fn learn_created(&self, key: &str, id: &str, name: Option<&str>, config: &serde_json::Map<String, Value>) {
        let created = SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let summary = serde_json::json!({
            "Id": id,
            "Names": name.map(|n| vec![format!("/{n}")]).unwrap_or_default(),
            "Image": config.get("Image").cloned().unwrap_or_default(),
            "ImageID": "",
            "Command": config.get("Cmd").and_then(Value::as_array)
                .map(|c| c.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ")).unwrap_or_default(),
            "Created": created.as_secs(),
            "Ports": [],
            "Labels": config.get("Labels").cloned().unwrap_or_else(|| serde_json::json!({})),
            "State": "created",
            "Status": "Created",
            "HostConfig": {"NetworkMode": config.get("HostConfig").and_then(|h| h.get("NetworkMode")).cloned().unwrap_or_else(|| "default".into())},
            "NetworkSettings": {"Networks": {}},
            "Mounts": [],
        });
        let as_inspect =
            serde_json::json!({"HostConfig": config.get("HostConfig").cloned().unwrap_or_default(), "Config": config});
        let mut facts = ContainerFacts::from_inspect(&as_inspect);
        facts.created_subsec_ns = created.subsec_nanos();
        let mut entry = CachedContainer::new(summary, facts);
        entry.placeholder = true;
        self.with_node_mut(key, |n| {
            n.containers.entry(id.to_string()).or_insert_with(|| Arc::new(entry));
        });
        self.remember_location(id, key);
    }

    /// Applies what a successful change through the manager implies (a start runs the
    /// container), so that the next `docker ps` agrees without waiting for the engine's event.
    pub fn patch_container(&self, key: &str, id: &str, patch: impl FnOnce(&mut CachedContainer)) {
        self.with_node_mut(key, |n| {
            if let Some(c) = n.containers.get_mut(id).map(Arc::make_mut) {
                patch(c);
                c.written = Instant::now();
            }
        });
    }

    /// Like [`Cluster::patch_container`], unless the entry was written after `since`.
    pub fn patch_container_unless_newer(
        &self,
        key: &str,
        id: &str,
        since: Instant,
        patch: impl FnOnce(&mut CachedContainer),
    ) {
        self.patch_container_as_of(key, id, since, Instant::now(), patch);
    }

    /// [`Cluster::patch_container_unless_newer`], with the patch dated `as_of`: a read that
    /// starts after `as_of` replaces it.
    pub fn patch_container_as_of(
        &self,
        key: &str,
        id: &str,
        since: Instant,
        as_of: Instant,
        patch: impl FnOnce(&mut CachedContainer),
    ) {
        self.with_node_mut(key, |n| {
            if let Some(c) = n.containers.get_mut(id).filter(|c| c.written <= since).map(Arc::make_mut) {
                patch(c);
                c.written = as_of;
            }
        });
    }

    /// Drops a container found gone from the cache, and remembers for a while that it was
    /// removed: the rescheduler must not bring back what a user removed. A copy being
    /// rescheduled is not marked: its going (the stale copy's cleanup, or a read of an
    /// engine that no longer has it) is no user's removal, and marking it would make the
    /// rescheduler remove the new copy too.
    pub fn forget_container(&self, key: &str, id: &str) {
        if self.is_superseded(id) {
            self.drop_from_cache(key, id);
            return;
        }
        self.drop_from_cache(key, id);
        remember(&self.shared.removed, id);
    }

    /// Drops a container a client removed through the manager from the cache, and remembers
    /// that it was removed, rescheduled or not, by its ID and by its swarm ID: a copy that an
    /// earlier reschedule left behind must not stand in for it.
    pub fn forget_removed(&self, key: &str, id: &str) {
        let dropped = self.drop_from_cache(key, id);
        remember(&self.shared.removed, id);
        if let Some(swarm_id) = dropped.as_ref().and_then(|c| c.swarm_id.as_deref()) {
            remember(&self.shared.removed_by_user, swarm_id);
        }
    }

    /// Whether `id` was removed in the last [`super::REMOVED_MEMORY`].
    pub fn was_removed(&self, id: &str) -> bool {
        self.shared.removed.lock().get(id).is_some_and(|at| at.elapsed() < super::REMOVED_MEMORY)
    }

    /// Whether a client removed a copy of `swarm_id` in the last [`super::REMOVED_MEMORY`].
    pub fn was_removed_by_user(&self, swarm_id: &str) -> bool {
        self.shared.removed_by_user.lock().get(swarm_id).is_some_and(|at| at.elapsed() < super::REMOVED_MEMORY)
    }

    /// Records that a client stopped `id` (or, with `false`, started it again): a container a
    /// user stopped is not restarted elsewhere when its node fails soon after.
    pub fn stopped_by_user(&self, id: &str, stopped: bool) {
        let mut marks = self.shared.user_stopped.lock();
        if stopped {
            marks.insert(id.to_string(), Instant::now());
        } else {
            marks.remove(id);
        }
        if marks.len().is_multiple_of(512) {
            marks.retain(|_, at| at.elapsed() < super::REMOVED_MEMORY);
        }
    }

    /// Whether a client stopped `id` (and did not start it again) in the last
    /// [`super::REMOVED_MEMORY`].
    pub fn was_stopped_by_user(&self, id: &str) -> bool {
        self.shared.user_stopped.lock().get(id).is_some_and(|at| at.elapsed() < super::REMOVED_MEMORY)
    }

    /// Records that a reschedule replaced `original` with `copy`.
    pub fn record_replacement(&self, copy: &str, original: &str) {
        let mut map = self.shared.replacements.lock();
        map.insert(copy.to_string(), (original.to_string(), Instant::now()));
        if map.len().is_multiple_of(512) {
            map.retain(|_, (_, at)| at.elapsed() < super::REMOVED_MEMORY);
        }
    }

    /// The cached replacements of `original` made by reschedules, as `(node, id, client)`: a
    /// user who removes the original (a removal that raced its reschedule) removes them too.
    pub fn replacements_of(&self, original: &str) -> Vec<(String, String, EngineClient)> {
        let copies: Vec<String> = self
            .shared
            .replacements
            .lock()
            .iter()
            .filter(|(_, (o, _))| o == original)
            .map(|(c, _)| c.clone())
            .collect();
        if copies.is_empty() {
            return Vec::new();
        }
        self.with_nodes(|nodes| {
            nodes
                .iter()
                .flat_map(|(k, n)| {
                    n.containers
                        .keys()
                        .filter(|id| copies.contains(id))
                        .map(move |id| (k.clone(), id.clone(), n.client.clone()))
                })
                .collect()
        })
    }

    fn drop_from_cache(&self, key: &str, id: &str) -> Option<Arc<CachedContainer>> {
        self.with_node_mut(key, |n| {
            n.forgotten.insert(id.to_string(), Instant::now());
            n.containers.remove(id)
        })
        .flatten()
    }

    /// Marks a container as replaced by a reschedule: it leaves the cache and stays out of it
    /// (its node may come back with it) until the leader has removed it from its engine.
    /// Returns the cached entry it took out, for [`Cluster::restore_superseded`].
    pub fn supersede(&self, key: &str, id: &str) -> Option<Arc<CachedContainer>> {
        self.shared.superseded.write().insert(id.to_string());
        self.drop_from_cache(key, id)
    }

    /// Undoes [`Cluster::supersede`] for a reschedule that failed: the original is cached again
    /// as it was, so lookups find it (and refuse it on its failed node) instead of missing it.
    pub fn restore_superseded(&self, key: &str, original: Arc<CachedContainer>) {
        self.shared.superseded.write().remove(&original.id);
        self.with_node_mut(key, |n| {
            n.forgotten.remove(&original.id);
            n.containers.entry(original.id.clone()).or_insert(original);
        });
    }

    /// Marks `id` (named `name`) as being rescheduled until the guard drops: a lookup that
    /// misses it then is told to retry, not "No such container", which `rm -f` takes for done.
    pub fn moving(&self, id: &str, name: Option<String>, swarm_id: &str) -> Moving {
        self.shared.moving.lock().insert(id.to_string(), (name, swarm_id.to_string()));
        Moving { cluster: self.clone(), id: id.to_string() }
    }

    /// Whether `ident` (an ID or swarm ID, a prefix of either, or a name) names a container
    /// being rescheduled.
    pub fn is_moving(&self, ident: &str) -> bool {
        let name = ident.trim_start_matches('/');
        !name.is_empty()
            && self.shared.moving.lock().iter().any(|(id, (n, swarm_id))| {
                id.starts_with(name) || swarm_id.starts_with(name) || n.as_deref() == Some(name)
            })
    }

    /// Lets a container back into the cache (its reschedule failed, or it is gone).
    pub fn unsupersede(&self, id: &str) {
        self.shared.superseded.write().remove(id);
    }

    /// Whether a reschedule replaced this container.
    pub fn is_superseded(&self, id: &str) -> bool {
        self.shared.superseded.read().contains(id)
    }

    /// Whether `key` is a node whose address answers as another engine.
    pub fn is_foreign(&self, key: &str) -> bool {
        self.with_nodes(|nodes| nodes.get(key).is_some_and(|n| n.foreign.is_some()))
    }

    /// Refuses an `/info` whose ID is not the node's validated engine's (its address reused by
    /// another engine): that engine's containers must not replace this node's, which a
    /// rescheduler would then take for removed. As classic Swarm, the node stays failed until
    /// its own engine answers again or it leaves discovery.
    fn check_same_engine(&self, key: &str, info: &Value) -> Result<(), EngineError> {
        let seen = info["ID"].as_str().unwrap_or_default();
        let (reason, newly) = self
            .with_node_health(key, |n| {
                let reason = n.info.as_ref().filter(|i| i.id != seen).map(|i| {
                    format!("Engine (ID: {}, Addr: {key}) shows up with another ID: {seen}. Remove it from discovery; it can be added back.", i.id)
                });
                let newly = reason.is_some() && n.foreign.is_none();
                n.foreign = reason.clone();
                (reason, newly)
            })
            .unwrap_or((None, false));
        let Some(reason) = reason else { return Ok(()) };
        if newly {
            tracing::error!(addr = %key, error = %reason, "Engine address answers as another engine.");
        }
        Err(EngineError::Refused { addr: key.to_string(), reason })
    }

    /// Re-reads a node's image list.
    pub async fn refresh_images(&self, key: &str) -> Result<(), EngineError> {
        let client = self.client_of(key).ok_or_else(|| gone(key))?;
        let images = client.get_json("/images/json").await?;
        self.with_node_mut(key, |n| n.images = Arc::new(images_from_json(&images)));
        Ok(())
    }

    /// Applies one engine event to the cache, then publishes it tagged with its node.
    pub(crate) async fn apply_event(&self, key: &str, event: Value) {
        let kind = event["Type"].as_str().unwrap_or_default().to_string();
        let action = event["Action"].as_str().or(event["status"].as_str()).unwrap_or_default().to_string();
        let id = event.pointer("/Actor/ID").or(event.get("id")).and_then(Value::as_str).unwrap_or_default().to_string();
        let outcome = match kind.as_str() {
            "container" if action == "destroy" => {
                self.forget_container(key, &id);
                Ok(())
            }
            // Classic list of actions that change nothing the cache holds.
            "container"
                if action.starts_with("exec_")
                    || matches!(
                        action.as_str(),
                        "top" | "resize" | "export" | "attach" | "detach" | "copy" | "archive-path" | "extract-to-dir"
                    ) =>
            {
                Ok(())
            }
            "container" if !id.is_empty() => {
                self.event_arrived(key, &id, &action);
                self.refresh_container(key, &id).await;
                Ok(())
            }
            "image" => self.refresh_images(key).await,
            _ => Ok(()),
        };
        if let Err(e) = outcome {
            debug!(addr = %key, error = %e, "Refresh after event failed.");
        }
        let node = self.with_nodes(|nodes| nodes.get(key).map(events::node_fields));
        if let Some(node) = node {
            self.publish(events::normalize(event, &node));
        }
    }
}

/// Whether a read of a container that started at `started` replaces the cached `old`: not
/// when something was learnt while it read (an exit seen by `wait`, a change's patch dated
/// after the read began).
pub(super) fn read_replaces(old: &CachedContainer, started: Instant) -> bool {
    old.written <= started || old.placeholder
}

fn gone(key: &str) -> EngineError {
    EngineError::Refused { addr: key.to_string(), reason: format!("engine {key} left discovery") }
}

/// A reschedule in progress, from taking the original out of the cache until its new copy is in.
pub struct Moving {
    cluster: Cluster,
    id: String,
}

impl Drop for Moving {
    fn drop(&mut self) {
        self.cluster.shared.moving.lock().remove(&self.id);
    }
}

/// Marks `key` in a removal memory, dropping marks older than [`super::REMOVED_MEMORY`] now and
/// then so that the memory stays bounded.
fn remember(marks: &parking_lot::Mutex<HashMap<String, Instant>>, key: &str) {
    let mut marks = marks.lock();
    marks.insert(key.to_string(), Instant::now());
    if marks.len().is_multiple_of(512) {
        marks.retain(|_, at| at.elapsed() < super::REMOVED_MEMORY);
    }
}

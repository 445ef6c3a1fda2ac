//! A create sent again under its request key (a resend after the leader that ran it died): the
//! container's swarm ID is the key, so what an earlier run made is found by it, in the cache or
//! on the engine its record of the create in flight names, and given back instead of a second
//! container.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use serde_json::json;

use super::create::{store_failure, CreateRequest, Created, InFlight, CREATES_PREFIX};
use super::{orphans, Error, Orchestrator};
use crate::cluster::{labels, PendingCreate};
use crate::scheduler::ContainerView;

/// How long an engine gets to finish a create that an earlier leader sent it just before it
/// died, before the create counts as never made.
const ENGINE_SETTLE: Duration = Duration::from_millis(300);

fn answer_for(node: String, id: String) -> Created {
    let answer = Bytes::from(json!({ "Id": id, "Warnings": [] }).to_string() + "\n");
    Created { node, id, answer, content_type: Some(HeaderValue::from_static("application/json")) }
}

impl Orchestrator {
    /// The container an earlier run of this create made, if any; a record of that run still
    /// in flight is settled first (and dropped when the engine never made it).
    pub(super) async fn earlier_run(&self, swarm_id: &str, req: &CreateRequest) -> Result<Option<Created>, Error> {
        let inner = &self.inner;
        // A cleanup of that earlier run (the rescheduler's) holds its swarm ID while it works.
        let deadline = tokio::time::Instant::now() + inner.settings.create_timeout;
        inner.cluster.wait_not_pending(None, Some(swarm_id), deadline).await;
        if let Ok(c) = inner.cluster.find_container(swarm_id) {
            return Ok(Some(answer_for(c.node, c.id)));
        }
        let key = format!("{CREATES_PREFIX}{swarm_id}");
        let records = inner.store.list(key.clone()).await.map_err(store_failure)?;
        let Some(record) =
            records.iter().find(|(k, _)| *k == key).and_then(|(_, v)| serde_json::from_slice::<InFlight>(v).ok())
        else {
            return Ok(None);
        };
        // Ours while it is settled: the rescheduler leaves records of pending swarm IDs alone.
        let _held = inner.cluster.reserve(PendingCreate {
            node: record.node.clone(),
            name: None,
            cpus: 0,
            memory: 0,
            view: ContainerView {
                labels: [(labels::SWARM_ID.to_string(), swarm_id.to_string())].into(),
                ..Default::default()
            },
        });
        if let Some(handle) = inner.cluster.node(&record.node) {
            let path = orphans::list_by_label(&format!("{}={swarm_id}", labels::SWARM_ID));
            for look in 0..2 {
                let found = handle.client.get_json(&path).await.map_err(|e| {
                    Error::new(
                        http::StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "an earlier attempt of this create went to node {}, which does not answer: {}",
                            handle.name,
                            crate::cluster::error_chain(&e)
                        ),
                    )
                })?;
                if let Some(id) = found.as_array().and_then(|a| a.first()).and_then(|c| c["Id"].as_str()) {
                    tracing::info!(swarm_id = %swarm_id, node = %handle.name, id = %id, "A create sent again had been made by an earlier leader; answering with it.");
                    inner.cluster.learn_created(&record.node, id, req.name.as_deref(), &req.config);
                    let _ = inner.store.delete(key).await;
                    return Ok(Some(answer_for(record.node, id.to_string())));
                }
                if look == 0 {
                    tokio::time::sleep(ENGINE_SETTLE).await;
                }
            }
        }
        inner.store.delete(key).await.map_err(store_failure)?;
        Ok(None)
    }
}

/// Where a change of a container sent with a request ID is recorded before the engine hears
/// of it, by request key.
pub const CHANGES_PREFIX: &str = "changes/";

/// What a container looked like before a change, recorded with the change.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Begun {
    action: String,
    id: String,
    started_at: Option<String>,
}

/// The engine's view of a container, as far as a change's evidence goes.
struct Seen {
    running: bool,
    paused: bool,
    started_at: Option<String>,
    name: String,
}

async fn seen(c: &crate::cluster::ContainerRef) -> Result<Seen, Error> {
    let doc = c.client.get_json(&format!("/containers/{}/json", c.id)).await?;
    let s = &doc["State"];
    Ok(Seen {
        running: s["Running"].as_bool().unwrap_or(false),
        paused: s["Paused"].as_bool().unwrap_or(false),
        started_at: s["StartedAt"].as_str().map(str::to_string),
        name: doc["Name"].as_str().unwrap_or_default().trim_start_matches('/').to_string(),
    })
}

/// What an earlier run of a container change did, as far as the store and the engine tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlierRun {
    /// None began: this run records the change and makes it.
    None,
    /// One began, and the engine shows it done: answer as done.
    Applied,
    /// One began, and the engine does not show it done (it never reached the engine, or the
    /// engine is still at it): this run makes it.
    Unsettled,
}

impl Orchestrator {
    /// Before `action` on container `c`, asked under request `key`: what an earlier run of this
    /// very request (by a leader that then died or stepped down) did, as the engine shows; when
    /// none began, the change is recorded first. `new_name` is a rename's.
    pub async fn change_applied_before(
        &self,
        key: &str,
        c: &crate::cluster::ContainerRef,
        action: &str,
        new_name: Option<&str>,
    ) -> Result<EarlierRun, Error> {
        // A single manager has no successor: its journal answers its own resends.
        if !self.inner.leadership.is_replicated() {
            return Ok(EarlierRun::None);
        }
        let store = &self.inner.store;
        let record_key = format!("{CHANGES_PREFIX}{key}");
        let records = store.list(record_key.clone()).await.map_err(store_failure)?;
        let earlier =
            records.iter().find(|(k, _)| *k == record_key).and_then(|(_, v)| serde_json::from_slice::<Begun>(v).ok());
        // Only a start's evidence needs the state before it: its start time.
        let starts = matches!(action, "start" | "restart");
        if let Some(b) = earlier.filter(|b| b.id == c.id && b.action == action) {
            let now = seen(c).await?;
            let applied = match action {
                "start" | "restart" => now.started_at != b.started_at,
                "stop" | "kill" => !now.running,
                "pause" => now.paused,
                "unpause" => !now.paused,
                "rename" => new_name.is_some_and(|n| n.trim_start_matches('/') == now.name),
                _ => false,
            };
            if !applied {
                return Ok(EarlierRun::Unsettled);
            }
            tracing::info!(id = %c.id, action, "A change sent again had been made by an earlier leader; answering with it.");
            return Ok(EarlierRun::Applied);
        }
        let started_at = if starts { seen(c).await?.started_at } else { None };
        let begun = Begun { action: action.to_string(), id: c.id.clone(), started_at };
        let value = serde_json::to_vec(&begun).unwrap_or_default();
        store.put(record_key, value, Some(self.inner.settings.request_memory)).await.map_err(store_failure)?;
        Ok(EarlierRun::None)
    }

    /// Whether a removal sent under request `key` was begun by an earlier run (the container
    /// being gone now, that run removed it).
    pub async fn removal_begun(&self, key: &str) -> bool {
        let record_key = format!("{CHANGES_PREFIX}{key}");
        self.inner.store.list(record_key.clone()).await.is_ok_and(|r| r.iter().any(|(k, _)| *k == record_key))
    }
}

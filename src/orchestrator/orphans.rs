//! What an interrupted create may leave behind: a container the engine made after the manager
//! stopped waiting. It is found by its swarm ID and removed, patiently.

use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};
use serde_json::json;

use crate::cluster::labels;
use crate::transport::EngineClient;

/// How long the manager keeps trying to remove a container whose create failed in flight.
const ORPHAN_CLEANUP_WINDOW: Duration = Duration::from_secs(600);
/// How long a hung engine gets to finish a create before it is looked at again.
const LOOK_AGAIN_AFTER: Duration = Duration::from_secs(2);

/// The engine path listing every container (running or not) that carries `label` (`key` or
/// `key=value`).
pub fn list_by_label(label: &str) -> String {
    let filter = json!({"label": [label]}).to_string();
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("all", "1")
        .append_pair("filters", &filter)
        .finish();
    format!("/containers/json?{query}")
}

/// Removes every container carrying `swarm_id`; retries while the engine does not answer,
/// within [`ORPHAN_CLEANUP_WINDOW`]. True once no copy is left.
pub async fn remove_by_swarm_id_until_gone(client: EngineClient, swarm_id: String) -> bool {
    let path = list_by_label(&format!("{}={swarm_id}", labels::SWARM_ID));
    let deadline = tokio::time::Instant::now() + ORPHAN_CLEANUP_WINDOW;
    while tokio::time::Instant::now() < deadline {
        // A hung engine may still be processing the create: look again after it could have.
        tokio::time::sleep(LOOK_AGAIN_AFTER).await;
        let Ok(list) = client.get_json(&path).await else { continue };
        let mut removed_all = true;
        for c in list.as_array().into_iter().flatten() {
            if let Some(id) = c["Id"].as_str() {
                removed_all &= remove(&client, id).await;
            }
        }
        if removed_all {
            tracing::info!(swarm_id = %swarm_id, "Create interrupted in flight: no copy left on the engine.");
            return true;
        }
    }
    tracing::error!(swarm_id = %swarm_id, "Could not confirm removal of a container whose create failed; remove it by its com.docker.swarm.id label.");
    false
}

/// Force-removes container `id`; true when it is gone (already gone counts).
pub async fn remove(client: &EngineClient, id: &str) -> bool {
    let gone = client
        .call(Method::DELETE, &format!("/containers/{id}?force=1"), None, &HeaderMap::new(), Some(client.timeout()))
        .await;
    matches!(gone, Ok((s, _, _)) if s.is_success() || s == StatusCode::NOT_FOUND)
}

//! The leader's repairs, as a reconciler. Every manager remembers, from its own warm cache,
//! which containers ask to be rescheduled (`on-node-failure`) and where they were; whichever
//! manager leads:
//!
//! - recreates those of a node that failed or left discovery on healthy nodes, through the
//!   normal create path (same name, configuration and swarm ID), and starts those that ran;
//! - removes a rescheduled container's stale copy when its node comes back, and a second
//!   healthy copy if a reschedule ever raced a leader change (the oldest copy stays);
//! - on taking over, finishes what the previous leader left: reschedules in progress (whose
//!   records fence the stale copies out of the cache) and creates in flight (kept if the
//!   engine has the container, otherwise removed from the engine they were sent to).
//!
//! A pass observes the cache, plans (`plan.rs`, pure) and acts (`act.rs`). Passes run when a
//! node changes state or a container with a reschedule policy changes, when leadership changes, when a deferred retry
//! falls due, and every [`RESYNC`] for what no event announces (records in the store, engines
//! that did not answer).

mod act;
pub mod plan;

use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;

use super::Orchestrator;
use plan::{Action, Memory};

/// Where reschedules are recorded, by swarm ID.
pub const RESCHEDULES_PREFIX: &str = "reschedules/";
/// The slow pass that catches what no event announces.
pub const RESYNC: Duration = Duration::from_secs(5);
/// How long a pass waits after its first trigger, so that a burst (a node's containers dying
/// one by one, then the node) makes one pass.
const SETTLE: Duration = Duration::from_millis(200);

/// Runs on every manager until `cancel`; acts only while leading.
pub async fn run(orch: Orchestrator, cancel: CancellationToken) {
    let mut events = orch.inner.cluster.subscribe();
    let mut roles = orch.inner.leadership.subscribe();
    let mut memory = Memory::default();
    let act = act::Act::new(orch.clone());
    loop {
        let now = Instant::now();
        let wake_at = memory.next_retry().map_or(now + RESYNC, |t| t.min(now + RESYNC));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = roles.changed() => {}
            _ = tokio::time::sleep_until(wake_at.into()) => {}
            event = events.recv() => match event {
                Ok(e) if !matters(&e) => continue,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                // The cluster is gone: shutting down.
                Err(RecvError::Closed) => return,
            },
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(SETTLE) => {}
        }
        // Whatever arrived while settling is covered by this pass.
        while matches!(events.try_recv(), Ok(_) | Err(TryRecvError::Lagged(_))) {}
        pass(&orch, &mut memory, &act).await;
    }
}

/// Whether an event can change what the rescheduler sees: a node's state, or the state of a
/// container with a reschedule policy (engines put a container's labels on each of its
/// events). Other containers' events, most of a busy cluster's, would only repeat passes.
fn matters(event: &serde_json::Value) -> bool {
    match event["Type"].as_str() {
        Some("swarm") => true,
        Some("container") => event
            .pointer("/Actor/Attributes")
            .and_then(|a| a.get(crate::cluster::node::labels::RESCHEDULE_POLICIES))
            .is_some(),
        _ => false,
    }
}

async fn pass(orch: &Orchestrator, memory: &mut Memory, act: &act::Act) {
    let leading = orch.inner.leadership.is_leader();
    let cluster = &orch.inner.cluster;
    let seen = cluster.with_nodes(plan::seen);
    let mut view = plan::observe(&seen, leading);
    view.removed = memory.known_ids().filter(|id| cluster.was_removed(id)).map(str::to_string).collect();
    view.removed_swarm_ids =
        memory.known_swarm_ids().filter(|sid| cluster.was_removed_by_user(sid)).map(str::to_string).collect();
    view.user_stopped = memory.known_ids().filter(|id| cluster.was_stopped_by_user(id)).map(str::to_string).collect();
    let now = Instant::now();
    memory.remember(&view, now);
    for action in plan::plan(memory, &view, now) {
        match action {
            Action::TakeOver => act.take_over().await,
            Action::ResolveCreates => act.resolve_creates().await,
            Action::Reschedule(due) => {
                let outcome = act.reschedule(due).await;
                for failed in &outcome.failed {
                    memory.failed(failed, now);
                }
                for (node, swarm_id) in &outcome.settled {
                    memory.settled(node, swarm_id);
                }
            }
            Action::FinishReschedules => act.finish_reschedules().await,
            Action::RemoveDoubles => act.remove_doubles().await,
        }
    }
    memory.settle(&view);
}

#[cfg(test)]
mod tests {
    use super::matters;
    use crate::cluster::node::labels::RESCHEDULE_POLICIES;
    use serde_json::json;

    #[test]
    fn passes_follow_nodes_and_containers_with_a_reschedule_policy_only() {
        assert!(matters(&json!({"Type": "swarm", "Action": "engine_disconnect"})));
        let with_policy = json!({"Type": "container", "Action": "die", "Actor": {"ID": "c1", "Attributes": {RESCHEDULE_POLICIES: "[\"on-node-failure\"]"}}});
        assert!(matters(&with_policy));
        assert!(!matters(
            &json!({"Type": "container", "Action": "start", "Actor": {"ID": "c2", "Attributes": {"name": "web"}}})
        ));
        assert!(!matters(&json!({"Type": "image", "Action": "pull"})));
    }
}

//! The reconciler's pure half: what the cache shows ([`observe`]), what the rescheduler
//! remembers between passes ([`Memory`]), and what it should do about it ([`plan`]). No I/O, so
//! every decision is unit-tested.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::{Derived, Node, NodeState};

/// Wait before retrying a reschedule that failed (no node fits, image missing, ...).
pub const RETRY_AFTER: Duration = Duration::from_secs(10);
/// A container seen stopping this recently before its node failed is restarted elsewhere: a
/// daemon that shuts down (or a host going down cleanly) stops its containers first.
pub const RAN_RECENTLY: Duration = Duration::from_secs(30);

/// A container that asked to be rescheduled, as last seen on a healthy node.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Its node's key.
    pub node: String,
    /// Its engine ID there.
    pub id: String,
    /// `com.docker.swarm.id`, the same for every copy.
    pub swarm_id: String,
    /// Its name, kept by the new copy.
    pub name: Option<String>,
    /// The create body that recreates it.
    pub body: Arc<Value>,
    /// Whether the new copy must run.
    pub running: bool,
}

/// What the cache shows now.
#[derive(Default, Debug)]
pub struct View {
    /// Whether this manager leads.
    pub leading: bool,
    /// Reschedulable containers per healthy node.
    pub healthy: HashMap<String, Vec<Candidate>>,
    /// Nodes that failed.
    pub failed: HashSet<String>,
    /// Every node present, whatever its state.
    pub present: HashSet<String>,
    /// Swarm IDs living on healthy nodes.
    pub live: HashSet<String>,
    /// Whether a reschedulable swarm ID lives twice among them.
    pub doubled: bool,
    /// Remembered containers that were removed since (by their user, or on their engine).
    pub removed: HashSet<String>,
    /// Remembered swarm IDs of which a client removed a copy: every copy of them is removed
    /// (an original that a reschedule replaced is no container of anyone's).
    pub removed_swarm_ids: HashSet<String>,
    /// Remembered containers a client stopped: their copies are not started.
    pub user_stopped: HashSet<String>,
}

/// A node as a pass reads it: taken out of the node table under its lock (a pointer per
/// node), read after the lock is released, so that a pass over a large cache does not hold
/// up the writers of the table (a create's, an event's).
pub struct Seen {
    /// Its key.
    pub key: String,
    /// Its state then.
    pub state: NodeState,
    /// Its derived views then.
    pub derived: Arc<Derived>,
}

/// Takes every node's state and derived views out of the node table.
pub fn seen(nodes: &BTreeMap<String, Node>) -> Vec<Seen> {
    nodes
        .iter()
        .map(|(key, n)| Seen { key: key.clone(), state: n.health.state(), derived: n.derived().clone() })
        .collect()
}

/// Reads the view out of what [`seen`] took.
pub fn observe(nodes: &[Seen], leading: bool) -> View {
    let mut v = View { leading, ..View::default() };
    for n in nodes {
        v.present.insert(n.key.clone());
        match n.state {
            NodeState::Healthy => {
                let d = &n.derived;
                let mut cands = Vec::new();
                for c in &d.reschedulable {
                    let Some(sid) = &c.swarm_id else { continue };
                    // Held by an earlier node, or by another container of this one.
                    v.doubled |= v.live.contains(sid) || d.swarm_ids.get(sid).map(|held| &held.id) != Some(&c.id);
                    let Some(body) = &c.facts.recreate else { continue };
                    cands.push(Candidate {
                        node: n.key.clone(),
                        id: c.id.clone(),
                        swarm_id: sid.clone(),
                        name: c.names.first().cloned(),
                        body: body.clone(),
                        running: matches!(c.state(), "running" | "restarting" | "paused"),
                    });
                }
                v.live.extend(d.swarm_ids.keys().map(str::to_string));
                v.healthy.insert(n.key.clone(), cands);
            }
            NodeState::Unhealthy | NodeState::Disconnected => {
                v.failed.insert(n.key.clone());
            }
            NodeState::Pending => {}
        }
    }
    v
}

/// What the rescheduler carries from one pass to the next.
#[derive(Default, Debug)]
pub struct Memory {
    /// The reschedulable containers of every node as last seen healthy: a node that fails or
    /// leaves discovery takes its cache with it.
    known: HashMap<String, Vec<Candidate>>,
    /// Swarm IDs last seen running.
    running: HashSet<String>,
    /// When a container last seen running was first seen stopped.
    stopped_at: HashMap<String, Instant>,
    /// Reschedules that failed, and when to try them again.
    not_before: HashMap<String, Instant>,
    /// Whether this manager led at the last pass.
    leading: bool,
}

/// One thing to do.
#[derive(Debug)]
pub enum Action {
    /// Newly leading: adopt the reschedules the previous leader recorded.
    TakeOver,
    /// Settle creates a leader recorded and never cleared.
    ResolveCreates,
    /// Recreate these, once the engines and the store confirm no copy exists.
    Reschedule(Vec<Candidate>),
    /// Start copies that should run, remove the copies reschedules replaced.
    FinishReschedules,
    /// A reschedulable container lives twice: keep the oldest copy.
    RemoveDoubles,
}

impl Memory {
    /// The engine IDs of every remembered container.
    pub fn known_ids(&self) -> impl Iterator<Item = &str> {
        self.known.values().flatten().map(|c| c.id.as_str())
    }

    /// The swarm IDs of every remembered container.
    pub fn known_swarm_ids(&self) -> impl Iterator<Item = &str> {
        self.known.values().flatten().map(|c| c.swarm_id.as_str())
    }

    /// Learns from the view: where reschedulable containers are, which stopped when, and which
    /// were removed (never to be rescheduled).
    pub fn remember(&mut self, view: &View, now: Instant) {
        for cands in self.known.values_mut() {
            cands.retain(|c| !view.removed.contains(&c.id) && !view.removed_swarm_ids.contains(&c.swarm_id));
        }
        for (node, cands) in &view.healthy {
            for c in cands {
                if c.running {
                    self.running.insert(c.swarm_id.clone());
                    self.stopped_at.remove(&c.swarm_id);
                } else if self.running.remove(&c.swarm_id) {
                    self.stopped_at.insert(c.swarm_id.clone(), now);
                }
            }
            self.known.insert(node.clone(), cands.clone());
        }
        self.stopped_at.retain(|_, at| now.duration_since(*at) < RAN_RECENTLY);
        self.not_before.retain(|_, at| *at > now);
    }

    /// Marks a reschedule as failed: it waits [`RETRY_AFTER`].
    pub fn failed(&mut self, swarm_id: &str, now: Instant) {
        self.not_before.insert(swarm_id.to_string(), now + RETRY_AFTER);
    }

    /// A container of `node` was rescheduled (or found to live elsewhere already): it is
    /// settled. Should the user remove the new copy, nothing brings it back.
    pub fn settled(&mut self, node: &str, swarm_id: &str) {
        if let Some(cands) = self.known.get_mut(node) {
            cands.retain(|c| c.swarm_id != swarm_id);
        }
    }

    /// When the next deferred reschedule falls due.
    pub fn next_retry(&self) -> Option<Instant> {
        self.not_before.values().min().copied()
    }

    /// Records whether this pass leads, and drops what no longer needs remembering: a node
    /// gone for good, all of whose containers live elsewhere.
    pub fn settle(&mut self, view: &View) {
        self.leading = view.leading;
        self.known.retain(|node, cands| {
            view.present.contains(node) || cands.iter().any(|c| !view.live.contains(&c.swarm_id))
        });
    }
}

/// What to do given what was remembered and what is seen. Only a leader acts.
pub fn plan(memory: &Memory, view: &View, now: Instant) -> Vec<Action> {
    if !view.leading {
        return Vec::new();
    }
    let mut actions = Vec::new();
    if !memory.leading {
        actions.push(Action::TakeOver);
    }
    actions.push(Action::ResolveCreates);
    let due: Vec<Candidate> = memory
        .known
        .iter()
        .filter(|(node, _)| view.failed.contains(*node) || !view.present.contains(*node))
        .flat_map(|(_, cands)| cands.iter())
        .filter(|c| !view.live.contains(&c.swarm_id) && memory.not_before.get(&c.swarm_id).is_none_or(|t| *t <= now))
        .map(|c| {
            let ran = c.running || memory.stopped_at.contains_key(&c.swarm_id);
            Candidate { running: ran && !view.user_stopped.contains(&c.id), ..c.clone() }
        })
        .collect();
    if !due.is_empty() {
        actions.push(Action::Reschedule(due));
    }
    actions.push(Action::FinishReschedules);
    if view.doubled {
        actions.push(Action::RemoveDoubles);
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(node: &str, sid: &str, running: bool) -> Candidate {
        Candidate {
            node: node.into(),
            id: format!("{sid}-on-{node}"),
            swarm_id: sid.into(),
            name: Some(sid.into()),
            body: Arc::new(Value::Null),
            running,
        }
    }

    /// A node seen in `state`, holding containers `(id, swarm ID, reschedulable)`.
    fn seen_node(key: &str, state: NodeState, containers: &[(&str, &str, bool)]) -> Seen {
        use crate::cluster::node::{CachedContainer, ContainerFacts};
        let cached: Vec<Arc<CachedContainer>> = containers
            .iter()
            .map(|(id, sid, reschedulable)| {
                let facts = ContainerFacts { recreate: reschedulable.then(|| Arc::new(Value::Null)), ..ContainerFacts::default() };
                Arc::new(CachedContainer::new(serde_json::json!({"Id": id, "Names": [format!("/{id}")], "Labels": {crate::cluster::labels::SWARM_ID: sid}}), facts))
            })
            .collect();
        let mut swarm_ids = crate::cluster::keyed::Keyed::by_swarm_id(cached.len());
        cached.iter().for_each(|c| swarm_ids.insert(c));
        let derived = Derived {
            facts: Arc::default(),
            names: crate::cluster::keyed::Keyed::by_name(0),
            swarm_ids,
            running: 0,
            paused: 0,
            reschedulable: cached.into_iter().filter(|c| c.facts.recreate.is_some()).collect(),
        };
        Seen { key: key.into(), state, derived: Arc::new(derived) }
    }

    #[test]
    fn observe_finds_candidates_live_swarm_ids_and_doubles() {
        let one_each = [
            seen_node("a", NodeState::Healthy, &[("c1", "s1", true), ("c2", "s2", false)]),
            seen_node("b", NodeState::Healthy, &[("c3", "s3", true)]),
            seen_node("c", NodeState::Unhealthy, &[("c4", "s1", true)]),
        ];
        let v = observe(&one_each, true);
        assert_eq!(v.live, HashSet::from(["s1".to_string(), "s2".into(), "s3".into()]));
        assert_eq!(v.healthy["a"].iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["c1"]);
        assert!(v.failed.contains("c") && v.present.len() == 3);
        assert!(!v.doubled, "a copy on a failed node is no double");
        let across = [
            seen_node("a", NodeState::Healthy, &[("c1", "s1", true)]),
            seen_node("b", NodeState::Healthy, &[("c5", "s1", true)]),
        ];
        assert!(observe(&across, true).doubled);
        let within = [seen_node("a", NodeState::Healthy, &[("c1", "s1", true), ("c6", "s1", true)])];
        assert!(observe(&within, true).doubled);
    }

    /// `a` healthy with `cands`, and every other node named in `failed` failed.
    fn view(leading: bool, cands: Vec<Candidate>, failed: &[&str]) -> View {
        let mut v = View { leading, ..View::default() };
        v.present.insert("a".into());
        for c in &cands {
            v.live.insert(c.swarm_id.clone());
        }
        v.healthy.insert("a".into(), cands);
        for f in failed {
            v.present.insert(f.to_string());
            v.failed.insert(f.to_string());
        }
        v
    }

    fn due(actions: &[Action]) -> Vec<(String, bool)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Reschedule(c) => Some(c.iter().map(|c| (c.swarm_id.clone(), c.running)).collect::<Vec<_>>()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// A memory that has seen `b` healthy with one running and one stopped container.
    fn seen_b(now: Instant) -> Memory {
        let mut m = Memory { leading: true, ..Memory::default() };
        let mut seen = view(true, vec![], &[]);
        seen.present.insert("b".into());
        seen.healthy.insert("b".into(), vec![cand("b", "web", true), cand("b", "job", false)]);
        m.remember(&seen, now);
        m.settle(&seen);
        m
    }

    #[test]
    fn a_failed_nodes_containers_are_due_running_as_they_ran() {
        let now = Instant::now();
        let m = seen_b(now);
        let mut d = due(&plan(&m, &view(true, vec![], &["b"]), now));
        d.sort();
        assert_eq!(d, vec![("job".to_string(), false), ("web".to_string(), true)]);
    }

    #[test]
    fn a_node_that_left_discovery_counts_as_failed() {
        let now = Instant::now();
        let m = seen_b(now);
        assert_eq!(due(&plan(&m, &view(true, vec![], &[]), now)).len(), 2);
    }

    #[test]
    fn a_healthy_node_or_a_follower_reschedules_nothing() {
        let now = Instant::now();
        let m = seen_b(now);
        let mut healthy = view(true, vec![], &[]);
        healthy.present.insert("b".into());
        healthy.healthy.insert("b".into(), vec![cand("b", "web", true), cand("b", "job", false)]);
        healthy.live.extend(["web".to_string(), "job".to_string()]);
        assert!(due(&plan(&m, &healthy, now)).is_empty());
        assert!(plan(&m, &view(false, vec![], &["b"]), now).is_empty());
    }

    #[test]
    fn a_container_alive_elsewhere_is_not_due() {
        let now = Instant::now();
        let m = seen_b(now);
        assert_eq!(
            due(&plan(&m, &view(true, vec![cand("a", "web", true)], &["b"]), now)),
            vec![("job".to_string(), false)]
        );
    }

    #[test]
    fn a_failed_reschedule_waits_before_it_is_tried_again() {
        let now = Instant::now();
        let mut m = seen_b(now);
        m.failed("web", now);
        let failed_b = view(true, vec![], &["b"]);
        assert_eq!(due(&plan(&m, &failed_b, now)), vec![("job".to_string(), false)]);
        assert_eq!(m.next_retry(), Some(now + RETRY_AFTER));
        assert_eq!(due(&plan(&m, &failed_b, now + RETRY_AFTER)).len(), 2);
    }

    #[test]
    fn a_container_stopped_just_before_its_node_failed_runs_again() {
        let now = Instant::now();
        let mut m = seen_b(now);
        // The daemon shuts down: its containers stop, then it stops answering.
        let mut stopping = view(true, vec![], &[]);
        stopping.present.insert("b".into());
        stopping.healthy.insert("b".into(), vec![cand("b", "web", false), cand("b", "job", false)]);
        m.remember(&stopping, now + Duration::from_secs(1));
        let failed_b = view(true, vec![], &["b"]);
        let mut d = due(&plan(&m, &failed_b, now + Duration::from_secs(2)));
        d.sort();
        assert_eq!(d, vec![("job".to_string(), false), ("web".to_string(), true)]);
        // Long after the stop, the stop was the user's: it stays stopped.
        m.remember(&failed_b, now + RAN_RECENTLY + Duration::from_secs(2));
        assert!(due(&plan(&m, &failed_b, now + RAN_RECENTLY + Duration::from_secs(2)))
            .iter()
            .all(|(_, running)| !running));
    }

    #[test]
    fn a_settled_container_is_not_rescheduled_again_when_its_new_copy_is_removed() {
        let now = Instant::now();
        let mut m = seen_b(now);
        m.settled("b", "web");
        // The user removed the new copy: "web" lives nowhere, yet it is not due again.
        assert_eq!(due(&plan(&m, &view(true, vec![], &["b"]), now)), vec![("job".to_string(), false)]);
    }

    #[test]
    fn a_container_removed_just_before_its_node_failed_stays_removed() {
        let now = Instant::now();
        let mut m = seen_b(now);
        let mut failed_b = view(true, vec![], &["b"]);
        failed_b.removed.insert("web-on-b".into());
        m.remember(&failed_b, now);
        assert_eq!(due(&plan(&m, &failed_b, now)), vec![("job".to_string(), false)]);
    }

    #[test]
    fn a_stale_copy_of_a_container_a_user_removed_elsewhere_is_never_rescheduled() {
        let now = Instant::now();
        // "web" on b is an original a reschedule replaced; its node came back, so it was seen
        // again, and the user then removed the copy living on another node.
        let mut m = seen_b(now);
        let mut failed_b = view(true, vec![], &["b"]);
        failed_b.removed_swarm_ids.insert("web".into());
        m.remember(&failed_b, now);
        assert_eq!(due(&plan(&m, &failed_b, now)), vec![("job".to_string(), false)]);
    }

    #[test]
    fn a_container_a_user_stopped_is_recreated_stopped() {
        let now = Instant::now();
        let m = seen_b(now);
        let mut failed_b = view(true, vec![], &["b"]);
        failed_b.user_stopped.insert("web-on-b".into());
        let mut d = due(&plan(&m, &failed_b, now));
        d.sort();
        assert_eq!(d, vec![("job".to_string(), false), ("web".to_string(), false)]);
    }

    #[test]
    fn a_new_leader_takes_over_first_and_doubles_are_removed() {
        let now = Instant::now();
        let m = Memory::default();
        let mut v = view(true, vec![], &[]);
        v.doubled = true;
        let actions = plan(&m, &v, now);
        assert!(matches!(actions.first(), Some(Action::TakeOver)));
        assert!(matches!(actions.last(), Some(Action::RemoveDoubles)));
    }

    #[test]
    fn a_node_gone_for_good_is_forgotten_once_its_containers_live_elsewhere() {
        let now = Instant::now();
        let mut m = seen_b(now);
        let gone = view(true, vec![cand("a", "web", true), cand("a", "job", false)], &[]);
        m.settle(&gone);
        assert!(due(&plan(&m, &gone, now)).is_empty());
        assert!(m.known.keys().all(|k| k == "a"));
    }
}

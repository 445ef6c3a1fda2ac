//! Where a container goes: filters, then a strategy, over node snapshots. Pure: no I/O, no
//! tokio, no hyper; every decision is a function of its inputs (and the rng for `random`).
//!
//! - `expr`: constraint and affinity expressions.
//! - `filter`: the classic filters, in order.
//! - `strategy`: spread, binpack, random.

pub mod expr;
pub mod filter;
pub mod strategy;

use std::collections::BTreeMap;
use std::sync::Arc;

/// Node labels. Keys and values are shared strings: the same few label names and values
/// recur across thousands of nodes, and sharing them keeps lookups in cache.
pub type NodeLabels = BTreeMap<Arc<str>, Arc<str>>;

pub use expr::{client_regex, Expr, ExprError};
pub use filter::FilterKind;
pub use strategy::StrategyKind;

/// A container as the filters see it.
#[derive(Debug, Clone, Default)]
pub struct ContainerView {
    /// Full engine ID.
    pub id: String,
    /// Names without the leading slash.
    pub names: Vec<String>,
    /// Image as the container was created with.
    pub image: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Host ports bound in bridge mode: (host IP, port); IP "" or "0.0.0.0" means all.
    pub host_ports: Vec<(String, u16)>,
    /// Exposed ports of a `--net=host` container, e.g. `80/tcp`.
    pub host_mode_ports: Vec<String>,
}

/// An image present on a node.
#[derive(Debug, Clone, Default)]
pub struct ImageView {
    /// `sha256:…`.
    pub id: String,
    /// `repo:tag` names.
    pub repo_tags: Vec<String>,
    /// The parent image's ID (`ParentId`), empty for a base image.
    pub parent: String,
}

/// What a node offers the scheduler as its engine holds it: built once per change of the
/// node and shared by every schedule until the next change, so that a create does not copy
/// the whole cluster.
#[derive(Debug, Clone, Default)]
pub struct NodeFacts {
    /// Stable key (the discovery address).
    pub key: String,
    /// Engine ID, classic form `<info.ID>|<addr>`.
    pub engine_id: String,
    /// Engine name.
    pub name: String,
    /// Engine labels plus the built-ins.
    pub labels: NodeLabels,
    /// The `containerslots` label, parsed (absent or not a number: unlimited).
    pub container_slots: Option<usize>,
    /// CPUs including overcommit.
    pub total_cpus: i64,
    /// Bytes including overcommit.
    pub total_memory: i64,
    /// CPUs reserved by the engine's containers (all states).
    pub engine_used_cpus: i64,
    /// Memory reserved by the engine's containers (all states).
    pub engine_used_memory: i64,
    /// The engine's containers (each view shared with the cache).
    pub engine_containers: Vec<Arc<ContainerView>>,
    /// Images (shared with the node's cache: a change to a container does not copy them).
    pub images: Arc<Vec<ImageView>>,
}

/// The numbers every create reads of every node, copied out of the facts: a scan over
/// thousands of nodes then reads one array instead of following a pointer per node.
#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    /// CPUs including overcommit.
    pub total_cpus: i64,
    /// Bytes including overcommit.
    pub total_memory: i64,
    /// CPUs the engine's containers reserve.
    pub used_cpus: i64,
    /// Memory the engine's containers reserve.
    pub used_memory: i64,
    /// The engine's containers.
    pub containers: usize,
    /// The `containerslots` label.
    pub slots: Option<usize>,
    /// The name's first bytes, zero-padded: most ties between equal nodes break on them.
    name_head: [u8; 16],
}

impl Load {
    fn of(facts: &NodeFacts) -> Load {
        let mut name_head = [0u8; 16];
        let n = facts.name.len().min(16);
        name_head[..n].copy_from_slice(&facts.name.as_bytes()[..n]);
        Load {
            total_cpus: facts.total_cpus,
            total_memory: facts.total_memory,
            used_cpus: facts.engine_used_cpus,
            used_memory: facts.engine_used_memory,
            containers: facts.engine_containers.len(),
            slots: facts.container_slots,
            name_head,
        }
    }
}

/// A node at one scheduling decision: its shared facts, its health now, and the creates in
/// flight to it.
#[derive(Debug, Clone, Default)]
pub struct NodeSnapshot {
    /// What the engine holds (change it through [`NodeSnapshot::set_facts`] or
    /// [`NodeSnapshot::edit_facts`], which keep [`NodeSnapshot::load`] in step).
    facts: Arc<NodeFacts>,
    load: Load,
    /// 100 when healthy with no recent failure, lower with failures, 0 when not healthy.
    pub health_indicator: i64,
    /// Creates in flight to this node.
    pub pending: Vec<ContainerView>,
    /// CPUs those creates reserve.
    pub pending_cpus: i64,
    /// Memory those creates reserve.
    pub pending_memory: i64,
}

impl std::ops::Deref for NodeSnapshot {
    type Target = NodeFacts;
    fn deref(&self) -> &NodeFacts {
        &self.facts
    }
}

impl NodeSnapshot {
    /// A snapshot of shared facts, nothing in flight.
    pub fn new(facts: Arc<NodeFacts>, health_indicator: i64) -> NodeSnapshot {
        NodeSnapshot { load: Load::of(&facts), facts, health_indicator, ..Default::default() }
    }

    /// A snapshot of these facts, healthy, with nothing in flight.
    pub fn healthy(facts: NodeFacts) -> NodeSnapshot {
        NodeSnapshot::new(Arc::new(facts), 100)
    }

    /// Replaces the facts.
    pub fn set_facts(&mut self, facts: Arc<NodeFacts>) {
        self.load = Load::of(&facts);
        self.facts = facts;
    }

    /// Changes the facts (a copy when shared).
    pub fn edit_facts(&mut self, edit: impl FnOnce(&mut NodeFacts)) {
        edit(Arc::make_mut(&mut self.facts));
        self.load = Load::of(&self.facts);
    }

    /// The numbers a scan reads.
    pub fn load(&self) -> &Load {
        &self.load
    }

    /// Orders by name, as ties between equal nodes are broken.
    pub fn cmp_name(&self, other: &NodeSnapshot) -> std::cmp::Ordering {
        self.load.name_head.cmp(&other.load.name_head).then_with(|| self.facts.name.cmp(&other.facts.name))
    }

    /// Every container: the engine's and the creates in flight.
    pub fn containers(&self) -> impl Iterator<Item = &ContainerView> {
        self.facts.engine_containers.iter().map(|v| &**v).chain(&self.pending)
    }

    /// How many containers [`NodeSnapshot::containers`] yields.
    pub fn container_count(&self) -> usize {
        self.load.containers + self.pending.len()
    }

    /// CPUs reserved, creates in flight included.
    pub fn used_cpus(&self) -> i64 {
        self.load.used_cpus.saturating_add(self.pending_cpus)
    }

    /// Memory reserved, creates in flight included.
    pub fn used_memory(&self) -> i64 {
        self.load.used_memory.saturating_add(self.pending_memory)
    }
}

/// What the request asks for.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// Image reference.
    pub image: String,
    /// CPUs requested (classic: `CpuShares` counts CPUs).
    pub cpus: i64,
    /// Memory requested, bytes.
    pub memory: i64,
    /// Bridge-mode bindings: (host IP, host port).
    pub host_ports: Vec<(String, u16)>,
    /// Host-mode exposed ports (`--net=host`), e.g. `80/tcp`.
    pub host_mode_ports: Vec<String>,
    /// Containers this one depends on (`--volumes-from`, `--link`, `--net=container:`).
    pub dependencies: Vec<String>,
    /// Constraints.
    pub constraints: Vec<Expr>,
    /// Affinities.
    pub affinities: Vec<Expr>,
    /// Whitelists.
    pub whitelists: Vec<Expr>,
}

/// Why no node was chosen.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The cluster has no node at all.
    #[error("No nodes available in the cluster")]
    NoNodes,
    /// No node passed the health filter.
    #[error("No healthy node available in the cluster")]
    NoHealthyNode,
    /// A filter left no node; the text lists every filter's conditions up to the failing one.
    #[error("Unable to find a node that satisfies the following conditions {conditions}")]
    Unsatisfied {
        /// One `\n[...]` line per filter.
        conditions: String,
    },
    /// Dependencies cannot all be found on one node.
    #[error("Unable to find a node fulfilling all dependencies: {0}")]
    Dependencies(String),
    /// The strategy found no node with room.
    #[error("no resources available to schedule container")]
    NoResources,
}

/// Filters plus a strategy.
#[derive(Debug, Clone)]
pub struct Scheduler {
    filters: Vec<FilterKind>,
    strategy: StrategyKind,
}

impl Scheduler {
    /// A scheduler with these filters, in order, and this strategy.
    pub fn new(filters: Vec<FilterKind>, strategy: StrategyKind) -> Self {
        Scheduler { filters, strategy }
    }

    /// The filters in force.
    pub fn filters(&self) -> &[FilterKind] {
        &self.filters
    }

    /// The strategy in force.
    pub fn strategy(&self) -> StrategyKind {
        self.strategy
    }

    /// Ranks the nodes that may take `spec`, best first. Soft expressions are enforced on a
    /// first pass and dropped on a second, as classic Swarm did.
    pub fn rank<'n>(
        &self,
        nodes: &'n [NodeSnapshot],
        spec: &ContainerSpec,
        rng: &mut impl rand::Rng,
    ) -> Result<Vec<&'n NodeSnapshot>, ScheduleError> {
        strategy::rank(self.strategy, self.candidates(nodes, spec)?, spec, rng)
    }

    /// The best node for `spec`: the head of [`Scheduler::rank`] in one pass, without sorting.
    pub fn select<'n>(
        &self,
        nodes: &'n [NodeSnapshot],
        spec: &ContainerSpec,
        rng: &mut impl rand::Rng,
    ) -> Result<&'n NodeSnapshot, ScheduleError> {
        strategy::best(self.strategy, self.candidates(nodes, spec)?, spec, rng)
    }

    fn candidates<'n>(
        &self,
        nodes: &'n [NodeSnapshot],
        spec: &ContainerSpec,
    ) -> Result<Vec<&'n NodeSnapshot>, ScheduleError> {
        if nodes.is_empty() {
            return Err(ScheduleError::NoNodes);
        }
        match self.filter(nodes, spec, true) {
            Ok(c) => Ok(c),
            Err(_) if has_soft(spec) => self.filter(nodes, spec, false),
            Err(e) => Err(e),
        }
    }

    /// One pass over the nodes with every filter fused (each node is read once, which is what
    /// matters at 10,000 nodes); only when nothing passes does the filter-by-filter pass run,
    /// to say which condition failed.
    fn filter<'n>(
        &self,
        nodes: &'n [NodeSnapshot],
        spec: &ContainerSpec,
        soft: bool,
    ) -> Result<Vec<&'n NodeSnapshot>, ScheduleError> {
        let kept: Vec<&NodeSnapshot> =
            nodes.iter().filter(|n| self.filters.iter().all(|f| f.keeps(n, spec, soft))).collect();
        if !kept.is_empty() {
            return Ok(kept);
        }
        self.explain(nodes, spec, soft)
    }

    fn explain<'n>(
        &self,
        nodes: &'n [NodeSnapshot],
        spec: &ContainerSpec,
        soft: bool,
    ) -> Result<Vec<&'n NodeSnapshot>, ScheduleError> {
        let mut candidates: Vec<&NodeSnapshot> = nodes.iter().collect();
        // Name the conditions of every filter that removed nodes: together they are why none is left.
        let mut conditions = String::new();
        for f in &self.filters {
            let before = candidates.len();
            candidates = f.apply(candidates, spec, soft)?;
            if candidates.len() < before {
                let c = f.conditions(spec, true);
                if !c.is_empty() {
                    conditions.push_str(&format!("\n[{}]", c.join(" ")));
                }
            }
            if candidates.is_empty() {
                if *f == FilterKind::Health {
                    return Err(ScheduleError::NoHealthyNode);
                }
                return Err(ScheduleError::Unsatisfied { conditions });
            }
        }
        Ok(candidates)
    }
}

fn has_soft(spec: &ContainerSpec) -> bool {
    spec.constraints.iter().chain(&spec.affinities).any(|e| e.soft)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand::SeedableRng;

    pub fn node(name: &str, containers: usize) -> NodeSnapshot {
        NodeSnapshot::healthy(NodeFacts {
            key: format!("127.0.0.1:{}", 2375 + name.len()),
            engine_id: format!("ID-{name}"),
            name: name.to_string(),
            labels: NodeLabels::from([("storagedriver".into(), "overlay2".into())]),
            container_slots: None,
            total_cpus: 2,
            total_memory: 2 << 30,
            engine_containers: (0..containers)
                .map(|i| {
                    Arc::new(ContainerView {
                        id: format!("{name}-c{i}"),
                        names: vec![format!("{name}-c{i}")],
                        ..Default::default()
                    })
                })
                .collect(),
            ..Default::default()
        })
    }

    pub fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    #[test]
    fn empty_cluster_says_so() {
        let s = Scheduler::new(FilterKind::defaults(), StrategyKind::Spread);
        assert_eq!(s.rank(&[], &ContainerSpec::default(), &mut rng()).unwrap_err(), ScheduleError::NoNodes);
    }

    #[test]
    fn unhealthy_nodes_give_the_health_message() {
        let mut n = node("node-1", 0);
        n.health_indicator = 0;
        let s = Scheduler::new(FilterKind::defaults(), StrategyKind::Spread);
        let err = s.rank(&[n], &ContainerSpec::default(), &mut rng()).unwrap_err();
        assert_eq!(err.to_string(), "No healthy node available in the cluster");
    }

    #[test]
    fn failing_filter_lists_conditions_up_to_it() {
        let s = Scheduler::new(FilterKind::defaults(), StrategyKind::Spread);
        let spec = ContainerSpec { constraints: vec![Expr::parse("node==node-9").unwrap()], ..Default::default() };
        let err = s.rank(&[node("node-1", 0)], &spec, &mut rng()).unwrap_err();
        assert_eq!(err.to_string(), "Unable to find a node that satisfies the following conditions \n[node==node-9]");
    }

    #[test]
    fn every_filter_that_removed_nodes_is_named() {
        let s = Scheduler::new(FilterKind::defaults(), StrategyKind::Spread);
        let mut full = node("node-3", 2);
        full.edit_facts(|f| f.container_slots = Some(2));
        let spec = ContainerSpec { constraints: vec![Expr::parse("node==node-3").unwrap()], ..Default::default() };
        let err = s.rank(&[node("node-1", 0), full], &spec, &mut rng()).unwrap_err();
        assert_eq!(err.to_string(), "Unable to find a node that satisfies the following conditions \n[available container slots]\n[node==node-3]");
    }

    #[test]
    fn soft_constraints_fall_back_on_the_second_pass() {
        let s = Scheduler::new(FilterKind::defaults(), StrategyKind::Spread);
        let spec = ContainerSpec { constraints: vec![Expr::parse("node==~node-9").unwrap()], ..Default::default() };
        let nodes = [node("node-1", 0)];
        let ranked = s.rank(&nodes, &spec, &mut rng()).unwrap();
        assert_eq!(ranked[0].name, "node-1");
    }
}

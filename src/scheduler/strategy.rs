//! Ranking strategies, with classic Swarm's integer weights.

use rand::seq::{IndexedRandom, SliceRandom};

use super::{ContainerSpec, NodeSnapshot, ScheduleError};

/// A strategy, by its classic name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyKind {
    /// Least loaded first; ties go to the node with fewer containers.
    Spread,
    /// Most loaded node that fits first; ties go to the node with more containers.
    Binpack,
    /// Any node that passed the filters; no resource check, as in classic Swarm.
    Random,
}

impl StrategyKind {
    /// Parses a classic name (`binpacking` is accepted for `binpack`).
    pub fn parse(name: &str) -> Option<StrategyKind> {
        match name {
            "spread" => Some(StrategyKind::Spread),
            "binpack" | "binpacking" => Some(StrategyKind::Binpack),
            "random" => Some(StrategyKind::Random),
            _ => None,
        }
    }

    /// The classic name.
    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::Spread => "spread",
            StrategyKind::Binpack => "binpack",
            StrategyKind::Random => "random",
        }
    }
}

/// Classic weight: cpu% + mem% after placement (100 when nothing is asked) plus a health term
/// that dominates (up to ±1000); `None` when the node has no room.
fn weight(node: &NodeSnapshot, spec: &ContainerSpec, health_factor: i64) -> Option<i64> {
    let score = |used: i64, asked: i64, total: i64| -> Option<i64> {
        if asked <= 0 {
            return Some(100);
        }
        if total < asked || total <= 0 {
            return None;
        }
        // Wide: an engine may report any total, a client may ask for any amount.
        Some(((i128::from(used) + i128::from(asked)) * 100 / i128::from(total)).min(i128::from(i64::MAX)) as i64)
    };
    let cpu = score(node.used_cpus(), spec.cpus, node.load().total_cpus)?;
    let mem = score(node.used_memory(), spec.memory, node.load().total_memory)?;
    (cpu <= 100 && mem <= 100).then_some(cpu + mem + health_factor * node.health_indicator)
}

/// Ranks candidates, best first.
pub fn rank<'n>(
    kind: StrategyKind,
    mut candidates: Vec<&'n NodeSnapshot>,
    spec: &ContainerSpec,
    rng: &mut impl rand::Rng,
) -> Result<Vec<&'n NodeSnapshot>, ScheduleError> {
    if kind == StrategyKind::Random {
        candidates.shuffle(rng);
        return Ok(candidates);
    }
    let factor = if kind == StrategyKind::Spread { -10 } else { 10 };
    let mut weighted: Vec<(i64, i64, &NodeSnapshot)> = candidates
        .into_iter()
        .filter_map(|n| weight(n, spec, factor).map(|w| (w, n.container_count() as i64, n)))
        .collect();
    if weighted.is_empty() {
        return Err(ScheduleError::NoResources);
    }
    // Names break the remaining ties so that equal nodes are ranked the same way every time.
    match kind {
        StrategyKind::Spread => {
            weighted.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| a.2.cmp_name(b.2)))
        }
        _ => weighted.sort_unstable_by(|a, b| (b.0, b.1).cmp(&(a.0, a.1)).then_with(|| a.2.cmp_name(b.2))),
    }
    Ok(weighted.into_iter().map(|(_, _, n)| n).collect())
}

/// The single best node, in one pass: what a create needs, without sorting every node.
pub fn best<'n>(
    kind: StrategyKind,
    candidates: Vec<&'n NodeSnapshot>,
    spec: &ContainerSpec,
    rng: &mut impl rand::Rng,
) -> Result<&'n NodeSnapshot, ScheduleError> {
    if kind == StrategyKind::Random {
        return candidates.choose(rng).copied().ok_or(ScheduleError::NoResources);
    }
    let factor = if kind == StrategyKind::Spread { -10 } else { 10 };
    let key = |n: &'n NodeSnapshot| weight(n, spec, factor).map(|w| (w, n.container_count() as i64, n));
    let better = |a: &(i64, i64, &NodeSnapshot), b: &(i64, i64, &NodeSnapshot)| {
        let by_load = match kind {
            StrategyKind::Spread => (a.0, a.1).cmp(&(b.0, b.1)),
            _ => (b.0, b.1).cmp(&(a.0, a.1)),
        };
        by_load.then_with(|| a.2.cmp_name(b.2)).is_lt()
    };
    candidates
        .into_iter()
        .filter_map(key)
        .reduce(|best, n| if better(&n, &best) { n } else { best })
        .map(|(_, _, n)| n)
        .ok_or(ScheduleError::NoResources)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{node, rng};
    use super::*;

    #[test]
    fn spread_prefers_fewer_containers() {
        let (a, b, c) = (node("node-1", 3), node("node-2", 1), node("node-3", 2));
        let ranked = rank(StrategyKind::Spread, vec![&a, &b, &c], &ContainerSpec::default(), &mut rng()).unwrap();
        assert_eq!(ranked.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["node-2", "node-3", "node-1"]);
        let one = best(StrategyKind::Spread, vec![&a, &b, &c], &ContainerSpec::default(), &mut rng()).unwrap();
        assert_eq!(one.name, "node-2");
    }

    #[test]
    fn binpack_fills_the_most_used_node_that_fits() {
        let mut a = node("node-1", 1);
        a.edit_facts(|f| f.engine_used_cpus = 1);
        let b = node("node-2", 0);
        let spec = ContainerSpec { cpus: 1, ..Default::default() };
        let ranked = rank(StrategyKind::Binpack, vec![&a, &b], &spec, &mut rng()).unwrap();
        assert_eq!(ranked[0].name, "node-1");
        assert_eq!(best(StrategyKind::Binpack, vec![&a, &b], &spec, &mut rng()).unwrap().name, "node-1");
        let spread = rank(StrategyKind::Spread, vec![&a, &b], &spec, &mut rng()).unwrap();
        assert_eq!(spread[0].name, "node-2");
    }

    #[test]
    fn full_nodes_are_refused() {
        let mut a = node("node-1", 1);
        let total = a.total_memory;
        a.edit_facts(|f| f.engine_used_memory = total);
        let spec = ContainerSpec { memory: 1 << 30, ..Default::default() };
        assert_eq!(rank(StrategyKind::Spread, vec![&a], &spec, &mut rng()).unwrap_err(), ScheduleError::NoResources);
        let spec = ContainerSpec { cpus: 3, ..Default::default() };
        assert_eq!(best(StrategyKind::Binpack, vec![&a], &spec, &mut rng()).unwrap_err(), ScheduleError::NoResources);
    }

    #[test]
    fn a_node_with_failures_loses_to_a_healthy_one() {
        let mut a = node("node-1", 0);
        a.health_indicator = 67;
        let b = node("node-2", 5);
        assert_eq!(
            best(StrategyKind::Spread, vec![&a, &b], &ContainerSpec::default(), &mut rng()).unwrap().name,
            "node-2"
        );
    }

    #[test]
    fn random_ignores_resources() {
        let mut a = node("node-1", 0);
        let total = a.total_memory;
        a.edit_facts(|f| f.engine_used_memory = total);
        let spec = ContainerSpec { memory: 1 << 40, ..Default::default() };
        assert_eq!(rank(StrategyKind::Random, vec![&a], &spec, &mut rng()).unwrap().len(), 1);
    }
}

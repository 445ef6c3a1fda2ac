//! The classic filters. Each keeps the nodes that may take the container.

use super::{ContainerSpec, Expr, NodeSnapshot, ScheduleError};

/// A filter, by its classic name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterKind {
    /// Drops nodes that are not healthy.
    Health,
    /// Drops nodes where a requested host port is taken.
    Port,
    /// Honours the engine label `containerslots=N`.
    ContainerSlots,
    /// Keeps nodes holding every container this one depends on.
    Dependency,
    /// Container, image and label affinities.
    Affinity,
    /// Node name/ID and node label constraints.
    Constraint,
    /// Node-name whitelists.
    Whitelist,
}

impl FilterKind {
    /// Classic default order.
    pub fn defaults() -> Vec<FilterKind> {
        use FilterKind::*;
        vec![Health, Port, ContainerSlots, Dependency, Affinity, Constraint, Whitelist]
    }

    /// Parses a classic filter name.
    pub fn parse(name: &str) -> Option<FilterKind> {
        use FilterKind::*;
        Some(match name {
            "health" => Health,
            "port" => Port,
            "containerslots" => ContainerSlots,
            "dependency" => Dependency,
            "affinity" => Affinity,
            "constraint" => Constraint,
            "whitelist" => Whitelist,
            _ => return None,
        })
    }

    /// The classic name.
    pub fn name(self) -> &'static str {
        use FilterKind::*;
        match self {
            Health => "health",
            Port => "port",
            ContainerSlots => "containerslots",
            Dependency => "dependency",
            Affinity => "affinity",
            Constraint => "constraint",
            Whitelist => "whitelist",
        }
    }

    /// What this filter asks of `spec`, for the failure message; `removed` says whether this
    /// filter removed nodes (slots are only worth naming then).
    pub fn conditions(self, spec: &ContainerSpec, removed: bool) -> Vec<String> {
        use FilterKind::*;
        match self {
            Health => vec![],
            Port => spec
                .host_ports
                .iter()
                .map(|(_, p)| format!("port {p} (Bridge mode)"))
                .chain(spec.host_mode_ports.iter().map(|p| format!("port {p} (Host mode)")))
                .collect(),
            ContainerSlots if removed => vec!["available container slots".into()],
            ContainerSlots => vec![],
            Dependency => spec.dependencies.clone(),
            Affinity => spec.affinities.iter().map(Expr::text).collect(),
            Constraint => spec.constraints.iter().map(Expr::text).collect(),
            Whitelist => spec.whitelists.iter().map(Expr::text).collect(),
        }
    }

    /// Whether one node passes this filter. `soft` says whether soft expressions count.
    pub fn keeps(self, n: &NodeSnapshot, spec: &ContainerSpec, soft: bool) -> bool {
        use FilterKind::*;
        let counts = |e: &&Expr| soft || !e.soft;
        match self {
            Health => n.health_indicator > 0,
            Port => (spec.host_ports.is_empty() && spec.host_mode_ports.is_empty()) || ports_free(n, spec),
            ContainerSlots => n.load().slots.is_none_or(|slots| n.container_count() < slots),
            Dependency => spec.dependencies.iter().all(|d| has_dependency(n, d)),
            Affinity => spec.affinities.iter().filter(counts).all(|e| affinity_holds(n, e)),
            Constraint => spec.constraints.iter().filter(counts).all(|e| constraint_holds(n, e)),
            Whitelist => spec.whitelists.iter().all(|e| e.value.split('|').any(|name| name == n.name)),
        }
    }

    /// Keeps the candidates that pass. `soft` says whether soft expressions count.
    pub fn apply<'n>(
        self,
        nodes: Vec<&'n NodeSnapshot>,
        spec: &ContainerSpec,
        soft: bool,
    ) -> Result<Vec<&'n NodeSnapshot>, ScheduleError> {
        use FilterKind::*;
        let counts = |e: &&Expr| soft || !e.soft;
        Ok(match self {
            Health => nodes.into_iter().filter(|n| n.health_indicator > 0).collect(),
            Port => {
                if spec.host_ports.is_empty() && spec.host_mode_ports.is_empty() {
                    return Ok(nodes);
                }
                nodes.into_iter().filter(|n| ports_free(n, spec)).collect()
            }
            ContainerSlots => nodes.into_iter().filter(|n| self.keeps(n, spec, soft)).collect(),
            Dependency => {
                if spec.dependencies.is_empty() {
                    return Ok(nodes);
                }
                let kept: Vec<_> =
                    nodes.into_iter().filter(|n| spec.dependencies.iter().all(|d| has_dependency(n, d))).collect();
                if kept.is_empty() {
                    return Err(ScheduleError::Dependencies(spec.dependencies.join(" ")));
                }
                kept
            }
            Affinity => {
                let exprs: Vec<&Expr> = spec.affinities.iter().filter(counts).collect();
                nodes.into_iter().filter(|n| exprs.iter().all(|e| affinity_holds(n, e))).collect()
            }
            Constraint => {
                let exprs: Vec<&Expr> = spec.constraints.iter().filter(counts).collect();
                nodes.into_iter().filter(|n| exprs.iter().all(|e| constraint_holds(n, e))).collect()
            }
            Whitelist => {
                if spec.whitelists.is_empty() {
                    return Ok(nodes);
                }
                nodes
                    .into_iter()
                    .filter(|n| spec.whitelists.iter().all(|e| e.value.split('|').any(|name| name == n.name)))
                    .collect()
            }
        })
    }
}

fn all_interfaces(ip: &str) -> bool {
    ip.is_empty() || ip == "0.0.0.0" || ip == "::"
}

fn ports_free(node: &NodeSnapshot, spec: &ContainerSpec) -> bool {
    let bridge_ok = spec.host_ports.iter().all(|(ip, port)| {
        !node
            .containers()
            .flat_map(|c| &c.host_ports)
            .any(|(cip, cport)| cport == port && (cip == ip || all_interfaces(cip) || all_interfaces(ip)))
    });
    let host_ok =
        spec.host_mode_ports.iter().all(|p| !node.containers().flat_map(|c| &c.host_mode_ports).any(|cp| cp == p));
    bridge_ok && host_ok
}

/// `--volumes-from x:ro`, `--link x:alias`, `--net=container:x` all name a container first.
fn dependency_name(dep: &str) -> &str {
    let dep = dep.split_once('=').map_or(dep, |(_, v)| v);
    let dep = dep.strip_prefix("container:").unwrap_or(dep);
    dep.split(':').next().unwrap_or(dep).trim_start_matches('/')
}

fn has_dependency(node: &NodeSnapshot, dep: &str) -> bool {
    let name = dependency_name(dep);
    node.containers().any(|c| c.id.starts_with(name) || c.names.iter().any(|n| n == name))
}

fn affinity_holds(node: &NodeSnapshot, e: &Expr) -> bool {
    match e.key.as_str() {
        "container" => e.holds(
            node.containers().flat_map(|c| std::iter::once(c.id.as_str()).chain(c.names.iter().map(String::as_str))),
        ),
        "image" => e.holds(node.images.iter().flat_map(|i| {
            std::iter::once(i.id.as_str())
                .chain(i.repo_tags.iter().map(String::as_str))
                .chain(i.repo_tags.iter().map(|t| t.rsplit_once(':').map_or(t.as_str(), |(repo, _)| repo)))
        })),
        key => e.holds(node.containers().filter_map(|c| c.labels.get(key).map(String::as_str))),
    }
}

fn constraint_holds(node: &NodeSnapshot, e: &Expr) -> bool {
    match e.key.as_str() {
        "node" => e.holds([node.engine_id.as_str(), node.name.as_str()]),
        key => e.holds([node.labels.get(key).map_or("", |v| &**v)]),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{node, rng};
    use super::super::{ContainerView, ImageView, Scheduler, StrategyKind};
    use super::*;

    fn names<'a>(nodes: &[&'a NodeSnapshot]) -> Vec<&'a str> {
        let mut v: Vec<_> = nodes.iter().map(|n| n.name.as_str()).collect();
        v.sort();
        v
    }

    #[test]
    fn constraints_match_labels_and_node_names() {
        let mut a = node("node-1", 0);
        a.edit_facts(|f| {
            f.labels.insert("zone".into(), "a".into());
        });
        let b = node("node-2", 0);
        let spec = ContainerSpec { constraints: vec![Expr::parse("zone==a").unwrap()], ..Default::default() };
        assert_eq!(names(&FilterKind::Constraint.apply(vec![&a, &b], &spec, true).unwrap()), ["node-1"]);
        let spec = ContainerSpec { constraints: vec![Expr::parse("zone!=a").unwrap()], ..Default::default() };
        assert_eq!(names(&FilterKind::Constraint.apply(vec![&a, &b], &spec, true).unwrap()), ["node-2"]);
        let spec = ContainerSpec { constraints: vec![Expr::parse("node==ID-node-2").unwrap()], ..Default::default() };
        assert_eq!(names(&FilterKind::Constraint.apply(vec![&a, &b], &spec, true).unwrap()), ["node-2"]);
    }

    #[test]
    fn ports_conflict_on_same_port_unless_ips_differ() {
        let mut a = node("node-1", 0);
        a.edit_facts(|f| {
            f.engine_containers.push(std::sync::Arc::new(ContainerView {
                host_ports: vec![("127.0.0.1".into(), 80)],
                ..Default::default()
            }));
        });
        let b = node("node-2", 0);
        let spec = ContainerSpec { host_ports: vec![("".into(), 80)], ..Default::default() };
        assert_eq!(names(&FilterKind::Port.apply(vec![&a, &b], &spec, true).unwrap()), ["node-2"]);
        let spec = ContainerSpec { host_ports: vec![("127.0.0.2".into(), 80)], ..Default::default() };
        assert_eq!(names(&FilterKind::Port.apply(vec![&a, &b], &spec, true).unwrap()), ["node-1", "node-2"]);
        let mut h = node("node-3", 0);
        h.edit_facts(|f| {
            f.engine_containers.push(std::sync::Arc::new(ContainerView {
                host_mode_ports: vec!["80/tcp".into()],
                ..Default::default()
            }));
        });
        let spec = ContainerSpec { host_mode_ports: vec!["80/tcp".into()], ..Default::default() };
        assert!(FilterKind::Port.apply(vec![&h], &spec, true).unwrap().is_empty());
    }

    #[test]
    fn container_slots_count_every_container() {
        let mut a = node("node-1", 2);
        a.edit_facts(|f| {
            f.container_slots = Some(2);
        });
        let mut b = node("node-2", 2);
        b.edit_facts(|f| {
            f.container_slots = Some(3);
        });
        let c = node("node-3", 50);
        let kept = FilterKind::ContainerSlots.apply(vec![&a, &b, &c], &ContainerSpec::default(), true).unwrap();
        assert_eq!(names(&kept), ["node-2", "node-3"]);
    }

    #[test]
    fn dependencies_pin_to_the_node_holding_them() {
        let a = node("node-1", 1);
        let b = node("node-2", 1);
        let spec = ContainerSpec { dependencies: vec!["--volumes-from=node-2-c0:ro".into()], ..Default::default() };
        assert_eq!(names(&FilterKind::Dependency.apply(vec![&a, &b], &spec, true).unwrap()), ["node-2"]);
        let spec = ContainerSpec { dependencies: vec!["--link=nowhere:db".into()], ..Default::default() };
        assert_eq!(
            FilterKind::Dependency.apply(vec![&a, &b], &spec, true).unwrap_err().to_string(),
            "Unable to find a node fulfilling all dependencies: --link=nowhere:db"
        );
    }

    #[test]
    fn affinities_see_containers_images_and_labels() {
        let mut a = node("node-1", 1);
        a.edit_facts(|f| {
            std::sync::Arc::make_mut(&mut f.images).push(ImageView {
                id: "sha256:abc".into(),
                repo_tags: vec!["redis:7".into()],
                parent: String::new(),
            });
            std::sync::Arc::make_mut(&mut f.engine_containers[0]).labels.insert("app".into(), "db".into());
        });
        let b = node("node-2", 1);
        let aff = |e: &str| ContainerSpec { affinities: vec![Expr::parse(e).unwrap()], ..Default::default() };
        assert_eq!(
            names(&FilterKind::Affinity.apply(vec![&a, &b], &aff("container==node-2-c0"), true).unwrap()),
            ["node-2"]
        );
        assert_eq!(names(&FilterKind::Affinity.apply(vec![&a, &b], &aff("image==redis"), true).unwrap()), ["node-1"]);
        assert_eq!(names(&FilterKind::Affinity.apply(vec![&a, &b], &aff("app==db"), true).unwrap()), ["node-1"]);
        assert_eq!(names(&FilterKind::Affinity.apply(vec![&a, &b], &aff("app!=db"), true).unwrap()), ["node-2"]);
        // Soft affinities are ignored on the second pass.
        assert_eq!(
            names(&FilterKind::Affinity.apply(vec![&a, &b], &aff("app==~nothing"), false).unwrap()),
            ["node-1", "node-2"]
        );
    }

    #[test]
    fn whitelists_name_nodes_exactly() {
        let (a, b, c) = (node("node-1", 0), node("node-2", 0), node("node-10", 0));
        let spec =
            ContainerSpec { whitelists: vec![Expr::parse("node==node-1|node-2").unwrap()], ..Default::default() };
        assert_eq!(names(&FilterKind::Whitelist.apply(vec![&a, &b, &c], &spec, true).unwrap()), ["node-1", "node-2"]);
    }

    #[test]
    fn port_failure_message_is_classic() {
        let mut a = node("node-1", 0);
        a.edit_facts(|f| {
            f.engine_containers
                .push(std::sync::Arc::new(ContainerView { host_ports: vec![("".into(), 80)], ..Default::default() }));
        });
        let s = Scheduler::new(FilterKind::defaults(), StrategyKind::Spread);
        let spec = ContainerSpec { host_ports: vec![("".into(), 80)], ..Default::default() };
        let err = s.rank(&[a], &spec, &mut rng()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Unable to find a node that satisfies the following conditions \n[port 80 (Bridge mode)]"
        );
    }
}

//! Scheduling decisions per second over synthetic node snapshots (1,000 and 10,000 nodes with 30
//! containers each), every default filter on plus one label constraint, spread strategy, one
//! core. Independent decisions: nothing is batched. Prints decisions/s and the p99 of one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use std::sync::Arc;

use swarm::scheduler::{
    ContainerSpec, ContainerView, Expr, FilterKind, NodeFacts, NodeLabels, NodeSnapshot, Scheduler, StrategyKind,
};

fn nodes(count: usize) -> Vec<NodeSnapshot> {
    // Shared label strings, as the manager's interner makes them.
    let s = |t: &str| -> Arc<str> { Arc::from(t) };
    let (zone, zones, storagedriver, overlay2, slots, hundred) =
        (s("zone"), [s("a"), s("b"), s("c")], s("storagedriver"), s("overlay2"), s("containerslots"), s("100"));
    (0..count)
        .map(|i| {
            NodeSnapshot::healthy(NodeFacts {
                key: format!("10.0.{}.{}:2375", i / 250, i % 250),
                engine_id: format!("ENGINE{i}|10.0.{}.{}:2375", i / 250, i % 250),
                name: format!("node-{i}"),
                labels: NodeLabels::from([
                    (zone.clone(), zones[i % 3].clone()),
                    (storagedriver.clone(), overlay2.clone()),
                    (slots.clone(), hundred.clone()),
                ]),
                container_slots: Some(100),
                total_cpus: 8,
                total_memory: 32 << 30,
                engine_used_cpus: (i % 4) as i64,
                engine_used_memory: ((i % 7) as i64) << 30,
                engine_containers: (0..30)
                    .map(|c| {
                        Arc::new(ContainerView {
                            id: format!("{i:08x}{c:056x}"),
                            names: vec![format!("c{i}-{c}")],
                            image: "busybox".into(),
                            labels: BTreeMap::from([("app".to_string(), format!("app{}", c % 5))]),
                            host_ports: if c == 0 { vec![(String::new(), 8080)] } else { vec![] },
                            host_mode_ports: vec![],
                        })
                    })
                    .collect(),
                images: Default::default(),
            })
        })
        .collect()
}

fn run(count: usize, budget: Duration) {
    let snapshot = nodes(count);
    let scheduler = Scheduler::new(FilterKind::defaults(), StrategyKind::Spread);
    let spec = ContainerSpec {
        image: "busybox".into(),
        cpus: 1,
        memory: 256 << 20,
        constraints: vec![Expr::parse("zone==a").unwrap()],
        ..Default::default()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < budget {
        let t = Instant::now();
        let chosen = scheduler.select(&snapshot, &spec, &mut rng).expect("a node fits");
        samples.push(t.elapsed());
        std::hint::black_box(chosen);
    }
    let total = started.elapsed();
    samples.sort();
    let p = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "scheduler: {count:>6} nodes x 30 containers: {:>9.0} decisions/s  p50 {:>8.1} us  p99 {:>8.1} us  ({} decisions)",
        samples.len() as f64 / total.as_secs_f64(),
        p(0.50).as_secs_f64() * 1e6,
        p(0.99).as_secs_f64() * 1e6,
        samples.len()
    );
}

fn main() {
    for count in [1_000, 10_000] {
        run(count, Duration::from_secs(3));
    }
}

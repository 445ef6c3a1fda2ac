use crate::support::*;

fn reserved_cpus(m: &Manager) -> Vec<(String, String)> {
    let info = m.docker(&["info"]);
    let mut out = Vec::new();
    let mut node = String::new();
    for line in info.lines() {
        let t = line.trim_start();
        if line.starts_with("  node-") {
            node = t.split(':').next().unwrap().to_string();
        } else if let Some(v) = t.strip_prefix("└ Reserved CPUs: ") {
            out.push((node.clone(), v.to_string()));
        }
    }
    out
}

#[test]
fn binpack_fills_one_node_before_the_next_and_info_shows_reservations() {
    let es = engines(&[("node-1", &[]), ("node-2", &[]), ("node-3", &[])]);
    let m = Manager::start(&nodes_url(&es), &["--strategy", "binpack"]);
    m.wait_healthy(3);
    assert!(m.docker(&["info"]).contains("Strategy: binpack"));
    let ncpu: i64 = docker_ok(&es[0].host(), &["info", "-f", "{{.NCPU}}"]).parse().unwrap();
    for i in 0..ncpu {
        m.docker(&["run", "-d", "--name", &format!("b{i}"), "-c", "1", "busybox", "sleep", "300"]);
    }
    let nodes: Vec<String> =
        (0..ncpu).map(|i| m.docker(&["inspect", "-f", "{{.Node.Name}}", &format!("b{i}")])).collect();
    assert!(nodes.iter().all(|n| n == &nodes[0]), "binpack spread them: {nodes:?}");
    // Classic: -c counts CPUs in swarm and becomes real shares on the engine.
    assert_eq!(
        m.docker(&["inspect", "-f", "{{.HostConfig.CpuShares}}", "b0"]),
        ((1024 + ncpu - 1) / ncpu).to_string(),
        "classic Swarm rounds up: math.Ceil(cpus*1024/NCPU)"
    );
    let full = &nodes[0];
    assert!(reserved_cpus(&m).contains(&(full.clone(), format!("{ncpu} / {ncpu}"))), "{:?}", reserved_cpus(&m));
    m.docker(&["run", "-d", "--name", "next", "-c", "1", "busybox", "sleep", "300"]);
    assert_ne!(&m.docker(&["inspect", "-f", "{{.Node.Name}}", "next"]), full);
    let err = m.docker_err(&["run", "-d", "--name", "huge", "-m", "100000g", "busybox", "sleep", "300"]);
    assert!(err.contains("no resources available to schedule container"), "{err}");
}

#[test]
fn spread_balances_reserved_cpus() {
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(2);
    m.docker(&["run", "-d", "--name", "s0", "-c", "1", "busybox", "sleep", "300"]);
    m.docker(&["run", "-d", "--name", "s1", "-c", "1", "busybox", "sleep", "300"]);
    let a = m.docker(&["inspect", "-f", "{{.Node.Name}}", "s0"]);
    let b = m.docker(&["inspect", "-f", "{{.Node.Name}}", "s1"]);
    assert_ne!(a, b);
    assert!(reserved_cpus(&m).iter().all(|(_, r)| r.starts_with("1 / ")), "{:?}", reserved_cpus(&m));
}

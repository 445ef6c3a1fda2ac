//! Three managers behind the shipped HAProxy configuration: losing one, the leader included,
//! costs a client that never retries nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::*;

/// What every client runs: `docker run -d` of a container of its own, and now and then a
/// `docker ps`, one command after another, 100 ms apart.
fn cli_loop(host: &str) -> CliLoop {
    CliLoop::start(host, 3, Duration::from_millis(100), |c, i| {
        let args = if i % 3 == 2 {
            vec!["ps", "-a", "--format", "{{.Names}}"].into_iter().map(str::to_string).collect()
        } else {
            vec![
                "run".to_string(),
                "-d".into(),
                "--name".into(),
                format!("lb{c}-{i}"),
                "--network".into(),
                "none".into(),
                "busybox".into(),
                "true".into(),
            ]
        };
        args
    })
}

/// No command failed, and every container a `run` acknowledged is on exactly one engine, read
/// from the engines themselves; none is there that no client asked for.
fn nothing_failed_nothing_lost(ran: &[Ran], engines: &[Engine]) {
    let failed: Vec<String> = ran
        .iter()
        .filter(|r| !r.ok)
        .map(|r| format!("{:?} at {:?} after {:?}: {}", r.args, r.at, r.took, r.stderr))
        .collect();
    let slowest = ran.iter().map(|r| r.took).max().unwrap_or_default();
    eprintln!("{} commands, {} failed, the slowest took {slowest:?}", ran.len(), failed.len());
    assert!(failed.is_empty(), "commands failed:\n{}", failed.join("\n"));
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    for e in engines {
        for name in e.container_names().into_iter().filter(|n| n.starts_with("lb")) {
            *copies.entry(name).or_default() += 1;
        }
    }
    let asked: Vec<&str> = ran.iter().filter(|r| r.args[0] == "run").map(|r| r.args[3].as_str()).collect();
    for name in &asked {
        assert_eq!(copies.get(*name), Some(&1), "{name} acknowledged: it must be on exactly one engine");
    }
    let phantoms: Vec<&String> = copies.keys().filter(|n| !asked.contains(&n.as_str())).collect();
    assert!(phantoms.is_empty(), "containers no client asked for: {phantoms:?}");
}

#[test]
fn a_plain_cli_loop_through_haproxy_sees_no_error_when_raft_leaders_are_killed_and_stopped() {
    let group = JoinedGroup::start(&["node-1", "node-2"]);
    let lb = group.load_balancer();
    let JoinedGroup { engines: es, mut g, joins: _joins } = group;
    let first = g.wait_one_primary(Duration::from_secs(10));
    let cli = cli_loop(&format!("tcp://{}", lb.addr));
    std::thread::sleep(Duration::from_secs(2));
    g.kill(first);
    let second = g.wait_one_primary(Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    // Back, so that two of three remain once the next leader stops.
    g.restart(first);
    g.m(first).wait_healthy(2);
    std::thread::sleep(Duration::from_secs(1));
    g.stop(second);
    g.wait_one_primary(Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    nothing_failed_nothing_lost(&cli.stop(), &es);
}

#[test]
fn a_plain_cli_loop_through_haproxy_sees_no_error_when_etcd_elected_leaders_are_killed_and_stopped() {
    let etcd = vec![Etcd::single()];
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let url = etcd_url(&etcd, "lb");
    let _joins: Vec<Join> = es.iter().map(|e| Join::start(&e.addr, &url, "1s", "5s")).collect();
    let mut ms: Vec<Option<Manager>> =
        (0..3).map(|_| Some(Manager::start_replica(&url, &["--replication-ttl", "3s"]))).collect();
    let primary = |ms: &[Option<Manager>]| -> Option<usize> {
        let found: Vec<usize> = ms
            .iter()
            .enumerate()
            .filter(|(_, m)| m.as_ref().is_some_and(|m| m.role().0 == "primary"))
            .map(|(i, _)| i)
            .collect();
        (found.len() == 1).then(|| found[0])
    };
    wait_until(Duration::from_secs(20), "exactly one primary", || primary(&ms).is_some());
    for m in ms.iter().flatten() {
        m.wait_healthy(2);
    }
    let lb = LoadBalancer::start(&ms.iter().flatten().map(|m| m.addr.clone()).collect::<Vec<_>>());
    let cli = cli_loop(&format!("tcp://{}", lb.addr));
    std::thread::sleep(Duration::from_secs(2));
    let first = primary(&ms).expect("a primary");
    ms[first].take().expect("running").kill_hard();
    wait_until(Duration::from_secs(15), "a new primary", || primary(&ms).is_some());
    std::thread::sleep(Duration::from_secs(2));
    let second = primary(&ms).expect("a primary");
    ms[second].take().expect("running").terminate();
    wait_until(Duration::from_secs(15), "a third primary", || primary(&ms).is_some());
    std::thread::sleep(Duration::from_secs(2));
    nothing_failed_nothing_lost(&cli.stop(), &es);
}

//! Nothing lost, nothing doubled: rescheduling, creates in flight across a leader kill, and a
//! full restart of the managers, on a single manager, on etcd and on embedded Raft.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::*;

/// `name -> (node, state, swarm id)` from `docker ps -a` through `m`.
fn ps_all(m: &Manager) -> BTreeMap<String, (String, String, String)> {
    let out = m.docker(&["ps", "-a", "--format", "{{.Names}}|{{.State}}|{{.Label \"com.docker.swarm.id\"}}"]);
    let mut map = BTreeMap::new();
    for line in out.lines() {
        let mut parts = line.split('|');
        let (full, state, sid) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (node, name) = full.split_once('/').unwrap_or(("", full));
        assert!(
            map.insert(name.to_string(), (node.to_string(), state.to_string(), sid.to_string())).is_none(),
            "{name} listed twice:\n{out}"
        );
    }
    map
}

/// Swarm IDs seen more than once in `docker ps -a`.
fn doubled_ids(m: &Manager) -> Vec<String> {
    let out = m.docker(&["ps", "-a", "--format", "{{.Label \"com.docker.swarm.id\"}}"]);
    let mut seen = BTreeMap::new();
    for id in out.lines().filter(|l| !l.is_empty()) {
        *seen.entry(id.to_string()).or_insert(0) += 1;
    }
    seen.into_iter().filter(|(_, n)| *n > 1).map(|(id, _)| id).collect()
}

/// Runs reschedulable containers until `want` of them land on `node`, then creates (without
/// starting) one more there; returns the names on `node`.
fn place_on(m: &Manager, node: &str, want: usize) -> Vec<String> {
    let mut on_node = Vec::new();
    let mut created = false;
    for i in 0..(want * 4 + 8) {
        let (name, port) = (format!("r{i}"), format!("{}:80", 18000 + i));
        let verb: &[&str] = if on_node.len() < want { &["run", "-d"] } else { &["create"] };
        let args = [
            "--name",
            &name,
            "-e",
            "reschedule:on-node-failure",
            "-l",
            "app=web",
            "-p",
            &port,
            "busybox",
            "sleep",
            "300",
        ];
        m.docker(&[verb, &args].concat());
        if ps_all(m)[&name].0 == node {
            created |= verb == ["create"];
            on_node.push(name);
        }
        if created {
            return on_node;
        }
    }
    panic!("could not place containers on {node}: {on_node:?}");
}

fn assert_rescheduled(
    m: &Manager,
    before: &BTreeMap<String, (String, String, String)>,
    moved: &[String],
    failed: &str,
) {
    let after = ps_all(m);
    for name in moved {
        let (node, state, sid) = &after[name];
        assert_ne!(node, failed, "{name} still on {failed}");
        assert_eq!(sid, &before[name].2, "{name} keeps its swarm id");
        assert_eq!(state, &before[name].1, "{name} keeps its state");
        let inspect = m.docker(&[
            "inspect",
            "--format",
            "{{index .Config.Labels \"app\"}} {{json .HostConfig.PortBindings}}",
            name,
        ]);
        assert!(inspect.starts_with("web ") && inspect.contains("\"HostPort\":\"18"), "{name}: {inspect}");
    }
}

/// Reschedulable containers (running and created, with ports and labels) on node-1, whose
/// engine stops: they move to node-2 through `m`; when node-1 returns, its stale copies go.
fn reschedule_and_return(m: &Manager, es: &mut [Engine]) {
    let moved = place_on(m, "node-1", 3);
    m.docker(&[
        "run",
        "-d",
        "--name",
        "stays",
        "--label",
        "com.docker.swarm.constraints=[\"node==node-1\"]",
        "busybox",
        "sleep",
        "300",
    ]);
    let before = ps_all(m);
    let stopped_at = Instant::now();
    es[0].stop();
    wait_until(Duration::from_secs(20), "the containers of node-1 run on node-2", || {
        let now = ps_all(m);
        moved.iter().all(|n| now.get(n).is_some_and(|(node, state, _)| node == "node-2" && *state == before[n].1))
    });
    eprintln!("rescheduled {} containers {:?} after the engine stopped", moved.len(), stopped_at.elapsed());
    assert_rescheduled(m, &before, &moved, "node-1");
    // Without the policy, a container stays where it was, shown as down.
    assert_eq!(ps_all(m)["stays"].0, "node-1");
    assert!(doubled_ids(m).is_empty());

    es[0].restart();
    m.wait_healthy(2);
    wait_until(Duration::from_secs(20), "the stale copies are gone from node-1", || {
        let left = es[0].container_names();
        moved.iter().all(|n| !left.iter().any(|l| l.trim_start_matches('/') == n))
    });
    assert!(doubled_ids(m).is_empty(), "{:?}", ps_all(m));
    assert_eq!(ps_all(m)["stays"].0, "node-1");
}

#[test]
fn a_single_manager_reschedules_a_stopped_engine_s_containers() {
    let mut es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(2);
    reschedule_and_return(&m, &mut es);
}

/// A copy the user stopped after its reschedule is still the container: when the original's
/// node returns, the original goes (found in the chaos campaign: seed 1045550769 left both).
#[test]
fn a_copy_stopped_after_its_reschedule_still_replaces_the_original() {
    let mut es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(2);
    let moved = place_on(&m, "node-1", 1);
    let before = ps_all(&m);
    es[0].stop();
    wait_until(Duration::from_secs(20), "the containers of node-1 run on node-2", || {
        let now = ps_all(&m);
        moved.iter().all(|n| now.get(n).is_some_and(|(node, state, _)| node == "node-2" && *state == before[n].1))
    });
    m.docker(&["stop", "-t", "1", &moved[0]]);
    es[0].restart();
    m.wait_healthy(2);
    let on = |e: &Engine, name: &str| e.container_names().iter().any(|l| l.trim_start_matches('/') == name);
    wait_until(Duration::from_secs(30), "the originals are gone from node-1", || moved.iter().all(|n| !on(&es[0], n)));
    assert!(moved.iter().all(|n| on(&es[1], n)), "a copy is missing from node-2: {:?}", ps_all(&m));
    assert_eq!(ps_all(&m)[&moved[0]].1, "exited", "the stopped copy stays stopped");
    assert!(doubled_ids(&m).is_empty(), "{:?}", ps_all(&m));
}

/// A container rescheduled twice in a row (its first copy's node fails before the original's
/// node is back) leaves no stale copy on either engine once both return, and a removal of its
/// last copy holds: every stale copy is remembered, and read here from the engines themselves.
#[test]
fn a_container_rescheduled_twice_leaves_no_stale_copy_and_stays_removed() {
    let mut es = engines(&[("node-1", &[]), ("node-2", &[]), ("node-3", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(3);
    let moved = place_on(&m, "node-1", 1);
    let before = ps_all(&m);
    es[0].stop();
    wait_until(Duration::from_secs(20), "the containers of node-1 moved", || {
        let now = ps_all(&m);
        moved.iter().all(|n| now.get(n).is_some_and(|(node, state, _)| node != "node-1" && *state == before[n].1))
    });
    let first = ps_all(&m)[&moved[0]].0.clone();
    let second = es.iter().position(|e| e.name == first).unwrap();
    es[second].stop();
    let last = ["node-2", "node-3"].into_iter().find(|n| *n != first).unwrap();
    wait_until(Duration::from_secs(20), &format!("the containers of node-1 moved again, to {last}"), || {
        let now = ps_all(&m);
        moved.iter().all(|n| now.get(n).is_some_and(|(node, state, _)| node == last && *state == before[n].1))
    });
    es[0].restart();
    es[second].restart();
    m.wait_healthy(3);
    let copies = |name: &str| {
        es.iter().filter(|e| e.container_names().iter().any(|l| l.trim_start_matches('/') == name)).count()
    };
    wait_until(Duration::from_secs(30), "one copy of each moved container, on the engines", || {
        moved.iter().all(|n| copies(n) == 1)
    });
    m.docker(&["rm", "-f", &moved[0]]);
    // Two reschedule passes, time for a forgotten copy to come back.
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(copies(&moved[0]), 0, "{} came back after its removal: {:?}", moved[0], ps_all(&m));
    assert!(doubled_ids(&m).is_empty(), "{:?}", ps_all(&m));
}

/// Three etcd-elected managers over `es`, joined through etcd; waits for one primary.
fn etcd_group(etcd: &[Etcd], es: &[Engine], prefix: &str) -> (Vec<Join>, Vec<Option<Manager>>) {
    let url = etcd_url(etcd, prefix);
    let joins: Vec<Join> = es.iter().map(|e| Join::start(&e.addr, &url, "1s", "5s")).collect();
    let ms: Vec<Option<Manager>> =
        (0..3).map(|_| Some(Manager::start_replica(&url, &["--replication-ttl", "3s"]))).collect();
    wait_until(Duration::from_secs(20), "one primary", || one_primary(&ms).is_some());
    for m in ms.iter().flatten() {
        m.wait_healthy(es.len());
    }
    (joins, ms)
}

#[test]
fn etcd_managers_reschedule_a_stopped_engine_s_containers() {
    let etcd = vec![Etcd::single()];
    let mut es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let (_joins, ms) = etcd_group(&etcd, &es, "stopped");
    // Through a replica: the leader does the work, whoever is asked.
    let replica = ms.iter().flatten().find(|m| m.role().0 == "replica").unwrap();
    reschedule_and_return(replica, &mut es);
}

#[test]
fn raft_managers_reschedule_a_stopped_engine_s_containers() {
    let mut es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let url = nodes_url(&es);
    let g = RaftGroup::start(3, |_| url.clone(), &[]);
    let leader = g.wait_one_primary(Duration::from_secs(10));
    for i in g.running() {
        g.m(i).wait_healthy(2);
    }
    reschedule_and_return(g.m(g.other(leader)), &mut es);
}

#[test]
fn a_host_failing_whole_on_raft_is_repaired_by_the_next_leader() {
    let mut es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let url = nodes_url(&es);
    let mut g = RaftGroup::start(3, |_| url.clone(), &[]);
    let leader = g.wait_one_primary(Duration::from_secs(10));
    for i in g.running() {
        g.m(i).wait_healthy(2);
    }
    let mut ms = std::mem::take(&mut g.ms);
    host_fails_whole_with(&mut ms, leader, &mut es, one_primary);
    g.ms = ms;
}

/// The index of the only running manager that says primary.
fn one_primary(ms: &[Option<Manager>]) -> Option<usize> {
    let p: Vec<usize> = (0..ms.len()).filter(|i| ms[*i].as_ref().is_some_and(|m| m.role().0 == "primary")).collect();
    (p.len() == 1).then(|| p[0])
}

/// Reschedulable containers on node-1; node-1's engine and the leader go down together; the
/// next leader must move them to node-2.
fn host_fails_whole_with(
    ms: &mut [Option<Manager>],
    leader: usize,
    es: &mut [Engine],
    check: impl Fn(&[Option<Manager>]) -> Option<usize>,
) {
    let m = ms[leader].as_ref().unwrap();
    let moved = place_on(m, "node-1", 3);
    let before = ps_all(m);
    if let Some(mut dead) = ms[leader].take() {
        std::thread::scope(|s| {
            s.spawn(|| es[0].stop());
            dead.kill_hard();
        });
    }
    wait_until(Duration::from_secs(20), "a new leader", || check(ms).is_some());
    let m = ms[check(ms).unwrap()].as_ref().unwrap();
    let deadline = Instant::now() + patience(Duration::from_secs(30));
    loop {
        let last = ps_all(m);
        if moved.iter().all(|n| last.get(n).is_some_and(|(node, state, _)| node == "node-2" && *state == before[n].1)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the next leader did not reschedule {moved:?} from node-1 within 30 s; before {before:?}, now {last:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_rescheduled(m, &before, &moved, "node-1");
    assert!(doubled_ids(m).is_empty());
}

#[test]
fn a_host_failing_whole_on_etcd_is_repaired_by_the_next_leader() {
    let etcd = vec![Etcd::single()];
    let mut es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let (_joins, mut ms) = etcd_group(&etcd, &es, "repairs");
    let leader = one_primary(&ms).unwrap();
    host_fails_whole_with(&mut ms, leader, &mut es, one_primary);
}

/// Creates `n` containers by name through `via`, retrying what fails (as a user would) until
/// it exists; `kill` runs once, after the first few.
fn burst(via: &Manager, n: usize, kill: impl FnOnce()) {
    let mut kill = Some(kill);
    for i in 0..n {
        if i == 3 {
            if let Some(k) = kill.take() {
                k();
            }
        }
        let name = format!("b{i}");
        let deadline = Instant::now() + patience(Duration::from_secs(30));
        loop {
            let o = run(docker_cmd(&via.host()).args(["create", "--name", &name, "busybox", "sleep", "300"]));
            if o.status.success() || stderr(&o).contains("Conflict") {
                break;
            }
            assert!(Instant::now() < deadline, "{name} never created: {}", stderr(&o));
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn creates_across_a_raft_leader_kill_exist_exactly_once_and_a_full_restart_changes_nothing() {
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let url = nodes_url(&es);
    let mut g = RaftGroup::start(3, |_| url.clone(), &[]);
    let leader = g.wait_one_primary(Duration::from_secs(10));
    for i in g.running() {
        g.m(i).wait_healthy(2);
    }
    let via = g.other(leader);
    let via_m = g.ms[via].take().unwrap();
    burst(&via_m, 12, || g.kill(leader));
    g.ms[via] = Some(via_m);
    assert_each_once(&es, 12);
    g.restart(leader);
    let primary = g.wait_one_primary(Duration::from_secs(10));
    g.m(primary).docker(&["start", "b1"]);
    g.m(primary).docker(&["run", "--name", "done", "busybox", "true"]);
    let before = ps_all(g.m(primary));
    for i in g.running() {
        g.stop(i);
    }
    for i in 0..3 {
        g.restart(i);
    }
    let primary = g.wait_one_primary(Duration::from_secs(20));
    g.m(primary).wait_healthy(2);
    assert_eq!(ps_all(g.m(primary)), before);
}

/// Each of `n` names on exactly one engine.
fn assert_each_once(es: &[Engine], n: usize) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for e in es {
        for name in e.container_names() {
            *counts.entry(name.trim_start_matches('/').to_string()).or_insert(0) += 1;
        }
    }
    for i in 0..n {
        assert_eq!(counts.get(&format!("b{i}")), Some(&1), "b{i} on the engines: {counts:?}");
    }
}

#[test]
fn creates_across_an_etcd_leader_kill_exist_exactly_once() {
    let etcd = vec![Etcd::single()];
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let (_joins, mut ms) = etcd_group(&etcd, &es, "burst");
    let leader = one_primary(&ms).unwrap();
    let via = (leader + 1) % 3;
    let via_m = ms[via].take().unwrap();
    burst(&via_m, 12, || {
        if let Some(mut m) = ms[leader].take() {
            m.kill_hard();
        }
    });
    assert_each_once(&es, 12);
}

#[test]
fn a_full_restart_of_etcd_managers_changes_nothing() {
    let etcd = vec![Etcd::single()];
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let url = etcd_url(&etcd, "restart");
    let _joins: Vec<Join> = es.iter().map(|e| Join::start(&e.addr, &url, "1s", "5s")).collect();
    let start =
        || -> Vec<Manager> { (0..3).map(|_| Manager::start_replica(&url, &["--replication-ttl", "3s"])).collect() };
    let ms = start();
    wait_until(Duration::from_secs(20), "one primary", || primaries(&ms).len() == 1);
    let m = &ms[primaries(&ms)[0]];
    m.wait_healthy(2);
    for i in 0..4 {
        m.docker(&["run", "-d", "--name", &format!("k{i}"), "busybox", "sleep", "300"]);
    }
    m.docker(&["run", "--name", "exited", "busybox", "true"]);
    m.docker(&["create", "--name", "created", "busybox", "true"]);
    let before = ps_all(m);
    drop(ms);
    let ms = start();
    wait_until(Duration::from_secs(20), "one primary", || primaries(&ms).len() == 1);
    let m = &ms[primaries(&ms)[0]];
    m.wait_healthy(2);
    assert_eq!(ps_all(m), before);
}

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

const TTL: &str = "3s";

fn group(etcd: &[Etcd], es: &[Engine]) -> Vec<Manager> {
    let url = etcd_url(etcd, "ha");
    let _ = es;
    let ms: Vec<Manager> = (0..3).map(|_| Manager::start_replica(&url, &["--replication-ttl", TTL])).collect();
    wait_until(Duration::from_secs(20), "exactly one primary", || primaries(&ms).len() == 1);
    ms
}

fn register(etcd: &[Etcd], es: &[Engine]) -> Vec<Join> {
    let url = etcd_url(etcd, "ha");
    es.iter().map(|e| Join::start(&e.addr, &url, "1s", "5s")).collect()
}

#[test]
fn one_primary_and_replicas_proxy_streams_and_hijacks() {
    let etcd = vec![Etcd::single()];
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let _joins = register(&etcd, &es);
    let ms = group(&etcd, &es);
    let leader = primaries(&ms)[0];
    for (i, m) in ms.iter().enumerate() {
        m.wait_healthy(2);
        let (role, primary) = m.role();
        if i == leader {
            assert_eq!(role, "primary");
        } else {
            assert_eq!((role.as_str(), primary.as_str()), ("replica", ms[leader].addr.as_str()));
            assert!(m.docker(&["info"]).contains("Role: replica"));
        }
    }
    let replica = &ms[(leader + 1) % 3];
    replica.docker(&["run", "-d", "--name", "r1", "busybox", "sh", "-c", "echo one; sleep 0.5; echo two; sleep 300"]);
    assert!(ms[leader].docker(&["ps", "--format", "{{.Names}}"]).contains("/r1"));
    assert_eq!(replica.docker(&["exec", "r1", "echo", "via-replica"]), "via-replica");
    let o = run(docker_cmd(&replica.host()).args(["exec", "r1", "sh", "-c", "exit 6"]));
    assert_eq!(o.status.code(), Some(6));
    let mut child = docker_cmd(&replica.host())
        .args(["run", "--rm", "-i", "busybox", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"stdin through a replica\n").unwrap();
    assert_eq!(String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout), "stdin through a replica\n");
    wait_until(Duration::from_secs(10), "logs through a replica show both lines", || {
        stdout(&run(docker_cmd(&replica.host()).args(["logs", "--tail", "all", "r1"]))) == "one\ntwo\n"
    });
    replica.docker(&["run", "-d", "--name", "short", "busybox", "sh", "-c", "echo a; sleep 0.3; echo b"]);
    let follow = run(docker_cmd(&replica.host()).args(["logs", "-f", "short"]));
    assert_eq!(stdout(&follow), "a\nb\n");
    // The proxied requests show in the follower's metrics.
    let (_, _, metrics) = http(&replica.addr, "GET", "/metrics", None);
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains("swarm_proxied_requests_total{target=\"leader\"}"), "{metrics}");
    assert!(metrics.contains("swarm_is_leader 0"));

    // etcd-elected managers refuse the control plane to Docker API clients as Raft ones do.
    let routes = [
        ("POST", "/_swarm/raft/vote"),
        ("POST", "/_swarm/raft/append"),
        ("GET", "/_swarm/nodes"),
        ("PUT", "/_swarm/nodes/127.0.0.1:9?ttl=600"),
        ("GET", "/_swarm/members"),
        ("POST", "/_swarm/members/127.0.0.1:9"),
        ("POST", "/v1/clusters"),
    ];
    for m in [&ms[leader], replica] {
        for (method, path) in routes {
            let (status, _, body) = http(&m.addr, method, path, Some(b"{}"));
            let body = String::from_utf8_lossy(&body);
            assert_eq!(status, 403, "unsigned {method} {path}: {body}");
            assert!(body.contains("only managers"), "{body}");
        }
    }
    // Read from etcd itself: only the two engines' agents registered.
    let mut listed = swarm_list(&etcd_url(&etcd, "ha"));
    listed.sort();
    let mut expected: Vec<String> = es.iter().map(|e| e.addr.clone()).collect();
    expected.sort();
    assert_eq!(listed, expected);
}

#[test]
fn terminals_attach_and_stats_stream_through_a_replica() {
    let etcd = vec![Etcd::single()];
    let es = engines(&[("node-1", &[])]);
    let _joins = register(&etcd, &es);
    let ms = group(&etcd, &es);
    let replica = &ms[(primaries(&ms)[0] + 1) % 3];
    replica.wait_healthy(1);
    replica.docker(&["run", "-d", "--name", "busy", "busybox", "sleep", "300"]);
    let tty = Tty::open(&replica.host(), "ha-it");
    interactive_session(&tty, "busy");
    replica.docker(&["run", "-dit", "--name", "att", "busybox", "sh"]);
    attach_session(&tty, "att");
    // Two samples a second apart arrive one by one: the stream is relayed, not buffered.
    let stats = http_stream_until(
        &replica.addr,
        "/v1.41/containers/busy/stats?stream=1",
        "\"cpu_stats\"",
        2,
        Duration::from_secs(15),
    );
    assert!(stats.contains("\"memory_stats\""), "{stats}");
}

#[test]
fn a_killed_leader_is_replaced() {
    let etcd = vec![Etcd::single()];
    let es = engines(&[("node-1", &[])]);
    let _joins = register(&etcd, &es);
    let mut ms = group(&etcd, &es);
    let old = primaries(&ms)[0];
    ms[old].kill_hard();
    let killed = Instant::now();
    wait_until(Duration::from_secs(10), "a new primary", || {
        ms.iter().enumerate().any(|(i, m)| i != old && m.role().0 == "primary")
    });
    let took = killed.elapsed();
    eprintln!("SIGKILL failover took {took:?} (ttl {TTL})");
    let survivor = ms.iter().enumerate().find(|(i, m)| *i != old && m.role().0 == "replica").map(|(_, m)| m).unwrap();
    wait_until(Duration::from_secs(5), "the replica follows the new primary", || survivor.role().1 != ms[old].addr);
    survivor.wait_healthy(1);
    survivor.docker(&["run", "-d", "--name", "after-kill", "busybox", "sleep", "300"]);
}

#[test]
fn a_terminated_leader_hands_over() {
    let etcd = vec![Etcd::single()];
    let es = engines(&[("node-1", &[])]);
    let _joins = register(&etcd, &es);
    let mut ms = group(&etcd, &es);
    let old = primaries(&ms)[0];
    let started = Instant::now();
    ms[old].signal("TERM");
    wait_until(Duration::from_secs(5), "a new primary", || {
        ms.iter().enumerate().any(|(i, m)| i != old && m.role().0 == "primary")
    });
    let took = started.elapsed();
    eprintln!("SIGTERM handover took {took:?}");
    ms[old].terminate();
}

#[test]
fn a_paused_leader_steps_down_and_never_leads_beside_another() {
    let etcd = vec![Etcd::single()];
    let es = engines(&[("node-1", &[])]);
    let _joins = register(&etcd, &es);
    let ms = group(&etcd, &es);
    let old = primaries(&ms)[0];
    ms[old].signal("STOP");
    wait_until(Duration::from_secs(10), "a new primary", || {
        ms.iter().enumerate().any(|(i, m)| i != old && m.role().0 == "primary")
    });
    ms[old].signal("CONT");
    // From its first answer after resuming, the old leader is a replica: its lease deadline
    // passed while it was stopped.
    let (role, primary) = ms[old].role();
    assert_eq!(role, "replica", "a resumed leader still claims leadership");
    let _ = primary;
    for _ in 0..30 {
        assert!(primaries(&ms).len() <= 1, "two primaries at once");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_until(Duration::from_secs(10), "the old leader follows the new one", || {
        let (r, p) = ms[old].role();
        r == "replica" && !p.is_empty() && p != ms[old].addr
    });
    assert_eq!(primaries(&ms).len(), 1);
}

#[test]
fn losing_one_of_three_etcd_members_changes_no_leader() {
    let mut etcd = Etcd::cluster(3);
    let es = engines(&[("node-1", &[])]);
    let _joins = register(&etcd, &es);
    let ms = group(&etcd, &es);
    let leader = primaries(&ms)[0];
    etcd[2].stop();
    for _ in 0..40 {
        let roles: Vec<(String, String)> = ms.iter().map(Manager::role).collect();
        // A sample where some manager did not answer in time says nothing about leadership.
        if roles.iter().all(|(r, _)| !r.is_empty()) {
            let leading: Vec<usize> = (0..3).filter(|i| roles[*i].0 == "primary").collect();
            assert_eq!(leading, vec![leader], "leadership changed after losing one etcd member: {roles:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every manager's store, election and discovery may have been talking to the lost member.
    for (i, m) in ms.iter().enumerate() {
        m.docker(&["run", "-d", "--name", &format!("still-{i}"), "busybox", "sleep", "300"]);
    }
    for m in &ms {
        assert!(m.docker(&["info"]).contains("Nodes: 1"), "a manager lost the node with one etcd member");
    }
}

/// A leader whose deadline passed while its lease lived on (renewals delayed past the deadline,
/// then through again) must give the lease up: otherwise it keeps the election key while no
/// longer acting, and nobody leads. The lapse is forced here; in the wild it follows a hung
/// etcd member or a paused manager.
#[test]
fn a_lapsed_leader_gives_up_its_lease() {
    use swarm::leadership::etcd::{run as campaign, EtcdElection};
    use swarm::leadership::{Leadership, LeadershipMetrics, Role};
    let etcd = Etcd::single();
    let endpoints = vec![etcd.client_addr.clone()];
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let candidate = |addr: &str| {
            let leadership = Leadership::replicated(
                addr,
                LeadershipMetrics::register(&prometheus::Registry::new()).expect("metrics"),
            );
            let election = EtcdElection {
                members: std::sync::Arc::new(swarm::etcd::EtcdMembers::new(&endpoints, None)),
                key: "lapse/docker/swarm/leader".into(),
                advertise: addr.into(),
                ttl: Duration::from_secs(3),
                fence: Default::default(),
            };
            let (stop, fence) = (tokio_util::sync::CancellationToken::new(), election.fence.clone());
            tokio::spawn(campaign(election, leadership.clone(), stop.clone(), stop.clone()));
            (leadership, stop, fence)
        };
        let (first, first_stop, first_fence) = candidate("first:1");
        let lead = |l: &Leadership| l.role() == Role::Leader;
        let started = Instant::now();
        while !lead(&first) {
            assert!(started.elapsed() < Duration::from_secs(20), "the first candidate was never elected");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(first_fence.lock().is_some(), "a leader fences the store on its key");
        let (second, second_stop, _) = candidate("second:1");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!lead(&second), "elected beside a live leader");
        // What `is_leader` does once the deadline passes; the first keeps renewing its lease.
        first.step_down(None);
        let lapsed = Instant::now();
        while !lead(&second) {
            // Sooner than the 3 s lease could run out by itself: the lapsed leader revoked it.
            assert!(lapsed.elapsed() < Duration::from_secs(2), "the lapsed leader kept the election key: nobody leads");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("the second candidate led {:?} after the first lapsed", lapsed.elapsed());
        assert!(!lead(&first), "two leaders");
        assert!(first_fence.lock().is_none(), "the lapsed leader still fences store writes on its key");
        first_stop.cancel();
        second_stop.cancel();
    });
}

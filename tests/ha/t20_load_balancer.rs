use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn a_client_behind_haproxy_keeps_working_across_a_leader_kill() {
    let etcd = vec![Etcd::single()];
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let url = etcd_url(&etcd, "lb");
    let _joins: Vec<Join> = es.iter().map(|e| Join::start(&e.addr, &url, "1s", "5s")).collect();
    let mut ms: Vec<Manager> = (0..3).map(|_| Manager::start_replica(&url, &["--replication-ttl", "3s"])).collect();
    wait_until(Duration::from_secs(20), "exactly one primary", || primaries(&ms).len() == 1);
    for m in &ms {
        m.wait_healthy(2);
    }
    let lb = LoadBalancer::start(&ms.iter().map(|m| m.addr.clone()).collect::<Vec<_>>());
    let leader = primaries(&ms)[0];
    survives_a_leader_kill(&lb, || ms[leader].kill_hard());
}

#[test]
fn a_client_behind_haproxy_keeps_working_across_a_raft_leader_kill() {
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let mut g = RaftGroup::start(3, |peers| format!("swarm://{peers}"), &[]);
    let _joins: Vec<Join> = es.iter().map(|e| Join::start(&e.addr, &g.swarm_url(), "1s", "10s")).collect();
    for i in g.running() {
        g.m(i).wait_healthy(2);
    }
    let lb = LoadBalancer::start(&(0..3).map(|i| g.addr(i)).collect::<Vec<_>>());
    let leader = g.wait_one_primary(Duration::from_secs(10));
    survives_a_leader_kill(&lb, || g.kill(leader));
}

/// Six runs through HAProxy, `kill` of the leader, then runs until one succeeds: nothing lost,
/// nothing doubled.
fn survives_a_leader_kill(lb: &LoadBalancer, kill: impl FnOnce()) {
    let host = format!("tcp://{}", lb.addr);
    for i in 0..6 {
        docker_ok(&host, &["run", "-d", "--name", &format!("lb{i}"), "busybox", "sleep", "300"]);
    }
    assert_eq!(docker_ok(&host, &["ps", "-q"]).lines().count(), 6);
    kill();
    let killed = Instant::now();
    loop {
        let o = run(docker_cmd(&host).args(["run", "-d", "--name", "after", "busybox", "sleep", "300"]));
        if o.status.success() {
            break;
        }
        // A run cut between its create and its start leaves a created container: clean up
        // as a user retrying would.
        let _ = run(docker_cmd(&host).args(["rm", "-f", "after"]));
        assert!(killed.elapsed() < Duration::from_secs(15), "no docker run through HAProxy for 15 s: {}", stderr(&o));
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("unavailability seen through HAProxy after SIGKILL of the leader: {:?}", killed.elapsed());
    // Nothing lost, nothing doubled: the six earlier containers plus exactly one new one.
    let names = docker_ok(&host, &["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(names.lines().count(), 7, "{names}");
}

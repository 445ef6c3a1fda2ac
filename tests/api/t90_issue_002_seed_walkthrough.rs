//! The seed document's walkthrough: two agents, redis containers spread, an agent stopped and
//! started again.

use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn seed_walkthrough_stop_and_start_an_agent() {
    let mut es = engines(&[("agent1", &[]), ("agent2", &[])]);
    for e in &es {
        docker_ok(&e.host(), &["tag", "busybox", "redis"]);
    }
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(2);

    m.docker(&["run", "-d", "--name", "redis-1", "redis", "sleep", "600"]);
    m.docker(&["run", "-d", "--name", "redis-2", "redis", "sleep", "600"]);
    let mut names: Vec<String> = m.docker(&["ps", "--format", "{{.Names}}"]).lines().map(str::to_string).collect();
    names.sort();
    assert!(
        names == ["agent1/redis-1", "agent2/redis-2"] || names == ["agent1/redis-2", "agent2/redis-1"],
        "{names:?}"
    );
    assert_eq!(
        m.node_states(),
        vec![("agent1".to_string(), "Healthy".to_string()), ("agent2".to_string(), "Healthy".to_string())]
    );

    // "systemctl stop docker" on agent1.
    let on_agent1 = if names[0].ends_with("redis-1") { "redis-1" } else { "redis-2" };
    es[0].stop();
    let stopped = Instant::now();
    wait_until(Duration::from_secs(10), "agent1 is Unhealthy", || {
        m.node_states().iter().any(|(n, s)| n == "agent1" && s == "Unhealthy")
    });
    eprintln!("agent1 Unhealthy {:?} after dockerd exited", stopped.elapsed());
    let ps = m.docker(&["ps", "--format", "{{.Names}}"]);
    assert!(!ps.contains("agent1/"), "docker ps shows containers of a down node: {ps}");
    let ps_all = m.docker(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps_all.contains(&format!("agent1/{on_agent1} Host Down")), "{ps_all}");
    let err = m.docker_err(&["logs", on_agent1]);
    assert!(err.contains("unhealthy node agent1"), "{err}");

    m.docker(&["run", "-d", "--name", "redis-3", "redis", "sleep", "600"]);
    assert!(m.docker(&["ps", "--format", "{{.Names}}"]).contains("agent2/redis-3"));

    // Start agent1 again, then `docker start $(docker ps -aq)`.
    es[0].restart();
    wait_until(Duration::from_secs(15), "agent1 is Healthy again", || {
        m.node_states().iter().all(|(_, s)| s == "Healthy")
    });
    let ids: Vec<String> = m.docker(&["ps", "-aq"]).lines().map(str::to_string).collect();
    assert_eq!(ids.len(), 3);
    let mut args = vec!["start"];
    args.extend(ids.iter().map(String::as_str));
    m.docker(&args);
    wait_until(Duration::from_secs(10), "all three run", || m.docker(&["ps", "-q"]).lines().count() == 3);
}

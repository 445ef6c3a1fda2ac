//! Objects of every kind a filter can tell apart, made through swarm on one node.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::*;

/// What the corpus refers to.
pub struct Fixtures {
    pub web_id: String,
    pub worker_id: String,
    pub net1_id: String,
    pub busybox_id: String,
    pub child_id: String,
    pub published: u16,
    /// A window of seconds holding the fixtures' events.
    pub since: u64,
    pub until: u64,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Makes the fixtures through `m`, pinned to `node` (`""`: wherever swarm puts them).
/// `suffix` keeps names apart when called for several nodes.
pub fn make(m: &Manager, engine: &Engine, node: &str, suffix: &str) -> Fixtures {
    let since = now();
    std::thread::sleep(Duration::from_millis(1100));
    let pin: Vec<String> = if node.is_empty() { vec![] } else { vec!["-e".into(), format!("constraint:node=={node}")] };
    let run = |name: &str, args: &[&str]| {
        let mut all: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), format!("{name}{suffix}")];
        all.extend(pin.iter().cloned());
        all.extend(args.iter().map(|s| s.to_string()));
        m.docker(&all.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let host = engine.host();
    let published = free_port();
    docker_ok(&host, &["network", "create", "--label", "nl=1", "net1"]);
    docker_ok(&host, &["volume", "create", "--label", "v=1", "vol1"]);
    docker_ok(&host, &["volume", "create", "--label", "v=2", "vol2"]);
    run(
        "web",
        &[
            "--network",
            "net1",
            "-p",
            &format!("127.0.0.1:{published}:80"),
            "--expose",
            "9000",
            "-l",
            "a=1",
            "-l",
            "b=x",
            "-v",
            "vol1:/data",
            "busybox",
            "sleep",
            "600",
        ],
    );
    run("worker", &["-l", "a=1", "-l", "b=y", "-v", "/tmp:/hostdir", "--network", "none", "busybox", "sleep", "600"]);
    run("done0", &["-l", "a=2", "--network", "none", "busybox", "true"]);
    run("fail3", &["--network", "none", "busybox", "sh", "-c", "exit 3"]);
    run("paused", &["--network", "none", "busybox", "sleep", "600"]);
    run("hc", &["--network", "none", "--health-cmd", "true", "--health-interval", "1s", "busybox", "sleep", "600"]);
    {
        let mut all: Vec<String> = vec![
            "create".into(),
            "--name".into(),
            format!("fresh{suffix}"),
            "-l".into(),
            "c".into(),
            "--network".into(),
            "none".into(),
        ];
        all.extend(pin.iter().cloned());
        all.extend(["busybox".to_string(), "true".to_string()]);
        m.docker(&all.iter().map(String::as_str).collect::<Vec<_>>());
    }
    m.docker(&["wait", &format!("done0{suffix}")]);
    m.docker(&["wait", &format!("fail3{suffix}")]);
    m.docker(&["pause", &format!("paused{suffix}")]);
    docker_ok(&host, &["commit", "-c", "LABEL il=1", &format!("worker{suffix}"), "child:1"]);
    run("kid", &["--network", "none", "child:1", "sleep", "600"]);
    wait_until(Duration::from_secs(30), "hc is healthy", || {
        docker_ok(&host, &["inspect", "-f", "{{.State.Health.Status}}", &format!("hc{suffix}")]) == "healthy"
    });
    // Let the manager's cache see the last changes (events) before comparing.
    wait_until(Duration::from_secs(30), "swarm lists every fixture", || {
        m.docker(&["ps", "-a", "-q"]).lines().count() >= 8
            && m.docker(&["ps", "-a", "--filter", &format!("name=hc{suffix}"), "--format", "{{.Status}}"])
                .contains("healthy")
    });
    let id = |what: &str| docker_ok(&host, &["inspect", "-f", "{{.Id}}", what]);
    let f = Fixtures {
        web_id: id(&format!("web{suffix}")),
        worker_id: id(&format!("worker{suffix}")),
        net1_id: docker_ok(&host, &["network", "inspect", "-f", "{{.Id}}", "net1"]),
        busybox_id: id("busybox"),
        child_id: id("child:1"),
        published,
        since,
        until: 0,
    };
    std::thread::sleep(Duration::from_millis(1100));
    Fixtures { until: now(), ..f }
}

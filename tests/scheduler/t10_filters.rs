use crate::support::*;

fn three() -> Vec<Engine> {
    engines(&[
        ("node-1", &["zone=a", "storage=ssd"]),
        ("node-2", &["zone=b", "storage=disk"]),
        ("node-3", &["zone=b", "storage=ssd", "containerslots=2"]),
    ])
}

fn node_of(m: &Manager, name: &str) -> String {
    m.docker(&["inspect", "-f", "{{.Node.Name}}", name])
}

#[test]
fn constraints_hard_soft_and_by_node_name() {
    let es = three();
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(3);
    m.docker(&["run", "-d", "--name", "c1", "-e", "constraint:zone==a", "busybox", "sleep", "300"]);
    assert_eq!(node_of(&m, "c1"), "node-1");
    m.docker(&[
        "run",
        "-d",
        "--name",
        "c2",
        "-e",
        "constraint:storage==ssd",
        "-e",
        "constraint:zone!=a",
        "busybox",
        "sleep",
        "300",
    ]);
    assert_eq!(node_of(&m, "c2"), "node-3");
    m.docker(&["run", "-d", "--name", "c3", "-e", "constraint:node==node-2", "busybox", "sleep", "300"]);
    assert_eq!(node_of(&m, "c3"), "node-2");
    m.docker(&[
        "run",
        "-d",
        "--name",
        "c4",
        "--label",
        "com.docker.swarm.constraints=[\"zone==a\"]",
        "busybox",
        "sleep",
        "300",
    ]);
    assert_eq!(node_of(&m, "c4"), "node-1");
    m.docker(&[
        "run",
        "-d",
        "--name",
        "c5",
        "-e",
        "constraint:node==/node-[12]/",
        "-e",
        "constraint:zone==b",
        "busybox",
        "sleep",
        "300",
    ]);
    assert_eq!(node_of(&m, "c5"), "node-2");
    // The expressions left Env and are kept as labels.
    let env = m.docker(&["inspect", "-f", "{{json .Config.Env}}", "c1"]);
    assert!(!env.contains("constraint:"), "{env}");
    assert_eq!(
        m.docker(&["inspect", "-f", "{{index .Config.Labels \"com.docker.swarm.constraints\"}}", "c1"]),
        "[\"zone==a\"]"
    );
    // Soft: honoured when possible, dropped when not.
    m.docker(&["run", "-d", "--name", "s1", "-e", "constraint:zone==~nowhere", "busybox", "sleep", "300"]);
    let err = m.docker_err(&["run", "-d", "--name", "h1", "-e", "constraint:zone==nowhere", "busybox", "sleep", "300"]);
    assert!(
        err.contains("Unable to find a node that satisfies the following conditions")
            && err.contains("[zone==nowhere]"),
        "{err}"
    );
    let err = m.docker_err(&["run", "-d", "--name", "h2", "-e", "constraint:node==node-9", "busybox", "sleep", "300"]);
    assert!(err.contains("[node==node-9]"), "{err}");
    let err = m.docker_err(&["run", "-d", "-e", "constraint:zone=a", "busybox", "true"]);
    assert!(err.contains("One of operator ==, != is expected"), "{err}");
}

#[test]
fn affinities_dependencies_slots_and_ports() {
    let es = three();
    docker_ok(&es[1].host(), &["tag", "busybox", "onlyhere:1"]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(3);
    // Container, image and label affinities.
    m.docker(&[
        "run",
        "-d",
        "--name",
        "db",
        "-l",
        "app=db",
        "-e",
        "constraint:node==node-3",
        "busybox",
        "sleep",
        "300",
    ]);
    m.docker(&["run", "-d", "--name", "web", "-e", "affinity:container==db", "busybox", "sleep", "300"]);
    assert_eq!(node_of(&m, "web"), "node-3");
    m.docker(&["run", "-d", "--name", "img", "-e", "affinity:image==onlyhere:1", "busybox", "sleep", "300"]);
    assert_eq!(node_of(&m, "img"), "node-2");
    m.docker(&[
        "run",
        "-d",
        "--name",
        "away",
        "-e",
        "affinity:app!=db",
        "-e",
        "constraint:zone==b",
        "busybox",
        "sleep",
        "300",
    ]);
    assert_eq!(node_of(&m, "away"), "node-2");
    // node-3 has containerslots=2 and holds db and web: nothing more fits there.
    let err =
        m.docker_err(&["run", "-d", "--name", "full", "-e", "constraint:node==node-3", "busybox", "sleep", "300"]);
    assert!(err.contains("[available container slots]"), "{err}");
    // Dependencies follow the container they name.
    m.docker(&["create", "--name", "data", "-v", "/data", "-e", "constraint:node==node-1", "busybox", "true"]);
    m.docker(&["run", "-d", "--name", "user", "--volumes-from", "data", "busybox", "sleep", "300"]);
    assert_eq!(node_of(&m, "user"), "node-1");
    m.docker(&["run", "-d", "--name", "side", "--net", "container:img", "busybox", "sleep", "300"]);
    assert_eq!(node_of(&m, "side"), "node-2");
    // Bridge-mode ports: one per node (node-3 is full), then refused.
    for i in 0..2 {
        m.docker(&["run", "-d", "--name", &format!("p{i}"), "-p", "8080:80", "busybox", "sleep", "300"]);
    }
    let err = m.docker_err(&["run", "-d", "--name", "p9", "-p", "8080:80", "busybox", "sleep", "300"]);
    assert!(err.contains("[port 8080 (Bridge mode)]") && err.contains("[available container slots]"), "{err}");
    m.docker(&["run", "-d", "--name", "p8", "-p", "127.0.0.1:8081:80", "busybox", "sleep", "300"]);
}

#[test]
fn two_parallel_host_network_runs_on_one_port_never_both_succeed() {
    let es = engines(&[("node-1", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(1);
    let host = m.host();
    let results: Vec<bool> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|i| {
                let host = host.clone();
                s.spawn(move || {
                    run(docker_cmd(&host).args([
                        "create",
                        "--name",
                        &format!("hn{i}"),
                        "--net",
                        "host",
                        "--expose",
                        "80",
                        "busybox",
                        "sleep",
                        "300",
                    ]))
                    .status
                    .success()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|ok| **ok).count(), 1, "{results:?}");
    assert_eq!(es[0].container_names().len(), 1);
}

#[test]
fn builds_are_scheduled_by_build_arg_constraints() {
    let es = three();
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(3);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM busybox\nRUN echo x > /x\n").unwrap();
    let o = run(docker_cmd(&m.host())
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", "pinned:1", "--build-arg", "constraint:node==node-2"])
        .arg(dir.path()));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(!docker_ok(&es[1].host(), &["images", "-q", "pinned:1"]).is_empty());
    assert!(docker_ok(&es[0].host(), &["images", "-q", "pinned:1"]).is_empty());
    assert!(docker_ok(&es[2].host(), &["images", "-q", "pinned:1"]).is_empty());
}

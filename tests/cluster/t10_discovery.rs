use std::time::Duration;

use crate::support::*;

#[test]
fn file_discovery_applies_edits_live_and_accepts_unix_sockets() {
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster");
    std::fs::write(&file, format!("# engines\n{}\n", es[0].addr)).unwrap();
    let url = format!("file://{}", file.display());
    let m = Manager::start(&url, &["--heartbeat", "1s"]);
    m.wait_healthy(1);
    let listed = run(std::process::Command::new(env!("CARGO_BIN_EXE_swarm")).args(["list", &url]));
    assert_eq!(stdout(&listed).trim(), es[0].addr);

    // node-2 joins through its unix socket.
    std::fs::write(&file, format!("{}\n{}\n", es[0].addr, es[1].sock())).unwrap();
    m.wait_healthy(2);
    m.docker(&["run", "-d", "--name", "u1", "--label", "x=1", "busybox", "sleep", "300"]);
    m.docker(&["run", "-d", "--name", "u2", "--label", "x=1", "busybox", "sleep", "300"]);
    assert_eq!(es[1].container_names().len(), 1, "the unix-socket engine takes its share");
    assert_eq!(m.docker(&["exec", "u2", "echo", "via-unix"]).len(), "via-unix".len());

    // node-1 leaves the file: it leaves `docker info` and `ps`,
    std::fs::write(&file, format!("{}\n", es[1].sock())).unwrap();
    wait_until(Duration::from_secs(10), "node-1 leaves", || m.node_states().len() == 1);
    assert_eq!(m.node_states()[0].0, "node-2");
    assert_eq!(m.docker(&["ps", "-a", "--format", "{{.Names}}"]), "node-2/u2");
    // but its container is not "No such container", which `rm -f` takes for success while
    // the engine still holds it and may come back.
    let refused = m.docker_err(&["rm", "-f", "u1"]);
    assert!(refused.contains("Container u1 is on node node-1, which left the cluster"), "{refused}");
    assert_eq!(es[0].container_names(), vec!["u1".to_string()]);

    // Back in the file, the container is the manager's to remove again.
    std::fs::write(&file, format!("{}\n{}\n", es[0].addr, es[1].sock())).unwrap();
    m.wait_healthy(2);
    m.docker(&["rm", "-f", "u1"]);
    assert!(es[0].container_names().is_empty());
}

#[test]
fn discovery_urls_and_flags_are_validated_with_classic_messages() {
    let swarm = env!("CARGO_BIN_EXE_swarm");
    let cases: &[(&[&str], &str)] = &[
        (&["manage"], "discovery required to manage a cluster. See 'swarm manage --help'."),
        (
            &["manage", "--strategy", "fastest", "nodes://a:1"],
            "strategy not supported: \"fastest\" (supported: spread,",
        ),
        (&["manage", "-f", "magic", "nodes://a:1"], "filter not supported: \"magic\" (supported: health,"),
        (&["manage", "consul://127.0.0.1:8500/swarm"], "discovery service not supported: \"consul://\""),
        (&["manage", "consul//127.0.0.1:8500/swarm"], "invalid engine address \"consul//127.0.0.1:8500/swarm\""),
        (&["-l", "verbose", "manage", "nodes://a:1"], "invalid value 'verbose' for '--log-level"),
        (
            &["manage", "--engine-refresh-min-interval", "10s", "--engine-refresh-max-interval", "5s", "nodes://a:1"],
            "max refresh interval cannot be less than min refresh interval",
        ),
        (&["manage", "--engine-failure-retry", "0", "nodes://a:1"], "invalid failure retry count"),
        (
            &["manage", "--cluster-opt", "swarm.overcommit=-2", "nodes://a:1"],
            "swarm.overcommit should be larger than -1, -2.000000 is invalid",
        ),
        (
            &["manage", "--cluster-opt", "swarm.createretry=-1", "nodes://a:1"],
            "swarm.createretry can not be negative, -1 is invalid",
        ),
        (&["manage", "--replication", "nodes://a:1"], "--advertise address must be provided when using --replication"),
        (
            &["manage", "--advertise", "nope", "nodes://a:1"],
            "--advertise should be of the form ip:port or hostname:port",
        ),
        (&["manage", "--heartbeat", "500ms", "nodes://a:1"], "--heartbeat should be at least one second"),
        (&["join", "nodes://a:1"], "missing mandatory --advertise flag"),
        (
            &["join", "--advertise", "a:1", "--heartbeat", "10s", "--ttl", "5s", "nodes://a:1"],
            "--ttl must be strictly superior to the heartbeat value",
        ),
        (&["join", "--advertise", "a:0", "nodes://a:1"], "--advertise should be of the form ip:port or hostname:port"),
        (&["join", "--advertise", "a:1", "nodes://b:1"], "not implemented"),
        (&["list"], "discovery required to list a cluster. See 'swarm list --help'."),
        (&["create", "extra"], "the `create` command takes no arguments. See 'swarm create --help'."),
        // Only managers may speak Raft and the registry: they need the secret that proves it.
        (
            &[
                "manage",
                "--replication",
                "--advertise",
                "127.0.0.1:4000",
                "--replication-peers",
                "127.0.0.1:4000",
                "--data-dir",
                "/tmp/x",
                "nodes://a:1",
            ],
            "--cluster-secret-file is required",
        ),
        (&["manage", "swarm://127.0.0.1:4000"], "--cluster-secret-file is required"),
        (&["join", "--advertise", "a:1", "swarm://127.0.0.1:4000"], "swarm:// discovery needs --join-token-file"),
        (&["list", "swarm://127.0.0.1:4000"], "swarm:// discovery needs --join-token-file"),
        (
            &[
                "manage",
                "--replication",
                "--advertise",
                "127.0.0.1:4000",
                "--tls",
                "--tlscert",
                "c.pem",
                "--tlskey",
                "k.pem",
                "etcd://127.0.0.1:2379/p",
            ],
            "--replication with --tls needs --tlscacert",
        ),
        (
            &["members", "list", "--manager", "127.0.0.1:4000", "--cluster-secret-file", "/nonexistent"],
            "cannot read the cluster secret file",
        ),
    ];
    for (args, want) in cases {
        let o = run(std::process::Command::new(swarm)
            .args(*args)
            .env_remove("SWARM_DISCOVERY")
            .env_remove("SWARM_HOST")
            .env_remove("SWARM_CLUSTER_SECRET_FILE")
            .env_remove("SWARM_JOIN_TOKEN_FILE"));
        assert!(!o.status.success(), "swarm {args:?} should fail");
        assert!(stderr(&o).contains(want), "swarm {args:?}: wanted {want:?}, got {}", stderr(&o));
    }
    let token = stdout(&run(std::process::Command::new(swarm).arg("create")));
    assert_eq!(token.trim().len(), 32);
    assert!(stdout(&run(std::process::Command::new(swarm).arg("--version"))).starts_with("swarm version 0.1.0 ("));
    let listed = stdout(&run(std::process::Command::new(swarm).args(["list", "127.0.0.1:[2375:2377]"])));
    assert_eq!(listed, "127.0.0.1:2375\n127.0.0.1:2376\n127.0.0.1:2377\n");
}

#[test]
fn every_flag_of_manage_with_a_default_shows_it_in_help() {
    // The flags that have no default: absent, they turn a feature off.
    let without_default = [
        "--advertise",
        "--cluster-secret-file",
        "--tlscacert",
        "--tlscert",
        "--tlskey",
        "--discovery-opt",
        "--replication-peers",
        "--data-dir",
    ];
    let o = run(std::process::Command::new(env!("CARGO_BIN_EXE_swarm")).args(["manage", "--help"]));
    let help = stdout(&o);
    // Options start within six columns; their wrapped help is indented further.
    let option = regex::Regex::new(r"^ {2,6}(?:-\w, )?(--[\w-]+) <").unwrap();
    let flag = regex::Regex::new(r"^ {2,6}-").unwrap();
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        match option.captures(line) {
            Some(c) => blocks.push((c[1].to_string(), line.to_string())),
            None if flag.is_match(line) => blocks.push((String::new(), String::new())),
            None => {
                if let Some(b) = blocks.last_mut() {
                    b.1.push_str(line);
                }
            }
        }
    }
    let valued: Vec<&(String, String)> = blocks.iter().filter(|(f, _)| !f.is_empty()).collect();
    assert!(valued.len() > 30, "{help}");
    let silent: Vec<&str> = valued
        .iter()
        .filter(|(f, text)| !text.contains("[default:") && !without_default.contains(&f.as_str()))
        .map(|(f, _)| f.as_str())
        .collect();
    assert!(silent.is_empty(), "flags whose help hides their default: {silent:?}");
}

//! How swarm is shipped: the container image `scripts/image.sh` builds offline from the binary
//! runs a manager as classic Swarm's image did, and the example systemd units verify.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn the_image_built_offline_from_the_binary_runs_a_manager_with_docker_run() {
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let engine = format!("tcp://{}", es[0].addr);
    let tag = format!("swarm-image-test:{}", std::process::id());
    let o = run(Command::new("bash")
        .arg(format!("{ROOT}/scripts/image.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_swarm"), "--tag", &tag])
        .env("DOCKER_HOST", &engine)
        .env("PATH", format!("/usr/local/bin:{}", std::env::var("PATH").unwrap_or_default())));
    assert!(o.status.success(), "scripts/image.sh: {}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o).trim(), tag);

    let version = run(docker_cmd(&engine).args(["run", "--rm", &tag, "--version"]));
    assert!(
        stdout(&version).starts_with(&format!("swarm version {} (", env!("CARGO_PKG_VERSION"))),
        "{:?} {} {}",
        version.status,
        stdout(&version),
        stderr(&version)
    );

    // `docker run IMAGE manage ...`: the manager in a container on the host's network.
    let port = free_port();
    let discovery = format!("nodes://{},{}", es[0].addr, es[1].addr);
    let listen = format!("127.0.0.1:{port}");
    let o = run(docker_cmd(&engine).args([
        "run",
        "-d",
        "--name",
        "swarm-manager",
        "--network",
        "host",
        &tag,
        "manage",
        "-H",
        &listen,
        &discovery,
    ]));
    assert!(o.status.success(), "docker run manage: {}", stderr(&o));
    let manager = format!("tcp://{listen}");
    wait_until(Duration::from_secs(30), "the manager in the container sees both engines", || {
        let info = run(docker_cmd(&manager).args(["info", "--format", "{{json .SystemStatus}}"]));
        stdout(&info).matches("\"Healthy\"").count() == 2
    });
    let o = run(docker_cmd(&manager).args(["run", "-d", "--name", "through-the-image", "busybox", "sleep", "60"]));
    assert!(o.status.success(), "docker run through the manager: {}", stderr(&o));
    let names: String = es
        .iter()
        .map(|e| stdout(&run(docker_cmd(&format!("tcp://{}", e.addr)).args(["ps", "--format", "{{.Names}}"]))))
        .collect();
    assert!(names.contains("through-the-image"), "the engines hold the container: {names}");
    let logs = run(docker_cmd(&engine).args(["logs", "swarm-manager"]));
    assert!(stderr(&logs).contains("swarm manage"), "the manager logs to stderr: {}", stderr(&logs));
}

#[test]
fn the_example_systemd_units_verify() {
    let analyze = require("systemd-analyze", "systemd");
    let dir = tempfile::tempdir().unwrap();
    for unit in ["swarm-manage.service", "swarm-join.service"] {
        let text = std::fs::read_to_string(format!("{ROOT}/packaging/systemd/{unit}")).unwrap();
        assert!(unit != "swarm-manage.service" || text.contains("LimitNOFILE="), "{unit} raises the open-files limit");
        // Verified against the binary built here instead of /usr/local/bin/swarm.
        let path = dir.path().join(unit);
        std::fs::write(&path, text.replace("/usr/local/bin/swarm", env!("CARGO_BIN_EXE_swarm"))).unwrap();
        let o = run(Command::new(&analyze).arg("verify").arg(&path));
        assert!(o.status.success(), "systemd-analyze verify {unit}: {}", stderr(&o));
        assert!(stderr(&o).trim().is_empty() && stdout(&o).trim().is_empty(), "{unit}: {}{}", stdout(&o), stderr(&o));
    }
}

#[test]
fn the_manager_unit_seeds_a_new_group_with_its_peers_and_restarts_without_them() {
    let unit = std::fs::read_to_string(format!("{ROOT}/packaging/systemd/swarm-manage.service")).unwrap();
    // ExecStart, its continuation lines joined, as systemd reads it ("$$" is a "$" for the shell).
    let joined = unit.replace("\\\n", " ");
    let exec = joined.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart").replace("$$", "$");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let stub = dir.path().join("swarm");
    std::fs::write(&stub, "#!/bin/sh\necho \"$@\"\n").unwrap();
    std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let exec =
        exec.replace("/usr/local/bin/swarm", stub.to_str().unwrap()).replace("/var/lib/swarm", state.to_str().unwrap());
    let (program, rest) = exec.split_once(' ').unwrap();
    let script = rest.trim().strip_prefix("-c ").unwrap().trim().trim_matches('\'');
    let args = || {
        let o = run(Command::new(program)
            .args(["-c", script])
            .env("SWARM_ADVERTISE", "10.0.0.1:4000")
            .env("SWARM_PEERS", "10.0.0.1:4000,10.0.0.2:4000,10.0.0.3:4000")
            .env("SWARM_DISCOVERY", "swarm://10.0.0.1:4000"));
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    assert!(args().contains("--replication-peers 10.0.0.1:4000,10.0.0.2:4000,10.0.0.3:4000 --data-dir"), "{}", args());
    std::fs::create_dir_all(state.join("raft")).unwrap();
    std::fs::write(state.join("raft/log"), b"entries").unwrap();
    let again = args();
    assert!(!again.contains("--replication-peers"), "{again}");
    assert!(again.contains("manage -H 10.0.0.1:4000 --replication --advertise 10.0.0.1:4000 --data-dir"), "{again}");
}

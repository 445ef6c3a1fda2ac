use std::process::Command;

use crate::support::*;

#[test]
fn docker_py_drives_the_cluster() {
    let python = require("python3", "python3");
    let probe = run(Command::new(&python).args(["-c", "import docker"]));
    assert!(
        probe.status.success(),
        "docker-py is missing: `pip install docker` (the README's test command does): {}",
        stderr(&probe)
    );
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(2);
    let script = r#"
import docker, sys
c = docker.DockerClient(base_url=sys.argv[1])
assert c.ping()
assert c.version()["ApiVersion"] == "1.41"
ct = c.containers.run("busybox", ["sh", "-c", "echo from-py; sleep 300"], detach=True, name="py1")
r = ct.exec_run(["sh", "-c", "echo exec-out; exit 4"])
assert r.exit_code == 4 and r.output == b"exec-out\n", r
import time
for _ in range(50):
    if b"from-py" in ct.logs():
        break
    time.sleep(0.1)
assert ct.logs() == b"from-py\n", ct.logs()
names = sorted(x.name for x in c.containers.list(all=True))
assert names == ["py1"], names
assert c.info()["Swarm"]["ControlAvailable"] is False
ct.remove(force=True)
assert c.containers.list(all=True) == []
print("docker-py ok")
"#;
    let o = run(Command::new(&python).args(["-c", script, &m.host()]));
    assert!(stdout(&o).contains("docker-py ok"), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn docker_compose_up_scale_and_down() {
    let compose = require("docker-compose", "docker-compose");
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(2);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        "version: \"2\"\nservices:\n  web:\n    image: busybox\n    command: sleep 300\n    network_mode: none\n",
    )
    .unwrap();
    let compose_cmd = |args: &[&str]| {
        let o = run(Command::new(&compose)
            .current_dir(dir.path())
            .env("DOCKER_HOST", m.host())
            .args(["-p", "demo"])
            .args(args));
        assert!(o.status.success(), "docker-compose {args:?}: {}{}", stdout(&o), stderr(&o));
        stdout(&o)
    };
    compose_cmd(&["up", "-d"]);
    assert_eq!(m.docker(&["ps", "-q", "--filter", "label=com.docker.compose.project=demo"]).lines().count(), 1);
    compose_cmd(&["up", "-d", "--scale", "web=4"]);
    assert_eq!(m.docker(&["ps", "-q", "--filter", "label=com.docker.compose.project=demo"]).lines().count(), 4);
    let ps = compose_cmd(&["ps"]);
    assert!(ps.contains("demo_web_4"), "{ps}");
    assert_eq!(es[0].container_names().len(), 2);
    assert_eq!(es[1].container_names().len(), 2);
    compose_cmd(&["down"]);
    assert_eq!(m.docker(&["ps", "-a", "-q"]), "");
}

use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// A real registry on loopback (Debian's docker-registry), stopped by pid.
struct Registry {
    addr: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let bin = require("docker-registry", "docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .args(["serve"])
            .arg(&cfg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_until(Duration::from_secs(20), "the registry answers", || http(&addr, "GET", "/v2/", None).0 == 200);
        Registry { addr, child, _dir: dir }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn pull_lands_on_every_engine_and_run_pulls_a_missing_image() {
    let reg = Registry::start();
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let image = format!("{}/busybox:1", reg.addr);
    docker_ok(&es[0].host(), &["tag", "busybox", &image]);
    docker_ok(&es[0].host(), &["push", &image]);
    docker_ok(&es[0].host(), &["rmi", &image]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(2);

    let out = m.docker(&["pull", &image]);
    assert!(out.contains("node-1") && out.contains("node-2"), "{out}");
    for e in &es {
        assert!(docker_ok(&e.host(), &["images", "-q", &image]).len() >= 12, "{} lacks {image}", e.name);
    }
    // `docker images` groups the copies: one line for the image.
    assert_eq!(m.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}", &image]), image);

    // Remove it everywhere, then run it: the chosen engine pulls it.
    m.docker(&["rmi", &image]);
    for e in &es {
        assert_eq!(docker_ok(&e.host(), &["images", "-q", &image]), "");
    }
    let o = run(docker_cmd(&m.host()).args(["run", "--rm", &image, "echo", "pulled-and-ran"]));
    assert!(stdout(&o).contains("pulled-and-ran"), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn tag_inspect_history_save_load_and_rmi_span_engines() {
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(2);
    m.docker(&["tag", "busybox", "mybox:v1"]);
    for e in &es {
        assert!(!docker_ok(&e.host(), &["images", "-q", "mybox:v1"]).is_empty(), "{} lacks the tag", e.name);
    }
    assert!(m.docker(&["image", "inspect", "-f", "{{.Id}}", "mybox:v1"]).starts_with("sha256:"));
    assert!(!m.docker(&["history", "-q", "mybox:v1"]).is_empty());
    let tar = tempfile::NamedTempFile::new().unwrap();
    m.docker(&["save", "-o", tar.path().to_str().unwrap(), "mybox:v1"]);
    m.docker(&["rmi", "mybox:v1"]);
    assert_eq!(m.docker(&["images", "-q", "mybox"]), "");
    let out = m.docker(&["load", "-i", tar.path().to_str().unwrap()]);
    assert!(out.contains("Loaded image: mybox:v1"), "{out}");
    for e in &es {
        assert!(!docker_ok(&e.host(), &["images", "-q", "mybox:v1"]).is_empty(), "{} did not load", e.name);
    }
    let err = m.docker_err(&["image", "inspect", "nosuch:image"]);
    assert!(err.contains("No such image"), "{err}");
}

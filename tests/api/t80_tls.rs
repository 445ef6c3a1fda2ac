//! TLS as classic Swarm did it: one pair serves the API and authenticates the manager to
//! engines that run `dockerd --tlsverify`; the real docker CLI talks to it with
//! `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

/// The docker CLI with TLS, presenting the pair in `certs` if any (`verify`: `--tlsverify`,
/// else `--tls` without checks).
fn tls_docker(m: &Manager, certs: Option<&Path>, verify: bool) -> Command {
    let mut c = docker_cmd(&m.host());
    match certs {
        Some(certs) => c.env("DOCKER_CERT_PATH", certs),
        // No pair at all: the CLI would otherwise insist on ca.pem in its config directory.
        None => c.args(["--tlscacert=", "--tlscert=", "--tlskey="]),
    };
    if verify {
        c.env("DOCKER_TLS_VERIFY", "1");
    } else {
        c.arg("--tls");
    }
    c
}

fn healthy_nodes(m: &Manager, certs: Option<&Path>, verify: bool) -> usize {
    let o = run(tls_docker(m, certs, verify).args(["info"]));
    if !o.status.success() {
        eprintln!("docker info: {}", stderr(&o));
    }
    stdout(&o).lines().filter(|l| l.trim() == "└ Status: Healthy").count()
}

#[test]
fn tlsverify_serves_the_api_and_reaches_tls_engines() {
    let certs = Certs::new("swarm-test-ca");
    let es = [Engine::start_tls("node-1", certs.dir()), Engine::start_tls("node-2", certs.dir())];
    let (ca, cert, key) = (certs.file("ca.pem"), certs.file("cert.pem"), certs.file("key.pem"));
    let m = Manager::start(&nodes_url(&es), &["--tlsverify", "--tlscacert", &ca, "--tlscert", &cert, "--tlskey", &key]);
    wait_until(Duration::from_secs(60), "two TLS engines Healthy", || healthy_nodes(&m, Some(certs.dir()), true) == 2);

    let docker = |args: &[&str]| {
        let o = run(tls_docker(&m, Some(certs.dir()), true).args(args));
        assert!(o.status.success(), "docker {args:?}: {}{}", stdout(&o), stderr(&o));
        stdout(&o).trim().to_string()
    };
    docker(&["run", "-d", "--name", "sealed", "busybox", "sh", "-c", "echo hello-tls; sleep 300"]);
    assert_eq!(docker(&["logs", "sealed"]), "hello-tls");
    // Hijacked connections run TLS on both legs: exec, and stdin half-closed by the CLI.
    assert_eq!(docker(&["exec", "sealed", "echo", "exec-over-tls"]), "exec-over-tls");
    let mut child = tls_docker(&m, Some(certs.dir()), true)
        .args(["run", "--rm", "-i", "busybox", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"piped-over-tls\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "piped-over-tls\n");
    assert!(docker(&["ps", "--format", "{{.Names}}"]).lines().any(|n| n.ends_with("/sealed")));

    // A client whose certificate another CA signed is refused, and so is plain HTTP.
    let rogue = Certs::new("rogue-ca");
    let mut c = tls_docker(&m, Some(rogue.dir()), false);
    c.args(["--tlscert", &rogue.file("cert.pem"), "--tlskey", &rogue.file("key.pem"), "version"]);
    assert!(!run(&mut c).status.success(), "a certificate from another CA was accepted");
    assert_ne!(http(&m.addr, "GET", "/_ping", None).0, 200, "plain HTTP was answered");
}

#[test]
fn tls_without_verify_encrypts_and_an_unreadable_pair_is_refused_at_start() {
    let certs = Certs::new("swarm-test-ca");
    let es = [Engine::start_tls("node-1", certs.dir())];
    // `--tls`: no client certificates asked for, engines not checked (the pair still logs us in).
    let m = Manager::start(
        &nodes_url(&es),
        &["--tls", "--tlscert", &certs.file("cert.pem"), "--tlskey", &certs.file("key.pem")],
    );
    wait_until(Duration::from_secs(60), "the TLS engine Healthy", || healthy_nodes(&m, None, false) == 1);
    let o = run(tls_docker(&m, None, false).args(["run", "--rm", "busybox", "echo", "tls-only"]));
    assert_eq!(stdout(&o).trim(), "tls-only", "{}", stderr(&o));
    // A password would go to an engine nobody checked: refused.
    let o = run(tls_docker(&m, None, false).args(["login", "-u", "someone", "-p", "secret", "127.0.0.1:1"]));
    assert!(!o.status.success() && stderr(&o).contains("will not pass a password"), "{}", stderr(&o));
    // Encryption is not identity: the control plane still wants a manager's signature.
    for (method, path) in [
        ("POST", "/_swarm/raft/vote"),
        ("GET", "/_swarm/members"),
        ("PUT", "/_swarm/nodes/127.0.0.1:9?ttl=600"),
        ("POST", "/v1/clusters"),
    ] {
        let o = run(Command::new(require("curl", "curl"))
            .args(["-sS", "-o", "/dev/stderr", "-w", "%{http_code}", "-X", method, "--cacert", &certs.file("ca.pem")])
            .arg(format!("https://{}{path}", m.addr)));
        assert_eq!(stdout(&o), "403", "{method} {path} over TLS: {}", stderr(&o));
        assert!(stderr(&o).contains("only managers"), "{}", stderr(&o));
    }

    let o = run(Command::new(env!("CARGO_BIN_EXE_swarm")).args([
        "manage",
        "-H",
        "127.0.0.1:0",
        "--tls",
        "--tlscert",
        "/nonexistent/cert.pem",
        "--tlskey",
        &certs.file("key.pem"),
        "nodes://127.0.0.1:1",
    ]));
    assert_eq!(o.status.code(), Some(64));
    assert!(
        stderr(&o).contains("cannot load the certificate (--tlscert) from /nonexistent/cert.pem"),
        "{}",
        stderr(&o)
    );
}

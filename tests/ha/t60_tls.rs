//! Three Raft managers with `--tlsverify` over TLS engines: Raft RPCs, the followers' proxying
//! (hijacks included) and the API all run on the one certificate pair.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn docker(addr: &str, certs: &Certs) -> Command {
    let mut c = docker_cmd(&format!("tcp://{addr}"));
    c.env("DOCKER_CERT_PATH", certs.dir()).env("DOCKER_TLS_VERIFY", "1");
    c
}

/// `Role:` as `docker info` over TLS shows it, or "" when the manager does not answer.
fn role(addr: &str, certs: &Certs) -> String {
    let o = run(docker(addr, certs).args(["info"]));
    stdout(&o).lines().find_map(|l| l.trim().strip_prefix("Role: ").map(str::to_string)).unwrap_or_default()
}

fn primaries(addrs: &[String], certs: &Certs) -> Vec<usize> {
    (0..addrs.len()).filter(|i| role(&addrs[*i], certs) == "primary").collect()
}

/// Three Raft managers with `--tlsverify` over `discovery(peers)`.
fn tls_group(
    certs: &Certs,
    discovery: impl FnOnce(&str) -> String,
) -> (Vec<Option<Manager>>, Vec<String>, tempfile::TempDir) {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let peers = addrs.join(",");
    let discovery = discovery(&peers);
    let data = tempfile::Builder::new().prefix("swarm-raft-tls-").tempdir().unwrap();
    let (ca, cert, key) = (certs.file("ca.pem"), certs.file("cert.pem"), certs.file("key.pem"));
    let ms = (0..3)
        .map(|i| {
            let dir = data.path().join(format!("m{i}"));
            let args = [
                "--replication",
                "--advertise",
                &addrs[i],
                "--replication-peers",
                &peers,
                "--data-dir",
                dir.to_str().unwrap(),
            ];
            let tls = ["--tlsverify", "--tlscacert", &ca, "--tlscert", &cert, "--tlskey", &key];
            Some(Manager::start_on(ports[i], &discovery, &[&args[..], &tls].concat()))
        })
        .collect();
    (ms, addrs, data)
}

/// `--discovery-opt kv.*` naming the pair: TLS from `swarm join` and `swarm list` to managers.
fn kv_tls(certs: &Certs) -> Vec<String> {
    ["kv.cacertfile=ca.pem", "kv.certfile=cert.pem", "kv.keyfile=key.pem"]
        .iter()
        .flat_map(|o| {
            let (k, f) = o.split_once('=').unwrap();
            ["--discovery-opt".to_string(), format!("{k}={}", certs.file(f))]
        })
        .collect()
}

#[test]
fn raft_managers_replicate_and_proxy_over_tls() {
    let certs = Certs::new("swarm-test-ca");
    let es = [Engine::start_tls("node-1", certs.dir()), Engine::start_tls("node-2", certs.dir())];
    let (mut ms, addrs, _data) = tls_group(&certs, |_| nodes_url(&es));
    wait_until(Duration::from_secs(20), "exactly one primary over TLS", || primaries(&addrs, &certs).len() == 1);
    let leader = primaries(&addrs, &certs)[0];
    let replica = (leader + 1) % 3;
    let via = &addrs[replica];
    wait_until(Duration::from_secs(60), "two engines Healthy on the replica", || {
        stdout(&run(docker(via, &certs).args(["info"]))).matches("└ Status: Healthy").count() == 2
    });

    let ok = |args: &[&str]| {
        let o = run(docker(via, &certs).args(args));
        assert!(o.status.success(), "docker {args:?} via the replica: {}{}", stdout(&o), stderr(&o));
        stdout(&o).trim().to_string()
    };
    ok(&["run", "-d", "--name", "sealed", "busybox", "sleep", "300"]);
    assert_eq!(ok(&["exec", "sealed", "echo", "through-two-tls-hops"]), "through-two-tls-hops");
    let mut child = docker(via, &certs)
        .args(["run", "--rm", "-i", "busybox", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"stdin-over-tls\n").unwrap();
    assert_eq!(String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout), "stdin-over-tls\n");

    // Raft itself runs over TLS: kill the leader and another takes over.
    let killed = Instant::now();
    ms[leader].take().unwrap().kill_hard();
    let others: Vec<String> = (0..3).filter(|i| *i != leader).map(|i| addrs[i].clone()).collect();
    wait_until(Duration::from_secs(10), "a new primary over TLS", || primaries(&others, &certs).len() == 1);
    // How fast is the benchmarks' business (`cargo bench --bench raft`); here only that it happens.
    eprintln!("failover over TLS took {:?}", killed.elapsed());
    let last = primaries(&others, &certs)[0];
    let survivor = &others[1 - last];
    let o = run(docker(survivor, &certs).args(["run", "-d", "--name", "after", "busybox", "sleep", "300"]));
    assert!(o.status.success(), "run after failover: {}", stderr(&o));
    drop(ms);
}

#[test]
fn joins_lists_and_members_reach_tls_managers_through_the_kv_options() {
    let certs = Certs::new("swarm-test-ca");
    let es = [Engine::start_tls("node-1", certs.dir()), Engine::start_tls("node-2", certs.dir())];
    let (_ms, addrs, _data) = tls_group(&certs, |peers| format!("swarm://{peers}"));
    let url = format!("swarm://{}", addrs.join(","));
    let opts = kv_tls(&certs);
    let _joins: Vec<Join> = es.iter().map(|e| Join::start_with(&e.addr, &url, "1s", "10s", &opts)).collect();
    wait_until(Duration::from_secs(60), "both engines Healthy on every manager", || {
        addrs.iter().all(|a| stdout(&run(docker(a, &certs).args(["info"]))).matches("└ Status: Healthy").count() == 2)
    });

    let list = |opts: &[String]| {
        run(Command::new(env!("CARGO_BIN_EXE_swarm"))
            .arg("list")
            .args(["--timeout", "5s", "--join-token-file", join_token_file()])
            .args(opts)
            .arg(&url))
    };
    let mut listed: Vec<String> = stdout(&list(&opts)).lines().map(str::to_string).collect();
    listed.sort();
    let mut expected: Vec<String> = es.iter().map(|e| e.addr.clone()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    // Without the pair, the managers refuse the connection.
    let o = list(&[]);
    assert!(!o.status.success() || stdout(&o).trim().is_empty(), "listed without TLS: {}", stdout(&o));

    let members = |tls: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_swarm"));
        c.args(["members", "list", "--manager", &addrs[0], "--cluster-secret-file", secret_file()]);
        if tls {
            c.args([
                "--tlsverify",
                "--tlscacert",
                &certs.file("ca.pem"),
                "--tlscert",
                &certs.file("cert.pem"),
                "--tlskey",
                &certs.file("key.pem"),
            ]);
        }
        run(&mut c)
    };
    let o = members(true);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = members_rows(&stdout(&o));
    assert_eq!(rows.len(), 3, "{}", stdout(&o));
    assert!(rows.iter().all(|r| r[6] == "yes"), "every member answers over TLS: {}", stdout(&o));
    assert!(!members(false).status.success(), "members answered without TLS");

    // A Docker API client holding a certificate the CA signed is still not a manager: 403 on
    // every control route, and nothing it asked for happens.
    for (method, path) in [
        ("POST", "/_swarm/raft/vote"),
        ("GET", "/_swarm/members"),
        ("GET", "/_swarm/members/self"),
        ("DELETE", &*format!("/_swarm/members/{}", addrs[1])),
        ("PUT", "/_swarm/nodes/127.0.0.1:9?ttl=600"),
        ("GET", "/_swarm/nodes"),
    ] {
        let o = run(Command::new(require("curl", "curl"))
            .args(["-sS", "-o", "/dev/stderr", "-w", "%{http_code}", "-X", method])
            .args([
                "--cacert",
                &certs.file("ca.pem"),
                "--cert",
                &certs.file("cert.pem"),
                "--key",
                &certs.file("key.pem"),
            ])
            .arg(format!("https://{}{path}", addrs[0])));
        assert_eq!(stdout(&o), "403", "{method} {path} with a client certificate: {}", stderr(&o));
        assert!(stderr(&o).contains("only managers"), "{}", stderr(&o));
    }
    assert_eq!(members_rows(&stdout(&members(true))).len(), 3);
    assert!(!stdout(&list(&opts)).contains("127.0.0.1:9"));
}

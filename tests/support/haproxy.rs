//! A real HAProxy with the repository's configuration (TCP mode), stopped by pid.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, http, require, wait_until};

/// HAProxy in front of three managers (or one address three times).
pub struct LoadBalancer {
    /// Where it listens.
    pub addr: String,
    /// Where it serves its Prometheus metrics (the repository's configuration only).
    pub metrics_addr: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl LoadBalancer {
    /// Starts HAProxy with `haproxy/haproxy.cfg` over `managers` (three addresses).
    pub fn start(managers: &[String]) -> LoadBalancer {
        Self::spawn(
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/haproxy/haproxy.cfg")),
            managers,
            super::unique_dir("swarm-haproxy-"),
        )
    }

    /// HAProxy in HTTP mode (it parses every request and response, as a follower does) with
    /// keep-alive to one backend: a reference hop for benchmarks.
    pub fn start_http(backend: &str) -> LoadBalancer {
        let dir = super::unique_dir("swarm-haproxy-");
        let cfg = dir.path().join("http.cfg");
        std::fs::write(
            &cfg,
            "global\n    maxconn 4096\ndefaults\n    mode http\n    option http-keep-alive\n    timeout connect 2s\n    timeout client 1h\n    timeout server 1h\n\
             frontend docker\n    bind \"${SWARM_LB}\"\n    default_backend leader\nbackend leader\n    server m1 \"${SWARM_M1}\"\n",
        )
        .expect("haproxy config");
        let b = backend.to_string();
        Self::spawn(&cfg, &[b.clone(), b.clone(), b], dir)
    }

    fn spawn(cfg: &Path, managers: &[String], dir: tempfile::TempDir) -> LoadBalancer {
        let bin = require("haproxy", "haproxy");
        let addr = format!("127.0.0.1:{}", free_port());
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        // A first file gives the configuration a log target: its connections, to `log()`.
        let logging = dir.path().join("logging.cfg");
        std::fs::write(&logging, "global\n    log stderr format raw local0\n").expect("haproxy logging config");
        let log = std::fs::File::create(dir.path().join("log")).expect("haproxy log");
        let child = Command::new(bin)
            .arg("-f")
            .arg(&logging)
            .arg("-f")
            .arg(cfg)
            .arg("-db")
            .env("SWARM_LB", &addr)
            .env("SWARM_LB_METRICS", &metrics_addr)
            .env("SWARM_M1", &managers[0])
            .env("SWARM_M2", &managers[1])
            .env("SWARM_M3", &managers[2])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start haproxy");
        wait_until(Duration::from_secs(10), "haproxy answers", || http(&addr, "GET", "/_ping", None).0 == 200);
        LoadBalancer { addr, metrics_addr, child, dir }
    }

    /// What HAProxy logged: a line per connection, with its server, timings and how it ended.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! A real Prometheus server scraping managers, stopped by pid.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, http, require, signal, unique_dir, wait_until};

/// `prometheus` (Debian's package) scraping `targets` every second.
pub struct Prometheus {
    /// `127.0.0.1:port` of its HTTP API.
    pub addr: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts it and waits until it answers.
    pub fn scraping(targets: &[String]) -> Prometheus {
        let dir = unique_dir("swarm-prometheus-");
        let list = targets.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(", ");
        let config = format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: swarm\n    static_configs:\n      - targets: [{list}]\n");
        Self::start(dir, &config)
    }

    /// The shipped `grafana/prometheus.yml` and its rules, scraping `managers` (three) and
    /// HAProxy's metrics at `haproxy` instead of the default addresses, every second.
    pub fn shipped(managers: &[String], haproxy: &str) -> Prometheus {
        let grafana = concat!(env!("CARGO_MANIFEST_DIR"), "/grafana");
        let dir = unique_dir("swarm-prometheus-");
        std::fs::copy(format!("{grafana}/alerts.yml"), dir.path().join("alerts.yml")).unwrap();
        let shipped = std::fs::read_to_string(format!("{grafana}/prometheus.yml")).unwrap();
        let list = managers.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(", ");
        let mut config = shipped.clone();
        for (from, to) in [
            ("[\"127.0.0.1:4000\", \"127.0.0.1:4001\", \"127.0.0.1:4002\"]", format!("[{list}]")),
            ("[\"127.0.0.1:8404\"]", format!("[\"{haproxy}\"]")),
            ("interval: 5s", "interval: 1s".to_string()),
        ] {
            assert!(config.contains(from), "grafana/prometheus.yml no longer has {from}");
            config = config.replace(from, &to);
        }
        Self::start(dir, &config)
    }

    fn start(dir: tempfile::TempDir, config_text: &str) -> Prometheus {
        let bin = require("prometheus", "prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_text).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let p = Prometheus { addr, child, _dir: dir };
        wait_until(Duration::from_secs(30), "prometheus answers", || http(&p.addr, "GET", "/-/ready", None).0 == 200);
        p
    }

    /// The result list of an instant query.
    pub fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let q: String = form_urlencoded::byte_serialize(promql.as_bytes()).collect();
        let (_, _, body) = http(&self.addr, "GET", &format!("/api/v1/query?query={q}"), None);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Every metric name it has stored.
    pub fn names(&self) -> Vec<String> {
        let (_, _, body) = http(&self.addr, "GET", "/api/v1/label/__name__/values", None);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        v["data"].as_array().into_iter().flatten().filter_map(|n| n.as_str().map(str::to_string)).collect()
    }

    /// The rule groups it loaded, as `/api/v1/rules` lists them.
    pub fn rule_groups(&self) -> Vec<serde_json::Value> {
        let (_, _, body) = http(&self.addr, "GET", "/api/v1/rules", None);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        v["data"]["groups"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        signal(self.child.id(), "TERM");
        let _ = self.child.wait();
    }
}

//! Metrics as operators use them: a real Prometheus scrapes a manager, the names pass
//! promtool's lint, and every metric the Grafana dashboard queries exists.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

/// Metric names used in the dashboard's queries.
fn dashboard_metrics() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/grafana/dashboards/swarm.json");
    let dash: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let names = regex::Regex::new(r"\b(?:swarm|process)_[a-z_]+").unwrap();
    let mut out = BTreeSet::new();
    let panels = dash["panels"].as_array().unwrap();
    assert!(!panels.is_empty());
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            out.extend(names.find_iter(expr).map(|m| m.as_str().to_string()));
        }
    }
    out
}

#[test]
fn prometheus_scrapes_managers_and_the_dashboard_queries_real_metrics() {
    let es = engines(&[("node-1", &[])]);
    // A one-manager Raft group: leadership metrics included.
    let g = RaftGroup::start(1, |_| nodes_url(&es), &[]);
    let m = g.m(0);
    m.wait_healthy(1);
    m.docker(&["run", "-d", "--name", "traffic", "busybox", "sleep", "300"]);
    m.docker(&["ps"]);
    let prom = Prometheus::scraping(std::slice::from_ref(&m.addr));
    wait_until(Duration::from_secs(30), "prometheus scrapes the manager", || {
        prom.query("swarm_is_leader").iter().any(|r| r["value"][1] == "1")
    });
    let healthy = prom.query("swarm_nodes{state=\"healthy\"}");
    assert!(healthy.iter().any(|r| r["value"][1] == "1"), "{healthy:?}");

    let scraped: BTreeSet<String> = prom.names().into_iter().collect();
    let missing: Vec<String> = dashboard_metrics().into_iter().filter(|n| !scraped.contains(n)).collect();
    assert!(missing.is_empty(), "dashboard queries metrics Prometheus never saw: {missing:?}");

    // promtool's lint of the exposition (naming, units, help).
    let promtool = require("promtool", "prometheus");
    let (_, _, text) = http(&m.addr, "GET", "/metrics", None);
    let mut lint = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    lint.stdin.take().unwrap().write_all(&text).unwrap();
    let o = lint.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

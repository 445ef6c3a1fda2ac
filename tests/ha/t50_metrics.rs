//! Metrics as operators use them: a real Prometheus with the shipped configuration scrapes three
//! managers and the HAProxy in front of them and evaluates the shipped rules; the names pass
//! promtool's lint; every metric the dashboard and the alerts query exists; the alerts' unit
//! tests pass; and a request a follower passes on is counted once across the managers.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

const GRAFANA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/grafana");

fn dashboard_panels() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(format!("{GRAFANA}/dashboards/swarm.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let panels = dash["panels"].as_array().unwrap().clone();
    assert!(!panels.is_empty());
    panels
}

fn exprs(panel: &serde_json::Value) -> Vec<String> {
    panel["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_string()).collect()
}

/// Metric names (swarm's, the process collector's, HAProxy's) in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let names = regex::Regex::new(r"\b(?:swarm|process|haproxy)_[a-z_]+").unwrap();
    names.find_iter(text).map(|m| m.as_str().to_string()).collect()
}

/// Metric names the dashboard and the alert rules query.
fn queried_metrics() -> BTreeSet<String> {
    let mut out: BTreeSet<String> = dashboard_panels().iter().flat_map(exprs).flat_map(|e| metric_names(&e)).collect();
    let rules = std::fs::read_to_string(format!("{GRAFANA}/alerts.yml")).unwrap();
    for line in rules.lines().filter(|l| l.trim_start().starts_with("expr:")) {
        out.extend(metric_names(line));
    }
    out
}

/// The sum of the samples of `name` whose labels contain each of `labels`, in a text exposition.
fn sample_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn scrape(addr: &str) -> String {
    let (status, _, body) = http(addr, "GET", "/metrics", None);
    assert_eq!(status, 200);
    String::from_utf8(body).unwrap()
}

#[test]
fn dashboard_panels_keep_one_unit_and_never_sum_what_every_manager_reports() {
    // Every manager reports these about the same cluster: a sum counts each thing once per manager.
    let per_cluster = regex::Regex::new(
        r"sum\b(?:\s*by\s*\([^)]*\))?\s*\((?:[^()]|\([^()]*\))*\b(swarm_nodes|swarm_node_transitions_total|swarm_leader_changes_total|swarm_engine_healthy)\b",
    )
    .unwrap();
    for p in dashboard_panels() {
        let title = p["title"].as_str().unwrap().to_string();
        let es = exprs(&p);
        for e in &es {
            assert!(!per_cluster.is_match(e), "panel {title:?} sums a series every manager reports: {e}");
        }
        // A quantile (seconds) and a rate or a count on one axis mix units.
        let quantiles = es.iter().filter(|e| e.contains("histogram_quantile")).count();
        assert!(quantiles == 0 || quantiles == es.len(), "panel {title:?} mixes units: {es:?}");
        assert!(p["fieldConfig"]["defaults"]["unit"].is_string(), "panel {title:?} names no unit");
    }
}

#[test]
fn the_alert_rules_pass_their_unit_tests() {
    let promtool = require("promtool", "prometheus");
    let o = run(Command::new(&promtool).args(["check", "rules", "alerts.yml"]).current_dir(GRAFANA));
    assert!(o.status.success(), "promtool check rules:\n{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    let o = run(Command::new(&promtool).args(["test", "rules", "alerts.test.yml"]).current_dir(GRAFANA));
    assert!(o.status.success(), "promtool test rules:\n{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
}

#[test]
fn prometheus_scrapes_managers_and_haproxy_and_the_dashboard_and_alerts_query_real_metrics() {
    let es = engines(&[("node-1", &[])]);
    let g = RaftGroup::start(3, |_| nodes_url(&es), &[]);
    let leader = g.wait_one_primary(Duration::from_secs(30));
    let follower = g.other(leader);
    for i in 0..3 {
        g.m(i).wait_healthy(1);
    }
    let m = g.m(leader);
    m.docker(&["run", "-d", "--name", "traffic", "busybox", "sleep", "300"]);

    // A request a follower passes on counts once, at the leader that served it.
    let addrs: Vec<String> = (0..3).map(|i| g.addr(i)).collect();
    // Every request counted by any manager, but the scrapes made here.
    let listed = |addrs: &[String]| -> f64 {
        addrs
            .iter()
            .map(|a| {
                let text = scrape(a);
                sample_sum(&text, "swarm_api_requests_total", &[])
                    - sample_sum(&text, "swarm_api_requests_total", &["route=\"metrics\""])
            })
            .sum()
    };
    let forwarded =
        || sample_sum(&scrape(&g.addr(follower)), "swarm_api_forwarded_requests_total", &["method=\"GET\""]);
    let at_leader = || sample_sum(&scrape(&g.addr(leader)), "swarm_api_requests_total", &["route=\"containers.list\""]);
    let (listed_before, forwarded_before, leader_before) = (listed(&addrs), forwarded(), at_leader());
    for _ in 0..5 {
        let (status, _, _) = http(&g.addr(follower), "GET", "/v1.41/containers/json", None);
        assert_eq!(status, 200);
    }
    assert_eq!(listed(&addrs) - listed_before, 5.0, "five lists through a follower, counted once each");
    assert_eq!(forwarded() - forwarded_before, 5.0, "the follower counts what it passed on");
    assert_eq!(at_leader() - leader_before, 5.0, "the leader that served them counts them");

    let text = scrape(&m.addr);
    let build = text.lines().find(|l| l.starts_with("swarm_build_info{")).expect("swarm_build_info");
    assert!(regex::Regex::new(r#"revision="[0-9a-f]{7,}""#).unwrap().is_match(build), "no revision: {build}");
    assert!(sample_sum(&text, "swarm_raft_term", &[]) >= 1.0);
    assert!(sample_sum(&text, "swarm_raft_voters", &[]) == 3.0);
    assert!(sample_sum(&text, "swarm_engine_healthy", &["node=\"node-1\""]) == 1.0, "{text}");
    assert!(sample_sum(&text, "swarm_scheduling_duration_seconds_count", &[]) >= 1.0);
    assert!(sample_sum(&text, "swarm_engine_request_duration_seconds_count", &["kind=\"container_create\""]) >= 1.0);

    let lb = LoadBalancer::start(&addrs);
    let prom = Prometheus::shipped(&addrs, &lb.metrics_addr);
    wait_until(Duration::from_secs(30), "prometheus scrapes the managers and HAProxy", || {
        prom.query("up{job=\"swarm\"} == 1").len() == 3
            && prom.query("swarm_is_leader == 1").len() == 1
            && prom.query("min(swarm_has_leader) == 1").len() == 1
            && prom.query("haproxy_backend_active_servers{proxy=\"managers\"} == 3").len() == 1
    });
    let healthy = prom.query("max by (state) (swarm_nodes{state=\"healthy\"})");
    assert!(healthy.iter().any(|r| r["value"][1] == "1"), "{healthy:?}");

    let missing = || {
        let scraped: BTreeSet<String> = prom.names().into_iter().collect();
        queried_metrics().into_iter().filter(|n| !scraped.contains(n)).collect::<Vec<String>>()
    };
    // Every target was scraped (each `up` above comes with its samples).
    let missing = missing();
    assert!(missing.is_empty(), "the dashboard or the alerts query metrics Prometheus never saw: {missing:?}");

    // Every shipped rule is loaded and evaluates without error against the real series.
    wait_until(Duration::from_secs(30), "every rule evaluated", || {
        let groups = prom.rule_groups();
        let rules: Vec<&serde_json::Value> =
            groups.iter().flat_map(|g| g["rules"].as_array().unwrap().iter()).collect();
        rules.len() >= 12 && rules.iter().all(|r| r["lastEvaluation"].as_str().is_some_and(|t| !t.starts_with("0001")))
    });
    for g in prom.rule_groups() {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(r["health"], "ok", "rule {} fails to evaluate: {}", r["name"], r["lastError"]);
        }
    }
    let firing = prom.query("ALERTS{alertstate=\"firing\"}");
    assert!(firing.is_empty(), "a healthy cluster raises no alert: {firing:?}");

    // promtool's lint of the exposition (naming, units, help).
    let promtool = require("promtool", "prometheus");
    let mut lint = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    lint.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = lint.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

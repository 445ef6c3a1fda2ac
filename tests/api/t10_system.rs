use crate::support::*;

#[test]
fn ping_version_and_info_speak_docker() {
    let es = engines(&[("node-1", &["zone=a"]), ("node-2", &["zone=b"])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(2);

    let (status, head, body) = http(&m.addr, "HEAD", "/_ping", None);
    assert_eq!(status, 200);
    let head = head.to_ascii_lowercase();
    assert!(head.contains("api-version: 1.41"), "{head}");
    assert!(head.contains("ostype: linux"), "{head}");
    assert!(body.is_empty());
    let (status, _, body) = http(&m.addr, "GET", "/v1.41/_ping", None);
    assert_eq!((status, body.as_slice()), (200, b"OK".as_slice()));

    let v: serde_json::Value = serde_json::from_slice(&http(&m.addr, "GET", "/version", None).2).unwrap();
    assert_eq!(v["ApiVersion"], "1.41");
    assert!(v["Version"].as_str().unwrap().starts_with("swarm/"));
    assert_eq!(m.docker(&["version", "--format", "{{.Server.APIVersion}}"]), "1.41");

    let info = m.docker(&["info"]);
    for want in [
        "Strategy: spread",
        "Filters: health, port, containerslots, dependency, affinity, constraint, whitelist",
        "Nodes: 2",
        "Open files: ",
        " engines)",
        " node-1: ",
        " node-2: ",
        "└ Status: Healthy",
        "└ Reserved CPUs: 0 / ",
        "└ Reserved Memory: 0 B / ",
        "zone=a",
        "storagedriver=overlay2",
        "└ ServerVersion: 20.10",
        "└ UpdatedAt: 20",
        "Server Version: swarm/",
    ] {
        assert!(info.contains(want), "docker info lacks {want:?}:\n{info}");
    }
    let v: serde_json::Value = serde_json::from_slice(&http(&m.addr, "GET", "/info", None).2).unwrap();
    assert_eq!(v["Swarm"]["ControlAvailable"], false);
}

#[test]
fn versions_out_of_range_and_unknown_routes_get_docker_errors() {
    let es = engines(&[("node-1", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(1);
    let (status, _, body) = http(&m.addr, "GET", "/v1.99/info", None);
    assert_eq!(status, 400);
    assert_eq!(
        String::from_utf8_lossy(&body).trim(),
        r#"{"message":"client version 1.99 is too new. Maximum supported API version is 1.41"}"#
    );
    let (status, _, body) = http(&m.addr, "GET", "/v1.12/info", None);
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("is too old"));
    let (status, head, body) = http(&m.addr, "GET", "/v1.41/swarm", None);
    assert_eq!(status, 404);
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"));
    assert_eq!(String::from_utf8_lossy(&body).trim(), r#"{"message":"page not found"}"#);
}

#[test]
fn metrics_are_exported_in_prometheus_text() {
    let es = engines(&[("node-1", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(1);
    m.docker(&["ps"]);
    let (status, head, body) = http(&m.addr, "GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"));
    let text = String::from_utf8_lossy(&body);
    for want in [
        "swarm_api_requests_total{code=\"200\",method=\"GET\",route=\"containers.list\"}",
        "swarm_api_request_duration_seconds_bucket",
        "swarm_nodes{state=\"healthy\"} 1",
        "swarm_engine_refresh_errors_total",
        "swarm_build_info",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(want), "metrics lack {want}:\n{text}");
    }
}

#[test]
fn logs_carry_no_colour_off_a_terminal_and_json_on_request() {
    let es = engines(&[("node-1", &[])]);
    let text = Manager::start(&nodes_url(&es), &[]);
    text.wait_healthy(1);
    let log = text.log();
    assert!(log.contains("Registered Engine") && !log.contains('\u{1b}'), "colour codes in a log file: {log:?}");
    let json = Manager::start(&nodes_url(&es), &["--log-format", "json"]);
    json.wait_healthy(1);
    let log = json.log();
    let lines: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    // The message and the fields at the top level, where log shippers look for them.
    assert!(lines.iter().any(|l| l["message"] == "Registered Engine." && l["node"] == "node-1"), "{log}");
    assert!(
        lines.iter().all(|l| l["level"].is_string() && l["timestamp"].is_string() && l.get("fields").is_none()),
        "{log}"
    );
    assert!(lines.iter().any(|l| l["message"] == "swarm manage starting." && l["version"].is_string()), "{log}");
}

#[test]
fn the_manager_raises_its_open_files_limit_and_says_how_many_engines_it_allows() {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let hard: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|h| h.parse().ok())
        .unwrap();
    assert!(hard > 512, "this test needs a hard open-files limit above 512, not {hard}");
    let es = engines(&[("node-1", &[])]);
    // A soft limit of 512, as many distributions' defaults are low.
    let m = Manager::start_under(
        &["sh", "-c", "ulimit -Sn 512 && exec \"$0\" \"$@\""],
        free_port(),
        &nodes_url(&es),
        &[],
        None,
    );
    m.wait_healthy(1);
    let info = m.docker(&["info"]);
    let allowed = (hard - 256) / 2;
    assert!(info.contains(&format!("Open files: {hard} (about {allowed} engines)")), "{info}");
    assert!(m.log().contains("Open-files limit raised.") && m.log().contains("from=512"), "{}", m.log());
}

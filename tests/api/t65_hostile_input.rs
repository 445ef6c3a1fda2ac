//! Seeded random input against a running manager: mutated routes, queries and bodies, with
//! numbers no client should send. Every request must get an HTTP answer (errors in Docker's
//! `{"message"}` shape), the manager must never panic, and must keep serving. Names, images and
//! registries are drawn from local-only values: nothing here makes an engine reach the network.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::*;

/// Requests per run; `SWARM_FUZZ_REQUESTS` and `SWARM_FUZZ_SEED` change the run.
const REQUESTS: usize = 1500;

const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551616",
    "1e308",
    "-1e300",
    "1e19",
    "NaN",
    "inf",
    "-inf",
    "0x10",
    "1.5",
    "",
    " ",
    "99999999999999999999999999999",
    "3s",
    "-3s",
    "1h",
    "true",
    "null",
];
const NAMES: &[&str] =
    &["web", "node-1/web", "/web", "nosuch", "a b", "..", "%2e%2e", "x", "éé", "%00", "node-1/", "/"];
const IMAGES: &[&str] =
    &["busybox", "busybox:latest", "127.0.0.1:1/nope", "127.0.0.1:1/nope:tag", "", "%%", "UPPER", "sha256:0000"];
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/_ping"),
    ("HEAD", "/_ping"),
    ("GET", "/version"),
    ("GET", "/info"),
    ("GET", "/events?until=1"),
    ("GET", "/containers/json"),
    ("POST", "/containers/create"),
    ("GET", "/containers/{name}/json"),
    ("POST", "/containers/{name}/start"),
    ("POST", "/containers/{name}/stop"),
    ("POST", "/containers/{name}/kill"),
    ("POST", "/containers/{name}/rename"),
    ("POST", "/containers/{name}/update"),
    ("POST", "/containers/{name}/wait"),
    ("GET", "/containers/{name}/logs"),
    ("GET", "/containers/{name}/top"),
    ("GET", "/containers/{name}/changes"),
    ("POST", "/containers/{name}/exec"),
    ("POST", "/exec/{name}/start"),
    ("POST", "/exec/{name}/resize"),
    ("GET", "/exec/{name}/json"),
    ("DELETE", "/containers/{name}"),
    ("POST", "/containers/prune"),
    ("GET", "/images/json"),
    ("POST", "/images/create"),
    ("GET", "/images/{image}/json"),
    ("GET", "/images/{image}/history"),
    ("POST", "/images/{image}/tag"),
    ("DELETE", "/images/{image}"),
    ("GET", "/networks"),
    ("POST", "/networks/create"),
    ("GET", "/networks/{name}"),
    ("DELETE", "/networks/{name}"),
    ("POST", "/networks/{name}/connect"),
    ("GET", "/volumes"),
    ("POST", "/volumes/create"),
    ("GET", "/volumes/{name}"),
    ("DELETE", "/volumes/{name}"),
    ("POST", "/commit"),
    ("GET", "/system/df"),
    ("GET", "/_swarm/nodes"),
    ("PUT", "/_swarm/nodes/{name}"),
    ("POST", "/_swarm/raft/vote"),
    ("GET", "/v1/clusters/{name}"),
    ("PATCH", "/containers/json"),
    ("GET", "/nosuch/route"),
];
const QUERY_KEYS: &[&str] = &[
    "all",
    "limit",
    "size",
    "filters",
    "since",
    "until",
    "t",
    "signal",
    "force",
    "v",
    "name",
    "tail",
    "timestamps",
    "follow",
    "stdout",
    "stream",
    "ttl",
    "fromImage",
    "fromSrc",
    "tag",
    "repo",
    "condition",
    "ps_args",
    "link",
    "before",
    "digests",
    "x",
];
const FILTERS: &[&str] = &[
    r#"{"label":["a=b"]}"#,
    r#"{"node":["node-*"]}"#,
    r#"{"status":["nosuch"]}"#,
    r#"{"name":[1]}"#,
    r#"{"#,
    r#"[]"#,
    r#"{"id":{"x":true}}"#,
    r#"{"dangling":["maybe"]}"#,
    r#"{"before":["nosuch"]}"#,
    r#"{"ancestor":["127.0.0.1:1/x"]}"#,
];

fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
    from[rng.random_range(0..from.len())]
}

/// A JSON value of any type, sometimes huge or nested.
fn value(rng: &mut StdRng, depth: u32) -> serde_json::Value {
    use serde_json::json;
    match rng.random_range(0..9) {
        0 => json!(null),
        1 => json!(rng.random::<bool>()),
        2 => json!(rng.random::<i64>()),
        3 => json!(rng.random::<f64>() * 1e300),
        4 => serde_json::from_str(pick(rng, &["1e400", "-1e400", "18446744073709551616", "-0"])).unwrap_or(json!(0)),
        5 => json!(pick(rng, NAMES)),
        6 if depth < 3 => json!((0..rng.random_range(0..4)).map(|_| value(rng, depth + 1)).collect::<Vec<_>>()),
        7 if depth < 3 => json!({"Name": value(rng, depth + 1), "x": value(rng, depth + 1)}),
        _ => json!("x".repeat(rng.random_range(0..2000))),
    }
}

/// A body: a mutated container create, another object, or bytes that are not JSON.
fn body(rng: &mut StdRng) -> Vec<u8> {
    let mut create = serde_json::json!({
        "Image": pick(rng, IMAGES), "Cmd": ["sleep", "1"], "HostConfig": {"NetworkMode": "none"},
        "Labels": {"fuzz": "1"},
    });
    let fields = [
        "Image",
        "Cmd",
        "Env",
        "Labels",
        "HostConfig",
        "NanoCpus",
        "Memory",
        "CpuShares",
        "ExposedPorts",
        "Hostname",
        "Name",
    ];
    for _ in 0..rng.random_range(0..4) {
        let v = value(rng, 0);
        create[pick(rng, &fields)] = v;
    }
    for key in ["Memory", "NanoCpus", "CpuShares", "CpuQuota", "MemorySwap", "PidsLimit"] {
        if rng.random_ratio(1, 6) && create["HostConfig"].is_object() {
            create["HostConfig"][key] = serde_json::from_str(pick(
                rng,
                &["9223372036854775807", "-9223372036854775808", "1e30", "-1", "18446744073709551615"],
            ))
            .unwrap_or_default();
        }
    }
    match rng.random_range(0..6) {
        0 => b"{\"Image\":".to_vec(),
        1 => vec![0xff, 0xfe, b'{', 0x00],
        2 => value(rng, 0).to_string().into_bytes(),
        _ => create.to_string().into_bytes(),
    }
}

fn request(rng: &mut StdRng) -> (String, String, Option<Vec<u8>>) {
    let (method, route) = ROUTES[rng.random_range(0..ROUTES.len())];
    let method =
        if rng.random_ratio(1, 20) { pick(rng, &["GET", "POST", "PUT", "DELETE", "OPTIONS", "BREW"]) } else { method };
    let name = pick(rng, NAMES).replace(' ', "%20");
    let mut path = route.replace("{name}", &name).replace("{image}", &pick(rng, IMAGES).replace('%', "%25"));
    let version = pick(rng, &["", "", "/v1.41", "/v1.24", "/v1.12", "/v9.99", "/v1.x", "/vv"]);
    if !path.starts_with("/_swarm") && !path.starts_with("/v1/") {
        path = format!("{version}{path}");
    }
    let mut query = Vec::new();
    for _ in 0..rng.random_range(0..4) {
        let key = pick(rng, QUERY_KEYS);
        let value = match key {
            "filters" => pick(rng, FILTERS).to_string(),
            "fromImage" | "repo" | "ancestor" => pick(rng, IMAGES).to_string(),
            "fromSrc" => pick(rng, &["-", "127.0.0.1:1/x.tar"]).to_string(),
            "name" => pick(rng, NAMES).to_string(),
            _ => pick(rng, NUMBERS).to_string(),
        };
        query.push(format!(
            "{key}={}",
            percent_encoding::utf8_percent_encode(&value, percent_encoding::NON_ALPHANUMERIC)
        ));
    }
    if !query.is_empty() {
        let joint = if path.contains('?') { '&' } else { '?' };
        path = format!("{path}{joint}{}", query.join("&"));
    }
    let body = (method != "GET" && method != "HEAD" && rng.random_ratio(2, 3)).then(|| body(rng));
    (method.to_string(), path, body)
}

/// What came back: `None` when the manager closed the connection without a status line,
/// `Some(None)` when nothing came within `bound` (a stop of a container that ignores SIGTERM
/// takes ten seconds), else the status, head and body read.
fn send(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    bound: Duration,
) -> Option<Option<(u16, String, Vec<u8>)>> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(bound)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: swarm\r\nConnection: close\r\n");
    if let Some(b) = body {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    // The manager may answer (a 4xx) before reading the whole body, and close.
    let _ = s.write_all(&bytes);
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => raw.extend_from_slice(&buf[..k]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if raw.is_empty() {
                    return Some(None);
                }
                break;
            }
            Err(_) => break,
        }
    }
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let body = raw[end + 4..].to_vec();
    // A chunked JSON error is one chunk: its size line, the document, the terminator.
    let body = if chunked {
        body.splitn(2, |b| *b == b'\n')
            .nth(1)
            .unwrap_or_default()
            .split(|b| *b == b'\r')
            .next()
            .unwrap_or_default()
            .to_vec()
    } else {
        body
    };
    Some(Some((status, head, body)))
}

#[test]
fn seeded_hostile_requests_get_answers_and_never_crash_the_manager() {
    let seed: u64 = std::env::var("SWARM_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    let n: usize = std::env::var("SWARM_FUZZ_REQUESTS").ok().and_then(|s| s.parse().ok()).unwrap_or(REQUESTS);
    eprintln!("fuzz seed {seed} ({n} requests); replay with SWARM_FUZZ_SEED={seed}");
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let m = Manager::start(&nodes_url(&es), &["--api-max-body-bytes", "65536", "--api-max-upload-bytes", "1048576"]);
    m.wait_healthy(2);
    m.docker(&["run", "-d", "--name", "web", "busybox", "sleep", "300"]);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..n {
        let (method, path, body) = request(&mut rng);
        let what = format!("request {i} of seed {seed}: {method} {path}");
        let Some(answer) = send(&m.addr, &method, &path, body.as_deref(), Duration::from_secs(2)) else {
            panic!("the manager closed the connection without an answer to {what}");
        };
        let Some((status, head, answer)) = answer else {
            *statuses.entry(0).or_insert(0) += 1;
            continue;
        };
        assert!((100..600).contains(&status), "no HTTP status for {what}: {head}");
        *statuses.entry(status).or_insert(0) += 1;
        let json = head.to_ascii_lowercase().contains("content-type: application/json");
        if status >= 400 && method != "HEAD" && json {
            let v: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_else(|e| {
                panic!("{what}: error body is not JSON ({e}): {}", String::from_utf8_lossy(&answer))
            });
            assert!(v["message"].is_string(), "{what}: error without a message: {v}");
        }
    }
    eprintln!("statuses (0: still working after 2 s): {statuses:?}");
    assert!(statuses.get(&0).copied().unwrap_or(0) < n / 10, "most requests should be answered at once: {statuses:?}");
    let log = m.log();
    assert!(!log.contains("panicked"), "the manager panicked:\n{log}");
    assert_eq!(http(&m.addr, "GET", "/_ping", None).0, 200);
    // What the manager lists is what the engines hold, asked directly.
    let engines_hold = || {
        let mut names: Vec<String> =
            es.iter().flat_map(|e| e.container_names().into_iter().map(move |c| format!("{}/{c}", e.name))).collect();
        names.sort();
        names
    };
    wait_until(Duration::from_secs(15), "the manager's ps -a matches the engines", || {
        let mut listed: Vec<String> =
            m.docker(&["ps", "-a", "--format", "{{.Names}}"]).lines().map(str::to_string).collect();
        listed.sort();
        listed == engines_hold()
    });
}

#[test]
fn ten_thousand_idle_connections_leave_docker_clients_served_and_lose_nothing() {
    const FLOOD: usize = 10_000;
    // The flood's descriptors are this process's: raise its soft limit as the manager does.
    let files = swarm::open_files::OpenFiles::raise();
    assert!(
        files.limit >= FLOOD as u64 + 2_000,
        "open-files limit {} is too low for this test: raise the hard limit (ulimit -Hn)",
        files.limit
    );
    let es = engines(&[("node-1", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(1);
    m.docker(&["run", "-d", "--name", "before", "busybox", "sleep", "300"]);
    // Past --api-max-connections (4096): each new connection closes the oldest idle one.
    let flood: Vec<std::net::TcpStream> =
        (0..FLOOD).filter_map(|_| std::net::TcpStream::connect(&m.addr).ok()).collect();
    assert_eq!(flood.len(), FLOOD, "connections refused: the accept queue or the front turned them away");
    let started = std::time::Instant::now();
    m.docker(&["run", "-d", "--name", "during", "busybox", "sleep", "300"]);
    assert_eq!(m.docker(&["ps", "--format", "{{.Names}}"]).lines().count(), 2);
    eprintln!("docker run + docker ps amid {FLOOD} idle connections: {:?}", started.elapsed());
    let metrics = String::from_utf8_lossy(&http(&m.addr, "GET", "/metrics", None).2).into_owned();
    let evicted: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("swarm_api_connections_evicted_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(evicted >= (FLOOD - 4096) as f64, "evicted {evicted}: {metrics}");
    drop(flood);
    // Read from the engine: both containers, once each.
    let mut held = es[0].container_names();
    held.sort();
    assert_eq!(held, ["before", "during"]);
    assert!(!m.log().contains("panicked"));
}

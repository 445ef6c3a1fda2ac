//! `/_ping`, `/version`, `/info` (the cluster in classic format), `/events`, `/metrics`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Method, Request, Response};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use super::error::ApiError;
use super::router::Ctx;
use super::{proxy, version, ApiState};
use crate::body::{self, Body};
use crate::cluster::{events, NodeState};

/// `GET`/`HEAD /_ping`.
pub fn ping(method: &Method) -> Response<Body> {
    let body = if method == Method::HEAD { body::empty() } else { body::full("OK") };
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache, no-store, must-revalidate")
        .header(header::PRAGMA, "no-cache")
        .body(body)
        .unwrap_or_else(|_| Response::new(body::empty()))
}

/// `GET /_swarm/ready`, the health check for load balancers: 200 while this manager can serve
/// clients, 503 with the reason when it cannot (stopping, removed from the group, no primary
/// known for longer than `--replication-leader-wait`, or engines not read yet since it started).
/// With `?for=sessions`, the leader of a replicated group also answers 503: a hijacked session
/// (attach, exec) lives on the manager it reached, and one on a follower outlives the leader's
/// loss.
pub fn ready(state: &ApiState, ctx: &Ctx) -> Response<Body> {
    let bound = state.config.replication.as_ref().map_or(std::time::Duration::ZERO, |r| r.leader_wait);
    let loaded =
        if state.cluster.is_loaded() { Ok(()) } else { Err("this manager is still reading the engines".to_string()) };
    let sessions =
        if ctx.query.get("for") == Some("sessions") && state.leadership.is_replicated() && state.leadership.is_leader()
        {
            Err("this manager leads: sessions go to a follower, so that the leader's loss cuts none".to_string())
        } else {
            Ok(())
        };
    match state.leadership.readiness(bound).and(loaded).and(sessions) {
        Ok(()) => json_response(http::StatusCode::OK, &serde_json::json!({ "Ready": true })),
        Err(why) => json_response(http::StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({ "message": why })),
    }
}

/// A JSON response.
pub fn json_response(status: http::StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body::full(value.to_string() + "\n"))
        .unwrap_or_else(|_| Response::new(body::empty()))
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// `GET /version`.
pub fn version(state: &ApiState) -> Response<Body> {
    let v = json!({
        "Platform": {"Name": "Docker Swarm - Community"},
        "Components": [{"Name": "Swarm", "Version": crate::VERSION, "Details": {"GitCommit": crate::GIT_COMMIT}}],
        "Version": format!("swarm/{}", crate::VERSION),
        "ApiVersion": state.api_version(),
        "MinAPIVersion": version::MIN_API_VERSION,
        "GitCommit": crate::GIT_COMMIT,
        "GoVersion": "rust",
        "Os": "linux",
        "Arch": arch(),
        "KernelVersion": kernel_version(),
        "Experimental": state.config.experimental,
        "BuildTime": "",
    });
    json_response(http::StatusCode::OK, &v)
}

/// go-units `BytesSize` as classic Swarm printed it: four significant digits, binary units.
pub fn bytes_size(size: f64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = size;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    let digits = if v == 0.0 { 0 } else { (3 - v.abs().log10().floor() as i32).max(0) as usize };
    let mut text = format!("{v:.digits$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{text} {}", UNITS[i])
}

/// RFC 3339 in UTC, second precision.
pub fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `GET /info`: totals over the cluster and the classic node table in `SystemStatus`.
pub fn info(state: &ApiState) -> Response<Body> {
    let mut status = manager_status(state);
    let (totals, rows) = node_rows(state);
    status.push(["Nodes".into(), rows.len().to_string()]);
    for (name, addr, r) in rows {
        status.push([name, addr]);
        status.extend(r);
    }
    let mut doc = info_document(state, &totals);
    // Moved in, not copied: at 5,000 engines it is 50,000 pairs.
    doc["SystemStatus"] =
        Value::Array(status.into_iter().map(|[k, v]| Value::Array(vec![Value::String(k), Value::String(v)])).collect());
    json_response(http::StatusCode::OK, &doc)
}

/// What the healthy engines hold, summed for `/info`.
#[derive(Default)]
struct Totals {
    containers: usize,
    running: usize,
    paused: usize,
    images: usize,
    ncpu: i64,
    mem: i64,
}

/// Classic Swarm's first status pairs: role, primary, strategy, filters.
fn manager_status(state: &ApiState) -> Vec<[String; 2]> {
    let mut status: Vec<[String; 2]> = Vec::new();
    if state.leadership.is_replicated() {
        match state.leadership.role() {
            crate::leadership::Role::Leader => status.push(["Role".into(), "primary".into()]),
            crate::leadership::Role::Follower { leader } => {
                status.push(["Role".into(), "replica".into()]);
                status.push(["Primary".into(), leader.unwrap_or_default()]);
            }
        }
    }
    status.push(["Open files".into(), state.cluster.options().open_files.describe()]);
    status.push(["Strategy".into(), state.orchestrator.scheduler().strategy().name().into()]);
    status.push([
        "Filters".into(),
        state.orchestrator.scheduler().filters().iter().map(|f| f.name()).collect::<Vec<_>>().join(", "),
    ]);
    status
}

/// One node in `/info`: ` name`, its address, its `└` lines.
type NodeRow = (String, String, Vec<[String; 2]>);

/// Each node's `└` lines under ` name: addr`, in natural order of names, and the totals.
fn node_rows(state: &ApiState) -> (Totals, Vec<NodeRow>) {
    let reserved = state.cluster.reservations();
    let mut t = Totals::default();
    let mut rows = Vec::new();
    state.cluster.with_nodes(|nodes| {
        for n in nodes.values() {
            let healthy = n.health.state() == NodeState::Healthy;
            let c_total = n.containers.len();
            let derived = n.derived();
            let (c_running, c_paused) = (derived.running, derived.paused);
            let (used_cpus, used_mem) = reserved.get(&n.addr).copied().unwrap_or((0, 0));
            let (total_cpus, total_mem) = (derived.facts.total_cpus, derived.facts.total_memory);
            if healthy {
                t.containers += c_total;
                t.running += c_running;
                t.paused += c_paused;
                t.images += n.images.len();
                t.ncpu += total_cpus;
                t.mem += total_mem;
            }
            let mut r: Vec<[String; 2]> = Vec::new();
            let mut push = |k: &str, v: String| r.push([format!("  └ {k}"), v]);
            push("ID", n.engine_id());
            push("Status", n.health.state().as_str().into());
            push(
                "Containers",
                if healthy {
                    format!(
                        "{c_total} ({c_running} Running, {c_paused} Paused, {} Stopped)",
                        c_total - c_running - c_paused
                    )
                } else {
                    c_total.to_string()
                },
            );
            push("Reserved CPUs", format!("{used_cpus} / {total_cpus}"));
            push("Reserved Memory", format!("{} / {}", bytes_size(used_mem as f64), bytes_size(total_mem as f64)));
            let labels = n
                .info
                .as_ref()
                .map(|i| i.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "));
            push("Labels", labels.unwrap_or_default());
            push("Error", n.health.last_error().unwrap_or("(none)").to_string());
            push("UpdatedAt", n.updated_at.map(rfc3339).unwrap_or_default());
            push("ServerVersion", n.info.as_ref().map(|i| i.server_version.clone()).unwrap_or_default());
            // The address goes on the name line, as classic Swarm printed it.
            rows.push((format!(" {}", n.name()), n.addr.clone(), r));
        }
    });
    rows.sort_by_cached_key(|r| natural_key(&r.0));
    (t, rows)
}

/// The `/info` document: the engines' sums, swarm's status pairs, the manager's own host.
fn info_document(state: &ApiState, t: &Totals) -> Value {
    json!({
        "ID": "",
        "Containers": t.containers,
        "ContainersRunning": t.running,
        "ContainersPaused": t.paused,
        "ContainersStopped": t.containers - t.running - t.paused,
        "Images": t.images,
        "Driver": "",
        "DriverStatus": null,
        "SystemStatus": null,
        "Plugins": {"Volume": null, "Network": null, "Authorization": null, "Log": null},
        "MemoryLimit": true,
        "SwapLimit": true,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "CPUSet": true,
        "PidsLimit": true,
        "IPv4Forwarding": true,
        "Debug": false,
        "NFd": 0,
        "NGoroutines": 0,
        "SystemTime": rfc3339(SystemTime::now()),
        "LoggingDriver": "",
        "CgroupDriver": "",
        "NEventsListener": state.cluster.event_listeners(),
        "KernelVersion": kernel_version(),
        "OperatingSystem": std::env::consts::OS,
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": null,
        "NCPU": t.ncpu,
        "MemTotal": t.mem,
        "DockerRootDir": "",
        "HttpProxy": std::env::var("http_proxy").unwrap_or_default(),
        "HttpsProxy": std::env::var("https_proxy").unwrap_or_default(),
        "NoProxy": std::env::var("no_proxy").unwrap_or_default(),
        "Name": state.hostname,
        "Labels": [],
        "ExperimentalBuild": state.config.experimental,
        "ServerVersion": format!("swarm/{}", crate::VERSION),
        "Runtimes": {},
        "DefaultRuntime": "",
        // ControlAvailable=false keeps `docker inspect` from probing swarm-mode endpoints.
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
        "LiveRestoreEnabled": false,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": [],
        "Warnings": null,
    })
}

/// Orders `node-2` before `node-10`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    natural_key(a).cmp(&natural_key(b))
}

/// What [`natural_cmp`] compares: text runs, each with the number after it.
fn natural_key(s: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            if !num.is_empty() {
                out.push((std::mem::take(&mut text), num.parse().unwrap_or(0)));
                num.clear();
            }
            text.push(c);
        }
    }
    out.push((text, num.parse().unwrap_or(0)));
    out
}

/// How long a window stays open past `until` for events stamped before it that are still on
/// their way from an engine's stream.
const EVENTS_UNTIL_GRACE: Duration = Duration::from_millis(250);

/// The engines' own answers for a window of past events, merged by time.
async fn past_events(state: &ApiState, ctx: &Ctx, query: &str) -> Result<Vec<Value>, ApiError> {
    let mut per_engine: Vec<std::collections::VecDeque<Value>> = Vec::new();
    for n in state.cluster.healthy_nodes() {
        let path = ctx.engine_path(n.api_version.as_deref(), "/events", Some(query));
        let Ok((status, _, bytes)) =
            n.client.call(Method::GET, &path, None, &Default::default(), Some(n.client.timeout())).await
        else {
            continue;
        };
        // A refused window or filter: the engine's own answer.
        if !status.is_success() {
            return Err(ApiError::new(status, crate::transport::error_message(&bytes)));
        }
        let node = json!({"Name": n.name, "Id": n.engine_id, "Addr": n.key, "Ip": n.client.addr().host()});
        per_engine.push(
            bytes
                .split(|b| *b == b'\n')
                .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
                .map(|e| events::normalize(e, &node))
                .collect(),
        );
    }
    // Merged by time, each engine's own order kept (its clock may step back a little).
    let time = |e: &Value| e["timeNano"].as_u64().unwrap_or(0);
    let mut all = Vec::new();
    while let Some(next) =
        per_engine.iter().enumerate().filter_map(|(i, q)| q.front().map(|e| (time(e), i))).min().map(|(_, i)| i)
    {
        all.extend(per_engine[next].pop_front());
    }
    Ok(all)
}

/// An events window bound as dockerd reads it (`timetypes.ParseTimestamps`): seconds, with an
/// optional fraction after a dot, each a base-10 integer; none when empty.
fn event_time(value: Option<&str>) -> Result<Option<f64>, ApiError> {
    let Some(value) = value.filter(|v| !v.is_empty()) else { return Ok(None) };
    let parse_int = |text: &str| {
        text.parse::<i64>().map_err(|e| {
            let why = match e.kind() {
                std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => "value out of range",
                _ => "invalid syntax",
            };
            ApiError::new(http::StatusCode::INTERNAL_SERVER_ERROR, format!("strconv.ParseInt: parsing {text:?}: {why}"))
        })
    };
    let (secs, fraction) = match value.split_once('.') {
        Some((s, f)) => (parse_int(s)?, Some((parse_int(f)?, f.len()))),
        None => (parse_int(value)?, None),
    };
    let nanos = fraction.map_or(0.0, |(n, digits)| n as f64 * 10f64.powi(9 - digits as i32));
    Ok(Some(secs as f64 + nanos / 1e9))
}

/// `GET /events`: the merged stream. Past events (whenever `since` or `until` is given, as
/// dockerd replays its buffer then) come from the engines themselves; then live events
/// stream until `until`.
pub async fn events(state: &ApiState, ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let filters = ctx.query.filters()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    // dockerd reads `since`, then `until`, and answers 500 with Go's words for either.
    let _since = event_time(ctx.query.get("since"))?;
    let until = event_time(ctx.query.get("until"))?;
    let live = !until.is_some_and(|u| u <= now);
    // Absolute, so that reading the past first does not push the end of the window back.
    // A time past what the clock can hold has no deadline (checked: `Instant + d` panics).
    let deadline = until
        .and_then(|u| tokio::time::Instant::now().checked_add(Duration::try_from_secs_f64((u - now).max(0.0)).ok()?));
    let until_nanos = until.map(|u| (u * 1e9) as u64);
    // Subscribed before the past is read, so that nothing falls between the two.
    let sub = live.then(|| state.cluster.subscribe());
    let past = if !live {
        past_events(state, ctx, ctx.raw_query.as_deref().unwrap_or_default()).await?
    } else if ["since", "until"].iter().any(|k| ctx.query.get(k).is_some_and(|v| !v.is_empty())) {
        // dockerd replays its buffer whenever a window is given, from `since` or from the start.
        let mut overrides = std::collections::BTreeMap::new();
        overrides.insert("until", Some(format!("{now:.9}")));
        past_events(state, ctx, &ctx.query.encode_with(&overrides)).await?
    } else {
        Vec::new()
    };
    let seen_until = past.iter().filter_map(|e| e["timeNano"].as_u64()).max().unwrap_or(0);
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let dropped = state.metrics.events_dropped.clone();
    tokio::spawn(async move {
        for e in past {
            if tx.send(Bytes::from(e.to_string() + "\n")).await.is_err() {
                return;
            }
        }
        let Some(mut sub) = sub else { return };
        let live = async {
            loop {
                let event: Arc<Value> = match sub.recv().await {
                    Ok(e) => e,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        dropped.inc_by(n);
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                // Already sent as part of the past.
                let time = event["timeNano"].as_u64().unwrap_or(0);
                if time <= seen_until || until_nanos.is_some_and(|u| time > u) || !events::matches(&event, &filters) {
                    continue;
                }
                if tx.send(Bytes::from(event.to_string() + "\n")).await.is_err() {
                    return;
                }
            }
        };
        match deadline {
            // Events stamped before `until` may still be on their way from an engine.
            Some(at) => {
                let _ = tokio::time::timeout_at(at + EVENTS_UNTIL_GRACE, live).await;
            }
            None => live.await,
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(body::channel(rx))
        .unwrap_or_else(|_| Response::new(body::empty())))
}

/// `GET /metrics` in Prometheus text format.
pub async fn metrics(state: &ApiState) -> Response<Body> {
    let _scrape = state.metrics.scrape.lock().await;
    state.leadership.refresh_metrics();
    let healthy = &state.metrics.engine_healthy;
    // Rebuilt at each scrape, so that an engine gone from discovery leaves no series behind.
    healthy.reset();
    state.cluster.with_nodes(|nodes| {
        for n in nodes.values() {
            let up = n.health.state() == crate::cluster::NodeState::Healthy;
            healthy.with_label_values(&[&n.addr, n.name()]).set(i64::from(up));
        }
    });
    let held = &state.metrics.buffered_body_bytes;
    held.with_label_values(&["upload"]).set(i64::try_from(state.uploads.held_bytes()).unwrap_or(i64::MAX));
    held.with_label_values(&["json"]).set(i64::try_from(state.bodies.held_bytes()).unwrap_or(i64::MAX));
    let (content_type, buf) = crate::metrics::encode(&state.registry);
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(body::full(buf))
        .unwrap_or_else(|_| Response::new(body::empty()))
}

/// `docker login`: the password goes to one engine, which checks it with the registry; never to
/// an engine whose certificate the manager does not check (`--tls` without `--tlsverify`).
pub async fn login(state: &ApiState, ctx: &Ctx, req: Request<Body>) -> Result<Response<Body>, ApiError> {
    if state.config.tls.as_ref().is_some_and(|t| !t.verify) {
        return Err(ApiError::new(
            http::StatusCode::FORBIDDEN,
            "this manager runs with --tls without --tlsverify: it does not check engines' certificates, so it will not pass a password to one; log in with --tlsverify on the manager, or on an engine directly",
        ));
    }
    any_engine(state, ctx, req, "/auth").await
}

/// Sends the request to one healthy engine, chosen at random (`/auth`, `/images/search`).
pub async fn any_engine(
    state: &ApiState,
    ctx: &Ctx,
    req: Request<Body>,
    path: &str,
) -> Result<Response<Body>, ApiError> {
    use rand::seq::IndexedRandom;
    let nodes = state.cluster.healthy_nodes();
    let node =
        nodes.choose(&mut rand::rng()).ok_or_else(|| ApiError::internal("No healthy node available in the cluster"))?;
    let target = ctx.engine_path_same_query(node.api_version.as_deref(), path);
    proxy::forward(state, &node.client, req, &target).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_go_units() {
        assert_eq!(bytes_size(0.0), "0 B");
        assert_eq!(bytes_size(1024.0), "1 KiB");
        assert_eq!(bytes_size(15_440_000_000.0), "14.38 GiB");
        assert_eq!(bytes_size(536_870_912.0), "512 MiB");
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_471_563_437)), "2016-08-18T23:37:17Z");
    }

    #[test]
    fn node_names_sort_naturally() {
        let mut v = vec!["node-10", "node-2", "node-1"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["node-1", "node-2", "node-10"]);
    }

    #[test]
    fn event_times_parse_as_dockerd_parses_them() {
        assert_eq!(event_time(None).unwrap(), None);
        assert_eq!(event_time(Some("")).unwrap(), None);
        assert_eq!(event_time(Some("12")).unwrap(), Some(12.0));
        assert_eq!(event_time(Some("12.5")).unwrap(), Some(12.5));
        assert_eq!(event_time(Some("12.000000001")).unwrap(), Some(12.000000001));
        for (bad, words) in [
            ("inf", r#"strconv.ParseInt: parsing "inf": invalid syntax"#),
            ("1.", r#"strconv.ParseInt: parsing "": invalid syntax"#),
            ("99999999999999999999", r#"strconv.ParseInt: parsing "99999999999999999999": value out of range"#),
        ] {
            let e = event_time(Some(bad)).unwrap_err();
            assert_eq!((e.status.as_u16(), e.message.as_str()), (500, words), "{bad}");
        }
    }
}

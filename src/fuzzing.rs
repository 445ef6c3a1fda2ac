//! Entry points of the fuzz targets in `fuzz/` (libFuzzer through `cargo fuzz`), also replayed
//! over their corpora by `tests/fuzz_smoke.rs`: each takes arbitrary bytes and must return,
//! never panic or overflow, whatever they hold.

use serde_json::{json, Map, Value};

fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// A request target: the path's API version, the query, its filters as `docker ps` and
/// `docker events` read them.
pub fn request_target(data: &[u8]) {
    let target = text(data);
    let (path, query) = target.split_once('?').map_or((&*target, None), |(p, q)| (p, Some(q)));
    let _ = crate::api_version::split_path(path);
    let _ = crate::control::route_of(path);
    let _ = crate::control::token::token_of(path);
    let query = crate::api::query::Query::parse(query);
    if let Ok(filters) = query.filters() {
        let _ = crate::cluster::events::matches(
            &json!({"Type": "container", "Actor": {"Attributes": {"name": "web"}}}),
            &filters,
        );
        if let Ok(ps) = crate::api::containers::ps::Ps::parse(&query, filters) {
            let _ = (ps.reads_summary(), ps.before_since(), ps.ancestors());
        }
    }
}

/// A scheduling expression, as an environment variable and as the constraints label.
pub fn expression(data: &[u8]) {
    let text = text(data);
    let _ = crate::scheduler::Expr::parse(&text);
    let mut config = Map::new();
    config.insert("Env".into(), json!([format!("constraint:{text}"), format!("affinity:{text}")]));
    config.insert("Labels".into(), json!({"com.docker.swarm.constraints": text, "com.docker.swarm.affinities": text}));
    let _ = crate::orchestrator::spec::build_spec(&mut config);
}

/// A discovery URL (first line) with `--discovery-opt` pairs (the other lines), and the
/// address forms of engines and managers.
pub fn discovery_url(data: &[u8]) {
    let text = text(data);
    let mut lines = text.lines();
    let url = lines.next().unwrap_or_default();
    let options: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let _ = crate::discovery::DiscoveryUrl::parse(url, &options);
    let _ = crate::discovery::url::expand_entries(text.lines());
    let _ = crate::discovery::token::TokenUrl::parse(url);
    let _ = crate::transport::EngineAddr::parse(url);
    let _ = crate::config::validate_host_port(url);
}

/// Durations and times as flags and engines write them.
pub fn duration(data: &[u8]) {
    let text = text(data);
    let _ = crate::config::parse_duration(&text);
    let _ = crate::cluster::run_state::parse_rfc3339(&text);
}

/// A container create body, as the scheduler reads it.
pub fn create_body(data: &[u8]) {
    if let Ok(Value::Object(mut config)) = serde_json::from_slice(data) {
        if let Ok(spec) = crate::orchestrator::spec::build_spec(&mut config) {
            let _ = (spec.cpus, spec.memory);
        }
    }
}

/// A Raft RPC body, as a manager decodes it.
pub fn raft_rpc(data: &[u8]) {
    use crate::leadership::raft::{codec, NodeId, TypeConfig};
    use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
    let _ = codec::decode::<AppendEntriesRequest<TypeConfig>>(data);
    let _ = codec::decode::<VoteRequest<NodeId>>(data);
    let _ = codec::decode::<InstallSnapshotRequest<TypeConfig>>(data);
}

/// An engine's answers and event lines: info and version, inspect, list summaries, events.
pub fn engine_json(data: &[u8]) {
    let mut lines = Vec::new();
    let _ = crate::body::Lines::new(256).push(data, &mut lines);
    let Ok(v) = serde_json::from_slice::<Value>(data) else { return };
    let _ = crate::cluster::node::EngineInfo::from_json(&v, &v);
    let _ = crate::cluster::node::ContainerFacts::from_inspect(&v);
    let _ = crate::cluster::run_state::RunState::from_inspect(&v);
    let summary = crate::cluster::node::Summary::new(&v);
    let _ = (summary.parse(), summary.fields());
    let _ = crate::cluster::events::normalize(v, &json!({"Name": "node-1", "Addr": "127.0.0.1:1"}));
}

/// A fuzz target: its name and the function that takes the input.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, by name: what `fuzz/` and the corpus replay run.
pub const TARGETS: &[Target] = &[
    ("request_target", request_target),
    ("expression", expression),
    ("discovery_url", discovery_url),
    ("duration", duration),
    ("create_body", create_body),
    ("raft_rpc", raft_rpc),
    ("engine_json", engine_json),
];

//! `GET /containers/json`: every engine's containers from the cache, named `/node/name`,
//! filtered as an engine filters its own (`ps.rs`), with `State` and `Status` as of now.

use std::collections::{HashMap, HashSet};

use http::{HeaderMap, Method, Response, StatusCode};
use serde_json::{json, Value};

use super::ps::{Ps, Row};
use crate::api::error::ApiError;
use crate::api::router::Ctx;
use crate::api::system::json_response;
use crate::api::ApiState;
use crate::body::Body;
use crate::cluster::run_state::{now_nanos, RunState};
use crate::cluster::NodeState;
use crate::scheduler::ImageView;

/// One cached container, copied out of the node table so that no lock is held while filtering.
struct Entry {
    node: String,
    node_key: String,
    healthy: bool,
    summary: Value,
    run: RunState,
    created_ns: i128,
    ancestor_match: bool,
}

impl Entry {
    fn id(&self) -> &str {
        self.summary["Id"].as_str().unwrap_or_default()
    }
    fn names(&self) -> Vec<&str> {
        self.summary["Names"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
    }
    fn row(&self) -> Row<'_> {
        Row { node: &self.node, id: self.id(), names: self.names(), summary: &self.summary, run: &self.run, ancestor_match: self.ancestor_match }
    }
}

/// dockerd's `GetImage` on one node's images: a full ID, a `name[:tag]` (`latest` when no
/// tag is given), or a unique ID prefix.
fn resolve_image<'a>(images: &'a [ImageView], value: &str) -> Option<&'a ImageView> {
    let hex = value.strip_prefix("sha256:").unwrap_or(value);
    let is_hex = !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
    if is_hex && hex.len() == 64 {
        return images.iter().find(|i| i.id.trim_start_matches("sha256:") == hex);
    }
    if !value.contains('@') {
        let familiar = value.strip_prefix("docker.io/library/").or_else(|| value.strip_prefix("docker.io/")).unwrap_or(value);
        let last = familiar.rsplit('/').next().unwrap_or(familiar);
        let tagged = if last.contains(':') { familiar.to_string() } else { format!("{familiar}:latest") };
        if let Some(i) = images.iter().find(|i| i.repo_tags.contains(&tagged)) {
            return Some(i);
        }
    }
    if is_hex {
        let mut found = images.iter().filter(|i| i.id.trim_start_matches("sha256:").starts_with(hex));
        let first = found.next()?;
        return found.next().is_none().then_some(first);
    }
    None
}

/// The image IDs `ancestor` selects on one node: the named images and their descendants.
fn ancestor_ids(images: &[ImageView], values: &[&str]) -> HashSet<String> {
    let mut set: HashSet<String> = values.iter().filter_map(|v| resolve_image(images, v)).map(|i| i.id.clone()).collect();
    loop {
        let before = set.len();
        for i in images {
            if !i.parent.is_empty() && set.contains(&i.parent) {
                set.insert(i.id.clone());
            }
        }
        if set.len() == before {
            return set;
        }
    }
}

/// dockerd's `idOrNameFilter` over the cluster: a full ID or an exact name (with or without
/// its slash, or as `node/name`); anything else, or a name two nodes share, is its 500.
fn position(entries: &[Entry], value: &str) -> Result<usize, ApiError> {
    if let Some(i) = entries.iter().position(|e| e.id() == value) {
        return Ok(i);
    }
    let want = value.trim_start_matches('/');
    let hits: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.names().iter().any(|n| n.trim_start_matches('/') == want || format!("{}{n}", e.node) == want))
        .map(|(i, _)| i)
        .collect();
    match hits.as_slice() {
        [one] => Ok(*one),
        _ => Err(ApiError::internal(format!("no such container {value}"))),
    }
}

pub async fn list(state: &ApiState, ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let ps = Ps::parse(&ctx.query, ctx.query.filters()?)?;
    refresh_first(state, &ps).await;
    let ancestors = ps.ancestors();
    let mut entries: Vec<Entry> = Vec::new();
    state.cluster.with_nodes(|nodes| {
        for n in nodes.values() {
            let healthy = n.health.state() == NodeState::Healthy;
            let ids = ancestors.as_ref().map(|a| ancestor_ids(&n.images, a));
            for c in n.containers.values() {
                entries.push(Entry {
                    node: n.name().to_string(),
                    node_key: n.addr.clone(),
                    healthy,
                    ancestor_match: ids.as_ref().is_none_or(|ids| ids.contains(c.summary["ImageID"].as_str().unwrap_or_default())),
                    summary: c.summary.clone(),
                    run: c.facts.run.clone(),
                    created_ns: c.created_ns(),
                });
            }
        }
    });
    entries.sort_by_key(|e| std::cmp::Reverse(e.created_ns));
    let (before, since) = ps.before_since();
    let before = before.map(|b| position(&entries, b)).transpose()?;
    let since = since.map(|s| position(&entries, s)).transpose()?;
    // The name and ID pre-selection is per engine, as each engine makes its own.
    let mut preselected = vec![false; entries.len()];
    let mut by_node: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        by_node.entry(e.node_key.as_str()).or_default().push(i);
    }
    for idxs in by_node.values() {
        let rows: Vec<Row> = idxs.iter().map(|i| entries[*i].row()).collect();
        for (i, keep) in idxs.iter().zip(ps.preselect(&rows)) {
            preselected[*i] = keep;
        }
    }
    // A `before` container left out by the pre-selection is never met: nothing follows it.
    if before.is_some_and(|b| !preselected[b]) {
        return Ok(json_response(StatusCode::OK, &json!([])));
    }
    let now = now_nanos();
    let mut out: Vec<(String, Value)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if before.is_some_and(|b| i <= b) || !preselected[i] {
            continue;
        }
        if since == Some(i) {
            break;
        }
        if !e.healthy && !ps.all && ps.limit == 0 {
            continue;
        }
        if !ps.includes(&e.row()) {
            continue;
        }
        if ps.limit > 0 && out.len() == ps.limit {
            break;
        }
        let mut v = e.summary.clone();
        if let Some(names) = v["Names"].as_array_mut() {
            for name in names.iter_mut() {
                if let Some(s) = name.as_str() {
                    *name = Value::String(format!("/{}{s}", e.node));
                }
            }
        }
        v["State"] = json!(e.run.state());
        v["Status"] = json!(if e.healthy { e.run.status(now) } else { "Host Down".to_string() });
        out.push((e.node_key.clone(), v));
    }
    if ctx.query.bool("size") {
        add_sizes(state, ctx, &mut out).await;
    }
    Ok(json_response(StatusCode::OK, &Value::Array(out.into_iter().map(|(_, v)| v).collect())))
}

/// Classic Swarm 1.2.6's two ways to read engines afresh before a list: `--refresh-on-node-filter`
/// for the nodes a `node` filter names, `--container-name-refresh-filter` for every node when
/// a `name` filter equals it.
async fn refresh_first(state: &ApiState, ps: &Ps) {
    let config = &state.config;
    let nodes = ps.values("node");
    let every = !config.container_name_refresh_filter.is_empty() && ps.values("name").contains(&config.container_name_refresh_filter.as_str());
    let by_node = config.refresh_on_node_filter && !nodes.is_empty();
    if !every && !by_node {
        return;
    }
    for n in state.cluster.healthy_nodes() {
        if every || nodes.contains(&n.name.as_str()) {
            if let Err(e) = state.cluster.refresh_node(&n.key).await {
                tracing::debug!(node = %n.name, error = %e, "Refresh before a list failed.");
            }
        }
    }
}

/// `size=1`: the engines measure their containers' layers; the cache does not keep them.
async fn add_sizes(state: &ApiState, ctx: &Ctx, out: &mut [(String, Value)]) {
    let mut wanted: HashMap<String, Vec<String>> = HashMap::new();
    for (node, v) in out.iter() {
        wanted.entry(node.clone()).or_default().push(v["Id"].as_str().unwrap_or_default().to_string());
    }
    let mut sizes: HashMap<String, (Value, Value)> = HashMap::new();
    for n in state.cluster.nodes().into_iter().filter(|n| wanted.contains_key(&n.key)) {
        let filter = json!({"id": wanted[&n.key]}).to_string();
        let query = form_urlencoded::Serializer::new(String::new()).append_pair("all", "1").append_pair("size", "1").append_pair("filters", &filter).finish();
        let path = ctx.engine_path(n.api_version.as_deref(), "/containers/json", Some(&query));
        if let Ok((s, _, bytes)) = n.client.call(Method::GET, &path, None, &HeaderMap::new(), Some(n.client.timeout())).await {
            if s.is_success() {
                for c in serde_json::from_slice::<Vec<Value>>(&bytes).unwrap_or_default() {
                    sizes.insert(c["Id"].as_str().unwrap_or_default().to_string(), (c["SizeRw"].clone(), c["SizeRootFs"].clone()));
                }
            }
        }
    }
    for (_, v) in out.iter_mut() {
        if let Some((rw, root)) = sizes.get(v["Id"].as_str().unwrap_or_default()) {
            if !rw.is_null() {
                v["SizeRw"] = rw.clone();
            }
            if !root.is_null() {
                v["SizeRootFs"] = root.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, tags: &[&str], parent: &str) -> ImageView {
        ImageView { id: format!("sha256:{id}"), repo_tags: tags.iter().map(|t| t.to_string()).collect(), parent: parent.to_string() }
    }

    #[test]
    fn ancestors_resolve_like_dockerd_and_take_descendants() {
        let base = "a".repeat(64);
        let child = "b".repeat(64);
        let images = vec![image(&base, &["busybox:latest"], ""), image(&child, &["child:1"], &format!("sha256:{base}"))];
        for v in ["busybox", "busybox:latest", "docker.io/library/busybox", "aaaa", &base] {
            assert_eq!(ancestor_ids(&images, &[v]).len(), 2, "{v}");
        }
        assert_eq!(ancestor_ids(&images, &["child:1"]).len(), 1);
        assert!(ancestor_ids(&images, &["busybox:1", "nope"]).is_empty());
    }
}

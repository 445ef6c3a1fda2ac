//! `GET /containers/json`: every engine's containers from the cache, named `/node/name`,
//! filtered as an engine filters its own (`ps.rs`), with `State` and `Status` as of now.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, Method, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::{json, Value};

use super::ps::{Ps, Row};
use crate::api::error::ApiError;
use crate::api::router::Ctx;
use crate::api::system::json_response;
use crate::api::ApiState;
use crate::body::Body;
use crate::cluster::node::CachedContainer;
use crate::cluster::run_state::now_nanos;
use crate::cluster::NodeState;
use crate::scheduler::ImageView;

/// A node as a list reads it, taken out of the node table with its containers (shared, not
/// copied) so that no lock is held while sorting, filtering and writing.
struct ListedNode {
    name: String,
    key: String,
    healthy: bool,
}

/// One cached container in a list.
struct Entry {
    c: Arc<CachedContainer>,
    node: Arc<ListedNode>,
    /// Its names as the engine lists them (with the leading `/`), when filters read them.
    names: Vec<String>,
    /// The summary parsed, when the filters read its fields.
    parsed: Option<Value>,
    ancestor_match: bool,
}

impl Entry {
    fn id(&self) -> &str {
        &self.c.id
    }
    fn names(&self) -> Vec<&str> {
        self.names.iter().map(String::as_str).collect()
    }
    fn row(&self) -> Row<'_> {
        static NOTHING: Value = Value::Null;
        let summary = self.parsed.as_ref().unwrap_or(&NOTHING);
        Row {
            node: &self.node.name,
            id: self.id(),
            names: self.names(),
            summary,
            run: &self.c.facts.run,
            ancestor_match: self.ancestor_match,
        }
    }
    fn status(&self, now: i128) -> String {
        if self.node.healthy {
            self.c.facts.run.status(now)
        } else {
            "Host Down".to_string()
        }
    }
}

/// Writes one container as a list shows it: the engine's summary with `/node/name` names and
/// `State` and `Status` as of now, copied around the rewritten values, parsed only if its
/// keys are not plain.
fn write_listed(out: &mut Vec<u8>, e: &Entry, now: i128, scratch: &mut String) {
    let (summary, state, status) = (&e.c.summary, e.c.state(), e.status(now));
    let Some(at) = summary.rewritten() else {
        let listed = Listed { c: &e.c, node: &e.node.name, state, status };
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &listed);
        return;
    };
    let text = summary.text();
    let write_value = |out: &mut Vec<u8>, which: usize, scratch: &mut String| match which {
        0 => {
            out.push(b'[');
            for (i, name) in e.c.names.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                scratch.clear();
                scratch.push('/');
                scratch.push_str(&e.node.name);
                scratch.push('/');
                scratch.push_str(name);
                let _ = serde_json::to_writer(&mut *out, scratch.as_str());
            }
            out.push(b']');
        }
        1 => {
            let _ = serde_json::to_writer(&mut *out, state);
        }
        _ => {
            let _ = serde_json::to_writer(&mut *out, &status);
        }
    };
    let mut present: Vec<(usize, (u32, u32))> =
        [at.names, at.state, at.status].into_iter().enumerate().filter_map(|(i, r)| Some((i, r?))).collect();
    present.sort_unstable_by_key(|(_, (start, _))| *start);
    let mut pos = 0;
    for (which, (start, end)) in &present {
        out.extend_from_slice(&text.as_bytes()[pos..*start as usize]);
        write_value(out, *which, scratch);
        pos = *end as usize;
    }
    // The closing brace of a compact object is its last byte.
    let close = text.len() - 1;
    out.extend_from_slice(&text.as_bytes()[pos..close]);
    let mut empty = close <= 1;
    for (which, key, range) in [(0, "Names", at.names), (1, "State", at.state), (2, "Status", at.status)] {
        if range.is_none() {
            if !empty {
                out.push(b',');
            }
            empty = false;
            out.extend_from_slice(format!("\"{key}\":").as_bytes());
            write_value(out, which, scratch);
        }
    }
    out.push(b'}');
}

/// A summary whose keys are not plain, as a list writes it: parsed and rewritten.
struct Listed<'a> {
    c: &'a CachedContainer,
    node: &'a str,
    state: &'static str,
    status: String,
}

impl Serialize for Listed<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let parsed = self.c.summary.parse();
        let names = NodeNames { names: &self.c.names, node: self.node };
        let mut map = s.serialize_map(None)?;
        let (mut state_seen, mut status_seen, mut names_seen) = (false, false, false);
        for (key, value) in parsed.as_object().into_iter().flatten() {
            match key.as_str() {
                "Names" => {
                    names_seen = true;
                    map.serialize_entry(key, &names)?;
                }
                "State" => {
                    state_seen = true;
                    map.serialize_entry(key, self.state)?;
                }
                "Status" => {
                    status_seen = true;
                    map.serialize_entry(key, &self.status)?;
                }
                _ => map.serialize_entry(key, value)?,
            }
        }
        if !names_seen {
            map.serialize_entry("Names", &names)?;
        }
        if !state_seen {
            map.serialize_entry("State", self.state)?;
        }
        if !status_seen {
            map.serialize_entry("Status", &self.status)?;
        }
        map.end()
    }
}

/// A container's names (without their `/`) as swarm lists them: `/node/name`.
struct NodeNames<'a> {
    names: &'a [String],
    node: &'a str,
}

impl Serialize for NodeNames<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.names.len()))?;
        for name in self.names {
            seq.serialize_element(&format!("/{}/{name}", self.node))?;
        }
        seq.end()
    }
}

/// Containers written per chunk of a streamed list: bounds the bytes held at once.
const LIST_CHUNK: usize = 256;

/// The listed containers as a JSON array, written a chunk at a time as the client reads.
fn streamed(entries: Vec<Entry>, chosen: Vec<usize>, now: i128) -> Body {
    let chunks = futures_util::stream::iter((0..chosen.len().max(1)).step_by(LIST_CHUNK).map(move |start| {
        let mut out = Vec::with_capacity(LIST_CHUNK * 640);
        let mut scratch = String::new();
        out.push(if start == 0 { b'[' } else { b',' });
        for (k, i) in chosen[start..(start + LIST_CHUNK).min(chosen.len())].iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            write_listed(&mut out, &entries[*i], now, &mut scratch);
        }
        if start + LIST_CHUNK >= chosen.len() {
            out.extend_from_slice(b"]\n");
        }
        Ok::<_, crate::body::BoxError>(Frame::data(Bytes::from(out)))
    }));
    StreamBody::new(chunks).boxed_unsync()
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
        let familiar =
            value.strip_prefix("docker.io/library/").or_else(|| value.strip_prefix("docker.io/")).unwrap_or(value);
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
    let mut set: HashSet<String> =
        values.iter().filter_map(|v| resolve_image(images, v)).map(|i| i.id.clone()).collect();
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
        .filter(|(_, e)| {
            e.names().iter().any(|n| n.trim_start_matches('/') == want || format!("{}{n}", e.node.name) == want)
        })
        .map(|(i, _)| i)
        .collect();
    match hits.as_slice() {
        [one] => Ok(*one),
        _ => Err(ApiError::internal(format!("no such container {value}"))),
    }
}

/// Every listed entry, and the indexes of those the filters keep.
type Selected = (Vec<Entry>, Vec<usize>);
/// A node's part of a list: the node, the names it holds (when a filter reads them), its containers.
type Taken = (Arc<ListedNode>, Option<HashSet<String>>, Vec<Arc<CachedContainer>>);

/// The containers a list shows, newest first: every cached one, then the filters. `None`
/// when a `before` filter leaves nothing.
fn select(state: &ApiState, ps: &Ps) -> Result<Option<Selected>, ApiError> {
    let ancestors = ps.ancestors();
    let reads_summary = ps.reads_summary();
    // Under the node table's lock only long enough to take each node's entries by pointer.
    let taken: Vec<Taken> = state.cluster.with_nodes(|nodes| {
        nodes
            .values()
            .map(|n| {
                let node = ListedNode {
                    name: n.name().to_string(),
                    key: n.addr.clone(),
                    healthy: n.health.state() == NodeState::Healthy,
                };
                let ids = ancestors.as_ref().map(|a| ancestor_ids(&n.images, a));
                (Arc::new(node), ids, n.containers.values().cloned().collect())
            })
            .collect()
    });
    let filtered = !ps.unfiltered();
    let mut entries: Vec<Entry> = Vec::with_capacity(taken.iter().map(|(_, _, cs)| cs.len()).sum());
    for (node, ids, containers) in taken {
        for c in containers {
            let parsed = (reads_summary || ids.is_some()).then(|| c.summary.parse());
            let ancestor_match = ids.as_ref().is_none_or(|ids| {
                ids.contains(parsed.as_ref().and_then(|p| p["ImageID"].as_str()).unwrap_or_default())
            });
            let names = if filtered { c.names.iter().map(|n| format!("/{n}")).collect() } else { Vec::new() };
            entries.push(Entry { c, node: node.clone(), names, parsed, ancestor_match });
        }
    }
    entries.sort_by_cached_key(|e| std::cmp::Reverse(e.c.created_ns()));
    let (before, since) = ps.before_since();
    let before = before.map(|b| position(&entries, b)).transpose()?;
    let since = since.map(|s| position(&entries, s)).transpose()?;
    // The name and ID pre-selection is per engine, as each engine makes its own.
    let mut preselected = vec![true; entries.len()];
    if ps.has("name") || ps.has("id") {
        let mut by_node: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            by_node.entry(&e.node.key).or_default().push(i);
        }
        for idxs in by_node.values() {
            let rows: Vec<Row> = idxs.iter().map(|i| entries[*i].row()).collect();
            for (i, keep) in idxs.iter().zip(ps.preselect(&rows)) {
                preselected[*i] = keep;
            }
        }
    }
    // A `before` container left out by the pre-selection is never met: nothing follows it.
    if before.is_some_and(|b| !preselected[b]) {
        return Ok(None);
    }
    let mut chosen: Vec<usize> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if before.is_some_and(|b| i <= b) || !preselected[i] {
            continue;
        }
        if since == Some(i) {
            break;
        }
        if !e.node.healthy && !ps.all && ps.limit == 0 {
            continue;
        }
        let included = if filtered { ps.includes(&e.row()) } else { e.c.facts.run.running || ps.all || ps.limit > 0 };
        if !included {
            continue;
        }
        if ps.limit > 0 && chosen.len() == ps.limit {
            break;
        }
        chosen.push(i);
    }
    Ok(Some((entries, chosen)))
}

/// Runs `f`, a long synchronous computation, without holding up the tasks queued behind it on
/// this worker thread (a `/_ping` behind a list of 30,000 containers).
fn off_the_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

pub async fn list(state: &ApiState, ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let ps = Ps::parse(&ctx.query, ctx.query.filters()?)?;
    refresh_first(state, &ps).await;
    let Some((entries, chosen)) = off_the_runtime(|| select(state, &ps))? else {
        return Ok(json_response(StatusCode::OK, &json!([])));
    };
    let now = now_nanos();
    if !ctx.query.bool("size") {
        let body = streamed(entries, chosen, now);
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .unwrap_or_else(|_| Response::new(crate::body::empty())));
    }
    let mut scratch = String::new();
    let mut out: Vec<(String, Value)> = chosen
        .iter()
        .map(|i| {
            let e = &entries[*i];
            let mut text = Vec::new();
            write_listed(&mut text, e, now, &mut scratch);
            (e.node.key.clone(), serde_json::from_slice(&text).unwrap_or_default())
        })
        .collect();
    add_sizes(state, ctx, &mut out).await;
    Ok(json_response(StatusCode::OK, &Value::Array(out.into_iter().map(|(_, v)| v).collect())))
}

/// Classic Swarm 1.2.6's two ways to read engines afresh before a list: `--refresh-on-node-filter`
/// for the nodes a `node` filter names, `--container-name-refresh-filter` for every node when
/// a `name` filter equals it.
async fn refresh_first(state: &ApiState, ps: &Ps) {
    let config = &state.config;
    let nodes = ps.values("node");
    let every = !config.container_name_refresh_filter.is_empty()
        && ps.values("name").contains(&config.container_name_refresh_filter.as_str());
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
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("all", "1")
            .append_pair("size", "1")
            .append_pair("filters", &filter)
            .finish();
        let path = ctx.engine_path(n.api_version.as_deref(), "/containers/json", Some(&query));
        if let Ok((s, _, bytes)) =
            n.client.call(Method::GET, &path, None, &HeaderMap::new(), Some(n.client.timeout())).await
        {
            if s.is_success() {
                for c in serde_json::from_slice::<Vec<Value>>(&bytes).unwrap_or_default() {
                    sizes.insert(
                        c["Id"].as_str().unwrap_or_default().to_string(),
                        (c["SizeRw"].clone(), c["SizeRootFs"].clone()),
                    );
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
        ImageView {
            id: format!("sha256:{id}"),
            repo_tags: tags.iter().map(|t| t.to_string()).collect(),
            parent: parent.to_string(),
        }
    }

    fn written(summary: Value, healthy: bool) -> Value {
        let mut c = CachedContainer::new(summary, crate::cluster::node::ContainerFacts::default());
        c.set_run(|r| r.start());
        let node = Arc::new(ListedNode { name: "node-1".into(), key: "127.0.0.1:1".into(), healthy });
        let e = Entry { c: Arc::new(c), node, names: Vec::new(), parsed: None, ancestor_match: true };
        let mut out = Vec::new();
        write_listed(&mut out, &e, now_nanos(), &mut String::new());
        serde_json::from_slice(&out).expect("a list entry is JSON")
    }

    #[test]
    fn a_listed_summary_keeps_its_fields_and_rewrites_names_state_and_status() {
        let doc = json!({"Id": "abc", "Names": ["/web", "/db/alias"], "Image": "busybox", "State": "exited", "Status": "Exited (0)", "Labels": {"a": "\"1\""}});
        let mut want = doc.clone();
        want["Names"] = json!(["/node-1/web", "/node-1/db/alias"]);
        want["State"] = json!("running");
        want["Status"] = json!("Up Less than a second");
        assert_eq!(written(doc, true), want);
        // Missing fields are added; an unhealthy node's containers are "Host Down".
        let bare = written(json!({"Id": "abc"}), false);
        assert_eq!(bare, json!({"Id": "abc", "Names": [], "State": "running", "Status": "Host Down"}));
        assert_eq!(written(json!({}), true)["State"], "running");
    }

    #[test]
    fn ancestors_resolve_like_dockerd_and_take_descendants() {
        let base = "a".repeat(64);
        let child = "b".repeat(64);
        let images =
            vec![image(&base, &["busybox:latest"], ""), image(&child, &["child:1"], &format!("sha256:{base}"))];
        for v in ["busybox", "busybox:latest", "docker.io/library/busybox", "aaaa", &base] {
            assert_eq!(ancestor_ids(&images, &[v]).len(), 2, "{v}");
        }
        assert_eq!(ancestor_ids(&images, &["child:1"]).len(), 1);
        assert!(ancestor_ids(&images, &["busybox:1", "nope"]).is_empty());
    }
}

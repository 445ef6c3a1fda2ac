//! `docker ps` filters as dockerd 20.10 reads them (`daemon/list.go`), applied to the cache:
//! the same validation and messages, the same name/ID pre-selection, the same walk for
//! `before`, `since` and `limit`, and per key the same matching. Several values of one key
//! match any of them; several keys must all match, and so must several `label` values.

use std::collections::HashSet;

use regex::Regex;
use serde_json::Value;

use crate::api::error::ApiError;
use crate::api::query::filter_values;
use crate::cluster::run_state::RunState;

/// The keys dockerd accepts, and swarm's `node`.
const ACCEPTED: &[&str] = &[
    "ancestor",
    "before",
    "exited",
    "id",
    "isolation",
    "label",
    "name",
    "status",
    "health",
    "since",
    "volume",
    "network",
    "is-task",
    "publish",
    "expose",
    "node",
];
const STATES: &[&str] = &["created", "restarting", "running", "removing", "paused", "exited", "dead"];
const HEALTH: &[&str] = &["starting", "healthy", "unhealthy", "none"];

/// One container as `ps` sees it.
pub struct Row<'a> {
    pub node: &'a str,
    pub id: &'a str,
    /// Every name the engine lists (link aliases too), with the leading `/`.
    pub names: Vec<&'a str>,
    pub summary: &'a Value,
    pub run: &'a RunState,
    /// The image IDs that `ancestor` selects on this container's node.
    pub ancestor_match: bool,
}

impl Row<'_> {
    /// The primary name: the one without a link's `/parent/alias` form.
    fn name(&self) -> &str {
        self.names.iter().find(|n| n.matches('/').count() == 1).or(self.names.first()).copied().unwrap_or("")
    }
}

/// The request's filters and options, validated.
pub struct Ps {
    pub all: bool,
    pub limit: usize,
    filters: Vec<(String, Vec<String>)>,
    exited: Vec<i64>,
    is_task: Option<bool>,
    publish: HashSet<String>,
    expose: HashSet<String>,
    name_res: Vec<Option<Regex>>,
    id_res: Vec<Option<Regex>>,
    status_res: Vec<Option<Regex>>,
}

/// `strconv` messages for port numbers.
fn parse_port(p: &str) -> Result<u64, String> {
    match p.parse::<u64>() {
        Ok(n) if n <= u64::from(u16::MAX) => Ok(n),
        Ok(_) => Err(format!("strconv.ParseUint: parsing \"{p}\": value out of range")),
        Err(_) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => {
            Err(format!("strconv.ParseUint: parsing \"{p}\": value out of range"))
        }
        Err(_) => Err(format!("strconv.ParseUint: parsing \"{p}\": invalid syntax")),
    }
}

/// dockerd's `portOp`: `port[/proto]` or `start-end[/proto]` into `port/proto` keys.
fn port_set(key: &str, values: &[&str]) -> Result<HashSet<String>, ApiError> {
    let mut out = HashSet::new();
    for value in values {
        if value.contains(':') {
            return Err(ApiError::internal(format!("filter for '{key}' should not contain ':': {value}")));
        }
        let parts: Vec<&str> = value.split('/').collect();
        let (proto, port) = if value.is_empty() || parts[0].is_empty() {
            ("", "")
        } else if parts.len() == 1 || parts[1].is_empty() {
            ("tcp", parts[0])
        } else {
            (parts[1], parts[0])
        };
        let fail = |e: String| ApiError::internal(format!("error while looking up for {key} {value}: {e}"));
        let (start, end) = if port.is_empty() {
            return Err(fail("Empty string specified for ports.".into()));
        } else if let Some((a, b)) = port.split_once('-') {
            let (a, b) = (parse_port(a).map_err(fail)?, parse_port(b.split('-').next().unwrap_or(b)).map_err(fail)?);
            if b < a {
                return Err(fail(format!("Invalid range specified for the Port: {port}")));
            }
            (a, b)
        } else {
            let p = parse_port(port).map_err(fail)?;
            (p, p)
        };
        for p in start..=end {
            out.insert(format!("{p}/{}", proto.to_ascii_lowercase()));
        }
    }
    Ok(out)
}

/// dockerd's `Args.Match`: no values match everything; an exact value, else any value as a
/// regular expression (one that does not compile matches nothing).
fn matches_any(values: &[&str], res: &[Option<Regex>], source: &str) -> bool {
    values.is_empty() || values.contains(&source) || res.iter().flatten().any(|re| re.is_match(source))
}

impl Ps {
    /// Validates as dockerd's router and `foldFilter` do, in their order.
    pub fn parse(query: &crate::api::query::Query, filters: Vec<(String, Vec<String>)>) -> Result<Ps, ApiError> {
        let limit = match query.get("limit").filter(|l| !l.is_empty()) {
            Some(l) => l
                .parse::<i64>()
                .map_err(|_| ApiError::internal(format!("strconv.Atoi: parsing \"{l}\": invalid syntax")))?,
            None => 0,
        };
        if let Some((bad, _)) = filters.iter().find(|(k, _)| !ACCEPTED.contains(&k.as_str())) {
            return Err(ApiError::bad_request(format!("Invalid filter '{bad}'")));
        }
        let values = |k: &str| filter_values(&filters, k);
        let mut exited = Vec::new();
        for v in values("exited") {
            exited.push(
                v.parse::<i64>()
                    .map_err(|_| ApiError::internal(format!("strconv.Atoi: parsing \"{v}\": invalid syntax")))?,
            );
        }
        let mut all = query.bool("all");
        for v in values("status") {
            if !STATES.contains(&v) {
                return Err(ApiError::bad_request(format!("Invalid filter 'status={v}'")));
            }
            all = true;
        }
        let is_task = if filters.iter().any(|(k, _)| k == "is-task") {
            let vs = values("is-task");
            if vs.contains(&"true") {
                Some(true)
            } else if vs.contains(&"false") {
                Some(false)
            } else {
                return Err(ApiError::bad_request(format!("Invalid filter 'is-task=[{}]'", vs.join(" "))));
            }
        } else {
            None
        };
        for v in values("health") {
            if !HEALTH.contains(&v) {
                return Err(ApiError::bad_request(format!("Unrecognised filter value for health: {v}")));
            }
        }
        let publish = port_set("publish", &values("publish"))?;
        let expose = port_set("expose", &values("expose"))?;
        let compile = |k: &str| values(k).iter().map(|v| crate::scheduler::client_regex(v).ok()).collect::<Vec<_>>();
        Ok(Ps {
            all,
            limit: usize::try_from(limit).unwrap_or(0),
            name_res: compile("name"),
            id_res: compile("id"),
            status_res: compile("status"),
            exited,
            is_task,
            publish,
            expose,
            filters,
        })
    }

    /// The values given for `key`.
    pub fn values(&self, key: &str) -> Vec<&str> {
        filter_values(&self.filters, key)
    }

    /// Whether no filter was given: [`Ps::includes`] then reads only the run state.
    pub fn unfiltered(&self) -> bool {
        self.filters.is_empty()
    }

    /// Whether a `key` filter was given.
    pub fn has(&self, key: &str) -> bool {
        self.filters.iter().any(|(k, _)| k == key)
    }

    /// The `before` and `since` values (the last of several, as one engine's walk may take).
    pub fn before_since(&self) -> (Option<&str>, Option<&str>) {
        (self.values("before").last().copied(), self.values("since").last().copied())
    }

    /// Whether `ancestor` is asked for, and its values.
    pub fn ancestors(&self) -> Option<Vec<&str>> {
        self.has("ancestor").then(|| self.values("ancestor"))
    }

    /// dockerd's `filterByNameIDMatches` for one node's rows: with `name` or `id` filters,
    /// only the rows they pre-select (IDs by unique prefix on that node).
    pub fn preselect(&self, rows: &[Row]) -> Vec<bool> {
        let (names, ids) = (self.values("name"), self.values("id"));
        if names.is_empty() && ids.is_empty() {
            return vec![true; rows.len()];
        }
        let mut picked: Vec<bool> = rows
            .iter()
            .map(|r| {
                ids.iter().any(|want| {
                    !want.is_empty()
                        && r.id.starts_with(want)
                        && rows.iter().filter(|o| o.id.starts_with(want)).count() == 1
                })
            })
            .collect();
        if !names.is_empty() {
            for (i, r) in rows.iter().enumerate() {
                if !ids.is_empty() && !picked[i] {
                    continue;
                }
                if r.names.iter().any(|n| self.name_matches(n, r.node)) {
                    picked[i] = true;
                }
            }
        }
        picked
    }

    fn name_matches(&self, name: &str, node: &str) -> bool {
        let names = self.values("name");
        let short = name.trim_start_matches('/');
        matches_any(&names, &self.name_res, name)
            || matches_any(&names, &self.name_res, short)
            // swarm's own form: `node/name`.
            || names.iter().any(|w| w.trim_start_matches('/') == format!("{node}/{short}"))
    }

    /// Whether [`Ps::includes`] reads a row's summary (labels, mounts, networks, ports): a
    /// list parses the summaries only then.
    pub fn reads_summary(&self) -> bool {
        self.has("label")
            || self.has("volume")
            || self.has("network")
            || !self.publish.is_empty()
            || !self.expose.is_empty()
    }

    /// `includeContainerInList` past the walk's `before`, `since` and `limit`.
    pub fn includes(&self, r: &Row) -> bool {
        if !r.run.running && !self.all && self.limit == 0 {
            return false;
        }
        if !self.name_matches(r.name(), r.node) {
            return false;
        }
        if !matches_any(&self.values("id"), &self.id_res, r.id) {
            return false;
        }
        if self.is_task == Some(true) {
            // No engine behind swarm runs swarm-mode tasks.
            return false;
        }
        let labels = &r.summary["Labels"];
        for want in self.values("label") {
            let (k, v) = match want.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (want, None),
            };
            match labels.get(k).and_then(Value::as_str) {
                None => return false,
                Some(have) if v.is_some_and(|v| v != have) => return false,
                _ => {}
            }
        }
        let exit_seen = !r.run.running && r.run.started_at.is_some();
        let exited_ok = self.exited.is_empty() || (exit_seen && self.exited.contains(&r.run.exit_code));
        if !exited_ok {
            return false;
        }
        if !matches_any(&self.values("status"), &self.status_res, r.run.state()) {
            return false;
        }
        let health = self.values("health");
        if !health.is_empty() && !health.contains(&r.run.health_filter_value()) {
            return false;
        }
        if self.has("volume") && !self.volume_matches(r.summary) {
            return false;
        }
        if self.has("ancestor") && !r.ancestor_match {
            return false;
        }
        if self.has("network") && !self.network_matches(r.summary) {
            return false;
        }
        if (!self.publish.is_empty() || !self.expose.is_empty()) && !self.port_matches(r.summary) {
            return false;
        }
        let nodes = self.values("node");
        if !nodes.is_empty() && !nodes.iter().any(|want| *want == r.node || glob_match(want, r.node)) {
            return false;
        }
        true
    }

    fn volume_matches(&self, summary: &Value) -> bool {
        let mounts = summary["Mounts"].as_array().map(Vec::as_slice).unwrap_or_default();
        self.values("volume").iter().any(|want| {
            mounts.iter().any(|m| {
                let name = m["Name"].as_str().unwrap_or_default();
                let by_name = if name.is_empty() { m["Source"].as_str().unwrap_or_default() } else { name };
                m["Destination"].as_str().is_some_and(|d| !d.is_empty() && d == *want) || by_name == *want
            })
        })
    }

    fn network_matches(&self, summary: &Value) -> bool {
        let Some(nets) = summary["NetworkSettings"]["Networks"].as_object() else { return false };
        self.values("network").iter().any(|want| {
            nets.contains_key(*want)
                || nets.values().any(|n| n["NetworkID"].as_str().is_some_and(|id| id.starts_with(want)))
        })
    }

    fn port_matches(&self, summary: &Value) -> bool {
        summary["Ports"].as_array().into_iter().flatten().any(|p| {
            let proto = p["Type"].as_str().unwrap_or_default();
            self.publish.contains(&format!("{}/{proto}", p["PublicPort"].as_u64().unwrap_or(0)))
                || self.expose.contains(&format!("{}/{proto}", p["PrivatePort"].as_u64().unwrap_or(0)))
        })
    }
}

/// `node-*` globs for swarm's `node` filter: `*` stands for any run of characters, all
/// else for itself. Matched directly: a regex per listed container was the cost before.
fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let middle: Vec<&str> = parts.collect();
    let Some((last, middle)) = middle.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_globs_match_like_the_regex_they_replace() {
        for (pattern, text, want) in [
            ("node-*", "node-1", true),
            ("node-*", "node-", true),
            ("node-*", "other", false),
            ("*-1", "node-1", true),
            ("n*e-*", "node-12", true),
            ("node-1", "node-1", true),
            ("node-1", "node-12", false),
            ("a*a", "a", false),
            ("*", "", true),
            ("n.de", "node", false),
        ] {
            assert_eq!(glob_match(pattern, text), want, "{pattern} {text}");
        }
    }
    use crate::api::query::Query;
    use serde_json::json;

    fn ps(q: &str) -> Result<Ps, ApiError> {
        let q = Query::parse(Some(q));
        let f = q.filters()?;
        Ps::parse(&q, f)
    }

    fn row<'a>(summary: &'a Value, run: &'a RunState) -> Row<'a> {
        Row {
            node: "node-1",
            id: summary["Id"].as_str().unwrap(),
            names: vec!["/web"],
            summary,
            run,
            ancestor_match: true,
        }
    }

    #[test]
    fn every_label_must_match() {
        let run = RunState { running: true, started_at: Some(1), ..Default::default() };
        let both = json!({"Id":"a1","Labels":{"x":"1","y":"True"}});
        let one = json!({"Id":"a2","Labels":{"x":"1"}});
        let p = ps("filters=%7B%22label%22%3A%5B%22x%3D1%22%2C%22y%3DTrue%22%5D%7D").unwrap();
        assert!(p.includes(&row(&both, &run)));
        assert!(!p.includes(&row(&one, &run)));
    }

    #[test]
    fn bad_values_get_dockerd_messages() {
        let msg = |q: &str| ps(q).err().map(|e| e.message).unwrap_or_default();
        assert!(msg("filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D").contains("Invalid filter 'bogus'"));
        assert!(msg("filters=%7B%22status%22%3A%5B%22x%22%5D%7D").contains("Invalid filter 'status=x'"));
        assert!(msg("filters=%7B%22publish%22%3A%5B%22a%3Ab%22%5D%7D").contains("should not contain ':'"));
        assert!(msg("limit=x").contains("strconv.Atoi"));
    }

    #[test]
    fn port_ranges_expand() {
        let set = port_set("expose", &["8990-8992/udp", "80"]).unwrap();
        assert!(set.contains("8991/udp") && set.contains("80/tcp") && set.len() == 4);
        assert!(port_set("publish", &["y"]).is_err());
    }
}

//! One engine as the manager caches it: its info, containers and images, read from the
//! engine's own JSON so that unknown fields pass through untouched.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use std::time::{Instant, SystemTime};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::health::Health;
use super::keyed::Keyed;
use super::run_state::RunState;
use super::wire;
use crate::scheduler::{ContainerView, ImageView, NodeFacts, NodeLabels};
use crate::transport::EngineClient;

/// Swarm's own labels on containers.
pub mod labels {
    /// The cluster-wide container identity, kept across reschedules.
    pub const SWARM_ID: &str = "com.docker.swarm.id";
    /// The leadership term of the manager that created the container (replicated managers).
    pub const TERM: &str = "com.docker.swarm.term";
    /// The advertise address of the manager that created it (replicated managers).
    pub const CREATED_BY: &str = "com.docker.swarm.created-by";
    /// JSON list of constraint expressions.
    pub const CONSTRAINTS: &str = "com.docker.swarm.constraints";
    /// JSON list of affinity expressions.
    pub const AFFINITIES: &str = "com.docker.swarm.affinities";
    /// JSON list of whitelist expressions.
    pub const WHITELISTS: &str = "com.docker.swarm.whitelists";
    /// JSON list of reschedule policies.
    pub const RESCHEDULE_POLICIES: &str = "com.docker.swarm.reschedule-policies";
}

/// One shared copy of each label string seen, for the life of the process (label names and
/// values are few and small; engines come and go with the same ones).
fn intern(text: &str) -> Arc<str> {
    static STRINGS: OnceLock<Mutex<HashSet<Arc<str>>>> = OnceLock::new();
    let mut set = STRINGS.get_or_init(Default::default).lock();
    if let Some(s) = set.get(text) {
        return s.clone();
    }
    let s: Arc<str> = Arc::from(text);
    set.insert(s.clone());
    s
}

/// What `/info` and `/version` said of the engine.
#[derive(Debug, Clone, Default)]
pub struct EngineInfo {
    /// `info.ID`.
    pub id: String,
    /// `info.Name`: the node's name.
    pub name: String,
    /// Engine labels plus built-ins (`storagedriver`, `kernelversion`, `operatingsystem`, `ostype`).
    pub labels: NodeLabels,
    /// CPUs.
    pub ncpu: i64,
    /// Memory, bytes.
    pub mem_total: i64,
    /// Engine version, e.g. `20.10.24+dfsg1`.
    pub server_version: String,
    /// Highest API version the engine speaks, e.g. `1.41`.
    pub api_version: String,
}

impl EngineInfo {
    /// Reads `/info` and `/version`; engine labels never override built-ins, and a `node` label
    /// is ignored, as in classic Swarm.
    pub fn from_json(info: &Value, version: &Value) -> EngineInfo {
        let (info, version): (wire::Info, wire::Version) = (wire::read(info), wire::read(version));
        let mut labels = NodeLabels::new();
        for l in info.labels.iter().flatten() {
            if let Some((k, v)) = l.split_once('=') {
                if k != "node" {
                    labels.insert(intern(k), intern(v));
                }
            }
        }
        let builtins = [
            ("storagedriver", &info.driver),
            ("kernelversion", &info.kernel_version),
            ("operatingsystem", &info.operating_system),
            ("ostype", &info.os_type),
        ];
        for (key, value) in builtins {
            labels.insert(intern(key), intern(value.as_deref().unwrap_or_default()));
        }
        EngineInfo {
            id: info.id.unwrap_or_default(),
            name: info.name.unwrap_or_default(),
            labels,
            ncpu: info.ncpu.unwrap_or(0),
            mem_total: info.mem_total.unwrap_or(0),
            server_version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
        }
    }
}

/// Resource and port facts that only `inspect` tells.
#[derive(Debug, Clone, Default)]
pub struct ContainerFacts {
    /// `HostConfig.Memory`.
    pub memory: i64,
    /// `HostConfig.CpuShares`.
    pub cpu_shares: i64,
    /// `HostConfig.NanoCpus`.
    pub nano_cpus: i64,
    /// Bridge-mode bindings from `HostConfig.PortBindings`.
    pub host_ports: Vec<(String, u16)>,
    /// `Config.ExposedPorts` of a host-network container.
    pub host_mode_ports: Vec<String>,
    /// Nanoseconds within the creation second (`ps` orders by the exact creation time).
    pub created_subsec_ns: u32,
    /// Running, paused, exit code, start and finish times, health.
    pub run: RunState,
    /// For a container with the `on-node-failure` policy: the create body that recreates it
    /// elsewhere (its Config with its HostConfig, labels and swarm ID included).
    pub recreate: Option<Arc<Value>>,
}

impl ContainerFacts {
    /// Reads an inspect document.
    pub fn from_inspect(inspect: &Value) -> ContainerFacts {
        let hc: wire::HostConfig = wire::read(&inspect["HostConfig"]);
        let host_mode_ports = if hc.host_network() {
            inspect["Config"]["ExposedPorts"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
        } else {
            Vec::new()
        };
        ContainerFacts {
            recreate: reschedulable(&inspect["Config"]["Labels"]).then(|| Arc::new(recreate_body(inspect))),
            created_subsec_ns: inspect["Created"].as_str().map_or(0, subsec_nanos),
            run: RunState::from_inspect(inspect),
            memory: hc.memory.unwrap_or(0),
            cpu_shares: hc.cpu_shares.unwrap_or(0),
            nano_cpus: hc.nano_cpus.unwrap_or(0),
            host_ports: hc.fixed_host_ports(),
            host_mode_ports,
        }
    }

    /// CPUs reserved, classic reading: shares count CPUs (`shares * NCPU / 1024`), and
    /// `--cpus` counts whole CPUs rounded up.
    pub fn cpus(&self, ncpu: i64) -> i64 {
        if self.nano_cpus > 0 {
            return self.nano_cpus.saturating_add(999_999_999) / 1_000_000_000;
        }
        self.cpu_shares.saturating_mul(ncpu) / 1024
    }
}

/// Whether labels carry the `on-node-failure` reschedule policy.
pub fn reschedulable(labels: &Value) -> bool {
    labels[labels::RESCHEDULE_POLICIES]
        .as_str()
        .and_then(|p| serde_json::from_str::<Vec<String>>(p).ok())
        .is_some_and(|p| p.iter().any(|p| p == "on-node-failure"))
}

/// A create body from an inspect document (or from a create body seen as one): Config plus
/// HostConfig, without what the engine generated (the hostname from the ID).
fn recreate_body(inspect: &Value) -> Value {
    let mut body = inspect["Config"].as_object().cloned().unwrap_or_default();
    let id = inspect["Id"].as_str().unwrap_or_default();
    if body.get("Hostname").and_then(Value::as_str).is_some_and(|h| !id.is_empty() && id.starts_with(h)) {
        body.remove("Hostname");
    }
    body.insert("HostConfig".into(), inspect["HostConfig"].clone());
    Value::Object(body)
}

/// The fraction of an RFC 3339 time (`…:29.1234567Z`) as nanoseconds.
fn subsec_nanos(time: &str) -> u32 {
    let Some((_, frac)) = time.split_once('.') else { return 0 };
    let digits: String = frac.chars().take_while(char::is_ascii_digit).take(9).collect();
    format!("{digits:0<9}").parse().unwrap_or(0)
}

/// An engine's `/containers/json` entry, kept as the text it came as: parsed, a summary takes
/// about eight times the memory (4 KB against 480 bytes for a bare one), and only lists with
/// some filters, and the scheduler's view once per change, read its fields.
#[derive(Debug, Clone)]
pub struct Summary {
    text: Box<str>,
    /// Where the values of the fields a list rewrites are in `text`, found once so that a list
    /// copies the text around them instead of parsing it; `None` if its keys are not plain.
    rewritten: Option<Rewritten>,
}

/// Byte ranges of the values of `Names`, `State` and `Status` in a summary's text.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rewritten {
    pub names: Option<(u32, u32)>,
    pub state: Option<(u32, u32)>,
    pub status: Option<(u32, u32)>,
}

impl Summary {
    /// Keeps `doc`'s text.
    pub fn new(doc: &Value) -> Summary {
        Summary::from_text(doc.to_string())
    }

    /// Keeps `text`, a summary as an engine wrote it.
    pub(crate) fn from_text(text: String) -> Summary {
        let mut s = Summary { text: text.into_boxed_str(), rewritten: None };
        s.rewritten = s.fields().map(|fields| {
            let base = s.text.as_ptr() as usize;
            let mut r = Rewritten::default();
            for (key, raw) in fields {
                let start = raw.get().as_ptr() as usize - base;
                let range = Some((start as u32, (start + raw.get().len()) as u32));
                match key {
                    "Names" => r.names = range,
                    "State" => r.state = range,
                    "Status" => r.status = range,
                    _ => {}
                }
            }
            r
        });
        s
    }

    /// The text, as compact JSON.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Where the fields a list rewrites are (see [`Rewritten`]).
    pub fn rewritten(&self) -> Option<Rewritten> {
        self.rewritten
    }

    /// The fields the cache keeps apart, read in one pass.
    pub fn head(&self) -> Head {
        serde_json::from_str(&self.text).unwrap_or_else(|_| Head::lenient(&self.parse()))
    }

    /// The document, parsed.
    pub fn parse(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    /// Its top-level fields in order, each value as its raw text: what a list writes out
    /// without building the document. `None` if it is not an object with plain keys.
    pub fn fields(&self) -> Option<Vec<(&str, &serde_json::value::RawValue)>> {
        struct Fields<'a>(Vec<(&'a str, &'a serde_json::value::RawValue)>);
        impl<'de> serde::Deserialize<'de> for Fields<'de> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Visit;
                impl<'de> serde::de::Visitor<'de> for Visit {
                    type Value = Fields<'de>;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("a JSON object")
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                        let mut out = Vec::new();
                        while let Some(entry) = map.next_entry::<&'de str, &'de serde_json::value::RawValue>()? {
                            out.push(entry);
                        }
                        Ok(Fields(out))
                    }
                }
                d.deserialize_map(Visit)
            }
        }
        serde_json::from_str::<Fields>(&self.text).ok().map(|f| f.0)
    }
}

/// A summary's fields that the cache keeps apart from its text.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Head {
    #[serde(rename = "Id", default)]
    pub id: Option<String>,
    #[serde(rename = "Names", default)]
    names: Option<Vec<String>>,
    #[serde(rename = "Image", default)]
    image: Option<String>,
    #[serde(rename = "Created", default)]
    created: Option<i64>,
    #[serde(rename = "State", default)]
    pub state: Option<String>,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

impl Head {
    /// Reads a summary whose fields are not all of the usual types (a label that is not a
    /// string), keeping what is.
    fn lenient(doc: &Value) -> Head {
        let labels = doc["Labels"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect());
        Head {
            id: doc["Id"].as_str().map(str::to_string),
            names: doc["Names"].as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()),
            image: doc["Image"].as_str().map(str::to_string),
            created: doc["Created"].as_i64(),
            state: doc["State"].as_str().map(str::to_string),
            labels,
        }
    }
}

/// A container in the cache.
#[derive(Debug, Clone)]
pub struct CachedContainer {
    /// The engine's `/containers/json` entry, unchanged (its `Names` and `State` are read
    /// from the fields below); shared with lists being written.
    pub summary: Arc<Summary>,
    /// The summary's `Image`.
    pub image: String,
    /// Full ID.
    pub id: String,
    /// Names without the leading slash.
    pub names: Vec<String>,
    /// `com.docker.swarm.id`, when swarm created it.
    pub swarm_id: Option<String>,
    /// The summary's `Created` (seconds), kept apart: lists sort by it without reading
    /// every summary.
    pub created_secs: i64,
    /// Inspect-only facts.
    pub facts: ContainerFacts,
    /// When this entry was written, so that a slower full refresh does not undo it.
    pub written: Instant,
    /// Made from a create request, not read from the engine: any read replaces it, until a
    /// change through the manager (a start) patches it.
    pub placeholder: bool,
    /// The filters' view, built once (its labels are parsed out of the summary): a node's
    /// scheduler facts, rebuilt after each change to the node, share it.
    pub view: Arc<ContainerView>,
}

impl CachedContainer {
    /// Builds an entry from a list summary and the facts of an inspect.
    pub fn new(summary: Value, facts: ContainerFacts) -> CachedContainer {
        let summary = Summary::new(&summary);
        let head = summary.head();
        CachedContainer::from_parts(summary, head, facts)
    }

    /// Builds an entry from a summary as the engine wrote it, and its [`Summary::head`].
    pub fn from_parts(summary: Summary, head: Head, facts: ContainerFacts) -> CachedContainer {
        let id = head.id.unwrap_or_default();
        let names: Vec<String> =
            head.names.unwrap_or_default().iter().map(|n| n.trim_start_matches('/').to_string()).collect();
        let labels = head.labels.unwrap_or_default();
        let swarm_id = labels.get(labels::SWARM_ID).cloned();
        let image = head.image.unwrap_or_default();
        let view = Arc::new(ContainerView {
            id: id.clone(),
            names: names.clone(),
            image: image.clone(),
            labels,
            host_ports: facts.host_ports.clone(),
            host_mode_ports: facts.host_mode_ports.clone(),
        });
        let created_secs = head.created.unwrap_or(0);
        CachedContainer {
            summary: Arc::new(summary),
            image,
            id,
            names,
            swarm_id,
            created_secs,
            facts,
            written: Instant::now(),
            placeholder: false,
            view,
        }
    }

    /// `running`, `exited`, ...: dockerd's state string of the run state.
    pub fn state(&self) -> &'static str {
        self.facts.run.state()
    }

    /// Changes the run state (a start, a stop, an exit seen by `wait`).
    pub fn set_run(&mut self, change: impl FnOnce(&mut RunState)) {
        change(&mut self.facts.run);
        self.placeholder = false;
    }

    /// Renames (the engine's own `rename` event re-reads the rest).
    pub fn rename(&mut self, name: &str) {
        self.names = vec![name.to_string()];
        Arc::make_mut(&mut self.view).names = self.names.clone();
    }

    /// Creation time in nanoseconds since the epoch.
    pub fn created_ns(&self) -> i128 {
        i128::from(self.created_secs) * 1_000_000_000 + i128::from(self.facts.created_subsec_ns)
    }

    /// The primary name (without links' `a/b` aliases).
    pub fn name(&self) -> &str {
        self.names.iter().find(|n| !n.contains('/')).or(self.names.first()).map_or("", String::as_str)
    }
}

/// Reads `/images/json` into the filters' view.
pub fn images_from_json(list: &Value) -> Vec<ImageView> {
    let list: Vec<wire::ImageSummary> = wire::read(list);
    list.into_iter()
        .map(|i| ImageView {
            id: i.id.unwrap_or_default(),
            repo_tags: i.repo_tags.unwrap_or_default(),
            parent: i.parent_id.unwrap_or_default(),
        })
        .collect()
}

/// One engine.
#[derive(Debug)]
pub struct Node {
    /// Discovery address: the node's key.
    pub addr: String,
    /// Its client.
    pub client: EngineClient,
    /// Health accounting.
    pub health: Health,
    /// Set once validated.
    pub info: Option<EngineInfo>,
    /// Containers by full ID; shared with lists being written (a change copies the entry).
    pub containers: HashMap<String, Arc<CachedContainer>>,
    /// When containers left the cache, so that a full refresh listed before their removal
    /// does not bring them back.
    pub forgotten: HashMap<String, Instant>,
    /// Images.
    pub images: Arc<Vec<ImageView>>,
    /// Last full refresh.
    pub updated_at: Option<SystemTime>,
    /// Set while its address answers as another engine (another ID): what that engine says is
    /// not this node's, and its answers count as failures until this node's engine is back.
    pub foreign: Option<String>,
    /// Validation refused it (not an engine, or a duplicate ID): it holds nothing of ours.
    pub refused: bool,
    /// When discovery first named it.
    pub found_at: Instant,
    /// Stops the node's tasks when it leaves discovery.
    pub cancel: CancellationToken,
    /// `swarm.overcommit`, which the derived totals include.
    pub overcommit: f64,
    /// Built from the rest on first use, dropped by every change through `&mut`
    /// (see [`Node::changed`]).
    pub derived: OnceLock<Arc<Derived>>,
    /// Where [`Node::changed`] tells the cluster-wide index (shared by every node).
    pub changes: Arc<super::index::Changes>,
}

/// What schedules and lookups read of a node, built once per change instead of per request.
#[derive(Debug)]
pub struct Derived {
    /// The scheduler's view.
    pub facts: Arc<NodeFacts>,
    /// Containers by primary name.
    pub names: Keyed,
    /// Containers by `com.docker.swarm.id`.
    pub swarm_ids: Keyed,
    /// Containers running and not paused.
    pub running: usize,
    /// Containers paused.
    pub paused: usize,
    /// Containers with a swarm ID and a reschedule policy: what the rescheduler watches.
    pub reschedulable: Vec<Arc<CachedContainer>>,
}

impl Node {
    /// The node's name: the engine's, or its address until validated.
    pub fn name(&self) -> &str {
        self.info.as_ref().map_or(self.addr.as_str(), |i| i.name.as_str())
    }

    /// Classic engine ID: `<info.ID>|<addr>`.
    pub fn engine_id(&self) -> String {
        self.info.as_ref().map_or_else(String::new, |i| format!("{}|{}", i.id, self.addr))
    }

    /// Drops what was derived from the node and tells the cluster-wide index: call after any
    /// change to it.
    pub fn changed(&mut self) {
        self.derived = OnceLock::new();
        self.changes.mark(&self.addr);
    }

    /// The scheduler's view and the lookup indexes, current as of the last change.
    pub fn derived(&self) -> &Arc<Derived> {
        self.derived.get_or_init(|| Arc::new(self.derive()))
    }

    fn derive(&self) -> Derived {
        let overcommit = self.overcommit;
        let (ncpu, mem) = self.info.as_ref().map_or((0, 0), |i| (i.ncpu, i.mem_total));
        // Classic integer overcommit: `x + x * int(overcommit * 100) / 100`.
        let with_overcommit = |x: i64| x.saturating_add(x.saturating_mul((overcommit * 100.0) as i64) / 100);
        let mut facts = NodeFacts {
            key: self.addr.clone(),
            engine_id: self.engine_id(),
            name: self.name().to_string(),
            labels: self.info.as_ref().map(|i| i.labels.clone()).unwrap_or_default(),
            container_slots: self
                .info
                .as_ref()
                .and_then(|i| i.labels.get("containerslots"))
                .and_then(|v| v.parse().ok()),
            total_cpus: with_overcommit(ncpu),
            total_memory: with_overcommit(mem),
            engine_used_cpus: 0,
            engine_used_memory: 0,
            engine_containers: Vec::with_capacity(self.containers.len()),
            images: self.images.clone(),
        };
        let mut derived = Derived {
            facts: Arc::default(),
            names: Keyed::by_name(self.containers.len()),
            swarm_ids: Keyed::by_swarm_id(0),
            running: 0,
            paused: 0,
            reschedulable: Vec::new(),
        };
        // One pass: a change to one container re-derives its whole node.
        for c in self.containers.values() {
            facts.engine_used_cpus = facts.engine_used_cpus.saturating_add(c.facts.cpus(ncpu));
            facts.engine_used_memory = facts.engine_used_memory.saturating_add(c.facts.memory);
            facts.engine_containers.push(c.view.clone());
            derived.names.insert(c);
            if c.swarm_id.is_some() {
                derived.swarm_ids.insert(c);
                if c.facts.recreate.is_some() {
                    derived.reschedulable.push(c.clone());
                }
            }
            match c.state() {
                "running" => derived.running += 1,
                "paused" => derived.paused += 1,
                _ => {}
            }
        }
        derived.facts = Arc::new(facts);
        derived
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn engine_labels_never_override_builtins() {
        let info = json!({"ID":"X","Name":"node-1","Driver":"overlay2","KernelVersion":"6.1","OperatingSystem":"Debian","OSType":"linux",
            "NCPU":2,"MemTotal":1024,"Labels":["zone=a","storagedriver=fake","node=ignored"]});
        let e = EngineInfo::from_json(&info, &json!({"Version":"20.10.24","ApiVersion":"1.41"}));
        assert_eq!(&*e.labels["zone"], "a");
        assert_eq!(&*e.labels["storagedriver"], "overlay2");
        assert!(!e.labels.contains_key("node"));
        assert_eq!((e.ncpu, e.api_version.as_str()), (2, "1.41"));
    }

    #[test]
    fn inspect_facts_read_ports_and_resources() {
        let inspect = json!({"HostConfig":{"Memory":64,"CpuShares":512,"NetworkMode":"default",
            "PortBindings":{"80/tcp":[{"HostIp":"","HostPort":"8080"}]}},"Config":{"ExposedPorts":{"80/tcp":{}}}});
        let f = ContainerFacts::from_inspect(&inspect);
        assert_eq!(subsec_nanos("2026-11-25T17:10:29.1234567Z"), 123_456_700);
        assert_eq!(subsec_nanos("2026-11-25T17:10:29Z"), 0);
        assert_eq!(f.host_ports, vec![("".to_string(), 8080)]);
        assert!(f.host_mode_ports.is_empty());
        assert_eq!((f.memory, f.cpus(2)), (64, 1));
        let host = json!({"HostConfig":{"NetworkMode":"host"},"Config":{"ExposedPorts":{"80/tcp":{}}}});
        assert_eq!(ContainerFacts::from_inspect(&host).host_mode_ports, vec!["80/tcp"]);
    }

    #[test]
    fn cached_container_reads_names_and_swarm_id() {
        let c = CachedContainer::new(
            json!({"Id":"abc","Names":["/web","/other/alias"],"State":"running","Labels":{"com.docker.swarm.id":"s1"}}),
            ContainerFacts::from_inspect(&json!({"State":{"Running":true,"StartedAt":"2026-12-01T10:04:53Z"}})),
        );
        assert_eq!((c.name(), c.swarm_id.as_deref(), c.state()), ("web", Some("s1"), "running"));
    }

    #[test]
    fn summaries_keep_their_text_and_fields_in_order() {
        let doc = json!({"Id":"abc","Names":["/web"],"Labels":{"a":"1"},"Ports":[],"Created":7});
        let s = Summary::new(&doc);
        assert_eq!(s.parse(), doc);
        let fields: Vec<(&str, String)> =
            s.fields().unwrap().into_iter().map(|(k, v)| (k, v.get().to_string())).collect();
        assert_eq!(
            fields,
            vec![
                ("Id", "\"abc\"".into()),
                ("Names", "[\"/web\"]".into()),
                ("Labels", "{\"a\":\"1\"}".into()),
                ("Ports", "[]".into()),
                ("Created", "7".into())
            ]
        );
        let c = CachedContainer::new(doc, ContainerFacts::default());
        assert_eq!(c.view.labels.get("a").map(String::as_str), Some("1"));
        let r = s.rewritten().unwrap();
        let at = |r: Option<(u32, u32)>| r.map(|(a, b)| &s.text()[a as usize..b as usize]);
        assert_eq!((at(r.names), r.state, r.status), (Some("[\"/web\"]"), None, None));
        // A key written with an escape cannot be borrowed: no fields, and the caller parses.
        let escaped = Summary::from_text(r#"{"N\u0061mes":[]}"#.into());
        assert!(escaped.fields().is_none() && escaped.rewritten().is_none());
    }
}

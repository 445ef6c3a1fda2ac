//! Events: engine events tagged with their node, and swarm's own node events, in the shape
//! classic Swarm sent (`from: "<image> node:<name>"`, `Actor.Attributes.node.*`, top-level `node`).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::node::Node;

/// The `node` object of an event: `{Name, Id, Addr, Ip}`.
pub fn node_fields(node: &Node) -> Value {
    json!({
        "Name": node.name(),
        "Id": node.engine_id(),
        "Addr": node.addr,
        "Ip": node.client.addr().host(),
    })
}

fn attach_node(event: &mut Value, node: &Value) {
    if let Some(attrs) = event.pointer_mut("/Actor/Attributes").and_then(Value::as_object_mut) {
        for (field, key) in [("Name", "node.name"), ("Id", "node.id"), ("Addr", "node.addr"), ("Ip", "node.ip")] {
            attrs.insert(key.to_string(), node[field].clone());
        }
    }
    if let Some(obj) = event.as_object_mut() {
        obj.insert("node".to_string(), node.clone());
    }
}

/// Tags an engine's event with its node.
pub fn normalize(mut event: Value, node: &Value) -> Value {
    if event.pointer("/Actor/Attributes").is_none() {
        if let Some(obj) = event.as_object_mut() {
            let actor = obj.entry("Actor").or_insert_with(|| json!({}));
            if let Some(a) = actor.as_object_mut() {
                a.entry("Attributes").or_insert_with(|| json!({}));
            }
        }
    }
    let name = node["Name"].as_str().unwrap_or_default().to_string();
    if let Some(from) = event.get("from").and_then(Value::as_str).map(str::to_string) {
        event["from"] = Value::String(format!("{from} node:{name}"));
    }
    attach_node(&mut event, node);
    event
}

/// Swarm's own event (`engine_connect`, `engine_disconnect`, `engine_reconnect`).
pub fn swarm_event(action: &str, node: Value) -> Value {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut event = json!({
        "status": action,
        "id": "",
        "from": "swarm",
        "Type": "swarm",
        "Action": action,
        "Actor": {"ID": node["Id"].clone(), "Attributes": {}},
        "scope": "swarm",
        "time": now.as_secs(),
        "timeNano": now.as_nanos() as u64,
    });
    attach_node(&mut event, &node);
    event
}

/// dockerd 20.10's event filter (`daemon/events/filter.go`): every key must match; `type`,
/// `event` and `scope` exactly; `container`, `network`, `volume`, `daemon`, `plugin`,
/// `service`, `secret` and `config` by the actor's ID or name, exact or as a prefix, whatever
/// the event's type; `image` by ID or name, with or without tag; every `label` against the
/// actor's attributes. Swarm's `node` takes a node's name or ID.
pub fn matches(event: &Value, filters: &[(String, Vec<String>)]) -> bool {
    let s = |p: &str| event.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let attrs = event.pointer("/Actor/Attributes").and_then(Value::as_object);
    let attr = |k: &str| attrs.and_then(|a| a.get(k)).and_then(Value::as_str).unwrap_or_default();
    let values = |key: &str| -> Option<Vec<&str>> {
        let vs: Vec<&str> =
            filters.iter().filter(|(k, _)| k == key).flat_map(|(_, v)| v.iter().map(String::as_str)).collect();
        filters.iter().any(|(k, _)| k == key).then_some(vs)
    };
    let exact = |key: &str, source: &str| values(key).is_none_or(|vs| vs.is_empty() || vs.contains(&source));
    let fuzzy = |key: &str, source: &str| {
        exact(key, source) || values(key).is_some_and(|vs| vs.iter().any(|p| source.starts_with(p)))
    };
    let by_name = |key: &str| fuzzy(key, s("/Actor/ID")) || fuzzy(key, attr("name"));
    let action = if s("/Action").is_empty() { s("/status") } else { s("/Action") };
    let event_ok = match values("event") {
        Some(vs) if vs.iter().any(|v| matches!(*v, "health_status" | "exec_create" | "exec_start")) => {
            fuzzy("event", action)
        }
        _ => exact("event", action),
    };
    let image_name = if s("/Type") == "image" { attr("name") } else { attr("image") };
    // reference.FamiliarName: no digest, no tag, no default registry.
    let strip_tag = |i: &str| -> String {
        let i = i.split('@').next().unwrap_or(i);
        let cut = i.rfind(':').filter(|c| !i[*c..].contains('/')).unwrap_or(i.len());
        let name = &i[..cut];
        name.strip_prefix("docker.io/library/").or_else(|| name.strip_prefix("docker.io/")).unwrap_or(name).to_string()
    };
    let id = s("/Actor/ID");
    let image_ok = exact("image", id)
        || exact("image", image_name)
        || exact("image", &strip_tag(id))
        || exact("image", &strip_tag(image_name));
    let labels_ok = values("label").is_none_or(|vs| {
        vs.is_empty()
            || (attrs.is_some_and(|a| !a.is_empty())
                && vs.iter().all(|want| match want.split_once('=') {
                    Some((k, v)) => attrs.and_then(|a| a.get(k)).and_then(Value::as_str) == Some(v),
                    None => attrs.is_some_and(|a| a.contains_key(*want)),
                }))
    });
    let node_ok = values("node")
        .is_none_or(|vs| vs.is_empty() || vs.iter().any(|v| *v == s("/node/Name") || *v == s("/node/Id")));
    event_ok
        && exact("type", s("/Type"))
        && values("scope").is_none_or(|_| exact("scope", s("/scope")))
        && ["daemon", "container", "plugin", "volume", "network", "service", "secret", "config"]
            .iter()
            .all(|k| by_name(k))
        && image_ok
        && node_ok
        && labels_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_events_carry_their_node() {
        let node = json!({"Name":"node-1","Id":"X|127.0.0.1:1","Addr":"127.0.0.1:1","Ip":"127.0.0.1"});
        let e = normalize(
            json!({"status":"start","from":"busybox","Type":"container","Action":"start",
            "Actor":{"ID":"abc","Attributes":{"name":"web"}}}),
            &node,
        );
        assert_eq!(e["from"], "busybox node:node-1");
        assert_eq!(e["Actor"]["Attributes"]["node.name"], "node-1");
        assert_eq!(e["node"]["Addr"], "127.0.0.1:1");
        assert!(matches(&e, &[("container".into(), vec!["web".into()])]));
        assert!(matches(&e, &[("node".into(), vec!["node-1".into()]), ("event".into(), vec!["start".into()])]));
        assert!(!matches(&e, &[("type".into(), vec!["image".into()])]));
    }

    #[test]
    fn event_filters_read_like_dockerd() {
        let e = json!({"Type":"container","Action":"start","scope":"local","Actor":{"ID":"abcdef","Attributes":{"name":"web","image":"busybox:latest","a":"1","b":"x"}}});
        let f = |k: &str, v: &[&str]| vec![(k.to_string(), v.iter().map(|s| s.to_string()).collect::<Vec<_>>())];
        assert!(matches(&e, &f("label", &["a=1", "b=x"])));
        assert!(!matches(&e, &f("label", &["a=1", "b=y"])), "every label must match");
        assert!(matches(&e, &f("container", &["abc"])) && matches(&e, &f("container", &["we"])));
        assert!(matches(&e, &f("image", &["busybox"])) && matches(&e, &f("image", &["busybox:latest"])));
        assert!(!matches(&e, &f("network", &["web2"])));
        assert!(matches(&e, &f("event", &["start", "die"])) && !matches(&e, &f("event", &["star"])));
    }

    #[test]
    fn swarm_events_name_the_node() {
        let node = json!({"Name":"node-2","Id":"Y|a:1","Addr":"a:1","Ip":"a"});
        let e = swarm_event("engine_disconnect", node);
        assert_eq!((e["Type"].as_str(), e["Action"].as_str()), (Some("swarm"), Some("engine_disconnect")));
        assert_eq!(e["Actor"]["Attributes"]["node.name"], "node-2");
    }
}

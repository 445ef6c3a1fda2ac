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

/// Whether an event passes `docker events --filter` (`type`, `event`, `container`, `image`,
/// `label`, `node`, `network`, `volume`). Unknown keys are ignored rather than refused, as
/// classic Swarm ignored all filters.
pub fn matches(event: &Value, filters: &[(String, Vec<String>)]) -> bool {
    let s = |p: &str| event.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let attr = |k: &str| event.pointer("/Actor/Attributes").and_then(|a| a.get(k)).and_then(Value::as_str).unwrap_or_default();
    filters.iter().all(|(key, values)| {
        values.iter().any(|want| match key.as_str() {
            "type" => s("/Type") == want,
            "event" => s("/Action") == want || s("/status") == want,
            "container" => s("/Type") == "container" && (s("/Actor/ID").starts_with(want.as_str()) || attr("name") == want),
            "image" => s("/from").split(' ').next() == Some(want.as_str()) || attr("image") == want || s("/Actor/ID") == want,
            "network" => s("/Type") == "network" && (s("/Actor/ID").starts_with(want.as_str()) || attr("name") == want),
            "volume" => s("/Type") == "volume" && s("/Actor/ID") == want,
            "node" => s("/node/Name") == want || s("/node/Id") == want,
            "label" => match want.split_once('=') {
                Some((k, v)) => attr(k) == v,
                None => event.pointer("/Actor/Attributes").and_then(|a| a.get(want.as_str())).is_some(),
            },
            _ => true,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_events_carry_their_node() {
        let node = json!({"Name":"node-1","Id":"X|127.0.0.1:1","Addr":"127.0.0.1:1","Ip":"127.0.0.1"});
        let e = normalize(json!({"status":"start","from":"busybox","Type":"container","Action":"start",
            "Actor":{"ID":"abc","Attributes":{"name":"web"}}}), &node);
        assert_eq!(e["from"], "busybox node:node-1");
        assert_eq!(e["Actor"]["Attributes"]["node.name"], "node-1");
        assert_eq!(e["node"]["Addr"], "127.0.0.1:1");
        assert!(matches(&e, &[("container".into(), vec!["web".into()])]));
        assert!(matches(&e, &[("node".into(), vec!["node-1".into()]), ("event".into(), vec!["start".into()])]));
        assert!(!matches(&e, &[("type".into(), vec!["image".into()])]));
    }

    #[test]
    fn swarm_events_name_the_node() {
        let node = json!({"Name":"node-2","Id":"Y|a:1","Addr":"a:1","Ip":"a"});
        let e = swarm_event("engine_disconnect", node);
        assert_eq!((e["Type"].as_str(), e["Action"].as_str()), (Some("swarm"), Some("engine_disconnect")));
        assert_eq!(e["Actor"]["Attributes"]["node.name"], "node-2");
    }
}

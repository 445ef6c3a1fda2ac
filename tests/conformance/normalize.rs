//! The normalisations, written once. Nothing else may differ between an engine's answer and
//! swarm's answer over that engine:
//!
//! 1. Names: swarm shows a container as `/node/name` and a local network or volume as
//!    `node/name`; the `node/` part is removed from swarm's answer.
//! 2. The `Node` object swarm adds to container inspect (and to events, with `node.*`
//!    attributes and ` node:<name>` after `from`) is removed from swarm's answer.
//! 3. The `com.docker.swarm.id` label is removed from both answers: swarm gives it to the
//!    containers it creates, fixtures made on the engine directly do not have it.
//! 4. `/info` and `/version` are swarm's own documents: only the fields that describe the
//!    engines' contents (`Containers`, `ContainersRunning`, `ContainersPaused`,
//!    `ContainersStopped`, `Images`, `NCPU`; `ApiVersion`) are kept. (`MemTotal` adds
//!    `swarm.overcommit`, and `MinAPIVersion` is swarm's own 1.24, as docs/conformance.md says.)
//! 5. A container's `Status` ("Up 3 seconds") is read at a slightly different instant on each
//!    side: its durations may differ by 2 seconds (see [`status_close`]).
//! 6. Lists the engine returns in no defined order (images, networks, volumes, a container's
//!    `Ports`) are sorted.
//! 7. `stats` are measured at two instants: compared on their keys, not their values.
//! 8. Tar archives (save, export, archive) are compared by their entries' names and their
//!    sizes: an engine writes a layer two saved images share under either of them.
//! 9. A window without `since` replays the engine's whole ring buffer, whose oldest end moves
//!    as new events push old ones out: such windows compare from the moment they were opened.
//!    Live events compare in time order: two stamped a fraction of a millisecond apart may reach
//!    an engine's stream and swarm's merge in either order.
//! 10. Twin cases (the same change made once on the engine and once through swarm, on twin
//!     objects) compare with IDs and timestamps masked (see [`mask_twin`]).

use serde_json::Value;

use crate::oracle::{Answer, Body};

pub const SWARM_ID: &str = "com.docker.swarm.id";

/// Rules 1 and 2 on swarm's answer, for node `node`.
pub fn strip_swarm(ans: &mut Answer, node: &str) {
    match &mut ans.body {
        Body::Json(v) => strip_value(v, node),
        Body::Lines(vs) => vs.iter_mut().for_each(|v| strip_event(v, node)),
        Body::Raw(_) => {}
    }
}

fn strip_value(v: &mut Value, node: &str) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(|i| strip_value(i, node)),
        Value::Object(obj) if obj.contains_key("Actor") => strip_event(v, node),
        Value::Object(obj) => {
            obj.remove("Node");
            let prefixed = format!("/{node}/");
            if let Some(Value::Array(names)) = obj.get_mut("Names") {
                for n in names.iter_mut() {
                    if let Some(s) = n.as_str().and_then(|s| s.strip_prefix(&prefixed)) {
                        *n = Value::String(format!("/{s}"));
                    }
                }
            }
            if let Some(Value::Array(vols)) = obj.get_mut("Volumes") {
                vols.iter_mut().for_each(|v| strip_value(v, node));
            }
            let plain = format!("{node}/");
            if let Some(Value::String(name)) = obj.get_mut("Name") {
                if let Some(s) = name.strip_prefix(&plain) {
                    *name = s.to_string();
                }
            }
        }
        _ => {}
    }
}

fn strip_event(e: &mut Value, node: &str) {
    let Some(obj) = e.as_object_mut() else { return };
    obj.remove("node");
    if let Some(Value::String(from)) = obj.get_mut("from") {
        if let Some(s) = from.strip_suffix(&format!(" node:{node}")) {
            *from = s.to_string();
        }
    }
    if let Some(Value::Object(attrs)) = e.pointer_mut("/Actor/Attributes") {
        attrs.retain(|k, _| !k.starts_with("node."));
    }
}

/// Rule 3, on both answers.
pub fn drop_swarm_id(ans: &mut Answer) {
    fn walk(v: &mut Value) {
        match v {
            Value::Array(items) => items.iter_mut().for_each(walk),
            Value::Object(obj) => {
                for (k, child) in obj.iter_mut() {
                    if k == "Labels" || k == "Attributes" {
                        if let Value::Object(labels) = child {
                            labels.remove(SWARM_ID);
                        }
                    }
                    walk(child);
                }
            }
            _ => {}
        }
    }
    match &mut ans.body {
        Body::Json(v) => walk(v),
        Body::Lines(vs) => vs.iter_mut().for_each(walk),
        Body::Raw(_) => {}
    }
}

/// Rule 4: the fields of `/info` or `/version` that must agree.
pub fn keep_fields(ans: &mut Answer, keep: &[&str]) {
    if let Body::Json(Value::Object(obj)) = &mut ans.body {
        obj.retain(|k, _| keep.contains(&k.as_str()));
    }
}

/// Rule 6 for containers: `Ports` comes from a Go map on the engine.
pub fn sort_ports(ans: &mut Answer) {
    if let Body::Json(Value::Array(items)) = &mut ans.body {
        for c in items {
            if let Some(Value::Array(ports)) = c.get_mut("Ports") {
                ports.sort_by_key(|p| p.to_string());
            }
        }
    }
}

/// Rule 7: every value replaced by its JSON type.
pub fn keys_only(ans: &mut Answer) {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(obj) => obj.values_mut().for_each(walk),
            Value::Array(items) => {
                items.truncate(1);
                items.iter_mut().for_each(walk);
            }
            Value::Number(_) => *v = Value::String("<number>".into()),
            Value::String(_) => *v = Value::String("<string>".into()),
            _ => {}
        }
    }
    if let Body::Json(v) = &mut ans.body {
        walk(v);
    }
}

/// Rule 8: a tar archive as its sorted `name size` entries.
pub fn tar_entries(ans: &mut Answer) {
    let Body::Raw(raw) = &ans.body else { return };
    let (mut entries, mut sizes) = (Vec::new(), Vec::new());
    let mut at = 0;
    while at + 512 <= raw.len() {
        let header = &raw[at..at + 512];
        if header.iter().all(|b| *b == 0) {
            break;
        }
        let name = String::from_utf8_lossy(&header[..100]).trim_end_matches('\0').to_string();
        let size_text =
            String::from_utf8_lossy(&header[124..136]).trim_matches(|c: char| c == '\0' || c == ' ').to_string();
        let size = usize::from_str_radix(&size_text, 8).unwrap_or(0);
        entries.push(name);
        sizes.push(size);
        at += 512 + size.div_ceil(512) * 512;
    }
    // A layer two images share is written once, under whichever comes first.
    entries.sort();
    sizes.sort();
    ans.body = Body::Json(serde_json::json!({"entries": entries, "sizes": sizes}));
}

/// Rule 9: only the events stamped at or after `nanos`.
pub fn events_from(ans: &mut Answer, nanos: u64) {
    if let Body::Lines(events) = &mut ans.body {
        events.retain(|e| e["timeNano"].as_u64().is_some_and(|t| t >= nanos));
    }
}

/// Rule 9: events in time order.
pub fn events_by_time(ans: &mut Answer) {
    if let Body::Lines(events) = &mut ans.body {
        events.sort_by_key(|e| e["timeNano"].as_u64().unwrap_or(0));
    }
}

/// Rule 6: sorts a list by `key`.
pub fn sort_by(ans: &mut Answer, key: &str) {
    if let Body::Json(Value::Array(items)) = &mut ans.body {
        items.sort_by_key(|i| i[key].to_string());
    }
    if let Body::Json(Value::Object(obj)) = &mut ans.body {
        // `/volumes` wraps its list.
        if let Some(Value::Array(items)) = obj.get_mut("Volumes") {
            items.sort_by_key(|i| i[key].to_string());
        }
    }
}

/// Rule 10: 64-hex IDs become `<id>`, RFC 3339 times `<time>`, and the twin's name its base.
pub fn mask_twin(ans: &mut Answer, twin: &str, base: &str) {
    let hex = regex::Regex::new(r"[0-9a-f]{64}").unwrap();
    let time = regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)").unwrap();
    fn walk(v: &mut Value, f: &dyn Fn(&str) -> String) {
        match v {
            Value::String(s) => *s = f(s),
            Value::Array(items) => items.iter_mut().for_each(|i| walk(i, f)),
            Value::Object(obj) => obj.values_mut().for_each(|c| walk(c, f)),
            _ => {}
        }
    }
    if let Body::Json(Value::Object(obj)) = &mut ans.body {
        // Two processes of two twins.
        if obj.contains_key("Pid") {
            obj.insert("Pid".into(), Value::String("<pid>".into()));
        }
    }
    let f = |s: &str| {
        let s = hex.replace_all(s, "<id>");
        let s = time.replace_all(&s, "<time>");
        s.replace(twin, base)
    };
    match &mut ans.body {
        Body::Json(v) => walk(v, &f),
        Body::Lines(vs) => vs.iter_mut().for_each(|v| walk(v, &f)),
        Body::Raw(r) => *r = f(&String::from_utf8_lossy(r)).into_bytes(),
    }
}

/// Rule 5: two `Status` texts agree when they say the same with durations at most 2 s apart.
pub fn status_close(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let re = regex::Regex::new(
        r"Less than a second|About a minute|About an hour|\d+ (seconds?|minutes?|hours?|days?|weeks?|months?|years?)",
    )
    .unwrap();
    let template = |s: &str| re.replace_all(s, "<d>").into_owned();
    let secs = |s: &str| -> Vec<f64> {
        re.find_iter(s)
            .map(|m| match m.as_str() {
                "Less than a second" => 0.0,
                "About a minute" => 60.0,
                "About an hour" => 3600.0,
                t => {
                    let (n, unit) = t.split_once(' ').unwrap_or((t, ""));
                    let n: f64 = n.parse().unwrap_or(f64::NAN);
                    n * match unit.trim_end_matches('s') {
                        "second" => 1.0,
                        "minute" => 60.0,
                        "hour" => 3600.0,
                        "day" => 86400.0,
                        "week" => 604800.0,
                        "month" => 2_592_000.0,
                        _ => 31_536_000.0,
                    }
                }
            })
            .collect()
    };
    let (da, db) = (secs(a), secs(b));
    template(a) == template(b)
        && da.len() == db.len()
        && da.iter().zip(&db).all(|(x, y)| (x - y).abs() <= 2.0 || (x.max(*y) >= 60.0 && (x - y).abs() <= 60.0))
}

/// Differences between two answers, as readable lines (empty when they agree).
pub fn diff(engine: &Answer, swarm: &Answer) -> Vec<String> {
    let mut out = Vec::new();
    if engine.status != swarm.status {
        out.push(format!(
            "status: engine {} {} swarm {} {}",
            engine.status,
            show(&engine.body),
            swarm.status,
            show(&swarm.body)
        ));
        return out;
    }
    if engine.headers != swarm.headers {
        out.push(format!("headers: engine {:?} swarm {:?}", engine.headers, swarm.headers));
    }
    match (&engine.body, &swarm.body) {
        (Body::Json(a), Body::Json(b)) => diff_value("", a, b, &mut out),
        (Body::Lines(a), Body::Lines(b)) => {
            if a.len() != b.len() {
                let tail = |v: &[Value]| {
                    v.iter()
                        .rev()
                        .take(3)
                        .map(|e| format!("{} {} {}", e["Type"], e["Action"], e["Actor"]["Attributes"]["name"]))
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                out.push(format!("lines: engine {} [{}] swarm {} [{}]", a.len(), tail(a), b.len(), tail(b)));
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_value(&format!("[{i}]"), x, y, &mut out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(format!("body: engine {} swarm {}", show(a), show(b))),
    }
    out
}

fn show(b: &Body) -> String {
    let s = match b {
        Body::Json(v) => v.to_string(),
        Body::Lines(vs) => format!("{} lines", vs.len()),
        Body::Raw(r) => format!("{:?}", String::from_utf8_lossy(r)),
    };
    s.chars().take(300).collect()
}

fn diff_value(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if out.len() > 12 {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                match y.get(k) {
                    Some(vb) => diff_value(&format!("{path}.{k}"), va, vb, out),
                    None => out.push(format!("{path}.{k}: only the engine has it ({va})")),
                }
            }
            for k in y.keys().filter(|k| !x.contains_key(*k)) {
                out.push(format!("{path}.{k}: only swarm has it ({})", y[k]));
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                let brief = |v: &[Value]| {
                    v.iter()
                        .map(|i| i.get("Names").or(i.get("Name")).or(i.get("Id")).unwrap_or(i).to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                out.push(format!("{path}: engine has {} [{}], swarm {} [{}]", x.len(), brief(x), y.len(), brief(y)));
                return;
            }
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff_value(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        (Value::String(x), Value::String(y)) if path.ends_with(".Status") && status_close(x, y) => {}
        (x, y) if x == y => {}
        (x, y) => out.push(format!("{path}: engine {x} swarm {y}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_agree_within_two_seconds_only() {
        assert!(status_close("Up 3 seconds", "Up 4 seconds"));
        assert!(status_close("Up Less than a second", "Up 1 second"));
        assert!(status_close("Exited (0) 5 seconds ago", "Exited (0) 6 seconds ago"));
        assert!(!status_close("Up 3 seconds", "Up 9 seconds"));
        assert!(!status_close("Exited (0) 5 seconds ago", "Exited (1) 5 seconds ago"));
        assert!(!status_close("Up 3 seconds (Paused)", "Up 3 seconds"));
    }
}

//! From a create body to the scheduler's [`ContainerSpec`]: resources, ports, dependencies,
//! and swarm's expressions taken out of `Env` and kept as labels.

use serde_json::{json, Map, Value};

use super::parse_expr;
use crate::api::error::ApiError;
use crate::cluster::labels;
use crate::scheduler::{ContainerSpec, Expr};

/// Reschedule policies classic Swarm accepted.
const RESCHEDULE_POLICIES: [&str; 2] = ["off", "on-node-failure"];

fn json_list(labels: &Map<String, Value>, key: &str) -> Result<Vec<String>, ApiError> {
    match labels.get(key).and_then(Value::as_str) {
        None | Some("") => Ok(Vec::new()),
        Some(text) => serde_json::from_str(text).map_err(|_| ApiError::bad_request(format!("invalid label {key}: expected a JSON list of strings"))),
    }
}

/// Reads the scheduling request out of a create body. Swarm's `constraint:`, `affinity:`,
/// `whitelist:` and `reschedule:` entries leave `Env` and are merged into their JSON labels,
/// so that a rebuilt manager (or a reschedule) finds them on the container.
pub fn build_spec(config: &mut Map<String, Value>) -> Result<ContainerSpec, ApiError> {
    let mut found: [(String, Vec<String>); 4] = [
        ("constraint:".into(), Vec::new()),
        ("affinity:".into(), Vec::new()),
        ("whitelist:".into(), Vec::new()),
        ("reschedule:".into(), Vec::new()),
    ];
    if let Some(env) = config.get_mut("Env").and_then(Value::as_array_mut) {
        env.retain(|e| {
            let Some(text) = e.as_str() else { return true };
            for (prefix, list) in found.iter_mut() {
                if let Some(rest) = text.strip_prefix(prefix.as_str()) {
                    list.push(rest.to_string());
                    return false;
                }
            }
            true
        });
    }
    let labels_value = config.entry("Labels").or_insert_with(|| json!({}));
    if !labels_value.is_object() {
        *labels_value = json!({});
    }
    let label_map = labels_value.as_object_mut().expect("made an object above");
    let keys = [labels::CONSTRAINTS, labels::AFFINITIES, labels::WHITELISTS, labels::RESCHEDULE_POLICIES];
    let mut merged: Vec<Vec<String>> = Vec::new();
    for ((_, from_env), key) in found.iter().zip(keys) {
        let mut all = json_list(label_map, key)?;
        for e in from_env {
            if !all.contains(e) {
                all.push(e.clone());
            }
        }
        if !all.is_empty() {
            label_map.insert(key.to_string(), json!(serde_json::to_string(&all).unwrap_or_default()));
        }
        merged.push(all);
    }
    let policies = &merged[3];
    if policies.len() > 1 {
        return Err(ApiError::internal("too many reschedule policies"));
    }
    if let Some(p) = policies.first() {
        if !RESCHEDULE_POLICIES.contains(&p.as_str()) {
            return Err(ApiError::internal(format!("invalid reschedule policy: {p}")));
        }
    }
    let parse_all = |list: &Vec<String>| list.iter().map(|e| parse_expr(e)).collect::<Result<Vec<Expr>, _>>();

    let hc = config.get("HostConfig").cloned().unwrap_or(Value::Null);
    let mut host_ports = Vec::new();
    for list in hc["PortBindings"].as_object().into_iter().flat_map(|m| m.values()).filter_map(Value::as_array) {
        for b in list {
            if let Some(port) = b["HostPort"].as_str().and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0) {
                host_ports.push((b["HostIp"].as_str().unwrap_or_default().to_string(), port));
            }
        }
    }
    let network_mode = hc["NetworkMode"].as_str().unwrap_or_default();
    let host_mode_ports = if network_mode == "host" {
        config.get("ExposedPorts").and_then(Value::as_object).map(|m| m.keys().cloned().collect()).unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut dependencies: Vec<String> = Vec::new();
    for v in hc["VolumesFrom"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        dependencies.push(format!("--volumes-from={v}"));
    }
    for l in hc["Links"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        dependencies.push(format!("--link={l}"));
    }
    if let Some(c) = network_mode.strip_prefix("container:") {
        dependencies.push(format!("--net=container:{c}"));
    }
    let shares = hc["CpuShares"].as_i64().or_else(|| config.get("CpuShares").and_then(Value::as_i64)).unwrap_or(0);
    let nano = hc["NanoCpus"].as_i64().unwrap_or(0);
    let cpus = if nano > 0 { (nano + 999_999_999) / 1_000_000_000 } else { shares };
    let memory = hc["Memory"].as_i64().or_else(|| config.get("Memory").and_then(Value::as_i64)).unwrap_or(0);

    Ok(ContainerSpec {
        image: config.get("Image").and_then(Value::as_str).unwrap_or_default().to_string(),
        cpus,
        memory,
        host_ports,
        host_mode_ports,
        dependencies,
        constraints: parse_all(&merged[0])?,
        affinities: parse_all(&merged[1])?,
        whitelists: parse_all(&merged[2])?,
    })
}

/// Splits an image reference into what `POST /images/create` wants: `fromImage` and `tag`.
pub fn image_reference(image: &str) -> (String, String) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo.to_string(), digest.to_string());
    }
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
        _ => (image.to_string(), "latest".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn expressions_leave_env_and_become_labels() {
        let mut c = body(json!({"Image":"busybox","Env":["A=1","constraint:zone==a","affinity:container!=web"],
            "Labels":{"com.docker.swarm.constraints":"[\"storage==ssd\"]"}}));
        let spec = build_spec(&mut c).unwrap();
        assert_eq!(c["Env"], json!(["A=1"]));
        assert_eq!(c["Labels"][labels::CONSTRAINTS], json!("[\"storage==ssd\",\"zone==a\"]"));
        assert_eq!(c["Labels"][labels::AFFINITIES], json!("[\"container!=web\"]"));
        assert_eq!(spec.constraints.len(), 2);
        assert_eq!(spec.affinities[0].text(), "container!=web");
    }

    #[test]
    fn bad_expressions_and_policies_are_refused() {
        let mut c = body(json!({"Env":["constraint:zone=a"]}));
        assert_eq!(build_spec(&mut c).unwrap_err().message, "One of operator ==, != is expected");
        let mut c = body(json!({"Env":["reschedule:sometimes"]}));
        assert_eq!(build_spec(&mut c).unwrap_err().message, "invalid reschedule policy: sometimes");
        let mut c = body(json!({"Env":["reschedule:off","reschedule:on-node-failure"]}));
        assert_eq!(build_spec(&mut c).unwrap_err().message, "too many reschedule policies");
    }

    #[test]
    fn resources_ports_and_dependencies_are_read() {
        let mut c = body(json!({"Image":"x","ExposedPorts":{"80/tcp":{}},"HostConfig":{"CpuShares":1,"Memory":64,
            "PortBindings":{"80/tcp":[{"HostIp":"","HostPort":"8080"}]},"VolumesFrom":["data:ro"],"Links":["db:db"]}}));
        let spec = build_spec(&mut c).unwrap();
        assert_eq!((spec.cpus, spec.memory), (1, 64));
        assert_eq!(spec.host_ports, vec![("".to_string(), 8080)]);
        assert_eq!(spec.dependencies, vec!["--volumes-from=data:ro", "--link=db:db"]);
        let mut h = body(json!({"ExposedPorts":{"80/tcp":{}},"HostConfig":{"NetworkMode":"host"}}));
        assert_eq!(build_spec(&mut h).unwrap().host_mode_ports, vec!["80/tcp"]);
    }

    #[test]
    fn image_references_split_tags_not_registry_ports() {
        assert_eq!(image_reference("busybox"), ("busybox".into(), "latest".into()));
        assert_eq!(image_reference("127.0.0.1:25000/busybox:1"), ("127.0.0.1:25000/busybox".into(), "1".into()));
        assert_eq!(image_reference("127.0.0.1:25000/busybox"), ("127.0.0.1:25000/busybox".into(), "latest".into()));
        assert_eq!(image_reference("a@sha256:00"), ("a".into(), "sha256:00".into()));
    }
}

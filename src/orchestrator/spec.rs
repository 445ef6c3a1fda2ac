//! From a create body to the scheduler's [`ContainerSpec`]: resources, ports, dependencies,
//! and swarm's expressions taken out of `Env` and kept as labels.

use serde_json::{json, Map, Value};

use super::Error;
use crate::cluster::{labels, wire};
use crate::scheduler::{ContainerSpec, Expr};

/// Reschedule policies classic Swarm accepted.
const RESCHEDULE_POLICIES: [&str; 2] = ["off", "on-node-failure"];

fn json_list(labels: &Map<String, Value>, key: &str) -> Result<Vec<String>, Error> {
    match labels.get(key).and_then(Value::as_str) {
        None | Some("") => Ok(Vec::new()),
        Some(text) => serde_json::from_str(text)
            .map_err(|_| Error::bad_request(format!("invalid label {key}: expected a JSON list of strings"))),
    }
}

/// Reads the scheduling request out of a create body. Swarm's `constraint:`, `affinity:`,
/// `whitelist:` and `reschedule:` entries leave `Env` and are merged into their JSON labels,
/// so that a rebuilt manager (or a reschedule) finds them on the container.
pub fn build_spec(config: &mut Map<String, Value>) -> Result<ContainerSpec, Error> {
    let [constraints, affinities, whitelists, policies] = take_expressions(config)?;
    if policies.len() > 1 {
        return Err(Error::internal("too many reschedule policies"));
    }
    if let Some(p) = policies.first() {
        if !RESCHEDULE_POLICIES.contains(&p.as_str()) {
            return Err(Error::internal(format!("invalid reschedule policy: {p}")));
        }
    }
    let parse_all = |list: Vec<String>| list.iter().map(|e| parse_expr(e)).collect::<Result<Vec<Expr>, _>>();
    let hc: wire::HostConfig = config.get("HostConfig").map(wire::read).unwrap_or_default();
    let host_mode_ports = if hc.host_network() {
        config.get("ExposedPorts").and_then(Value::as_object).map(|m| m.keys().cloned().collect()).unwrap_or_default()
    } else {
        Vec::new()
    };
    let (cpus, memory) = resources(config, &hc);
    Ok(ContainerSpec {
        image: config.get("Image").and_then(Value::as_str).unwrap_or_default().to_string(),
        cpus,
        memory,
        host_ports: hc.fixed_host_ports(),
        host_mode_ports,
        dependencies: dependencies(&hc),
        constraints: parse_all(constraints)?,
        affinities: parse_all(affinities)?,
        whitelists: parse_all(whitelists)?,
    })
}

/// Takes swarm's expressions out of `Env` and merges them into their labels; returns the
/// constraints, affinities, whitelists and reschedule policies, labels' first.
fn take_expressions(config: &mut Map<String, Value>) -> Result<[Vec<String>; 4], Error> {
    const PREFIXES: [&str; 4] = ["constraint:", "affinity:", "whitelist:", "reschedule:"];
    const KEYS: [&str; 4] = [labels::CONSTRAINTS, labels::AFFINITIES, labels::WHITELISTS, labels::RESCHEDULE_POLICIES];
    let mut from_env: [Vec<String>; 4] = Default::default();
    if let Some(env) = config.get_mut("Env").and_then(Value::as_array_mut) {
        env.retain(|e| {
            let Some(text) = e.as_str() else { return true };
            match PREFIXES.iter().position(|p| text.starts_with(p)) {
                Some(i) => {
                    from_env[i].push(text[PREFIXES[i].len()..].to_string());
                    false
                }
                None => true,
            }
        });
    }
    let labels_value = config.entry("Labels").or_insert_with(|| json!({}));
    if !labels_value.is_object() {
        *labels_value = json!({});
    }
    let label_map = labels_value.as_object_mut().expect("made an object above");
    let mut merged: [Vec<String>; 4] = Default::default();
    for ((all, extra), key) in merged.iter_mut().zip(from_env).zip(KEYS) {
        *all = json_list(label_map, key)?;
        for e in extra {
            if !all.contains(&e) {
                all.push(e);
            }
        }
        if !all.is_empty() {
            label_map.insert(key.to_string(), json!(serde_json::to_string(&all).unwrap_or_default()));
        }
    }
    Ok(merged)
}

/// The containers this one needs on its node, as the dependency filter reads them.
fn dependencies(hc: &wire::HostConfig) -> Vec<String> {
    let volumes_from = hc.volumes_from.iter().flatten().map(|v| format!("--volumes-from={v}"));
    let links = hc.links.iter().flatten().map(|l| format!("--link={l}"));
    let network =
        hc.network_mode.as_deref().and_then(|m| m.strip_prefix("container:")).map(|c| format!("--net=container:{c}"));
    volumes_from.chain(links).chain(network).collect()
}

/// CPUs and memory asked for: classic Swarm reads `CpuShares` as a CPU count; `NanoCpus`
/// (`--cpus`) rounds up to whole CPUs. Top-level `CpuShares` and `Memory` are API 1.18's.
fn resources(config: &Map<String, Value>, hc: &wire::HostConfig) -> (i64, i64) {
    let shares = hc.cpu_shares.or_else(|| config.get("CpuShares").and_then(Value::as_i64)).unwrap_or(0);
    let nano = hc.nano_cpus.unwrap_or(0);
    let cpus = if nano > 0 { nano.saturating_add(999_999_999) / 1_000_000_000 } else { shares };
    let memory = hc.memory.or_else(|| config.get("Memory").and_then(Value::as_i64)).unwrap_or(0);
    (cpus, memory)
}

/// Parses one expression from `-e constraint:…` and the like, with the classic messages.
fn parse_expr(text: &str) -> Result<Expr, Error> {
    Expr::parse(text).map_err(|e| Error::bad_request(e.to_string()))
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

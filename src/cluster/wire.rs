//! The few fields of engine documents that the manager itself reads, typed. Everything it only
//! passes on stays bytes or `Value`. Every field is optional: an engine (or a client's create
//! body) that leaves one out, or sends `null`, gets the default.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// Reads `T` out of `value`; a document of the wrong shape reads as the default.
pub fn read<'a, T: Deserialize<'a> + Default>(value: &'a Value) -> T {
    T::deserialize(value).unwrap_or_default()
}

/// `GET /info`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Info {
    /// The engine's ID.
    #[serde(rename = "ID")]
    pub id: Option<String>,
    /// Its host name.
    pub name: Option<String>,
    /// `key=value` engine labels.
    pub labels: Option<Vec<String>>,
    /// CPUs.
    #[serde(rename = "NCPU")]
    pub ncpu: Option<i64>,
    /// Memory, bytes.
    pub mem_total: Option<i64>,
    /// Storage driver.
    pub driver: Option<String>,
    /// Kernel version.
    pub kernel_version: Option<String>,
    /// Operating system.
    pub operating_system: Option<String>,
    /// `linux` or `windows`.
    #[serde(rename = "OSType")]
    pub os_type: Option<String>,
}

/// `GET /version`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Version {
    /// Engine version.
    pub version: Option<String>,
    /// Highest API version it speaks.
    pub api_version: Option<String>,
}

/// One host binding of a published port.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    /// Host address; empty for every address.
    pub host_ip: Option<String>,
    /// Host port, as text; empty for a random one.
    pub host_port: Option<String>,
}

/// The `HostConfig` fields scheduling reads, of a create body or an inspect document.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    /// Memory limit, bytes.
    pub memory: Option<i64>,
    /// CPU shares (classic Swarm reads them as CPUs in a create).
    pub cpu_shares: Option<i64>,
    /// `--cpus`, in billionths of a CPU.
    pub nano_cpus: Option<i64>,
    /// Published ports: container port → host bindings.
    pub port_bindings: Option<BTreeMap<String, Option<Vec<PortBinding>>>>,
    /// `bridge`, `host`, `container:<id>`, a network name...
    pub network_mode: Option<String>,
    /// `--volumes-from`.
    pub volumes_from: Option<Vec<String>>,
    /// `--link`.
    pub links: Option<Vec<String>>,
}

impl HostConfig {
    /// `(host IP, port)` of every binding with a fixed host port.
    pub fn fixed_host_ports(&self) -> Vec<(String, u16)> {
        let bindings = self.port_bindings.iter().flat_map(|m| m.values()).flatten().flatten();
        bindings
            .filter_map(|b| {
                let port = b.host_port.as_deref()?.parse::<u16>().ok().filter(|p| *p > 0)?;
                Some((b.host_ip.clone().unwrap_or_default(), port))
            })
            .collect()
    }

    /// Whether the container shares the host's network.
    pub fn host_network(&self) -> bool {
        self.network_mode.as_deref() == Some("host")
    }
}

/// One entry of `GET /images/json`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageSummary {
    /// `sha256:…`.
    pub id: Option<String>,
    /// `repo:tag` names.
    pub repo_tags: Option<Vec<String>>,
    /// The image it was built on, if local.
    pub parent_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_null_and_misshapen_fields_read_as_defaults() {
        let hc: HostConfig = read(
            &json!({"Memory": null, "PortBindings": {"80/tcp": null, "81/tcp": [{"HostPort": "8081"}, {"HostPort": ""}]}}),
        );
        assert_eq!((hc.memory, hc.fixed_host_ports()), (None, vec![(String::new(), 8081)]));
        let info: Info = read(&json!("not an object"));
        assert!(info.id.is_none());
    }
}

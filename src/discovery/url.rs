//! Discovery URLs: `nodes://a:2375,b:2375`, bare lists, `[from:to]` ranges, `file:///path`,
//! `etcd://h1,h2/prefix`, `token://<token>`, `zk://…`.

use std::path::PathBuf;

/// A discovery URL that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// A `[from:to]` range that is not two numbers in order.
    #[error("invalid range in \"{entry}\"")]
    BadRange {
        /// The entry as written.
        entry: String,
    },
    /// Ranges that expand to more entries than a manager would ever serve.
    #[error("the ranges expand to more than {MAX_EXPANDED_ENTRIES} entries")]
    TooMany,
    /// The list has no entry.
    #[error("discovery URL \"{url}\" names no entry")]
    Empty {
        /// The URL as written.
        url: String,
    },
    /// Some but not all of the `kv.*` TLS files.
    #[error("kv.cacertfile, kv.certfile and kv.keyfile must be given together")]
    PartialTls,
    /// A scheme no discovery service here answers to (classic Swarm's words first).
    #[error("discovery service not supported: \"{scheme}://\" (supported: nodes, file, etcd, token, swarm, unix)")]
    NotSupported {
        /// The scheme as written.
        scheme: String,
    },
    /// A node list entry that is no engine address (host:port, or a unix:// socket).
    #[error("invalid engine address \"{entry}\" in the node list: expected host:port")]
    BadEntry {
        /// The entry as written.
        entry: String,
    },
    /// An unknown `--discovery-opt` key.
    #[error("unsupported discovery option \"{key}\"")]
    UnknownOption {
        /// The key.
        key: String,
    },
}

pub use crate::tls::KvTls;

/// Where engines come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryUrl {
    /// A static list, ranges expanded.
    Nodes(Vec<String>),
    /// A file re-read every heartbeat.
    File(PathBuf),
    /// etcd v3 endpoints and key prefix.
    Etcd {
        /// Client endpoints, host:port.
        endpoints: Vec<String>,
        /// Key prefix; nodes live under `<prefix>/<kv.path>/<addr>`.
        prefix: String,
        /// `kv.path`, default `docker/swarm/nodes`.
        path: String,
        /// Client TLS from `kv.cacertfile`, `kv.certfile`, `kv.keyfile`.
        tls: Option<KvTls>,
    },
    /// A token served by swarm's own hub-compatible service.
    Token(String),
    /// ZooKeeper ensemble.
    Zk(String),
    /// The managers' own registry (`swarm://m1:port,m2:port`), kept in their embedded Raft.
    Managers {
        /// The managers, host:port.
        managers: Vec<String>,
        /// Client TLS to managers run with `--tlsverify`, from the `kv.*` options.
        tls: Option<KvTls>,
    },
}

impl DiscoveryUrl {
    /// Parses a URL and its `--discovery-opt` pairs.
    pub fn parse(url: &str, options: &[(String, String)]) -> Result<Self, UrlError> {
        let mut kv_path = "docker/swarm/nodes".to_string();
        let (mut ca, mut cert, mut key) = (None, None, None);
        for (k, v) in options {
            match k.as_str() {
                "kv.path" => kv_path = v.trim_matches('/').to_string(),
                "kv.cacertfile" => ca = Some(PathBuf::from(v)),
                "kv.certfile" => cert = Some(PathBuf::from(v)),
                "kv.keyfile" => key = Some(PathBuf::from(v)),
                other => return Err(UrlError::UnknownOption { key: other.to_string() }),
            }
        }
        let tls = match (ca, cert, key) {
            (Some(ca), Some(cert), Some(key)) => Some(KvTls { ca, cert, key }),
            (None, None, None) => None,
            _ => return Err(UrlError::PartialTls),
        };
        let (scheme, rest) = url.split_once("://").unwrap_or(("nodes", url));
        Ok(match scheme {
            "file" => DiscoveryUrl::File(PathBuf::from(rest)),
            "etcd" => {
                let (hosts, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                DiscoveryUrl::Etcd {
                    endpoints: hosts.split(',').filter(|h| !h.is_empty()).map(str::to_string).collect(),
                    prefix: prefix.trim_matches('/').to_string(),
                    path: kv_path,
                    tls,
                }
            }
            "token" => DiscoveryUrl::Token(rest.to_string()),
            "zk" => DiscoveryUrl::Zk(rest.to_string()),
            "swarm" => {
                let managers = expand_entries(rest.split(','))?;
                if managers.is_empty() {
                    return Err(UrlError::Empty { url: url.to_string() });
                }
                DiscoveryUrl::Managers { managers, tls }
            }
            // One engine on a unix socket, named by its own URL.
            "unix" => DiscoveryUrl::Nodes(vec![url.to_string()]),
            "nodes" => {
                let entries = expand_entries(rest.split(','))?;
                if entries.is_empty() {
                    return Err(UrlError::Empty { url: url.to_string() });
                }
                // A mistyped URL (`consul//host:port/path`) must not pass for an engine.
                if let Some(bad) = entries.iter().find(|e| !e.starts_with("unix://") && e.contains('/')) {
                    return Err(UrlError::BadEntry { entry: bad.clone() });
                }
                DiscoveryUrl::Nodes(entries)
            }
            other => return Err(UrlError::NotSupported { scheme: other.to_string() }),
        })
    }

    /// The scheme name, for logs and metrics.
    pub fn scheme(&self) -> &'static str {
        match self {
            DiscoveryUrl::Nodes(_) => "nodes",
            DiscoveryUrl::File(_) => "file",
            DiscoveryUrl::Etcd { .. } => "etcd",
            DiscoveryUrl::Token(_) => "token",
            DiscoveryUrl::Zk(_) => "zk",
            DiscoveryUrl::Managers { .. } => "swarm",
        }
    }
}

/// Most entries ranges may expand to: far more engines than one manager serves, and a typo
/// such as `[1:99999999]` fails instead of filling memory.
pub const MAX_EXPANDED_ENTRIES: u64 = 100_000;

/// Expands entries, each with at most one `[from:to]` numeric range, skipping blanks and
/// `#` comments (the file format).
pub fn expand_entries<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, UrlError> {
    let mut out = Vec::new();
    for raw in lines {
        let entry = raw.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        match (entry.find('['), entry.find(']')) {
            (Some(open), Some(close)) if open < close => {
                let bad = || UrlError::BadRange { entry: entry.to_string() };
                let (from, to) = entry[open + 1..close].split_once(':').ok_or_else(bad)?;
                let (from, to): (u64, u64) = (from.parse().map_err(|_| bad())?, to.parse().map_err(|_| bad())?);
                if from > to {
                    return Err(bad());
                }
                if (to - from).saturating_add(out.len() as u64) >= MAX_EXPANDED_ENTRIES {
                    return Err(UrlError::TooMany);
                }
                for n in from..=to {
                    out.push(format!("{}{}{}", &entry[..open], n, &entry[close + 1..]));
                }
            }
            _ => out.push(entry.to_string()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_lists_are_nodes() {
        assert_eq!(
            DiscoveryUrl::parse("127.0.0.1:1,127.0.0.1:2", &[]).unwrap(),
            DiscoveryUrl::Nodes(vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()])
        );
    }

    #[test]
    fn ranges_expand_in_addresses_and_ports() {
        assert_eq!(
            expand_entries(["10.0.0.[1:3]:2375"]).unwrap(),
            vec!["10.0.0.1:2375", "10.0.0.2:2375", "10.0.0.3:2375"]
        );
        assert_eq!(expand_entries(["h:[2:3]375"]).unwrap(), vec!["h:2375", "h:3375"]);
        assert!(expand_entries(["h:[3:2]"]).is_err());
        assert!(expand_entries(["h:[a:2]"]).is_err());
        assert_eq!(expand_entries(["h:[1:18446744073709551615]"]).unwrap_err(), UrlError::TooMany);
        assert_eq!(expand_entries(["h:[1:60000]", "g:[1:60000]"]).unwrap_err(), UrlError::TooMany);
    }

    #[test]
    fn file_lines_skip_comments_and_blanks() {
        let text = "# engines\n127.0.0.1:1\n\n127.0.0.1:[2:3] # two more\n";
        assert_eq!(expand_entries(text.lines()).unwrap(), vec!["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]);
    }

    #[test]
    fn etcd_urls_carry_endpoints_prefix_and_path() {
        let url = DiscoveryUrl::parse("etcd://a:2379,b:2379/swarm", &[("kv.path".into(), "x/y".into())]).unwrap();
        assert_eq!(
            url,
            DiscoveryUrl::Etcd {
                endpoints: vec!["a:2379".into(), "b:2379".into()],
                prefix: "swarm".into(),
                path: "x/y".into(),
                tls: None
            }
        );
        assert_eq!(
            DiscoveryUrl::parse("etcd://a/p", &[("kv.certfile".into(), "c".into())]).unwrap_err(),
            UrlError::PartialTls
        );
        assert!(DiscoveryUrl::parse("nodes://", &[]).is_err());
        for unsupported in ["consul://127.0.0.1:8500/swarm", "http://127.0.0.1:2375", "tcp://127.0.0.1:2375"] {
            let e = DiscoveryUrl::parse(unsupported, &[]).unwrap_err();
            assert!(e.to_string().starts_with("discovery service not supported"), "{unsupported}: {e}");
        }
        assert_eq!(
            DiscoveryUrl::parse("consul//127.0.0.1:8500/swarm", &[]).unwrap_err(),
            UrlError::BadEntry { entry: "consul//127.0.0.1:8500/swarm".into() }
        );
        assert_eq!(
            DiscoveryUrl::parse("unix:///run/d.sock", &[]).unwrap(),
            DiscoveryUrl::Nodes(vec!["unix:///run/d.sock".into()])
        );
        assert_eq!(
            DiscoveryUrl::parse("nodes://unix:///a.sock,127.0.0.1:1", &[]).unwrap(),
            DiscoveryUrl::Nodes(vec!["unix:///a.sock".into(), "127.0.0.1:1".into()])
        );
    }

    #[test]
    fn swarm_urls_list_managers_and_take_the_kv_tls_options() {
        let opts: Vec<(String, String)> =
            [("kv.cacertfile", "ca.pem"), ("kv.certfile", "cert.pem"), ("kv.keyfile", "key.pem")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let tls = Some(KvTls { ca: "ca.pem".into(), cert: "cert.pem".into(), key: "key.pem".into() });
        assert_eq!(
            DiscoveryUrl::parse("swarm://m:[1:2]", &opts).unwrap(),
            DiscoveryUrl::Managers { managers: vec!["m:1".into(), "m:2".into()], tls }
        );
        assert_eq!(DiscoveryUrl::parse("swarm://", &[]).unwrap_err(), UrlError::Empty { url: "swarm://".into() });
    }
}

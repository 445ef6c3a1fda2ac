//! `swarm://m1:port,m2:port,...`: engines register with the managers themselves, which keep
//! the registry in their replicated store (embedded Raft) with a TTL. No etcd, no hub.
//! Any manager answers; followers pass registrations on to the leader.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{DiscoveryError, DiscoveryEvent};
use crate::auth::Signer;
use crate::store::Store;
use crate::tls::KvTls;
use crate::tls::{client_config, TlsFiles};
use crate::transport::EngineClient;

/// Per-manager timeout; the next manager is tried after it.
const MANAGER_TIMEOUT: Duration = Duration::from_secs(3);

/// Where registrations live in the managers' store.
pub const NODES_PREFIX: &str = "nodes/";

fn failed(e: impl std::fmt::Display) -> DiscoveryError {
    DiscoveryError::Managers(e.to_string())
}

/// The client side of `kv.cacertfile`, `kv.certfile` and `kv.keyfile`: managers are checked
/// against the CA and shown the pair, as `--tlsverify` managers require.
fn client_tls(tls: Option<&KvTls>) -> Result<Option<Arc<rustls::ClientConfig>>, DiscoveryError> {
    let Some(t) = tls else { return Ok(None) };
    let files = TlsFiles { verify: true, ca: Some(t.ca.clone()), cert: t.cert.clone(), key: t.key.clone() };
    Ok(Some(client_config(&files).map_err(failed)?))
}

/// Tries each manager in turn, from the `first`th, until one answers 2xx, each within
/// `timeout`; each request signed anew by `auth`. Returns the answer and who gave it.
async fn ask(
    managers: &[String],
    first: usize,
    timeout: Duration,
    tls: Option<&Arc<rustls::ClientConfig>>,
    auth: Option<&Signer>,
    method: Method,
    path: &str,
) -> Result<(Bytes, usize), DiscoveryError> {
    let mut last = String::from("no managers listed");
    for i in (0..managers.len()).map(|k| (first + k) % managers.len()) {
        let m = &managers[i];
        let client = EngineClient::with_tls(m, timeout, tls.cloned());
        let headers = auth.map(|a| a.headers(&method, path, b"")).unwrap_or_default();
        match client.call(method.clone(), path, None, &headers, Some(timeout)).await {
            Ok((s, _, body)) if s.is_success() => return Ok((body, i)),
            Ok((s, _, body)) => last = format!("{m} answered {s}: {}", String::from_utf8_lossy(&body).trim()),
            Err(e) => last = format!("{m}: {e}"),
        }
    }
    Err(failed(last))
}

/// The registered engines.
pub async fn fetch(
    managers: &[String],
    tls: Option<&KvTls>,
    auth: Option<&Signer>,
) -> Result<BTreeSet<String>, DiscoveryError> {
    let (body, _) =
        ask(managers, 0, MANAGER_TIMEOUT, client_tls(tls)?.as_ref(), auth, Method::GET, "/_swarm/nodes").await?;
    let list: Vec<String> = serde_json::from_slice(&body).map_err(failed)?;
    Ok(list.into_iter().collect())
}

/// How long a registration may wait for one manager: a manager that hangs (a leader cut off
/// from its peers) must leave time to try the others before the entry's TTL runs out.
fn registration_timeout(managers: usize, ttl: Duration) -> Duration {
    MANAGER_TIMEOUT.min(ttl / (managers.max(1) as u32 + 1)).max(Duration::from_millis(200))
}

/// Registers `addr` every `heartbeat` with a TTL, forever; the manager that took the last
/// registration is asked first.
pub async fn register_forever(
    managers: Vec<String>,
    tls: Option<&KvTls>,
    auth: Option<&Signer>,
    addr: String,
    ttl: Duration,
    heartbeat: Duration,
) -> Result<(), DiscoveryError> {
    let tls = client_tls(tls)?;
    let path = format!("/_swarm/nodes/{addr}?ttl={}", ttl.as_secs().max(1));
    let timeout = registration_timeout(managers.len(), ttl);
    let (mut registered, mut first) = (false, 0);
    loop {
        match ask(&managers, first, timeout, tls.as_ref(), auth, Method::PUT, &path).await {
            Ok((_, took)) => {
                if !registered {
                    info!(addr = %addr, "Registered with the managers.");
                    registered = true;
                }
                first = took;
            }
            Err(e) => warn!(error = %e, "No manager took the registration; retrying."),
        }
        tokio::time::sleep(heartbeat).await;
    }
}

/// How often a manager reads its own copy of the registry: a local read, so often enough
/// that a joined engine is seen at once, whatever `--heartbeat` is. With a copy that tells its
/// changes (Raft), it is read again only after one, looked for this often.
const REGISTRY_POLL: Duration = Duration::from_secs(1);
const CHANGE_POLL: Duration = Duration::from_millis(20);

/// A manager's own view: its copy of the replicated registry, read after each change (or every
/// [`REGISTRY_POLL`], or `heartbeat` if shorter).
pub async fn watch_store(store: Store, heartbeat: Duration, tx: mpsc::Sender<DiscoveryEvent>) {
    let every = heartbeat.min(REGISTRY_POLL);
    let mut last = None;
    // A member that has just started reads an empty or stale registry until it has applied
    // its log: the cluster must not take that for the engines.
    while !store.is_current() {
        tokio::select! {
            _ = tokio::time::sleep(CHANGE_POLL) => {}
            _ = tx.closed() => return,
        }
    }
    let mut read_at_generation = None;
    let mut read_at = tokio::time::Instant::now();
    loop {
        let generation = store.generation();
        let due = generation.is_none() || generation != read_at_generation || read_at.elapsed() >= every;
        if due {
            read_at = tokio::time::Instant::now();
            read_at_generation = generation;
            let event = match store.list(NODES_PREFIX.to_string()).await {
                Ok(entries) => {
                    let set: BTreeSet<String> =
                        entries.into_iter().map(|(k, _)| k[NODES_PREFIX.len()..].to_string()).collect();
                    (last.as_ref() != Some(&set)).then(|| {
                        last = Some(set.clone());
                        DiscoveryEvent::Entries(set)
                    })
                }
                Err(e) => Some(DiscoveryEvent::Failed(failed(e))),
            };
            if let Some(ev) = event {
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
        }
        let pause = if generation.is_some() { CHANGE_POLL } else { every };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_tries_every_manager_within_its_ttl() {
        let second = Duration::from_secs(1);
        assert_eq!(registration_timeout(3, 6 * second), 1500 * Duration::from_millis(1));
        assert_eq!(registration_timeout(1, 180 * second), MANAGER_TIMEOUT);
        assert_eq!(registration_timeout(3, second), Duration::from_millis(250));
        assert_eq!(registration_timeout(0, Duration::ZERO), Duration::from_millis(200));
    }
}

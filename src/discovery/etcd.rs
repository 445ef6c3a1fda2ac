//! etcd v3 discovery: engines registered under `<prefix>/<kv.path>/<addr>` with a lease as TTL.
//! The watcher lists then watches the prefix, and keeps the last set while etcd is away, so an
//! etcd restart drops no node.

use std::collections::BTreeSet;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, PutOptions, WatchOptions};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{DiscoveryError, DiscoveryEvent};
use crate::etcd::{EtcdMembers, MemberClient};
use crate::tls::KvTls;

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Where the nodes live in etcd.
#[derive(Debug, Clone)]
pub struct EtcdNodes {
    /// Client endpoints.
    pub endpoints: Vec<String>,
    /// `<prefix>/<path>/`, the key prefix of node entries.
    pub key_prefix: String,
    /// Client TLS, when the store wants it.
    pub tls: Option<KvTls>,
}

impl EtcdNodes {
    /// Builds the key prefix from the URL's prefix and `kv.path`.
    pub fn new(endpoints: &[String], prefix: &str, path: &str, tls: Option<KvTls>) -> Self {
        let parts: Vec<&str> =
            [prefix, path].into_iter().map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()).collect();
        EtcdNodes { endpoints: endpoints.to_vec(), key_prefix: format!("{}/", parts.join("/")), tls }
    }

    fn key(&self, addr: &str) -> String {
        format!("{}{addr}", self.key_prefix)
    }
}

fn failed(e: etcd_client::Error) -> DiscoveryError {
    DiscoveryError::Etcd(e.to_string())
}

/// The current entries, and the revision they were read at.
async fn list(client: &mut Client, nodes: &EtcdNodes) -> Result<(BTreeSet<String>, i64), etcd_client::Error> {
    let resp = client.get(nodes.key_prefix.as_str(), Some(GetOptions::new().with_prefix())).await?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let entries = resp
        .kvs()
        .iter()
        .filter_map(|kv| kv.key_str().ok().and_then(|k| k.strip_prefix(nodes.key_prefix.as_str())).map(str::to_string))
        .filter(|a| !a.is_empty())
        .collect();
    Ok((entries, revision))
}

/// Reads the entries once (`swarm list`).
pub async fn fetch(nodes: &EtcdNodes) -> Result<BTreeSet<String>, DiscoveryError> {
    let members = EtcdMembers::new(&nodes.endpoints, nodes.tls.clone());
    let (entries, _) = members.call(|mut c| async move { list(&mut c, nodes).await }).await?;
    Ok(entries)
}

/// Lists, then follows changes; on any failure waits and starts over with a fresh list from the
/// next member. The receiver keeps the previous set until a new one arrives.
pub async fn watch(nodes: EtcdNodes, tx: mpsc::Sender<DiscoveryEvent>) {
    let members = EtcdMembers::new(&nodes.endpoints, nodes.tls.clone());
    let mut backoff = crate::backoff::Backoff::new(Duration::from_millis(250), MAX_BACKOFF);
    let mut last: Option<BTreeSet<String>> = None;
    loop {
        let outcome = members
            .session(|member| follow(member.client, &nodes, &tx, &mut last))
            .await
            .map_err(DiscoveryError::from)
            .and_then(|watched| watched);
        if tx.is_closed() {
            return;
        }
        if let Err(e) = outcome {
            warn!(error = %e, "etcd watch failed; keeping the last known engines.");
            if tx.send(DiscoveryEvent::Failed(e)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = tx.closed() => return,
        }
    }
}

async fn follow(
    mut client: Client,
    nodes: &EtcdNodes,
    tx: &mpsc::Sender<DiscoveryEvent>,
    last: &mut Option<BTreeSet<String>>,
) -> Result<(), DiscoveryError> {
    let (mut entries, revision) = list(&mut client, nodes).await.map_err(failed)?;
    if last.as_ref() != Some(&entries) {
        *last = Some(entries.clone());
        if tx.send(DiscoveryEvent::Entries(entries.clone())).await.is_err() {
            return Ok(());
        }
    }
    let opts = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
    let mut stream = client.watch(nodes.key_prefix.as_str(), Some(opts)).await.map_err(failed)?;
    loop {
        let msg = tokio::select! {
            m = stream.message() => m.map_err(failed)?,
            _ = tx.closed() => return Ok(()),
        };
        let Some(resp) = msg else { return Err(DiscoveryError::Etcd("watch stream ended".into())) };
        if resp.canceled() {
            return Err(DiscoveryError::Etcd(format!("watch canceled: {}", resp.cancel_reason())));
        }
        for ev in resp.events() {
            let Some(addr) =
                ev.kv().and_then(|kv| kv.key_str().ok()).and_then(|k| k.strip_prefix(nodes.key_prefix.as_str()))
            else {
                continue;
            };
            match ev.event_type() {
                EventType::Put => entries.insert(addr.to_string()),
                EventType::Delete => entries.remove(addr),
            };
        }
        if last.as_ref() != Some(&entries) {
            *last = Some(entries.clone());
            if tx.send(DiscoveryEvent::Entries(entries.clone())).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// Keeps `addr` registered: a lease of `ttl`, renewed every `heartbeat`; a lost lease (etcd
/// restarted from scratch, the join was partitioned past its TTL, or the lease was revoked) or
/// a deleted key is granted and written again. Runs until the process stops.
pub async fn register_forever(
    nodes: EtcdNodes,
    addr: String,
    ttl: Duration,
    heartbeat: Duration,
) -> Result<(), DiscoveryError> {
    let key = nodes.key(&addr);
    let ttl_secs = ttl.as_secs().max(2) as i64;
    let members = EtcdMembers::new(&nodes.endpoints, nodes.tls.clone());
    let mut member: Option<MemberClient> = None;
    let mut lease: Option<i64> = None;
    let renew_bound = (ttl / 4).max(Duration::from_millis(500));
    loop {
        let outcome: Result<(), DiscoveryError> = async {
            if member.is_none() {
                member = Some(members.client_within(renew_bound).await?);
            }
            let c = &mut member.as_mut().expect("connected above").client;
            if let Some(id) = lease {
                // A renewal on a connection to a member that just died can hang: bound it well
                // inside the TTL and start over on the next member. The key is read back too:
                // a key deleted under a live lease would otherwise stay gone.
                let renew = async {
                    match c.lease_keep_alive(id).await {
                        Ok(_) => {}
                        // etcd answered that the lease is gone (expired while no renewal got
                        // through, or revoked): a new one is granted below, on this member.
                        Err(etcd_client::Error::LeaseKeepAliveError(reason)) => {
                            info!(key = %key, lease = id, %reason, "The registration's lease is gone; registering again.");
                            lease = None;
                            return Ok(());
                        }
                        Err(e) => return Err(failed(e)),
                    }
                    match c.get(key.as_str(), Some(GetOptions::new().with_count_only())).await {
                        Ok(r) if r.count() > 0 => {}
                        Ok(_) => {
                            info!(key = %key, "The registration's key is gone; writing it again.");
                            c.put(key.as_str(), addr.as_str(), Some(PutOptions::new().with_lease(id))).await.map_err(failed)?;
                        }
                        Err(e) if crate::etcd::is_transport(&e) => return Err(failed(e)),
                        // Allowed to write but not to read (an etcd role): the renewal is what counts.
                        Err(_) => {}
                    }
                    Ok::<_, DiscoveryError>(())
                };
                tokio::time::timeout(renew_bound, renew)
                    .await
                    .map_err(|_| DiscoveryError::Etcd(format!("lease renewal took over {renew_bound:?}")))??;
            }
            if lease.is_none() {
                // Bounded like the renewal: the registration must be back before the TTL runs out.
                let register = async {
                    let id = c.lease_grant(ttl_secs, None).await.map_err(failed)?.id();
                    c.put(key.as_str(), addr.as_str(), Some(PutOptions::new().with_lease(id))).await.map_err(failed)?;
                    Ok::<_, DiscoveryError>(id)
                };
                let id = tokio::time::timeout(renew_bound, register)
                    .await
                    .map_err(|_| DiscoveryError::Etcd(format!("registration took over {renew_bound:?}")))??;
                lease = Some(id);
                info!(key = %key, ttl = ttl_secs, "Registered on etcd.");
            }
            Ok(())
        }
        .await;
        if let Err(e) = outcome {
            warn!(error = %e, "Registration failed; retrying through the next etcd member.");
            if let Some(used) = member.take() {
                members.failed(&used).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        tokio::time::sleep(heartbeat).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_under_prefix_and_path() {
        let n = EtcdNodes::new(&["a:2379".into()], "swarm", "docker/swarm/nodes", None);
        assert_eq!(n.key("127.0.0.1:2375"), "swarm/docker/swarm/nodes/127.0.0.1:2375");
        assert_eq!(EtcdNodes::new(&[], "", "/x/y/", None).key_prefix, "x/y/");
    }
}

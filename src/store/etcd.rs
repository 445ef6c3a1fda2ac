//! The store on etcd: keys under `<prefix>/docker/swarm/store/`. Every write is a transaction
//! that holds only while this manager's election key still exists with its address, so a
//! leader whose lease lapsed cannot write after its successor started.

use std::time::Duration;

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use futures_util::future::BoxFuture;

use super::{StateStore, StoreError};
use crate::etcd::EtcdMembers;
use crate::leadership::etcd::Fence;
use crate::tls::KvTls;

/// The etcd store.
pub struct EtcdStore {
    members: EtcdMembers,
    root: String,
    advertise: String,
    fence: Fence,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl EtcdStore {
    /// A store under `prefix`, writing while `fence` names this manager's election key.
    pub fn new(endpoints: Vec<String>, tls: Option<KvTls>, prefix: &str, advertise: &str, fence: Fence) -> EtcdStore {
        let root =
            [prefix, "docker/swarm/store/"].iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join("/");
        EtcdStore { members: EtcdMembers::new(&endpoints, tls), root, advertise: advertise.to_string(), fence }
    }

    /// Runs `op` only while this manager holds its election key. Repeating it on another
    /// member after a lost reply is safe: puts and deletes are idempotent.
    async fn fenced(&self, op: TxnOp) -> Result<(), StoreError> {
        let fence = self.fence.lock().clone().ok_or(StoreError::NotLeader)?;
        let txn = Txn::new().when([Compare::value(fence, CompareOp::Equal, self.advertise.as_str())]).and_then([op]);
        let resp = self
            .members
            .call(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await
            .map_err(backend)?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(StoreError::NotLeader)
        }
    }
}

impl StateStore for EtcdStore {
    fn put(&self, key: String, value: Vec<u8>, ttl: Option<Duration>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let mut opts = None;
            if let Some(ttl) = ttl {
                let secs = ttl.as_secs().max(1) as i64;
                let lease =
                    self.members.call(|mut c| async move { c.lease_grant(secs, None).await }).await.map_err(backend)?;
                opts = Some(PutOptions::new().with_lease(lease.id()));
            }
            self.fenced(TxnOp::put(format!("{}{key}", self.root), value, opts)).await
        })
    }

    fn delete(&self, key: String) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.fenced(TxnOp::delete(format!("{}{key}", self.root), None)).await })
    }

    fn list(&self, prefix: String) -> BoxFuture<'_, Result<super::Entries, StoreError>> {
        Box::pin(async move {
            let key = format!("{}{prefix}", self.root);
            let resp = self
                .members
                .call(|mut c| {
                    let key = key.clone();
                    async move { c.get(key, Some(GetOptions::new().with_prefix())).await }
                })
                .await
                .map_err(backend)?;
            Ok(resp
                .kvs()
                .iter()
                .filter_map(|kv| {
                    let key = kv.key_str().ok()?.strip_prefix(self.root.as_str())?.to_string();
                    Some((key, kv.value().to_vec()))
                })
                .collect())
        })
    }
}

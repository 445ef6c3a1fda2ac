//! The store on etcd: keys under `<prefix>/docker/swarm/store/`. Every write is a transaction
//! that holds only while this manager's election key still exists with its address, so a
//! leader whose lease lapsed cannot write after its successor started.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use futures_util::future::BoxFuture;
use parking_lot::Mutex;

use super::{StateStore, StoreError};
use crate::discovery::etcd::connect_client;
use crate::discovery::url::KvTls;

/// The election key this manager holds while it leads (set by the election, cleared on loss).
pub type Fence = Arc<Mutex<Option<Vec<u8>>>>;

/// The etcd store.
pub struct EtcdStore {
    endpoints: Vec<String>,
    tls: Option<KvTls>,
    root: String,
    advertise: String,
    fence: Fence,
    client: tokio::sync::Mutex<Option<Client>>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl EtcdStore {
    /// A store under `prefix`, writing while `fence` names this manager's election key.
    pub fn new(endpoints: Vec<String>, tls: Option<KvTls>, prefix: &str, advertise: &str, fence: Fence) -> EtcdStore {
        let root = [prefix, "docker/swarm/store/"].iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join("/");
        EtcdStore { endpoints, tls, root, advertise: advertise.to_string(), fence, client: tokio::sync::Mutex::new(None) }
    }

    async fn client(&self) -> Result<Client, StoreError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let c = connect_client(&self.endpoints, self.tls.as_ref()).await.map_err(backend)?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs `op` only while this manager holds its election key.
    async fn fenced(&self, op: TxnOp) -> Result<(), StoreError> {
        let fence = self.fence.lock().clone().ok_or(StoreError::NotLeader)?;
        let mut client = self.client().await?;
        let txn = Txn::new().when([Compare::value(fence, CompareOp::Equal, self.advertise.as_str())]).and_then([op]);
        let resp = client.txn(txn).await.map_err(backend)?;
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
                let mut client = self.client().await?;
                let lease = client.lease_grant(ttl.as_secs().max(1) as i64, None).await.map_err(backend)?;
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
            let mut client = self.client().await?;
            let resp = client.get(format!("{}{prefix}", self.root), Some(GetOptions::new().with_prefix())).await.map_err(backend)?;
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

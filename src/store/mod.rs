//! The replicated store: cluster metadata that engines cannot hold (the node registry, creates
//! in flight, reschedules in progress). One interface, three backends:
//!
//! - `etcd`: keys under the discovery prefix; writes are fenced on the leader key, so a deposed
//!   leader cannot write.
//! - `raft`: the embedded Raft state machine; only the Raft leader can write.
//! - `local`: a single manager without replication keeps it in memory.

pub mod etcd;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use parking_lot::Mutex;

use crate::leadership::raft::{Command, RaftFailure, RaftNode};

/// Store failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Only the leader writes, and this manager is not (or no longer) it.
    #[error("this manager is not the primary")]
    NotLeader,
    /// The backend failed.
    #[error("store: {0}")]
    Backend(String),
}

/// Entries as listed: key (without the prefix's root) and value.
pub type Entries = Vec<(String, Vec<u8>)>;

/// Keys and values of cluster metadata.
pub trait StateStore: Send + Sync {
    /// Writes `value` at `key`; with a `ttl` it lapses unless written again.
    fn put(&self, key: String, value: Vec<u8>, ttl: Option<Duration>) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Removes `key` (absent is fine).
    fn delete(&self, key: String) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Every live entry under `prefix`, in key order.
    fn list(&self, prefix: String) -> BoxFuture<'_, Result<Entries, StoreError>>;
    /// Whether [`StateStore::list`] reads everything committed so far (a Raft member that has
    /// just started has not applied its log yet).
    fn is_current(&self) -> bool {
        true
    }
    /// A number that grows with every change of a local copy, when the store has one: what is
    /// read from it can be re-read only after a change.
    fn generation(&self) -> Option<u64> {
        None
    }
}

/// A shared store.
pub type Store = Arc<dyn StateStore>;

/// The store of a single manager: in memory, gone with the process (the engines' labels
/// still rebuild containers).
#[derive(Default)]
pub struct LocalStore {
    /// Value and expiry by key.
    map: Mutex<BTreeMap<String, Expiring>>,
}

type Expiring = (Vec<u8>, Option<Instant>);

impl StateStore for LocalStore {
    fn put(&self, key: String, value: Vec<u8>, ttl: Option<Duration>) -> BoxFuture<'_, Result<(), StoreError>> {
        self.map.lock().insert(key, (value, ttl.map(|t| Instant::now() + t)));
        Box::pin(async { Ok(()) })
    }

    fn delete(&self, key: String) -> BoxFuture<'_, Result<(), StoreError>> {
        self.map.lock().remove(&key);
        Box::pin(async { Ok(()) })
    }

    fn list(&self, prefix: String) -> BoxFuture<'_, Result<Entries, StoreError>> {
        let now = Instant::now();
        let mut map = self.map.lock();
        map.retain(|_, (_, exp)| exp.is_none_or(|e| e > now));
        let found = map
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect();
        Box::pin(async { Ok(found) })
    }
}

/// The embedded Raft's map as a store.
pub struct RaftStore(pub RaftNode);

fn raft_err(e: RaftFailure) -> StoreError {
    match e {
        RaftFailure::NotLeader => StoreError::NotLeader,
        other => StoreError::Backend(other.to_string()),
    }
}

impl StateStore for RaftStore {
    fn put(&self, key: String, value: Vec<u8>, ttl: Option<Duration>) -> BoxFuture<'_, Result<(), StoreError>> {
        let expires_ms = ttl.map(|t| crate::leadership::raft::now_ms() + t.as_millis() as u64);
        Box::pin(
            async move { self.0.write(Command::Put { key, value, expires_ms }).await.map(|_| ()).map_err(raft_err) },
        )
    }

    fn delete(&self, key: String) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { self.0.write(Command::Delete { key }).await.map(|_| ()).map_err(raft_err) })
    }

    fn list(&self, prefix: String) -> BoxFuture<'_, Result<Entries, StoreError>> {
        let found = self.0.list(&prefix);
        Box::pin(async { Ok(found) })
    }

    fn is_current(&self) -> bool {
        self.0.caught_up()
    }

    fn generation(&self) -> Option<u64> {
        Some(self.0.generation())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_lists_by_prefix_and_expires() {
        let s = LocalStore::default();
        s.put("creates/a".into(), b"1".to_vec(), None).await.unwrap();
        s.put("creates/b".into(), b"2".to_vec(), Some(Duration::from_millis(1))).await.unwrap();
        s.put("nodes/x".into(), b"3".to_vec(), None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let keys: Vec<String> = s.list("creates/".into()).await.unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["creates/a"]);
        s.delete("creates/a".into()).await.unwrap();
        assert!(s.list("creates/".into()).await.unwrap().is_empty());
    }
}

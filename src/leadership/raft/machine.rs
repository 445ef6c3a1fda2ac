//! The replicated state machine: a small key-value map of cluster metadata (node registry,
//! creates in flight, reschedules), with optional expiry. Entries expire on the leader's clock:
//! the writer stamps the expiry time and readers filter on it, so applying stays deterministic.
//! Snapshots are written to disk whole; with the log they bound what a restart replays.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, StorageError, StorageIOError, StoredMembership,
};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::log::{blocking, replace_file};
use super::{codec, NodeId, TypeConfig};

type Entry = openraft::Entry<TypeConfig>;
type Node = openraft::BasicNode;

/// A write to the replicated map.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// Sets `key`; with `expires_ms` (milliseconds since the epoch) it lapses unless written again.
    Put {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
        /// Expiry on the writer's clock.
        expires_ms: Option<u64>,
    },
    /// Removes `key`.
    Delete {
        /// Key.
        key: String,
    },
    /// Drops every entry that expired at or before `now_ms`.
    Expire {
        /// The leader's clock.
        now_ms: u64,
    },
}

/// What a command did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the map changed.
    pub changed: bool,
}

/// One value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Value {
    /// Bytes as written.
    pub bytes: Vec<u8>,
    /// Expiry, milliseconds since the epoch.
    pub expires_ms: Option<u64>,
}

/// The map.
pub type Map = BTreeMap<String, Value>;

/// State shared between the Raft core and readers.
#[derive(Default)]
pub struct Shared {
    /// The map.
    pub map: Map,
    /// Grows with every change of the map, so that readers re-read only after one.
    pub generation: u64,
    applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Node>,
}

impl Shared {
    /// The last log index applied to the map.
    pub fn applied_index(&self) -> u64 {
        self.applied.map_or(0, |l| l.index)
    }

    fn apply(&mut self, cmd: &Command) -> Reply {
        let changed = apply_to(&mut self.map, cmd);
        self.generation += u64::from(changed);
        Reply { changed }
    }
}

/// Applies `cmd` to `map`; whether it changed.
pub fn apply_to(map: &mut Map, cmd: &Command) -> bool {
    match cmd {
        Command::Put { key, value, expires_ms } => {
            let v = Value { bytes: value.clone(), expires_ms: *expires_ms };
            map.insert(key.clone(), v.clone()) != Some(v)
        }
        Command::Delete { key } => map.remove(key).is_some(),
        Command::Expire { now_ms } => {
            let before = map.len();
            map.retain(|_, v| v.expires_ms.is_none_or(|e| e > *now_ms));
            map.len() != before
        }
    }
}

/// The members of the group in the snapshot under `dir`, if any, and the snapshot's index.
pub fn snapshot_members(dir: &Path) -> std::io::Result<Option<(u64, std::collections::BTreeSet<String>)>> {
    match std::fs::read(dir.join("snapshot")) {
        Ok(bytes) => {
            let snap: StoredSnapshot = codec::decode(&bytes).map_err(std::io::Error::other)?;
            let m = &snap.meta.last_membership;
            Ok(m.log_id().map(|l| (l.index, m.membership().nodes().map(|(_, n)| n.addr.clone()).collect())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The snapshot file under `dir`, if any: its map and the last entry it holds.
pub fn read_snapshot(dir: &Path) -> std::io::Result<Option<(Map, Option<LogId<NodeId>>)>> {
    match std::fs::read(dir.join("snapshot")) {
        Ok(bytes) => {
            let snap: StoredSnapshot = codec::decode(&bytes).map_err(std::io::Error::other)?;
            let map = codec::decode(&snap.data).map_err(std::io::Error::other)?;
            Ok(Some((map, snap.meta.last_log_id)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes a snapshot under `dir` holding `map` up to `last`, in a group of `members`.
pub fn write_snapshot(
    dir: &Path,
    map: &Map,
    last: LogId<NodeId>,
    members: BTreeMap<NodeId, Node>,
) -> std::io::Result<()> {
    let voters = members.keys().copied().collect();
    let membership = StoredMembership::new(Some(last), openraft::Membership::new(vec![voters], members));
    let meta = SnapshotMeta {
        last_log_id: Some(last),
        last_membership: membership,
        snapshot_id: format!("restored-{}", last.index),
    };
    let data = codec::encode(map).map_err(std::io::Error::other)?;
    let bytes = codec::encode(&StoredSnapshot { meta, data }).map_err(std::io::Error::other)?;
    replace_file(&dir.join("snapshot"), &bytes)
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Node>,
    data: Vec<u8>,
}

/// The state machine; clones share state.
#[derive(Clone)]
pub struct Machine {
    shared: Arc<RwLock<Shared>>,
    dir: PathBuf,
    current: Arc<RwLock<Option<StoredSnapshot>>>,
}

fn sm_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(openraft::AnyError::new(&e)).into()
}

impl Machine {
    /// Opens the machine under `dir`, starting from the snapshot there if any.
    pub fn open(dir: &Path) -> std::io::Result<Machine> {
        std::fs::create_dir_all(dir)?;
        let mut shared = Shared::default();
        let mut current = None;
        match std::fs::read(dir.join("snapshot")) {
            Ok(bytes) => {
                let snap: StoredSnapshot = codec::decode(&bytes).map_err(std::io::Error::other)?;
                shared.map = codec::decode(&snap.data).map_err(std::io::Error::other)?;
                shared.applied = snap.meta.last_log_id;
                shared.membership = snap.meta.last_membership.clone();
                current = Some(snap);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(Machine {
            shared: Arc::new(RwLock::new(shared)),
            dir: dir.to_path_buf(),
            current: Arc::new(RwLock::new(current)),
        })
    }

    /// The shared state, for readers.
    pub fn shared(&self) -> Arc<RwLock<Shared>> {
        self.shared.clone()
    }

    /// Writes a snapshot to disk on a blocking thread (a large map must not hold the thread
    /// Raft's heartbeats run on), then keeps it as the current one.
    async fn save(&self, snap: StoredSnapshot) -> Result<(), StorageError<NodeId>> {
        let path = self.dir.join("snapshot");
        let snap = blocking(move || {
            let bytes = codec::encode(&snap).map_err(std::io::Error::other)?;
            replace_file(&path, &bytes)?;
            Ok(snap)
        })
        .await
        .map_err(sm_err)?;
        *self.current.write() = Some(snap);
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for Machine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (data, applied, membership) = {
            let s = self.shared.read();
            (codec::encode(&s.map).map_err(sm_err)?, s.applied, s.membership.clone())
        };
        let id = applied.map_or_else(|| "none".to_string(), |l| format!("{}-{}", l.leader_id, l.index));
        let meta = SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id: id };
        self.save(StoredSnapshot { meta: meta.clone(), data: data.clone() }).await?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for Machine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>), StorageError<NodeId>> {
        let s = self.shared.read();
        Ok((s.applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut s = self.shared.write();
        let mut replies = Vec::new();
        for e in entries {
            s.applied = Some(e.log_id);
            // One reply per entry, blank and membership entries included.
            replies.push(match &e.payload {
                EntryPayload::Blank => Reply::default(),
                EntryPayload::Normal(cmd) => s.apply(cmd),
                EntryPayload::Membership(m) => {
                    s.membership = StoredMembership::new(Some(e.log_id), m.clone());
                    Reply::default()
                }
            });
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let map: Map = codec::decode(&data).map_err(sm_err)?;
        {
            let mut s = self.shared.write();
            s.map = map;
            s.generation += 1;
            s.applied = meta.last_log_id;
            s.membership = meta.last_membership.clone();
        }
        self.save(StoredSnapshot { meta: meta.clone(), data }).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self
            .current
            .read()
            .as_ref()
            .map(|s| Snapshot { meta: s.meta.clone(), snapshot: Box::new(Cursor::new(s.data.clone())) }))
    }
}

/// The writes that give each entry `renewal` names a lease for (its key and bytes) at least
/// that lease from `now_ms`.
pub fn renewals(map: &Map, now_ms: u64, renewal: fn(&str, &[u8]) -> Option<std::time::Duration>) -> Vec<Command> {
    map.iter()
        .filter_map(|(key, v)| {
            let expires = v.expires_ms?;
            let until = now_ms + renewal(key, &v.bytes)?.as_millis() as u64;
            (expires < until).then(|| Command::Put {
                key: key.clone(),
                value: v.bytes.clone(),
                expires_ms: Some(until),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_gives_leased_entries_their_lease_again_and_nothing_else() {
        let mut s = Shared::default();
        let put = |k: &str, e| Command::Put { key: k.into(), value: b"v".to_vec(), expires_ms: e };
        s.apply(&put("lease/lapsed", Some(50)));
        s.apply(&put("lease/long", Some(10_000)));
        s.apply(&put("lease/forever", None));
        s.apply(&put("other/lapsed", Some(50)));
        let lease = |k: &str, _: &[u8]| k.starts_with("lease/").then(|| std::time::Duration::from_millis(1000));
        let cmds = renewals(&s.map, 100, lease);
        assert_eq!(cmds.len(), 1, "{cmds:?}");
        for c in &cmds {
            s.apply(c);
        }
        assert_eq!(s.map["lease/lapsed"].expires_ms, Some(1100));
        assert_eq!(s.map["lease/long"].expires_ms, Some(10_000));
        s.apply(&Command::Expire { now_ms: 100 });
        assert!(!s.map.contains_key("other/lapsed"));
        assert!(s.map.contains_key("lease/lapsed"));
    }

    #[test]
    fn expiry_and_deletes_apply_deterministically() {
        let mut s = Shared::default();
        let put = |k: &str, e| Command::Put { key: k.into(), value: b"v".to_vec(), expires_ms: e };
        assert!(s.apply(&put("a", Some(100))).changed);
        assert!(!s.apply(&put("a", Some(100))).changed);
        assert!(s.apply(&put("b", None)).changed);
        assert!(!s.apply(&Command::Expire { now_ms: 99 }).changed);
        assert!(s.apply(&Command::Expire { now_ms: 100 }).changed);
        assert_eq!(s.map.keys().collect::<Vec<_>>(), ["b"]);
        assert!(s.apply(&Command::Delete { key: "b".into() }).changed);
        assert!(s.map.is_empty());
    }
}

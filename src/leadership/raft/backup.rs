//! Backups of the replicated map, as etcd's `snapshot save` and `restore` make them: a portable
//! file (JSON, with a SHA-256 of its entries), taken from a running group or from a stopped
//! member's data directory, and restored into the empty data directories of a new group. The
//! way out of a lost quorum is the same: save from a survivor's directory, restore, start anew.

use std::collections::BTreeMap;
use std::path::Path;

use openraft::{BasicNode, CommittedLeaderId, EntryPayload, LogId};
use serde::{Deserialize, Serialize};

use super::machine::{self, Map, Value};
use super::{datadir, log, node_id};

/// The layout of the file this build writes and reads.
pub const FORMAT: u32 = 1;

/// A backup of the map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Backup {
    /// [`FORMAT`].
    pub format: u32,
    /// The last log index the map holds.
    pub index: u64,
    /// Every entry, in key order.
    pub entries: Vec<BackupEntry>,
    /// SHA-256 of the entries' JSON, hex.
    pub sha256: String,
}

/// One entry of the map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackupEntry {
    /// Key.
    pub key: String,
    /// Value bytes, hex.
    pub value: String,
    /// Expiry, milliseconds since the epoch.
    pub expires_ms: Option<u64>,
}

/// Why a backup cannot be made or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The file is not a backup this build reads.
    #[error("not a swarm snapshot: {0}")]
    Invalid(String),
    /// The restore target holds a member already.
    #[error("{0} already holds a Raft member: restore into an empty --data-dir")]
    NotEmpty(String),
    /// The data directory cannot be used.
    #[error(transparent)]
    DataDir(#[from] datadir::DataDirError),
}

fn digest(entries: &[BackupEntry]) -> String {
    let json = serde_json::to_vec(entries).unwrap_or_default();
    hex::encode(ring::digest::digest(&ring::digest::SHA256, &json))
}

impl Backup {
    /// A backup of `map`, which holds the log up to `index`.
    pub fn of_map(map: &Map, index: u64) -> Backup {
        let entries: Vec<BackupEntry> = map
            .iter()
            .map(|(k, v)| BackupEntry { key: k.clone(), value: hex::encode(&v.bytes), expires_ms: v.expires_ms })
            .collect();
        Backup { format: FORMAT, index, sha256: digest(&entries), entries }
    }

    /// Reads a backup file's bytes, checking its format and checksum.
    pub fn decode(bytes: &[u8]) -> Result<Backup, BackupError> {
        let b: Backup = serde_json::from_slice(bytes).map_err(|e| BackupError::Invalid(e.to_string()))?;
        if b.format != FORMAT {
            return Err(BackupError::Invalid(format!("format {}, this swarm reads {FORMAT}", b.format)));
        }
        if digest(&b.entries) != b.sha256 {
            return Err(BackupError::Invalid("its SHA-256 does not match its entries (a damaged file)".into()));
        }
        Ok(b)
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// The map it holds.
    pub fn to_map(&self) -> Result<Map, BackupError> {
        self.entries
            .iter()
            .map(|e| {
                let bytes = hex::decode(&e.value).map_err(|x| BackupError::Invalid(format!("{}: {x}", e.key)))?;
                Ok((e.key.clone(), Value { bytes, expires_ms: e.expires_ms }))
            })
            .collect()
    }
}

/// What a stopped member's directory holds.
#[derive(Debug)]
pub struct ReadBack {
    /// The backup of its map: its snapshot and the committed entries of its log after it.
    pub backup: Backup,
    /// Entries in its log that it did not know committed, left out.
    pub uncommitted: usize,
}

/// Reads the map a stopped member's data directory (`--data-dir`) holds, without changing it.
pub fn read_stopped(data_dir: &Path) -> Result<ReadBack, BackupError> {
    let dir = data_dir.join("raft");
    if !dir.join("log").exists() && !dir.join("snapshot").exists() {
        return Err(BackupError::Invalid(format!("{} holds no Raft member", dir.display())));
    }
    datadir::check(&dir, None)?;
    // Held while reading: no manager starts on the directory meanwhile.
    let _lock = datadir::lock(&dir)?;
    let (mut map, mut applied) = machine::read_snapshot(&dir)?.unwrap_or_default();
    let replayed = log::replay(&dir)?;
    // The log must continue where the snapshot ends: a gap would lose entries silently.
    let first_kept = replayed.entries.keys().next().copied();
    let snapshot_end = applied.map_or(0, |a| a.index);
    if first_kept.is_some_and(|first| first > snapshot_end + 1) {
        return Err(BackupError::Invalid(format!(
            "{}: the log starts at index {}, after the snapshot's end ({snapshot_end})",
            dir.display(),
            first_kept.unwrap_or_default()
        )));
    }
    let committed = replayed.committed.map_or(0, |c| c.index);
    let mut uncommitted = 0;
    for (index, entry) in &replayed.entries {
        if Some(*index) <= applied.map(|a| a.index) {
            continue;
        }
        if *index > committed {
            uncommitted += 1;
            continue;
        }
        if let EntryPayload::Normal(cmd) = &entry.payload {
            machine::apply_to(&mut map, cmd);
        }
        applied = Some(entry.log_id);
    }
    Ok(ReadBack { backup: Backup::of_map(&map, applied.map_or(0, |a| a.index)), uncommitted })
}

/// Writes a new member's data directory (`--data-dir`, empty) holding `backup`, in a new group
/// of `peers`: every member of the new group is restored from the same backup, then started.
pub fn restore(data_dir: &Path, advertise: &str, peers: &[String], backup: &Backup) -> Result<(), BackupError> {
    let dir = data_dir.join("raft");
    if dir.join("log").exists() || dir.join("snapshot").exists() {
        return Err(BackupError::NotEmpty(data_dir.display().to_string()));
    }
    if !peers.iter().any(|p| p == advertise) {
        return Err(BackupError::Invalid(format!("--advertise {advertise} is not among --replication-peers")));
    }
    let map = backup.to_map()?;
    let _lock = datadir::prepare(&dir, advertise)?;
    // The same last entry in every restored member, in term 0 as the entry a new group's
    // initialization writes: any leader the new group elects (term 1 on) is past it.
    let last = LogId::new(CommittedLeaderId::new(0, 0), backup.index.max(1));
    let members: BTreeMap<u64, BasicNode> = peers.iter().map(|p| (node_id(p), BasicNode { addr: p.clone() })).collect();
    machine::write_snapshot(&dir, &map, last, members)?;
    log::write_purged(&dir, last)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_round_trips_and_a_damaged_one_is_refused() {
        let mut map = Map::new();
        map.insert("nodes/a:1".into(), Value { bytes: br#"{"ttl_s":20}"#.to_vec(), expires_ms: Some(7) });
        map.insert("creates/x".into(), Value { bytes: vec![0, 1, 255], expires_ms: None });
        let b = Backup::of_map(&map, 42);
        let read = Backup::decode(&b.encode()).unwrap();
        assert_eq!(read, b);
        assert_eq!(read.to_map().unwrap(), map);
        let damaged = String::from_utf8(b.encode()).unwrap().replace("0001ff", "0002ff");
        assert!(Backup::decode(damaged.as_bytes()).unwrap_err().to_string().contains("does not match"));
    }

    #[test]
    fn a_restored_directory_reads_back_the_same_map_and_refuses_a_second_restore() {
        let root = tempfile::tempdir().unwrap();
        let mut map = Map::new();
        map.insert("nodes/a:1".into(), Value { bytes: b"{}".to_vec(), expires_ms: None });
        let b = Backup::of_map(&map, 9);
        let peers = ["127.0.0.1:1".to_string(), "127.0.0.1:2".to_string()];
        restore(root.path(), "127.0.0.1:1", &peers, &b).unwrap();
        let back = read_stopped(root.path()).unwrap();
        assert_eq!(back.backup.to_map().unwrap(), map);
        assert_eq!(back.uncommitted, 0);
        assert!(matches!(restore(root.path(), "127.0.0.1:1", &peers, &b), Err(BackupError::NotEmpty(_))));
        let elsewhere = tempfile::tempdir().unwrap();
        assert!(restore(elsewhere.path(), "127.0.0.1:3", &peers, &b).is_err(), "not among the peers");
    }
}

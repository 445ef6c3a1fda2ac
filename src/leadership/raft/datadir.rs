//! The Raft data directory: readable by the manager's user only (it holds the node registry and
//! the records of creates in flight), and marked with its format and its member, both checked
//! at start so that a newer layout or another manager's directory is refused, not misread.

use std::collections::BTreeSet;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The layout this build reads and writes. Directories written before it was recorded (no
/// `meta.json`) have the same layout and are marked on their first start.
pub const FORMAT: u32 = 1;

/// Mode of the directory and of every file in it.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file in the directory.
pub const FILE_MODE: u32 = 0o600;

const META: &str = "meta.json";

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Meta {
    /// [`FORMAT`] when written.
    format: u32,
    /// The advertise address of the member that owns the directory.
    member: String,
}

/// Why a data directory cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Written by a newer swarm.
    #[error("the data directory has format {found}, newer than this swarm reads ({FORMAT}): run the swarm that wrote it, or restore a snapshot into an empty directory")]
    Newer {
        /// Its format.
        found: u32,
    },
    /// Another member's directory.
    #[error("the data directory belongs to the manager advertised as {owner}, not {advertise}: give each manager its own --data-dir")]
    OtherMember {
        /// Who owns it.
        owner: String,
        /// This manager.
        advertise: String,
    },
    /// A running manager holds it.
    #[error("a running manager holds the data directory (its lock): stop it first")]
    InUse,
    /// `meta.json` does not parse.
    #[error("{path}: {detail}")]
    BadMeta {
        /// The file.
        path: String,
        /// Why.
        detail: String,
    },
}

/// Checks `dir`'s mark, if it has one, without changing anything: a directory of another
/// member (with `advertise`) or of a newer format is refused.
pub fn check(dir: &Path, advertise: Option<&str>) -> Result<(), DataDirError> {
    let path = dir.join(META);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let meta: Meta = serde_json::from_slice(&bytes)
        .map_err(|e| DataDirError::BadMeta { path: path.display().to_string(), detail: e.to_string() })?;
    if meta.format > FORMAT {
        return Err(DataDirError::Newer { found: meta.format });
    }
    match advertise {
        Some(a) if meta.member != a => Err(DataDirError::OtherMember { owner: meta.member, advertise: a.to_string() }),
        _ => Ok(()),
    }
}

/// Makes `dir` private (0700, its files 0600), checks or writes its mark, and locks it for as
/// long as the returned file lives, so that no second process uses it meanwhile.
pub fn prepare(dir: &Path, advertise: &str) -> Result<std::fs::File, DataDirError> {
    std::fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)?;
    let lock = lock(dir)?;
    tighten(dir)?;
    check(dir, Some(advertise))?;
    let path = dir.join(META);
    if !path.exists() {
        let meta = Meta { format: FORMAT, member: advertise.to_string() };
        let bytes = serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other)?;
        super::log::replace_file(&path, &bytes)?;
    }
    Ok(lock)
}

/// Takes `dir`'s lock (`lock`, 0600) without waiting: held by a running manager, it is refused.
pub fn lock(dir: &Path) -> Result<std::fs::File, DataDirError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).mode(FILE_MODE).open(dir.join("lock"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(DataDirError::InUse),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// Takes group and other permissions off `dir` and its files (written by an older swarm with
/// the process umask).
fn tighten(dir: &Path) -> std::io::Result<()> {
    let private = |path: &Path, mode: u32| -> std::io::Result<()> {
        let now = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if now & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    };
    private(dir, DIR_MODE)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            private(&entry.path(), FILE_MODE)?;
        }
    }
    Ok(())
}

/// Why `--replication-peers` cannot be taken as given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeersError {
    /// The directory's group has other members than the flag lists; the flag would be ignored.
    #[error("--replication-peers lists {given}, but this member's data directory holds a group of {stored}; a group's members change only with `swarm members add/remove`: start with --replication-peers {stored}, or without --replication-peers")]
    Ignored {
        /// The flag, sorted.
        given: String,
        /// The members the directory holds, sorted.
        stored: String,
    },
    /// A new group needs its members.
    #[error("--replication-peers is required to start a new group: the data directory holds none")]
    Missing,
}

/// Checks the flag against the members the directory holds (`None`: it holds no group).
pub fn check_peers(given: &[String], stored: Option<&BTreeSet<String>>) -> Result<(), PeersError> {
    let given_set: BTreeSet<String> = given.iter().cloned().collect();
    match stored {
        None if given.is_empty() => Err(PeersError::Missing),
        Some(stored) if !given.is_empty() && *stored != given_set => Err(PeersError::Ignored {
            given: given_set.into_iter().collect::<Vec<_>>().join(","),
            stored: stored.iter().cloned().collect::<Vec<_>>().join(","),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_directory_is_made_private_and_marked_and_refused_to_another_member_or_a_newer_format() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("raft");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("log"), b"x").unwrap();
        std::fs::set_permissions(dir.join("log"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let held = prepare(&dir, "a:1").unwrap();
        assert!(matches!(lock(&dir), Err(DataDirError::InUse)), "a second user of the directory is refused");
        drop(held);
        assert_eq!(mode(&dir), DIR_MODE);
        assert_eq!(mode(&dir.join("log")), FILE_MODE);
        assert_eq!(mode(&dir.join(META)), FILE_MODE);
        prepare(&dir, "a:1").expect("its own member starts again");
        let other = prepare(&dir, "b:1").unwrap_err();
        assert!(matches!(other, DataDirError::OtherMember { .. }), "{other}");
        std::fs::write(dir.join(META), br#"{"format": 2, "member": "a:1"}"#).unwrap();
        let newer = prepare(&dir, "a:1").unwrap_err();
        assert!(matches!(newer, DataDirError::Newer { found: 2 }), "{newer}");
    }

    #[test]
    fn peers_that_would_be_ignored_are_refused() {
        let list = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let group: BTreeSet<String> = list(&["a:1", "b:1", "c:1"]).into_iter().collect();
        assert_eq!(check_peers(&list(&["c:1", "a:1", "b:1"]), Some(&group)), Ok(()), "order does not matter");
        assert_eq!(check_peers(&[], Some(&group)), Ok(()), "a member of a group needs no list");
        assert_eq!(check_peers(&list(&["a:1"]), None), Ok(()), "a new group");
        assert_eq!(check_peers(&[], None), Err(PeersError::Missing));
        let ignored = check_peers(&list(&["a:1", "b:1"]), Some(&group)).unwrap_err();
        assert!(ignored.to_string().contains("holds a group of a:1,b:1,c:1"), "{ignored}");
    }
}

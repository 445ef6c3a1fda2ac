//! `swarm snapshot`: backups of an embedded-Raft group's replicated state (the node registry,
//! creates in flight, reschedules), saved from a running group or a stopped member's data
//! directory, and restored into the data directories of a new group.

use std::path::Path;

use http::Method;

use super::{AdminError, Caller};
use crate::cli::{SnapshotAction, SnapshotArgs};
use crate::config::ConfigError;
use crate::leadership::raft::backup::{self, Backup, BackupError};

impl From<BackupError> for AdminError {
    fn from(e: BackupError) -> Self {
        AdminError::Refused(e.to_string())
    }
}

/// Runs `swarm snapshot ...`.
pub async fn run(args: &SnapshotArgs) -> Result<(), AdminError> {
    match &args.action {
        SnapshotAction::Save { file, data_dir: Some(dir), .. } => {
            let read = backup::read_stopped(Path::new(dir))?;
            write(file, &read.backup)?;
            if read.uncommitted > 0 {
                println!(
                    "Left out {} log entries that member did not know committed: the group may not have kept them.",
                    read.uncommitted
                );
            }
            Ok(())
        }
        SnapshotAction::Save { file, data_dir: None, manager, cluster_secret_file, timeout, tls } => {
            let manager = manager.as_deref().ok_or_else(|| ConfigError("give --manager or --data-dir".into()))?;
            let secret = cluster_secret_file
                .as_deref()
                .ok_or_else(|| ConfigError("--cluster-secret-file is required with --manager".into()))?;
            let bound = crate::config::parse_duration(timeout)?;
            let caller = Caller::new(manager, secret, tls)?;
            let bytes = caller
                .call_raw(manager, Method::GET, "/_swarm/snapshot", bound)
                .await
                .map_err(|e| AdminError::Refused(format!("{manager}: {e}")))?;
            write(file, &Backup::decode(&bytes)?)
        }
        SnapshotAction::Restore { file, data_dir, advertise, replication_peers } => {
            let peers: Vec<String> =
                replication_peers.iter().map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect();
            for p in peers.iter().chain([advertise]) {
                if !crate::config::validate_host_port(p) {
                    return Err(ConfigError(format!("\"{p}\" should be of the form ip:port or hostname:port")).into());
                }
            }
            let b = read(file)?;
            backup::restore(Path::new(data_dir), advertise, &peers, &b)?;
            println!(
                "Restored {} entries (log index {}) into {data_dir}: start this manager with --advertise {advertise} --data-dir {data_dir}.",
                b.entries.len(),
                b.index
            );
            Ok(())
        }
        SnapshotAction::Status { file } => {
            let b = read(file)?;
            println!("{}", summary(&b));
            Ok(())
        }
    }
}

fn read(file: &str) -> Result<Backup, AdminError> {
    let bytes = std::fs::read(file).map_err(|e| ConfigError(format!("cannot read {file}: {e}")))?;
    Ok(Backup::decode(&bytes)?)
}

/// Writes `b` to `file` (0600: it holds the registry) and says what it holds.
fn write(file: &str, b: &Backup) -> Result<(), AdminError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |e: std::io::Error| ConfigError(format!("cannot write {file}: {e}"));
    // A new file, renamed over the target: never an older file's mode, never through a link.
    let tmp = format!("{file}.tmp-{}", std::process::id());
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(fail)?;
    let written = f.write_all(&b.encode()).and_then(|()| f.sync_all()).and_then(|()| std::fs::rename(&tmp, file));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e).into());
    }
    println!("Snapshot saved to {file}: {}", summary(b));
    Ok(())
}

fn summary(b: &Backup) -> String {
    let nodes = b.entries.iter().filter(|e| e.key.starts_with(crate::discovery::managers::NODES_PREFIX)).count();
    format!(
        "{} entries ({nodes} engine registrations), log index {}, sha256 {}",
        b.entries.len(),
        b.index,
        &b.sha256[..12.min(b.sha256.len())]
    )
}

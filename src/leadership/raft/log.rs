//! The Raft log and vote on disk. The log is one append-only file of checksummed records
//! (appends, truncations, purges) replayed at start; a purge rewrites it, so the file holds
//! only what follows the last snapshot. The vote is its own small file, replaced atomically.
//! `append` reports completion only after `fsync`, which a thread of its own runs, in order;
//! the vote's, a truncation's and a purge's writes run on tokio's blocking threads. No `fsync`
//! slowed by a busy disk holds the thread Raft's timers and heartbeats run on (openraft 0.9's
//! core still waits for the flush before its next step).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::metrics::{gauge_value, RaftMetrics};
use super::{codec, NodeId, TypeConfig};

type Entry = openraft::Entry<TypeConfig>;

#[derive(Serialize, Deserialize)]
enum Record {
    Append(Entry),
    /// Entries at this index and after are gone (a conflict with the leader's log).
    Truncate(u64),
    /// Entries up to this one are in a snapshot.
    Purge(LogId<NodeId>),
    Committed(Option<LogId<NodeId>>),
}

struct Inner {
    dir: PathBuf,
    file: BufWriter<File>,
    syncer: std::sync::mpsc::Sender<SyncRequest>,
    entries: BTreeMap<u64, Entry>,
    purged: Option<LogId<NodeId>>,
    committed: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    metrics: RaftMetrics,
}

/// Appended records to make durable, then report.
struct SyncRequest {
    file: File,
    done: LogFlushed<TypeConfig>,
}

/// Syncs and reports in the order appended.
fn run_syncer(requests: std::sync::mpsc::Receiver<SyncRequest>, metrics: RaftMetrics) {
    for r in requests {
        r.done.log_io_completed(metrics.timed_sync(|| r.file.sync_data()));
    }
}

/// The log store; clones share one file.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

fn io_err(e: impl std::error::Error + 'static) -> StorageIOError<NodeId> {
    StorageIOError::write_logs(openraft::AnyError::new(&e))
}

/// Appends one record: length, CRC32 of the payload, payload.
fn write_record(out: &mut impl Write, record: &Record) -> std::io::Result<()> {
    let payload = codec::encode(record).map_err(std::io::Error::other)?;
    out.write_all(&(payload.len() as u32).to_le_bytes())?;
    out.write_all(&crc32fast::hash(&payload).to_le_bytes())?;
    out.write_all(&payload)
}

/// Reads records until the end or the first torn or corrupt one (a crash mid-append).
fn read_records(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while bytes.len() >= at + 8 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap_or_default());
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else { break };
        if crc32fast::hash(payload) != crc {
            break;
        }
        match codec::decode::<Record>(payload) {
            Ok(r) => records.push(r),
            Err(_) => break,
        }
        at += 8 + len;
    }
    (records, at)
}

/// Runs file work on tokio's blocking threads.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(std::io::Error::other)?
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers see old or new.
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f =
        OpenOptions::new().write(true).create(true).truncate(true).mode(super::datadir::FILE_MODE).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// What a log file holds, replayed.
pub struct Replayed {
    /// Entries after the last purge.
    pub entries: BTreeMap<u64, Entry>,
    /// The last entry in a snapshot, if any.
    pub purged: Option<LogId<NodeId>>,
    /// The last entry known committed.
    pub committed: Option<LogId<NodeId>>,
    /// Length of the file up to its last whole record.
    good_bytes: usize,
}

/// Replays the log under `dir` without changing anything (a missing file is an empty log).
pub fn replay(dir: &Path) -> std::io::Result<Replayed> {
    let mut bytes = Vec::new();
    match File::open(dir.join("log")) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let (records, good_bytes) = read_records(&bytes);
    let (mut entries, mut purged, mut committed) = (BTreeMap::new(), None, None);
    for r in records {
        match r {
            Record::Append(e) => {
                entries.insert(e.log_id.index, e);
            }
            Record::Truncate(from) => {
                entries.split_off(&from);
            }
            Record::Purge(upto) => {
                entries = entries.split_off(&(upto.index + 1));
                purged = Some(upto);
            }
            Record::Committed(c) => committed = c,
        }
    }
    Ok(Replayed { entries, purged, committed, good_bytes })
}

/// Writes a new log under `dir` that starts after `upto`, everything up to which is in a
/// snapshot (a restored member's).
pub fn write_purged(dir: &Path, upto: LogId<NodeId>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    write_record(&mut buf, &Record::Purge(upto))?;
    write_record(&mut buf, &Record::Committed(Some(upto)))?;
    replace_file(&dir.join("log"), &buf)
}

impl LogStore {
    /// Opens (or creates) the log under `dir`, replaying what is there.
    pub fn open(dir: &Path, metrics: RaftMetrics) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let log_path = dir.join("log");
        let Replayed { entries, purged, committed, good_bytes: good } = replay(dir)?;
        let file = std::os::unix::fs::OpenOptionsExt::mode(
            OpenOptions::new().create(true).append(false).write(true).truncate(false),
            super::datadir::FILE_MODE,
        )
        .open(&log_path)?;
        // Drop a torn tail so the next append starts on a record boundary.
        file.set_len(good as u64)?;
        let mut file = BufWriter::new(file);
        std::io::Seek::seek(file.get_mut(), std::io::SeekFrom::End(0))?;
        let vote = match std::fs::read(dir.join("vote")) {
            Ok(b) => Some(codec::decode(&b).map_err(std::io::Error::other)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let (syncer, requests) = std::sync::mpsc::channel();
        let sync_metrics = metrics.clone();
        std::thread::Builder::new().name("raft-log-sync".into()).spawn(move || run_syncer(requests, sync_metrics))?;
        metrics.committed_index.set(gauge_value(committed.map(|c| c.index)));
        let inner = Inner { dir: dir.to_path_buf(), file, syncer, entries, purged, committed, vote, metrics };
        Ok(LogStore { inner: Arc::new(Mutex::new(inner)) })
    }

    fn write(&self, records: &[Record]) -> std::io::Result<()> {
        let mut inner = self.inner.lock();
        for r in records {
            write_record(&mut inner.file, r)?;
        }
        inner.file.flush()?;
        inner.metrics.timed_sync(|| inner.file.get_ref().sync_data())
    }

    /// Rewrites the file with only the live entries (after a purge).
    fn compact(inner: &mut Inner) -> std::io::Result<()> {
        let mut buf = Vec::new();
        if let Some(p) = inner.purged {
            write_record(&mut buf, &Record::Purge(p))?;
        }
        write_record(&mut buf, &Record::Committed(inner.committed))?;
        for e in inner.entries.values() {
            write_record(&mut buf, &Record::Append(e.clone()))?;
        }
        let path = inner.dir.join("log");
        replace_file(&path, &buf)?;
        let mut file = BufWriter::new(OpenOptions::new().write(true).open(&path)?);
        std::io::Seek::seek(file.get_mut(), std::io::SeekFrom::End(0))?;
        inner.file = file;
        Ok(())
    }

    /// Entries now held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// Whether the log holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        Ok(self.inner.lock().entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.inner.lock();
        let last = inner.entries.values().next_back().map(|e| e.log_id).or(inner.purged);
        Ok(LogState { last_purged_log_id: inner.purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let failed = |e: &dyn std::error::Error| StorageIOError::write_vote(openraft::AnyError::error(e.to_string()));
        let bytes = codec::encode(vote).map_err(|e| failed(&e))?;
        let (path, metrics) = {
            let inner = self.inner.lock();
            (inner.dir.join("vote"), inner.metrics.clone())
        };
        blocking(move || metrics.timed_sync(|| replace_file(&path, &bytes))).await.map_err(|e| failed(&e))?;
        self.inner.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        // Handed to the OS but not synced: losing it to a power cut only means applying
        // later, once the leader says again what is committed.
        let mut inner = self.inner.lock();
        inner.committed = committed;
        inner.metrics.committed_index.set(gauge_value(committed.map(|c| c.index)));
        write_record(&mut inner.file, &Record::Committed(committed)).map_err(io_err)?;
        inner.file.flush().map_err(io_err)?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut inner = self.inner.lock();
        // Handed to the OS here, in order, and readable at once; durable when `callback` says.
        let written = (|| {
            for e in &entries {
                write_record(&mut inner.file, &Record::Append(e.clone()))?;
            }
            inner.file.flush()?;
            inner.file.get_ref().try_clone()
        })();
        let file = match written {
            Ok(file) => file,
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::new(e.kind(), e.to_string())));
                return Err(StorageError::from(io_err(e)));
            }
        };
        for e in entries {
            inner.entries.insert(e.log_id.index, e);
        }
        let request = SyncRequest { file, done: callback };
        if let Err(std::sync::mpsc::SendError(r)) = inner.syncer.send(request) {
            // The sync thread is gone: sync here rather than never.
            r.done.log_io_completed(inner.metrics.timed_sync(|| r.file.sync_data()));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let store = self.clone();
        blocking(move || {
            store.write(&[Record::Truncate(log_id.index)])?;
            store.inner.lock().entries.split_off(&log_id.index);
            Ok(())
        })
        .await
        .map_err(io_err)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let store = self.clone();
        blocking(move || {
            let mut inner = store.inner.lock();
            inner.entries = inner.entries.split_off(&(log_id.index + 1));
            inner.purged = Some(log_id);
            Self::compact(&mut inner)
        })
        .await
        .map_err(io_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(i: u64) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 0), i), payload: EntryPayload::Blank }
    }

    #[tokio::test]
    async fn replay_applies_truncations_and_purges_and_drops_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        for r in [
            Record::Append(entry(1)),
            Record::Append(entry(2)),
            Record::Append(entry(3)),
            Record::Truncate(3),
            Record::Purge(entry(1).log_id),
        ] {
            write_record(&mut bytes, &r).unwrap();
        }
        let good = bytes.len();
        let mut torn = Vec::new();
        write_record(&mut torn, &Record::Append(entry(3))).unwrap();
        bytes.extend_from_slice(&torn[..torn.len() - 2]);
        std::fs::write(dir.path().join("log"), &bytes).unwrap();

        let mut store = LogStore::open(dir.path(), RaftMetrics::unregistered()).unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(entry(1).log_id));
        assert_eq!(state.last_log_id, Some(entry(2).log_id));
        assert_eq!(store.try_get_log_entries(0..10).await.unwrap().len(), 1);
        assert_eq!(std::fs::metadata(dir.path().join("log")).unwrap().len(), good as u64);

        // An append is readable at once, reported once synced, and replayed after a restart.
        use openraft::storage::RaftLogStorageExt;
        store.blocking_append([entry(3), entry(4)]).await.unwrap();
        assert_eq!(store.get_log_state().await.unwrap().last_log_id, Some(entry(4).log_id));
        assert_eq!(
            LogStore::open(dir.path(), RaftMetrics::unregistered())
                .unwrap()
                .try_get_log_entries(0..10)
                .await
                .unwrap()
                .len(),
            3
        );
        store.truncate(entry(4).log_id).await.unwrap();

        store.save_vote(&Vote::new(3, 7)).await.unwrap();
        store.purge(entry(3).log_id).await.unwrap();
        let mut again = LogStore::open(dir.path(), RaftMetrics::unregistered()).unwrap();
        assert_eq!(again.read_vote().await.unwrap(), Some(Vote::new(3, 7)));
        assert!(again.is_empty());
        assert_eq!(again.get_log_state().await.unwrap().last_log_id, Some(entry(3).log_id));
    }
}

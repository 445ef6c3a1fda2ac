//! Embedded Raft (openraft 0.9) among the managers, for replication without etcd: leader
//! election, and a replicated key-value store for the metadata engines cannot hold. The log,
//! vote and snapshots live under `--data-dir`; RPCs travel on the managers' own listeners.
//!
//! - `backup`: portable backups of the map, taken and restored.
//! - `datadir`: the data directory's permissions, format and owner, checked at start.
//! - `log`: the log and vote on disk.
//! - `machine`: the replicated map and its snapshots.
//! - `metrics`: term, indexes, failed proposals, fsync time.
//! - `network`: RPC clients; [`serve_rpc`] is the server side.
//! - `prompt`: a follower campaigns as soon as the leader lease has passed.

pub mod backup;
pub mod datadir;
pub mod log;
pub mod machine;
pub mod metrics;
pub mod network;
mod prompt;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use openraft::raft::AppendEntriesResponse;
use openraft::{BasicNode, Raft, ServerState, SnapshotPolicy};
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::leadership::Leadership;
pub use machine::{Command, Reply};

openraft::declare_raft_types!(
    /// Swarm's Raft types: commands on the replicated map.
    pub TypeConfig: D = Command, R = Reply
);

/// Raft node IDs.
pub type NodeId = u64;

/// bincode 2 through serde, one configuration everywhere.
pub mod codec {
    /// Encodes `v`.
    pub fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, bincode::error::EncodeError> {
        bincode::serde::encode_to_vec(v, bincode::config::standard())
    }

    /// Most bytes a decoded value may claim, all its strings and sequences together: without a
    /// limit, a length prefix of 2^62 made bincode allocate before reading (a panic found by
    /// fuzzing `raft_rpc`). Raft messages and snapshots are far smaller.
    pub const MAX_DECODED_BYTES: usize = 256 << 20;

    /// Decodes a whole value.
    pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::error::DecodeError> {
        let config = bincode::config::standard().with_limit::<MAX_DECODED_BYTES>();
        bincode::serde::decode_from_slice(bytes, config).map(|(v, _)| v)
    }
}

/// A manager's Raft ID, derived from its advertise address (FNV-1a), so that every manager
/// computes the same membership from the same `--replication-peers`.
pub fn node_id(addr: &str) -> NodeId {
    addr.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Raft settings (`--replication-peers`, `--data-dir`, timing flags).
#[derive(Debug, Clone)]
pub struct RaftSettings {
    /// This manager's advertise address.
    pub advertise: String,
    /// The initial members. A manager not among them starts empty and waits to be added.
    pub peers: Vec<String>,
    /// Where the log, vote and snapshots live.
    pub data_dir: PathBuf,
    /// Leader heartbeat period.
    pub heartbeat: Duration,
    /// Shortest election timeout; the longest is twice that.
    pub election_timeout: Duration,
}

/// A member's view of itself.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MemberStatus {
    /// Raft's state: `leader`, `follower`, `candidate`, `learner`.
    pub state: &'static str,
    /// Whether it votes.
    pub voter: bool,
    /// Whether the group lists it at all (a learner does, a removed member does not).
    pub member: bool,
    /// Its term.
    pub term: u64,
    /// The last index in its log.
    pub last_log_index: u64,
    /// The last index it applied.
    pub applied_index: u64,
    /// The leader it knows, by address.
    pub leader: Option<String>,
    /// A leader: since a quorum last acknowledged it; others: since the leader's last append
    /// arrived.
    pub last_contact_ms: Option<u64>,
}

/// A running Raft member.
#[derive(Clone)]
pub struct RaftNode {
    raft: Raft<TypeConfig>,
    map: Arc<RwLock<machine::Shared>>,
    id: NodeId,
    heard: prompt::Heard,
    /// Stops the member's own tasks.
    stop: CancellationToken,
    /// RPCs to peers (the hand-over's request to campaign).
    network: network::Network,
    metrics: metrics::RaftMetrics,
    /// The data directory's lock, held while the member runs.
    _lock: Arc<std::fs::File>,
}

/// Failures of the embedded Raft.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RaftFailure {
    /// The data directory could not be used.
    #[error("cannot use the Raft data directory {dir}")]
    Storage {
        /// The directory.
        dir: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The data directory is not this member's, or not in a format this build reads.
    #[error("cannot use the Raft data directory {dir}")]
    DataDir {
        /// The directory.
        dir: String,
        /// Why.
        #[source]
        source: datadir::DataDirError,
    },
    /// `--replication-peers` disagrees with the group the data directory holds.
    #[error(transparent)]
    Peers(datadir::PeersError),
    /// openraft refused to start or failed.
    #[error("raft: {0}")]
    Raft(String),
    /// This manager does not lead.
    #[error("not the leader")]
    NotLeader,
}

impl RaftNode {
    /// Opens the on-disk state and starts the member. A pristine member proposes the initial
    /// membership from the peers list; every member does so with the same list, which openraft
    /// allows, so start order does not matter.
    /// RPCs to peers go over TLS with `tls`.
    pub async fn start(
        s: &RaftSettings,
        tls: Option<Arc<rustls::ClientConfig>>,
        signer: crate::auth::Signer,
        metrics: metrics::RaftMetrics,
    ) -> Result<RaftNode, RaftFailure> {
        let storage = |source| RaftFailure::Storage { dir: s.data_dir.display().to_string(), source };
        let dir = s.data_dir.join("raft");
        let unusable = |e| RaftFailure::DataDir { dir: dir.display().to_string(), source: e };
        // Checked before anything is written: a refused start leaves the directory as it was.
        datadir::check(&dir, Some(&s.advertise)).map_err(unusable)?;
        let stored = stored_members(&dir).map_err(storage)?;
        datadir::check_peers(&s.peers, stored.as_ref()).map_err(RaftFailure::Peers)?;
        let lock = Arc::new(datadir::prepare(&dir, &s.advertise).map_err(unusable)?);
        let log = log::LogStore::open(&dir, metrics.clone()).map_err(storage)?;
        let sm = machine::Machine::open(&dir).map_err(storage)?;
        let map = sm.shared();
        let heartbeat = s.heartbeat.as_millis() as u64;
        let election = s.election_timeout.as_millis() as u64;
        let config = openraft::Config {
            cluster_name: "swarm".into(),
            heartbeat_interval: heartbeat,
            election_timeout_min: election,
            election_timeout_max: election * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(1000),
            max_in_snapshot_log_to_keep: 100,
            // Turned on by `campaign_when_settled`.
            enable_elect: false,
            ..Default::default()
        }
        .validate()
        .map_err(|e| RaftFailure::Raft(e.to_string()))?;
        let id = node_id(&s.advertise);
        let pristine = log.is_empty() && map.read().map.is_empty();
        let network = network::Network { tls, signer, retry_after: s.heartbeat };
        let raft = Raft::new(id, Arc::new(config), network.clone(), log, sm)
            .await
            .map_err(|e| RaftFailure::Raft(e.to_string()))?;
        let member = s.peers.contains(&s.advertise);
        if !member && pristine {
            info!(peers = %s.peers.join(","), "Not among --replication-peers: waiting to be added with `swarm members add`.");
        } else if pristine && !raft.is_initialized().await.map_err(|e| RaftFailure::Raft(e.to_string()))? {
            let members: BTreeMap<NodeId, BasicNode> =
                s.peers.iter().map(|p| (node_id(p), BasicNode { addr: p.clone() })).collect();
            match raft.initialize(members).await {
                Ok(()) => info!(peers = %s.peers.join(","), "Raft group initialized."),
                Err(e) => info!(error = %e, "Raft group already initialized."),
            }
        }
        tokio::spawn(campaign_when_settled(raft.clone(), Duration::from_millis(election * 4)));
        let (heard, stop) = (prompt::Heard::new(), CancellationToken::new());
        let lease = Duration::from_millis(election * 2);
        tokio::spawn(prompt::elect_promptly(
            raft.clone(),
            id,
            heard.clone(),
            lease,
            Duration::from_millis(election / 2),
            stop.clone(),
        ));
        Ok(RaftNode { raft, map, id, heard, stop, network, metrics, _lock: lock })
    }

    /// The openraft handle.
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// Proposes `cmd`; only the leader can. A leader cut off from its quorum gives the write
    /// up once no quorum has answered for the longest election timeout (openraft would hold it
    /// until the partition heals): its outcome is then unknown, as for any write that failed.
    pub async fn write(&self, cmd: Command) -> Result<Reply, RaftFailure> {
        let write = self.raft.client_write(cmd);
        tokio::pin!(write);
        let longest = Duration::from_millis(self.raft.config().election_timeout_max);
        let (mut metrics, started) = (self.raft.metrics(), Instant::now());
        loop {
            tokio::select! {
                r = &mut write => {
                    if r.is_err() {
                        self.metrics.proposals_failed.inc();
                    }
                    return match r {
                        Ok(r) => Ok(r.data),
                        Err(e) if e.forward_to_leader().is_some() => Err(RaftFailure::NotLeader),
                        Err(e) => Err(RaftFailure::Raft(e.to_string())),
                    };
                }
                _ = tokio::time::sleep(longest / 4) => {}
                Ok(()) = metrics.changed() => {}
            }
            let cut_off = {
                let m = metrics.borrow_and_update();
                // No acknowledgement yet as leader: counted from the write.
                let quiet = m.millis_since_quorum_ack.map_or_else(|| started.elapsed(), Duration::from_millis);
                m.state != ServerState::Leader || quiet >= longest
            };
            if cut_off {
                self.metrics.proposals_failed.inc();
                return Err(RaftFailure::NotLeader);
            }
        }
    }

    /// A backup of the map, taken by the leader.
    pub async fn backup(&self) -> Result<backup::Backup, RaftFailure> {
        // Everything committed before this call is applied here first (a leader confirmed by
        // a quorum), so the backup misses no acknowledged write.
        self.raft.ensure_linearizable().await.map_err(|e| RaftFailure::Raft(e.to_string()))?;
        let shared = self.map.read();
        Ok(backup::Backup::of_map(&shared.map, shared.applied_index()))
    }

    /// This member's own view of itself, for `swarm members list`.
    pub fn status(&self) -> MemberStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let addr_of = |id: NodeId| membership.get_node(&id).map(|n| n.addr.clone());
        let voter = membership.voter_ids().any(|v| v == self.id);
        let member = membership.get_node(&self.id).is_some();
        let last_contact = match m.state {
            ServerState::Leader => m.millis_since_quorum_ack.map(Duration::from_millis),
            _ => self.heard.since_arrived(),
        };
        MemberStatus {
            state: match m.state {
                ServerState::Leader => "leader",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
                ServerState::Follower => "follower",
            },
            voter,
            member,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            leader: m.current_leader.and_then(addr_of),
            last_contact_ms: last_contact.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// Whether this member's copy of the map holds everything committed: it knows a leader and
    /// has applied every entry of its log (a leader's first entry of its term included).
    pub fn caught_up(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.current_leader.is_some() && m.last_applied.map(|l| l.index) >= m.last_log_index
    }

    /// Grows with every change of this member's copy of the map.
    pub fn generation(&self) -> u64 {
        self.map.read().generation
    }

    /// Entries under `prefix` from this member's copy of the map. An entry past its expiry
    /// stays until the leader expires it: no member can tell one that lapsed from one nobody
    /// could renew while there was no leader (see [`RaftNode::expire_entries`]).
    pub fn list(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        self.map
            .read()
            .map
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.bytes.clone()))
            .collect()
    }

    /// Hands leadership to the most up-to-date other voter, which campaigns at once: this
    /// member stopped acting as leader before (the caller's part), and grants its vote to a
    /// candidate whose log is as long as its own, so the hand-over takes one round of votes
    /// instead of a leader lease and an election timeout. The address asked, if any.
    pub async fn hand_over(&self) -> Option<String> {
        // A member on its way out never campaigns again, promptly or by timeout.
        self.raft.runtime_config().elect(false);
        self.stop.cancel();
        let mut rx = self.raft.metrics();
        let best = {
            let m = rx.borrow();
            if m.state != ServerState::Leader {
                return None;
            }
            let membership = m.membership_config.membership();
            let matched =
                |id: &NodeId| m.replication.as_ref().and_then(|r| r.get(id).cloned().flatten()).map(|l| l.index);
            let best = membership.voter_ids().filter(|v| *v != self.id).max_by_key(matched)?;
            let addr = membership.get_node(&best)?.addr.clone();
            (best, addr)
        };
        let (candidate, addr) = best;
        let bound = Duration::from_millis(self.raft.config().election_timeout_max);
        // Only a candidate whose log is as long as ours gets our vote (Raft's transfer: the
        // leader, which appends nothing more, lets the target catch up first).
        let caught_up = tokio::time::timeout(bound, async {
            loop {
                {
                    let m = rx.borrow_and_update();
                    let matched =
                        m.replication.as_ref().and_then(|r| r.get(&candidate).cloned().flatten()).map(|l| l.index);
                    if m.state != ServerState::Leader || matched >= m.last_log_index {
                        return;
                    }
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        if caught_up.is_err() {
            warn!(candidate, "The follower did not catch up in time; asking it to campaign anyway.");
        }
        match self.network.ask_to_elect(&addr, bound).await {
            Ok(()) => {
                info!(candidate, addr = %addr, "Handed leadership over.");
                Some(addr)
            }
            Err(e) => {
                warn!(error = %e, "Could not hand leadership over; the others elect a leader once its lease has passed.");
                None
            }
        }
    }

    /// Stops the member.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        if let Err(e) = self.raft.shutdown().await {
            warn!(error = %e, "Raft did not shut down cleanly.");
        }
    }

    /// Answers one RPC from a peer: `rpc` is the path after [`network::RPC_PREFIX`].
    pub async fn serve_rpc(&self, rpc: &str, body: &[u8]) -> Result<Vec<u8>, String> {
        let bad = |e: bincode::error::DecodeError| format!("undecodable {rpc} request: {e}");
        let encoded = match rpc {
            "append" => {
                self.heard.arrived();
                let request = codec::decode(body).map_err(bad)?;
                let _open = self.heard.pass().await;
                let answer = self.raft.append_entries(request).await;
                if matches!(answer, Ok(ref a) if !matches!(a, AppendEntriesResponse::HigherVote(_))) {
                    self.heard.now();
                }
                codec::encode(&answer)
            }
            "vote" => {
                let request = codec::decode(body).map_err(bad)?;
                // Behind the gate too: a vote granted between a prompt campaign's check and its
                // election would be followed by a term raise that deposes the one just elected.
                let _open = self.heard.pass().await;
                codec::encode(&self.raft.vote(request).await)
            }
            // A leader handing over asks this member to campaign now.
            "elect" => {
                self.raft.trigger().elect().await.map_err(|e| e.to_string())?;
                codec::encode(&())
            }
            "snapshot" => {
                let request = codec::decode(body).map_err(bad)?;
                let _open = self.heard.pass().await;
                codec::encode(&self.raft.install_snapshot(request).await)
            }
            other => return Err(format!("unknown raft rpc {other:?}")),
        };
        encoded.map_err(|e| e.to_string())
    }

    /// Publishes Raft's view of the leader into `leadership` until `cancel`. While leading,
    /// leadership is valid until the last quorum acknowledgement plus `lease`, which is shorter
    /// than the election timeout: a leader cut off from its quorum stops acting before
    /// another can be elected.
    pub async fn publish_leadership(self, leadership: Leadership, lease: Duration, cancel: CancellationToken) {
        let mut rx = self.raft.metrics();
        let mut led_term = None;
        // When the metrics read now were produced, at the latest: when their change was seen. A
        // wake-up with no change (the timer below) reads metrics as old as that, and a process
        // frozen and thawed reads metrics from before it froze.
        let mut seen_at = Instant::now();
        loop {
            let (state, leader, term, acked_ms, leader_addr) = {
                let m = rx.borrow_and_update();
                let membership = m.membership_config.membership();
                self.publish_metrics(&m, membership.voter_ids().count());
                // Before any membership is known (a member waiting to be added) it is not one.
                leadership.set_member(membership.get_node(&self.id).is_some());
                let addr = m.current_leader.and_then(|l| membership.get_node(&l).map(|n| n.addr.clone()));
                (m.state, m.current_leader, m.current_term, m.millis_since_quorum_ack, addr)
            };
            match (state, acked_ms) {
                (ServerState::Leader, Some(ms)) if leader == Some(self.id) && Duration::from_millis(ms) < lease => {
                    let deadline = seen_at + lease - Duration::from_millis(ms);
                    if led_term == Some(term) && leadership.is_leader() {
                        leadership.renewed(deadline);
                    } else if let Some(acked) = self.confirm_leading(lease).await {
                        // Taken up only once a quorum has acknowledged this member just now:
                        // metrics seen after a freeze may tell of a quorum long gone.
                        if led_term != Some(term) {
                            info!(term, "Elected primary by Raft.");
                        }
                        led_term = Some(term);
                        leadership.became_leader(term, acked + lease);
                    }
                }
                // Leading without a recent quorum: wait for acknowledgements.
                (ServerState::Leader, _) => {
                    if leadership.is_leader() {
                        leadership.step_down(None);
                    }
                }
                _ => {
                    if leadership.is_leader() {
                        leadership.step_down(leader_addr.clone());
                    }
                    leadership.follow(leader_addr);
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = rx.changed() => if changed.is_ok() {
                    seen_at = Instant::now();
                } else {
                    if cancel.is_cancelled() {
                        return;
                    }
                    // Raft stopped by itself: a storage failure (a full or failing disk) is fatal
                    // to it. A manager without Raft can neither lead nor follow; exit, so that
                    // the load balancer stops sending clients here and a supervisor restarts it
                    // once the disk is fixed.
                    leadership.step_down(None);
                    tracing::error!("Raft stopped (see the error above, often a full or failing --data-dir); exiting.");
                    std::process::exit(1);
                },
                // A leader's quorum age grows even when nothing else changes.
                _ = tokio::time::sleep(lease / 4), if state == ServerState::Leader => {}
            }
        }
    }

    fn publish_metrics(&self, m: &openraft::RaftMetrics<NodeId, BasicNode>, voters: usize) {
        use metrics::gauge_value;
        self.metrics.term.set(gauge_value(Some(m.current_term)));
        self.metrics.last_log_index.set(gauge_value(m.last_log_index));
        self.metrics.applied_index.set(gauge_value(m.last_applied.map(|l| l.index)));
        self.metrics.voters.set(i64::try_from(voters).unwrap_or(i64::MAX));
    }

    /// Whether a quorum acknowledges this member as leader now (a round of heartbeats, within
    /// `bound`): when the round began, if so, which the last acknowledgement is no older than.
    async fn confirm_leading(&self, bound: Duration) -> Option<Instant> {
        let started = Instant::now();
        matches!(tokio::time::timeout(bound, self.raft.get_read_log_id()).await, Ok(Ok(_))).then_some(started)
    }

    /// Drops expired entries now and then; only the leader's proposal takes effect. A new
    /// leader first renews every entry `renewal` gives a lease, for that lease, as etcd renews
    /// its leases when a new leader takes over: while no leader took their writes, their
    /// writers could not renew them (after a full restart, say).
    pub async fn expire_entries(
        self,
        leadership: Leadership,
        every: Duration,
        renewal: fn(&str, &[u8]) -> Option<Duration>,
        cancel: CancellationToken,
    ) {
        let mut renewed_in = None;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if !leadership.is_leader() {
                continue;
            }
            let now = now_ms();
            let term = leadership.acting_term();
            if renewed_in != term {
                let renewals = machine::renewals(&self.map.read().map, now, renewal);
                let mut all = true;
                for cmd in renewals {
                    if let Err(e) = self.write(cmd).await {
                        tracing::debug!(error = %e, "Renewing entries failed.");
                        all = false;
                        break;
                    }
                }
                if all {
                    renewed_in = term;
                }
                continue;
            }
            let due = self.map.read().map.values().any(|v| v.expires_ms.is_some_and(|e| e <= now));
            if due {
                if let Err(e) = self.write(Command::Expire { now_ms: now }).await {
                    tracing::debug!(error = %e, "Expiring entries failed.");
                }
            }
        }
    }
}

/// The members of the group `dir` holds, read without changing it: the later of its log's
/// and its snapshot's memberships.
fn stored_members(dir: &std::path::Path) -> std::io::Result<Option<std::collections::BTreeSet<String>>> {
    let from_log = log::replay(dir)?.entries.values().rev().find_map(|e| match &e.payload {
        openraft::EntryPayload::Membership(m) => {
            Some((e.log_id.index, m.nodes().map(|(_, n)| n.addr.clone()).collect()))
        }
        _ => None,
    });
    let from_snapshot = machine::snapshot_members(dir)?;
    Ok(match (from_log, from_snapshot) {
        (Some(a), Some(b)) => Some(if a.0 >= b.0 { a.1 } else { b.1 }),
        (a, b) => a.or(b).map(|m| m.1),
    })
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// openraft 0.9 has no pre-vote: a member that campaigns as soon as it starts, before it has
/// heard from the leader, raises the term and deposes a healthy leader. So a starting member
/// stays out of elections until it has heard from a leader, or for `quiet` (twice the longest
/// election timeout) when there is none.
async fn campaign_when_settled(raft: Raft<TypeConfig>, quiet: Duration) {
    let mut rx = raft.metrics();
    let heard = async {
        while rx.borrow_and_update().current_leader.is_none() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(quiet, heard).await;
    raft.runtime_config().elect(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(node_id("127.0.0.1:4000"), node_id("127.0.0.1:4000"));
        assert_ne!(node_id("127.0.0.1:4000"), node_id("127.0.0.1:4001"));
    }
}

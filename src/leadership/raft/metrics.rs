//! The embedded Raft's metrics, as etcd exports its own: term, indexes, failed proposals and
//! how long the log's fsync takes.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Opts, Registry};

/// Raft metrics of this member.
#[derive(Debug, Clone)]
pub struct RaftMetrics {
    /// The term this member is in.
    pub term: IntGauge,
    /// The last index in this member's log.
    pub last_log_index: IntGauge,
    /// The last index committed, as this member knows it.
    pub committed_index: IntGauge,
    /// The last index applied to this member's copy of the map.
    pub applied_index: IntGauge,
    /// Voting members of the group.
    pub voters: IntGauge,
    /// Proposals this member made that failed (not leading, no quorum).
    pub proposals_failed: IntCounter,
    /// Time of each fsync of the log and the vote.
    pub fsync_duration: Histogram,
}

impl RaftMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let o = |n: &str, h: &str| Opts::new(n, h).namespace("swarm").subsystem("raft");
        let m = RaftMetrics {
            term: IntGauge::with_opts(o("term", "The Raft term this member is in."))?,
            last_log_index: IntGauge::with_opts(o("last_log_index", "The last index in this member's log."))?,
            committed_index: IntGauge::with_opts(o("committed_index", "The last index known committed."))?,
            applied_index: IntGauge::with_opts(o("applied_index", "The last index applied here."))?,
            voters: IntGauge::with_opts(o("voters", "Voting members of the group."))?,
            proposals_failed: IntCounter::with_opts(o("proposals_failed_total", "Proposals that failed."))?,
            // etcd's WAL fsync buckets: 1 ms to 8 s.
            fsync_duration: Histogram::with_opts(
                HistogramOpts::new("fsync_duration_seconds", "Time of an fsync of the Raft log or vote.")
                    .namespace("swarm")
                    .subsystem("raft")
                    .buckets(prometheus::exponential_buckets(0.001, 2.0, 14)?),
            )?,
        };
        registry.register(Box::new(m.term.clone()))?;
        registry.register(Box::new(m.last_log_index.clone()))?;
        registry.register(Box::new(m.committed_index.clone()))?;
        registry.register(Box::new(m.applied_index.clone()))?;
        registry.register(Box::new(m.voters.clone()))?;
        registry.register(Box::new(m.proposals_failed.clone()))?;
        registry.register(Box::new(m.fsync_duration.clone()))?;
        Ok(m)
    }

    /// Not registered anywhere (tests of the log alone).
    pub fn unregistered() -> Self {
        Self::register(&Registry::new()).expect("fresh registry")
    }

    /// Runs `sync`, timing it.
    pub fn timed_sync<T>(&self, sync: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
        let timer = self.fsync_duration.start_timer();
        let out = sync();
        timer.observe_duration();
        out
    }
}

/// Converts an index for a gauge (indexes stay far below `i64::MAX`).
pub(crate) fn gauge_value(index: Option<u64>) -> i64 {
    index.map_or(0, |i| i64::try_from(i).unwrap_or(i64::MAX))
}

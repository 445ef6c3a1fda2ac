//! Prompt elections. An openraft 0.9 follower starts its election timer only once its leader
//! lease (the longest election timeout) has passed since the last heartbeat, so a dead leader
//! is replaced after the lease *plus* a random election timeout. The lease alone is what keeps
//! a deposed leader from overlapping a new one: voters refuse every vote until it has passed.
//! So a follower that has heard nothing for the lease campaigns at once; followers take turns,
//! in an order all of them compute alike, against split votes.
//!
//! Fencing stays whole. openraft's own timer checks the lease inside its core, between two
//! appends; a campaign started from outside could have an append acknowledged (renewing the
//! old leader's lease through this member) just before its `elect`. So a campaign closes a
//! gate that every append and snapshot from a leader passes through, then checks, in the
//! core, that this member's vote has not been refreshed for the lease, and enqueues `elect`
//! before any later append: those reach the core after the election and are refused. Vote
//! requests pass the same gate, so that none is granted between the check and the election.

use std::sync::Arc;
use std::time::Duration;

use openraft::{Raft, ServerState};
use rand::Rng;
use tokio::sync::{watch, RwLock, RwLockReadGuard};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{NodeId, TypeConfig};

/// Slack for the voters having heard the same heartbeat a little after this member.
const SKEW_MARGIN: Duration = Duration::from_millis(20);

/// Campaigns after the first, per silence, before leaving it to openraft's timer.
const RETRIES: u32 = 3;

/// When this member last accepted entries or a heartbeat from a leader, and the gate those
/// pass through.
#[derive(Clone)]
pub struct Heard {
    at: watch::Sender<Option<Instant>>,
    gate: Arc<RwLock<()>>,
    /// When the last append from a leader arrived, answered or not: a campaign's log says
    /// whether the leader fell silent or this member was slow to take what it sent.
    arrived: Arc<parking_lot::Mutex<Option<Instant>>>,
}

impl Heard {
    pub fn new() -> Heard {
        Heard { at: watch::Sender::new(None), gate: Arc::new(RwLock::new(())), arrived: Arc::default() }
    }

    /// How long ago the last append from a leader arrived.
    pub fn since_arrived(&self) -> Option<std::time::Duration> {
        self.arrived.lock().map(|at| at.elapsed())
    }

    /// A leader's append arrived.
    pub fn arrived(&self) {
        *self.arrived.lock() = Some(Instant::now());
    }

    /// Held while a leader's append or snapshot, or a candidate's vote request, is handed to
    /// the core.
    pub async fn pass(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().await
    }

    /// A leader's append was answered without a higher vote.
    pub fn now(&self) {
        self.at.send_replace(Some(Instant::now()));
    }
}

/// Starts an election if this member's vote has not been refreshed for `lease`, with no
/// append in between (see the module's note), and it has not, within `hold`, voted for another
/// candidate in a term after `silent_since` (the one in which it last heard a leader): raising
/// the term then would depose the leader it may just have helped elect. Checked in the core,
/// with vote requests held at the gate too, so that none is granted between the check and the
/// election. False when no election was started.
async fn campaign_if_silent(
    raft: &Raft<TypeConfig>,
    me: NodeId,
    heard: &Heard,
    lease: Duration,
    hold: Duration,
    silent_since: u64,
) -> bool {
    let _closed = heard.gate.write().await;
    let held = raft
        .with_raft_state(move |s| {
            let vote = s.vote_ref();
            let changed_within = |d: Duration| s.vote_last_modified().is_some_and(|at| at.elapsed() < d);
            // Only a committed vote (a leader's) holds a lease: a candidate retrying after a
            // split vote, or after one it granted lost, acknowledges no leader.
            let leased = vote.is_committed() && changed_within(lease);
            // Held only briefly: a candidate that cannot win (its log is behind, or it died)
            // must not keep the others waiting, and a refused candidate also takes on, though
            // it granted nothing, the vote its refuser answered with.
            let voted_elsewhere = !vote.is_committed()
                && vote.leader_id().get_term() > silent_since
                && vote.leader_id().voted_for().is_some_and(|v| v != me)
                && changed_within(hold);
            leased || voted_elsewhere
        })
        .await;
    if held.unwrap_or(true) {
        return false;
    }
    match raft.trigger().elect().await {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "Prompt election not started.");
            false
        }
    }
}

/// This member's turn in the order in which followers campaign after a silence (its position
/// among the voters other than the last known leader, by ID), and how many turns there are.
/// Followers that campaign at random within one window split the vote now and then, and each
/// split costs a retry; spaced a `jitter` apart, the first is usually elected before the next
/// one's turn.
fn campaign_turn(raft: &Raft<TypeConfig>, me: NodeId) -> (u32, u32) {
    let m = raft.metrics();
    let m = m.borrow();
    let others = || m.membership_config.membership().voter_ids().filter(|v| Some(*v) != m.current_leader);
    (others().filter(|v| *v < me).count() as u32, others().count().max(1) as u32)
}

/// Campaigns when nothing has been heard for `lease` plus [`SKEW_MARGIN`] plus its turn's
/// share of `jitter` (see [`campaign_turn`]) and a little randomness since the last append,
/// and again, up to [`RETRIES`] times, once every round of turns while no leader is known: two
/// followers that campaigned together split the vote, and one whose log is behind is refused;
/// both would otherwise wait for openraft's own timer.
pub async fn elect_promptly(
    raft: Raft<TypeConfig>,
    me: NodeId,
    heard: Heard,
    lease: Duration,
    jitter: Duration,
    cancel: CancellationToken,
) {
    let mut rx = heard.at.subscribe();
    'silence: loop {
        let last = *rx.borrow_and_update();
        let heard_term = raft.metrics().borrow().current_term;
        if let Some(last) = last {
            let (turn, turns) = campaign_turn(&raft, me);
            let mut due =
                last + lease + SKEW_MARGIN + jitter * turn + rand::rng().random_range(Duration::ZERO..=jitter / 2);
            for attempt in 0..=RETRIES {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    changed = rx.changed() => if changed.is_err() { return } else { continue 'silence },
                    _ = tokio::time::sleep_until(due) => {}
                }
                if !matches!(raft.metrics().borrow().state, ServerState::Follower | ServerState::Candidate) {
                    break;
                }
                due = Instant::now() + jitter * turns + rand::rng().random_range(Duration::ZERO..=jitter / 2);
                if campaign_if_silent(&raft, me, &heard, lease, jitter, heard_term).await {
                    let arrived_ms = heard.arrived.lock().map(|a| a.elapsed().as_millis() as u64);
                    tracing::info!(
                        silent_ms = last.elapsed().as_millis() as u64,
                        arrived_ms,
                        attempt,
                        "No leader heard for the lease: campaigned."
                    );
                }
            }
        }
        // Armed again by the next append.
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
        }
    }
}

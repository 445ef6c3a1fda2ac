//! Prompt elections. An openraft 0.9 follower starts its election timer only once its leader
//! lease (the longest election timeout) has passed since the last heartbeat, so a dead leader
//! is replaced after the lease *plus* a random election timeout. The lease alone is what keeps
//! a deposed leader from overlapping a new one: voters refuse every vote until it has passed.
//! So a follower that has heard nothing for the lease campaigns at once, with a little jitter
//! against split votes; voters still apply their own lease, and fencing is unchanged.

use std::time::Duration;

use openraft::{Raft, ServerState};
use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::TypeConfig;

/// Slack for the voters having heard the same heartbeat a little after this member.
const SKEW_MARGIN: Duration = Duration::from_millis(20);

/// Campaigns after the first, per silence, before leaving it to openraft's timer.
const RETRIES: u32 = 3;

/// When this member last accepted entries or a heartbeat from a leader.
#[derive(Clone)]
pub struct Heard(watch::Sender<Option<Instant>>);

impl Heard {
    pub fn new() -> Heard {
        Heard(watch::Sender::new(None))
    }

    /// A leader's append was answered without a higher vote.
    pub fn now(&self) {
        self.0.send_replace(Some(Instant::now()));
    }
}

/// Campaigns when nothing has been heard for `lease` plus [`SKEW_MARGIN`] plus up to `jitter`
/// since the last append, and again, up to [`RETRIES`] times, every `jitter / 2` to `jitter`
/// while no leader is known: two followers that campaigned together split the vote, and one
/// whose log is behind is refused; both would otherwise wait for openraft's own timer.
pub async fn elect_promptly(raft: Raft<TypeConfig>, heard: Heard, lease: Duration, jitter: Duration, cancel: CancellationToken) {
    let mut rx = heard.0.subscribe();
    'silence: loop {
        let last = *rx.borrow_and_update();
        if let Some(last) = last {
            let mut due = last + lease + SKEW_MARGIN + rand::rng().random_range(Duration::ZERO..=jitter);
            for attempt in 0..=RETRIES {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    changed = rx.changed() => if changed.is_err() { return } else { continue 'silence },
                    _ = tokio::time::sleep_until(due) => {}
                }
                if !matches!(raft.metrics().borrow().state, ServerState::Follower | ServerState::Candidate) {
                    break;
                }
                tracing::info!(silent_ms = last.elapsed().as_millis() as u64, attempt, "No leader heard for the lease: campaigning.");
                if let Err(e) = raft.trigger().elect().await {
                    tracing::debug!(error = %e, "Prompt election not started.");
                }
                due = Instant::now() + rand::rng().random_range(jitter / 2..=jitter);
            }
        }
        // Armed again by the next append.
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
        }
    }
}

//! Events that a change forwarded through the manager will cause. The engine emits a change's
//! event before it answers (`start` once the container runs), and every container event
//! re-reads the container; the manager's own re-read after the answer only covers an event
//! stream that lags or died silently. So that re-read waits for the event first, and is not
//! made once the event came: a `docker start` costs one re-read, not two.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::Cluster;

/// How long the manager waits, after an engine answered a change, for the change's event
/// before it re-reads the container itself.
pub const EVENT_GRACE: Duration = Duration::from_secs(2);

/// Changes waiting for their events, by node key and container ID.
#[derive(Default)]
pub(crate) struct Awaited {
    next_ticket: AtomicU64,
    waiting: Mutex<HashMap<(String, String), Vec<Waiter>>>,
}

impl Awaited {
    #[cfg(test)]
    pub(super) fn is_idle(&self) -> bool {
        self.waiting.lock().is_empty()
    }
}

struct Waiter {
    ticket: u64,
    action: String,
    arrived: oneshot::Sender<Instant>,
}

/// One change's wait for its event, from before the change is sent.
pub struct AwaitedEvent {
    cluster: Cluster,
    slot: (String, String),
    ticket: u64,
    arrived: Option<oneshot::Receiver<Instant>>,
    /// When the event came, if it came before [`AwaitedEvent::arrived_early`] was asked.
    early: Option<Instant>,
}

impl Cluster {
    /// Starts waiting for event `action` of container `id` on node `key`; call before sending
    /// the change, so that an event that overtakes the answer is not missed.
    pub fn await_event(&self, key: &str, id: &str, action: &str) -> AwaitedEvent {
        let awaited = &self.shared.awaited;
        let ticket = awaited.next_ticket.fetch_add(1, Ordering::Relaxed);
        let (arrived, receiver) = oneshot::channel();
        let slot = (key.to_string(), id.to_string());
        awaited.waiting.lock().entry(slot.clone()).or_default().push(Waiter {
            ticket,
            action: action.to_string(),
            arrived,
        });
        AwaitedEvent { cluster: self.clone(), slot, ticket, arrived: Some(receiver), early: None }
    }

    /// Event `action` of container `id` came from node `key`: the changes waiting for it need
    /// no re-read of their own (the event's re-read starts after it came).
    pub(super) fn event_arrived(&self, key: &str, id: &str, action: &str) {
        let now = Instant::now();
        let mut waiting = self.shared.awaited.waiting.lock();
        let slot = (key.to_string(), id.to_string());
        let Some(waiters) = waiting.get_mut(&slot) else { return };
        for w in waiters.extract_if(.., |w| w.action == action) {
            let _ = w.arrived.send(now);
        }
        if waiters.is_empty() {
            waiting.remove(&slot);
        }
    }
}

impl AwaitedEvent {
    /// When the event came, if it came before the engine's answer was handled. The cache's
    /// entry for the change is then dated by the event, not by the answer: the event's re-read,
    /// which started after the event came, is as new as the change and must not yield to it.
    pub fn arrived_early(&mut self) -> Option<Instant> {
        if self.early.is_none() {
            self.early = self.arrived.as_mut().and_then(|a| a.try_recv().ok());
        }
        self.early
    }

    /// The engine answered the change and the cache took it (dated by
    /// [`AwaitedEvent::arrived_early`]): re-reads the container unless its event came, or
    /// comes within [`EVENT_GRACE`]. Returns at once.
    pub fn reread_unless_it_comes(mut self) {
        if self.arrived_early().is_some() {
            return;
        }
        let arrived = self.arrived.take();
        tokio::spawn(async move {
            let came = match arrived {
                Some(arrived) => matches!(tokio::time::timeout(EVENT_GRACE, arrived).await, Ok(Ok(_))),
                None => false,
            };
            if !came {
                self.cluster.refresh_container(&self.slot.0, &self.slot.1).await;
            }
        });
    }
}

impl Drop for AwaitedEvent {
    /// A change that failed, or whose wait ended, stops waiting.
    fn drop(&mut self) {
        let mut waiting = self.cluster.shared.awaited.waiting.lock();
        if let Some(waiters) = waiting.get_mut(&self.slot) {
            waiters.retain(|w| w.ticket != self.ticket);
            if waiters.is_empty() {
                waiting.remove(&self.slot);
            }
        }
    }
}

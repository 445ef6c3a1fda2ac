//! The front's connection slots (`--api-max-connections`). When every slot is taken, the oldest
//! connection that has not sent a request yet is closed to make room: a flood of idle
//! connections then costs new clients nothing, while a connection that has been used is never
//! cut for another.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long a new connection waits for the slot of the one closed for it.
const EVICTION_WAIT: Duration = Duration::from_millis(50);

/// One connection's slot.
#[derive(Debug, Default)]
pub struct Slot {
    used: AtomicBool,
    done: AtomicBool,
    /// Cancelled to close the connection and free its slot.
    pub close: CancellationToken,
}

impl Slot {
    /// The connection sent a request: it is no longer a candidate for eviction.
    pub fn mark_used(&self) {
        self.used.store(true, Ordering::Relaxed);
    }

    fn evictable(&self) -> bool {
        !self.used.load(Ordering::Relaxed) && !self.done.load(Ordering::Relaxed)
    }
}

/// A taken slot; freed when dropped.
#[derive(Debug)]
pub struct Held {
    _permit: OwnedSemaphorePermit,
    /// The connection's slot.
    pub slot: Arc<Slot>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.slot.done.store(true, Ordering::Relaxed);
    }
}

/// Every slot of one listener.
#[derive(Debug)]
pub struct Slots {
    permits: Arc<Semaphore>,
    /// Connections in the order they came, closed ones pruned lazily.
    order: Mutex<VecDeque<Arc<Slot>>>,
    max: usize,
}

impl Slots {
    /// `max` slots.
    pub fn new(max: usize) -> Slots {
        Slots { permits: Arc::new(Semaphore::new(max)), order: Mutex::new(VecDeque::new()), max }
    }

    /// A slot for a new connection: a free one, or that of the oldest connection that has sent
    /// nothing yet (`evicted` is then true); `None` when every connection has been used.
    pub async fn take(&self) -> Option<(Held, bool)> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some((self.held(permit), false));
        }
        let victim = {
            let mut order = self.order.lock();
            let found = order.iter().position(|s| s.evictable());
            found.and_then(|i| order.remove(i))
        }?;
        victim.close.cancel();
        let permit = tokio::time::timeout(EVICTION_WAIT, self.permits.clone().acquire_owned()).await.ok()?.ok()?;
        Some((self.held(permit), true))
    }

    fn held(&self, permit: OwnedSemaphorePermit) -> Held {
        let slot = Arc::new(Slot::default());
        let mut order = self.order.lock();
        if order.len() >= 2 * self.max {
            order.retain(|s| !s.done.load(Ordering::Relaxed));
        }
        order.push_back(slot.clone());
        Held { _permit: permit, slot }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_unused_connection_makes_room_and_used_ones_never_do() {
        let slots = Slots::new(2);
        let (a, _) = slots.take().await.unwrap();
        let (b, _) = slots.take().await.unwrap();
        a.slot.mark_used();
        let closing = b.slot.close.clone();
        let freeing = tokio::spawn(async move {
            closing.cancelled().await;
            drop(b);
        });
        let (c, evicted) = slots.take().await.unwrap();
        assert!(evicted);
        freeing.await.unwrap();
        c.slot.mark_used();
        assert!(slots.take().await.is_none(), "both connections were used: nobody is cut");
        drop(a);
        assert!(!slots.take().await.unwrap().1);
    }
}

//! Watches the async runtime's own punctuality. A timer that fires late means a task blocked a
//! worker thread or the host starved the process of CPU; either delays Raft heartbeats, engine
//! probes and API answers alike, so it is logged and exported rather than guessed at.

use std::time::Duration;

use prometheus::Histogram;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// How often the runtime is asked to wake this task.
const TICK: Duration = Duration::from_millis(50);

/// Lateness logged as a warning: a third of the shortest Raft lease (300 ms).
const WARN_LATE: Duration = Duration::from_millis(100);

/// Measures how late each tick fires, into `late` (seconds), until `cancel`.
pub async fn watch(late: Histogram, cancel: CancellationToken) {
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut expected = Instant::now();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let now = Instant::now();
        let lateness = now.saturating_duration_since(expected);
        late.observe(lateness.as_secs_f64());
        if lateness >= WARN_LATE {
            tracing::warn!(
                late_ms = lateness.as_millis() as u64,
                "The runtime woke a timer late: a task blocked a worker thread, or the process was starved of CPU."
            );
        }
        expected = now + TICK;
    }
}

//! One pacing for the manager's retry loops (engine validation, etcd watches, the etcd
//! campaign): exponential from a first delay up to a ceiling, each wait drawn at random between
//! half the step and the whole of it, so that managers and engines that failed together do not
//! all come back in the same instant.

use std::time::Duration;

use rand::Rng;

/// Successive waits between attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// Starts at `first`, doubling up to `max`.
    pub fn new(first: Duration, max: Duration) -> Backoff {
        let max = max.max(first);
        Backoff { first, max, step: first }
    }

    /// The wait before the next attempt: in `[step/2, step]`; the step then doubles.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        half + rand::rng().random_range(Duration::ZERO..=step - half)
    }

    /// Back to the first step (after a success).
    pub fn reset(&mut self) {
        self.step = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_ceiling_with_jitter_below_each_step() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let steps = [100, 200, 350, 350];
        for step in steps {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(step) / 2 && d <= Duration::from_millis(step),
                "{d:?} for a step of {step} ms"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn jitter_spreads_retries() {
        let waits: std::collections::BTreeSet<Duration> =
            (0..20).map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_delay()).collect();
        assert!(waits.len() > 1, "twenty managers would retry in the same instant");
    }
}

//! Node health as a pure state machine: Pending → Healthy ⇄ Unhealthy, Disconnected when the
//! node leaves discovery. Callers feed outcomes and act on the transitions returned.

/// The classic node states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Seen in discovery, not validated yet.
    Pending,
    /// Answering.
    Healthy,
    /// `failure_retry` consecutive failures.
    Unhealthy,
    /// Left discovery.
    Disconnected,
}

impl NodeState {
    /// The classic text, as `docker info` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Pending => "Pending",
            NodeState::Healthy => "Healthy",
            NodeState::Unhealthy => "Unhealthy",
            NodeState::Disconnected => "Disconnected",
        }
    }
}

/// A change worth an event (`engine_connect`, `engine_disconnect`, `engine_reconnect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Pending → Healthy.
    Connected,
    /// Healthy → Unhealthy, or removed.
    Disconnected,
    /// Unhealthy → Healthy.
    Reconnected,
}

impl Transition {
    /// The event action.
    pub fn action(self) -> &'static str {
        match self {
            Transition::Connected => "engine_connect",
            Transition::Disconnected => "engine_disconnect",
            Transition::Reconnected => "engine_reconnect",
        }
    }
}

/// Failure accounting for one node.
#[derive(Debug, Clone)]
pub struct Health {
    state: NodeState,
    failures: u32,
    retry: u32,
    last_error: Option<String>,
}

impl Health {
    /// A new, pending node that turns unhealthy after `retry` consecutive failures.
    pub fn new(retry: u32) -> Self {
        Health { state: NodeState::Pending, failures: 0, retry: retry.max(1), last_error: None }
    }

    /// Current state.
    pub fn state(&self) -> NodeState {
        self.state
    }

    /// Consecutive failures.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The last error, cleared by a success.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Classic HealthIndicator: 0 unless healthy, then 100 minus the share of failures seen.
    pub fn indicator(&self) -> i64 {
        if self.state != NodeState::Healthy || self.failures >= self.retry {
            return 0;
        }
        100 - i64::from(self.failures) * 100 / i64::from(self.retry)
    }

    /// The engine was validated (info read, caches filled).
    pub fn validated(&mut self) -> Option<Transition> {
        self.failures = 0;
        self.last_error = None;
        match self.state {
            NodeState::Pending | NodeState::Disconnected => {
                self.state = NodeState::Healthy;
                Some(Transition::Connected)
            }
            NodeState::Unhealthy => {
                self.state = NodeState::Healthy;
                Some(Transition::Reconnected)
            }
            NodeState::Healthy => None,
        }
    }

    /// Whether a success would change nothing: no failure to clear, not Unhealthy.
    pub fn is_clean(&self) -> bool {
        self.failures == 0 && self.last_error.is_none() && self.state != NodeState::Unhealthy
    }

    /// A call succeeded.
    pub fn success(&mut self) -> Option<Transition> {
        self.failures = 0;
        self.last_error = None;
        if self.state == NodeState::Unhealthy {
            self.state = NodeState::Healthy;
            return Some(Transition::Reconnected);
        }
        None
    }

    /// A call failed to reach the engine.
    pub fn failure(&mut self, error: String) -> Option<Transition> {
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(error);
        if self.state == NodeState::Healthy && self.failures >= self.retry {
            self.state = NodeState::Unhealthy;
            return Some(Transition::Disconnected);
        }
        None
    }

    /// The node left discovery.
    pub fn removed(&mut self) -> Option<Transition> {
        let was = self.state;
        self.state = NodeState::Disconnected;
        (was == NodeState::Healthy).then_some(Transition::Disconnected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_node_becomes_healthy_once_validated() {
        let mut h = Health::new(3);
        assert_eq!(h.state(), NodeState::Pending);
        assert_eq!(h.indicator(), 0);
        assert_eq!(h.failure("refused".into()), None);
        assert_eq!(h.state(), NodeState::Pending);
        assert_eq!(h.validated(), Some(Transition::Connected));
        assert_eq!((h.state(), h.indicator(), h.last_error()), (NodeState::Healthy, 100, None));
    }

    #[test]
    fn failures_lower_the_indicator_then_mark_unhealthy() {
        let mut h = Health::new(3);
        h.validated();
        assert_eq!(h.failure("x".into()), None);
        assert_eq!(h.indicator(), 67);
        assert_eq!(h.failure("x".into()), None);
        assert_eq!(h.indicator(), 34);
        assert_eq!(h.failure("refused".into()), Some(Transition::Disconnected));
        assert_eq!((h.state(), h.indicator(), h.last_error()), (NodeState::Unhealthy, 0, Some("refused")));
        assert_eq!(h.failure("again".into()), None);
    }

    #[test]
    fn one_success_heals() {
        let mut h = Health::new(1);
        h.validated();
        assert_eq!(h.failure("x".into()), Some(Transition::Disconnected));
        assert_eq!(h.success(), Some(Transition::Reconnected));
        assert_eq!((h.state(), h.failures()), (NodeState::Healthy, 0));
        assert_eq!(h.success(), None);
    }

    #[test]
    fn removal_disconnects_only_a_live_node() {
        let mut h = Health::new(3);
        assert_eq!(h.removed(), None);
        let mut h = Health::new(3);
        h.validated();
        assert_eq!(h.removed(), Some(Transition::Disconnected));
        assert_eq!(h.state(), NodeState::Disconnected);
    }
}

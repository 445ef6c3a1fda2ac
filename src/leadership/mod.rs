//! Who leads. A backend (etcd lease election; embedded Raft later) publishes the role; the API
//! reads it. Leadership is held only until a local deadline that falls before the backend's
//! lease can expire, so a leader that cannot renew (partitioned, paused) stops acting as leader
//! before anyone else can be elected: every check compares the clock with that deadline.
//!
//! - `etcd`: election through an etcd lease.
//! - `raft`: embedded openraft among the managers, which also replicates the store.

pub mod etcd;
pub mod raft;
mod runtime;

pub use runtime::LeadershipRuntime;

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::{Counter, IntCounter, IntGauge, Opts, Registry};
use tokio::sync::watch;

/// This manager's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Schedules and answers everything.
    Leader,
    /// Proxies to the leader, when one is known.
    Follower {
        /// The leader's advertise address.
        leader: Option<String>,
    },
}

/// Leadership metrics.
#[derive(Debug, Clone)]
pub struct LeadershipMetrics {
    /// 1 while leading.
    pub is_leader: IntGauge,
    /// 1 while a leader is known, this manager or another.
    pub has_leader: IntGauge,
    /// Times this manager won an election.
    pub elections_won: IntCounter,
    /// Changes of the known leader, seen from this manager.
    pub leader_changes: IntCounter,
    /// Seconds spent without a known leader.
    pub leaderless: Counter,
}

impl LeadershipMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let o = |n: &str, h: &str| Opts::new(n, h).namespace("swarm");
        let m = LeadershipMetrics {
            is_leader: IntGauge::with_opts(o("is_leader", "1 while this manager leads."))?,
            has_leader: IntGauge::with_opts(o("has_leader", "1 while a leader is known, this manager or another."))?,
            elections_won: IntCounter::with_opts(o("elections_won_total", "Elections this manager won."))?,
            leader_changes: IntCounter::with_opts(o("leader_changes_total", "Changes of the known leader."))?,
            leaderless: Counter::with_opts(o("leaderless_seconds_total", "Time spent with no known leader."))?,
        };
        registry.register(Box::new(m.is_leader.clone()))?;
        registry.register(Box::new(m.has_leader.clone()))?;
        registry.register(Box::new(m.elections_won.clone()))?;
        registry.register(Box::new(m.leader_changes.clone()))?;
        registry.register(Box::new(m.leaderless.clone()))?;
        Ok(m)
    }
}

/// The shared leadership state; cheap to clone.
#[derive(Clone)]
pub struct Leadership {
    inner: Arc<Inner>,
}

struct Inner {
    role: watch::Sender<Role>,
    /// Leading is valid until this instant (None: no bound, the standalone case).
    deadline: Mutex<Option<Instant>>,
    /// The term this manager was last elected in: Raft's term, or the revision of the etcd
    /// election key. Grows with every election, whoever wins it.
    term: std::sync::atomic::AtomicU64,
    replicated: bool,
    advertise: String,
    metrics: Option<LeadershipMetrics>,
    leaderless_since: Mutex<Option<Instant>>,
    /// How far `leaderless_seconds_total` has counted the interval since `leaderless_since`
    /// (a scrape counts the part that passed): readiness keeps reading the interval's start.
    leaderless_counted_to: Mutex<Option<Instant>>,
    /// When this manager last began leading: what it read of the engines before then may miss
    /// what the previous leader did last.
    leading_since: Mutex<Option<std::time::SystemTime>>,
    /// The last leader the backend reported, ours included: a manager that steps down may
    /// already have been told who leads now.
    last_observed: Mutex<Option<String>>,
    /// Whether this manager is among the managers that elect (a Raft member removed from the
    /// group is not).
    member: std::sync::atomic::AtomicBool,
    /// Set once this manager stops: it no longer leads nor takes new clients.
    stopping: std::sync::atomic::AtomicBool,
}

impl Leadership {
    /// A single manager without replication: always the leader.
    pub fn standalone() -> Self {
        Leadership::build(Role::Leader, false, String::new(), None)
    }

    /// A replicated manager: a follower with no known leader until the backend says otherwise.
    pub fn replicated(advertise: &str, metrics: LeadershipMetrics) -> Self {
        Leadership::build(Role::Follower { leader: None }, true, advertise.to_string(), Some(metrics))
    }

    fn build(role: Role, replicated: bool, advertise: String, metrics: Option<LeadershipMetrics>) -> Self {
        let leaderless = (role != Role::Leader).then(Instant::now);
        let leading = (role == Role::Leader).then(std::time::SystemTime::now);
        Leadership {
            inner: Arc::new(Inner {
                role: watch::channel(role).0,
                deadline: Mutex::new(None),
                term: Default::default(),
                replicated,
                advertise,
                metrics,
                leaderless_since: Mutex::new(leaderless),
                leaderless_counted_to: Mutex::new(leaderless),
                leading_since: Mutex::new(leading),
                last_observed: Mutex::new(None),
                member: std::sync::atomic::AtomicBool::new(true),
                stopping: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Whether managers elect a leader at all.
    pub fn is_replicated(&self) -> bool {
        self.inner.replicated
    }

    /// This manager's advertise address.
    pub fn advertise(&self) -> &str {
        &self.inner.advertise
    }

    /// Whether this manager can serve clients, for load balancers' health checks: not
    /// stopping, a member of the group, and either a leader known or none for less than
    /// `leaderless_bound` (an election in progress).
    pub fn readiness(&self, leaderless_bound: Duration) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        if self.inner.stopping.load(Ordering::SeqCst) {
            return Err("this manager is shutting down".into());
        }
        if !self.inner.replicated {
            return Ok(());
        }
        if !self.inner.member.load(Ordering::SeqCst) {
            return Err("this manager is not a member of the managers' group".into());
        }
        match (self.role(), *self.inner.leaderless_since.lock()) {
            (Role::Follower { leader: None }, Some(since)) if since.elapsed() >= leaderless_bound => {
                Err(format!("no primary known for {:.1} s", since.elapsed().as_secs_f64()))
            }
            _ => Ok(()),
        }
    }

    /// Brings the leaderless time counted so far into its counter, an interval still open
    /// included, so that a scrape during an outage sees it grow.
    pub fn refresh_metrics(&self) {
        let Some(m) = &self.inner.metrics else { return };
        let since = self.inner.leaderless_since.lock();
        let mut counted = self.inner.leaderless_counted_to.lock();
        if let Some(start) = *since {
            let now = Instant::now();
            let from = counted.map_or(start, |c| c.max(start));
            m.leaderless.inc_by(now.duration_since(from).as_secs_f64());
            *counted = Some(now);
        }
    }

    /// Whether this manager is among those that elect the leader.
    pub fn set_member(&self, member: bool) {
        self.inner.member.store(member, std::sync::atomic::Ordering::SeqCst);
    }

    /// This manager stops: it reads as not ready, passes new requests on to the leader (or
    /// holds them for the next one), and never takes up leadership again. Leadership it holds
    /// now lasts until the caller steps down, so that the writes it is serving finish.
    pub fn stop_taking_requests(&self) {
        self.inner.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether [`Leadership::stop_taking_requests`] was called.
    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether this manager may act as leader now: elected, and before its lease deadline.
    pub fn is_leader(&self) -> bool {
        if *self.inner.role.borrow() != Role::Leader {
            return false;
        }
        // Copied out: step_down takes the same lock.
        let deadline = *self.inner.deadline.lock();
        match deadline {
            Some(deadline) if Instant::now() >= deadline => {
                // The lease may be gone by now: stop acting before anyone else can start.
                self.step_down(None);
                false
            }
            _ => true,
        }
    }

    /// While this replicated manager may lead: the term it was elected in. Every create it
    /// makes carries it, so that who acted when can be read back from the engines.
    pub fn acting_term(&self) -> Option<u64> {
        (self.inner.replicated && self.is_leader()).then(|| self.inner.term.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// When this manager last began leading (its start, when standalone).
    pub fn leading_since(&self) -> Option<std::time::SystemTime> {
        *self.inner.leading_since.lock()
    }

    /// The role now (a lapsed leadership reads as follower).
    pub fn role(&self) -> Role {
        if self.is_leader() {
            return Role::Leader;
        }
        self.inner.role.borrow().clone()
    }

    /// The leader's address, when another manager leads.
    pub fn leader_addr(&self) -> Option<String> {
        match self.role() {
            Role::Follower { leader } => leader,
            Role::Leader => Some(self.inner.advertise.clone()),
        }
    }

    /// Watches role changes.
    pub fn subscribe(&self) -> watch::Receiver<Role> {
        self.inner.role.subscribe()
    }

    /// Waits up to `bound` for a role other than leaderless follower.
    pub async fn wait_for_leader(&self, bound: Duration) -> Role {
        let role = self.role();
        if role != (Role::Follower { leader: None }) {
            return role;
        }
        let mut rx = self.subscribe();
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let role = self.role();
            if role != (Role::Follower { leader: None }) {
                return role;
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return self.role();
            }
        }
    }

    /// Resolves once this manager no longer leads: it stepped down, or its deadline passed
    /// without a renewal. A backend that still holds its lease then must give it up.
    pub async fn lapsed(&self) {
        let mut rx = self.subscribe();
        loop {
            if !self.is_leader() {
                return;
            }
            let deadline = *self.inner.deadline.lock();
            let Some(deadline) = deadline else {
                if rx.changed().await.is_err() {
                    return;
                }
                continue;
            };
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => {}
                changed = rx.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Won the election of `term`; leading is valid until `deadline`. A manager that is
    /// stopping does not take it up.
    pub fn became_leader(&self, term: u64, deadline: Instant) {
        if self.is_stopping() {
            return;
        }
        // A lease regained in the same term continues that leadership.
        let previous = self.inner.term.swap(term, std::sync::atomic::Ordering::SeqCst);
        let mut since = self.inner.leading_since.lock();
        if previous != term || since.is_none() {
            *since = Some(std::time::SystemTime::now());
        }
        drop(since);
        *self.inner.deadline.lock() = Some(deadline);
        self.set(Role::Leader);
        if let Some(m) = &self.inner.metrics {
            m.elections_won.inc();
        }
    }

    /// The lease was renewed: leading stays valid until `deadline`.
    pub fn renewed(&self, deadline: Instant) {
        let mut d = self.inner.deadline.lock();
        if d.is_none_or(|old| deadline > old) {
            *d = Some(deadline);
        }
    }

    /// Stops leading (lost lease, resign) and follows `leader`, or else the last leader the
    /// backend reported if that is another manager.
    pub fn step_down(&self, leader: Option<String>) {
        *self.inner.deadline.lock() = None;
        let observed = self.inner.last_observed.lock().clone().filter(|l| *l != self.inner.advertise);
        self.set(Role::Follower { leader: leader.or(observed) });
    }

    /// Another manager leads (or none, with `None`).
    pub fn follow(&self, leader: Option<String>) {
        *self.inner.last_observed.lock() = leader.clone();
        if leader.as_deref() == Some(self.inner.advertise.as_str()) {
            return;
        }
        if *self.inner.role.borrow() == Role::Leader && self.is_leader() {
            // Our own lease is still valid: a stale observation cannot unseat us.
            return;
        }
        self.set(Role::Follower { leader });
    }

    fn set(&self, role: Role) {
        let changed = self.inner.role.send_if_modified(|r| {
            if *r == role {
                return false;
            }
            *r = role.clone();
            true
        });
        if !changed {
            return;
        }
        let leaderless = role == Role::Follower { leader: None };
        let mut since = self.inner.leaderless_since.lock();
        let mut counted = self.inner.leaderless_counted_to.lock();
        let ended = since.take();
        let counted_to = counted.take();
        if let Some(m) = &self.inner.metrics {
            m.is_leader.set(i64::from(role == Role::Leader));
            m.has_leader.set(i64::from(!leaderless));
            m.leader_changes.inc();
            if let Some(start) = ended {
                // What a scrape has not counted yet.
                let from = counted_to.map_or(start, |c| c.max(start));
                m.leaderless.inc_by(from.elapsed().as_secs_f64());
            }
        }
        if leaderless {
            let now = Instant::now();
            *since = Some(now);
            *counted = Some(now);
        }
        match &role {
            Role::Leader => {
                tracing::info!(advertise = %self.inner.advertise, "Leader Election: Cluster leadership acquired.")
            }
            Role::Follower { leader: Some(l) } => tracing::info!(leader = %l, "New leader elected."),
            Role::Follower { leader: None } => tracing::warn!("No leader known."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicated() -> Leadership {
        Leadership::replicated("a:1", LeadershipMetrics::register(&Registry::new()).unwrap())
    }

    #[test]
    fn standalone_always_leads() {
        let l = Leadership::standalone();
        assert!(l.is_leader());
        assert!(!l.is_replicated());
    }

    #[test]
    fn leadership_lapses_at_its_deadline_without_any_task_running() {
        let l = replicated();
        assert_eq!(l.role(), Role::Follower { leader: None });
        l.became_leader(1, Instant::now() + Duration::from_millis(30));
        assert!(l.is_leader());
        std::thread::sleep(Duration::from_millis(40));
        assert!(!l.is_leader());
        assert_eq!(l.role(), Role::Follower { leader: None });
    }

    #[tokio::test]
    async fn lapsed_resolves_at_the_deadline_unless_renewed() {
        let l = replicated();
        l.became_leader(1, Instant::now() + Duration::from_millis(300));
        let renewer = l.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            renewer.renewed(Instant::now() + Duration::from_millis(600));
        });
        let started = Instant::now();
        l.lapsed().await;
        assert!(started.elapsed() >= Duration::from_millis(600), "a renewal moves the deadline on");
        assert_eq!(l.role(), Role::Follower { leader: None });
        l.became_leader(2, Instant::now() + Duration::from_secs(60));
        let stepper = l.clone();
        tokio::spawn(async move { stepper.step_down(Some("b:1".into())) });
        tokio::time::timeout(Duration::from_secs(5), l.lapsed()).await.expect("stepping down ends leadership");
    }

    #[test]
    fn renewals_extend_and_observations_do_not_unseat_a_valid_leader() {
        let l = replicated();
        l.became_leader(1, Instant::now() + Duration::from_millis(30));
        l.renewed(Instant::now() + Duration::from_secs(60));
        l.follow(Some("b:1".into()));
        assert!(l.is_leader());
        l.step_down(None);
        assert_eq!(l.leader_addr().as_deref(), Some("b:1"), "stepping down follows the leader already reported");
        assert_eq!(l.leader_addr().as_deref(), Some("b:1"));
        l.follow(Some("a:1".into()));
        assert_eq!(l.leader_addr().as_deref(), Some("b:1"), "our own address is not a leader to follow");
    }

    #[test]
    fn a_scrape_sees_leaderless_time_grow_while_it_lasts() {
        let metrics = LeadershipMetrics::register(&Registry::new()).unwrap();
        let l = Leadership::replicated("a:1", metrics.clone());
        std::thread::sleep(Duration::from_millis(30));
        l.refresh_metrics();
        let first = metrics.leaderless.get();
        assert!(first >= 0.03, "the open interval is counted: {first}");
        assert_eq!(metrics.has_leader.get(), 0);
        std::thread::sleep(Duration::from_millis(20));
        l.refresh_metrics();
        assert!(metrics.leaderless.get() >= first + 0.02, "and keeps growing");
        assert!(l.readiness(Duration::from_millis(40)).is_err(), "scrapes do not restart the outage for readiness");
        l.follow(Some("b:1".into()));
        let led = metrics.leaderless.get();
        assert_eq!(metrics.has_leader.get(), 1);
        std::thread::sleep(Duration::from_millis(20));
        l.refresh_metrics();
        assert!(metrics.leaderless.get() - led < 0.005, "no growth once a leader is known");
    }
}

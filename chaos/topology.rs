//! What the campaign runs: three real engines with `swarm join` agents, three managers behind a
//! real HAProxy, and in etcd mode three real etcd members. Managers keep their ports across
//! restarts so that HAProxy's backends stay valid.

use std::time::Duration;

use crate::support::*;

/// How managers elect their leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Embedded openraft, no etcd.
    Raft,
    /// Three real etcd members and lease elections.
    Etcd,
}

impl Mode {
    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Raft => "raft",
            Mode::Etcd => "etcd",
        }
    }
}

/// The lease etcd-mode managers are given, as users would set it (the default).
pub const ETCD_TTL: &str = "5s";
/// How long a leader stays frozen: longer than the lease (etcd) or the election timeout (Raft).
pub fn freeze_for(mode: Mode) -> Duration {
    match mode {
        Mode::Raft => Duration::from_secs(3),
        Mode::Etcd => Duration::from_secs(8),
    }
}

/// Managers in etcd mode: fixed ports, restartable.
struct EtcdManagers {
    ports: Vec<u16>,
    ms: Vec<Option<Manager>>,
    discovery: String,
}

impl EtcdManagers {
    fn launch(&self, i: usize) -> Manager {
        let me = format!("127.0.0.1:{}", self.ports[i]);
        Manager::start_on(self.ports[i], &self.discovery, &["--replication", "--advertise", &me, "--replication-ttl", ETCD_TTL])
    }
}

enum Managers {
    Raft(RaftGroup),
    Etcd(EtcdManagers),
}

/// The whole cluster under test.
pub struct Topology {
    /// Raft or etcd.
    pub mode: Mode,
    /// The engines, in the order agents were started.
    pub engines: Vec<Engine>,
    /// etcd members (etcd mode only).
    pub etcd: Vec<Etcd>,
    managers: Managers,
    agents: Vec<Join>,
    discovery: String,
    /// HAProxy in front of the managers: where clients connect.
    pub lb: LoadBalancer,
}

impl Topology {
    /// Starts everything and waits until every manager sees every engine healthy.
    pub fn start(mode: Mode) -> Topology {
        let engines = engines(&[("node-1", &[]), ("node-2", &[]), ("node-3", &[])]);
        let (managers, etcd, discovery) = match mode {
            Mode::Raft => {
                let g = RaftGroup::start(3, |peers| format!("swarm://{peers}"), &[]);
                let url = g.swarm_url();
                (Managers::Raft(g), Vec::new(), url)
            }
            Mode::Etcd => {
                let etcd = Etcd::cluster(3);
                let url = etcd_url(&etcd, "chaos");
                let mut set = EtcdManagers { ports: (0..3).map(|_| free_port()).collect(), ms: Vec::new(), discovery: url.clone() };
                for i in 0..3 {
                    let m = set.launch(i);
                    set.ms.push(Some(m));
                }
                (Managers::Etcd(set), etcd, url)
            }
        };
        let agents = engines.iter().map(|e| Join::start(&e.addr, &discovery, "1s", "6s")).collect();
        let addrs: Vec<String> = (0..3).map(|i| manager_addr(&managers, i)).collect();
        let lb = LoadBalancer::start(&addrs);
        let t = Topology { mode, engines, etcd, managers, agents, discovery, lb };
        for i in t.running() {
            t.manager(i).expect("running").wait_healthy(3);
        }
        t
    }

    /// `tcp://` address of the load balancer, for the docker CLI.
    pub fn lb_host(&self) -> String {
        format!("tcp://{}", self.lb.addr)
    }

    /// Manager `i`'s address (also while it is stopped).
    pub fn addr(&self, i: usize) -> String {
        manager_addr(&self.managers, i)
    }

    fn slots(&self) -> &Vec<Option<Manager>> {
        match &self.managers {
            Managers::Raft(g) => &g.ms,
            Managers::Etcd(s) => &s.ms,
        }
    }

    fn slots_mut(&mut self) -> &mut Vec<Option<Manager>> {
        match &mut self.managers {
            Managers::Raft(g) => &mut g.ms,
            Managers::Etcd(s) => &mut s.ms,
        }
    }

    /// Manager `i`, unless stopped.
    pub fn manager(&self, i: usize) -> Option<&Manager> {
        self.slots().get(i).and_then(Option::as_ref)
    }

    /// Indexes of running managers.
    pub fn running(&self) -> Vec<usize> {
        (0..self.slots().len()).filter(|i| self.manager(*i).is_some()).collect()
    }

    /// The manager that says it is primary, when exactly one does (used to pick victims only;
    /// the checker never relies on it).
    pub fn claimed_leader(&self) -> Option<usize> {
        let found: Vec<usize> = self.running().into_iter().filter(|i| self.manager(*i).is_some_and(|m| m.role().0 == "primary")).collect();
        (found.len() == 1).then(|| found[0])
    }

    /// Waits up to `bound` for exactly one claimed primary.
    pub fn wait_leader(&self, bound: Duration) -> Option<usize> {
        let deadline = std::time::Instant::now() + bound;
        loop {
            if let Some(l) = self.claimed_leader() {
                return Some(l);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut m) = self.slots_mut()[i].take() {
            m.kill_hard();
        }
    }

    /// SIGTERM (the manager resigns and drains).
    pub fn terminate(&mut self, i: usize) {
        if let Some(mut m) = self.slots_mut()[i].take() {
            m.terminate();
        }
    }

    /// Sends `sig` (STOP, CONT) to manager `i`.
    pub fn signal(&self, i: usize, sig: &str) {
        if let Some(m) = self.manager(i) {
            m.signal(sig);
        }
    }

    /// Starts manager `i` again on its port (and, in Raft mode, its data directory).
    pub fn restart(&mut self, i: usize) {
        match &mut self.managers {
            Managers::Raft(g) => g.restart(i),
            Managers::Etcd(s) => {
                let m = s.launch(i);
                s.ms[i] = Some(m);
            }
        }
    }

    /// Kills agent `k` (SIGKILL) and starts a new one.
    pub fn restart_agent(&mut self, k: usize, down_for: Duration) {
        self.agents[k].kill();
        std::thread::sleep(down_for);
        self.agents[k] = Join::start(&self.engines[k].addr, &self.discovery, "1s", "6s");
    }

    /// Every running manager's log so far, by address.
    pub fn logs(&self) -> Vec<(String, String)> {
        self.running().into_iter().filter_map(|i| self.manager(i).map(|m| (m.addr.clone(), m.log()))).collect()
    }

    /// Waits until every running manager sees `n` healthy engines; false after `bound`.
    pub fn wait_all_healthy(&self, n: usize, bound: Duration) -> bool {
        let deadline = std::time::Instant::now() + bound;
        while std::time::Instant::now() < deadline {
            let healthy = self.running().iter().all(|i| {
                self.manager(*i).is_some_and(|m| m.node_states().iter().filter(|(_, s)| s == "Healthy").count() == n)
            });
            if healthy {
                return true;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        false
    }
}

fn manager_addr(managers: &Managers, i: usize) -> String {
    match managers {
        Managers::Raft(g) => g.addr(i),
        Managers::Etcd(s) => format!("127.0.0.1:{}", s.ports[i]),
    }
}

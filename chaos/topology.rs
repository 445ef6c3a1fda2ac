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

/// Size of each Raft-mode manager's data directory (a tmpfs).
pub const DATA_DIR_MIB: u32 = 64;

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
        let args = ["--replication", "--advertise", &me, "--replication-ttl", ETCD_TTL];
        Manager::start_as(self.ports[i], &self.discovery, &args, Some(FIRST_UID + i as u32))
    }
}

/// iptables rules that cut traffic between processes on loopback, singled out by the sender's
/// user (each manager runs as its own) and the destination port. Removed on heal or drop.
pub struct Cut {
    rules: Vec<Vec<String>>,
}

impl Cut {
    fn new(pairs: &[(u32, u16)]) -> Cut {
        require("iptables", "iptables");
        let rules: Vec<Vec<String>> = pairs
            .iter()
            .map(|(uid, port)| {
                [
                    "OUTPUT",
                    "-p",
                    "tcp",
                    "-m",
                    "owner",
                    "--uid-owner",
                    &uid.to_string(),
                    "--dport",
                    &port.to_string(),
                    "-j",
                    "DROP",
                ]
                .map(str::to_string)
                .to_vec()
            })
            .collect();
        for r in &rules {
            let o = run(std::process::Command::new("iptables").arg("-I").args(r));
            assert!(o.status.success(), "iptables -I {r:?}: {}", stderr(&o));
        }
        Cut { rules }
    }

    /// Removes the rules.
    pub fn heal(&mut self) {
        for r in self.rules.drain(..) {
            let _ = run(std::process::Command::new("iptables").arg("-D").args(&r));
        }
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        self.heal();
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
    /// Logs of manager processes that were stopped, by address, in order.
    past_logs: std::collections::BTreeMap<String, String>,
}

impl Topology {
    /// Starts everything and waits until every manager sees every engine healthy.
    pub fn start(mode: Mode) -> Topology {
        let engines = engines(&[("node-1", &[]), ("node-2", &[]), ("node-3", &[])]);
        let (managers, etcd, discovery) = match mode {
            Mode::Raft => {
                // Each member as its own user, so that partitions can single out its traffic.
                // Data directories on small tmpfs mounts, which a fault fills up.
                let g = RaftGroup::start_on_disks(3, |peers| format!("swarm://{peers}"), &[], true, Some(DATA_DIR_MIB));
                let url = g.swarm_url();
                (Managers::Raft(g), Vec::new(), url)
            }
            Mode::Etcd => {
                let etcd = Etcd::cluster(3);
                let url = etcd_url(&etcd, "chaos");
                let mut set = EtcdManagers {
                    ports: (0..3).map(|_| free_port()).collect(),
                    ms: Vec::new(),
                    discovery: url.clone(),
                };
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
        let t = Topology { mode, engines, etcd, managers, agents, discovery, lb, past_logs: Default::default() };
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
        let found: Vec<usize> =
            self.running().into_iter().filter(|i| self.manager(*i).is_some_and(|m| m.role().0 == "primary")).collect();
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
            self.archive(&m);
        }
    }

    /// SIGTERM (the manager resigns and drains).
    pub fn terminate(&mut self, i: usize) {
        if let Some(mut m) = self.slots_mut()[i].take() {
            m.terminate();
            self.archive(&m);
        }
    }

    /// Keeps a stopped manager's log: its folder goes with it.
    fn archive(&mut self, m: &Manager) {
        let log = self.past_logs.entry(m.addr.clone()).or_default();
        log.push_str(&m.log());
        log.push_str("---- stopped ----\n");
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

    fn port(&self, i: usize) -> u16 {
        match &self.managers {
            Managers::Raft(g) => g.port(i),
            Managers::Etcd(s) => s.ports[i],
        }
    }

    /// Cuts manager `i` off the other managers (both ways) and, in etcd mode, off etcd; clients
    /// (and HAProxy's checks) still reach it, and it still reaches the engines.
    pub fn isolate(&self, i: usize) -> Cut {
        let uid = |k: usize| FIRST_UID + k as u32;
        let mut pairs = Vec::new();
        for j in (0..3).filter(|j| *j != i) {
            pairs.push((uid(i), self.port(j)));
            pairs.push((uid(j), self.port(i)));
        }
        for e in &self.etcd {
            let port = e.client_addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("etcd port");
            pairs.push((uid(i), port));
        }
        Cut::new(&pairs)
    }

    /// Fills manager `i`'s data directory (Raft mode); returns the filler to delete.
    pub fn fill_disk(&self, i: usize) -> Option<std::path::PathBuf> {
        match &self.managers {
            Managers::Raft(g) => Some(g.fill_disk(i)),
            Managers::Etcd(_) => None,
        }
    }

    /// Starts manager `i` again if its process has exited by itself; true if it had.
    pub fn revive(&mut self, i: usize) -> bool {
        let exited = self.slots_mut()[i].as_mut().is_some_and(|m| m.has_exited());
        if exited {
            if let Some(m) = self.slots_mut()[i].take() {
                self.archive(&m);
            }
            self.restart(i);
        }
        exited
    }

    /// Kills agent `k` (SIGKILL) and starts a new one.
    pub fn restart_agent(&mut self, k: usize, down_for: Duration) {
        self.agents[k].kill();
        std::thread::sleep(down_for);
        self.agents[k] = Join::start(&self.engines[k].addr, &self.discovery, "1s", "6s");
    }

    /// Every manager's log, stopped processes' first, by address.
    pub fn logs(&self) -> Vec<(String, String)> {
        (0..3)
            .map(|i| {
                let addr = self.addr(i);
                let mut log = self.past_logs.get(&addr).cloned().unwrap_or_default();
                if let Some(m) = self.manager(i) {
                    log.push_str(&m.log());
                }
                (addr, log)
            })
            .collect()
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

//! Managers replicating through embedded Raft: fixed ports and data directories that outlive
//! each process, so members can be killed, restarted, added and removed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{free_port, require, run, unique_dir, wait_until, Engine, Join, LoadBalancer, Manager};

/// Member `i` runs as this user plus `i`, so iptables' owner match can single out its
/// traffic; the users need not exist.
pub const FIRST_UID: u32 = 61000;

/// Engines joined through a Raft group of three managers (`swarm://`), every manager seeing
/// every engine healthy.
pub struct JoinedGroup {
    /// The engines, in order.
    pub engines: Vec<Engine>,
    /// The managers.
    pub g: RaftGroup,
    /// The `swarm join` agents, one per engine.
    pub joins: Vec<Join>,
}

impl JoinedGroup {
    /// Starts engines named `names`, three managers, and an agent per engine; waits until every
    /// manager sees every engine healthy.
    pub fn start(names: &[&str]) -> JoinedGroup {
        let specs: Vec<(&str, &[&str])> = names.iter().map(|n| (*n, &[][..])).collect();
        let engines = super::engines(&specs);
        let g = RaftGroup::start(3, |peers| format!("swarm://{peers}"), &[]);
        let joins = engines.iter().map(|e| Join::start(&e.addr, &g.swarm_url(), "1s", "30s")).collect();
        for i in g.running() {
            g.m(i).wait_healthy(engines.len());
        }
        JoinedGroup { engines, g, joins }
    }

    /// HAProxy with the shipped configuration in front of the three managers.
    pub fn load_balancer(&self) -> LoadBalancer {
        LoadBalancer::start(&(0..3).map(|i| self.g.addr(i)).collect::<Vec<_>>())
    }
}

/// A Raft group of managers over one discovery URL.
pub struct RaftGroup {
    /// Members by index; `None` while stopped.
    pub ms: Vec<Option<Manager>>,
    ports: Vec<u16>,
    initial: usize,
    discovery: String,
    extra: Vec<String>,
    /// Run members as [`FIRST_UID`] + index.
    own_users: bool,
    /// Each member's data directory is a tmpfs of this many MiB (to fill it up).
    tmpfs_mib: Option<u32>,
    root: tempfile::TempDir,
}

/// Raft timing for functional tests: heartbeats every 100 ms, elections after 1 to 2 s of
/// silence (the default: 50 ms, 300 to 600 ms).
pub const FUNCTIONAL_TEST_TIMING: &[&str] =
    &["--replication-heartbeat", "100ms", "--replication-election-timeout", "500ms"];

impl RaftGroup {
    /// Starts `n` managers, all with the same `--replication-peers`, and waits for one primary.
    pub fn start(n: usize, discovery: impl FnOnce(&str) -> String, extra: &[&str]) -> RaftGroup {
        RaftGroup::start_with(n, discovery, extra, false)
    }

    /// Like [`RaftGroup::start`]; with `own_users`, each member runs as its own user and also
    /// listens on a unix socket ([`RaftGroup::sock`]) that iptables cannot cut.
    ///
    /// Unless `extra` sets Raft's timing, members get [`FUNCTIONAL_TEST_TIMING`]: these tests
    /// check what a group does, not how fast it fails over, and with debug builds of three
    /// managers and several dockerds on two cores, a leader starved for 300 ms (the default
    /// timing's shortest election) is deposed often enough to fail a test now and then.
    /// The chaos campaign and the benches keep the default timing.
    pub fn start_with(n: usize, discovery: impl FnOnce(&str) -> String, extra: &[&str], own_users: bool) -> RaftGroup {
        let mut args: Vec<&str> = Vec::new();
        if !extra
            .iter()
            .any(|a| a.starts_with("--replication-election-timeout") || a.starts_with("--replication-heartbeat"))
        {
            args.extend_from_slice(FUNCTIONAL_TEST_TIMING);
        }
        args.extend_from_slice(extra);
        RaftGroup::start_on_disks(n, discovery, &args, own_users, None)
    }

    /// Like [`RaftGroup::start_with`]; with `tmpfs_mib`, each member's data directory is a
    /// tmpfs of that size, which [`RaftGroup::fill_disk`] can fill.
    pub fn start_on_disks(
        n: usize,
        discovery: impl FnOnce(&str) -> String,
        extra: &[&str],
        own_users: bool,
        tmpfs_mib: Option<u32>,
    ) -> RaftGroup {
        let mut g = RaftGroup::unlaunched(n, discovery, extra, own_users, tmpfs_mib);
        g.launch_all(n);
        g
    }

    /// A group of `n` members on free ports, none started yet.
    fn unlaunched(
        n: usize,
        discovery: impl FnOnce(&str) -> String,
        extra: &[&str],
        own_users: bool,
        tmpfs_mib: Option<u32>,
    ) -> RaftGroup {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let root = unique_dir("swarm-raft-");
        // Readable by a manager run as nobody.
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let peers = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
        let discovery = discovery(&peers);
        RaftGroup {
            ms: Vec::new(),
            ports,
            initial: n,
            discovery,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            own_users,
            tmpfs_mib,
            root,
        }
    }

    fn launch_all(&mut self, n: usize) {
        for i in 0..n {
            let m = self.launch(i);
            self.ms.push(Some(m));
        }
        self.wait_settled(Duration::from_secs(20));
    }

    /// Like [`RaftGroup::start`], each member's data directory first given to `prepare` with
    /// its address and the peers (to restore a snapshot into it, say).
    pub fn start_prepared(
        n: usize,
        discovery: impl FnOnce(&str) -> String,
        prepare: impl Fn(&Path, &str, &str),
    ) -> RaftGroup {
        let mut g = RaftGroup::unlaunched(n, discovery, FUNCTIONAL_TEST_TIMING, false, None);
        let peers = g.peers();
        for i in 0..n {
            prepare(&g.data_dir(i), &g.addr(i), &peers);
        }
        g.launch_all(n);
        g
    }

    /// Waits until one member is primary and every other running member names it as its
    /// primary: a member that started late has joined the leader's term (openraft 0.9 has no
    /// pre-vote, so a straggler's first election could otherwise still depose the leader).
    /// The primary is looked up again on every poll: that straggler's election can move it.
    pub fn wait_settled(&self, bound: Duration) -> usize {
        wait_until(bound, "one primary that every member follows", || {
            let Some(leader) = self.primary() else { return false };
            let addr = self.addr(leader);
            self.running().iter().all(|i| *i == leader || self.m(*i).role() == ("replica".to_string(), addr.clone()))
        });
        self.wait_one_primary(bound)
    }

    /// `swarm://` URL naming the initial managers.
    pub fn swarm_url(&self) -> String {
        format!("swarm://{}", self.peers())
    }

    /// The initial members' addresses, comma-separated.
    pub fn peers(&self) -> String {
        self.ports[..self.initial].iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }

    /// Port of member `i`.
    pub fn port(&self, i: usize) -> u16 {
        self.ports[i]
    }

    /// Address of member `i`.
    pub fn addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i])
    }

    /// Member `i`'s `--data-dir`.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.root.path().join(format!("m{i}"))
    }

    /// Where member `i` keeps its Raft log and snapshots.
    pub fn raft_dir(&self, i: usize) -> PathBuf {
        self.data_dir(i).join("raft")
    }

    /// The unix socket member `i` also listens on (with own users).
    pub fn sock(&self, i: usize) -> String {
        format!("unix://{}", self.root.path().join(format!("m{i}.sock")).display())
    }

    /// The user member `i` runs as (with own users).
    pub fn uid(&self, i: usize) -> u32 {
        FIRST_UID + i as u32
    }

    fn launch(&self, i: usize) -> Manager {
        self.launch_with_peers(i, Some(self.peers()))
    }

    fn launch_with_peers(&self, i: usize, peers: Option<String>) -> Manager {
        let me = self.addr(i);
        let data = self.data_dir(i);
        std::fs::create_dir_all(&data).unwrap();
        if let Some(mib) = self.tmpfs_mib {
            let mounted = std::fs::read_to_string("/proc/mounts")
                .unwrap_or_default()
                .contains(&format!(" {} tmpfs ", data.display()));
            if !mounted {
                let o = run(Command::new("mount").args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={mib}m,mode=0777"),
                    "tmpfs",
                    data.to_str().unwrap(),
                ]));
                assert!(o.status.success(), "mount tmpfs on {}: {}", data.display(), super::stderr(&o));
            }
        }
        let uid = self.own_users.then(|| self.uid(i));
        if let Some(uid) = uid {
            let _ = run(Command::new("chown").args(["-R", &format!("{uid}:{uid}"), data.to_str().unwrap()]));
        }
        let sock = self.sock(i);
        let mut args = vec!["--replication", "--advertise", &me, "--data-dir", data.to_str().unwrap()];
        if let Some(peers) = &peers {
            args.extend(["--replication-peers", peers.as_str()]);
        }
        if uid.is_some() {
            args.extend(["-H", sock.as_str()]);
        }
        args.extend(self.extra.iter().map(String::as_str));
        Manager::start_as(self.ports[i], &self.discovery, &args, uid)
    }

    /// (Re)starts member `i` on its port and data directory.
    pub fn restart(&mut self, i: usize) {
        let m = self.launch(i);
        self.ms[i] = Some(m);
    }

    /// (Re)starts member `i` from its data directory, without `--replication-peers`.
    pub fn restart_without_peers(&mut self, i: usize) {
        let m = self.launch_with_peers(i, None);
        self.ms[i] = Some(m);
    }

    /// Starts one more manager, not among the initial peers: it waits to be added.
    pub fn start_extra(&mut self) -> usize {
        self.ports.push(free_port());
        let i = self.ports.len() - 1;
        let m = self.launch(i);
        self.ms.push(Some(m));
        i
    }

    /// Fills member `i`'s data directory (a tmpfs) to the last byte; returns the filler file.
    pub fn fill_disk(&self, i: usize) -> PathBuf {
        assert!(self.tmpfs_mib.is_some(), "fill_disk needs a group started on tmpfs data directories");
        let filler = self.data_dir(i).join("filler");
        // dd stops at ENOSPC, which is the point.
        let _ = run(Command::new("dd").args(["if=/dev/zero", &format!("of={}", filler.display()), "bs=64k"]));
        filler
    }

    /// Member `i` (panics when stopped).
    pub fn m(&self, i: usize) -> &Manager {
        self.ms[i].as_ref().expect("manager stopped")
    }

    /// Indexes of running members.
    pub fn running(&self) -> Vec<usize> {
        (0..self.ms.len()).filter(|i| self.ms[*i].is_some()).collect()
    }

    /// The primary's index among running members, when exactly one says so.
    pub fn primary(&self) -> Option<usize> {
        let running: Vec<usize> = self.running();
        let ms: Vec<&Manager> = running.iter().map(|i| self.m(*i)).collect();
        let found: Vec<usize> =
            ms.iter().enumerate().filter(|(_, m)| m.role().0 == "primary").map(|(k, _)| running[k]).collect();
        (found.len() == 1).then(|| found[0])
    }

    /// Waits until exactly one running member is primary; returns it.
    pub fn wait_one_primary(&self, bound: Duration) -> usize {
        wait_until(bound, "exactly one primary", || self.primary().is_some());
        self.primary().unwrap()
    }

    /// A running member other than `not`.
    pub fn other(&self, not: usize) -> usize {
        self.running().into_iter().find(|i| *i != not).expect("another running manager")
    }

    /// SIGKILL of member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut m) = self.ms[i].take() {
            m.kill_hard();
        }
    }

    /// SIGTERM of member `i`.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut m) = self.ms[i].take() {
            m.terminate();
        }
    }

    fn members_list(&self, via: usize) -> std::process::Output {
        run(Command::new(env!("CARGO_BIN_EXE_swarm")).args([
            "members",
            "list",
            "--manager",
            &self.addr(via),
            "--cluster-secret-file",
            super::secret_file(),
        ]))
    }

    /// `swarm members list` from member `via`: `address<TAB>role` per member, sorted (none
    /// when it fails, as it may mid-change).
    pub fn members(&self, via: usize) -> Vec<String> {
        let o = self.members_list(via);
        if !o.status.success() {
            return Vec::new();
        }
        members_rows(&super::stdout(&o)).into_iter().map(|r| format!("{}\t{}", r[0], r[1])).collect()
    }

    /// `swarm members list` rows from member `via`, each cell as printed.
    pub fn member_rows(&self, via: usize) -> Vec<Vec<String>> {
        let o = self.members_list(via);
        assert!(o.status.success(), "swarm members list: {}", super::stderr(&o));
        members_rows(&super::stdout(&o))
    }

    /// `swarm members add|remove addr` through member `via`; asserts success.
    pub fn change_members(&self, via: usize, action: &str, addr: &str) {
        let o = run(Command::new(env!("CARGO_BIN_EXE_swarm")).args([
            "members",
            action,
            addr,
            "--manager",
            &self.addr(via),
            "--cluster-secret-file",
            super::secret_file(),
        ]));
        assert!(o.status.success(), "swarm members {action} {addr}: {}", super::stderr(&o));
    }
}

/// The rows of `swarm members list`'s table (its header checked and left out), sorted, each
/// cell as printed (REACHABLE's reason kept whole).
pub fn members_rows(table: &str) -> Vec<Vec<String>> {
    let mut lines = table.lines();
    let header: Vec<&str> =
        lines.next().unwrap_or_default().split("   ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(header, ["ADDRESS", "ROLE", "TERM", "APPLIED", "PRIMARY", "LAST CONTACT", "REACHABLE"], "{table}");
    let mut rows: Vec<Vec<String>> = lines
        .map(|l| {
            let mut cells: Vec<String> = l.split_whitespace().take(6).map(str::to_string).collect();
            // REACHABLE is the last column and may hold words ("no: Connection refused …"):
            // everything after the sixth cell is that one cell.
            cells.push(l.split_whitespace().skip(6).collect::<Vec<_>>().join(" "));
            cells
        })
        .collect();
    rows.sort();
    rows
}

impl Drop for RaftGroup {
    fn drop(&mut self) {
        if self.tmpfs_mib.is_some() {
            for m in self.ms.iter_mut().flatten() {
                m.kill_hard();
            }
            for i in 0..self.ports.len() {
                let _ = run(Command::new("umount").arg("-l").arg(self.data_dir(i)));
            }
        }
    }
}

/// iptables rules cutting one manager off the others: nothing reaches its port, nothing its
/// user sends leaves. Removed on heal or drop.
pub struct Partition {
    rules: Vec<Vec<String>>,
}

impl Partition {
    /// Cuts off the manager listening on `port`.
    pub fn isolate(port: u16, uid: u32) -> Partition {
        require("iptables", "iptables");
        let rules = vec![
            vec![
                "INPUT".to_string(),
                "-p".into(),
                "tcp".into(),
                "--dport".into(),
                port.to_string(),
                "-j".into(),
                "DROP".into(),
            ],
            vec![
                "OUTPUT".to_string(),
                "-m".into(),
                "owner".into(),
                "--uid-owner".into(),
                uid.to_string(),
                "-j".into(),
                "DROP".into(),
            ],
        ];
        for r in &rules {
            let o = run(Command::new("iptables").arg("-I").args(r));
            assert!(o.status.success(), "iptables -I {r:?}: {}", super::stderr(&o));
        }
        Partition { rules }
    }

    /// Removes the rules.
    pub fn heal(&mut self) {
        for r in self.rules.drain(..) {
            let _ = run(Command::new("iptables").arg("-D").args(&r));
        }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.heal();
    }
}

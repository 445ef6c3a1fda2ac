//! Faults, drawn from a seeded generator so that a seed replays the same campaign: what is
//! broken, for how long, and what the injector saw while healing it.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;

use crate::history::Clock;
use crate::topology::{freeze_for, Mode, Topology};

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// SIGKILL of the leader.
    LeaderKill,
    /// SIGTERM of the leader (it resigns).
    LeaderTerm,
    /// SIGSTOP of the leader past its lease or election timeout, then SIGCONT: the deposed
    /// leader must not act.
    LeaderFreeze,
    /// SIGKILL of a follower.
    FollowerKill,
    /// The leader cut off the other managers (and etcd), still reachable by clients, then
    /// healed.
    LeaderPartition,
    /// A follower cut off the others (and etcd), then healed.
    MinorityPartition,
    /// dockerd stopped past failure detection, then started again.
    EngineStop,
    /// dockerd frozen (SIGSTOP) past failure detection, then resumed.
    EngineHang,
    /// A `swarm join` agent killed, restarted before its TTL.
    AgentKill,
    /// Every manager stopped (SIGTERM), then all started again.
    FullRestart,
    /// The leader's data directory full (Raft mode), then freed; a manager that exited is
    /// started again.
    DiskFull,
    /// An etcd member killed, then restarted (etcd mode).
    EtcdKill,
    /// An etcd member frozen, then resumed (etcd mode).
    EtcdHang,
}

impl Fault {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Fault::LeaderKill => "leader SIGKILL",
            Fault::LeaderTerm => "leader SIGTERM",
            Fault::LeaderFreeze => "leader SIGSTOP/SIGCONT",
            Fault::FollowerKill => "follower SIGKILL",
            Fault::LeaderPartition => "leader partitioned",
            Fault::MinorityPartition => "follower partitioned",
            Fault::EngineStop => "engine stop/restart",
            Fault::EngineHang => "engine hang",
            Fault::AgentKill => "agent kill",
            Fault::FullRestart => "all managers restarted",
            Fault::DiskFull => "leader's disk full",
            Fault::EtcdKill => "etcd member kill",
            Fault::EtcdHang => "etcd member hang",
        }
    }

    /// Its name on the command line (`--only`).
    pub fn slug(self) -> &'static str {
        match self {
            Fault::LeaderKill => "leader-kill",
            Fault::LeaderTerm => "leader-term",
            Fault::LeaderFreeze => "leader-freeze",
            Fault::FollowerKill => "follower-kill",
            Fault::LeaderPartition => "leader-partition",
            Fault::MinorityPartition => "follower-partition",
            Fault::EngineStop => "engine-stop",
            Fault::EngineHang => "engine-hang",
            Fault::AgentKill => "agent-kill",
            Fault::FullRestart => "full-restart",
            Fault::DiskFull => "disk-full",
            Fault::EtcdKill => "etcd-kill",
            Fault::EtcdHang => "etcd-hang",
        }
    }

    /// Whether it strikes a manager (containers must keep running through it).
    pub fn strikes_managers(self) -> bool {
        !matches!(self, Fault::EngineStop | Fault::EngineHang | Fault::AgentKill)
    }

    /// Whether it strikes the leader (its failover is measured).
    pub fn strikes_leader(self) -> bool {
        matches!(
            self,
            Fault::LeaderKill
                | Fault::LeaderTerm
                | Fault::LeaderFreeze
                | Fault::LeaderPartition
                | Fault::FullRestart
                | Fault::DiskFull
        )
    }
}

/// Draws the next fault: leader faults about half the time. With `only`, among those kinds.
pub fn draw(rng: &mut StdRng, mode: Mode, only: &[String]) -> Fault {
    let table: &[(Fault, u32)] = &[
        (Fault::LeaderKill, 20),
        (Fault::LeaderTerm, 12),
        (Fault::LeaderFreeze, 16),
        (Fault::FollowerKill, 8),
        (Fault::LeaderPartition, 8),
        (Fault::MinorityPartition, 5),
        (Fault::EngineStop, 8),
        (Fault::EngineHang, 8),
        (Fault::AgentKill, 8),
        (Fault::FullRestart, 6),
        (Fault::DiskFull, if mode == Mode::Raft { 5 } else { 0 }),
        (Fault::EtcdKill, if mode == Mode::Etcd { 6 } else { 0 }),
        (Fault::EtcdHang, if mode == Mode::Etcd { 6 } else { 0 }),
    ];
    let table: Vec<(Fault, u32)> = table
        .iter()
        .map(|(f, w)| (*f, if only.is_empty() || only.iter().any(|o| o == f.slug()) { *w } else { 0 }))
        .collect();
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    assert!(total > 0, "no fault of {only:?} applies in {} mode", mode.name());
    let mut roll = rng.random_range(0..total);
    for (f, w) in table {
        if roll < w {
            return f;
        }
        roll -= w;
    }
    Fault::LeaderKill
}

/// A fault as it happened.
#[derive(Debug, Clone)]
pub struct Struck {
    /// What.
    pub fault: Fault,
    /// Which process (a manager's address, an engine's or etcd member's name).
    pub victim: String,
    /// When it struck.
    pub began: f64,
    /// When the injector undid it (restart, SIGCONT).
    pub healed: f64,
}

/// How long a failed engine stays failed: past failure detection, so containers that asked for
/// it are rescheduled.
const ENGINE_DOWN: Duration = Duration::from_secs(12);

/// Strikes `fault`, waits, heals it. Returns `None` when there was no leader to strike.
pub fn strike(t: &mut Topology, fault: Fault, rng: &mut StdRng, clock: Clock) -> Option<Struck> {
    let mode = t.mode;
    let pause =
        |rng: &mut StdRng, lo: u64, hi: u64| std::thread::sleep(Duration::from_millis(rng.random_range(lo..hi)));
    let began;
    let victim;
    match fault {
        Fault::LeaderKill | Fault::LeaderTerm | Fault::LeaderFreeze | Fault::FollowerKill => {
            let leader = t.wait_leader(Duration::from_secs(20))?;
            let i = if fault == Fault::FollowerKill { t.running().into_iter().find(|i| *i != leader)? } else { leader };
            victim = t.addr(i);
            began = clock.now();
            match fault {
                Fault::LeaderKill | Fault::FollowerKill => t.kill(i),
                Fault::LeaderTerm => t.terminate(i),
                _ => t.signal(i, "STOP"),
            }
            if fault == Fault::LeaderFreeze {
                std::thread::sleep(freeze_for(mode));
                t.signal(i, "CONT");
            } else {
                pause(rng, 500, 2000);
                t.restart(i);
            }
        }
        Fault::LeaderPartition | Fault::MinorityPartition => {
            let leader = t.wait_leader(Duration::from_secs(20))?;
            let i = if fault == Fault::MinorityPartition {
                t.running().into_iter().find(|i| *i != leader)?
            } else {
                leader
            };
            victim = t.addr(i);
            began = clock.now();
            let mut cut = t.isolate(i);
            std::thread::sleep(freeze_for(mode) + Duration::from_millis(rng.random_range(0..2000)));
            cut.heal();
        }
        Fault::DiskFull => {
            let i = t.wait_leader(Duration::from_secs(20))?;
            victim = t.addr(i);
            began = clock.now();
            let filler = t.fill_disk(i)?;
            pause(rng, 3000, 6000);
            let _ = std::fs::remove_file(filler);
            if t.revive(i) {
                eprintln!("chaos: {victim} had exited on a full disk; started again");
            }
        }
        Fault::FullRestart => {
            victim = "every manager".into();
            began = clock.now();
            for i in t.running() {
                t.terminate(i);
            }
            pause(rng, 500, 1500);
            for i in 0..3 {
                t.restart(i);
            }
        }
        Fault::EngineStop | Fault::EngineHang => {
            let k = rng.random_range(0..t.engines.len());
            victim = t.engines[k].name.clone();
            began = clock.now();
            if fault == Fault::EngineStop {
                t.engines[k].stop();
                std::thread::sleep(ENGINE_DOWN);
                t.engines[k].restart();
            } else {
                t.engines[k].freeze();
                std::thread::sleep(ENGINE_DOWN);
                t.engines[k].thaw();
            }
        }
        Fault::AgentKill => {
            let k = rng.random_range(0..t.engines.len());
            victim = format!("agent of {}", t.engines[k].name);
            began = clock.now();
            t.restart_agent(k, Duration::from_secs(2));
        }
        Fault::EtcdKill | Fault::EtcdHang => {
            let k = rng.random_range(0..t.etcd.len());
            victim = t.etcd[k].name.clone();
            began = clock.now();
            if fault == Fault::EtcdKill {
                t.etcd[k].stop();
                pause(rng, 2000, 4000);
                t.etcd[k].restart();
            } else {
                t.etcd[k].pause();
                pause(rng, 2000, 4000);
                t.etcd[k].resume();
            }
        }
    }
    Some(Struck { fault, victim, began, healed: clock.now() })
}

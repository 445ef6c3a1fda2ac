//! The chaos suite: three Raft managers over three real engines joined by `swarm join` agents,
//! a client creating containers without pause, and a fault injector that kills managers (the
//! leader too), kills agents and hangs engines. Checked throughout and at the end:
//!
//! - never two primaries at once;
//! - every container the client was told exists, exists exactly once on the engines, and runs;
//! - after the faults heal, every manager sees every engine healthy and the same containers.
//!
//! `SWARM_CHAOS_SEED` replays a run; `SWARM_CHAOS_ROUNDS` sets how many faults (default 8).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::*;

/// A fault and how long it lasts.
#[derive(Debug, Clone, Copy)]
enum Fault {
    KillLeader,
    KillFollower,
    TerminateLeader,
    KillAgent,
    /// Hung engine, shorter than detection.
    BriefHang,
    /// Hung engine, long enough to be declared unhealthy (its containers are rescheduled).
    LongHang,
}

const FAULTS: [Fault; 6] = [Fault::KillLeader, Fault::KillFollower, Fault::TerminateLeader, Fault::KillAgent, Fault::BriefHang, Fault::LongHang];

struct Report {
    faults: Vec<(Fault, Duration)>,
    acknowledged: Vec<String>,
    retries: usize,
    max_leaderless: Duration,
}

/// Creates containers one after another through any running manager, retrying each name until
/// it is acknowledged (or found to exist), until `stop`.
fn client(hosts: Arc<Mutex<Vec<String>>>, stop: Arc<AtomicBool>, report: Arc<Mutex<Report>>) {
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let name = format!("c{i}");
        let deadline = Instant::now() + patience(Duration::from_secs(60));
        loop {
            let list = hosts.lock().unwrap().clone();
            let host = &list[i % list.len().max(1)];
            let o = run(docker_cmd(host).args(["run", "-d", "--name", &name, "-e", "reschedule:on-node-failure", "busybox", "sleep", "3600"]));
            // A conflict means an earlier attempt created it; it may not have started.
            if o.status.success() || (stderr(&o).contains("Conflict") && run(docker_cmd(host).args(["start", &name])).status.success()) {
                report.lock().unwrap().acknowledged.push(name.clone());
                break;
            }
            report.lock().unwrap().retries += 1;
            assert!(Instant::now() < deadline, "{name} was never created: {}", stderr(&o));
            std::thread::sleep(Duration::from_millis(200));
        }
        i += 1;
    }
}

/// Whether every acknowledged container is on exactly one engine, running, and nothing else is.
fn exactly_once_running(es: &[Engine], acknowledged: &BTreeSet<String>) -> Result<(), String> {
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in es {
        let out = docker_ok(&e.host(), &["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
        for line in out.lines() {
            let (name, state) = line.split_once(' ').unwrap_or((line, ""));
            seen.entry(name.to_string()).or_default().push(format!("{}:{state}", e.name));
        }
    }
    let wrong: Vec<String> = acknowledged
        .iter()
        .filter(|n| seen.get(*n).is_none_or(|s| s.len() != 1 || !s[0].ends_with(":running")))
        .map(|n| format!("{n} {:?}", seen.get(n)))
        .chain(seen.keys().filter(|n| !acknowledged.contains(*n)).map(|n| format!("{n} never acknowledged {:?}", seen[n])))
        .collect();
    if wrong.is_empty() { Ok(()) } else { Err(wrong.join(", ")) }
}

#[test]
fn managers_agents_and_engines_fail_and_nothing_is_lost_or_doubled() {
    let seed: u64 = std::env::var("SWARM_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    let rounds: usize = std::env::var("SWARM_CHAOS_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    eprintln!("chaos seed {seed} ({rounds} rounds); replay with SWARM_CHAOS_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    let es = engines(&[("node-1", &[]), ("node-2", &[]), ("node-3", &[])]);
    let mut g = RaftGroup::start(3, |peers| format!("swarm://{peers}"), &[]);
    let url = g.swarm_url();
    let join = |e: &Engine| Join::start(&e.addr, &url, "1s", "6s");
    let mut agents: Vec<Join> = es.iter().map(join).collect();
    for i in g.running() {
        g.m(i).wait_healthy(3);
    }
    let hosts = Arc::new(Mutex::new((0..3).map(|i| g.m(i).host()).collect::<Vec<_>>()));
    let stop = Arc::new(AtomicBool::new(false));
    let report = Arc::new(Mutex::new(Report { faults: Vec::new(), acknowledged: Vec::new(), retries: 0, max_leaderless: Duration::ZERO }));
    let worker = {
        let (hosts, stop, report) = (hosts.clone(), stop.clone(), report.clone());
        std::thread::spawn(move || client(hosts, stop, report))
    };

    for _ in 0..rounds {
        std::thread::sleep(Duration::from_millis(rng.random_range(1500..3000)));
        let fault = FAULTS[rng.random_range(0..FAULTS.len())];
        let began = Instant::now();
        let leader = g.wait_one_primary(Duration::from_secs(20));
        match fault {
            Fault::KillLeader | Fault::TerminateLeader | Fault::KillFollower => {
                let victim = if matches!(fault, Fault::KillFollower) { g.other(leader) } else { leader };
                // Keep the client on managers that answer.
                *hosts.lock().unwrap() = g.running().into_iter().filter(|i| *i != victim).map(|i| g.m(i).host()).collect();
                if matches!(fault, Fault::TerminateLeader) { g.stop(victim) } else { g.kill(victim) }
                // Never two primaries; one within the failover bound.
                let t = Instant::now();
                while g.primary().is_none() {
                    assert!(t.elapsed() < patience(Duration::from_secs(10)), "no primary after {fault:?}");
                    std::thread::sleep(Duration::from_millis(50));
                }
                let gap = t.elapsed();
                let mut r = report.lock().unwrap();
                r.max_leaderless = r.max_leaderless.max(gap);
                drop(r);
                std::thread::sleep(Duration::from_millis(rng.random_range(500..2000)));
                g.restart(victim);
                *hosts.lock().unwrap() = (0..3).map(|i| g.m(i).host()).collect();
            }
            Fault::KillAgent => {
                let k = rng.random_range(0..agents.len());
                agents[k].kill();
                // Back before its TTL runs out: the node must not flap.
                std::thread::sleep(Duration::from_secs(2));
                agents[k] = join(&es[k]);
            }
            Fault::BriefHang | Fault::LongHang => {
                let k = rng.random_range(0..es.len());
                es[k].freeze();
                let hang = if matches!(fault, Fault::BriefHang) { Duration::from_millis(1500) } else { Duration::from_secs(10) };
                std::thread::sleep(hang);
                es[k].thaw();
            }
        }
        assert!(g.primary().is_some() || { std::thread::sleep(Duration::from_secs(2)); g.primary().is_some() }, "no primary after {fault:?}");
        report.lock().unwrap().faults.push((fault, began.elapsed()));
    }
    stop.store(true, Ordering::Relaxed);
    worker.join().expect("the client failed");

    // Heal: every manager sees every engine healthy, and the leader has removed stale copies.
    let leader = g.wait_one_primary(Duration::from_secs(20));
    for i in g.running() {
        g.m(i).wait_healthy(3);
    }
    let acknowledged: BTreeSet<String> = report.lock().unwrap().acknowledged.iter().cloned().collect();
    eprintln!("faults: {:?}", report.lock().unwrap().faults);
    let deadline = Instant::now() + patience(Duration::from_secs(60));
    while let Err(problems) = exactly_once_running(&es, &acknowledged) {
        assert!(Instant::now() < deadline, "after healing, for 60 s: {problems}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // The leader's cache converges on the engines through their events and refreshes.
    let via_leader = || -> BTreeSet<String> {
        g.m(leader).docker(&["ps", "-a", "--format", "{{.Names}}"]).lines().map(|l| l.split_once('/').map_or(l, |(_, n)| n).to_string()).collect()
    };
    let deadline = Instant::now() + patience(Duration::from_secs(10));
    while via_leader() != acknowledged && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(via_leader(), acknowledged, "docker ps -a through the leader, 10 s after the engines agreed");

    let r = report.lock().unwrap();
    eprintln!("chaos report (seed {seed}):");
    for (f, took) in &r.faults {
        eprintln!("  {f:?} ({:.1} s)", took.as_secs_f64());
    }
    eprintln!(
        "  {} containers acknowledged, {} client retries, longest time without a primary {:.2} s; all exist exactly once and run",
        r.acknowledged.len(),
        r.retries,
        r.max_leaderless.as_secs_f64()
    );
}

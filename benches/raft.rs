//! Embedded Raft, in one run: store write latency through the leader and through a follower,
//! then failover over repeated SIGKILLs of the leader: the time until another manager reports
//! `Role: primary`, and until a write sent to a follower succeeds.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::*;

fn pct(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn write(addr: &str, key: &str) -> bool {
    let path = format!("/_swarm/nodes/{key}?ttl=600");
    http_with_headers(addr, "PUT", &path, &manager_signed("PUT", &path), None, Duration::from_secs(2)).0 == 200
}

fn main() {
    let trials: usize = std::env::var("SWARM_BENCH_TRIALS").ok().and_then(|t| t.parse().ok()).unwrap_or(20);
    let es = engines(&[("node-1", &[])]);
    // Static engines: the keys written below are registry entries no manager dials.
    let mut g = RaftGroup::start(
        3,
        |_| nodes_url(&es),
        &["--replication-heartbeat", "50ms", "--replication-election-timeout", "150ms"],
    );
    let leader = g.wait_one_primary(Duration::from_secs(20));
    let follower = g.other(leader);
    for (label, via) in [("leader", leader), ("follower", follower)] {
        let mut lat = Vec::new();
        for i in 0..300 {
            let t = Instant::now();
            assert!(write(&g.addr(via), &format!("127.0.0.1:{}", 30000 + i)));
            lat.push(t.elapsed());
        }
        println!(
            "store write (registry PUT, fsync'd on a quorum) via {label:<8}: p50 {:.2} ms p99 {:.2} ms",
            ms(pct(&mut lat, 0.5)),
            ms(pct(&mut lat, 0.99))
        );
    }

    let (mut elected, mut written) = (Vec::new(), Vec::new());
    for round in 0..trials {
        let leader = g.wait_one_primary(Duration::from_secs(20));
        let others: Vec<usize> = g.running().into_iter().filter(|i| *i != leader).collect();
        let started = Instant::now();
        g.kill(leader);
        // Polled every 10 ms: finer than wait_until's 100 ms.
        while !others.iter().any(|i| g.m(*i).role().0 == "primary") {
            assert!(started.elapsed() < Duration::from_secs(15), "no new primary");
            std::thread::sleep(Duration::from_millis(10));
        }
        elected.push(started.elapsed());
        if std::env::var("SWARM_BENCH_VERBOSE").is_ok() {
            eprintln!("round {round}: killed {leader}, new primary after {:?}", started.elapsed());
        }
        let next = *others.iter().find(|i| g.m(**i).role().0 == "primary").unwrap();
        let via = *others.iter().find(|i| **i != next).unwrap();
        while !write(&g.addr(via), &format!("127.0.0.1:{}", 31000 + round)) {
            assert!(started.elapsed() < Duration::from_secs(15), "no write through a follower");
            std::thread::sleep(Duration::from_millis(10));
        }
        written.push(started.elapsed());
        g.restart(leader);
        // Each kill hits a settled group: the restarted manager follows the new leader.
        let primary = g.addr(next);
        wait_until(Duration::from_secs(15), "the killed manager is back as a replica", || {
            g.m(leader).role() == ("replica".to_string(), primary.clone())
        });
        std::thread::sleep(Duration::from_secs(1));
    }
    println!(
        "failover after SIGKILL of the leader (openraft's default timing: heartbeat 50ms, election timeout 150-300ms): n={} new primary p50 {:.0} ms p99 {:.0} ms max {:.0} ms | first write through a follower p50 {:.0} ms p99 {:.0} ms max {:.0} ms",
        elected.len(),
        ms(pct(&mut elected, 0.5)), ms(pct(&mut elected, 0.99)), ms(*elected.iter().max().unwrap()),
        ms(pct(&mut written, 0.5)), ms(pct(&mut written, 0.99)), ms(*written.iter().max().unwrap()),
    );
}

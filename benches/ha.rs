//! High availability on etcd, in one run: latency and throughput of small calls to the leader
//! directly and through a follower (keep-alive HTTP), then failover times over repeated
//! SIGKILL and SIGTERM of the leader (time until another manager reports `Role: primary`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

fn get(reader: &mut BufReader<TcpStream>, writer: &mut TcpStream, path: &str) {
    write!(writer, "GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains(" 200 "), "{line}");
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length: ") {
            length = v.parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
}

fn measure(addr: &str, path: &str, n: usize) -> (Duration, Duration, f64) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let (mut r, mut w) = (BufReader::new(s.try_clone().unwrap()), s);
    for _ in 0..100 {
        get(&mut r, &mut w, path);
    }
    let mut samples = Vec::with_capacity(n);
    let started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        get(&mut r, &mut w, path);
        samples.push(t.elapsed());
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    samples.sort();
    (samples[n / 2], samples[n * 99 / 100], rate)
}

fn pct(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

fn main() {
    let trials: usize = std::env::var("SWARM_BENCH_TRIALS").ok().and_then(|t| t.parse().ok()).unwrap_or(10);
    let etcd = vec![Etcd::single()];
    let es = engines(&[("node-1", &[])]);
    let url = etcd_url(&etcd, "bench");
    let _join = Join::start(&es[0].addr, &url, "1s", "5s");
    let ttl = "3s";
    let mut ms: Vec<Manager> = (0..3).map(|_| Manager::start_replica(&url, &["--replication-ttl", ttl])).collect();
    wait_until(Duration::from_secs(20), "one primary", || primaries(&ms).len() == 1);
    let leader = primaries(&ms)[0];
    let follower = (leader + 1) % 3;
    ms[leader].wait_healthy(1);
    ms[follower].wait_healthy(1);
    docker_ok(&ms[leader].host(), &["run", "-d", "--name", "probe", "busybox", "sleep", "3600"]);
    for (path, note) in [
        ("/v1.41/containers/probe/json", "proxied to the leader"),
        ("/v1.41/version", "proxied to the leader"),
        ("/_ping", "answered by each manager"),
    ] {
        let (d50, d99, drate) = measure(&ms[leader].addr, path, 3000);
        let (f50, f99, frate) = measure(&ms[follower].addr, path, 3000);
        println!(
            "GET {path} ({note}): leader p50 {:.0} us p99 {:.0} us {:.0} req/s | via follower p50 {:.0} us p99 {:.0} us {:.0} req/s | added p50 {:+.0} us p99 {:+.0} us, throughput {:.0}%",
            d50.as_secs_f64() * 1e6, d99.as_secs_f64() * 1e6, drate,
            f50.as_secs_f64() * 1e6, f99.as_secs_f64() * 1e6, frate,
            (f50.as_secs_f64() - d50.as_secs_f64()) * 1e6, (f99.as_secs_f64() - d99.as_secs_f64()) * 1e6, frate / drate * 100.0
        );
    }

    let (mut kills, mut terms) = (Vec::new(), Vec::new());
    for round in 0..trials * 2 {
        let leader = primaries(&ms)[0];
        let sigkill = round % 2 == 0;
        let started = Instant::now();
        if sigkill { ms[leader].kill_hard() } else { ms[leader].terminate() }
        let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        wait_until(Duration::from_secs(15), "a new primary", || others.iter().any(|i| ms[*i].role().0 == "primary"));
        let took = started.elapsed();
        if sigkill { kills.push(took) } else { terms.push(took) }
        // Bring the stopped manager back as a fresh replica on a new port.
        ms[leader] = Manager::start_replica(&url, &["--replication-ttl", ttl]);
        wait_until(Duration::from_secs(10), "the new manager follows", || ms[leader].role().0 == "replica" && !ms[leader].role().1.is_empty());
    }
    println!("failover after SIGKILL of the leader (ttl {ttl}): n={} p50 {:.2} s p99 {:.2} s", kills.len(), pct(&mut kills, 0.5).as_secs_f64(), pct(&mut kills, 0.99).as_secs_f64());
    println!("handover after SIGTERM of the leader:        n={} p50 {:.3} s p99 {:.3} s", terms.len(), pct(&mut terms, 0.5).as_secs_f64(), pct(&mut terms, 0.99).as_secs_f64());
}

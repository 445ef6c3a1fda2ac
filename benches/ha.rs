//! High availability on etcd, in one run: latency and throughput of small calls to the leader
//! directly, through a follower, and through HAProxy as a reference hop (keep-alive HTTP,
//! interleaved rounds), then failover times over repeated SIGKILL and SIGTERM of the leader
//! (time until another manager reports `Role: primary`).

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

/// One keep-alive connection and the samples taken on it.
struct Target {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    samples: Vec<Duration>,
    busy: Duration,
}

impl Target {
    fn connect(addr: &str, path: &str) -> Target {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        let mut t = Target {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
            samples: Vec::new(),
            busy: Duration::ZERO,
        };
        for _ in 0..100 {
            get(&mut t.reader, &mut t.writer, path);
        }
        t
    }

    fn take(&mut self, path: &str, n: usize) {
        let started = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            get(&mut self.reader, &mut self.writer, path);
            self.samples.push(t.elapsed());
        }
        self.busy += started.elapsed();
    }

    /// p50, p99 and requests per second.
    fn figures(&mut self) -> (f64, f64, f64) {
        let rate = self.samples.len() as f64 / self.busy.as_secs_f64();
        let (p50, p99) = (pct(&mut self.samples, 0.5), pct(&mut self.samples, 0.99));
        (p50.as_secs_f64() * 1e6, p99.as_secs_f64() * 1e6, rate)
    }
}

/// Samples every target in interleaved rounds, so that drift on the machine (CPU placement on
/// 2 cores moves p50 by tens of µs) hits them all alike.
fn measure<const N: usize>(path: &str, addrs: [&str; N], rounds: usize, per_round: usize) -> [(f64, f64, f64); N] {
    let mut targets = addrs.map(|a| Target::connect(a, path));
    for _ in 0..rounds {
        for t in targets.iter_mut() {
            t.take(path, per_round);
        }
    }
    targets.map(|mut t| t.figures())
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
    // Reference hops in front of the leader alone, the repository's HAProxy configuration (it
    // parses each request to give it an ID and retry it) and a plain HTTP-mode HAProxy with
    // keep-alive: what each adds is this machine's price of one more process on the path.
    let leader_addr = ms[leader].addr.clone();
    let shipped_lb = LoadBalancer::start(&[leader_addr.clone(), leader_addr.clone(), leader_addr.clone()]);
    let http_lb = LoadBalancer::start_http(&leader_addr);
    for (path, note) in [
        ("/v1.41/containers/probe/json", "proxied to the leader"),
        ("/v1.41/version", "proxied to the leader"),
        ("/_ping", "answered by each manager"),
    ] {
        let rows = measure(path, [&ms[leader].addr, &ms[follower].addr, &shipped_lb.addr, &http_lb.addr], 10, 500);
        println!("GET {path} ({note}), n=5000 each, interleaved:");
        let (d50, d99, drate) = rows[0];
        for (name, (p50, p99, rate)) in
            ["leader direct", "via a follower", "via shipped HAProxy", "via HAProxy http"].iter().zip(rows)
        {
            print!("  {name:<19} p50 {p50:>5.0} us  p99 {p99:>5.0} us  {rate:>6.0} req/s");
            if *name != "leader direct" {
                print!(
                    "  added p50 {:+.0} us p99 {:+.0} us, throughput {:.0}%",
                    p50 - d50,
                    p99 - d99,
                    rate / drate * 100.0
                );
            }
            println!();
        }
    }
    drop((shipped_lb, http_lb));

    let (mut kills, mut terms) = (Vec::new(), Vec::new());
    for round in 0..trials * 2 {
        let leader = primaries(&ms)[0];
        let sigkill = round % 2 == 0;
        let started = Instant::now();
        if sigkill {
            ms[leader].kill_hard()
        } else {
            ms[leader].terminate()
        }
        let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        wait_until(Duration::from_secs(15), "a new primary", || others.iter().any(|i| ms[*i].role().0 == "primary"));
        let took = started.elapsed();
        if sigkill {
            kills.push(took)
        } else {
            terms.push(took)
        }
        // Bring the stopped manager back as a fresh replica on a new port.
        ms[leader] = Manager::start_replica(&url, &["--replication-ttl", ttl]);
        wait_until(Duration::from_secs(10), "the new manager follows", || {
            ms[leader].role().0 == "replica" && !ms[leader].role().1.is_empty()
        });
    }
    println!(
        "failover after SIGKILL of the leader (ttl {ttl}): n={} p50 {:.2} s p99 {:.2} s",
        kills.len(),
        pct(&mut kills, 0.5).as_secs_f64(),
        pct(&mut kills, 0.99).as_secs_f64()
    );
    println!(
        "handover after SIGTERM of the leader:        n={} p50 {:.3} s p99 {:.3} s",
        terms.len(),
        pct(&mut terms, 0.5).as_secs_f64(),
        pct(&mut terms, 0.99).as_secs_f64()
    );
}

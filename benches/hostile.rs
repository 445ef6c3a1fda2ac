//! What a legitimate client waits for while hostile ones hold the manager's front, on a real
//! dockerd engine: `/_ping` latency on a kept-alive connection, alone and then under 500
//! slowloris connections (a header byte a second) plus an idle flood, with the engine asked
//! directly as the baseline; the manager's memory; how soon the slow connections are cut; and
//! what a flood past `--api-max-connections` does to new clients.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

const HEADER_TIMEOUT_S: u64 = 10;

fn pct(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// `n` pings on one kept-alive connection; their latencies.
fn pings(addr: &str, n: usize) -> Vec<Duration> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 4096];
    (0..n)
        .map(|_| {
            let t = Instant::now();
            s.write_all(b"GET /_ping HTTP/1.1\r\nHost: bench\r\n\r\n").unwrap();
            let mut got = Vec::new();
            // The answer is small: its head and its two-byte body `OK`.
            while !(got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"OK")) {
                let k = s.read(&mut buf).expect("ping answer");
                assert!(k > 0, "the connection closed");
                got.extend_from_slice(&buf[..k]);
            }
            t.elapsed()
        })
        .collect()
}

fn report(what: &str, v: &mut [Duration]) -> Duration {
    let (p50, p99) = (pct(v, 0.5), pct(v, 0.99));
    println!("{what:<52} p50 {:>7.3} ms  p99 {:>7.3} ms", p50.as_secs_f64() * 1e3, p99.as_secs_f64() * 1e3);
    p99
}

fn main() {
    let n: usize = std::env::var("SWARM_BENCH_PINGS").ok().and_then(|t| t.parse().ok()).unwrap_or(2000);
    let slow_n = 500;
    let idle_n = 3000;
    let es = engines(&[("node-1", &[])]);
    let timeout = format!("{HEADER_TIMEOUT_S}s");
    let m = Manager::start(&nodes_url(&es), &["--api-header-timeout", &timeout]);
    m.wait_healthy(1);
    pings(&m.addr, 200);
    let rss_before = rss_mib(m.pid());
    let mut direct = pings(&es[0].addr, n);
    let direct_p99 = report("engine /_ping directly (baseline)", &mut direct);
    let mut quiet = pings(&m.addr, n);
    report("manager /_ping, no other client", &mut quiet);

    // 500 slowloris clients: half a request head, then a header byte a second.
    let flood_started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..slow_n)
        .map(|_| {
            let mut s = TcpStream::connect(&m.addr).expect("connect");
            s.write_all(b"GET /_ping HTTP/1.1\r\nHost: bench\r\nX-Slow: ").unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let idle: Vec<TcpStream> = (0..idle_n).map(|_| TcpStream::connect(&m.addr).expect("connect")).collect();
    let dripping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let drip = {
        let dripping = dripping.clone();
        let mut slow: Vec<TcpStream> = slow.iter().map(|s| s.try_clone().unwrap()).collect();
        std::thread::spawn(move || {
            while dripping.load(std::sync::atomic::Ordering::Relaxed) {
                for s in &mut slow {
                    let _ = s.write_all(b"x");
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let mut attacked = pings(&m.addr, n);
    let attacked_p99 = report(&format!("manager /_ping, {slow_n} slowloris + {idle_n} idle"), &mut attacked);
    let rss_attacked = rss_mib(m.pid());

    // Every slow connection is cut by the header timeout, however it drips.
    let mut closed_at = vec![None; slow_n];
    let deadline = flood_started + Duration::from_secs(HEADER_TIMEOUT_S * 3);
    let mut buf = [0u8; 512];
    while closed_at.iter().any(Option::is_none) && Instant::now() < deadline {
        for (i, s) in slow.iter_mut().enumerate() {
            if closed_at[i].is_some() {
                continue;
            }
            match s.read(&mut buf) {
                Ok(0) => closed_at[i] = Some(flood_started.elapsed()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Ok(_) => {}
                Err(_) => closed_at[i] = Some(flood_started.elapsed()),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    dripping.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = drip.join();
    let mut cut: Vec<Duration> = closed_at.iter().flatten().copied().collect();
    let closed = cut.len();
    if !cut.is_empty() {
        println!(
            "slowloris connections cut: {closed}/{slow_n}; after the flood began: first {:.1} s, p50 {:.1} s, last {:.1} s (--api-header-timeout {HEADER_TIMEOUT_S}s)",
            cut.iter().min().unwrap().as_secs_f64(),
            pct(&mut cut, 0.5).as_secs_f64(),
            cut.iter().max().unwrap().as_secs_f64()
        );
    }
    drop(idle);
    drop(slow);

    // A flood past --api-max-connections (4096) of connections that send nothing: the oldest
    // make room for newer ones, so a new client is served.
    std::thread::sleep(Duration::from_secs(1));
    let flood: Vec<TcpStream> = (0..10_000).filter_map(|_| TcpStream::connect(&m.addr).ok()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let refused_at = Instant::now();
    let mut served_after = None;
    while refused_at.elapsed() < Duration::from_secs(HEADER_TIMEOUT_S * 3) {
        if http_within(&m.addr, "GET", "/_ping", None, Duration::from_secs(2)).0 == 200 {
            served_after = Some(refused_at.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "10,000 idle connections opened ({} accepted by the kernel): a new client served again after {}",
        flood.len(),
        served_after.map_or("never (within 3 header timeouts)".to_string(), |d| format!("{:.1} s", d.as_secs_f64()))
    );
    drop(flood);
    let metrics = String::from_utf8_lossy(&http(&m.addr, "GET", "/metrics", None).2).into_owned();
    let counter = |name: &str| metrics.lines().find_map(|l| l.strip_prefix(name)).unwrap_or("?").trim().to_string();
    println!(
        "past --api-max-connections: {} connections that had sent nothing closed to make room, {} refused",
        counter("swarm_api_connections_evicted_total "),
        counter("swarm_api_connections_refused_total ")
    );
    println!(
        "manager RSS: {rss_before:.1} MiB idle, {rss_attacked:.1} MiB under the slow and idle flood; /_ping p99 under attack {:.2}x the engine's own",
        attacked_p99.as_secs_f64() / direct_p99.as_secs_f64()
    );
}

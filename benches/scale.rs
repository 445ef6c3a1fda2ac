//! Scale, on SIMULATED engines (`hollow-engine`: the Docker API over HTTP on loopback, no
//! containers run). One manager over N engines × 30 containers, as a new user would meet it:
//! the manager-added latency of create+start against the same call sent directly to a hollow
//! engine in the same run, the manager's CPU per create, `ps -a`, `/_ping` while a `ps -a` loop
//! runs, `docker info`, resident memory, open files per engine, idle CPU (before and once the
//! periodic refreshes have begun), time until every engine is Healthy, and creates per second
//! with 32 clients.
//!
//! `SWARM_SCALE_ENGINES=100,1000,5000 cargo bench --bench scale` (default 100,1000); each size is one
//! row, and the last line gives the growth of the manager-added create latency between sizes.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

const CONTAINERS_PER_ENGINE: usize = 30;
const SAMPLES: usize = 200;
/// The manager's periodic whole-engine refreshes, as classic Swarm's defaults.
const REFRESH_MIN: Duration = Duration::from_secs(30);
const REFRESH_MAX: Duration = Duration::from_secs(60);
/// How long the manager's idle CPU is measured.
const IDLE_WINDOW: Duration = Duration::from_secs(10);

fn pct(v: &mut [Duration], q: f64) -> f64 {
    v.sort();
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)].as_secs_f64() * 1e3
}

/// User plus system CPU of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|x| x.parse::<f64>().ok()).sum());
    ticks / 100.0
}

/// The CPU `pid` used over the next `window`, in percent of a core.
fn cpu_percent_over(pid: u32, window: Duration) -> f64 {
    let before = cpu_seconds(pid);
    std::thread::sleep(window);
    (cpu_seconds(pid) - before) / window.as_secs_f64() * 100.0
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn healthy(addr: &str) -> usize {
    let (_, _, body) = http(addr, "GET", "/info", None);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    v["SystemStatus"].as_array().map_or(0, |pairs| {
        pairs.iter().filter(|p| p[0].as_str().is_some_and(|k| k.ends_with("Status")) && p[1] == "Healthy").count()
    })
}

/// Create then start one container at `addr`; the time both took.
fn create_start(addr: &str, name: &str) -> Duration {
    let body = br#"{"Image":"busybox","Cmd":["sleep","3600"],"HostConfig":{}}"#;
    let t = Instant::now();
    let (status, _, answer) = http(addr, "POST", &format!("/containers/create?name={name}"), Some(body));
    assert_eq!(status, 201, "create at {addr}: {}", String::from_utf8_lossy(&answer));
    let v: serde_json::Value = serde_json::from_slice(&answer).expect("create answer");
    let id = v["Id"].as_str().expect("Id");
    let (status, _, _) = http(addr, "POST", &format!("/containers/{id}/start"), None);
    assert_eq!(status, 204, "start at {addr}");
    t.elapsed()
}

fn timed(n: usize, mut f: impl FnMut(usize) -> Duration) -> Vec<Duration> {
    (0..n).map(&mut f).collect()
}

struct Row {
    engines: usize,
    added_p50: f64,
}

fn measure(engines: usize) -> Row {
    let hollow = Hollow::start(engines, CONTAINERS_PER_ENGINE);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("engines");
    std::fs::write(&file, hollow.addrs.join("\n")).expect("engine list");
    let started = Instant::now();
    let m = Manager::start(
        &format!("file://{}", file.display()),
        &[
            "--engine-refresh-min-interval",
            &format!("{}s", REFRESH_MIN.as_secs()),
            "--engine-refresh-max-interval",
            &format!("{}s", REFRESH_MAX.as_secs()),
        ],
    );
    let pid = m.pid();
    while healthy(&m.addr) < engines {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "only {} of {engines} engines Healthy after 300 s",
            healthy(&m.addr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let all_healthy = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));

    let idle_cpu = cpu_percent_over(pid, IDLE_WINDOW);
    let direct_engine = hollow.addrs[0].clone();
    let mut direct = timed(SAMPLES, |i| create_start(&direct_engine, &format!("direct-{i}")));
    let cpu_before = cpu_seconds(pid);
    let mut through = timed(SAMPLES, |i| create_start(&m.addr, &format!("scale-{i}")));
    let cpu_per_create = (cpu_seconds(pid) - cpu_before) / SAMPLES as f64 * 1e3;

    let mut entries = 0;
    let mut ps = timed(20, |_| {
        let t = Instant::now();
        let (status, _, body) = http(&m.addr, "GET", "/containers/json?all=1", None);
        let d = t.elapsed();
        assert_eq!(status, 200);
        entries = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(0);
        d
    });
    let mut info = timed(20, |_| {
        let t = Instant::now();
        assert_eq!(http(&m.addr, "GET", "/info", None).0, 200);
        t.elapsed()
    });
    // `/_ping` while another client lists everything in a loop.
    let stop = Arc::new(AtomicBool::new(false));
    let lister = {
        let (addr, stop) = (m.addr.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                http(&addr, "GET", "/containers/json?all=1", None);
            }
        })
    };
    let mut ping_busy = timed(SAMPLES, |_| {
        let t = Instant::now();
        assert_eq!(http(&m.addr, "GET", "/_ping", None).0, 200);
        let d = t.elapsed();
        std::thread::sleep(Duration::from_millis(5));
        d
    });
    stop.store(true, Ordering::Relaxed);
    lister.join().expect("lister");

    // 32 clients creating at once.
    let per_client = 20;
    let t = Instant::now();
    let clients: Vec<_> = (0..32)
        .map(|c| {
            let addr = m.addr.clone();
            std::thread::spawn(move || {
                for i in 0..per_client {
                    create_start(&addr, &format!("burst-{c}-{i}"));
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a creating client failed");
    }
    let creates_per_s = (32 * per_client) as f64 / t.elapsed().as_secs_f64();
    let rss = rss_mib(pid);
    let files_per_engine = open_files(pid) as f64 / engines as f64;
    // Idle again once the periodic refreshes have begun (each engine's first falls between
    // REFRESH_MIN and REFRESH_MAX after it was read): what a quiet cluster costs for good.
    std::thread::sleep(Duration::from_secs(2));
    if let Some(wait) = (REFRESH_MIN + Duration::from_secs(2)).checked_sub(started.elapsed()) {
        std::thread::sleep(wait);
    }
    let refreshing_from = started.elapsed().as_secs_f64();
    let refreshing_cpu = cpu_percent_over(pid, IDLE_WINDOW);
    let (d50, d99, s50, s99) =
        (pct(&mut direct, 0.5), pct(&mut direct, 0.99), pct(&mut through, 0.5), pct(&mut through, 0.99));
    println!(
        "{engines} engines × {CONTAINERS_PER_ENGINE}: create+start direct p50 {d50:.2} ms p99 {d99:.2} ms | through swarm p50 {s50:.2} ms p99 {s99:.2} ms (added p50 {:.2} ms, p99 {:.2} ms) | manager CPU per create+start {cpu_per_create:.2} ms | ps -a ({entries} entries) p50 {:.1} ms p99 {:.1} ms | _ping during ps -a loop p99 {:.2} ms | info p99 {:.1} ms | RSS {rss:.0} MiB | open files per engine {files_per_engine:.2} | all Healthy after {:.1} s | idle CPU {idle_cpu:.1} % of a core, {refreshing_cpu:.1} % with periodic refreshes ({refreshing_from:.0}-{:.0} s after start) | {creates_per_s:.0} creates+starts/s with 32 clients",
        s50 - d50,
        s99 - d99,
        pct(&mut ps, 0.5),
        pct(&mut ps, 0.99),
        pct(&mut ping_busy, 0.99),
        pct(&mut info, 0.99),
        all_healthy.as_secs_f64(),
        refreshing_from + IDLE_WINDOW.as_secs_f64(),
    );
    Row { engines, added_p50: s50 - d50 }
}

fn main() {
    let sizes: Vec<usize> = std::env::var("SWARM_SCALE_ENGINES")
        .unwrap_or_else(|_| "100,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rows: Vec<Row> = sizes.iter().map(|n| measure(*n)).collect();
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        if rows.len() > 1 {
            println!(
                "growth of the manager-added create+start latency, {} -> {} engines: {:.2} ms -> {:.2} ms (x{:.1})",
                first.engines,
                last.engines,
                first.added_p50,
                last.added_p50,
                last.added_p50 / first.added_p50.max(0.001)
            );
        }
    }
}

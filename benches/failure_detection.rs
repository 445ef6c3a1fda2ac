//! How fast a failed engine is seen, on real dockerd engines with the manager's default timing:
//! a stopped engine (connection refused) and a hung one (SIGSTOP), each over repeated trials,
//! from the failure to `engine_disconnect` in `docker events`, and from recovery to
//! `engine_reconnect`. A second engine stays up under a create load the whole time: any event
//! naming it is a false Unhealthy. The run fails on any false Unhealthy, and when detection is
//! slower than its goal (refused: 5 s p99; hung: 15 s p99).

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;

fn pct(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

/// Detection goals (p99), from the design's numbers.
const REFUSED_GOAL: Duration = Duration::from_secs(5);
const HUNG_GOAL: Duration = Duration::from_secs(15);

fn summary(what: &str, v: &mut [Duration]) {
    println!(
        "{what:<40} n={:<3} p50 {:>6.2} s  p99 {:>6.2} s  max {:>6.2} s",
        v.len(),
        pct(v, 0.5).as_secs_f64(),
        pct(v, 0.99).as_secs_f64(),
        v.iter().max().unwrap().as_secs_f64()
    );
}

fn main() {
    let trials: usize = std::env::var("SWARM_BENCH_TRIALS").ok().and_then(|t| t.parse().ok()).unwrap_or(8);
    let mut es = engines(&[("victim", &[]), ("steady", &[])]);
    let m = Manager::start(
        &nodes_url(&es),
        &["--engine-refresh-min-interval", "30s", "--engine-refresh-max-interval", "60s"],
    );
    m.wait_healthy(2);
    let mut events = docker_cmd(&m.host())
        .args(["events", "--filter", "type=swarm", "--format", "{{.Action}} {{index .Actor.Attributes \"node.name\"}}"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<(String, Instant)>();
    let out = events.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send((line, Instant::now()));
        }
    });
    // Load on the healthy engine: creates and removals all along.
    let host = m.host();
    let stop_load = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop_load.clone();
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let name = format!("load{i}");
                let _ = run(docker_cmd(&host).args([
                    "run",
                    "-d",
                    "--name",
                    &name,
                    "-e",
                    "constraint:node==steady",
                    "busybox",
                    "true",
                ]));
                let _ = run(docker_cmd(&host).args(["rm", "-f", &name]));
                i += 1;
            }
        })
    };
    let false_positives = std::cell::RefCell::new(Vec::new());
    let wait_for = |want: &str, since: Instant| -> Duration {
        loop {
            let (line, at) =
                rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("no `{want}` within 60 s"));
            if line.contains("steady") {
                println!("FALSE POSITIVE: {line}");
                false_positives.borrow_mut().push(line.clone());
            }
            if line == want {
                return at.saturating_duration_since(since);
            }
        }
    };
    let (mut refused_down, mut refused_up, mut hung_down, mut hung_up) = (vec![], vec![], vec![], vec![]);
    for _ in 0..trials {
        es[0].stop();
        refused_down.push(wait_for("engine_disconnect victim", Instant::now()));
        es[0].restart();
        refused_up.push(wait_for("engine_reconnect victim", Instant::now()));
        std::thread::sleep(Duration::from_millis(500));
        es[0].freeze();
        hung_down.push(wait_for("engine_disconnect victim", Instant::now()));
        es[0].thaw();
        hung_up.push(wait_for("engine_reconnect victim", Instant::now()));
        std::thread::sleep(Duration::from_millis(500));
    }
    stop_load.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = load.join();
    let _ = events.kill();
    let _ = events.wait();
    summary("stopped engine (refused) -> Unhealthy", &mut refused_down);
    summary("restarted engine ready -> Healthy", &mut refused_up);
    summary("hung engine (SIGSTOP) -> Unhealthy", &mut hung_down);
    summary("resumed engine (SIGCONT) -> Healthy", &mut hung_up);
    let mut failed = Vec::new();
    if !false_positives.borrow().is_empty() {
        failed.push(format!("the steady engine was reported down: {:?}", false_positives.borrow()));
    }
    for (what, v, goal) in [("refused", &mut refused_down, REFUSED_GOAL), ("hung", &mut hung_down, HUNG_GOAL)] {
        if pct(v, 0.99) > goal {
            failed.push(format!("a {what} engine was seen down after {:?} at p99 (goal {goal:?})", pct(v, 0.99)));
        }
    }
    assert!(failed.is_empty(), "failure detection missed its goals: {failed:#?}");
}

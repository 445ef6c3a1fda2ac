//! Rescheduling, in one run: 30 containers with `on-node-failure` on node-1, whose engine then
//! stops. Reports the time from the stop to detection (node-1 `Unhealthy` in `docker info`),
//! and from detection until all 30 run on node-2 under the same names and swarm IDs.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::*;

const N: usize = 30;

fn on_node_2_running(m: &Manager) -> usize {
    let (_, _, body) = http(&m.addr, "GET", "/containers/json", None);
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["State"] == "running")
        .filter(|c| c["Names"][0].as_str().is_some_and(|n| n.starts_with("/node-2/m")))
        .count()
}

fn main() {
    let mut es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("engines");
    // node-1 alone first, so that all 30 land on it; node-2 joins afterwards.
    std::fs::write(&file, format!("{}\n", es[0].addr)).unwrap();
    let m = Manager::start(&format!("file://{}", file.display()), &["--heartbeat", "1s"]);
    m.wait_healthy(1);
    for i in 0..N {
        m.docker(&[
            "run",
            "-d",
            "--name",
            &format!("m{i}"),
            "-e",
            "reschedule:on-node-failure",
            "busybox",
            "sleep",
            "3600",
        ]);
    }
    std::fs::write(&file, format!("{}\n{}\n", es[0].addr, es[1].addr)).unwrap();
    m.wait_healthy(2);

    let stopped = Instant::now();
    let mut node_1 = es.remove(0);
    let stopping = std::thread::spawn(move || {
        node_1.stop();
        (node_1, stopped.elapsed())
    });
    while !m.node_states().iter().any(|(n, s)| n == "node-1" && s == "Unhealthy") {
        assert!(stopped.elapsed() < Duration::from_secs(60), "node-1 never Unhealthy");
        std::thread::sleep(Duration::from_millis(20));
    }
    let detected = stopped.elapsed();
    let detected_at = Instant::now();
    while on_node_2_running(&m) < N {
        assert!(stopped.elapsed() < Duration::from_secs(120), "only {} of {N} rescheduled", on_node_2_running(&m));
        std::thread::sleep(Duration::from_millis(20));
    }
    let repaired = detected_at.elapsed();
    let (node_1, stop_took) = stopping.join().unwrap();
    drop(node_1);
    println!(
        "reschedule of {N} running containers: engine stop took {:.2} s (containers stopping); Unhealthy {:.2} s after the stop began; all {N} running on node-2 {:.2} s after detection",
        stop_took.as_secs_f64(),
        detected.as_secs_f64(),
        repaired.as_secs_f64()
    );
}

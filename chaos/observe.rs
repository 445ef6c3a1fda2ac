//! Independent observers running beside the load: every manager's claimed role, sampled, and
//! every container the engines ever held, read from the engines themselves with the labels that
//! say which manager created it under which term.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::history::Clock;
use crate::support::http_within;

/// One answer to `GET /info` (or none).
#[derive(Debug, Clone)]
pub struct RoleSample {
    /// Which manager (its address).
    pub manager: String,
    /// When it was asked.
    pub sent: f64,
    /// When it answered (or gave up).
    pub returned: f64,
    /// `primary`, `replica`, or empty when it did not answer.
    pub role: String,
}

/// Polls every manager's `/info` until `stop`.
pub fn sample_roles(managers: Vec<String>, clock: Clock, stop: Arc<AtomicBool>, out: Arc<Mutex<Vec<RoleSample>>>) {
    // One sampler per manager: a frozen one holds its own sampler for the whole timeout, and
    // must not slow the sampling of the others (failover is read from them).
    let samplers: Vec<_> = managers
        .into_iter()
        .map(|m| {
            let (stop, out) = (stop.clone(), out.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let sent = clock.now();
                    let (status, _, body) = http_within(&m, "GET", "/info", None, Duration::from_millis(800));
                    let role = if status == 200 {
                        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                        let pairs = v["SystemStatus"].as_array().cloned().unwrap_or_default();
                        pairs.iter().find(|p| p[0] == "Role").and_then(|p| p[1].as_str()).unwrap_or("none").to_string()
                    } else {
                        String::new()
                    };
                    out.lock().unwrap().push(RoleSample { manager: m.clone(), sent, returned: clock.now(), role });
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        })
        .collect();
    for s in samplers {
        let _ = s.join();
    }
}

/// A container some engine held, as that engine told.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The engine's node name.
    pub engine: String,
    /// Its name, without `/`.
    pub name: String,
    /// When the engine created it, seconds since the Unix epoch.
    pub created_unix: f64,
    /// `com.docker.swarm.term`.
    pub term: Option<u64>,
    /// `com.docker.swarm.created-by`.
    pub by: Option<String>,
    /// `com.docker.swarm.id`.
    pub swarm_id: Option<String>,
}

/// Lists every engine's containers until `stop`, inspecting each new one once.
pub fn watch_engines(engines: Vec<(String, String)>, stop: Arc<AtomicBool>, out: Arc<Mutex<BTreeMap<String, Seen>>>) {
    while !stop.load(Ordering::Relaxed) {
        for (name, addr) in &engines {
            collect(name, addr, &out);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    for (name, addr) in &engines {
        collect(name, addr, &out);
    }
}

fn collect(engine: &str, addr: &str, out: &Arc<Mutex<BTreeMap<String, Seen>>>) {
    let (status, _, body) = http_within(addr, "GET", "/containers/json?all=1", None, Duration::from_secs(1));
    if status != 200 {
        return;
    }
    let list: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
    for c in list {
        let Some(id) = c["Id"].as_str() else { continue };
        if out.lock().unwrap().contains_key(id) {
            continue;
        }
        let (status, _, body) =
            http_within(addr, "GET", &format!("/containers/{id}/json"), None, Duration::from_secs(1));
        if status != 200 {
            continue;
        }
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        let label = |k: &str| v["Config"]["Labels"][k].as_str().map(str::to_string);
        let seen = Seen {
            engine: engine.to_string(),
            name: v["Name"].as_str().unwrap_or_default().trim_start_matches('/').to_string(),
            created_unix: v["Created"].as_str().and_then(unix_seconds).unwrap_or(0.0),
            term: label("com.docker.swarm.term").and_then(|t| t.parse().ok()),
            by: label("com.docker.swarm.created-by"),
            swarm_id: label("com.docker.swarm.id"),
        };
        out.lock().unwrap().insert(id.to_string(), seen);
    }
}

/// `2026-12-01T13:14:15.123456789Z` as seconds since the Unix epoch.
pub fn unix_seconds(text: &str) -> Option<f64> {
    let (date, time) = text.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (h, min, s) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let fraction: f64 = format!("0.{frac}").parse().ok()?;
    Some((days * 86_400 + h * 3600 + min * 60 + s) as f64 + fraction)
}

/// The observer's own check, run before every campaign.
pub mod self_check {
    pub fn engine_timestamps_read_as_unix_seconds() {
        assert_eq!(super::unix_seconds("1970-01-02T00:00:01.5Z"), Some(86_401.5));
        assert_eq!(super::unix_seconds("2000-03-01T00:00:00Z"), Some(951_868_800.0));
    }
}

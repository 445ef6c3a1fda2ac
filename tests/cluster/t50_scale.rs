//! Scale, on SIMULATED engines (`hollow-engine`): one manager over 500 engines. Correctness,
//! not time (the benchmarks time it): every engine Healthy, lists complete against what the
//! engines themselves hold, and concurrent creates spread one per engine.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const ENGINES: usize = 500;
const CONTAINERS: usize = 10;
const CLIENTS: usize = 8;
const CREATES_PER_CLIENT: usize = 25;

fn json(addr: &str, path: &str) -> Value {
    let (status, _, body) = http(addr, "GET", path, None);
    assert_eq!(status, 200, "GET {path} at {addr}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("JSON answer")
}

/// Every engine's containers as the engines list them: name → container IDs named so.
fn held_by_engines(hollow: &Hollow) -> (BTreeMap<String, String>, BTreeMap<String, Vec<String>>) {
    let mut names = BTreeMap::new();
    let mut by_engine = BTreeMap::new();
    for addr in &hollow.addrs {
        let engine = json(addr, "/info")["Name"].as_str().expect("engine name").to_string();
        for c in json(addr, "/containers/json?all=1").as_array().expect("list") {
            let name = c["Names"][0].as_str().expect("a name").trim_start_matches('/').to_string();
            names.insert(c["Id"].as_str().expect("Id").to_string(), format!("/{engine}/{name}"));
            by_engine.entry(engine.clone()).or_insert_with(Vec::new).push(name);
        }
    }
    (names, by_engine)
}

fn listed(m: &Manager) -> BTreeMap<String, String> {
    json(&m.addr, "/containers/json?all=1")
        .as_array()
        .expect("list")
        .iter()
        .map(|c| (c["Id"].as_str().expect("Id").to_string(), c["Names"][0].as_str().expect("a name").to_string()))
        .collect()
}

#[test]
fn five_hundred_simulated_engines_are_healthy_listed_whole_and_share_creates_evenly() {
    let hollow = Hollow::start(ENGINES, CONTAINERS);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("engines");
    std::fs::write(&file, hollow.addrs.join("\n")).unwrap();
    let m = Manager::start(&format!("file://{}", file.display()), &[]);
    m.wait_healthy_within(ENGINES, Duration::from_secs(300));

    let (held, _) = held_by_engines(&hollow);
    assert_eq!(held.len(), ENGINES * CONTAINERS);
    assert_eq!(listed(&m), held, "ps -a lists exactly what the engines hold, as /node/name");

    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let addr = m.addr.clone();
            std::thread::spawn(move || {
                for i in 0..CREATES_PER_CLIENT {
                    let body = br#"{"Image":"busybox","Cmd":["sleep","3600"]}"#;
                    let (status, _, answer) =
                        http(&addr, "POST", &format!("/containers/create?name=spread-{c}-{i}"), Some(body));
                    assert_eq!(status, 201, "create: {}", String::from_utf8_lossy(&answer));
                    let id = serde_json::from_slice::<Value>(&answer).expect("create answer")["Id"]
                        .as_str()
                        .expect("Id")
                        .to_string();
                    assert_eq!(http(&addr, "POST", &format!("/containers/{id}/start"), None).0, 204);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a creating client failed");
    }

    // The engines say where each create went: each exactly once, never two on one engine
    // (spread over equal engines, with every create in flight counted).
    let (held, by_engine) = held_by_engines(&hollow);
    let created: Vec<&String> = by_engine.values().flatten().filter(|n| n.starts_with("spread-")).collect();
    assert_eq!(created.len(), CLIENTS * CREATES_PER_CLIENT, "every create made once");
    assert_eq!(created.iter().collect::<BTreeSet<_>>().len(), created.len(), "no name made twice");
    let most =
        by_engine.values().map(|names| names.iter().filter(|n| n.starts_with("spread-")).count()).max().unwrap_or(0);
    assert_eq!(most, 1, "creates spread one per engine");
    let mut last = String::new();
    let agreed = (0..60).any(|_| {
        let (seen, counted) = (listed(&m), json(&m.addr, "/info")["Containers"].as_u64());
        if seen == held && counted == Some(held.len() as u64) {
            return true;
        }
        let missing: Vec<_> = held.iter().filter(|(id, name)| seen.get(*id) != Some(name)).take(3).collect();
        let extra: Vec<_> = seen.iter().filter(|(id, name)| held.get(*id) != Some(name)).take(3).collect();
        last = format!("info counts {counted:?} of {}; missing or renamed {missing:?}; extra {extra:?}", held.len());
        std::thread::sleep(Duration::from_millis(500));
        false
    });
    assert!(agreed, "ps -a and info never agreed with the engines: {last}");
}

//! One engine, asked directly and through a manager over it alone.

use crate::corpus;
use crate::fixtures;
use crate::normalize::{
    drop_swarm_id, events_by_time, events_from, keep_fields, keys_only, mask_twin, sort_by, sort_ports, strip_swarm,
    tar_entries,
};
use crate::oracle::{ask, Answer, Req};
use crate::report::Table;
use crate::support::*;

const NODE: &str = "node-1";

fn normalized(engine: &Engine, m: &Manager, req: &Req) -> (Answer, Answer) {
    let mut e = ask(&engine.addr, req);
    let mut s = ask(&m.addr, req);
    strip_swarm(&mut s, NODE);
    for a in [&mut e, &mut s] {
        drop_swarm_id(a);
        let path = req.path.trim_start_matches("/v1.41");
        if path.starts_with("/info") {
            keep_fields(
                a,
                &["Containers", "ContainersRunning", "ContainersPaused", "ContainersStopped", "Images", "NCPU"],
            );
        } else if path.starts_with("/version") {
            keep_fields(a, &["ApiVersion"]);
        } else if path.contains("/get") || path.contains("/export") || path.contains("/archive") {
            tar_entries(a);
        } else if path.contains("/stats") {
            keys_only(a);
        } else if path.contains("/changes") {
            sort_by(a, "Path");
        } else if path.starts_with("/containers/json") {
            sort_ports(a);
        } else if path.starts_with("/images/json") || path.starts_with("/networks?") || path == "/networks" {
            sort_by(a, "Id");
        } else if path.starts_with("/volumes?") || path == "/volumes" {
            sort_by(a, "Name");
        }
    }
    (e, s)
}

#[test]
fn one_engine_answers_the_same_directly_and_through_swarm() {
    let engine = Engine::start(NODE, &[]);
    let m = Manager::start(&nodes_url(std::slice::from_ref(&engine)), &[]);
    m.wait_healthy(1);
    let f = fixtures::make(&m, &engine, "", "");
    let mut table = Table::default();
    let mut cases = corpus::container_list_cases(&f);
    cases.extend(corpus::image_list_cases());
    cases.extend(corpus::network_list_cases(&f));
    cases.extend(corpus::volume_list_cases());
    cases.extend(corpus::event_cases(&f));
    cases.extend(corpus::route_cases(&f));
    for (group, req) in &cases {
        for r in [req.clone(), req.versioned()] {
            let (e, s) = normalized(&engine, &m, &r);
            table.record(group, &r, &e, &s);
        }
    }
    live_events(&engine, &m, &mut table);
    for flow in corpus::twin_flows() {
        // `{id}` in a path is the `Id` of the previous answer on the same side (an exec).
        let run_flow = |addr: &str| {
            let mut last_id = String::new();
            let mut answers = Vec::new();
            for (_, req) in &flow {
                let mut r = req.clone();
                r.path = r.path.replace("{id}", &last_id);
                let a = ask(addr, &r);
                if let crate::oracle::Body::Json(v) = &a.body {
                    if let Some(id) = v["Id"].as_str() {
                        last_id = id.to_string();
                    }
                }
                answers.push(a);
            }
            answers
        };
        let engine_answers = run_flow(&engine.addr);
        let swarm_answers = run_flow(&m.addr);
        for (((group, req), mut e), mut s) in flow.iter().zip(engine_answers).zip(swarm_answers) {
            strip_swarm(&mut s, NODE);
            for a in [&mut e, &mut s] {
                drop_swarm_id(a);
                mask_twin(a, "tw", "tw");
            }
            table.record(&format!("{group} (twin)"), req, &e, &s);
        }
    }
    table.finish("conformance over one engine");
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Streams open on both sides while changes happen through swarm; both must tell the same.
fn live_events(engine: &Engine, m: &Manager, table: &mut Table) {
    let since = now();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    m.docker(&["volume", "create", "lvv0"]);
    let until = now() + 8;
    let opened = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let cases = corpus::live_event_cases(since, until);
    let streams: Vec<_> = cases
        .iter()
        .map(|(_, r)| {
            let (e, s, r) = (engine.addr.clone(), m.addr.clone(), r.clone());
            std::thread::spawn(move || {
                let e = std::thread::spawn({
                    let r = r.clone();
                    move || ask(&e, &r)
                });
                let s = ask(&s, &r);
                (e.join().unwrap(), s)
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_secs(2));
    m.docker(&["run", "-d", "--name", "lv", "-l", "a=1", "-l", "lv", "--network", "none", "busybox", "sleep", "60"]);
    m.docker(&["network", "create", "lvn"]);
    m.docker(&["volume", "create", "lvv"]);
    m.docker(&["rm", "-f", "lv"]);
    m.docker(&["network", "rm", "lvn"]);
    m.docker(&["volume", "rm", "lvv"]);
    for ((group, req), h) in cases.iter().zip(streams) {
        let (mut e, mut s) = h.join().unwrap();
        strip_swarm(&mut s, NODE);
        for a in [&mut e, &mut s] {
            drop_swarm_id(a);
            if !req.path.contains("since=") {
                events_from(a, opened);
            }
            events_by_time(a);
        }
        table.record(group, req, &e, &s);
    }
}

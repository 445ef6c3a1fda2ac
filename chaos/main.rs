//! The chaos campaign: three managers behind a real HAProxy over three real engines with
//! `swarm join` agents, in Raft mode (embedded openraft) and in etcd mode (three real etcd
//! members). Four or more clients load it through HAProxy while seeded faults strike managers,
//! engines, agents and etcd. An independent checker then reads the engines and the clients'
//! histories (`checker.rs`), and the run writes a Markdown report and a PNG timeline.
//!
//! `cargo test --release --test chaos -- --mode raft --faults 200 --seed S` runs one campaign;
//! without arguments (as `cargo test` runs it) a short campaign in each mode. Exits non-zero on
//! any violation.

#[path = "../tests/support/mod.rs"]
mod support;

mod checker;
mod faults;
mod history;
mod load;
mod observe;
mod report;
mod topology;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use history::{Clock, History};
use topology::{Mode, Topology};

/// Faults per mode when none are asked for: CI's short campaign.
const SHORT_CAMPAIGN: usize = 5;
struct Options {
    modes: Vec<Mode>,
    faults: usize,
    seed: u64,
    clients: usize,
    out: PathBuf,
    /// Fault kinds to draw from (`--only a,b`); all when empty.
    only: Vec<String>,
}

impl Options {
    /// Reads `--mode raft|etcd|both`, `--faults N`, `--seed S`, `--clients N`, `--out DIR`,
    /// `--only KIND,KIND` (see `Fault::slug`);
    /// `cargo test`'s own flags are ignored.
    fn parse() -> Options {
        let mut o = Options {
            modes: vec![Mode::Raft, Mode::Etcd],
            faults: SHORT_CAMPAIGN,
            seed: rand::random::<u32>() as u64,
            clients: 4,
            out: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/chaos")),
            only: Vec::new(),
        };
        // The first argument is the program's own path.
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let value = args.get(i + 1).cloned().unwrap_or_default();
            let number =
                || value.parse::<u64>().unwrap_or_else(|_| panic!("{} wants a number, not {value:?}", args[i]));
            match args[i].as_str() {
                "--mode" => {
                    o.modes = match value.as_str() {
                        "raft" => vec![Mode::Raft],
                        "etcd" => vec![Mode::Etcd],
                        "both" => vec![Mode::Raft, Mode::Etcd],
                        other => panic!("--mode is raft, etcd or both, not {other:?}"),
                    }
                }
                "--faults" => o.faults = number() as usize,
                "--seed" => o.seed = number(),
                "--clients" => o.clients = (number() as usize).max(1),
                "--out" => o.out = PathBuf::from(&value),
                "--only" => o.only = value.split(',').map(str::to_string).collect(),
                // libtest's flags, passed by `cargo test -- ...` to every test binary.
                "--skip" | "--test-threads" | "--format" | "--color" => {}
                "--list" => std::process::exit(0),
                _ => {
                    i += 1;
                    continue;
                }
            }
            i += 2;
        }
        o
    }
}

fn main() {
    let opts = Options::parse();
    checker::self_check::a_lost_a_doubled_a_resurrected_and_a_phantom_container_are_all_reported();
    checker::self_check::overlapping_terms_are_caught_and_ordered_terms_pass();
    checker::self_check::every_failure_counts_but_those_of_a_down_engine_or_control_plane();
    observe::self_check::engine_timestamps_read_as_unix_seconds();
    let mut failed = Vec::new();
    for mode in &opts.modes {
        let findings = campaign(*mode, &opts);
        let dir = opts.out.join(format!("{}-seed{}", mode.name(), opts.seed));
        let md = report::write(&dir, &findings);
        eprintln!("{md}\nreport: {}", dir.join("report.md").display());
        let violations = findings.violations();
        if !violations.is_empty() {
            // The report is long and CI keeps only a tail: the violations come last.
            for v in &violations {
                eprintln!("chaos: {} violation: {v}", mode.name());
            }
            failed.push(mode.name());
        }
    }
    if !failed.is_empty() {
        eprintln!("chaos: violations in {failed:?} (seed {}); replay with --seed {}", opts.seed, opts.seed);
        std::process::exit(1);
    }
}

/// Every engine's node name and address.
fn engine_list(t: &Topology) -> Vec<(String, String)> {
    t.engines.iter().map(|e| (e.name.clone(), e.addr.clone())).collect()
}

fn campaign(mode: Mode, opts: &Options) -> report::Findings {
    eprintln!("chaos: {} mode, {} faults, seed {}", mode.name(), opts.faults, opts.seed);
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut t = Topology::start(mode);
    let clock = Clock(Instant::now());
    let wall_start = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock").as_secs_f64();
    let managers: Vec<String> = (0..3).map(|i| t.addr(i)).collect();
    let engines = engine_list(&t);

    let stop_load = Arc::new(AtomicBool::new(false));
    let stop_watch = Arc::new(AtomicBool::new(false));
    let history: History = Arc::default();
    let roles = Arc::new(Mutex::new(Vec::new()));
    let ever = Arc::new(Mutex::new(BTreeMap::new()));
    let mut threads = Vec::new();
    {
        let (m, s, r) = (managers.clone(), stop_watch.clone(), roles.clone());
        threads.push(std::thread::spawn(move || observe::sample_roles(m, clock, s, r)));
        let (e, s, out) = (engines.clone(), stop_watch.clone(), ever.clone());
        threads.push(std::thread::spawn(move || observe::watch_engines(e, s, out)));
    }
    let clients: Vec<_> = (0..opts.clients)
        .map(|id| {
            let c = load::Client::new(id, opts.seed, t.lb_host(), clock, history.clone());
            let stop = stop_load.clone();
            std::thread::spawn(move || c.run(stop))
        })
        .collect();

    let mut struck = Vec::new();
    let mut skipped = 0;
    let mut restart_violations = Vec::new();
    for k in 0..opts.faults {
        std::thread::sleep(Duration::from_millis(rng.random_range(1500..3500)));
        let fault = faults::draw(&mut rng, mode, &opts.only);
        let before = fault.strikes_managers().then(|| (clock.now(), checker::started_at(&engines)));
        let Some(s) = faults::strike(&mut t, fault, &mut rng, clock) else {
            skipped += 1;
            eprintln!("chaos: fault {} ({}) skipped: no leader", k + 1, fault.name());
            continue;
        };
        // Recovered: one leader, and every manager sees every engine.
        let leader = t.wait_leader(Duration::from_secs(30));
        let healthy = t.wait_all_healthy(3, Duration::from_secs(60));
        eprintln!(
            "chaos: fault {} {} on {} healed at {:.1} s; leader {leader:?}, engines healthy {healthy}",
            k + 1,
            fault.name(),
            s.victim,
            s.healed
        );
        if let Some((at, started)) = before {
            let after = checker::started_at(&engines);
            let ops = history.lock().unwrap().clone();
            restart_violations.extend(checker::kept_running(&started, &after, (at, clock.now()), &ops, &s));
        }
        struck.push(s);
    }
    stop_load.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("a client failed");
    }
    let ended = clock.now();
    t.wait_leader(Duration::from_secs(30));
    t.wait_all_healthy(3, Duration::from_secs(60));
    let convergence = converge(&t, &engines, clock, Duration::from_secs(90));
    stop_watch.store(true, Ordering::Relaxed);
    for th in threads {
        th.join().expect("an observer failed");
    }

    let ops = history.lock().unwrap().clone();
    let mut ever = ever.lock().unwrap().clone();
    for s in ever.values_mut() {
        s.created_unix -= wall_start;
    }
    // Stale copies and doubles are removed by the leader: give it the convergence bound.
    let deadline = Instant::now() + Duration::from_secs(30);
    let accounting = loop {
        let acc = match checker::engines_now(&engines) {
            Ok(now) => checker::account(&ops, &now, &ever, &struck),
            Err(e) => checker::Accounting { violations: vec![e], ..Default::default() },
        };
        if acc.violations.is_empty() || Instant::now() >= deadline {
            break acc;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let (terms, leader_violations) = checker::one_acting_leader(&ever);
    let error_violations = checker::client_errors(&ops, &struck);
    let roles = roles.lock().unwrap().clone();
    let dir = opts.out.join(format!("{}-seed{}", mode.name(), opts.seed));
    std::fs::create_dir_all(&dir).expect("report folder");
    for (addr, log) in t.logs() {
        std::fs::write(dir.join(format!("manager-{}.log", addr.replace(':', "-"))), log).expect("manager log");
    }
    std::fs::write(dir.join("haproxy.log"), t.lb.log()).expect("haproxy log");
    report::Findings {
        mode,
        seed: opts.seed,
        clients: opts.clients,
        managers,
        struck,
        skipped,
        ops,
        roles,
        accounting,
        terms,
        leader_violations,
        restart_violations,
        error_violations,
        convergence,
        ended,
        wall_start,
    }
}

/// Waits until every manager's `docker ps -a` shows exactly the engines' containers and its
/// `docker info` every engine healthy; returns how long that took.
fn converge(t: &Topology, engines: &[(String, String)], clock: Clock, bound: Duration) -> Result<f64, String> {
    let start = clock.now();
    let deadline = Instant::now() + bound;
    let mut last = String::new();
    while Instant::now() < deadline {
        let truth: std::collections::BTreeSet<String> = match checker::engines_now(engines) {
            Ok(now) => now.into_keys().collect(),
            Err(e) => {
                last = e;
                continue;
            }
        };
        let disagreeing: Vec<String> = t
            .running()
            .into_iter()
            .filter_map(|i| {
                let m = t.manager(i)?;
                let (outcome, out) =
                    history::docker(&m.host(), &["ps", "-a", "--format", "{{.Names}}"], Duration::from_secs(10));
                let seen: std::collections::BTreeSet<String> =
                    out.lines().map(|l| l.split_once('/').map_or(l, |(_, n)| n).to_string()).collect();
                let healthy = m.node_states().iter().filter(|(_, s)| s == "Healthy").count();
                (!outcome.is_ok() || seen != truth || healthy != engines.len()).then(|| {
                    format!(
                        "{}: {} containers vs {} on the engines, {healthy} healthy engines",
                        m.addr,
                        seen.len(),
                        truth.len()
                    )
                })
            })
            .collect();
        if disagreeing.is_empty() && t.running().len() == 3 {
            return Ok(clock.now() - start);
        }
        last = disagreeing.join("; ");
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(format!("after {bound:?}: {last}"))
}

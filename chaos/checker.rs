//! The independent checker: it reads the truth from the engines and the clients' histories,
//! never from what the managers say about themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::faults::{Fault, Struck};
use crate::history::{Kind, Op, Outcome};
use crate::observe::Seen;
use crate::support::http_within;

/// A container on an engine now.
#[derive(Debug, Clone)]
pub struct Held {
    /// The engine's node name.
    pub engine: String,
    /// `running`, `exited`, `created`...
    pub state: String,
}

/// Every engine's containers by name, read directly from each engine.
pub fn engines_now(engines: &[(String, String)]) -> Result<BTreeMap<String, Vec<Held>>, String> {
    let mut out: BTreeMap<String, Vec<Held>> = BTreeMap::new();
    for (engine, addr) in engines {
        let (status, _, body) = http_within(addr, "GET", "/containers/json?all=1", None, Duration::from_secs(5));
        if status != 200 {
            return Err(format!("{engine} did not answer its container list ({status})"));
        }
        let list: Vec<Value> = serde_json::from_slice(&body).map_err(|e| format!("{engine}: {e}"))?;
        for c in list {
            let name = c["Names"][0].as_str().unwrap_or_default().trim_start_matches('/').to_string();
            out.entry(name).or_default().push(Held { engine: engine.clone(), state: c["State"].as_str().unwrap_or_default().to_string() });
        }
    }
    Ok(out)
}

/// `StartedAt` of every running container, by name and engine.
pub fn started_at(engines: &[(String, String)]) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for (engine, addr) in engines {
        let (status, _, body) = http_within(addr, "GET", "/containers/json", None, Duration::from_secs(5));
        if status != 200 {
            continue;
        }
        let list: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
        for c in list {
            let Some(id) = c["Id"].as_str() else { continue };
            let (status, _, body) = http_within(addr, "GET", &format!("/containers/{id}/json"), None, Duration::from_secs(5));
            if status != 200 {
                continue;
            }
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            let name = v["Name"].as_str().unwrap_or_default().trim_start_matches('/').to_string();
            out.insert(name, (engine.clone(), v["State"]["StartedAt"].as_str().unwrap_or_default().to_string()));
        }
    }
    out
}

/// Containers that ran before a manager fault and after it, on the same engine, that no client
/// touched meanwhile, must not have been restarted: the same `StartedAt`.
pub fn kept_running(before: &BTreeMap<String, (String, String)>, after: &BTreeMap<String, (String, String)>, window: (f64, f64), ops: &[Op], fault: &Struck) -> Vec<String> {
    let touched: BTreeSet<&str> =
        ops.iter().filter(|o| o.kind.mutates() && o.sent <= window.1 && o.returned >= window.0).map(|o| o.name.as_str()).collect();
    before
        .iter()
        .filter(|(name, _)| !touched.contains(name.as_str()))
        .filter_map(|(name, (engine, started))| match after.get(name) {
            Some((e, s)) if e == engine && s != started => {
                Some(format!("{name} on {engine} was restarted during {} ({started} -> {s})", fault.fault.name()))
            }
            _ => None,
        })
        .collect()
}

/// What the history says a container must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Exists, in any state.
    Exists,
    Running,
    Stopped,
    Removed,
    /// A change went unanswered: at most one copy, either way.
    Unsure,
}

fn expected(ops: &[&Op]) -> (Expect, f64) {
    let mut state = Expect::Unsure;
    let mut since = 0.0;
    for o in ops {
        let next = match (o.kind, &o.outcome) {
            (Kind::Run, Outcome::Ok) | (Kind::Start, Outcome::Ok) => Expect::Running,
            (Kind::Run | Kind::Create, Outcome::Definite(_)) | (Kind::Create, Outcome::Ok) => Expect::Exists,
            (Kind::Stop, Outcome::Ok) => Expect::Stopped,
            (Kind::Remove, Outcome::Ok | Outcome::Definite(_)) => Expect::Removed,
            (k, _) if k.mutates() => Expect::Unsure,
            _ => continue,
        };
        state = next;
        since = o.sent;
    }
    (state, since)
}

/// The result of the history-against-engines check.
#[derive(Debug, Default)]
pub struct Accounting {
    /// Names clients acknowledged (created and not removed).
    pub acknowledged: usize,
    /// Acknowledged removals.
    pub removed: usize,
    /// Unsure containers found on an engine.
    pub unsure_exist: usize,
    /// Unsure containers found on no engine.
    pub unsure_absent: usize,
    /// Containers that should run, stopped by their engine's own restart (not swarm's doing).
    pub stopped_by_engine: usize,
    /// What is wrong.
    pub violations: Vec<String>,
}

/// No loss, no duplicate, no phantom: every name's copies on the engines against its history.
/// `ever` holds every container any engine was seen holding during the run.
pub fn account(ops: &[Op], now: &BTreeMap<String, Vec<Held>>, ever: &BTreeMap<String, Seen>, struck: &[Struck]) -> Accounting {
    let mut acc = Accounting::default();
    let mut by_name: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for o in ops.iter().filter(|o| !o.name.is_empty()) {
        by_name.entry(o.name.as_str()).or_default().push(o);
    }
    for list in by_name.values_mut() {
        list.sort_by(|a, b| a.sent.total_cmp(&b.sent));
    }
    for (name, list) in &by_name {
        let copies = now.get(*name).map(Vec::as_slice).unwrap_or_default();
        let (expect, since) = expected(list);
        if copies.len() > 1 {
            acc.violations.push(format!("{name} exists {} times: {copies:?}", copies.len()));
            continue;
        }
        let copy = copies.first();
        match expect {
            Expect::Removed => {
                acc.removed += 1;
                if let Some(c) = copy {
                    acc.violations.push(format!("{name} was removed (acknowledged) but is on {} ({})", c.engine, c.state));
                }
            }
            Expect::Unsure => match copy {
                Some(_) => acc.unsure_exist += 1,
                None => acc.unsure_absent += 1,
            },
            Expect::Exists | Expect::Running | Expect::Stopped => {
                acc.acknowledged += 1;
                let Some(c) = copy else {
                    acc.violations.push(format!("{name} was acknowledged ({expect:?}) and is on no engine"));
                    continue;
                };
                let engine_restarted = struck.iter().any(|s| s.fault == Fault::EngineStop && s.victim == c.engine && s.began > since);
                match expect {
                    Expect::Running if c.state != "running" && engine_restarted => acc.stopped_by_engine += 1,
                    Expect::Running if c.state != "running" => acc.violations.push(format!("{name} should run; on {} it is {}", c.engine, c.state)),
                    Expect::Stopped if c.state == "running" => acc.violations.push(format!("{name} was stopped (acknowledged); on {} it runs", c.engine)),
                    _ => {}
                }
            }
        }
    }
    let asked: BTreeSet<&str> = by_name.keys().copied().collect();
    for (name, copies) in now.iter().filter(|(n, _)| !asked.contains(n.as_str())) {
        acc.violations.push(format!("phantom: {name} on {copies:?}, which no client asked for"));
    }
    for s in ever.values().filter(|s| !asked.contains(s.name.as_str()) && !now.contains_key(&s.name)) {
        acc.violations.push(format!("phantom: {} appeared on {} (since removed), which no client asked for", s.name, s.engine));
    }
    acc
}

/// Failures a client can meet while a fault lasts and that a retry outlives: the primary or an
/// engine out of reach, a node down, a connection cut, the client's own timeout.
const RETRYABLE: &[&str] = &[
    "Unable to reach primary cluster manager",
    "No elected primary cluster manager",
    "This manager is no longer the primary; retry",
    "cannot record the create, nothing was created; retry",
    "cannot connect to the Docker engine",
    "did not answer within",
    "running on unhealthy node",
    "which left the cluster",
    "No healthy node available in the cluster",
    "error during connect",
    "unexpected EOF",
    "unable to upgrade to tcp, received 500",
    "unable to upgrade to tcp, received 503",
    "timed out after",
    "is being rescheduled to a healthy node; retry",
    "has not been read since this manager began leading, so it may be there",
    // dockerd's 409 while an earlier attempt's removal, cut off by a fault, is still running.
    "is already in progress",
    // `docker exec`'s silent exit when it cannot reach the daemon to read the exit code
    // (cli/command/container/exec.go: a connection failure becomes StatusError{StatusCode: -1}).
    "exit status: 255 and no message",
];

/// The docker CLI 28 gives up negotiating the API version when its first `/_ping` outlasts its
/// init timeout (2 s), and then sends its own newest version, which a manager refuses as an
/// engine does. Seen once in 200 faults, while every manager was restarting (the command
/// returned after 2.02 s); the next command negotiates again. Retryable only when the command
/// took that long: a refusal after a prompt ping would be a manager advertising a wrong version.
const UNNEGOTIATED: &str = "is too new. Maximum supported API version is";
const CLI_INIT_TIMEOUT_S: f64 = 2.0;

/// What dockerd itself answers while it shuts down (its stores close under running requests):
/// the engine's own words, passed through, and gone once it is back.
const ENGINE_SHUTTING_DOWN: &[&str] = &["failed to update the store state of sandbox", "failed to update store for object type"];

/// A stopped dockerd stops its containers, and they stay exited after it starts again (the
/// clients set no restart policy): once an engine has been stopped, "is not running" is a true
/// answer about a container the client last saw running.
const STOPPED_WITH_ITS_ENGINE: &str = "is not running";

/// Clients see only errors they can retry: every failure that is not a definite answer about
/// the container must be one of [`RETRYABLE`], or an engine's shutdown error sent while an
/// engine was being stopped, or "is not running" once one has been. Returns the violations, one
/// per kind of error.
pub fn unretryable(ops: &[Op], struck: &[Struck]) -> Vec<String> {
    let engine_stopping = |at: f64| struck.iter().any(|s| s.fault == Fault::EngineStop && s.began <= at && at <= s.healed);
    let engine_stopped_before = |at: f64| struck.iter().any(|s| s.fault == Fault::EngineStop && s.began <= at);
    let mut kinds: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for o in ops {
        let Outcome::Ambiguous(e) = &o.outcome else { continue };
        if RETRYABLE.iter().any(|r| e.contains(r)) || (e.contains(UNNEGOTIATED) && o.returned - o.sent >= CLI_INIT_TIMEOUT_S) {
            continue;
        }
        if ENGINE_SHUTTING_DOWN.iter().any(|r| e.contains(r)) && engine_stopping(o.sent) {
            continue;
        }
        if e.contains(STOPPED_WITH_ITS_ENGINE) && engine_stopped_before(o.sent) {
            continue;
        }
        let entry = kinds.entry(crate::report::error_class(e)).or_insert((0, format!("{} {} at {:.1} s", o.kind.name(), o.name, o.sent)));
        entry.0 += 1;
    }
    kinds.into_iter().map(|(e, (n, example))| format!("clients saw a failure they cannot retry, {n} times (first: {example}): {e}")).collect()
}

/// At most one acting leader: the creates of each term (read from the engines' labels) must not
/// overlap in time with another term's, and a term never creates after a later term has.
/// Returns the terms seen and the violations.
pub fn one_acting_leader(ever: &BTreeMap<String, Seen>) -> (usize, Vec<String>) {
    let mut violations = Vec::new();
    let mut terms: BTreeMap<u64, (f64, f64, BTreeSet<String>, usize)> = BTreeMap::new();
    for s in ever.values() {
        match s.term {
            Some(t) => {
                let e = terms.entry(t).or_insert((f64::MAX, f64::MIN, BTreeSet::new(), 0));
                e.0 = e.0.min(s.created_unix);
                e.1 = e.1.max(s.created_unix);
                e.2.insert(s.by.clone().unwrap_or_default());
                e.3 += 1;
            }
            None if s.swarm_id.is_some() => violations.push(format!("{} on {} was created by a manager under no term", s.name, s.engine)),
            None => {}
        }
    }
    for (t, (_, _, by, _)) in &terms {
        if by.len() > 1 {
            violations.push(format!("term {t} was acted in by several managers: {by:?}"));
        }
    }
    let list: Vec<_> = terms.iter().collect();
    for pair in list.windows(2) {
        let ((ta, (_, last_a, by_a, _)), (tb, (first_b, _, by_b, _))) = (pair[0], pair[1]);
        if last_a >= first_b {
            violations.push(format!(
                "term {ta} ({by_a:?}) still created at {last_a:.3} after term {tb} ({by_b:?}) began creating at {first_b:.3}"
            ));
        }
    }
    (terms.len(), violations)
}

/// The checker's own check, run before every campaign: planted violations must be reported.
pub mod self_check {
    use super::*;

    fn op(kind: Kind, name: &str, sent: f64, outcome: Outcome) -> Op {
        Op { client: 0, kind, name: name.into(), reschedule: false, sent, returned: sent + 0.1, outcome }
    }

    fn seen(name: &str, term: Option<u64>, by: &str, at: f64) -> Seen {
        Seen { engine: "node-1".into(), name: name.into(), created_unix: at, term, by: Some(by.into()), swarm_id: Some(name.into()) }
    }

    pub fn a_lost_a_doubled_a_resurrected_and_a_phantom_container_are_all_reported() {
        let ops = vec![
            op(Kind::Run, "lost", 1.0, Outcome::Ok),
            op(Kind::Run, "twice", 1.0, Outcome::Ok),
            op(Kind::Run, "back", 1.0, Outcome::Ok),
            op(Kind::Remove, "back", 2.0, Outcome::Ok),
            op(Kind::Run, "fine", 1.0, Outcome::Ambiguous("EOF".into())),
            op(Kind::Run, "fine", 2.0, Outcome::Definite("is already in use".into())),
            op(Kind::Start, "fine", 3.0, Outcome::Ok),
        ];
        let held = |e: &str, s: &str| Held { engine: e.into(), state: s.into() };
        let now = BTreeMap::from([
            ("twice".to_string(), vec![held("node-1", "running"), held("node-2", "running")]),
            ("back".to_string(), vec![held("node-1", "exited")]),
            ("fine".to_string(), vec![held("node-2", "running")]),
            ("ghost".to_string(), vec![held("node-3", "running")]),
        ]);
        let acc = account(&ops, &now, &BTreeMap::new(), &[]);
        let text = acc.violations.join("\n");
        for needle in ["lost was acknowledged", "twice exists 2 times", "back was removed", "phantom: ghost"] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        assert_eq!(acc.violations.len(), 4, "{text}");
    }

    pub fn only_transient_failures_pass_as_retryable() {
        let ops = [
            op(Kind::Run, "a", 1.0, Outcome::Ambiguous("Error response from daemon: Unable to reach primary cluster manager (x): EOF".into())),
            op(Kind::Remove, "a", 2.0, Outcome::Ambiguous("Error response from daemon: timed out after 20s".into())),
            op(Kind::Stop, "a", 3.0, Outcome::Ambiguous("Error response from daemon: invalid reference format".into())),
            op(Kind::Run, "b", 4.0, Outcome::Definite("No such container: b".into())),
            op(Kind::Exec, "a", 5.0, Outcome::Ambiguous("exit status: 255 and no message".into())),
            // `true` exits 0: any other silent code is a wrong answer.
            op(Kind::Exec, "a", 6.0, Outcome::Ambiguous("exit status: 1 and no message".into())),
            // Refused after a prompt ping: the manager advertised a version it does not serve.
            op(Kind::Ps, "", 7.0, Outcome::Ambiguous("Error response from daemon: client version 1.50 is too new. Maximum supported API version is 1.41".into())),
            Op { returned: 10.1, ..op(Kind::Ps, "", 8.0, Outcome::Ambiguous("Error response from daemon: client version 1.50 is too new. Maximum supported API version is 1.42".into())) },
        ];
        let found = unretryable(&ops, &[]);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found.iter().any(|f| f.contains("invalid reference format")), "{found:?}");
        assert!(found.iter().any(|f| f.contains("exit status: 1 and")), "{found:?}");
        assert!(found.iter().any(|f| f.contains("is 1.41")), "{found:?}");
        // An engine's shutdown error is retryable only while an engine is being stopped.
        let sandbox = "Error response from daemon: failed to update the store state of sandbox: open : no such file or directory";
        let during = [op(Kind::Start, "a", 12.0, Outcome::Ambiguous(sandbox.into())), op(Kind::Start, "a", 30.0, Outcome::Ambiguous(sandbox.into()))];
        let stop = Struck { fault: Fault::EngineStop, victim: "node-1".into(), began: 10.0, healed: 20.0 };
        assert_eq!(unretryable(&during, &[stop.clone()]).len(), 1, "outside the engine's stop it is a violation");
        let endpoint = "Error response from daemon: failed to update store for object type *libnetwork.endpoint: open : no such file or directory";
        assert!(unretryable(&[op(Kind::Start, "a", 12.0, Outcome::Ambiguous(endpoint.into()))], &[stop.clone()]).is_empty());
        // A container stopped with its engine stays stopped; before any engine stop, an exec
        // refused as "not running" on a container the client left running is a wrong answer.
        let not_running = "Error response from daemon: container 0123abcd is not running";
        let execs = [op(Kind::Exec, "a", 5.0, Outcome::Ambiguous(not_running.into())), op(Kind::Exec, "a", 37.5, Outcome::Ambiguous(not_running.into()))];
        let found = unretryable(&execs, &[stop]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("at 5.0 s"), "{found:?}");
    }

    pub fn overlapping_terms_are_caught_and_ordered_terms_pass() {
        let ordered = BTreeMap::from([("a".to_string(), seen("a", Some(3), "m1", 10.0)), ("b".to_string(), seen("b", Some(5), "m2", 11.0))]);
        assert!(one_acting_leader(&ordered).1.is_empty());
        let late = BTreeMap::from([
            ("a".to_string(), seen("a", Some(3), "m1", 10.0)),
            ("b".to_string(), seen("b", Some(5), "m2", 11.0)),
            ("c".to_string(), seen("c", Some(3), "m1", 12.0)),
        ]);
        assert_eq!(one_acting_leader(&late).1.len(), 1);
        let unlabelled = BTreeMap::from([("d".to_string(), seen("d", None, "", 1.0))]);
        assert_eq!(one_acting_leader(&unlabelled).1.len(), 1);
    }
}

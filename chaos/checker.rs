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
            out.entry(name)
                .or_default()
                .push(Held { engine: engine.clone(), state: c["State"].as_str().unwrap_or_default().to_string() });
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
            let (status, _, body) =
                http_within(addr, "GET", &format!("/containers/{id}/json"), None, Duration::from_secs(5));
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
pub fn kept_running(
    before: &BTreeMap<String, (String, String)>,
    after: &BTreeMap<String, (String, String)>,
    window: (f64, f64),
    ops: &[Op],
    fault: &Struck,
) -> Vec<String> {
    let touched: BTreeSet<&str> = ops
        .iter()
        .filter(|o| o.kind.mutates() && o.sent <= window.1 && o.returned >= window.0)
        .map(|o| o.name.as_str())
        .collect();
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
pub fn account(
    ops: &[Op],
    now: &BTreeMap<String, Vec<Held>>,
    ever: &BTreeMap<String, Seen>,
    struck: &[Struck],
) -> Accounting {
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
                    acc.violations
                        .push(format!("{name} was removed (acknowledged) but is on {} ({})", c.engine, c.state));
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
                let engine_restarted =
                    struck.iter().any(|s| s.fault == Fault::EngineStop && s.victim == c.engine && s.began > since);
                match expect {
                    Expect::Running if c.state != "running" && engine_restarted => acc.stopped_by_engine += 1,
                    Expect::Running if c.state != "running" => {
                        acc.violations.push(format!("{name} should run; on {} it is {}", c.engine, c.state))
                    }
                    Expect::Stopped if c.state == "running" => {
                        acc.violations.push(format!("{name} was stopped (acknowledged); on {} it runs", c.engine))
                    }
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
        acc.violations
            .push(format!("phantom: {} appeared on {} (since removed), which no client asked for", s.name, s.engine));
    }
    acc
}

/// Faults during which a client may rightly fail: the engine of its container is down (its
/// containers cannot be reached, and an engine shutting down answers with its own errors), or
/// every manager is. Any other failure is one a user would see for a fault they should not
/// notice.
fn excuses(f: Fault) -> bool {
    matches!(f, Fault::EngineStop | Fault::EngineHang | Fault::FullRestart)
}

/// How long after such a fault heals its consequences may still show: an engine that is back
/// is found healthy again within a refresh, and managers restarted take that long to read every
/// engine.
const AFTERMATH_S: f64 = 10.0;

/// A stopped dockerd stops its containers, and they stay exited after it starts again (the
/// clients set no restart policy): once an engine has been stopped, "is not running" is a true
/// answer about a container the client last saw running.
const STOPPED_WITH_ITS_ENGINE: &str = "is not running";

/// Clients never retry, so every failure that is not a definite answer about the container
/// (the name is in use, there is no such container) is one a user saw, and a violation, unless
/// it came while an engine or every manager was down ([`excuses`]), or is "is not running"
/// about a container whose engine has been stopped since. Returns the violations, one per
/// kind of error.
pub fn client_errors(ops: &[Op], struck: &[Struck]) -> Vec<String> {
    let engine_stopped_before = |at: f64| struck.iter().any(|s| s.fault == Fault::EngineStop && s.began <= at);
    let excused =
        |o: &Op| struck.iter().any(|s| excuses(s.fault) && s.began <= o.returned && o.sent <= s.healed + AFTERMATH_S);
    // A session (`exec`) lives on the manager it reached, which is a follower: the loss of
    // that very follower ends it, as a server's death ends the connections it held. The
    // leader's loss must not.
    let session_on_lost_follower = |o: &Op| {
        o.kind == Kind::Exec
            && struck.iter().any(|s| s.fault == Fault::FollowerKill && s.began <= o.returned && o.sent <= s.began)
    };
    let mut kinds: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for o in ops {
        let Outcome::Ambiguous(e) = &o.outcome else { continue };
        if excused(o)
            || session_on_lost_follower(o)
            || (e.contains(STOPPED_WITH_ITS_ENGINE) && engine_stopped_before(o.sent))
        {
            continue;
        }
        let entry = kinds
            .entry(crate::history::error_class(e))
            .or_insert((0, format!("{} {} at {:.1} s", o.kind.name(), o.name, o.sent)));
        entry.0 += 1;
    }
    kinds
        .into_iter()
        .map(|(e, (n, example))| format!("clients saw a failure, {n} times (first: {example}): {e}"))
        .collect()
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
            None if s.swarm_id.is_some() => {
                violations.push(format!("{} on {} was created by a manager under no term", s.name, s.engine))
            }
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
        Seen {
            engine: "node-1".into(),
            name: name.into(),
            created_unix: at,
            term,
            by: Some(by.into()),
            swarm_id: Some(name.into()),
        }
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

    pub fn every_failure_counts_but_those_of_a_down_engine_or_control_plane() {
        let ops = [
            op(
                Kind::Run,
                "a",
                1.0,
                Outcome::Ambiguous(
                    "Error response from daemon: Unable to reach primary cluster manager (x): EOF".into(),
                ),
            ),
            op(Kind::Remove, "a", 2.0, Outcome::Ambiguous("Error response from daemon: timed out after 20s".into())),
            op(Kind::Run, "b", 4.0, Outcome::Definite("No such container: b".into())),
            op(Kind::Exec, "a", 5.0, Outcome::Ambiguous("exit status: 255 and no message".into())),
        ];
        let found = client_errors(&ops, &[]);
        assert_eq!(found.len(), 3, "every failure but the definite answer: {found:?}");
        let stop = Struck { fault: Fault::EngineStop, victim: "node-1".into(), began: 10.0, healed: 20.0 };
        let restart = Struck { fault: Fault::FullRestart, victim: "every manager".into(), began: 40.0, healed: 45.0 };
        let kill = Struck { fault: Fault::LeaderKill, victim: "m1".into(), began: 60.0, healed: 61.0 };
        let during = [
            op(
                Kind::Start,
                "a",
                12.0,
                Outcome::Ambiguous("Error response from daemon: running on unhealthy node".into()),
            ),
            op(Kind::Ps, "", 44.0, Outcome::Ambiguous("Error response from daemon: 503 Service Unavailable".into())),
            op(
                Kind::Run,
                "c",
                60.5,
                Outcome::Ambiguous(
                    "Error response from daemon: Unable to reach primary cluster manager (x): EOF".into(),
                ),
            ),
        ];
        let found = client_errors(&during, &[stop.clone(), restart, kill.clone()]);
        assert_eq!(found.len(), 1, "a leader's loss excuses nothing: {found:?}");
        assert!(found[0].contains("run c at 60.5 s"), "{found:?}");
        // A session cut by the loss of the follower it was on is excused; by the leader's, not.
        let follower = Struck { fault: Fault::FollowerKill, victim: "m2".into(), began: 70.0, healed: 71.0 };
        let cut = [
            op(Kind::Exec, "a", 69.95, Outcome::Ambiguous("unexpected EOF".into())),
            op(Kind::Exec, "a", 60.0, Outcome::Ambiguous("unexpected EOF".into())),
        ];
        let found = client_errors(&cut, &[follower, kill]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("at 60.0 s"), "{found:?}");
        // A container stopped with its engine stays stopped; before any engine stop, an exec
        // refused as "not running" on a container the client left running is a wrong answer.
        let not_running = "Error response from daemon: container 0123abcd is not running";
        let execs = [
            op(Kind::Exec, "a", 5.0, Outcome::Ambiguous(not_running.into())),
            op(Kind::Exec, "a", 37.5, Outcome::Ambiguous(not_running.into())),
        ];
        let found = client_errors(&execs, &[stop]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("at 5.0 s"), "{found:?}");
    }

    pub fn overlapping_terms_are_caught_and_ordered_terms_pass() {
        let ordered = BTreeMap::from([
            ("a".to_string(), seen("a", Some(3), "m1", 10.0)),
            ("b".to_string(), seen("b", Some(5), "m2", 11.0)),
        ]);
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

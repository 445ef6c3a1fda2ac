//! The conformance table: per route or filter, cases, conforming, intended differences.

use std::collections::BTreeMap;

use crate::normalize::diff;
use crate::oracle::{Answer, Req};

/// A difference swarm makes on purpose; each is listed in docs/conformance.md with its reason. It
/// applies to a case only when the request is of its kind *and* the answers differ the way it
/// says, so that it waives nothing else.
pub struct Intended {
    pub id: &'static str,
    pub reason: &'static str,
    /// The request, the engine's answer, swarm's answer.
    pub applies: fn(&Req, &Answer, &Answer) -> bool,
}

fn decoded(r: &Req) -> String {
    percent_encoding::percent_decode_str(&r.path).decode_utf8_lossy().into_owned()
}

/// Whether the request's `filters` parameter is a JSON object with `key`.
fn filters_have(r: &Req, key: &str) -> bool {
    let Some((_, query)) = r.path.split_once('?') else { return false };
    form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "filters")
        .filter_map(|(_, v)| serde_json::from_str::<serde_json::Value>(&v).ok())
        .any(|f| f.get(key).is_some())
}

/// The `message` of a JSON error answer.
fn message(a: &Answer) -> String {
    match &a.body {
        crate::oracle::Body::Json(v) => v["message"].as_str().unwrap_or_default().to_string(),
        _ => String::new(),
    }
}

/// Whether the request names an object `node-N/name`, in its path or a filter (the engines
/// here are node-1 and node-2).
fn names_node_slash(r: &Req) -> bool {
    let request = decoded(r);
    ["node-1/", "node-2/"].iter().any(|n| request.contains(n))
}

/// Whether the engine found nothing: 404, or an empty list.
fn engine_found_nothing(engine: &Answer) -> bool {
    engine.status == 404
        || (engine.status == 200
            && matches!(&engine.body, crate::oracle::Body::Json(serde_json::Value::Array(a)) if a.is_empty()))
}

/// Every intended difference.
pub const INTENDED: &[Intended] = &[
    Intended {
        id: "node-filter",
        reason: "`node` is swarm's own filter key (classic Swarm's); an engine refuses it as an invalid filter",
        applies: |r, engine, _| {
            filters_have(r, "node") && matches!(engine.status, 400 | 500) && message(engine).contains("filter")
        },
    },
    Intended {
        id: "node-slash-name",
        reason: "`node/name` names a container, network or volume on one node; an engine knows no such name",
        applies: |r, engine, _| names_node_slash(r) && engine_found_nothing(engine),
    },
    Intended {
        id: "swarm-mode-routes",
        reason: "swarm-mode routes (/swarm, /nodes, /services, /tasks, /secrets, /configs) answer 404 as in classic Swarm; an engine outside swarm mode answers 503",
        applies: |r, engine, swarm| {
            ["/swarm", "/nodes", "/services", "/tasks", "/secrets", "/configs"]
                .iter()
                .any(|p| r.path.trim_start_matches("/v1.41").starts_with(p))
                && engine.status == 503
                && swarm.status == 404
        },
    },
    Intended {
        id: "min-api-version",
        reason: "swarm serves API 1.24 and later (it reads create bodies of that shape); an engine also takes 1.12 to 1.23",
        applies: |r, _, swarm| r.path.starts_with("/v1.12/") && swarm.status == 400,
    },
    Intended {
        id: "images-viz",
        reason: "`/images/viz` answers 501 `Not supported in clustering mode.` as classic Swarm did",
        applies: |r, _, swarm| decoded(r).trim_start_matches("/v1.41").starts_with("/images/viz") && swarm.status == 501,
    },
];

#[derive(Default)]
struct Row {
    cases: usize,
    conforming: usize,
    intended: usize,
}

/// Results of a run; [`Table::finish`] prints them and fails on any unexplained difference.
#[derive(Default)]
pub struct Table {
    rows: BTreeMap<String, Row>,
    by_reason: BTreeMap<&'static str, usize>,
    failures: Vec<String>,
}

impl Table {
    /// Records one compared case.
    pub fn record(&mut self, group: &str, req: &Req, engine: &Answer, swarm: &Answer) {
        let row = self.rows.entry(group.to_string()).or_default();
        row.cases += 1;
        let d = diff(engine, swarm);
        if d.is_empty() {
            row.conforming += 1;
        } else if let Some(i) = INTENDED.iter().find(|i| (i.applies)(req, engine, swarm)) {
            row.intended += 1;
            *self.by_reason.entry(i.id).or_default() += 1;
        } else {
            self.failures.push(format!("{group}: {}\n    {}", req.show(), d.join("\n    ")));
        }
    }

    /// Records a case checked some other way (`ok` when it held).
    pub fn record_check(&mut self, group: &str, what: &str, ok: bool, detail: String) {
        let row = self.rows.entry(group.to_string()).or_default();
        row.cases += 1;
        if ok {
            row.conforming += 1;
        } else {
            self.failures.push(format!("{group}: {what}\n    {detail}"));
        }
    }

    /// Prints the table and panics if any case differs without being intended.
    pub fn finish(self, title: &str) {
        let mut text = format!(
            "\n{title}\n{:<44} {:>6} {:>11} {:>9} {:>7}\n",
            "route or filter", "cases", "conforming", "intended", "failing"
        );
        let (mut c, mut ok, mut int) = (0, 0, 0);
        for (group, r) in &self.rows {
            text.push_str(&format!(
                "{group:<44} {:>6} {:>11} {:>9} {:>7}\n",
                r.cases,
                r.conforming,
                r.intended,
                r.cases - r.conforming - r.intended
            ));
            c += r.cases;
            ok += r.conforming;
            int += r.intended;
        }
        text.push_str(&format!("{:<44} {c:>6} {ok:>11} {int:>9} {:>7}\n", "total", c - ok - int));
        for i in INTENDED {
            if let Some(n) = self.by_reason.get(i.id) {
                text.push_str(&format!("intended difference {} ({n} cases): {}\n", i.id, i.reason));
            }
        }
        eprintln!("{text}");
        assert!(
            self.failures.is_empty(),
            "{} cases differ from the engine:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

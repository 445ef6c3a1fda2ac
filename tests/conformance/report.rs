//! The conformance table: per route or filter, cases, conforming, intended differences.

use std::collections::BTreeMap;

use crate::normalize::diff;
use crate::oracle::{Answer, Req};

/// A difference swarm makes on purpose; each is listed in the README with its reason.
pub struct Intended {
    pub id: &'static str,
    pub reason: &'static str,
    pub applies: fn(&Req) -> bool,
}

fn has(r: &Req, s: &str) -> bool {
    percent_encoding::percent_decode_str(&r.path).decode_utf8_lossy().contains(s)
}

/// Every intended difference.
pub const INTENDED: &[Intended] = &[
    Intended {
        id: "node-filter",
        reason: "`node` is swarm's own filter key (classic Swarm's); an engine refuses it as an invalid filter",
        applies: |r| has(r, "\"node\""),
    },
    Intended {
        id: "node-slash-name",
        reason: "`node/name` names a container, network or volume on one node; an engine knows no such name",
        applies: |r| has(r, "node-1/") || has(r, "node-2/"),
    },
    Intended {
        id: "swarm-mode-routes",
        reason: "swarm-mode routes (/swarm, /nodes, /services, /tasks, /secrets, /configs) answer 404 as in classic Swarm; an engine outside swarm mode answers 503",
        applies: |r| ["/swarm", "/nodes", "/services", "/tasks", "/secrets", "/configs"].iter().any(|p| r.path.trim_start_matches("/v1.41").starts_with(p)),
    },
    Intended {
        id: "min-api-version",
        reason: "swarm serves API 1.24 and later (it reads create bodies of that shape); an engine also takes 1.12 to 1.23",
        applies: |r| ["/v1.12/"].iter().any(|p| r.path.starts_with(p)),
    },
    Intended {
        id: "images-viz",
        reason: "`/images/viz` answers 501 `Not supported in clustering mode.` as classic Swarm did",
        applies: |r| has(r, "/images/viz"),
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
        } else if let Some(i) = INTENDED.iter().find(|i| (i.applies)(req)) {
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

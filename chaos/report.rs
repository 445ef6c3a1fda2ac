//! The figures and the report of one campaign: a Markdown file and a PNG timeline (plotted by
//! gnuplot) in the run's folder, and a summary on stderr.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::checker::Accounting;
use crate::faults::{Fault, Struck};
use crate::history::{error_class, percentile, Op, Outcome};
use crate::observe::RoleSample;
use crate::topology::Mode;

/// Everything one campaign measured and found.
pub struct Findings {
    /// Raft or etcd.
    pub mode: Mode,
    /// The seed that replays it.
    pub seed: u64,
    /// Concurrent clients.
    pub clients: usize,
    /// The managers' addresses, in order.
    pub managers: Vec<String>,
    /// The faults, as struck.
    pub struck: Vec<Struck>,
    /// Faults that could not be struck (no leader to strike within the bound).
    pub skipped: usize,
    /// Every client operation.
    pub ops: Vec<Op>,
    /// Every role sample.
    pub roles: Vec<RoleSample>,
    /// No loss, no duplicate, no phantom.
    pub accounting: Accounting,
    /// Leadership terms seen acting on the engines.
    pub terms: usize,
    /// Overlapping or unattributed creates.
    pub leader_violations: Vec<String>,
    /// Containers restarted by a manager fault.
    pub restart_violations: Vec<String>,
    /// Failures clients could not have retried.
    pub error_violations: Vec<String>,
    /// Time from healing until every manager agreed with the engines, or why it never did.
    pub convergence: Result<f64, String>,
    /// When the load ended.
    pub ended: f64,
    /// The campaign clock's zero, in seconds since the Unix epoch (to read the managers' logs).
    pub wall_start: f64,
}

impl Findings {
    /// Every violation, of every check.
    pub fn violations(&self) -> Vec<String> {
        let mut v = self.accounting.violations.clone();
        v.extend(self.leader_violations.iter().cloned());
        v.extend(self.restart_violations.iter().cloned());
        v.extend(self.error_violations.iter().cloned());
        if let Err(e) = &self.convergence {
            v.push(format!("no convergence: {e}"));
        }
        if self.struck.is_empty() {
            v.push(format!("no fault was struck ({} skipped): the campaign tested nothing", self.skipped));
        }
        v
    }
}

/// The unavailability clients saw after a fault: from the first request that failed (not a
/// definite refusal) to the first success sent after it; 0 when nothing failed.
fn unavailability(ops: &[Op], from: f64, until: f64) -> f64 {
    let Some(first_fail) = ops
        .iter()
        .filter(|o| o.sent >= from && o.sent < until && matches!(o.outcome, Outcome::Ambiguous(_)))
        .map(|o| o.sent)
        .min_by(f64::total_cmp)
    else {
        return 0.0;
    };
    let first_ok =
        ops.iter().filter(|o| o.sent >= first_fail && o.outcome.is_ok()).map(|o| o.returned).min_by(f64::total_cmp);
    first_ok.unwrap_or(until) - first_fail
}

/// From the fault until some manager other than a struck leader answers `primary` (the struck
/// one counts once healed).
fn failover(roles: &[RoleSample], s: &Struck, until: f64) -> Option<f64> {
    roles
        .iter()
        .filter(|r| {
            r.role == "primary" && r.sent >= s.began && r.sent < until && (r.manager != s.victim || r.sent >= s.healed)
        })
        .map(|r| r.returned - s.began)
        .min_by(f64::total_cmp)
}

/// 100 ms slots in which two managers answered `primary` (each sampled by its own thread).
/// Only answers that took under 100 ms count: one that waited out a freeze was written at an
/// unknown instant of its wait.
fn double_primaries(roles: &[RoleSample]) -> usize {
    let mut slots: BTreeMap<i64, std::collections::BTreeSet<&str>> = BTreeMap::new();
    for r in roles.iter().filter(|r| r.role == "primary" && r.returned - r.sent < 0.1) {
        slots.entry((r.returned * 10.0).floor() as i64).or_default().insert(r.manager.as_str());
    }
    slots.values().filter(|managers| managers.len() > 1).count()
}

fn ms(s: f64) -> String {
    format!("{:.0} ms", s * 1000.0)
}

/// Writes `report.md`, the timeline's data and `timeline.png` into `dir`; returns the Markdown.
pub fn write(dir: &Path, f: &Findings) -> String {
    std::fs::create_dir_all(dir).expect("report folder");
    let mut md = String::new();
    let violations = f.violations();
    let _ = writeln!(md, "# Chaos campaign: {} mode, seed {}\n", f.mode.name(), f.seed);
    let _ = writeln!(
        md,
        "Replay: `cargo test --release --test chaos -- --mode {} --faults {} --seed {}`\n",
        f.mode.name(),
        f.struck.len() + f.skipped,
        f.seed
    );
    let _ = writeln!(md, "Three managers behind HAProxy, three engines with `swarm join` agents, {} clients through HAProxy. Times are seconds from {:.3} (Unix time; `date -u -d @{:.0}`), the managers' logs are beside this report.\n", f.clients, f.wall_start, f.wall_start);
    let _ = writeln!(
        md,
        "**Verdict: {}**\n",
        if violations.is_empty() {
            "PASS, no violation".to_string()
        } else {
            format!("FAIL, {} violations", violations.len())
        }
    );

    let _ = writeln!(md, "## Checks (read from the engines and the clients' histories)\n");
    let a = &f.accounting;
    let row = |md: &mut String, name: &str, ok: bool, detail: String| {
        let _ = writeln!(md, "| {name} | {} | {detail} |", if ok { "pass" } else { "FAIL" });
    };
    let _ = writeln!(md, "| check | result | detail |\n| --- | --- | --- |");
    row(
        &mut md,
        "at most one acting leader",
        f.leader_violations.is_empty(),
        format!("{} terms created containers; {} violations", f.terms, f.leader_violations.len()),
    );
    let lost = a.violations.iter().filter(|v| v.contains("is on no engine") || v.contains("should run")).count();
    let doubled = a.violations.iter().filter(|v| v.contains(" times: ")).count();
    let phantoms = a.violations.iter().filter(|v| v.starts_with("phantom")).count();
    let resurrected = a.violations.iter().filter(|v| v.contains("was removed")).count();
    row(
        &mut md,
        "no loss",
        lost == 0,
        format!(
            "{} acknowledged containers, {lost} lost or not in their state ({} stopped by their own engine's restart)",
            a.acknowledged, a.stopped_by_engine
        ),
    );
    row(&mut md, "no duplicate", doubled == 0, format!("{doubled} names with several copies"));
    row(
        &mut md,
        "removals stay removed",
        resurrected == 0,
        format!("{} acknowledged removals, {resurrected} back", a.removed),
    );
    row(&mut md, "no phantom", phantoms == 0, format!("{phantoms} containers nobody asked for"));
    row(
        &mut md,
        "ambiguous operations resolved",
        true,
        format!("{} unsure containers exist, {} do not", a.unsure_exist, a.unsure_absent),
    );
    row(
        &mut md,
        "containers keep running",
        f.restart_violations.is_empty(),
        format!("{} restarted by a manager fault", f.restart_violations.len()),
    );
    let failed = f.ops.iter().filter(|o| matches!(o.outcome, Outcome::Ambiguous(_))).count();
    row(
        &mut md,
        "clients that never retry saw no failure",
        f.error_violations.is_empty(),
        format!(
            "{failed} failed requests; {} kinds of failure outside an engine's or every manager's outage",
            f.error_violations.len()
        ),
    );
    row(
        &mut md,
        "convergence",
        f.convergence.is_ok(),
        match &f.convergence {
            Ok(s) => format!("every manager's `ps -a` and `info` agreed with the engines {} after healing", ms(*s)),
            Err(e) => e.clone(),
        },
    );
    let doubles = double_primaries(&f.roles);
    let _ = writeln!(md, "\nRole samples: {} answers; {doubles} 100 ms slots in which two managers answered `primary` (answers are not simultaneous: the term check above is the proof).\n", f.roles.len());
    if !violations.is_empty() {
        let _ = writeln!(md, "### Violations\n");
        for v in &violations {
            let _ = writeln!(md, "- {v}");
        }
        md.push('\n');
    }

    let _ = writeln!(md, "## Faults\n\nUnavailability: from the first request that failed after the fault to the first success sent after it. Errors: requests that failed, sent from the fault until the next one. Longest wait: per fault, the slowest request in flight while it lasted (to 1 s after it healed; a request to a frozen manager waits for it), then its p50 / p99 / max over the faults of the class; added: the same less what a request of its kind takes at the median of the run (a `docker run` takes a few hundred milliseconds by itself). Added at the fault: the same, over only the requests in flight when the fault struck or sent in the second after it: what the fault itself cost them, apart from the struck manager's restart when it heals.\n");
    let _ = writeln!(md, "| class | count | errors | unavailability p50 / p99 / max | failover p50 / p99 | longest wait p50 / p99 / max | added wait p50 / p99 / max | added at the fault p50 / p99 / max |\n| --- | --- | --- | --- | --- | --- | --- | --- |");
    #[derive(Default)]
    struct Class {
        unavailable: Vec<f64>,
        failover: Vec<f64>,
        longest: Vec<f64>,
        added: Vec<f64>,
        added_at_fault: Vec<f64>,
        errors: usize,
    }
    let mut by_kind: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for o in f.ops.iter().filter(|o| o.outcome.is_ok()) {
        by_kind.entry(o.kind.name()).or_default().push(o.returned - o.sent);
    }
    let typical: BTreeMap<&str, f64> = by_kind.into_iter().map(|(k, v)| (k, percentile(&v, 50.0))).collect();
    let mut classes: BTreeMap<Fault, Class> = BTreeMap::new();
    for (k, s) in f.struck.iter().enumerate() {
        let until = f.struck.get(k + 1).map_or(f.ended, |n| n.began);
        let e = classes.entry(s.fault).or_default();
        e.unavailable.push(unavailability(&f.ops, s.began, until));
        let in_flight = || f.ops.iter().filter(|o| o.returned >= s.began && o.sent <= s.healed + 1.0);
        e.longest.push(in_flight().map(|o| o.returned - o.sent).fold(0.0, f64::max));
        let added = |o: &Op| o.returned - o.sent - typical.get(o.kind.name()).copied().unwrap_or(0.0);
        e.added.push(in_flight().map(added).fold(0.0, f64::max));
        let at_fault = f.ops.iter().filter(|o| o.returned >= s.began && o.sent <= s.began + 1.0);
        e.added_at_fault.push(at_fault.map(added).fold(0.0, f64::max));
        e.errors += f
            .ops
            .iter()
            .filter(|o| o.sent >= s.began && o.sent < until && matches!(o.outcome, Outcome::Ambiguous(_)))
            .count();
        if s.fault.strikes_leader() {
            if let Some(t) = failover(&f.roles, s, until) {
                e.failover.push(t);
            }
        }
    }
    let spread = |v: &[f64]| {
        format!(
            "{} / {} / {}",
            ms(percentile(v, 50.0)),
            ms(percentile(v, 99.0)),
            ms(v.iter().copied().fold(0.0, f64::max))
        )
    };
    for (fault, c) in &classes {
        let fo = if c.failover.is_empty() {
            "-".to_string()
        } else {
            format!("{} / {}", ms(percentile(&c.failover, 50.0)), ms(percentile(&c.failover, 99.0)))
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {fo} | {} | {} | {} |",
            fault.name(),
            c.unavailable.len(),
            c.errors,
            spread(&c.unavailable),
            spread(&c.longest),
            spread(&c.added),
            spread(&c.added_at_fault)
        );
    }
    if f.skipped > 0 {
        let _ = writeln!(md, "\n{} faults were not struck: no manager claimed to lead within 20 s.", f.skipped);
    }

    let during = |o: &Op| f.struck.iter().any(|s| o.sent >= s.began && o.sent <= s.healed + 5.0);
    let lat = |pred: &dyn Fn(&Op) -> bool| -> Vec<f64> {
        f.ops.iter().filter(|o| o.outcome.is_ok() && pred(o)).map(|o| o.returned - o.sent).collect()
    };
    let (in_fault, calm) = (lat(&during), lat(&|o| !during(o)));
    let ok = f.ops.iter().filter(|o| o.outcome.is_ok()).count();
    let ambiguous = f.ops.iter().filter(|o| matches!(o.outcome, Outcome::Ambiguous(_))).count();
    let reschedulable: std::collections::BTreeSet<&str> =
        f.ops.iter().filter(|o| o.reschedule).map(|o| o.name.as_str()).collect();
    let _ = writeln!(md, "\n## Clients\n\n| | operations | p50 | p99 |\n| --- | --- | --- | --- |");
    let _ = writeln!(
        md,
        "| during faults (to 5 s after healing) | {} | {} | {} |",
        in_fault.len(),
        ms(percentile(&in_fault, 50.0)),
        ms(percentile(&in_fault, 99.0))
    );
    let _ =
        writeln!(md, "| calm | {} | {} | {} |", calm.len(), ms(percentile(&calm, 50.0)), ms(percentile(&calm, 99.0)));
    let _ = writeln!(md, "\n{} operations: {ok} ok, {} definite refusals, {ambiguous} failed or timed out (ambiguous); {} containers asked for `reschedule:on-node-failure`.", f.ops.len(), f.ops.len() - ok - ambiguous, reschedulable.len());

    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for o in &f.ops {
        if let Outcome::Ambiguous(e) = &o.outcome {
            *errors.entry(error_class(e)).or_default() += 1;
        }
    }
    if !errors.is_empty() {
        let _ = writeln!(
            md,
            "\nWhat clients saw when a request failed (IDs and addresses elided):\n\n| error | count |\n| --- | --- |"
        );
        let mut by_count: Vec<_> = errors.into_iter().collect();
        by_count.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        for (e, n) in by_count {
            let _ = writeln!(md, "| {} | {n} |", e.replace('|', "/"));
        }
    }

    let _ = writeln!(md, "\n## Timeline\n\n![timeline](timeline.png)\n\n| # | fault | victim | struck at | healed at |\n| --- | --- | --- | --- | --- |");
    for (k, s) in f.struck.iter().enumerate() {
        let _ =
            writeln!(md, "| {} | {} | {} | {:.1} s | {:.1} s |", k + 1, s.fault.name(), s.victim, s.began, s.healed);
    }
    std::fs::write(dir.join("report.md"), &md).expect("report.md");
    let mut tsv = String::from("client\top\tname\tsent\treturned\toutcome\n");
    for o in &f.ops {
        let outcome = match &o.outcome {
            Outcome::Ok => "ok".to_string(),
            Outcome::Definite(e) => format!("refused: {}", e.replace(['\n', '\t'], " ")),
            Outcome::Ambiguous(e) => format!("ambiguous: {}", e.replace(['\n', '\t'], " ")),
        };
        let _ =
            writeln!(tsv, "{}\t{}\t{}\t{:.3}\t{:.3}\t{outcome}", o.client, o.kind.name(), o.name, o.sent, o.returned);
    }
    std::fs::write(dir.join("history.tsv"), tsv).expect("history.tsv");
    plot(dir, f);
    md
}

/// The timeline: each manager's answers (red primary, blue replica, grey none), the faults,
/// and the clients' failed requests.
fn plot(dir: &Path, f: &Findings) {
    let row_of = |m: &str| f.managers.iter().position(|x| x == m).map_or(0, |p| p + 1);
    let mut roles = String::new();
    for r in &f.roles {
        let colour = match r.role.as_str() {
            "primary" => 0xd62728,
            "replica" => 0x1f77b4,
            _ => 0x999999,
        };
        let _ = writeln!(roles, "{:.3} {} {colour}", r.sent, row_of(&r.manager));
    }
    // One colour per fault class, named in the key; labels on the bars only when few.
    const PALETTE: [u32; 8] = [0xff7f0e, 0x2ca02c, 0x9467bd, 0x8c564b, 0xe377c2, 0x17becf, 0xbcbd22, 0x7f7f7f];
    let classes: Vec<Fault> =
        f.struck.iter().map(|s| s.fault).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let colour_of = |fault: Fault| PALETTE[classes.iter().position(|c| *c == fault).unwrap_or(0) % PALETTE.len()];
    let mut faults = String::new();
    for s in &f.struck {
        let _ = writeln!(
            faults,
            "{:.3} {:.3} {} \"{}\"",
            s.began,
            s.healed.max(s.began + 0.2),
            colour_of(s.fault),
            s.fault.name()
        );
    }
    let mut errors = String::new();
    for o in f.ops.iter().filter(|o| matches!(o.outcome, Outcome::Ambiguous(_))) {
        let _ = writeln!(errors, "{:.3} {:.3}", o.sent, o.returned);
    }
    // gnuplot refuses empty data files.
    for (name, text) in [("roles.dat", roles), ("faults.dat", faults), ("errors.dat", errors)] {
        std::fs::write(dir.join(name), if text.is_empty() { "-1 -1 0 \"\"\n".to_string() } else { text })
            .expect("data");
    }
    let mut key = String::new();
    for c in &classes {
        let _ = write!(
            key,
            ", \\\n NaN with lines lw 8 lc rgb '#{:06x}' title '{}'",
            colour_of(*c),
            c.name().replace('\'', "")
        );
    }
    let labels = if f.struck.len() <= 20 {
        format!(", \\\n 'faults.dat' using 1:({}.35):4 with labels left font ',8' notitle", f.managers.len() + 1)
    } else {
        String::new()
    };
    let n = f.managers.len();
    let mut ytics: Vec<String> = f.managers.iter().enumerate().map(|(i, m)| format!("\"{m}\" {}", i + 1)).collect();
    ytics.push(format!("\"faults\" {}", n + 1));
    ytics.push(format!("\"client errors\" {}", n + 2));
    let script = format!(
        "set terminal png size 1600,560\nset output 'timeline.png'\nset title \"{} mode, seed {}: manager answers (red primary, blue replica, grey none), faults, failed client requests\"\n\
         set xlabel 'seconds since start'\nset xrange [0:{:.0}]\nset yrange [0.5:{}.8]\nset ytics ({})\nset grid xtics\nset key outside below horizontal\n\
         plot 'roles.dat' using 1:2:3 with points pt 5 ps 0.6 lc rgb variable notitle, \\\n\
         'faults.dat' using 1:({}):($2-$1):(0):3 with vectors nohead lw 10 lc rgb variable notitle, \\\n\
         'errors.dat' using 1:({}):($2-$1):(0) with vectors nohead lw 3 lc rgb 'red' notitle{labels}{key}\n",
        f.mode.name(),
        f.seed,
        f.ended + 5.0,
        n + 2,
        ytics.join(", "),
        n + 1,
        n + 2
    );
    std::fs::write(dir.join("timeline.gp"), script).expect("gnuplot script");
    let gnuplot = crate::support::require("gnuplot", "gnuplot-nox");
    let o = Command::new(gnuplot).arg("timeline.gp").current_dir(dir).output().expect("run gnuplot");
    assert!(o.status.success(), "gnuplot failed: {}", String::from_utf8_lossy(&o.stderr));
}

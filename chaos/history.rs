//! What clients did and saw: every operation with when it was sent, when it returned and what
//! it returned. The checker trusts these and the engines, never the managers.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The clock every record is read on: seconds since the campaign began.
#[derive(Clone, Copy)]
pub struct Clock(pub Instant);

impl Clock {
    /// Seconds since the start.
    pub fn now(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

/// What an operation was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `docker run -d`.
    Run,
    /// `docker create`.
    Create,
    /// `docker start`.
    Start,
    /// `docker stop`.
    Stop,
    /// `docker rm -f`.
    Remove,
    /// `docker inspect`.
    Inspect,
    /// `docker ps -a`.
    Ps,
    /// `docker exec`.
    Exec,
}

impl Kind {
    /// Whether it changes a container.
    pub fn mutates(self) -> bool {
        matches!(self, Kind::Run | Kind::Create | Kind::Start | Kind::Stop | Kind::Remove)
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Run => "run",
            Kind::Create => "create",
            Kind::Start => "start",
            Kind::Stop => "stop",
            Kind::Remove => "rm",
            Kind::Inspect => "inspect",
            Kind::Ps => "ps",
            Kind::Exec => "exec",
        }
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0.
    Ok,
    /// A refusal whose meaning is certain (the named container exists, or does not).
    Definite(String),
    /// Anything else: the change may or may not have happened.
    Ambiguous(String),
}

impl Outcome {
    /// Whether the client saw success.
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok)
    }
}

/// One operation.
#[derive(Debug, Clone)]
pub struct Op {
    /// Which client.
    pub client: usize,
    /// What.
    pub kind: Kind,
    /// On which container (empty for `ps`).
    pub name: String,
    /// Whether the container asked to be rescheduled.
    pub reschedule: bool,
    /// When it was sent.
    pub sent: f64,
    /// When it returned.
    pub returned: f64,
    /// What it returned.
    pub outcome: Outcome,
}

/// Every client's operations, appended as they return.
pub type History = Arc<Mutex<Vec<Op>>>;

/// Refusals whose meaning is certain: the name is taken, or nothing has it (`docker inspect`
/// says "No such object").
fn definite(stderr: &str) -> bool {
    stderr.contains("is already in use") || stderr.contains("No such container") || stderr.contains("No such object")
}

/// Runs the docker CLI against `host` with a bound; classifies the outcome.
pub fn docker(host: &str, args: &[&str], bound: Duration) -> (Outcome, String) {
    let mut cmd = crate::support::docker_cmd(host);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    run_bounded(cmd, bound)
}

fn run_bounded(mut cmd: Command, bound: Duration) -> (Outcome, String) {
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (Outcome::Ambiguous(format!("cannot run the docker CLI: {e}")), String::new()),
    };
    let deadline = Instant::now() + bound;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return (Outcome::Ambiguous(format!("timed out after {bound:?}")), String::new());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return (Outcome::Ambiguous(e.to_string()), String::new()),
        }
    }
    let out = child.wait_with_output().expect("reaped above");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    );
    if out.status.success() {
        (Outcome::Ok, stdout)
    } else if definite(&stderr) {
        (Outcome::Definite(stderr), stdout)
    } else if stderr.is_empty() {
        // The CLI says nothing when, say, it loses the daemon before reading an exec's exit code.
        (Outcome::Ambiguous(format!("{} and no message", out.status)), stdout)
    } else {
        (Outcome::Ambiguous(stderr), stdout)
    }
}

/// The `p`-th percentile (0-100) of `values`, in their unit; 0 for none.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (v.len() as f64)).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// An error message with what varies between occurrences (hex IDs, addresses, ports) elided.
pub fn error_class(e: &str) -> String {
    let mut out = String::new();
    for word in e.lines().next().unwrap_or_default().split_whitespace() {
        let digits = word.chars().filter(char::is_ascii_digit).count();
        let hexish = word.len() >= 12 && word.chars().all(|c| c.is_ascii_hexdigit() || "\"/:.,".contains(c));
        let client_name = word.strip_prefix('c').and_then(|w| w.split_once('-')).is_some_and(|(a, b)| {
            !a.is_empty()
                && a.chars().all(|c| c.is_ascii_digit())
                && !b.is_empty()
                && b.trim_end_matches(':').chars().all(|c| c.is_ascii_digit())
        });
        out.push_str(if hexish || client_name || digits >= 4 { "…" } else { word });
        out.push(' ');
    }
    out.chars().take(140).collect::<String>().trim().to_string()
}

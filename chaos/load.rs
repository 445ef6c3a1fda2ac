//! The load: concurrent clients through HAProxy, each with a seeded mix of `run -d`,
//! `create`+`start`, `stop`, `rm -f`, `inspect`, `ps -a` and `exec` on its own containers,
//! a share of them with `reschedule:on-node-failure`. Clients run the docker CLI as users do
//! and never retry: a command that fails is a failure. Each records its history.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::history::{docker, Clock, History, Kind, Op, Outcome};

/// Containers one client keeps at most: engines on a two-core machine stay responsive.
const MAX_OWNED: usize = 6;
/// How long one CLI call may take before it counts as a timeout (ambiguous).
const CALL_BOUND: Duration = Duration::from_secs(20);
/// What each container runs: a process that stops at once on SIGTERM, as a well-behaved
/// service does, so that `docker stop` takes no grace period and every wait measured is the
/// cluster's.
const COMMAND: [&str; 3] = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"];

/// What a client believes about one of its containers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Believed {
    Running,
    Stopped,
    /// A change to it went unanswered.
    Unsure,
}

struct Owned {
    name: String,
    reschedule: bool,
    state: Believed,
}

/// One client.
pub struct Client {
    id: usize,
    host: String,
    rng: StdRng,
    owned: Vec<Owned>,
    next: usize,
    clock: Clock,
    history: History,
}

impl Client {
    /// Client `id` of the campaign seeded `seed`, talking to `host`.
    pub fn new(id: usize, seed: u64, host: String, clock: Clock, history: History) -> Client {
        let rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(id as u64));
        Client { id, host, rng, owned: Vec::new(), next: 0, clock, history }
    }

    /// Works until `stop`.
    pub fn run(mut self, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Relaxed) {
            self.step();
            let pause = self.rng.random_range(50..250);
            std::thread::sleep(Duration::from_millis(pause));
        }
    }

    fn call(&mut self, kind: Kind, name: &str, reschedule: bool, args: &[&str]) -> Outcome {
        let sent = self.clock.now();
        let (outcome, _) = docker(&self.host, args, CALL_BOUND);
        let returned = self.clock.now();
        let op =
            Op { client: self.id, kind, name: name.to_string(), reschedule, sent, returned, outcome: outcome.clone() };
        self.history.lock().unwrap().push(op);
        outcome
    }

    fn step(&mut self) {
        let roll: u32 = self.rng.random_range(0..100);
        if self.owned.is_empty() || (roll < 35 && self.owned.len() < MAX_OWNED) {
            return self.create(true);
        }
        if roll < 50 && self.owned.len() < MAX_OWNED {
            return self.create(false);
        }
        let k = self.rng.random_range(0..self.owned.len());
        match roll {
            _ if self.owned.len() >= MAX_OWNED && roll < 50 => self.remove(k),
            50..60 => self.stop(k),
            60..72 => self.remove(k),
            72..82 => {
                let name = self.owned[k].name.clone();
                self.call(Kind::Inspect, &name, false, &["inspect", "--format", "{{.State.Status}}", &name]);
            }
            82..91 => {
                self.call(Kind::Ps, "", false, &["ps", "-a", "--format", "{{.Names}}"]);
            }
            _ => {
                if self.owned[k].state == Believed::Running {
                    let name = self.owned[k].name.clone();
                    self.call(Kind::Exec, &name, false, &["exec", &name, "true"]);
                }
            }
        }
    }

    /// `run -d`, or `create` then `start`, of a new container, once each.
    fn create(&mut self, run: bool) {
        let name = format!("c{}-{}", self.id, self.next);
        self.next += 1;
        let reschedule = self.rng.random_range(0..3) == 0;
        let mut args: Vec<&str> = vec![if run { "run" } else { "create" }];
        if run {
            args.push("-d");
        }
        // Explicit: dockerd started with --bridge=none leaks a sandbox per default-network
        // container and removes them one by one at its next start (moby/moby#46583).
        args.extend(["--name", name.as_str(), "--network", "none"]);
        if reschedule {
            args.extend(["-e", "reschedule:on-node-failure"]);
        }
        args.push("busybox");
        args.extend(COMMAND);
        let kind = if run { Kind::Run } else { Kind::Create };
        if !self.call(kind, &name, reschedule, &args).is_ok() {
            // Left to the checker: it may exist or not, at most once.
            return;
        }
        let mut state = Believed::Running;
        if !run {
            state = if self.call(Kind::Start, &name, reschedule, &["start", &name]).is_ok() {
                Believed::Running
            } else {
                Believed::Unsure
            };
        }
        self.owned.push(Owned { name, reschedule, state });
    }

    fn stop(&mut self, k: usize) {
        let (name, reschedule) = (self.owned[k].name.clone(), self.owned[k].reschedule);
        self.owned[k].state = if self.call(Kind::Stop, &name, reschedule, &["stop", "-t", "1", &name]).is_ok() {
            Believed::Stopped
        } else {
            Believed::Unsure
        };
    }

    fn remove(&mut self, k: usize) {
        let (name, reschedule) = (self.owned[k].name.clone(), self.owned[k].reschedule);
        match self.call(Kind::Remove, &name, reschedule, &["rm", "-f", &name]) {
            Outcome::Ok | Outcome::Definite(_) => {
                self.owned.remove(k);
            }
            Outcome::Ambiguous(_) => self.owned[k].state = Believed::Unsure,
        }
    }
}

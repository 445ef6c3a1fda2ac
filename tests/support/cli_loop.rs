//! Clients as users run them: the docker CLI, one command after another, never retried. Each
//! client records what every command returned and how long it took.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::docker_cmd;

/// One command as a client ran it.
#[derive(Debug, Clone)]
pub struct Ran {
    /// Which client.
    pub client: usize,
    /// The command's arguments.
    pub args: Vec<String>,
    /// Exit status 0.
    pub ok: bool,
    /// What it printed to stderr.
    pub stderr: String,
    /// When it started, from the loop's start.
    pub at: Duration,
    /// How long it took.
    pub took: Duration,
}

/// Clients running docker commands in a loop until stopped.
pub struct CliLoop {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Vec<Ran>>>,
    /// When the loop started.
    pub started: Instant,
}

impl CliLoop {
    /// Starts `clients` clients against `host`; client `c` runs `command(c, i)` for its `i`-th
    /// command, then pauses `pause`.
    pub fn start(
        host: &str,
        clients: usize,
        pause: Duration,
        command: impl Fn(usize, usize) -> Vec<String> + Send + Sync + 'static,
    ) -> CliLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let command = Arc::new(command);
        let started = Instant::now();
        let clients = (0..clients)
            .map(|c| {
                let (stop, command, host) = (stop.clone(), command.clone(), host.to_string());
                std::thread::spawn(move || {
                    let mut ran = Vec::new();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let args = command(c, i);
                        let at = started.elapsed();
                        let t = Instant::now();
                        let out =
                            docker_cmd(&host).args(&args).stdin(Stdio::null()).output().expect("run the docker CLI");
                        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
                        ran.push(Ran { client: c, args, ok: out.status.success(), stderr, at, took: t.elapsed() });
                        i += 1;
                        std::thread::sleep(pause);
                    }
                    ran
                })
            })
            .collect();
        CliLoop { stop, clients, started }
    }

    /// Stops every client after its current command; returns every command run, in order.
    pub fn stop(self) -> Vec<Ran> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all: Vec<Ran> = self.clients.into_iter().flat_map(|c| c.join().expect("a client panicked")).collect();
        all.sort_by_key(|r| r.at);
        all
    }
}

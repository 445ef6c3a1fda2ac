//! SIMULATED engines (`hollow-engine`) for scale tests and benchmarks: several processes, each
//! serving up to [`ENGINES_PER_PROCESS`] engines on loopback.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::terminate;

/// Engines per hollow process: each takes a listener plus the manager's connections, and a
/// process here may hold about 20,000 open files.
pub const ENGINES_PER_PROCESS: usize = 2000;

/// Hollow-engine processes and the addresses of their engines.
pub struct Hollow {
    children: Vec<Child>,
    /// `127.0.0.1:PORT` of every engine.
    pub addrs: Vec<String>,
}

impl Hollow {
    /// Starts `engines` engines with `containers` running containers each.
    pub fn start(engines: usize, containers: usize) -> Hollow {
        let mut h = Hollow { children: Vec::new(), addrs: Vec::new() };
        for (p, first) in (0..engines).step_by(ENGINES_PER_PROCESS).enumerate() {
            let n = ENGINES_PER_PROCESS.min(engines - first);
            let mut child = Command::new(env!("CARGO_BIN_EXE_hollow-engine"))
                .args([
                    "--engines",
                    &n.to_string(),
                    "--containers",
                    &containers.to_string(),
                    "--name-prefix",
                    &format!("hollow{p}"),
                ])
                .stdout(Stdio::piped())
                .spawn()
                .expect("start hollow-engine");
            let out = BufReader::new(child.stdout.take().expect("stdout"));
            h.children.push(child);
            for line in out.lines() {
                let line = line.expect("hollow-engine output");
                if line == "ready" {
                    break;
                }
                h.addrs.push(line);
            }
        }
        assert_eq!(h.addrs.len(), engines, "hollow engines started");
        h
    }
}

impl Drop for Hollow {
    fn drop(&mut self) {
        for c in &mut self.children {
            terminate(c.id(), Duration::from_secs(5));
            let _ = c.wait();
        }
    }
}

//! Latency through swarm versus directly against the engine, in one run, on real dockerd
//! engines: the docker CLI (`run`, `inspect`, `ps`) and raw keep-alive HTTP (`inspect`, `ps`).
//! Prints p50/p99 of each and the ratio swarm/direct. Iterations alternate between the two
//! targets so that drift on the machine affects both alike.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

struct KeepAlive {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl KeepAlive {
    fn connect(addr: &str) -> KeepAlive {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).unwrap();
        KeepAlive { reader: BufReader::new(s.try_clone().unwrap()), writer: s }
    }

    /// One GET; reads a Content-Length or chunked body.
    fn get(&mut self, path: &str) -> usize {
        write!(self.writer, "GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").unwrap();
        let mut line = String::new();
        let (mut length, mut chunked) = (0usize, false);
        self.reader.read_line(&mut line).unwrap();
        assert!(line.contains(" 200 "), "{line}");
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            let l = line.trim_end().to_ascii_lowercase();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.strip_prefix("content-length: ") {
                length = v.parse().unwrap();
            }
            if l == "transfer-encoding: chunked" {
                chunked = true;
            }
        }
        if !chunked {
            let mut body = vec![0; length];
            self.reader.read_exact(&mut body).unwrap();
            return length;
        }
        let mut total = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            let size = usize::from_str_radix(line.trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk).unwrap();
            total += size;
            if size == 0 {
                return total;
            }
        }
    }
}

fn pct(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)]
}

fn report(what: &str, direct: &mut [Duration], swarm: &mut [Duration], unit_us: bool) {
    let (d50, d99, s50, s99) = (pct(direct, 0.5), pct(direct, 0.99), pct(swarm, 0.5), pct(swarm, 0.99));
    let f = |d: Duration| {
        if unit_us {
            format!("{:>8.0} us", d.as_secs_f64() * 1e6)
        } else {
            format!("{:>7.1} ms", d.as_secs_f64() * 1e3)
        }
    };
    println!(
        "{what:<34} direct p50 {} p99 {} | swarm p50 {} p99 {} | ratio p50 {:.2} p99 {:.2} | added p50 {:+.0} us",
        f(d50),
        f(d99),
        f(s50),
        f(s99),
        s50.as_secs_f64() / d50.as_secs_f64(),
        s99.as_secs_f64() / d99.as_secs_f64(),
        (s50.as_secs_f64() - d50.as_secs_f64()) * 1e6
    );
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn main() {
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(2);
    let direct = es[0].host();
    let swarm = m.host();
    // Same work on both sides: a container on node-1, seen directly and through swarm.
    for i in 0..20 {
        docker_ok(&direct, &["run", "-d", "--name", &format!("seed{i}"), "busybox", "sleep", "600"]);
    }
    wait_until(Duration::from_secs(10), "swarm sees the seeded containers", || {
        m.docker(&["ps", "-q"]).lines().count() == 20
    });
    let id = docker_ok(&direct, &["inspect", "-f", "{{.Id}}", "seed0"]);

    let cli_rounds = 60;
    let (mut d, mut s) = (Vec::new(), Vec::new());
    for i in 0..cli_rounds {
        d.push(timed(|| {
            docker_ok(&direct, &["run", "-d", "--name", &format!("d{i}"), "busybox", "true"]);
        }));
        s.push(timed(|| {
            docker_ok(&swarm, &["run", "-d", "--name", &format!("s{i}"), "busybox", "true"]);
        }));
    }
    report("docker run -d (CLI)", &mut d, &mut s, false);
    let (mut d, mut s) = (Vec::new(), Vec::new());
    for _ in 0..cli_rounds {
        d.push(timed(|| {
            docker_ok(&direct, &["inspect", "seed0"]);
        }));
        s.push(timed(|| {
            docker_ok(&swarm, &["inspect", "seed0"]);
        }));
    }
    report("docker inspect (CLI)", &mut d, &mut s, false);
    let (mut d, mut s) = (Vec::new(), Vec::new());
    for _ in 0..cli_rounds {
        d.push(timed(|| {
            docker_ok(&direct, &["ps", "-a"]);
        }));
        s.push(timed(|| {
            docker_ok(&swarm, &["ps", "-a"]);
        }));
    }
    report("docker ps -a (CLI)", &mut d, &mut s, false);

    let mut kd = KeepAlive::connect(&es[0].addr);
    let mut ks = KeepAlive::connect(&m.addr);
    for (what, path) in [
        ("GET /containers/{id}/json (HTTP)", format!("/v1.41/containers/{id}/json")),
        ("GET /containers/json?all=1 (HTTP)", "/v1.41/containers/json?all=1".to_string()),
        ("GET /_ping (HTTP)", "/_ping".to_string()),
    ] {
        let (mut d, mut s) = (Vec::new(), Vec::new());
        for _ in 0..100 {
            kd.get(&path);
            ks.get(&path);
        }
        for _ in 0..2000 {
            d.push(timed(|| {
                kd.get(&path);
            }));
            s.push(timed(|| {
                ks.get(&path);
            }));
        }
        report(what, &mut d, &mut s, true);
    }
}

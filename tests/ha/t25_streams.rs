//! Streams opened through a follower need no leader: `docker events` and `docker logs -f` keep
//! running when the leader dies, and `docker exec` and `attach` sessions are served from the
//! container's engine.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;

/// A docker command left running, its output lines gathered as they come.
struct Streaming {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Streaming {
    fn start(host: &str, args: &[&str]) -> Streaming {
        let mut child = docker_cmd(host)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start docker");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (out, seen) = (child.stdout.take().expect("stdout"), lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                seen.lock().unwrap().push(line);
            }
        });
        Streaming { child, lines }
    }

    fn count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    fn saw(&self, needle: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    /// Still running: the stream did not end.
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn events_and_logs_opened_through_a_follower_outlive_the_leader_s_death() {
    let JoinedGroup { engines: _es, mut g, joins: _joins } = JoinedGroup::start(&["node-1", "node-2"]);
    let leader = g.wait_one_primary(Duration::from_secs(10));
    let follower = g.other(leader);
    let host = g.m(follower).host();
    docker_ok(
        &host,
        &[
            "run",
            "-d",
            "--name",
            "ticker",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
        ],
    );
    // The follower serves a container's stream once its own cache knows the container.
    wait_until(Duration::from_secs(10), "the follower's cache knows the container", || {
        http(&g.addr(follower), "GET", "/_swarm/ready", None).0 == 200
            && docker_cmd(&host).args(["inspect", "ticker"]).output().is_ok_and(|o| o.status.success())
    });
    let mut logs = Streaming::start(&host, &["logs", "-f", "ticker"]);
    let mut events = Streaming::start(
        &host,
        &["events", "--filter", "type=container", "--format", "{{.Action}} {{.Actor.Attributes.name}}"],
    );
    wait_until(Duration::from_secs(10), "the log stream flows", || logs.count() >= 3);
    std::thread::sleep(Duration::from_millis(500));
    g.kill(leader);
    let killed = Instant::now();
    let before = logs.count();
    g.wait_one_primary(Duration::from_secs(10));
    wait_until(Duration::from_secs(10), "log lines written after the leader's death", || logs.count() >= before + 10);
    docker_ok(&host, &["run", "-d", "--name", "after", "--network", "none", "busybox", "true"]);
    wait_until(Duration::from_secs(10), "the event stream shows a container created after the leader's death", || {
        events.saw("create after")
    });
    assert!(logs.alive(), "docker logs -f ended");
    assert!(events.alive(), "docker events ended");
    eprintln!("both streams ran on for {:?} after the leader's SIGKILL", killed.elapsed());
}

#[test]
fn an_exec_session_through_the_load_balancer_outlives_the_leader_s_death() {
    use std::io::Write;
    let group = JoinedGroup::start(&["node-1"]);
    let lb = group.load_balancer();
    let JoinedGroup { engines: _es, mut g, joins: _joins } = group;
    let leader = g.wait_one_primary(Duration::from_secs(10));
    let host = format!("tcp://{}", lb.addr);
    docker_ok(&host, &["run", "-d", "--name", "shell", "--network", "none", "busybox", "sleep", "300"]);
    // HAProxy has seen which managers follow (its session check runs every 500 ms).
    std::thread::sleep(Duration::from_secs(2));
    let mut session = docker_cmd(&host)
        .args(["exec", "-i", "shell", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker exec");
    let mut stdin = session.stdin.take().expect("stdin");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (out, seen) = (session.stdout.take().expect("stdout"), lines.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            seen.lock().unwrap().push(line);
        }
    });
    writeln!(stdin, "before").unwrap();
    wait_until(Duration::from_secs(10), "the session echoes", || lines.lock().unwrap().iter().any(|l| l == "before"));
    g.kill(leader);
    g.wait_one_primary(Duration::from_secs(10));
    writeln!(stdin, "after").unwrap();
    wait_until(Duration::from_secs(10), "the session still echoes after the leader's death", || {
        lines.lock().unwrap().iter().any(|l| l == "after")
    });
    drop(stdin);
    let status = session.wait().expect("wait");
    assert!(status.success(), "the session ended with {status}");
    assert!(lb.log().contains("managers_tcp/"), "sessions go through the load balancer's TCP backend");
}

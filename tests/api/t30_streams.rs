use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use crate::support::*;

#[test]
fn exit_codes_stdin_and_logs_follow_pass_through() {
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(2);
    let o = run(docker_cmd(&m.host()).args(["run", "--rm", "busybox", "sh", "-c", "echo out; exit 3"]));
    assert_eq!((o.status.code(), stdout(&o).trim()), (Some(3), "out"));

    // stdin piped through a hijacked connection that the CLI half-closes.
    let mut child = docker_cmd(&m.host())
        .args(["run", "--rm", "-i", "busybox", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"piped-input\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "piped-input\n");

    m.docker(&["run", "-d", "--name", "ex", "busybox", "sleep", "300"]);
    assert_eq!(m.docker(&["exec", "ex", "echo", "exec-out"]), "exec-out");
    let o = run(docker_cmd(&m.host()).args(["exec", "ex", "sh", "-c", "exit 4"]));
    assert_eq!(o.status.code(), Some(4));

    m.docker(&[
        "run",
        "-d",
        "--name",
        "talker",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; sleep 0.2; done; sleep 1",
    ]);
    let o = run(docker_cmd(&m.host()).args(["logs", "-f", "talker"]));
    assert_eq!(stdout(&o), "line1\nline2\nline3\n");
    let wait = run(docker_cmd(&m.host()).args(["wait", "talker"]));
    assert_eq!(stdout(&wait).trim(), "0");
}

#[test]
fn interactive_tty_sessions_work_through_the_manager() {
    let es = engines(&[("node-1", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(1);
    m.docker(&["run", "-d", "--name", "ex", "busybox", "sleep", "300"]);
    let tty = Tty::open(&m.host(), "it");
    interactive_session(&tty, "ex");
    m.docker(&["run", "-dit", "--name", "att", "busybox", "sh"]);
    attach_session(&tty, "att");
}

#[test]
fn attach_follows_a_running_container() {
    let es = engines(&[("node-1", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(1);
    m.docker(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "sleep 1; for i in 1 2 3; do echo tick$i; sleep 0.3; done",
    ]);
    let o = run(docker_cmd(&m.host()).args(["attach", "--no-stdin", "ticker"]));
    assert!(stdout(&o).contains("tick3"), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn events_merge_engines_and_name_the_node() {
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(2);
    let mut events = docker_cmd(&m.host())
        .args([
            "events",
            "--filter",
            "event=start",
            "--format",
            "{{.Actor.Attributes.name}} {{index .Actor.Attributes \"node.name\"}}",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    m.docker(&["run", "-d", "--name", "ev1", "busybox", "sleep", "300"]);
    m.docker(&["run", "-d", "--name", "ev2", "busybox", "sleep", "300"]);
    let mut seen = lines_within(events.stdout.take().unwrap(), 2, Duration::from_secs(20));
    let _ = events.kill();
    let _ = events.wait();
    seen.sort();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].starts_with("ev1 node-") && seen[1].starts_with("ev2 node-"), "{seen:?}");
    assert_ne!(seen[0].split(' ').nth(1), seen[1].split(' ').nth(1), "spread should use both nodes: {seen:?}");
}

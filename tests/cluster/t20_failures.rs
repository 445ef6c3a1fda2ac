use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn a_hung_engine_turns_unhealthy_and_calls_to_it_fail_clearly() {
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(2);
    m.docker(&[
        "run",
        "-d",
        "--name",
        "h1",
        "--label",
        "pin=1",
        "-e",
        "constraint:node==node-1",
        "busybox",
        "sleep",
        "300",
    ]);
    let mut events = docker_cmd(&m.host())
        .args(["events", "--filter", "type=swarm", "--format", "{{.Action}} {{index .Actor.Attributes \"node.name\"}}"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // A call that waits on the engine for as long as the container runs.
    let addr = m.addr.clone();
    let waiting = std::thread::spawn(move || {
        http_within(&addr, "POST", "/v1.41/containers/h1/wait", None, Duration::from_secs(120))
    });
    std::thread::sleep(Duration::from_millis(300));
    es[0].freeze();
    let frozen = Instant::now();
    // A call that reaches the hung engine fails with a Docker-shaped error, not a hang.
    let (status, _, body) = http(&m.addr, "GET", "/v1.41/containers/h1/json", None);
    assert!(status == 504 || status == 500, "status {status}: {}", String::from_utf8_lossy(&body));
    assert!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["message"].is_string());
    wait_until(Duration::from_secs(20), "node-1 is Unhealthy", || {
        m.node_states().iter().any(|(n, s)| n == "node-1" && s == "Unhealthy")
    });
    eprintln!("hung engine Unhealthy after {:?}", frozen.elapsed());
    // The waiting call ends with the engine's health, not with the container (300 s): its
    // headers came before the freeze, its body is cut without an exit status.
    let (_, _, body) = waiting.join().unwrap();
    assert!(frozen.elapsed() < Duration::from_secs(30), "the wait was held {:?}", frozen.elapsed());
    assert!(!String::from_utf8_lossy(&body).contains("StatusCode"), "{}", String::from_utf8_lossy(&body));
    // New work goes to the healthy node.
    m.docker(&["run", "-d", "--name", "h2", "busybox", "sleep", "300"]);
    assert!(m.docker(&["ps", "--format", "{{.Names}}"]).contains("node-2/h2"));
    let err = m.docker_err(&["inspect", "h1"]);
    assert!(err.contains("unhealthy node node-1"), "{err}");

    es[0].thaw();
    wait_until(Duration::from_secs(20), "node-1 is Healthy again", || {
        m.node_states().iter().all(|(_, s)| s == "Healthy")
    });
    let seen = lines_within(events.stdout.take().unwrap(), 2, Duration::from_secs(20));
    let _ = events.kill();
    let _ = events.wait();
    assert_eq!(seen, ["engine_disconnect node-1", "engine_reconnect node-1"]);
    assert_eq!(m.docker(&["inspect", "-f", "{{.State.Running}}", "h1"]), "true");
}

#[test]
fn a_create_on_a_hung_engine_retries_elsewhere_and_leaves_no_copy() {
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let m = Manager::start(
        &nodes_url(&es),
        &["--engine-create-timeout", "2s", "--cluster-opt", "swarm.createretry=1", "--engine-probe-interval", "60s"],
    );
    m.wait_healthy(2);
    // Both nodes are empty: spread breaks the tie by name, so node-1 is chosen first.
    es[0].freeze();
    let started = Instant::now();
    m.docker(&["run", "-d", "--name", "once", "busybox", "sleep", "300"]);
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(m.docker(&["inspect", "-f", "{{.Node.Name}}", "once"]), "node-2");
    // node-1 resumes and may finish the create it was given: the manager removes that copy.
    es[0].thaw();
    wait_until(Duration::from_secs(30), "node-1 holds no copy", || es[0].container_names().is_empty());
    assert_eq!(es[1].container_names(), vec!["once".to_string()]);
}

#[test]
fn a_manager_that_has_not_read_a_down_engine_never_calls_its_containers_gone() {
    let mut es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let mut first = Manager::start(&nodes_url(&es), &[]);
    first.wait_healthy(2);
    first.docker(&["run", "-d", "--name", "kept", "-e", "constraint:node==node-1", "busybox", "sleep", "300"]);
    first.terminate();
    es[0].stop();
    // A manager started while node-1 is down has never read it: "kept" may well be there, so
    // "No such container" (which `rm -f` takes for success) would be a guess.
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(1);
    for args in [["rm", "-f", "kept"], ["container", "inspect", "kept"]] {
        let err = m.docker_err(&args);
        assert!(err.contains("may be there") && err.contains(&es[0].addr), "{args:?}: {err}");
    }
    es[0].restart();
    m.wait_healthy(2);
    m.docker(&["rm", "-f", "kept"]);
    assert!(es[0].container_names().is_empty());
    // Every engine read: a name none holds is gone, and `rm -f` is quiet about it.
    m.docker(&["rm", "-f", "kept"]);
    assert!(m.docker_err(&["container", "inspect", "kept"]).contains("No such container: kept"));
}

/// A manager that has not read an engine yet (it hangs at the manager's start) must not take a
/// name held there for free: a named create waits for that first read, then is refused as the
/// engine would refuse it, instead of making a second container of that name elsewhere.
#[test]
fn a_named_create_waits_until_every_engine_has_been_read() {
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    docker_ok(&es[1].host(), &["create", "--name", "taken", "--network", "none", "busybox", "sleep", "300"]);
    es[1].freeze();
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(1);
    let frozen = es[1].pid().unwrap();
    let thaw = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        signal(frozen, "CONT");
    });
    let err = m.docker_err(&["create", "--name", "taken", "--network", "none", "busybox", "sleep", "300"]);
    thaw.join().unwrap();
    assert!(err.contains("is already in use"), "{err}");
    assert!(es[0].container_names().is_empty(), "a second 'taken' went to node-1");
}

#[test]
fn an_address_another_engine_answers_on_is_failed_not_merged() {
    let es = engines(&[("node-1", &[]), ("node-2", &[]), ("node-3", &[])]);
    // node-1 is reached through an address that node-3 later takes over.
    let address = Forwarder::start(&es[0].addr);
    let m = Manager::start(&format!("nodes://{},{}", address.addr, es[1].addr), &["--engine-failure-retry", "2"]);
    m.wait_healthy(2);
    // Both nodes are empty: spread breaks the tie by name.
    m.docker(&["run", "-d", "--name", "kept", "-e", "reschedule:on-node-failure", "busybox", "sleep", "300"]);
    assert_eq!(m.docker(&["inspect", "-f", "{{.Node.Name}}", "kept"]), "node-1");
    docker_ok(&es[2].host(), &["run", "-d", "--name", "stranger", "busybox", "sleep", "300"]);
    address.switch_to(&es[2].addr);
    wait_until(Duration::from_secs(30), "node-1 is Unhealthy", || {
        m.node_states().iter().any(|(n, s)| n == "node-1" && s == "Unhealthy")
    });
    let info = m.docker(&["info"]);
    assert!(info.contains("shows up with another ID"), "{info}");
    // node-3's containers never pass for node-1's, so nothing takes "kept" for removed; it
    // is rescheduled, as its node failed.
    wait_until(Duration::from_secs(30), "kept runs on node-2", || {
        stdout(&run(docker_cmd(&m.host()).args(["inspect", "-f", "{{.Node.Name}} {{.State.Running}}", "kept"]))).trim()
            == "node-2 true"
    });
    let ps = m.docker(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(!ps.contains("stranger"), "{ps}");
    // The address is node-1's again: it is Healthy, and its stale copy goes.
    address.switch_to(&es[0].addr);
    wait_until(Duration::from_secs(30), "node-1 is Healthy again", || {
        m.node_states().iter().all(|(_, s)| s == "Healthy")
    });
    wait_until(Duration::from_secs(30), "node-1's stale copy is removed", || es[0].container_names().is_empty());
    assert_eq!(es[2].container_names(), vec!["stranger".to_string()]);
}

#[test]
fn cloned_engines_with_one_id_are_refused_not_merged() {
    let original = Engine::start("node-1", &[]);
    let clone = Engine::start_clone("node-2", &original);
    let m = Manager::start(&format!("nodes://{},{}", original.addr, clone.addr), &[]);
    m.wait_healthy(1);
    std::thread::sleep(Duration::from_secs(2));
    let info = m.docker(&["info"]);
    assert!(info.contains("Nodes: 2"), "{info}");
    assert!(info.contains("└ Status: Pending"), "{info}");
    assert!(info.contains("ID duplicated."), "{info}");
    assert!(
        info.contains(&format!("shared by this node {} and another node {}", clone.addr, original.addr))
            || info.contains(&format!("shared by this node {} and another node {}", original.addr, clone.addr)),
        "{info}"
    );
    assert_eq!(m.node_states().iter().filter(|(_, s)| s == "Healthy").count(), 1);
    // A refused node holds nothing of the cluster's: a name no engine holds is simply gone.
    assert!(m.docker_err(&["container", "inspect", "nosuch"]).contains("No such container: nosuch"));
}

//! Writes sent with a request ID are applied once, by the leader that takes them or, after it
//! died, by the next one: what the engines hold is the proof.

use std::time::Duration;

use crate::support::*;

fn send(addr: &str, method: &str, path: &str, id: &str, body: Option<&[u8]>) -> (u16, serde_json::Value) {
    let headers = [("X-Swarm-Request-Id".to_string(), id.to_string())];
    let (status, _, raw) = http_with_headers(addr, method, path, &headers, body, Duration::from_secs(30));
    (status, serde_json::from_slice(&raw).unwrap_or_default())
}

fn started_at(engine: &Engine, name: &str) -> String {
    docker_ok(&engine.host(), &["inspect", "--format", "{{.State.StartedAt}}", name])
}

#[test]
fn a_create_and_a_start_sent_again_to_the_next_leader_are_applied_once() {
    let JoinedGroup { engines: es, mut g, joins: _joins } = JoinedGroup::start(&["node-1"]);
    let leader = g.wait_one_primary(Duration::from_secs(10));
    let config = br#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"NetworkMode":"none"}}"#;
    let create = |addr: &str| send(addr, "POST", "/v1.41/containers/create?name=once", "create-once", Some(config));
    let (status, first) = create(&g.addr(leader));
    assert_eq!(status, 201, "{first}");
    // The same request again, to the same leader: its answer, not a second container.
    let (status, again) = create(&g.addr(leader));
    assert_eq!((status, &again["Id"]), (201, &first["Id"]), "{again}");
    assert_eq!(send(&g.addr(leader), "POST", "/v1.41/containers/once/start", "start-once", None).0, 204);
    wait_until(Duration::from_secs(10), "the container ran and exited", || {
        docker_ok(&es[0].host(), &["inspect", "--format", "{{.State.Status}}", "once"]) == "exited"
    });
    let started = started_at(&es[0], "once");

    // The leader dies; both requests come again, to its successor, as after a lost answer.
    g.kill(leader);
    let next = g.wait_one_primary(Duration::from_secs(10));
    g.m(next).wait_healthy(1);
    let (status, resent) = create(&g.addr(next));
    assert_eq!(
        (status, &resent["Id"]),
        (201, &first["Id"]),
        "the next leader answers with the container the first made: {resent}"
    );
    assert_eq!(es[0].container_names().iter().filter(|n| *n == "once").count(), 1);
    assert_eq!(send(&g.addr(next), "POST", "/v1.41/containers/once/start", "start-once", None).0, 204);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(started_at(&es[0], "once"), started, "a start sent again must not start the container a second time");
    // A new start (another ID) is another request: it starts the container again.
    assert_eq!(send(&g.addr(next), "POST", "/v1.41/containers/once/start", "start-twice", None).0, 204);
    wait_until(Duration::from_secs(10), "a new start runs it again", || started_at(&es[0], "once") != started);
}

use std::time::Duration;

use crate::support::*;

#[test]
fn token_discovery_is_served_by_the_manager_on_a_closed_network() {
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let token = stdout(&run(std::process::Command::new(env!("CARGO_BIN_EXE_swarm")).arg("create"))).trim().to_string();
    let m = Manager::start_with(|me| format!("token://{me}/v1/{token}"), &["--heartbeat", "1s"]);
    let url = format!("token://{}/v1/{token}", m.addr);
    let _j1 = Join::start(&es[0].addr, &url, "1s", "5s");
    let mut j2 = Join::start(&es[1].addr, &url, "1s", "5s");
    m.wait_healthy(2);
    let mut want = vec![es[0].addr.clone(), es[1].addr.clone()];
    want.sort();
    assert_eq!(swarm_list(&url), want);
    m.docker(&["run", "-d", "--name", "t1", "busybox", "sleep", "300"]);
    j2.kill();
    wait_until(Duration::from_secs(15), "node-2's registration expires", || m.node_states().len() == 1);
    assert_eq!(swarm_list(&url), vec![es[0].addr.clone()]);
    // The manager serves its own token only: no other token, no new one, no deletion by a
    // client, and an unknown token is not an empty cluster.
    let other = run(std::process::Command::new(env!("CARGO_BIN_EXE_swarm")).args([
        "list",
        "--timeout",
        "5s",
        &format!("token://{}/v1/other", m.addr),
    ]));
    assert!(!other.status.success() && stderr(&other).contains("no such cluster token"), "{}", stderr(&other));
    let (status, _, body) = http(&m.addr, "POST", "/v1/clusters/other?ttl=60", Some(b"127.0.0.1:9"));
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    assert_eq!(http(&m.addr, "POST", "/v1/clusters", None).0, 403);
    assert_eq!(http(&m.addr, "DELETE", &format!("/v1/clusters/{token}"), None).0, 403);
    assert_eq!(swarm_list(&url), vec![es[0].addr.clone()]);
}

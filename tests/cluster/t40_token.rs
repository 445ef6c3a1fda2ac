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
    // Another token is another cluster.
    assert!(swarm_list(&format!("token://{}/v1/other", m.addr)).is_empty());
}

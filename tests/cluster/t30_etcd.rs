use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn etcd_joins_before_and_after_the_manager_and_expire_with_their_ttl() {
    let mut etcd = Etcd::single();
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let url = etcd_url(std::slice::from_ref(&etcd), "swarm");
    let mut j1 = Join::start(&es[0].addr, &url, "1s", "3s");
    wait_until(Duration::from_secs(10), "node-1 registered", || swarm_list(&url) == vec![es[0].addr.clone()]);
    let m = Manager::start(&url, &[]);
    m.wait_healthy(1);
    let _j2 = Join::start(&es[1].addr, &url, "1s", "3s");
    m.wait_healthy(2);
    let mut want = vec![es[0].addr.clone(), es[1].addr.clone()];
    want.sort();
    assert_eq!(swarm_list(&url), want);

    // etcd restarts: the manager keeps its nodes, and the joins carry on.
    etcd.restart();
    assert_eq!(m.node_states().len(), 2);
    // Evidence that the watch is live again: an engine that joins now is seen.
    let late = Engine::start("node-3", &[]);
    let _j3 = Join::start(&late.addr, &url, "1s", "3s");
    wait_until(Duration::from_secs(30), "node-3 joins after the restart", || m.node_states().len() == 3);
    assert_eq!(m.node_states().iter().filter(|(n, _)| n != "node-3").count(), 2, "an etcd restart dropped nodes");
    want.push(late.addr.clone());
    want.sort();
    assert_eq!(swarm_list(&url), want);

    // A join that dies stops renewing: its entry leaves within ttl + heartbeat.
    j1.kill();
    let killed = Instant::now();
    wait_until(Duration::from_secs(10), "node-1 leaves the cluster", || {
        m.node_states().iter().all(|(n, _)| n != "node-1")
    });
    eprintln!("expired join removed after {:?} (ttl 3s, heartbeat 1s)", killed.elapsed());
    assert_eq!(m.node_states().iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["node-2", "node-3"]);
    let mut left = vec![es[1].addr.clone(), late.addr.clone()];
    left.sort();
    assert_eq!(swarm_list(&url), left);
}

#[test]
fn a_three_member_etcd_losing_one_member_drops_no_node() {
    let mut etcd = Etcd::cluster(3);
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let url = etcd_url(&etcd, "ha");
    let _j1 = Join::start(&es[0].addr, &url, "1s", "4s");
    let m = Manager::start(&url, &["--discovery-opt", "kv.path=custom/nodes"]);
    // kv.path moves the keys: a join under the custom path is seen (so the watch is live),
    // the one under the default path is not.
    let custom = Join::start_with(
        &es[1].addr,
        &url,
        "1s",
        "4s",
        &["--discovery-opt".to_string(), "kv.path=custom/nodes".to_string()],
    );
    m.wait_healthy(1);
    assert_eq!(m.node_states().iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["node-2"]);
    drop(custom);
    drop(m);
    let m = Manager::start(&url, &[]);
    m.wait_healthy(1);
    etcd[0].stop();
    let _j2 = Join::start(&es[1].addr, &url, "1s", "4s");
    m.wait_healthy(2);
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(m.node_states().iter().filter(|(_, s)| s == "Healthy").count(), 2);
}

#[test]
fn a_hung_etcd_member_is_left_for_another() {
    let etcd = Etcd::cluster(3);
    let es = engines(&[("node-1", &[]), ("node-2", &[]), ("node-3", &[])]);
    let url = etcd_url(&etcd, "hung");
    let m = Manager::start(&url, &[]);
    let mut joins = Vec::new();
    // Freezing each member in turn freezes the one the manager watches through, whichever it is.
    for (k, member) in etcd.iter().enumerate() {
        let _thaw = Paused::new(member);
        joins.push(Join::start(&es[k].addr, &url, "1s", "4s"));
        wait_until(
            Duration::from_secs(30),
            &format!("with etcd member {k} hung, the manager sees engine {k} join"),
            || m.node_states().iter().filter(|(_, s)| s == "Healthy").count() == k + 1,
        );
    }
}

/// The lease id under which `key` is stored, read from etcd itself; `None` when it is absent.
fn etcd_lease_of(endpoint: &str, key: &str) -> Option<i64> {
    etcd_call(endpoint, |mut c| async move { c.get(key, None).await.map(|r| r.kvs().first().map(|kv| kv.lease())) })
}

fn etcd_call<T, F, Fut>(endpoint: &str, call: F) -> T
where
    F: FnOnce(etcd_client::Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let client = etcd_client::Client::connect([endpoint], None).await.expect("connect to etcd");
        call(client).await.expect("etcd call")
    })
}

#[test]
fn a_registration_etcd_lost_is_written_again() {
    let etcd = Etcd::single();
    let es = engines(&[("node-1", &[])]);
    let url = etcd_url(std::slice::from_ref(&etcd), "lost");
    let key = format!("lost/docker/swarm/nodes/{}", es[0].addr);
    let _join = Join::start(&es[0].addr, &url, "1s", "4s");
    let m = Manager::start(&url, &[]);
    m.wait_healthy(1);
    let first = etcd_lease_of(&etcd.client_addr, &key).expect("the join registered");

    // The lease revoked (as when no renewal got through within the TTL): the key goes with it,
    // and the join must grant a new lease rather than keep renewing the dead one.
    etcd_call(&etcd.client_addr, |mut c| async move { c.lease_revoke(first).await.map(|_| ()) });
    wait_until(Duration::from_secs(10), "the join registers again under a new lease", || {
        etcd_lease_of(&etcd.client_addr, &key).is_some_and(|l| l != first)
    });

    // The key deleted while its lease lives: the join writes it again.
    let key_ = key.clone();
    etcd_call(&etcd.client_addr, |mut c| async move { c.delete(key_, None).await.map(|_| ()) });
    wait_until(Duration::from_secs(10), "the join writes its deleted key again", || {
        etcd_lease_of(&etcd.client_addr, &key).is_some()
    });
    wait_until(Duration::from_secs(20), "the manager has node-1 again", || {
        m.node_states().iter().any(|(n, s)| n == "node-1" && s == "Healthy")
    });
}

/// A member paused for the guard's life, thawed even when the test fails, so that the others
/// can shut down (a leader waits for its peers on SIGTERM).
struct Paused<'a>(&'a Etcd);

impl<'a> Paused<'a> {
    fn new(member: &'a Etcd) -> Paused<'a> {
        member.pause();
        Paused(member)
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.0.resume();
    }
}

#[test]
fn etcd_with_client_certificates_through_the_kv_tls_options() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let etcd = Etcd::single_tls(certs.path());
    let es = engines(&[("node-1", &[])]);
    let url = format!("etcd://{}/secure", etcd.client_addr);
    let opts = tls_opts(certs.path());
    let _join = Join::start_with(&es[0].addr, &url, "1s", "3s", &opts);
    let extra: Vec<&str> = opts.iter().map(String::as_str).collect();
    let m = Manager::start(&url, &extra);
    m.wait_healthy(1);
    // Without the certificates etcd refuses us.
    let o = run(std::process::Command::new(env!("CARGO_BIN_EXE_swarm")).args(["list", "--timeout", "3s", &url]));
    assert!(!o.status.success());
    let o = run(std::process::Command::new(env!("CARGO_BIN_EXE_swarm")).args([
        "list",
        "--discovery-opt",
        "kv.certfile=x",
        &url,
    ]));
    assert!(stderr(&o).contains("kv.cacertfile, kv.certfile and kv.keyfile must be given together"), "{}", stderr(&o));
}

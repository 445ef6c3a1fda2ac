use std::time::{Duration, Instant};

use crate::support::*;

/// Engines joined through the managers themselves (`swarm://`), no etcd anywhere.
fn joined(g: &RaftGroup, es: &[Engine]) -> Vec<Join> {
    es.iter().map(|e| Join::start(&e.addr, &g.swarm_url(), "1s", "30s")).collect()
}

fn role_over(host: &str) -> String {
    let o =
        run(docker_cmd(host).args(["info", "--format", "{{range .SystemStatus}}{{index . 0}}={{index . 1}};{{end}}"]));
    let s = stdout(&o);
    s.split(';').find_map(|p| p.strip_prefix("Role=")).unwrap_or_default().to_string()
}

#[test]
fn raft_managers_elect_one_primary_and_replicas_proxy_everything() {
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let g = RaftGroup::start(3, |peers| format!("swarm://{peers}"), &[]);
    let _joins = joined(&g, &es);
    wait_until(Duration::from_secs(20), "both engines in the registry", || {
        swarm_list(&g.swarm_url()) == sorted(vec![es[0].addr.clone(), es[1].addr.clone()])
    });
    let leader = g.wait_one_primary(Duration::from_secs(10));
    for i in g.running() {
        g.m(i).wait_healthy(2);
        let (role, primary) = g.m(i).role();
        if i == leader {
            assert_eq!(role, "primary");
        } else {
            assert_eq!((role.as_str(), primary.as_str()), ("replica", g.addr(leader).as_str()));
        }
    }
    let members = g.members(g.other(leader));
    assert_eq!(members.len(), 3, "{members:?}");
    assert_eq!(members.iter().filter(|l| l.ends_with("\tprimary")).count(), 1, "{members:?}");

    let replica = g.m(g.other(leader));
    replica.docker(&["run", "-d", "--name", "busy", "busybox", "sh", "-c", "echo one; sleep 300"]);
    assert!(g.m(leader).docker(&["ps", "--format", "{{.Names}}"]).contains("/busy"));
    assert_eq!(replica.docker(&["exec", "busy", "echo", "via-raft-replica"]), "via-raft-replica");
    let tty = Tty::open(&replica.host(), "raft-it");
    interactive_session(&tty, "busy");
    replica.docker(&["run", "-dit", "--name", "att", "busybox", "sh"]);
    attach_session(&tty, "att");
    replica.docker(&["run", "-d", "--name", "short", "busybox", "sh", "-c", "echo a; sleep 0.3; echo b"]);
    assert_eq!(stdout(&run(docker_cmd(&replica.host()).args(["logs", "-f", "short"]))), "a\nb\n");
    let stats = http_stream_until(
        &replica.addr,
        "/v1.41/containers/busy/stats?stream=1",
        "\"cpu_stats\"",
        2,
        Duration::from_secs(15),
    );
    assert!(stats.contains("\"memory_stats\""), "{stats}");
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn a_killed_raft_leader_is_replaced_and_rejoins_from_disk() {
    let es = engines(&[("node-1", &[])]);
    let mut g = RaftGroup::start(3, |peers| format!("swarm://{peers}"), &[]);
    let _joins = joined(&g, &es);
    let leader = g.wait_one_primary(Duration::from_secs(10));
    for i in g.running() {
        g.m(i).wait_healthy(1);
    }
    g.m(leader).docker(&["run", "-d", "--name", "before", "busybox", "sleep", "300"]);
    let killed_at = Instant::now();
    g.kill(leader);
    let next = g.wait_one_primary(Duration::from_secs(5));
    assert_ne!(next, leader);
    eprintln!("failover took {:?} (cargo bench --bench raft measures it)", killed_at.elapsed());
    // A write through the remaining follower reaches the new leader.
    let follower = g.other(next);
    g.m(follower).docker(&["run", "-d", "--name", "after", "busybox", "sleep", "300"]);
    // `swarm members list`: each member as it sees itself; the dead one unreachable, never
    // listed with a role it cannot hold now.
    let rows = g.member_rows(follower);
    let row = |i: usize| rows.iter().find(|r| r[0] == g.addr(i)).cloned().unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(rows.len(), 3, "{rows:?}");
    let dead = row(leader);
    assert_eq!(dead[1], "-", "{rows:?}");
    assert!(dead[6].starts_with("no: "), "{rows:?}");
    let (primary, replica) = (row(next), row(follower));
    assert_eq!(
        (primary[1].as_str(), primary[4].as_str(), primary[6].as_str()),
        ("primary", g.addr(next).as_str(), "yes")
    );
    assert_eq!(
        (replica[1].as_str(), replica[4].as_str(), replica[6].as_str()),
        ("replica", g.addr(next).as_str(), "yes")
    );
    assert_eq!(primary[2], replica[2], "one term: {rows:?}");
    assert!(primary[3].parse::<u64>().unwrap() > 0 && replica[3].parse::<u64>().is_ok(), "{rows:?}");
    assert_ne!(replica[5], "-", "a replica tells when it last heard the primary: {rows:?}");
    g.restart(leader);
    wait_until(Duration::from_secs(10), "the old leader is back as a replica", || {
        g.m(leader).role() == ("replica".to_string(), g.addr(next))
    });
    assert_eq!(g.primary(), Some(next));
    g.m(leader).wait_healthy(1);
    let names = g.m(leader).docker(&["ps", "--format", "{{.Names}}"]);
    assert!(names.contains("/before") && names.contains("/after"), "{names}");
}

#[test]
fn a_full_restart_restores_the_registry_and_one_primary_from_disk() {
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let mut g = RaftGroup::start(3, |peers| format!("swarm://{peers}"), &[]);
    // A TTL that outlives the restart, however slow the machine.
    let mut joins: Vec<Join> = es.iter().map(|e| Join::start(&e.addr, &g.swarm_url(), "1s", "300s")).collect();
    let want = sorted(vec![es[0].addr.clone(), es[1].addr.clone()]);
    wait_until(Duration::from_secs(20), "both engines registered", || swarm_list(&g.swarm_url()) == want);
    // No one re-registers: whatever the managers know after the restart comes from disk.
    for j in &mut joins {
        j.kill();
    }
    for i in g.running() {
        g.stop(i);
    }
    for i in 0..3 {
        g.restart(i);
    }
    g.wait_one_primary(Duration::from_secs(20));
    for i in 0..3 {
        let one = format!("swarm://{}", g.addr(i));
        wait_until(Duration::from_secs(5), "each manager lists the registry it had", || swarm_list(&one) == want);
    }
    for i in g.running() {
        g.m(i).wait_healthy(2);
    }
}

#[test]
fn registrations_that_lapse_while_no_manager_runs_are_renewed_by_the_next_leader() {
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let mut g = RaftGroup::start(3, |peers| format!("swarm://{peers}"), &[]);
    let ttl = Duration::from_secs(6);
    let mut joins: Vec<Join> = es.iter().map(|e| Join::start(&e.addr, &g.swarm_url(), "1s", "6s")).collect();
    let want = sorted(vec![es[0].addr.clone(), es[1].addr.clone()]);
    wait_until(Duration::from_secs(20), "both engines registered", || swarm_list(&g.swarm_url()) == want);
    let leader = g.wait_one_primary(Duration::from_secs(10));
    g.m(leader).wait_healthy(2);
    for (i, _) in es.iter().enumerate() {
        g.m(leader).docker(&[
            "run",
            "-d",
            "--name",
            &format!("kept-{i}"),
            "-e",
            &format!("constraint:node==node-{}", i + 1),
            "busybox",
            "sleep",
            "300",
        ]);
    }
    // The agents are gone and every manager is down for longer than the registrations' TTL:
    // nobody could renew them, so a new leader must give them their TTL again.
    for j in &mut joins {
        j.kill();
    }
    for i in g.running() {
        g.stop(i);
    }
    std::thread::sleep(ttl + Duration::from_secs(1));
    for i in 0..3 {
        g.restart(i);
    }
    let leader = g.wait_one_primary(Duration::from_secs(20));
    for i in 0..3 {
        let one = format!("swarm://{}", g.addr(i));
        assert_eq!(swarm_list(&one), want, "manager {i} lost the registry it had");
    }
    // A manager that took the lapsed registry for the engines would answer "No such
    // container", which `rm -f` takes for done.
    g.m(leader).docker(&["rm", "-f", "kept-0"]);
    assert!(!es[0].container_names().contains(&"kept-0".to_string()), "rm -f answered done and removed nothing");
    // With no agent to renew them, they still expire.
    wait_until(Duration::from_secs(30), "the registrations expire", || swarm_list(&g.swarm_url()).is_empty());
}

#[test]
fn managers_are_added_and_removed_at_runtime() {
    let es = engines(&[("node-1", &[])]);
    let mut g = RaftGroup::start(3, |peers| format!("swarm://{peers}"), &[]);
    let _joins = joined(&g, &es);
    let leader = g.wait_one_primary(Duration::from_secs(10));
    let fourth = g.start_extra();
    // Not a member yet: it knows no leader.
    assert_ne!(g.m(fourth).role().0, "primary");
    g.change_members(g.other(leader), "add", &g.addr(fourth));
    wait_until(Duration::from_secs(10), "four voters", || g.members(leader).len() == 4);
    wait_until(Duration::from_secs(10), "the new manager follows the leader", || {
        g.m(fourth).role() == ("replica".to_string(), g.addr(leader))
    });
    g.m(fourth).wait_healthy(1);
    g.m(fourth).docker(&["run", "-d", "--name", "via-new", "busybox", "sleep", "300"]);

    let removed = g.other(leader);
    g.change_members(leader, "remove", &g.addr(removed));
    wait_until(Duration::from_secs(10), "three voters", || g.members(leader).len() == 3);
    assert!(!g.members(leader).iter().any(|l| l.starts_with(&format!("{}\t", g.addr(removed)))));
    g.stop(removed);
    // The three that remain still elect a leader when the current one dies.
    g.kill(leader);
    let next = g.wait_one_primary(Duration::from_secs(10));
    assert!(next != leader && next != removed);
}

#[test]
fn a_leader_cut_off_from_its_quorum_stops_leading_and_rejoins() {
    let es = engines(&[("node-1", &[])]);
    let g = RaftGroup::start_with(3, |_| nodes_url(&es), &[], true);
    let leader = g.wait_one_primary(Duration::from_secs(10));
    let mut cut = Partition::isolate(g.port(leader), g.uid(leader));
    let cut_at = Instant::now();
    // The cut-off leader steps down on its own (seen through its unix socket)...
    wait_until(Duration::from_secs(5), "the isolated leader stops leading", || role_over(&g.sock(leader)) == "replica");
    let stepped_down = cut_at.elapsed();
    // ...and the majority elects another.
    let others: Vec<usize> = g.running().into_iter().filter(|i| *i != leader).collect();
    wait_until(Duration::from_secs(10), "the majority elects a leader", || {
        others.iter().filter(|i| g.m(**i).role().0 == "primary").count() == 1
    });
    let next = *others.iter().find(|i| g.m(**i).role().0 == "primary").unwrap();
    assert_ne!(role_over(&g.sock(leader)), "primary", "two primaries");
    cut.heal();
    wait_until(Duration::from_secs(10), "the old leader rejoins as a replica", || {
        g.m(leader).role() == ("replica".to_string(), g.addr(next))
    });
    assert_eq!(g.primary(), Some(next));
    eprintln!("stepped down {stepped_down:?} after the cut");
}

#[test]
fn snapshots_keep_the_raft_log_bounded() {
    let es = engines(&[("node-1", &[])]);
    let g = RaftGroup::start(3, |_| nodes_url(&es), &[]);
    let mut leader = g.wait_one_primary(Duration::from_secs(10));
    // Registry writes go through the Raft log: 2,500 of them outgrow the 1,000-entry policy.
    // This test is about compaction, so a write caught by a leader change (503) is sent again
    // to the new leader, a bounded number of times.
    let mut resent = 0;
    for i in 0..2500 {
        loop {
            let path = format!("/_swarm/nodes/127.0.0.1:{}?ttl=600", 30000 + i);
            let (status, _, body) = http_with_headers(
                &g.addr(leader),
                "PUT",
                &path,
                &manager_signed("PUT", &path),
                None,
                Duration::from_secs(30),
            );
            if status == 503 && resent < 3 {
                resent += 1;
                leader = g.wait_one_primary(Duration::from_secs(10));
                continue;
            }
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            break;
        }
    }
    // Uncompacted, 2,500 entries and their commit marks take about 300 KiB; after the
    // snapshots (every 1,000 entries, 100 kept) the log holds a few hundred entries.
    for i in g.running() {
        let dir = g.raft_dir(i);
        wait_until(Duration::from_secs(10), "a snapshot and a compacted log", || {
            let log = std::fs::metadata(dir.join("log")).map(|m| m.len()).unwrap_or(u64::MAX);
            dir.join("snapshot").exists() && log < 160 * 1024
        });
    }
    let listed = swarm_list(&format!("swarm://{}", g.addr(g.other(leader))));
    assert_eq!(listed.len(), 2500);
}

/// `swarm manage` that is expected to refuse to start: its stderr once it has exited.
fn refused_start(port: u16, args: &[&str], discovery: &str) -> String {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["manage", "-H", &format!("127.0.0.1:{port}"), "--cluster-secret-file", secret_file()])
        .args(args)
        .arg(discovery)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start swarm manage");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("swarm manage {args:?} kept running: it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success(), "swarm manage {args:?} exited 0");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_data_dir_is_private_marked_with_its_member_and_format_and_never_misread() {
    use std::os::unix::fs::PermissionsExt;
    let es = engines(&[("node-1", &[])]);
    let mut g = RaftGroup::start(3, |_| nodes_url(&es), &[]);
    let leader = g.wait_one_primary(Duration::from_secs(20));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for i in 0..3 {
        let dir = g.raft_dir(i);
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
        assert_eq!(meta["format"], 1);
        assert_eq!(meta["member"], g.addr(i).as_str());
    }

    let i = g.other(leader);
    // A running member's directory is locked: not read behind its back.
    let o = run(std::process::Command::new(env!("CARGO_BIN_EXE_swarm")).args([
        "snapshot",
        "save",
        "/dev/null",
        "--data-dir",
        g.data_dir(i).to_str().unwrap(),
    ]));
    assert!(!o.status.success() && stderr(&o).contains("a running manager holds"), "{}", stderr(&o));
    g.stop(i);
    let (me, data) = (g.addr(i), g.data_dir(i).display().to_string());
    let listing = |dir: &std::path::Path| {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|f| f.unwrap().path())
            .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
            .collect();
        files.sort();
        files
    };
    let before = listing(&g.raft_dir(i));
    let base = ["--replication", "--advertise", me.as_str(), "--data-dir", data.as_str()];
    // Peers other than the group's would be ignored: refused, naming the group.
    let two = format!("{me},{}", g.addr(leader));
    let err = refused_start(g.port(i), &[&base[..], &["--replication-peers", &two]].concat(), &g.swarm_url());
    let mut group: Vec<String> = (0..3).map(|k| g.addr(k)).collect();
    group.sort();
    assert!(err.contains(&format!("holds a group of {}", group.join(","))), "{err}");
    assert!(listing(&g.raft_dir(i)) == before, "a refused start leaves the directory as it was");
    // Another manager's directory.
    let stranger = format!("127.0.0.1:{}", free_port());
    let err = refused_start(
        free_port(),
        &["--replication", "--advertise", &stranger, "--data-dir", &data, "--replication-peers", &g.peers()],
        &g.swarm_url(),
    );
    assert!(err.contains(&format!("belongs to the manager advertised as {me}")), "{err}");
    // A directory written by a newer swarm.
    let meta_path = g.raft_dir(i).join("meta.json");
    let meta = std::fs::read(&meta_path).unwrap();
    std::fs::write(&meta_path, format!(r#"{{"format": 2, "member": "{me}"}}"#)).unwrap();
    let err = refused_start(g.port(i), &[&base[..], &["--replication-peers", &g.peers()]].concat(), &g.swarm_url());
    assert!(err.contains("has format 2, newer than this swarm reads (1)"), "{err}");
    std::fs::write(&meta_path, meta).unwrap();

    // Without --replication-peers, the member rejoins from its directory.
    g.restart_without_peers(i);
    let leader = g.wait_settled(Duration::from_secs(30));
    assert_eq!(g.m(i).role(), ("replica".to_string(), g.addr(leader)));
}

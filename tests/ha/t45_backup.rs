//! Backups and recovery as an operator runs them: `swarm snapshot save` from a running group,
//! restored into a new group that serves the same registry; and the way out of a lost quorum,
//! a snapshot of a survivor's data directory restored into a new group.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::*;

fn swarm(args: &[&str]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_swarm")).args(args).env_remove("SWARM_MANAGER"))
}

fn ok(args: &[&str]) -> String {
    let o = swarm(args);
    assert!(o.status.success(), "swarm {args:?}: {}{}", stdout(&o), stderr(&o));
    stdout(&o)
}

/// A data-directory preparer that restores `file` into each member of a new group.
fn restoring(file: &Path) -> impl Fn(&Path, &str, &str) + '_ {
    move |data: &Path, me: &str, peers: &str| {
        let out = ok(&[
            "snapshot",
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--advertise",
            me,
            "--replication-peers",
            peers,
        ]);
        assert!(out.contains("Restored 2 entries"), "{out}");
    }
}

#[test]
fn a_snapshot_restored_into_a_new_group_serves_the_same_registry_and_a_lost_quorum_is_recovered() {
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let a = RaftGroup::start(3, |peers| format!("swarm://{peers}"), &[]);
    let joins: Vec<Join> = es.iter().map(|e| Join::start(&e.addr, &a.swarm_url(), "1s", "30s")).collect();
    let mut want: Vec<String> = es.iter().map(|e| e.addr.clone()).collect();
    want.sort();
    wait_until(Duration::from_secs(20), "both engines registered", || swarm_list(&a.swarm_url()) == want);
    // The agents stop: what the new groups list can only come from the snapshot.
    drop(joins);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("group-a.snapshot");
    let leader = a.wait_one_primary(Duration::from_secs(10));
    // Asked of a follower, answered from the leader's copy.
    let saved = ok(&[
        "snapshot",
        "save",
        file.to_str().unwrap(),
        "--manager",
        &a.addr(a.other(leader)),
        "--cluster-secret-file",
        secret_file(),
    ]);
    assert!(saved.contains("2 entries (2 engine registrations)"), "{saved}");
    assert!(ok(&["snapshot", "status", file.to_str().unwrap()]).contains("2 engine registrations"));
    // A damaged file is refused, and so is a save without the cluster secret.
    let damaged = dir.path().join("damaged.snapshot");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&damaged, text.replacen("\"Value\": \"", "\"Value\": \"00", 1)).unwrap();
    let o = swarm(&["snapshot", "status", damaged.to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("does not match"), "{}", stderr(&o));
    let foreign = dir.path().join("foreign-secret");
    std::fs::write(&foreign, "a secret no manager of this group holds\n").unwrap();
    let o = swarm(&[
        "snapshot",
        "save",
        dir.path().join("stolen").to_str().unwrap(),
        "--manager",
        &a.addr(leader),
        "--cluster-secret-file",
        foreign.to_str().unwrap(),
    ]);
    assert!(!o.status.success() && stderr(&o).contains("signature does not match"), "{}", stderr(&o));
    assert!(!dir.path().join("stolen").exists());
    drop(a);

    // A new group of three, restored from the file: every member serves the registry.
    let mut b = RaftGroup::start_prepared(3, |peers| format!("swarm://{peers}"), restoring(&file));
    for i in 0..3 {
        assert_eq!(swarm_list(&format!("swarm://{}", b.addr(i))), want, "member {i} of the restored group");
    }
    let restored = ok(&["members", "list", "--manager", &b.addr(0), "--cluster-secret-file", secret_file()]);
    assert_eq!(members_rows(&restored).iter().filter(|r| r[1] == "primary").count(), 1, "{restored}");

    // Two of three lost: the survivor has no quorum and cannot lead.
    let survivor = b.other(b.wait_one_primary(Duration::from_secs(10)));
    for i in 0..3 {
        if i != survivor {
            b.kill(i);
        }
    }
    wait_until(Duration::from_secs(10), "the survivor knows no primary", || b.m(survivor).role().0 != "primary");
    b.stop(survivor);
    // Its directory, saved offline, restored into a new group: the registry is back.
    let rescued = dir.path().join("survivor.snapshot");
    let saved =
        ok(&["snapshot", "save", rescued.to_str().unwrap(), "--data-dir", b.data_dir(survivor).to_str().unwrap()]);
    assert!(saved.contains("2 engine registrations"), "{saved}");
    let c = RaftGroup::start_prepared(3, |peers| format!("swarm://{peers}"), restoring(&rescued));
    let leader = c.wait_one_primary(Duration::from_secs(20));
    assert_eq!(swarm_list(&c.swarm_url()), want);
    // The recovered group takes writes: a membership read and a registration through its leader.
    let join = Join::start(&es[0].addr, &c.swarm_url(), "1s", "30s");
    wait_until(Duration::from_secs(20), "an engine registers with the recovered group", || {
        c.m(leader).node_states().iter().filter(|(_, s)| s == "Healthy").count() >= 1
    });
    drop(join);
}

//! Only managers speak the control plane: unsigned, replayed, altered, foreign and join-signed
//! requests are refused on every control route, by the leader and by a follower alike. The
//! evidence that nothing got through is read from the group itself afterwards (its members,
//! its registry), not from the answers alone.

use std::path::Path;
use std::time::Duration;

use http::{HeaderMap, Method};
use swarm::auth::{join_signer, ClusterSecret, Signer};

use crate::support::*;

const BOUND: Duration = Duration::from_secs(10);

fn pairs(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string())).collect()
}

/// Sends `method path` to `addr` signed by `signer` (for `signed_body`), with `body`.
fn signed(addr: &str, signer: &Signer, method: &str, path: &str, signed_body: &[u8], body: &[u8]) -> (u16, String) {
    let m: Method = method.parse().unwrap();
    let headers = pairs(&signer.headers(&m, path, signed_body));
    let (status, _, answer) = http_with_headers(addr, method, path, &headers, Some(body), BOUND);
    (status, String::from_utf8_lossy(&answer).into_owned())
}

#[test]
fn only_managers_and_join_agents_reach_the_control_plane() {
    let g = RaftGroup::start(3, |peers| format!("swarm://{peers}"), &[]);
    let leader = g.wait_one_primary(BOUND);
    let follower = g.other(leader);
    let secret = ClusterSecret::read(Path::new(secret_file())).unwrap();
    let manager = secret.manager_signer();
    let join = join_signer(Path::new(join_token_file())).unwrap();
    let outsider = ClusterSecret::from_bytes(b"a secret no manager of this group holds").manager_signer();
    let victim = g.addr(follower);
    let routes: Vec<(&str, String)> = vec![
        ("POST", "/_swarm/raft/vote".into()),
        ("POST", "/_swarm/raft/append".into()),
        ("POST", "/_swarm/raft/snapshot".into()),
        ("GET", "/_swarm/nodes".into()),
        ("PUT", "/_swarm/nodes/127.0.0.1:9?ttl=600".into()),
        ("GET", "/_swarm/members".into()),
        ("GET", "/_swarm/members/self".into()),
        ("POST", "/_swarm/members/127.0.0.1:9".into()),
        ("DELETE", format!("/_swarm/members/{victim}")),
        ("POST", "/v1/clusters".into()),
        ("DELETE", "/v1/clusters/0123456789abcdef".into()),
    ];
    for i in [leader, follower] {
        let addr = g.addr(i);
        for (method, path) in &routes {
            // A Docker API client: no signature at all.
            let (status, _, body) = http_within(&addr, method, path, Some(b"{}"), BOUND);
            let body = String::from_utf8_lossy(&body);
            assert_eq!(status, 403, "unsigned {method} {path} on manager {i}: {body}");
            assert!(body.contains("\"message\"") && body.contains("only managers"), "{body}");
            // A caller with the wrong secret.
            let (status, body) = signed(&addr, &outsider, method, path, b"{}", b"{}");
            assert_eq!(status, 403, "foreign {method} {path} on manager {i}: {body}");
        }
        // A join agent may register and list engines, and nothing else.
        for (method, path) in [
            ("POST", "/_swarm/raft/vote"),
            ("GET", "/_swarm/members"),
            ("GET", "/_swarm/members/self"),
            ("POST", "/_swarm/members/127.0.0.1:9"),
        ] {
            let (status, body) = signed(&addr, &join, method, path, b"", b"");
            assert_eq!(status, 403, "join-signed {method} {path} on manager {i}: {body}");
            assert!(body.contains("managers only"), "{body}");
        }
        // A body that is not the one signed.
        let (status, body) = signed(&addr, &manager, "POST", "/_swarm/raft/vote", b"signed", b"sent");
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("body does not match"), "{body}");
    }

    // A registration by a join agent lands, through a follower, and its replay is refused.
    let path = "/_swarm/nodes/127.0.0.1:7?ttl=600";
    let headers = pairs(&join.headers(&Method::PUT, path, b""));
    let (status, _, body) = http_with_headers(&g.addr(follower), "PUT", path, &headers, None, BOUND);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = http_with_headers(&g.addr(follower), "PUT", path, &headers, None, BOUND);
    assert_eq!(status, 403, "replayed: {}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("replayed"));
    // The same signature for another path fails.
    let (status, _, _) =
        http_with_headers(&g.addr(leader), "PUT", "/_swarm/nodes/127.0.0.1:8?ttl=600", &headers, None, BOUND);
    assert_eq!(status, 403);

    // A fake engine's join agent with a token of its own never registers.
    let dir = tempfile::tempdir().unwrap();
    let forged = dir.path().join("token");
    std::fs::write(&forged, "SWMJT-1-00000000000000000000000000000000000000000000000000000000000000").unwrap();
    let _fake = Join::start_with(
        "127.0.0.1:6",
        &g.swarm_url(),
        "1s",
        "30s",
        &["--join-token-file".into(), forged.display().to_string()],
    );
    std::thread::sleep(Duration::from_secs(3));

    // What the group holds afterwards: three members, and only the registration signed by a
    // join agent (127.0.0.1:9 and the fake engine 127.0.0.1:6 were asked for only by refused
    // callers).
    wait_until(BOUND, "the registration is listed", || swarm_list(&g.swarm_url()).contains(&"127.0.0.1:7".to_string()));
    assert_eq!(swarm_list(&g.swarm_url()), vec!["127.0.0.1:7".to_string()]);
    assert_eq!(g.members(leader).len(), 3, "{:?}", g.members(leader));
    // Managers still replicate and elect with their signed RPCs, and a manager's own
    // membership read works.
    let (status, body) = signed(&g.addr(follower), &manager, "GET", "/_swarm/members", b"", b"");
    assert_eq!(status, 200, "{body}");
    let metrics = String::from_utf8_lossy(&http(&g.addr(leader), "GET", "/metrics", None).2).into_owned();
    assert!(metrics.contains("swarm_control_requests_refused_total{reason=\"unsigned\"}"), "{metrics}");
}

#[test]
fn a_join_token_cannot_register_a_manager_evict_an_engine_or_flood_the_registry() {
    let es = engines(&[("node-1", &[])]);
    let g = RaftGroup::start(3, |peers| format!("swarm://{peers}"), &["--registry-max-entries", "3"]);
    let leader = g.wait_one_primary(BOUND);
    let join = join_signer(Path::new(join_token_file())).unwrap();
    let _agent = Join::start(&es[0].addr, &g.swarm_url(), "1s", "30s");
    wait_until(BOUND, "the engine is registered", || swarm_list(&g.swarm_url()) == vec![es[0].addr.clone()]);

    // A manager registered as an engine would read itself.
    for i in 0..3 {
        let (status, body) =
            signed(&g.addr(leader), &join, "PUT", &format!("/_swarm/nodes/{}?ttl=6", g.addr(i)), b"", b"");
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("is a swarm manager"), "{body}");
    }
    // Another agent's engine cannot be cut short: its entry outlives the attacker's 1 s TTL.
    let (status, body) =
        signed(&g.addr(g.other(leader)), &join, "PUT", &format!("/_swarm/nodes/{}?ttl=1", es[0].addr), b"", b"");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("a shorter one is refused"), "{body}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(swarm_list(&g.swarm_url()), vec![es[0].addr.clone()]);

    // The registry is bounded: two more fit beside the engine, a fourth is refused, renewals pass.
    for (k, want) in [(1, 200), (2, 200), (3, 429)] {
        let (status, body) =
            signed(&g.addr(leader), &join, "PUT", &format!("/_swarm/nodes/127.0.0.1:{k}?ttl=60"), b"", b"");
        assert_eq!(status, want, "registration {k}: {body}");
    }
    let (status, body) = signed(&g.addr(leader), &join, "PUT", "/_swarm/nodes/127.0.0.1:1?ttl=60", b"", b"");
    assert_eq!(status, 200, "a renewal of a listed entry: {body}");
    assert_eq!(swarm_list(&g.swarm_url()).len(), 3);
    let (_, _, metrics) = http(&g.addr(leader), "GET", "/metrics", None);
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.lines().any(|l| l == "swarm_registry_entries 3"), "{metrics}");
}

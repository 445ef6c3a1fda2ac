use crate::support::*;

#[test]
fn malformed_and_oversized_bodies_get_docker_shaped_errors() {
    let es = engines(&[("node-1", &[])]);
    let m = Manager::start(&nodes_url(&es), &["--api-max-body-bytes", "1024"]);
    m.wait_healthy(1);
    let (status, _, body) = http(&m.addr, "POST", "/v1.41/containers/create", Some(b"{not json"));
    // dockerd's own answer to a body it cannot decode: 500, in Go's words.
    assert_eq!(status, 500);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(v["message"].as_str().unwrap().starts_with("invalid character"), "{v}");
    let big = format!("{{\"Image\":\"busybox\",\"Env\":[\"X={}\"]}}", "x".repeat(4096));
    let (status, _, body) = http(&m.addr, "POST", "/v1.41/containers/create", Some(big.as_bytes()));
    assert_eq!(status, 413);
    assert!(String::from_utf8_lossy(&body).contains("--api-max-body-bytes"));
    let (status, _, _) =
        http(&m.addr, "POST", "/v1.41/containers/create?name=bad%20name", Some(b"{\"Image\":\"busybox\"}"));
    assert_eq!(status, 400);
    let (status, _, body) = http(&m.addr, "GET", "/v1.41/containers/nosuch/json", None);
    assert_eq!(status, 404);
    assert_eq!(String::from_utf8_lossy(&body).trim(), r#"{"message":"No such container: nosuch"}"#);
    let (status, _, body) = http(
        &m.addr,
        "POST",
        "/v1.41/containers/create",
        Some(b"{\"Image\":\"busybox\",\"Env\":[\"constraint:zone=a\"]}"),
    );
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("One of operator ==, != is expected"));
    // Nothing half-created.
    assert_eq!(es[0].container_names().len(), 0);
}

/// A prefix of several IDs gets the engine's words, with 400 on purpose (the engines here,
/// dockerd 20.10, say 500; classic Swarm said 404, which `rm -f` takes for done), and
/// removes nothing.
#[test]
fn an_ambiguous_id_prefix_is_refused_as_the_engine_refuses_it() {
    let es = engines(&[("node-1", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(1);
    // Seventeen IDs: at least two share their first hex digit.
    let ids: Vec<String> = (0..17)
        .map(|i| m.docker(&["create", "--name", &format!("amb{i}"), "--network", "none", "busybox", "true"]))
        .collect();
    let prefix = (0..16u8)
        .map(|d| format!("{d:x}"))
        .find(|p| ids.iter().filter(|id| id.starts_with(p.as_str())).count() >= 2)
        .expect("two IDs share a first digit");
    let path = format!("/v1.41/containers/{prefix}/json");
    let (direct_status, _, direct_body) = http(&es[0].addr, "GET", &path, None);
    let (status, _, body) = http(&m.addr, "GET", &path, None);
    assert!(
        String::from_utf8_lossy(&direct_body).contains("Multiple IDs found with provided prefix"),
        "{}",
        String::from_utf8_lossy(&direct_body)
    );
    assert_eq!(String::from_utf8_lossy(&body).trim(), String::from_utf8_lossy(&direct_body).trim());
    assert_eq!(status, 400, "the engine said {direct_status}");
    let err = m.docker_err(&["rm", "-f", &prefix]);
    assert!(err.contains("Multiple IDs found with provided prefix"), "{err}");
    assert_eq!(es[0].container_names().len(), 17);
}

#[test]
fn engine_errors_pass_through_with_their_status() {
    let es = engines(&[("node-1", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(1);
    // A registry on a closed loopback port: the pull fails at once, and nothing leaves the machine.
    let (status, _, body) =
        http(&m.addr, "POST", "/v1.41/containers/create", Some(b"{\"Image\":\"127.0.0.1:9/no-such-image\"}"));
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("No such image"));
    m.docker(&["run", "-d", "--name", "xx", "busybox", "sleep", "300"]);
    let err = m.docker_err(&["rm", "xx"]);
    assert!(err.contains("You cannot remove a running container"), "{err}");
}

/// A registry that accepts connections and never answers holds a create's implicit pull only
/// for `--engine-pull-timeout`.
#[test]
fn a_pull_from_a_hung_registry_fails_the_create_after_the_pull_timeout() {
    use std::time::{Duration, Instant};
    let es = engines(&[("node-1", &[])]);
    let m = Manager::start(&nodes_url(&es), &["--engine-pull-timeout", "2s"]);
    m.wait_healthy(1);
    let registry = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = registry.local_addr().unwrap().port();
    // Held open, never answered; the thread ends with the test process.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in registry.incoming().flatten() {
            held.push(c);
        }
    });
    let t = Instant::now();
    let body = format!("{{\"Image\":\"127.0.0.1:{port}/hung\"}}");
    let (status, _, answer) = http_within(
        &m.addr,
        "POST",
        "/v1.41/containers/create?name=hung",
        Some(body.as_bytes()),
        Duration::from_secs(60),
    );
    let took = t.elapsed();
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&answer));
    assert!(String::from_utf8_lossy(&answer).contains("No such image"), "{}", String::from_utf8_lossy(&answer));
    assert!(took < Duration::from_secs(20), "the create waited {took:?} on a hung pull");
    assert_eq!(es[0].container_names().len(), 0);
}

/// What a hostile or broken client can hold: half-sent requests are cut after the header
/// timeout, connections past the limit get Docker's error shape, oversized heads get 431.
#[test]
fn slow_idle_and_oversized_clients_are_cut_and_bounded() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    // No engine is needed to talk to the front: discovery names a closed port.
    let m = Manager::start(
        "nodes://127.0.0.1:9",
        &[
            "--api-header-timeout",
            "1s",
            "--api-max-connections",
            "20",
            "--api-max-header-bytes",
            "65536",
            "--api-body-timeout",
            "1s",
        ],
    );
    let connect = || {
        let s = TcpStream::connect(&m.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    };
    // Closed by the manager: a read ends (EOF or reset) instead of waiting for our timeout.
    let closed_within = |s: &mut TcpStream, bound: Duration| {
        let t = Instant::now();
        let mut buf = [0u8; 512];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return t.elapsed() < bound,
                Ok(_) => continue,
            }
        }
    };

    // Half a request head each: all cut after the header timeout.
    let mut slow: Vec<TcpStream> = (0..10).map(|_| connect()).collect();
    for s in &mut slow {
        s.write_all(b"GET /_ping HTTP/1.1\r\nHost: swarm\r\n").unwrap();
    }
    for s in &mut slow {
        assert!(closed_within(s, Duration::from_secs(5)), "a half-sent request was kept past the header timeout");
    }

    // Connection slots, on a manager whose header timeout cannot cut a connection meanwhile.
    {
        let m = Manager::start("nodes://127.0.0.1:9", &["--api-header-timeout", "60s", "--api-max-connections", "20"]);
        let connect = || {
            let s = TcpStream::connect(&m.addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        };
        // Twenty connections that never send a thing fill the front; a new client still gets in:
        // the oldest of them is closed to make room.
        let mut idle: Vec<TcpStream> = (0..20).map(|_| connect()).collect();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(http(&m.addr, "GET", "/_ping", None).0, 200);
        assert!(closed_within(&mut idle[0], Duration::from_secs(1)), "the oldest idle connection was kept");
        drop(idle);
        // Twenty connections in use fill it for real: the next one is told so, in Docker's shape.
        // Each is used before the next connects, so none can be closed for another; a slot the
        // server has not freed yet (a client above just left) answers 503 for a moment.
        let used_connection = || {
            for _ in 0..100 {
                let mut s = connect();
                s.write_all(b"GET /_ping HTTP/1.1\r\nHost: swarm\r\n\r\n").unwrap();
                let mut head = [0u8; 12];
                // A refusal closes with our request unread, which may reach us as a reset.
                let refused = match s.read_exact(&mut head) {
                    Ok(()) if &head == b"HTTP/1.1 200" => return s,
                    Ok(()) => &head == b"HTTP/1.1 503",
                    Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
                };
                assert!(refused, "{}", String::from_utf8_lossy(&head));
                std::thread::sleep(Duration::from_millis(50));
            }
            panic!("the front stayed full after its clients left");
        };
        let used: Vec<TcpStream> = (0..20).map(|_| used_connection()).collect();
        let mut extra = connect();
        let mut answer = String::new();
        let _ = extra.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(
            answer.contains(r#"{"message":"too many connections"#) && answer.contains("--api-max-connections"),
            "{answer}"
        );
        // Their clients leave: the front serves again.
        drop(used);
        wait_until(Duration::from_secs(5), "the front serves again", || http(&m.addr, "GET", "/_ping", None).0 == 200);
    }

    // A head well over --api-max-header-bytes (hyper checks between reads): 431, not a
    // buffer that grows.
    let mut big = connect();
    let header = format!("GET /_ping HTTP/1.1\r\nHost: swarm\r\nX-Big: {}\r\n\r\n", "x".repeat(1 << 20));
    let _ = big.write_all(header.as_bytes());
    let mut answer = String::new();
    let _ = big.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    // A body that never finishes: 408 after the body timeout, in Docker's shape.
    let mut trickle = connect();
    trickle.write_all(b"POST /v1.41/volumes/create HTTP/1.1\r\nHost: swarm\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"Na").unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    let _ = trickle.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("--api-body-timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    // Times no clock can hold: a window in the past answers at once, one beyond the clock's
    // range streams (no deadline); neither drops the connection or the manager. What is not
    // a dockerd timestamp (a float, `inf`) gets dockerd's 500.
    let (status, _, _) = http(&m.addr, "GET", "/events?since=-9223372036854775808&until=1", None);
    assert_eq!(status, 200);
    let mut s = connect();
    s.write_all(b"GET /events?until=9223372036854775807 HTTP/1.1\r\nHost: swarm\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).expect("an answer");
    assert_eq!(&head, b"HTTP/1.1 200");
    for until in ["1e19", "inf"] {
        let (status, _, body) = http(&m.addr, "GET", &format!("/events?until={until}"), None);
        assert_eq!(status, 500, "until={until}");
        assert!(String::from_utf8_lossy(&body).contains("strconv.ParseInt"), "until={until}");
    }
    assert_eq!(http(&m.addr, "GET", "/_ping", None).0, 200);
}

#[test]
fn uploads_buffered_at_once_share_one_memory_bound() {
    use std::io::Write;
    use std::net::TcpStream;
    use std::time::Duration;

    let es = engines(&[("node-1", &[])]);
    let m = Manager::start(
        &nodes_url(&es),
        &["--api-max-upload-bytes", "3145728", "--api-max-upload-total-bytes", "4194304"],
    );
    m.wait_healthy(1);
    let mib = |n: usize| vec![b'x'; n << 20];
    // One archive over the per-upload limit: 413.
    let (status, _, body) = http(&m.addr, "POST", "/v1.41/images/load", Some(&mib(4)));
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    // A slow client holds 3 MiB of the 4 it may share with others...
    let mut slow = TcpStream::connect(&m.addr).unwrap();
    slow.write_all(b"POST /v1.41/images/load HTTP/1.1\r\nHost: swarm\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    slow.write_all(format!("{:x}\r\n", 3 << 20).as_bytes()).unwrap();
    slow.write_all(&mib(3)).unwrap();
    slow.write_all(b"\r\n").unwrap();
    wait_until(Duration::from_secs(20), "the manager holds the slow upload", || {
        let metrics = String::from_utf8_lossy(&http(&m.addr, "GET", "/metrics", None).2).into_owned();
        metrics.lines().any(|l| {
            l.starts_with("swarm_api_buffered_body_bytes{kind=\"upload\"}") && l.ends_with(&(3u64 << 20).to_string())
        })
    });
    // ...so a second upload of 2 MiB is refused at once, in Docker's shape.
    wait_until(Duration::from_secs(10), "the second upload is refused", || {
        let (status, _, body) = http(&m.addr, "POST", "/v1.41/images/load", Some(&mib(2)));
        status == 503 && String::from_utf8_lossy(&body).contains("--api-max-upload-total-bytes")
    });
    // The slow client leaves: its share comes back.
    drop(slow);
    wait_until(Duration::from_secs(10), "the memory is free again", || {
        http(&m.addr, "POST", "/v1.41/images/load", Some(&mib(2))).0 != 503
    });
    assert_eq!(http(&m.addr, "GET", "/_ping", None).0, 200);
}

/// One request with `content_type` (`None`: no such header) and `body`, as a web page's form or
/// `fetch` sends it; the status and the error message.
fn with_content_type(addr: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let ct = content_type.map(|c| format!("Content-Type: {c}\r\n")).unwrap_or_default();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nOrigin: http://evil.example\r\n{ct}Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    let message = regex::Regex::new(r#""message":"([^"]*)""#)
        .unwrap()
        .captures(body)
        .map(|c| c[1].to_string())
        .unwrap_or_default();
    (status, message)
}

#[test]
fn a_json_body_sent_as_anything_but_json_is_refused_as_the_engine_refuses_it() {
    let es = engines(&[("node-1", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(1);
    let bodies: [(&str, &[u8]); 4] = [
        ("/v1.41/containers/create?name=fromweb", br#"{"Image":"busybox","Cmd":["true"]}"#),
        ("/v1.41/networks/create", br#"{"Name":"webnet"}"#),
        ("/v1.41/volumes/create", br#"{"Name":"webvol"}"#),
        ("/v1.41/networks/none/connect", br#"{"Container":"x"}"#),
    ];
    // A browser sends text/plain and form types across origins without a preflight.
    for ct in [Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("text/plain; charset=utf-8"), None] {
        for (path, body) in bodies {
            let engine = with_content_type(&es[0].addr, path, ct, body);
            let swarm = with_content_type(&m.addr, path, ct, body);
            assert_eq!(engine.0, 400, "the engine refuses {ct:?} on {path}: {engine:?}");
            assert_eq!(swarm, engine, "{ct:?} on {path}: swarm differs from the engine");
        }
    }
    let engine = format!("tcp://{}", es[0].addr);
    let ps = stdout(&run(docker_cmd(&engine).args(["ps", "-a", "--format", "{{.Names}}"])));
    assert!(!ps.contains("fromweb"), "{ps}");
    let nets = stdout(&run(docker_cmd(&engine).args(["network", "ls", "--format", "{{.Name}}"])));
    assert!(!nets.contains("webnet"), "{nets}");
    let vols = stdout(&run(docker_cmd(&engine).args(["volume", "ls", "--format", "{{.Name}}"])));
    assert!(!vols.contains("webvol"), "{vols}");
    // JSON with parameters is JSON.
    let (status, message) =
        with_content_type(&m.addr, bodies[0].0, Some("Application/JSON; charset=utf-8"), bodies[0].1);
    assert_eq!(status, 201, "{message}");
}

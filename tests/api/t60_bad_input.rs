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
    let (status, _, _) = http(&m.addr, "POST", "/v1.41/containers/create?name=bad%20name", Some(b"{\"Image\":\"busybox\"}"));
    assert_eq!(status, 400);
    let (status, _, body) = http(&m.addr, "GET", "/v1.41/containers/nosuch/json", None);
    assert_eq!(status, 404);
    assert_eq!(String::from_utf8_lossy(&body).trim(), r#"{"message":"No such container: nosuch"}"#);
    let (status, _, body) = http(&m.addr, "POST", "/v1.41/containers/create", Some(b"{\"Image\":\"busybox\",\"Env\":[\"constraint:zone=a\"]}"));
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("One of operator ==, != is expected"));
    // Nothing half-created.
    assert_eq!(es[0].container_names().len(), 0);
}

#[test]
fn engine_errors_pass_through_with_their_status() {
    let es = engines(&[("node-1", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(1);
    // A registry on a closed loopback port: the pull fails at once, and nothing leaves the machine.
    let (status, _, body) = http(&m.addr, "POST", "/v1.41/containers/create", Some(b"{\"Image\":\"127.0.0.1:9/no-such-image\"}"));
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("No such image"));
    m.docker(&["run", "-d", "--name", "xx", "busybox", "sleep", "300"]);
    let err = m.docker_err(&["rm", "xx"]);
    assert!(err.contains("You cannot remove a running container"), "{err}");
}

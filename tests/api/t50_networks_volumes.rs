use crate::support::*;

#[test]
fn volumes_are_per_node_and_named_node_slash_name() {
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(2);
    m.docker(&["volume", "create", "data"]);
    let mut ls: Vec<String> =
        m.docker(&["volume", "ls", "--format", "{{.Name}}"]).lines().map(str::to_string).collect();
    ls.sort();
    assert_eq!(ls, ["node-1/data", "node-2/data"]);
    m.docker(&["volume", "create", "node-2/only2"]);
    assert_eq!(docker_ok(&es[1].host(), &["volume", "ls", "-q", "--filter", "name=only2"]), "only2");
    assert_eq!(docker_ok(&es[0].host(), &["volume", "ls", "-q", "--filter", "name=only2"]), "");
    assert_eq!(m.docker(&["volume", "inspect", "-f", "{{.Name}}", "node-2/only2"]), "node-2/only2");
    m.docker(&["volume", "rm", "node-2/only2"]);
    m.docker(&["volume", "rm", "data"]);
    assert_eq!(m.docker(&["volume", "ls", "-q"]), "");
    let err = m.docker_err(&["volume", "inspect", "ghost"]);
    assert!(err.contains("no such volume"), "{err}");
}

#[test]
fn networks_list_per_node_and_create_on_one_or_all() {
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(2);
    let ls = m.docker(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(ls.contains("node-1/none") && ls.contains("node-2/host"), "{ls}");
    m.docker(&["network", "create", "node-1/backend"]);
    assert!(docker_ok(&es[0].host(), &["network", "ls", "--format", "{{.Name}}"]).contains("backend"));
    assert!(!docker_ok(&es[1].host(), &["network", "ls", "--format", "{{.Name}}"]).contains("backend"));
    assert_eq!(m.docker(&["network", "inspect", "-f", "{{.Name}}", "node-1/backend"]), "backend");
    m.docker(&["run", "-d", "--name", "n1", "--net", "none", "busybox", "sleep", "300"]);
    m.docker(&["network", "rm", "node-1/backend"]);
    assert!(!docker_ok(&es[0].host(), &["network", "ls", "--format", "{{.Name}}"]).contains("backend"));
}

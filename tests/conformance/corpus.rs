//! The corpus: every route classic Swarm serves, and every filter key an engine accepts at
//! API 1.41 for each list, alone and combined, with malformed ones.

use serde_json::json;

use crate::fixtures::Fixtures;
use crate::oracle::{enc, Req};

/// Filter keys and values for `GET /containers/json`.
pub fn container_filters(f: &Fixtures) -> Vec<(&'static str, Vec<String>)> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        (
            "ancestor",
            vec![
                "busybox".into(),
                "child:1".into(),
                "busybox:latest".into(),
                f.busybox_id[7..19].into(),
                f.busybox_id.clone(),
                f.child_id.clone(),
                "nope".into(),
            ],
        ),
        ("before", vec!["web".into(), "fresh".into(), f.worker_id[..12].into(), "/hc".into(), "nope".into()]),
        ("since", vec!["done0".into(), "web".into(), f.web_id.clone(), "nope".into()]),
        (
            "expose",
            vec![
                "9000".into(),
                "9000/tcp".into(),
                "80".into(),
                "8990-9010".into(),
                "9000/udp".into(),
                "a:b".into(),
                "x".into(),
            ],
        ),
        (
            "publish",
            vec![
                f.published.to_string(),
                format!("{}/tcp", f.published),
                "80".into(),
                "1-65535".into(),
                format!("{}/udp", f.published),
                "y".into(),
            ],
        ),
        ("exited", s(&["0", "3", "1", "x"])),
        ("health", s(&["healthy", "none", "starting", "unhealthy", "bogus"])),
        ("id", vec![f.web_id[..12].into(), f.web_id.clone(), f.worker_id[..5].into(), "nope".into(), "".into()]),
        ("is-task", s(&["true", "false", "1", "bogus"])),
        ("isolation", s(&["default", "process", "hyperv", ""])),
        ("label", s(&["a=1", "b=x", "a", "a=2", "c", "b", "nope", "a=", "=1"])),
        ("name", s(&["web", "/web", "^/web$", "^w", "er", "[", "0$", "node-1/web"])),
        ("network", vec!["net1".into(), f.net1_id[..12].into(), "none".into(), "host".into(), "nope".into()]),
        ("status", s(&["running", "exited", "created", "paused", "restarting", "dead", "removing", "bogus"])),
        ("volume", s(&["vol1", "/data", "/tmp", "/hostdir", "nope"])),
        ("node", s(&["node-1"])),
    ]
}

/// `{"k":[v...]}` encoded for a query.
fn filters(pairs: &[(&str, Vec<&str>)]) -> String {
    let mut m = serde_json::Map::new();
    for (k, vs) in pairs {
        let entry = m.entry(k.to_string()).or_insert_with(|| json!([]));
        for v in vs {
            entry.as_array_mut().unwrap().push(json!(v));
        }
    }
    enc(&serde_json::Value::Object(m).to_string())
}

/// Each key alone with each value, each key with its first two values, every pair of keys
/// (first values), and the shapes an engine refuses.
pub fn filter_cases(route: &str, table: &[(&'static str, Vec<String>)], extra: &[&str]) -> Vec<(String, Req)> {
    let mut out = Vec::new();
    let join = |q: String| if route.contains('?') { format!("{route}&{q}") } else { format!("{route}?{q}") };
    for (k, vs) in table {
        for v in vs {
            out.push((format!("{route} {k}"), Req::get(join(format!("filters={}", filters(&[(k, vec![v])]))))));
        }
        // Several `before` or `since` values: an engine takes one at random (a Go map).
        if vs.len() > 1 && !matches!(*k, "before" | "since") {
            out.push((
                format!("{route} {k} (two values)"),
                Req::get(join(format!("filters={}", filters(&[(k, vec![&vs[0], &vs[1]])])))),
            ));
        }
    }
    for (i, (k1, v1)) in table.iter().enumerate() {
        for (k2, v2) in &table[i + 1..] {
            out.push((
                format!("{route} (two keys)"),
                Req::get(join(format!("filters={}", filters(&[(k1, vec![&v1[0]]), (k2, vec![&v2[0]])])))),
            ));
        }
    }
    let k0 = table[0].0;
    let v0 = &table[0].1[0];
    for raw in [
        "{".to_string(),
        "[]".to_string(),
        "".to_string(),
        "{}".to_string(),
        format!("{{\"{k0}\":\"{v0}\"}}"),
        format!("{{\"{k0}\":{{\"{v0}\":true}}}}"),
        format!("{{\"{k0}\":{{\"{v0}\":false}}}}"),
        format!("{{\"{k0}\":[1]}}"),
        "{\"bogus\":[\"x\"]}".to_string(),
    ] {
        out.push((format!("{route} malformed or unknown"), Req::get(join(format!("filters={}", enc(&raw))))));
    }
    for q in extra {
        out.push((format!("{route} parameters"), Req::get(join(q.to_string()))));
    }
    out
}

pub fn container_list_cases(f: &Fixtures) -> Vec<(String, Req)> {
    let table = container_filters(f);
    let mut out = filter_cases(
        "/containers/json",
        &table,
        &[
            "all=1",
            "all=0",
            "all=true",
            "limit=1",
            "limit=3",
            "limit=0",
            "limit=-1",
            "limit=x",
            "size=1",
            "all=1&size=1",
            "before=web",
            "since=web",
            "all=1&limit=2",
        ],
    );
    let all: Vec<(String, Req)> = out
        .iter()
        .filter(|(g, _)| !g.ends_with("parameters"))
        .map(|(g, r)| (g.clone(), Req::get(r.path.replacen('?', "?all=1&", 1))))
        .collect();
    out.extend(all);
    out.push((
        "/containers/json label (object form)".into(),
        Req::get(format!("/containers/json?all=1&filters={}", enc(r#"{"label":{"a=1":true,"b=x":true}}"#))),
    ));
    out.push(("unknown routes".into(), Req::get("/containers/ps?all=1")));
    out
}

pub fn image_list_cases() -> Vec<(String, Req)> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let table = vec![
        ("before", s(&["child:1", "busybox", "nope"])),
        ("since", s(&["busybox", "child:1", "nope"])),
        ("dangling", s(&["true", "false", "1", "bogus"])),
        ("label", s(&["il", "il=1", "il=2", "nope"])),
        ("reference", s(&["busybox", "busybox:latest", "child", "child:*", "b*", "nope", "*"])),
        ("node", s(&["node-1"])),
    ];
    filter_cases("/images/json", &table, &["all=1", "digests=1", "all=1&digests=1", "filter=busybox", "filter=nope"])
}

pub fn network_list_cases(f: &Fixtures) -> Vec<(String, Req)> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let table = vec![
        ("driver", s(&["bridge", "null", "host", "nope"])),
        ("id", vec![f.net1_id[..12].to_string(), f.net1_id.clone(), "nope".into()]),
        ("label", s(&["nl", "nl=1", "nl=2", "nope"])),
        ("name", s(&["net1", "net", "none", "nope", "node-1/net1"])),
        ("scope", s(&["local", "swarm", "global", "bogus"])),
        ("type", s(&["custom", "builtin", "bogus"])),
        ("dangling", s(&["true", "false", "bogus"])),
        ("node", s(&["node-1"])),
    ];
    filter_cases("/networks", &table, &[])
}

pub fn volume_list_cases() -> Vec<(String, Req)> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let table = vec![
        ("dangling", s(&["true", "false", "1", "bogus"])),
        ("driver", s(&["local", "nope"])),
        ("label", s(&["v", "v=1", "v=3", "nope"])),
        ("name", s(&["vol1", "vol", "nope", "node-1/vol1"])),
        ("node", s(&["node-1"])),
    ];
    filter_cases("/volumes", &table, &[])
}

pub fn event_cases(f: &Fixtures) -> Vec<(String, Req)> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let table = vec![
        ("container", vec!["web".into(), f.web_id[..12].to_string(), "nope".into()]),
        ("event", s(&["start", "create", "die", "pause", "nope"])),
        ("image", s(&["busybox", "child:1", "nope"])),
        ("label", s(&["a=1", "a", "il=1", "nope"])),
        ("network", vec!["net1".to_string(), f.net1_id.clone(), "nope".into()]),
        ("type", s(&["container", "network", "volume", "image", "daemon", "bogus"])),
        ("volume", s(&["vol1", "nope"])),
    ];
    let route = format!("/events?since={}&until={}", f.since, f.until);
    let mut out: Vec<(String, Req)> =
        filter_cases(&route, &table, &[]).into_iter().map(|(g, r)| (g.replace(&route, "/events"), r)).collect();
    out.push(("/events parameters".into(), Req::get(route.clone())));
    out.push(("/events parameters".into(), Req::get(format!("/events?since=x&until={}", f.until))));
    // dockerd's timestamp parsing: integers, a fraction after a dot, and Go's words for the rest.
    for bad in ["inf", "abc", "1.", "1.5e3", "99999999999999999999", "-"] {
        out.push(("/events parameters".into(), Req::get(format!("/events?since={}&until={}", f.since, enc(bad)))));
    }
    out.push(("/events parameters".into(), Req::get(format!("/events?since=nan&until={}", f.until))));
    out.push(("/events parameters".into(), Req::get(format!("/events?since={}&until={}", f.until, f.since))));
    out
}

/// Object routes, errors for missing objects, bad parameters and bad bodies, and routes no
/// engine or swarm serves.
pub fn route_cases(f: &Fixtures) -> Vec<(String, Req)> {
    let g = |s: &str| Req::get(s);
    let p = |s: &str, b: Option<&str>| Req::new("POST", s, b);
    let d = |s: &str| Req::new("DELETE", s, None);
    let web = &f.web_id;
    let mut out: Vec<(&str, Req)> = vec![
        ("/_ping", g("/_ping")),
        ("/_ping", Req::new("HEAD", "/_ping", None)),
        ("/version", g("/version")),
        ("/info", g("/info")),
        ("GET /containers/{id}/json", g("/containers/web/json")),
        ("GET /containers/{id}/json", g(&format!("/containers/{web}/json"))),
        ("GET /containers/{id}/json", g(&format!("/containers/{}/json", &web[..12]))),
        ("GET /containers/{id}/json", g("/containers/fresh/json?size=1")),
        ("GET /containers/{id}/json", g("/containers/nope/json")),
        ("GET /containers/{id}/json", g("/containers/node-1/web/json")),
        ("GET /containers/{id}/top", g("/containers/web/top")),
        ("GET /containers/{id}/top", g("/containers/fresh/top")),
        ("GET /containers/{id}/top", g("/containers/nope/top")),
        ("GET /containers/{id}/logs", g("/containers/fail3/logs?stdout=1&stderr=1")),
        ("GET /containers/{id}/logs", g("/containers/web/logs")),
        ("GET /containers/{id}/logs", g("/containers/nope/logs?stdout=1")),
        ("GET /containers/{id}/changes", g("/containers/nope/changes")),
        ("GET /containers/{id}/changes", g("/containers/worker/changes")),
        ("GET /containers/{id}/export", g("/containers/fresh/export")),
        ("GET /containers/{id}/stats", g("/containers/fresh/stats?stream=0")),
        ("GET /containers/{id}/archive", g("/containers/web/archive?path=/bin/busybox")),
        ("HEAD /containers/{id}/archive", Req::new("HEAD", "/containers/web/archive?path=/bin", None)),
        ("GET /images/{name}/get", g("/images/child:1/get")),
        ("GET /images/get", g("/images/get?names=child:1&names=busybox")),
        ("GET /containers/{id}/export", g("/containers/nope/export")),
        ("GET /containers/{id}/stats", g("/containers/nope/stats?stream=0")),
        ("GET /containers/{id}/archive", g("/containers/web/archive?path=/nope")),
        ("GET /containers/{id}/archive", g("/containers/nope/archive?path=/")),
        ("HEAD /containers/{id}/archive", Req::new("HEAD", "/containers/web/archive?path=/nope", None)),
        ("POST /containers/{id}/start", p("/containers/web/start", None)),
        ("POST /containers/{id}/start", p("/containers/nope/start", None)),
        ("POST /containers/{id}/stop", p("/containers/fresh/stop", None)),
        ("POST /containers/{id}/stop", p("/containers/nope/stop?t=0", None)),
        ("POST /containers/{id}/stop", p("/containers/web/stop?t=x", None)),
        ("POST /containers/{id}/kill", p("/containers/fresh/kill", None)),
        ("POST /containers/{id}/kill", p("/containers/nope/kill", None)),
        ("POST /containers/{id}/kill", p("/containers/web/kill?signal=BOGUS", None)),
        ("POST /containers/{id}/restart", p("/containers/nope/restart", None)),
        ("POST /containers/{id}/pause", p("/containers/nope/pause", None)),
        ("POST /containers/{id}/pause", p("/containers/fresh/pause", None)),
        ("POST /containers/{id}/unpause", p("/containers/web/unpause", None)),
        ("POST /containers/{id}/unpause", p("/containers/nope/unpause", None)),
        ("POST /containers/{id}/wait", p("/containers/done0/wait", None)),
        ("POST /containers/{id}/wait", p("/containers/nope/wait", None)),
        ("POST /containers/{id}/wait", p("/containers/done0/wait?condition=bogus", None)),
        ("POST /containers/{id}/rename", p("/containers/nope/rename?name=x1", None)),
        ("POST /containers/{id}/rename", p("/containers/web/rename?name=worker", None)),
        ("POST /containers/{id}/rename", p("/containers/web/rename?name=web", None)),
        ("POST /containers/{id}/rename", p("/containers/web/rename?name=bad%20name", None)),
        ("POST /containers/{id}/update", p("/containers/nope/update", Some("{}"))),
        ("POST /containers/{id}/resize", p("/containers/nope/resize?h=1&w=1", None)),
        ("POST /containers/{id}/attach", p("/containers/nope/attach?stream=1&stdout=1", None)),
        ("POST /containers/{id}/exec", p("/containers/nope/exec", Some(r#"{"Cmd":["true"]}"#))),
        ("POST /containers/{id}/exec", p("/containers/fresh/exec", Some(r#"{"Cmd":["true"]}"#))),
        ("POST /containers/{id}/exec", p("/containers/web/exec", Some("{"))),
        ("DELETE /containers/{id}", d("/containers/nope")),
        ("DELETE /containers/{id}", d("/containers/web")),
        ("POST /containers/create", p("/containers/create", Some("{"))),
        ("POST /containers/create", p("/containers/create", Some(r#"{"Image":"nope:1"}"#))),
        ("POST /containers/create", p("/containers/create?name=bad%20name", Some(r#"{"Image":"busybox"}"#))),
        ("POST /containers/create", p("/containers/create?name=web", Some(r#"{"Image":"busybox"}"#))),
        ("POST /containers/create", p("/containers/create", Some(r#"{"Image":"busybox","HostConfig":{"Memory":-5}}"#))),
        ("POST /commit", p("/commit?container=nope", None)),
        ("GET /exec/{id}/json", g("/exec/nope/json")),
        ("POST /exec/{id}/start", p("/exec/nope/start", Some("{}"))),
        ("POST /exec/{id}/resize", p("/exec/nope/resize?h=1&w=1", None)),
        ("GET /images/{name}/json", g("/images/busybox/json")),
        ("GET /images/{name}/json", g(&format!("/images/{}/json", f.child_id))),
        ("GET /images/{name}/json", g("/images/nope/json")),
        ("GET /images/{name}/history", g("/images/child:1/history")),
        ("GET /images/{name}/history", g("/images/nope/history")),
        ("GET /images/{name}/get", g("/images/nope/get")),
        ("GET /images/get", g("/images/get?names=nope")),
        ("POST /images/{name}/tag", p("/images/nope/tag?repo=x&tag=1", None)),
        ("POST /images/{name}/tag", p("/images/busybox/tag?repo=BAD", None)),
        ("POST /images/{name}/push", p("/images/nope/push", None)),
        ("DELETE /images/{name}", d("/images/nope")),
        ("DELETE /images/{name}", d("/images/child:1")),
        ("POST /images/create", p("/images/create", None)),
        ("GET /images/viz", g("/images/viz")),
        ("GET /networks/{id}", g("/networks/net1")),
        ("GET /networks/{id}", g(&format!("/networks/{}", &f.net1_id[..12]))),
        ("GET /networks/{id}", g("/networks/none")),
        ("GET /networks/{id}", g("/networks/nope")),
        ("GET /networks/{id}", g("/networks/node-1/net1")),
        ("DELETE /networks/{id}", d("/networks/nope")),
        ("DELETE /networks/{id}", d("/networks/host")),
        ("POST /networks/{id}/connect", p("/networks/nope/connect", Some(r#"{"Container":"web"}"#))),
        ("POST /networks/{id}/connect", p("/networks/net1/connect", Some(r#"{"Container":"nope"}"#))),
        ("POST /networks/{id}/disconnect", p("/networks/net1/disconnect", Some(r#"{"Container":"nope"}"#))),
        ("POST /networks/create", p("/networks/create", Some("{"))),
        ("POST /networks/create", p("/networks/create", Some(r#"{"Name":"net1","CheckDuplicate":true}"#))),
        ("POST /networks/create", p("/networks/create", Some(r#"{"Name":"x","Driver":"nope"}"#))),
        ("GET /volumes/{name}", g("/volumes/vol1")),
        ("GET /volumes/{name}", g("/volumes/nope")),
        ("GET /volumes/{name}", g("/volumes/node-1/vol1")),
        ("DELETE /volumes/{name}", d("/volumes/nope")),
        ("DELETE /volumes/{name}", d("/volumes/vol1")),
        ("POST /volumes/create", p("/volumes/create", Some("{"))),
        ("POST /volumes/create", p("/volumes/create", Some(r#"{"Name":"bad/name"}"#))),
        ("POST /volumes/create", p("/volumes/create", Some(r#"{"Name":"x","Driver":"nope"}"#))),
        ("POST /auth", p("/auth", Some("{"))),
        ("unknown routes", g("/nope")),
        ("unknown routes", g("/containers")),
        ("unknown routes", p("/containers/json", None)),
        ("unknown routes", g("/swarm")),
        ("unknown routes", g("/nodes")),
        ("unknown routes", g("/services")),
        ("unknown routes", g("/tasks")),
        ("unknown routes", g("/secrets")),
        ("unknown routes", g("/configs")),
        ("unknown routes", g("/v1.12/version")),
        ("unknown routes", g("/v9.99/version")),
    ];
    out.push(("GET /containers/{id}/json", g(&format!("/containers/{}/json", &f.worker_id[..12]))));
    out.into_iter().map(|(gr, r)| (gr.to_string(), r)).collect()
}

/// The same change made on the engine and through swarm, on twin objects (`tw`), in order.
pub fn twin_flows() -> Vec<Vec<(&'static str, Req)>> {
    let p = |s: &str, b: Option<&str>| Req::new("POST", s, b);
    let d = |s: &str| Req::new("DELETE", s, None);
    vec![
        vec![
            (
                "POST /containers/create",
                p(
                    "/containers/create?name=tw",
                    Some(
                        r#"{"Image":"busybox","Cmd":["sleep","60"],"Labels":{"t":"1"},"HostConfig":{"NetworkMode":"none"}}"#,
                    ),
                ),
            ),
            ("POST /containers/{id}/start", p("/containers/tw/start", None)),
            ("POST /containers/{id}/start", p("/containers/tw/start", None)),
            ("POST /containers/{id}/exec", p("/containers/tw/exec", Some(r#"{"Cmd":["sleep","5"]}"#))),
            ("POST /exec/{id}/start", p("/exec/{id}/start", Some(r#"{"Detach":true}"#))),
            ("GET /exec/{id}/json", Req::get("/exec/{id}/json")),
            ("POST /containers/{id}/pause", p("/containers/tw/pause", None)),
            ("POST /containers/{id}/unpause", p("/containers/tw/unpause", None)),
            ("POST /commit", p("/commit?container=tw&repo=twc&tag=1&comment=twin", Some("{}"))),
            ("DELETE /images/{name}", d("/images/twc:1")),
            ("POST /containers/{id}/kill", p("/containers/tw/kill?signal=KILL", None)),
            ("POST /containers/{id}/wait", p("/containers/tw/wait", None)),
            ("POST /containers/{id}/stop", p("/containers/tw/stop", None)),
            ("POST /containers/{id}/rename", p("/containers/tw/rename?name=tw2", None)),
            ("POST /containers/{id}/update", p("/containers/tw2/update", Some(r#"{"RestartPolicy":{"Name":"no"}}"#))),
            ("DELETE /containers/{id}", d("/containers/tw2?v=1")),
            ("DELETE /containers/{id}", d("/containers/tw2")),
        ],
        vec![
            ("POST /volumes/create", p("/volumes/create", Some(r#"{"Name":"twv","Labels":{"x":"1"}}"#))),
            ("POST /volumes/create", p("/volumes/create", Some(r#"{"Name":"twv"}"#))),
            ("DELETE /volumes/{name}", d("/volumes/twv")),
        ],
        vec![
            ("POST /networks/create", p("/networks/create", Some(r#"{"Name":"twn","Labels":{"x":"1"}}"#))),
            (
                "POST /containers/create",
                p(
                    "/containers/create?name=twc",
                    Some(r#"{"Image":"busybox","Cmd":["sleep","60"],"HostConfig":{"NetworkMode":"net1"}}"#),
                ),
            ),
            ("POST /networks/{id}/connect", p("/networks/twn/connect", Some(r#"{"Container":"twc"}"#))),
            ("POST /networks/{id}/connect", p("/networks/twn/connect", Some(r#"{"Container":"twc"}"#))),
            ("POST /networks/{id}/disconnect", p("/networks/twn/disconnect", Some(r#"{"Container":"twc"}"#))),
            ("DELETE /containers/{id}", d("/containers/twc?force=1")),
            ("DELETE /networks/{id}", d("/networks/twn")),
        ],
        vec![
            ("POST /images/{name}/tag", p("/images/busybox/tag?repo=twi&tag=1", None)),
            ("DELETE /images/{name}", d("/images/twi:1")),
        ],
    ]
}

/// Live windows (`until` ahead), alone and after a past (`since`), with each event filter key.
pub fn live_event_cases(since: u64, until: u64) -> Vec<(String, Req)> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let table = vec![
        ("container", s(&["lv", "nope"])),
        ("event", s(&["start", "create", "destroy"])),
        ("image", s(&["busybox"])),
        ("label", s(&["a=1", "lv", "a=2"])),
        ("network", s(&["lvn"])),
        ("type", s(&["container", "network", "volume"])),
        ("volume", s(&["lvv"])),
        ("scope", s(&["local"])),
    ];
    let mut out = Vec::new();
    for route in [format!("/events?until={until}"), format!("/events?since={since}&until={until}")] {
        let group = if route.contains("since") { "/events past and live" } else { "/events live" };
        for (g, r) in filter_cases(&route, &table, &[]) {
            if !g.contains("malformed") {
                out.push((g.replace(&route, group), r));
            }
        }
        out.push((group.to_string(), Req::get(route.clone())));
    }
    out
}

//! Real clients, end to end: the same compose project, docker-py calls and docker CLI
//! commands against one engine directly and through swarm; the outputs agree (node prefixes
//! aside) and nothing the user did not ask to remove is ever removed.

use std::collections::BTreeSet;
use std::process::Command;

use crate::report::Table;
use crate::support::*;

/// Drops `node-N/` prefixes and sorts lines, so that outputs compare as sets.
/// Also masks what compose makes differ on its own: the config hash covers the image ID (each
/// engine imported its own busybox), and one-off containers get random suffixes.
fn lines(text: &str) -> Vec<String> {
    let re = regex::Regex::new(r"node-\d+/").unwrap();
    let hash = regex::Regex::new(r"config-hash=[0-9a-f]{64}").unwrap();
    let run = regex::Regex::new(r"_run_[0-9a-f]{12}").unwrap();
    let mask = |l: &str| {
        run.replace_all(&hash.replace_all(&re.replace_all(l.trim_end(), ""), "config-hash=<hash>"), "_run_<id>")
            .into_owned()
    };
    let mut out: Vec<String> = text.lines().map(mask).filter(|l| !l.is_empty()).collect();
    out.sort();
    out
}

/// IDs of every container, read from the engines themselves.
fn engine_ids(es: &[&Engine]) -> BTreeSet<String> {
    es.iter()
        .flat_map(|e| {
            docker_ok(&e.host(), &["ps", "-a", "-q", "--no-trunc"]).lines().map(str::to_string).collect::<Vec<_>>()
        })
        .collect()
}

const COMPOSE: &str = "version: \"2\"\nservices:\n  web:\n    image: busybox\n    command: sh -c 'echo web-up; sleep 600'\n    network_mode: none\n    labels: [tier=front]\n    volumes: [data:/data]\n  worker:\n    image: busybox\n    command: sh -c 'echo worker-up; sleep 600'\n    network_mode: none\nvolumes:\n  data: {}\n";

#[test]
fn compose_docker_py_and_the_cli_see_the_same_through_swarm() {
    let compose = require("docker-compose", "docker-compose");
    let python = require("python3", "python3");
    let direct = Engine::start("node-d", &[]);
    let es = engines(&[("node-1", &[]), ("node-2", &[])]);
    let m = Manager::start(&nodes_url(&es), &[]);
    m.wait_healthy(2);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("docker-compose.yml"), COMPOSE).unwrap();
    let run_compose = |host: &str, args: &[&str]| {
        let o = run(Command::new(&compose)
            .current_dir(dir.path())
            .env("DOCKER_HOST", host)
            .env("COMPOSE_INTERACTIVE_NO_CLI", "1")
            .args(["-p", "proj"])
            .args(args));
        assert!(o.status.success(), "docker-compose {args:?} against {host}: {}{}", stdout(&o), stderr(&o));
        stdout(&o)
    };
    let mut table = Table::default();
    let swarm_engines: Vec<&Engine> = es.iter().collect();
    let steps: &[&[&str]] = &[
        &["up", "-d"],
        &["ps"],
        &["up", "-d", "--scale", "worker=3"],
        &["ps"],
        &["up", "-d", "--scale", "worker=1"],
        &["ps"],
        &["exec", "-T", "web", "echo", "exec-ok"],
        // dockerd answers an attach's 101 before it joins the streams: a one-off that writes at
        // once can beat it, directly or not, so it waits a moment.
        &["run", "--rm", "-T", "worker", "sh", "-c", "sleep 1; echo one-off"],
        &["stop"],
        &["ps"],
        &["start"],
        &["restart", "-t", "1"],
        &["ps"],
        &["logs", "--no-color", "web"],
    ];
    let mut web_id = String::new();
    for step in steps {
        let before = engine_ids(&swarm_engines);
        let want = run_compose(&direct.host(), step);
        let got = run_compose(&m.host(), step);
        let (want, got) = if step[0] == "ps" {
            // Compose prints columns padded to the longest name; compare the fields.
            let fields = |t: &str| {
                lines(t).iter().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>()
            };
            (fields(&want), fields(&got))
        } else {
            (lines(&want), lines(&got))
        };
        table.record_check(
            "docker-compose",
            &step.join(" "),
            want == got,
            format!("direct {want:?}\n    swarm  {got:?}"),
        );
        // Nothing removed that the step did not ask to remove: scaling down removes workers only.
        let after = engine_ids(&swarm_engines);
        let gone: Vec<&String> = before.difference(&after).collect();
        let web_now = m.docker(&["ps", "-a", "-q", "--no-trunc", "--filter", "label=com.docker.compose.service=web"]);
        if web_id.is_empty() {
            web_id = web_now.clone();
        }
        let allowed = matches!(step, [_, _, "--scale", "worker=1"]) || step[0] == "run";
        table.record_check(
            "nothing removed unasked",
            &step.join(" "),
            (gone.is_empty() || allowed) && web_now == web_id,
            format!("removed {gone:?}; web {web_now:?} was {web_id:?}"),
        );
    }
    // docker-py's high-level lists, with filters.
    let script = r#"
import docker, json, sys
c = docker.DockerClient(base_url=sys.argv[1])
out = {
  "running": sorted(x.name.split("/")[-1] for x in c.containers.list()),
  "all": sorted(x.name.split("/")[-1] for x in c.containers.list(all=True)),
  "two_labels": sorted(x.name.split("/")[-1] for x in c.containers.list(all=True, filters={"label": ["com.docker.compose.project=proj", "com.docker.compose.oneoff=False"]})),
  "status": sorted(x.name.split("/")[-1] for x in c.containers.list(filters={"status": "running", "label": "tier=front"})),
  "images": sorted(t for i in c.images.list() for t in i.tags),
  "networks": sorted(n.name.split("/")[-1] for n in c.networks.list()),
  "volumes": sorted(v.name.split("/")[-1] for v in c.volumes.list(filters={"name": "proj"})),
}
print(json.dumps(out, sort_keys=True))
"#;
    let py = |host: &str| {
        let o = run(Command::new(&python).args(["-c", script, host]));
        assert!(o.status.success(), "docker-py against {host}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        v
    };
    let (want, got) = (py(&direct.host()), py(&m.host()));
    for key in ["running", "all", "two_labels", "status", "images", "networks", "volumes"] {
        // swarm lists one copy of each node's own networks and volumes; as sets they agree.
        let set =
            |v: &serde_json::Value| v[key].as_array().unwrap().iter().map(|x| x.to_string()).collect::<BTreeSet<_>>();
        table.record_check(
            "docker-py",
            key,
            set(&want) == set(&got),
            format!("direct {}\n    swarm  {}", want[key], got[key]),
        );
    }
    // The docker CLI with filters and --format.
    let cli: &[&[&str]] = &[
        &["ps", "--format", "{{.Names}} {{.Image}} {{.Command}} {{.State}}"],
        &[
            "ps",
            "-a",
            "--filter",
            "label=com.docker.compose.project=proj",
            "--filter",
            "label=com.docker.compose.service=web",
            "--format",
            "{{.Names}} {{.Labels}}",
        ],
        &["ps", "-a", "--filter", "status=running", "--filter", "name=worker", "--format", "{{.Names}}"],
        &["ps", "-a", "--filter", "volume=proj_data", "--format", "{{.Names}} {{.Mounts}}"],
        &["ps", "--filter", "ancestor=busybox", "--format", "{{.Names}}"],
        &["images", "--format", "{{.Repository}}:{{.Tag}}"],
        &["images", "--filter", "reference=busybox", "--format", "{{.Repository}}"],
        &["network", "ls", "--filter", "type=builtin", "--format", "{{.Name}} {{.Driver}} {{.Scope}}"],
        &["volume", "ls", "--filter", "name=proj", "--format", "{{.Name}} {{.Driver}}"],
    ];
    let labels = regex::Regex::new(r"com\.docker\.swarm\.id=[0-9a-f]+,?").unwrap();
    for args in cli {
        let want = lines(&docker_ok(&direct.host(), args));
        let got: BTreeSet<String> = lines(&m.docker(args)).into_iter().collect();
        let want: BTreeSet<String> = want.into_iter().collect();
        let got: BTreeSet<String> = got.into_iter().map(|l| labels.replace_all(&l, "").into_owned()).collect();
        table.record_check("docker CLI", &args.join(" "), want == got, format!("direct {want:?}\n    swarm  {got:?}"));
    }
    let since =
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 120).to_string();
    let until = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    let events = [
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "type=container",
        "--filter",
        "event=create",
        "--filter",
        "label=com.docker.compose.project=proj",
        "--format",
        "{{.Actor.Attributes.name}}",
    ];
    let want: BTreeSet<String> = lines(&docker_ok(&direct.host(), &events)).into_iter().collect();
    let got: BTreeSet<String> = lines(&m.docker(&events)).into_iter().collect();
    table.record_check(
        "docker CLI",
        "events --filter type --filter event --filter label",
        want == got && !want.is_empty(),
        format!("direct {want:?}\n    swarm  {got:?}"),
    );
    // Down with volumes: the project's containers and volumes go, and only they.
    run_compose(&direct.host(), &["down", "-v"]);
    run_compose(&m.host(), &["down", "-v"]);
    let left = m.docker(&["ps", "-a", "-q"]);
    let vols = m.docker(&["volume", "ls", "-q", "--filter", "name=proj"]);
    table.record_check(
        "docker-compose",
        "down -v",
        left.is_empty() && vols.is_empty(),
        format!("containers {left:?}, volumes {vols:?}"),
    );
    table.finish("real clients, directly and through swarm");
}

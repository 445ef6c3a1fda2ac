//! Test harness: real dockerd engines and real managers, started per test and stopped by pid.
//! A missing tool fails the test with the package to install; nothing is skipped.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod certs;
mod cli_loop;
mod forwarder;
mod haproxy;
mod hollow;
mod prometheus;
mod raft;
mod tty;
#[allow(unused_imports)]
pub use certs::Certs;
#[allow(unused_imports)]
pub use cli_loop::{CliLoop, Ran};
#[allow(unused_imports)]
pub use forwarder::Forwarder;
#[allow(unused_imports)]
pub use haproxy::LoadBalancer;
#[allow(unused_imports)]
pub use hollow::Hollow;
#[allow(unused_imports)]
pub use prometheus::Prometheus;
#[allow(unused_imports)]
pub use raft::{members_rows, JoinedGroup, Partition, RaftGroup, FIRST_UID};
#[allow(unused_imports)]
pub use tty::{attach_session, interactive_session, Tty};

/// The docker CLI users run today.
pub const DOCKER_CLI: &str = "/usr/local/bin/docker";

/// How long to wait for things that should happen, scaled by `SWARM_TEST_PATIENCE_MS`.
pub fn patience(base: Duration) -> Duration {
    match std::env::var("SWARM_TEST_PATIENCE_MS").ok().and_then(|v| v.parse::<u64>().ok()) {
        Some(ms) => base.max(Duration::from_millis(ms)),
        None => base,
    }
}

/// Polls `pred` until it holds or `timeout` passes; panics with `what` otherwise.
pub fn wait_until(timeout: Duration, what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + patience(timeout);
    loop {
        if pred() {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Fails with the package to install when a tool is missing.
pub fn require(tool: &str, package: &str) -> PathBuf {
    let found = if tool.contains('/') {
        Path::new(tool).exists().then(|| PathBuf::from(tool))
    } else {
        std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(tool)).find(|c| c.exists()))
    };
    found.unwrap_or_else(|| panic!("`{tool}` is missing: install {package} (the README's test command does)"))
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("local addr").port()
}

fn unique_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir_in(std::env::temp_dir()).expect("temp dir")
}

/// A busybox root filesystem tarball made from Debian's static busybox, built once.
pub fn busybox_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let busybox = require("/bin/busybox", "busybox-static");
        let dir = std::env::temp_dir().join(format!("swarm-test-busybox-{}", std::process::id()));
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("bin")).expect("mkdir");
        std::fs::copy(&busybox, root.join("bin/busybox")).expect("copy busybox");
        for applet in [
            "sh", "sleep", "echo", "cat", "ls", "httpd", "nc", "true", "env", "hostname", "top", "ps", "wget", "stty",
            "false",
        ] {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
        let tar = dir.join("busybox.tar");
        let ok =
            Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").status().expect("tar").success();
        assert!(ok, "tar of busybox root failed");
        tar
    })
}

/// The cluster secret file and the join token file of every manager and join agent the tests
/// start, made once with the real `swarm create` and `swarm join-token`. Readable by the
/// unprivileged users some managers run as.
pub fn control_files() -> &'static (String, String) {
    static FILES: OnceLock<(String, String)> = OnceLock::new();
    FILES.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("swarm-test-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let secret = dir.join("cluster-secret");
        let o = run(Command::new(env!("CARGO_BIN_EXE_swarm")).arg("create"));
        assert!(o.status.success(), "swarm create: {}", stderr(&o));
        std::fs::write(&secret, &o.stdout).expect("write the secret");
        let o =
            run(Command::new(env!("CARGO_BIN_EXE_swarm")).args(["join-token", "--cluster-secret-file"]).arg(&secret));
        assert!(o.status.success(), "swarm join-token: {}", stderr(&o));
        let token = dir.join("join-token");
        std::fs::write(&token, &o.stdout).expect("write the join token");
        for p in [&dir, &secret, &token] {
            let mode = if p == &dir { 0o755 } else { 0o644 };
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
        (secret.display().to_string(), token.display().to_string())
    })
}

/// `--cluster-secret-file` of the tests' managers.
pub fn secret_file() -> &'static str {
    &control_files().0
}

/// Headers that sign `method path` (with no body) as a manager of the tests' clusters.
pub fn manager_signed(method: &str, path: &str) -> Vec<(String, String)> {
    let secret = swarm::auth::ClusterSecret::read(Path::new(secret_file())).expect("the tests' secret");
    let method: http::Method = method.parse().expect("method");
    secret
        .manager_signer()
        .headers(&method, path, b"")
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect()
}

/// `--join-token-file` of the tests' join agents.
pub fn join_token_file() -> &'static str {
    &control_files().1
}

/// The first `n` lines of a child's output, each within `bound`: a silent stream fails the
/// test instead of hanging it.
pub fn lines_within(out: impl Read + Send + 'static, n: usize, bound: Duration) -> Vec<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (0..n)
        .map(|i| {
            rx.recv_timeout(patience(bound))
                .unwrap_or_else(|_| panic!("line {i} of the stream never came within {bound:?}"))
        })
        .collect()
}

/// Runs a command, returning its output; panics if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A docker CLI command against `host`, with a private config dir.
pub fn docker_cmd(host: &str) -> Command {
    let cli = require(DOCKER_CLI, "the docker CLI 28.x at /usr/local/bin/docker");
    let mut c = Command::new(cli);
    static CONFIG: OnceLock<PathBuf> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("swarm-test-docker-config-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    });
    c.env("DOCKER_HOST", host).env("DOCKER_CONFIG", config).env_remove("DOCKER_API_VERSION");
    c
}

/// Runs the docker CLI and asserts success; returns trimmed stdout.
pub fn docker_ok(host: &str, args: &[&str]) -> String {
    let o = run(docker_cmd(host).args(args));
    assert!(o.status.success(), "docker {args:?} failed: {}{}", stdout(&o), stderr(&o));
    stdout(&o).trim().to_string()
}

/// Runs the docker CLI expecting failure; returns stderr.
pub fn docker_err(host: &str, args: &[&str]) -> String {
    let o = run(docker_cmd(host).args(args));
    assert!(!o.status.success(), "docker {args:?} should have failed: {}", stdout(&o));
    stderr(&o)
}

/// Sends `sig` (a name: STOP, CONT, TERM, ...) to the process `pid`.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).stderr(Stdio::null()).status();
}

/// SIGTERM, then SIGKILL after `grace`.
pub fn terminate(pid: u32, grace: Duration) {
    signal(pid, "TERM");
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The group holds dockerd's own containerd; it was started as its leader by us. Processes
    // that lead no group (etcd) are killed by pid.
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).stderr(Stdio::null()).status();
    signal(pid, "KILL");
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2) == Some("Z"))
        .unwrap_or(true)
}

// === Engine ===

/// A real dockerd with its own hostname, data root, exec root, key and loopback port.
pub struct Engine {
    /// Node name (its UTS hostname).
    pub name: String,
    /// `127.0.0.1:port`.
    pub addr: String,
    labels: Vec<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
    key: Option<PathBuf>,
    /// A directory with ca.pem, cert.pem and key.pem: the engine then serves TCP with `--tlsverify`.
    tls: Option<PathBuf>,
}

impl Engine {
    /// Starts an engine that shares `clone_of`'s identity key, as a cloned machine would.
    pub fn start_clone(name: &str, clone_of: &Engine) -> Engine {
        let dir = unique_dir(&format!("swarm-engine-{name}-"));
        let addr = format!("127.0.0.1:{}", free_port());
        let key = Some(clone_of.dir.path().join("key.json"));
        let mut e = Engine { name: name.to_string(), addr, labels: vec![], dir, child: None, key, tls: None };
        e.spawn();
        e.wait_ready();
        e
    }

    /// Starts an engine named `name` with engine labels, imports busybox, waits until ready.
    pub fn start(name: &str, labels: &[&str]) -> Engine {
        Engine::start_with(name, labels, None)
    }

    /// Starts an engine whose TCP socket requires TLS with the certificates in `tls`
    /// (ca.pem, cert.pem, key.pem), as `dockerd --tlsverify`.
    pub fn start_tls(name: &str, tls: &Path) -> Engine {
        Engine::start_with(name, &[], Some(tls.to_path_buf()))
    }

    fn start_with(name: &str, labels: &[&str], tls: Option<PathBuf>) -> Engine {
        require("dockerd", "docker.io");
        require("unshare", "util-linux");
        let dir = unique_dir(&format!("swarm-engine-{name}-"));
        let addr = format!("127.0.0.1:{}", free_port());
        let mut e = Engine {
            name: name.to_string(),
            addr,
            labels: labels.iter().map(|s| s.to_string()).collect(),
            dir,
            child: None,
            key: None,
            tls,
        };
        e.spawn();
        e.wait_ready();
        let o = run(docker_cmd(&e.local_host())
            .args(["import", "-c", "CMD [\"/bin/sh\"]"])
            .arg(busybox_tar())
            .arg("busybox:latest"));
        assert!(o.status.success(), "import busybox into {name}: {}", stderr(&o));
        e
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        // Every engine on this machine would share /etc/docker/key.json, hence one engine ID.
        let key = self.key.clone().unwrap_or_else(|| d.join("key.json"));
        std::fs::write(d.join("daemon.json"), format!("{{\"deprecated-key-path\": \"{}\"}}", key.display()))
            .expect("daemon.json");
        let mut script = format!(
            "hostname {name}; exec dockerd --config-file {d}/daemon.json --data-root {d}/data --exec-root {d}/exec --pidfile {d}/pid \
             -H tcp://{addr} -H unix://{d}/sock --bridge=none --iptables=false --ip6tables=false --shutdown-timeout 1",
            name = self.name,
            d = d.display(),
            addr = self.addr
        );
        for l in &self.labels {
            script.push_str(&format!(" --label {l}"));
        }
        if let Some(t) = &self.tls {
            script.push_str(&format!(
                " --tlsverify --tlscacert {t}/ca.pem --tlscert {t}/cert.pem --tlskey {t}/key.pem",
                t = t.display()
            ));
        }
        let log = std::fs::File::create(d.join("log")).expect("log");
        let child = Command::new("unshare")
            .args(["--uts", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start dockerd");
        self.child = Some(child);
    }

    /// The address the harness itself uses: the unix socket for a TLS engine, else TCP.
    fn local_host(&self) -> String {
        if self.tls.is_some() {
            self.sock()
        } else {
            self.host()
        }
    }

    fn wait_ready(&self) {
        let host = self.local_host();
        let log = self.dir.path().join("log");
        wait_until(Duration::from_secs(60), &format!("engine {} answers", self.name), || {
            run(docker_cmd(&host).args(["version", "--format", "{{.Server.Version}}"])).status.success()
        });
        let _ = log;
    }

    /// `tcp://addr`.
    pub fn host(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    /// `unix:///…/sock`: the engine's unix socket.
    pub fn sock(&self) -> String {
        format!("unix://{}", self.dir.path().join("sock").display())
    }

    /// dockerd's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops dockerd (SIGTERM, as `systemctl stop docker`) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(child.id(), Duration::from_secs(30));
            let _ = child.wait();
        }
    }

    /// Starts dockerd again with the same data.
    pub fn restart(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(self.dir.path().join("pid"));
        self.spawn();
        self.wait_ready();
    }

    /// Freezes dockerd (SIGSTOP): it keeps its socket but answers nothing. Returns once the
    /// kernel shows it stopped, so that what follows meets a frozen engine.
    pub fn freeze(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, "STOP");
            let stopped = || {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('T')))
            };
            wait_until(Duration::from_secs(5), "dockerd is stopped", stopped);
        }
    }

    /// Resumes a frozen dockerd.
    pub fn thaw(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, "CONT");
        }
    }

    /// Names of containers on this engine, directly.
    pub fn container_names(&self) -> Vec<String> {
        docker_ok(&self.host(), &["ps", "-a", "--format", "{{.Names}}"]).lines().map(str::to_string).collect()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.thaw();
        // Engines share the host's network namespace: the bridge of each network they made
        // outlives them and, left there, uses up the address pools of the engines that follow.
        let bridges = self.bridges();
        self.stop();
        for b in bridges {
            let _ = Command::new("ip").args(["link", "delete", &b]).stderr(Stdio::null()).status();
        }
        self.kill_orphaned_shims();
    }
}

impl Engine {
    /// Kills, by pid, the containerd shims (and so the containers) this engine's daemon left
    /// behind: a daemon stopped while it was restarting or hung does not reap them.
    fn kill_orphaned_shims(&self) {
        let ours = self.dir.path().to_string_lossy().into_owned();
        let mut shims = Vec::new();
        let mut parents = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            if cmdline.starts_with("/usr/bin/containerd-shim") && cmdline.contains(&ours) {
                shims.push(pid);
            }
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // The parent pid is the second field after the command, which ends at the last ')'.
            if let Some(ppid) = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok())
            {
                parents.push((pid, ppid));
            }
        }
        // The containers first (a shim's children), then the shims.
        for (pid, _) in parents.iter().filter(|(_, ppid)| shims.contains(ppid)) {
            signal(*pid, "KILL");
        }
        for pid in shims {
            signal(pid, "KILL");
        }
    }

    /// `br-<id>` interfaces of this engine's bridge networks (asked with a bound: it may hang).
    fn bridges(&self) -> Vec<String> {
        let child = docker_cmd(&self.local_host())
            .args(["network", "ls", "-q", "--no-trunc", "--filter", "driver=bridge"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let Ok(mut child) = child else { return Vec::new() };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                let mut out = String::new();
                let _ = child.stdout.take().map(|mut o| o.read_to_string(&mut out));
                return out.lines().filter(|l| l.len() >= 12).map(|id| format!("br-{}", &id[..12])).collect();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        Vec::new()
    }
}

/// Starts several engines in parallel.
pub fn engines(specs: &[(&str, &[&str])]) -> Vec<Engine> {
    std::thread::scope(|s| {
        let handles: Vec<_> = specs.iter().map(|(name, labels)| s.spawn(move || Engine::start(name, labels))).collect();
        handles.into_iter().map(|h| h.join().expect("engine start")).collect()
    })
}

// === Manager ===

/// A real `swarm manage` process.
pub struct Manager {
    /// `127.0.0.1:port`.
    pub addr: String,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Manager {
    /// Starts `swarm manage` on a free port over `discovery`, with test-friendly timing unless
    /// `extra` overrides it; waits until it answers `/_ping`.
    pub fn start(discovery: &str, extra: &[&str]) -> Manager {
        Manager::start_on(free_port(), discovery, extra)
    }

    /// Like [`Manager::start`] on a given port.
    pub fn start_on(port: u16, discovery: &str, extra: &[&str]) -> Manager {
        Manager::start_as(port, discovery, extra, None)
    }

    /// Like [`Manager::start_on`], run as user `uid` when given (to single its traffic out
    /// with iptables' owner match).
    pub fn start_as(port: u16, discovery: &str, extra: &[&str], uid: Option<u32>) -> Manager {
        Manager::start_under(&[], port, discovery, extra, uid)
    }

    /// Like [`Manager::start_as`], run by `wrapper` (a command that ends by exec'ing its
    /// arguments, so that the pid stays the manager's).
    pub fn start_under(wrapper: &[&str], port: u16, discovery: &str, extra: &[&str], uid: Option<u32>) -> Manager {
        let dir = unique_dir("swarm-manager-");
        let addr = format!("127.0.0.1:{port}");
        let log = dir.path().join("log");
        let file = std::fs::File::create(&log).expect("log");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_swarm"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_swarm")),
        };
        cmd.args(["manage", "-H", &addr]);
        if !extra.contains(&"--cluster-secret-file") {
            cmd.args(["--cluster-secret-file", secret_file()]);
        }
        if !extra.iter().any(|a| a.starts_with("--engine-refresh")) {
            cmd.args(["--engine-refresh-min-interval", "2s", "--engine-refresh-max-interval", "4s"]);
        }
        cmd.args(extra).arg(discovery);
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .env("RUST_LOG", "info,openraft=off")
            .spawn()
            .expect("start swarm manage");
        let m = Manager { addr, child: Some(child), log, _dir: dir };
        if extra.iter().any(|a| *a == "--tls" || *a == "--tlsverify") {
            wait_until(Duration::from_secs(20), "the manager listens", || TcpStream::connect(&m.addr).is_ok());
        } else {
            wait_until(Duration::from_secs(20), "the manager answers /_ping", || {
                http(&m.addr, "GET", "/_ping", None).0 == 200
            });
        }
        m
    }

    /// `tcp://addr`.
    pub fn host(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    /// The manager's process ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The manager's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `docker info` shows `n` healthy nodes.
    pub fn wait_healthy(&self, n: usize) {
        self.wait_healthy_within(n, Duration::from_secs(60));
    }

    /// Like [`Manager::wait_healthy`], within `bound`.
    pub fn wait_healthy_within(&self, n: usize, bound: Duration) {
        wait_until(bound, &format!("{n} nodes are Healthy"), || {
            self.node_states().iter().filter(|(_, s)| s == "Healthy").count() == n
        });
    }

    /// (node name, status) pairs from `docker info`.
    pub fn node_states(&self) -> Vec<(String, String)> {
        let o = run(docker_cmd(&self.host()).args(["info"]));
        let text = stdout(&o);
        let mut out = Vec::new();
        let mut current = None;
        for line in text.lines() {
            let t = line.trim_start();
            if let Some(status) = t.strip_prefix("└ Status: ") {
                if let Some(name) = current.take() {
                    out.push((name, status.trim().to_string()));
                }
            } else if !t.starts_with('└') && line.starts_with("  ") && !line.starts_with("   ") && t.contains(": ") {
                current = t.split(": ").next().map(str::to_string);
            }
        }
        out
    }

    /// Runs the docker CLI against the manager and asserts success.
    pub fn docker(&self, args: &[&str]) -> String {
        docker_ok(&self.host(), args)
    }

    /// Runs the docker CLI against the manager expecting failure; returns stderr.
    pub fn docker_err(&self, args: &[&str]) -> String {
        docker_err(&self.host(), args)
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(child.id(), Duration::from_secs(10));
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- manager log ---\n{}", self.log());
        }
    }
}

/// `nodes://a,b,...` for these engines.
pub fn nodes_url(engines: &[Engine]) -> String {
    format!("nodes://{}", engines.iter().map(|e| e.addr.as_str()).collect::<Vec<_>>().join(","))
}

/// A minimal HTTP/1.1 exchange (no keep-alive): (status, headers, body).
pub fn http(addr: &str, method: &str, path: &str, body: Option<&[u8]>) -> (u16, String, Vec<u8>) {
    http_within(addr, method, path, body, Duration::from_secs(30))
}

/// [`http`] with a bound on waiting for the answer (a paused server accepts but never answers).
pub fn http_within(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    bound: Duration,
) -> (u16, String, Vec<u8>) {
    http_with_headers(addr, method, path, &[], body, bound)
}

/// [`http_within`] with extra request headers.
pub fn http_with_headers(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
    bound: Duration,
) -> (u16, String, Vec<u8>) {
    let Ok(mut s) = TcpStream::connect(addr) else { return (0, String::new(), Vec::new()) };
    let _ = s.set_read_timeout(Some(bound));
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new(), Vec::new());
    }
    if let Some(b) = body {
        let _ = s.write_all(b);
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..text_end]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut body = raw.get(text_end + 4..).unwrap_or_default().to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&raw[..pos]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = pos + 2;
        out.extend_from_slice(&raw[start..(start + size).min(raw.len())]);
        raw = raw.get(start + size + 2..).unwrap_or_default();
    }
    out
}

impl Manager {
    /// Starts a manager whose discovery URL names its own address (token discovery served by
    /// the manager itself).
    pub fn start_with(discovery: impl FnOnce(&str) -> String, extra: &[&str]) -> Manager {
        let port = free_port();
        let url = discovery(&format!("127.0.0.1:{port}"));
        Manager::start_on(port, &url, extra)
    }
}

// === etcd ===

/// A real etcd member, stopped by pid.
pub struct Etcd {
    /// Its name in the cluster.
    pub name: String,
    /// `127.0.0.1:port` for clients.
    pub client_addr: String,
    peer_addr: String,
    initial_cluster: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
    tls: Option<PathBuf>,
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl.
pub fn make_certs(dir: &Path) {
    require("openssl", "openssl");
    let sh = |script: &str| {
        let o = run(Command::new("sh").arg("-ec").arg(script).current_dir(dir));
        assert!(o.status.success(), "openssl: {}", stderr(&o));
    };
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=swarm-test-ca 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
        printf 'extendedKeyUsage=clientAuth\n' > client.ext
        for who in server client; do
          openssl req -newkey rsa:2048 -nodes -keyout $who.key -out $who.csr -subj /CN=$who 2>/dev/null
          openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $who.pem -days 2 -extfile $who.ext 2>/dev/null
        done");
}

impl Etcd {
    /// A one-member etcd.
    pub fn single() -> Etcd {
        Etcd::cluster(1).pop().expect("one member")
    }

    /// An `n`-member etcd cluster, started together.
    pub fn cluster(n: usize) -> Vec<Etcd> {
        require("etcd", "etcd-server");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial = (0..n).map(|i| format!("e{i}=http://127.0.0.1:{}", ports[i].1)).collect::<Vec<_>>().join(",");
        let mut members: Vec<Etcd> = (0..n)
            .map(|i| Etcd {
                name: format!("e{i}"),
                client_addr: format!("127.0.0.1:{}", ports[i].0),
                peer_addr: format!("127.0.0.1:{}", ports[i].1),
                initial_cluster: initial.clone(),
                dir: unique_dir("swarm-etcd-"),
                child: None,
                tls: None,
            })
            .collect();
        for m in &mut members {
            m.spawn();
        }
        for m in &members {
            m.wait_ready();
        }
        members
    }

    /// A one-member etcd that serves clients over TLS and requires client certificates signed
    /// by the CA in `certs` (see [`make_certs`]).
    pub fn single_tls(certs: &Path) -> Etcd {
        require("etcd", "etcd-server");
        let (client, peer) = (free_port(), free_port());
        let mut e = Etcd {
            name: "tls0".into(),
            client_addr: format!("127.0.0.1:{client}"),
            peer_addr: format!("127.0.0.1:{peer}"),
            initial_cluster: format!("tls0=http://127.0.0.1:{peer}"),
            dir: unique_dir("swarm-etcd-tls-"),
            child: None,
            tls: Some(certs.to_path_buf()),
        };
        e.spawn();
        let url = format!("etcd://{}/probe", e.client_addr);
        let opts = tls_opts(certs);
        wait_until(Duration::from_secs(30), "TLS etcd answers", || {
            let mut args = vec!["list".to_string(), "--timeout".into(), "2s".into()];
            args.extend(opts.iter().cloned());
            args.push(url.clone());
            run(Command::new(env!("CARGO_BIN_EXE_swarm")).args(&args)).status.success()
        });
        e
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("log")).expect("log");
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut cmd = Command::new("etcd");
        if let Some(certs) = &self.tls {
            cmd.arg("--cert-file").arg(certs.join("server.pem")).arg("--key-file").arg(certs.join("server.key"));
            cmd.arg("--trusted-ca-file").arg(certs.join("ca.pem")).arg("--client-cert-auth");
        }
        let child = cmd
            .args(["--name", &self.name, "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &format!("{scheme}://{}", self.client_addr)])
            .args(["--advertise-client-urls", &format!("{scheme}://{}", self.client_addr)])
            .args(["--listen-peer-urls", &format!("http://{}", self.peer_addr)])
            .args(["--initial-advertise-peer-urls", &format!("http://{}", self.peer_addr)])
            .args(["--initial-cluster", &self.initial_cluster, "--initial-cluster-state", "new"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
    }

    fn wait_ready(&self) {
        let addr = self.client_addr.clone();
        wait_until(Duration::from_secs(30), &format!("etcd {} is healthy", self.name), || {
            let (status, _, body) = http(&addr, "GET", "/health", None);
            status == 200 && String::from_utf8_lossy(&body).contains("true")
        });
    }

    /// Stops the member (SIGTERM).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A paused member cannot act on SIGTERM.
            signal(child.id(), "CONT");
            terminate(child.id(), Duration::from_secs(10));
            let _ = child.wait();
        }
    }

    /// Freezes the member (SIGSTOP): its connections stay open and answer nothing.
    pub fn pause(&self) {
        signal(self.pid(), "STOP");
    }

    /// Thaws a paused member (SIGCONT).
    pub fn resume(&self) {
        signal(self.pid(), "CONT");
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running member").id()
    }

    /// Starts the member again on its data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
        self.wait_ready();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `--discovery-opt kv.*` flags for the certificates of [`make_certs`].
pub fn tls_opts(certs: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for (k, f) in [("kv.cacertfile", "ca.pem"), ("kv.certfile", "client.pem"), ("kv.keyfile", "client.key")] {
        out.push("--discovery-opt".to_string());
        out.push(format!("{k}={}", certs.join(f).display()));
    }
    out
}

/// `etcd://a,b,c/prefix`.
pub fn etcd_url(members: &[Etcd], prefix: &str) -> String {
    format!("etcd://{}/{prefix}", members.iter().map(|m| m.client_addr.as_str()).collect::<Vec<_>>().join(","))
}

/// A `swarm join` process, stopped by pid.
pub struct Join {
    advertise: String,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Join {
    /// Registers `advertise` in `discovery` every `heartbeat` with `ttl`.
    pub fn start(advertise: &str, discovery: &str, heartbeat: &str, ttl: &str) -> Join {
        Join::start_with(advertise, discovery, heartbeat, ttl, &[])
    }

    /// Like [`Join::start`] with extra flags.
    pub fn start_with(advertise: &str, discovery: &str, heartbeat: &str, ttl: &str, extra: &[String]) -> Join {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarm"));
        cmd.args(["join", "--advertise", advertise, "--heartbeat", heartbeat, "--ttl", ttl]);
        if discovery.starts_with("swarm://") && !extra.iter().any(|a| a == "--join-token-file") {
            cmd.args(["--join-token-file", join_token_file()]);
        }
        let dir = unique_dir("swarm-join-");
        let log = dir.path().join("log");
        let file = std::fs::File::create(&log).expect("log");
        let child = cmd
            .args(extra)
            .arg(discovery)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .env("RUST_LOG", "info")
            .spawn()
            .expect("start swarm join");
        Join { advertise: advertise.to_string(), child, log, _dir: dir }
    }

    /// Kills it (SIGKILL): its registration must expire by itself.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Join {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- join {} log ---\n{}",
                self.advertise,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// `swarm list <discovery>`, sorted lines.
pub fn swarm_list(discovery: &str) -> Vec<String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarm"));
    cmd.args(["list", "--timeout", "5s", discovery]);
    if discovery.starts_with("swarm://") {
        cmd.args(["--join-token-file", join_token_file()]);
    }
    let o = run(&mut cmd);
    let mut lines: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    lines.sort();
    lines
}

impl Manager {
    /// A manager in an etcd-elected group, advertising its own address.
    pub fn start_replica(discovery: &str, extra: &[&str]) -> Manager {
        let port = free_port();
        let me = format!("127.0.0.1:{port}");
        let mut args = vec!["--replication", "--advertise", me.as_str()];
        args.extend_from_slice(extra);
        Manager::start_on(port, discovery, &args)
    }

    /// `Role` and `Primary` from `/info` (empty when it does not answer).
    pub fn role(&self) -> (String, String) {
        let (status, _, body) = http_within(&self.addr, "GET", "/info", None, Duration::from_secs(2));
        if status != 200 {
            return (String::new(), String::new());
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let pairs = v["SystemStatus"].as_array().cloned().unwrap_or_default();
        let get =
            |k: &str| pairs.iter().find(|p| p[0] == k).and_then(|p| p[1].as_str()).unwrap_or_default().to_string();
        (get("Role"), get("Primary"))
    }

    /// Sends a signal to the manager process.
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            signal(c.id(), sig);
        }
    }

    /// Whether the process has exited by itself (it is then reaped).
    pub fn has_exited(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(Some(_))),
            None => true,
        }
    }

    /// SIGKILL and reap.
    pub fn kill_hard(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and reap.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(c.id(), Duration::from_secs(10));
            let _ = c.wait();
        }
    }
}

/// Indexes of managers that say `Role: primary`.
pub fn primaries(ms: &[Manager]) -> Vec<usize> {
    ms.iter().enumerate().filter(|(_, m)| m.role().0 == "primary").map(|(i, _)| i).collect()
}

/// Opens a streaming GET and returns the body's raw bytes once `needle` has been seen `n`
/// times, proving the response streams rather than arriving at the end.
pub fn http_stream_until(addr: &str, path: &str, needle: &str, n: usize, bound: Duration) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let deadline = Instant::now() + patience(bound);
    let mut seen = Vec::new();
    let mut buf = [0u8; 16384];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => seen.extend_from_slice(&buf[..k]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("stream from {addr}{path} failed: {e}"),
        }
        let text = String::from_utf8_lossy(&seen);
        if text.matches(needle).count() >= n {
            return text.into_owned();
        }
    }
    panic!("{addr}{path}: saw {needle:?} fewer than {n} times within {bound:?}: {}", String::from_utf8_lossy(&seen));
}

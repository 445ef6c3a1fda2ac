//! `hollow-engine`: SIMULATED Docker engines, for scale benchmarks and scale tests only, never
//! in place of real engines in integration tests. One process serves N engines on loopback
//! ports, each with C running containers, and answers over HTTP the part of the Docker API a
//! manager calls: ping, version, info, container and image lists, inspect, create, start,
//! stop, kill, wait, remove, and an events stream with the events those changes make.
//! Containers run nothing: state changes are bookkeeping.
//!
//! `hollow-engine --engines 1000 --containers 30` prints one `127.0.0.1:PORT` line per engine,
//! then `ready`, and serves until killed. A process may hold about 20,000 open files here: run
//! several for large N.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::{json, Value};
use swarm::api::system::rfc3339;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

#[derive(Parser)]
#[command(about = "Simulated Docker engines on loopback, for scale benchmarks only")]
struct Args {
    /// Engines to serve, each on its own port.
    #[arg(long, default_value_t = 100)]
    engines: usize,
    /// Running containers each engine starts with.
    #[arg(long, default_value_t = 30)]
    containers: usize,
    /// Prefix of the engines' names (`<prefix>-<k>`), so that several processes differ.
    #[arg(long, default_value = "hollow")]
    name_prefix: String,
    /// CPUs each engine reports.
    #[arg(long, default_value_t = 64)]
    cpus: i64,
    /// Memory each engine reports, bytes.
    #[arg(long, default_value_t = 256 << 30)]
    memory: i64,
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

struct Container {
    id: String,
    name: String,
    image: String,
    labels: Value,
    host_config: Value,
    created: u64,
    running: bool,
    started_at: String,
    finished_at: String,
}

struct Engine {
    id: String,
    name: String,
    cpus: i64,
    memory: i64,
    containers: Mutex<BTreeMap<String, Container>>,
    events: broadcast::Sender<Bytes>,
    next: std::sync::atomic::AtomicU64,
}

fn now() -> (u64, u64, String) {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_secs(), d.as_nanos() as u64, rfc3339(SystemTime::now()))
}

impl Engine {
    fn new(k: usize, args: &Args) -> Engine {
        let name = format!("{}-{k}", args.name_prefix);
        let engine = Engine {
            id: format!("HOLLOW:{}:{k:06}", args.name_prefix.to_uppercase()),
            name,
            cpus: args.cpus,
            memory: args.memory,
            containers: Mutex::new(BTreeMap::new()),
            events: broadcast::channel(1024).0,
            next: std::sync::atomic::AtomicU64::new(0),
        };
        for c in 0..args.containers {
            let id = engine.create(&format!("preset-{c}"), json!({"Image": "busybox", "Labels": {}}));
            engine.set_running(&id, true);
        }
        engine
    }

    fn new_id(&self) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The separator keeps ("e-1", 10) and ("e-11", 0) apart.
        let seed = format!("{}#{}", self.name, n);
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut out = String::with_capacity(64);
        for round in 0..4u64 {
            for b in seed.bytes().chain(round.to_le_bytes()) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            out.push_str(&format!("{h:016x}"));
        }
        out
    }

    fn emit(&self, action: &str, c: &Container) {
        let (secs, nanos, _) = now();
        let mut attributes = c.labels.as_object().cloned().unwrap_or_default();
        attributes.insert("name".into(), json!(c.name));
        attributes.insert("image".into(), json!(c.image));
        let event = json!({
            "status": action, "id": c.id, "from": c.image, "Type": "container", "Action": action,
            "Actor": {"ID": c.id, "Attributes": attributes}, "scope": "local", "time": secs, "timeNano": nanos,
        });
        let _ = self.events.send(Bytes::from(format!("{event}\n")));
    }

    fn create(&self, name: &str, config: Value) -> String {
        let id = self.new_id();
        let c = Container {
            id: id.clone(),
            name: if name.is_empty() { format!("hollow_{}", &id[..12]) } else { name.to_string() },
            image: config["Image"].as_str().unwrap_or("busybox").to_string(),
            labels: if config["Labels"].is_object() { config["Labels"].clone() } else { json!({}) },
            host_config: config["HostConfig"].clone(),
            created: now().0,
            running: false,
            started_at: "0001-01-01T00:00:00Z".into(),
            finished_at: "0001-01-01T00:00:00Z".into(),
        };
        // As dockerd: the container is listed before its event goes out.
        let mut all = self.containers.lock();
        self.emit("create", &c);
        all.insert(id.clone(), c);
        id
    }

    fn set_running(&self, id: &str, running: bool) -> bool {
        let mut all = self.containers.lock();
        let Some(c) = all.get_mut(id) else { return false };
        if c.running != running {
            c.running = running;
            if running {
                c.started_at = now().2;
                self.emit("start", c);
            } else {
                c.finished_at = now().2;
                self.emit("kill", c);
                self.emit("die", c);
                self.emit("stop", c);
            }
        }
        true
    }

    fn resolve(&self, ident: &str) -> Option<String> {
        let all = self.containers.lock();
        if all.contains_key(ident) {
            return Some(ident.to_string());
        }
        let ident = ident.trim_start_matches('/');
        all.values().find(|c| c.name == ident || (ident.len() >= 3 && c.id.starts_with(ident))).map(|c| c.id.clone())
    }

    fn summary(c: &Container) -> Value {
        json!({
            "Id": c.id, "Names": [format!("/{}", c.name)], "Image": c.image, "ImageID": "sha256:hollow",
            "Command": "sleep 3600", "Created": c.created, "Ports": [], "Labels": c.labels,
            "State": if c.running { "running" } else { "exited" },
            "Status": if c.running { "Up" } else { "Exited (0)" },
            "HostConfig": {"NetworkMode": "default"}, "NetworkSettings": {"Networks": {}}, "Mounts": [],
        })
    }

    fn inspect(c: &Container) -> Value {
        json!({
            "Id": c.id, "Name": format!("/{}", c.name), "Image": "sha256:hollow", "Created": rfc3339(UNIX_EPOCH + std::time::Duration::from_secs(c.created)),
            "State": {
                "Status": if c.running { "running" } else { "exited" }, "Running": c.running, "Paused": false,
                "Restarting": false, "OOMKilled": false, "Dead": false, "Pid": if c.running { 1 } else { 0 },
                "ExitCode": 0, "Error": "", "StartedAt": c.started_at, "FinishedAt": c.finished_at,
            },
            "Config": {"Image": c.image, "Labels": c.labels, "Env": [], "Cmd": ["sleep", "3600"]},
            "HostConfig": if c.host_config.is_object() { c.host_config.clone() } else { json!({"NetworkMode": "default"}) },
            "NetworkSettings": {"Ports": {}, "Networks": {}}, "Mounts": [], "RestartCount": 0, "Driver": "overlay2",
        })
    }

    fn list(&self, query: &str) -> Value {
        let mut all = false;
        let mut ids: Option<Vec<String>> = None;
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "all" => all = v == "1" || v == "true",
                "filters" => {
                    let f: Value = serde_json::from_str(&v).unwrap_or_default();
                    if let Some(list) = f["id"].as_array() {
                        ids = Some(list.iter().filter_map(Value::as_str).map(str::to_string).collect());
                    }
                }
                _ => {}
            }
        }
        let containers = self.containers.lock();
        let wanted = |c: &&Container| {
            (all || c.running) && ids.as_ref().is_none_or(|ids| ids.iter().any(|i| c.id.starts_with(i.as_str())))
        };
        Value::Array(containers.values().filter(wanted).map(Engine::summary).collect())
    }

    fn info(&self) -> Value {
        let all = self.containers.lock();
        let running = all.values().filter(|c| c.running).count();
        json!({
            "ID": self.id, "Name": self.name, "NCPU": self.cpus, "MemTotal": self.memory, "Labels": ["hollow=true"],
            "Containers": all.len(), "ContainersRunning": running, "ContainersPaused": 0, "ContainersStopped": all.len() - running,
            "Images": 1, "Driver": "overlay2", "KernelVersion": "hollow", "OperatingSystem": "hollow engine (simulated)",
            "OSType": "linux", "Architecture": "x86_64", "ServerVersion": "20.10.24", "DockerRootDir": "/var/lib/docker",
        })
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("api-version", "1.41")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()).boxed());
    *r.status_mut() = status;
    r
}

fn not_found(what: &str) -> Response<Body> {
    json_response(StatusCode::NOT_FOUND, &json!({"message": format!("No such container: {what}")}))
}

async fn serve(engine: Arc<Engine>, req: Request<Incoming>) -> Result<Response<Body>, std::convert::Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    // Versioned paths (`/v1.41/...`) answer as unversioned ones.
    let path = match path.strip_prefix("/v1.") {
        Some(rest) => rest.split_once('/').map_or("/".to_string(), |(_, p)| format!("/{p}")),
        None => path,
    };
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let resp = match (&method, segs.as_slice()) {
        (&Method::GET | &Method::HEAD, ["_ping"]) => Response::new(Full::new(Bytes::from_static(b"OK")).boxed()),
        (&Method::GET, ["version"]) => json_response(
            StatusCode::OK,
            &json!({
                "Version": "20.10.24", "ApiVersion": "1.41", "MinAPIVersion": "1.12", "Os": "linux", "Arch": "amd64",
                "KernelVersion": "hollow", "GoVersion": "go1.19",
            }),
        ),
        (&Method::GET, ["info"]) => json_response(StatusCode::OK, &engine.info()),
        (&Method::GET, ["containers", "json"]) => json_response(StatusCode::OK, &engine.list(&query)),
        (&Method::GET, ["images", "json"]) => json_response(
            StatusCode::OK,
            &json!([{
                "Id": "sha256:hollow", "RepoTags": ["busybox:latest"], "RepoDigests": [], "Created": 0, "Size": 0, "Labels": {}, "Containers": -1,
            }]),
        ),
        (&Method::POST, ["images", "create"]) => {
            json_response(StatusCode::OK, &json!({"status": "Downloaded (simulated)"}))
        }
        (&Method::GET, ["events"]) => {
            let mut rx = engine.events.subscribe();
            let stream = async_stream(move |tx| async move {
                loop {
                    match rx.recv().await {
                        Ok(line) => {
                            if tx.send(Ok(Frame::data(line))).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
            Response::builder()
                .header("content-type", "application/json")
                .body(stream)
                .unwrap_or_else(|_| empty(StatusCode::INTERNAL_SERVER_ERROR))
        }
        (&Method::POST, ["containers", "create"]) => {
            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let config: Value = serde_json::from_slice(&body).unwrap_or_default();
            let name = form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "name")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            if !name.is_empty()
                && engine
                    .resolve(&name)
                    .is_some_and(|id| engine.containers.lock().get(&id).is_some_and(|c| c.name == name))
            {
                json_response(
                    StatusCode::CONFLICT,
                    &json!({"message": format!("Conflict. The container name \"/{name}\" is already in use.")}),
                )
            } else {
                let id = engine.create(&name, config);
                json_response(StatusCode::CREATED, &json!({"Id": id, "Warnings": []}))
            }
        }
        (_, ["containers", ident, rest @ ..]) => match engine.resolve(ident) {
            None => not_found(ident),
            Some(id) => match (&method, rest) {
                (&Method::GET, ["json"]) => match engine.containers.lock().get(&id) {
                    Some(c) => json_response(StatusCode::OK, &Engine::inspect(c)),
                    None => not_found(ident),
                },
                (&Method::POST, ["start"]) => {
                    empty(if engine.set_running(&id, true) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND })
                }
                (&Method::POST, ["stop" | "kill"]) => {
                    empty(if engine.set_running(&id, false) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND })
                }
                (&Method::POST, ["wait"]) => json_response(StatusCode::OK, &json!({"StatusCode": 0})),
                (&Method::DELETE, []) => {
                    engine.set_running(&id, false);
                    let gone = engine.containers.lock().remove(&id);
                    if let Some(c) = gone {
                        engine.emit("destroy", &c);
                    }
                    empty(StatusCode::NO_CONTENT)
                }
                _ => json_response(StatusCode::NOT_FOUND, &json!({"message": "page not found (hollow engine)"})),
            },
        },
        _ => json_response(StatusCode::NOT_FOUND, &json!({"message": "page not found (hollow engine)"})),
    };
    Ok(resp)
}

/// A streamed body fed by `produce` through a channel.
fn async_stream<F, Fut>(produce: F) -> Body
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Frame<Bytes>, std::convert::Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(produce(tx));
    StreamBody::new(tokio_stream_from(rx)).boxed()
}

fn tokio_stream_from<T: Send + 'static>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut listeners = Vec::with_capacity(args.engines);
    for k in 0..args.engines {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        println!("{}", listener.local_addr()?);
        listeners.push((Arc::new(Engine::new(k, &args)), listener));
    }
    println!("ready");
    let mut tasks = Vec::new();
    for (engine, listener) in listeners {
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of descriptors, most likely: wait rather than spin.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let engine = engine.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| serve(engine.clone(), req));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

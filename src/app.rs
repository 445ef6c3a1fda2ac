//! The composition root: the only module that builds every subsystem, wires discovery into the
//! cluster, spawns long-lived tasks and drains them on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn, Instrument};

use crate::api::{self, ApiState, Listener, StateInner};
use crate::cli::{Cli, Command, CreateArgs};
use crate::cluster::{Cluster, ClusterOptions};
use crate::config::{ConfigError, JoinConfig, ListConfig, ListenAddr, ManageConfig};
use crate::discovery::DiscoveryUrl;
use crate::discovery::{self, DiscoveryError, DiscoveryEvent};
use crate::etcd::EtcdMembers;
use crate::leadership::{self, etcd::EtcdElection, Leadership, LeadershipMetrics};
use crate::orchestrator::Orchestrator;
use crate::scheduler::Scheduler;

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// Bad flags or arguments (exit 64).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listen address could not be bound.
    #[error("failed to listen on {addr}{hint}")]
    Bind {
        /// The address.
        addr: String,
        /// A classic hint when the port is taken.
        hint: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Discovery failed.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// `swarm list` got nothing in time.
    #[error("Timed out")]
    Timeout,
    /// Metrics could not be registered.
    #[error("failed to register metrics")]
    Metrics(#[from] prometheus::Error),
    /// `swarm members` or `swarm snapshot` failed.
    #[error("{0}")]
    Admin(String),
    /// The embedded Raft could not start.
    #[error(transparent)]
    Raft(#[from] crate::leadership::raft::RaftFailure),
    /// The leadership runtime's thread could not start.
    #[error("cannot start the leadership runtime")]
    Runtime {
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Runs the command line.
pub async fn run(cli: Cli) -> Result<(), RunError> {
    if cli.version {
        println!("swarm version {}", crate::VERSION_LINE);
        return Ok(());
    }
    let Some(command) = cli.command else {
        return Err(ConfigError("a command is required. See 'swarm --help'.".into()).into());
    };
    match command {
        Command::Create(args) => create(&args),
        Command::List(args) => list(ListConfig::try_from(&args)?).await,
        Command::Join(args) => join(JoinConfig::try_from(&args)?).await,
        Command::Members(args) => crate::admin::members::run(&args).await.map_err(|e| RunError::Admin(e.to_string())),
        Command::Snapshot(args) => crate::admin::snapshot::run(&args).await.map_err(|e| RunError::Admin(e.to_string())),
        Command::JoinToken(args) => {
            let secret = crate::auth::ClusterSecret::read(std::path::Path::new(&args.cluster_secret_file))
                .map_err(ConfigError)?;
            println!("{}", secret.join_token());
            Ok(())
        }
        Command::Manage(args) => {
            info!(version = crate::VERSION, commit = crate::GIT_COMMIT, "swarm manage starting.");
            let mut config = ManageConfig::try_from(&*args)?;
            config.experimental = cli.experimental;
            App::build(config).await?.run(shutdown_signal()).await
        }
    }
}

fn create(args: &CreateArgs) -> Result<(), RunError> {
    if !args.extra.is_empty() {
        return Err(ConfigError("the `create` command takes no arguments. See 'swarm create --help'.".into()).into());
    }
    let token: [u8; 16] = rand::random();
    println!("{}", hex::encode(token));
    Ok(())
}

async fn list(config: ListConfig) -> Result<(), RunError> {
    let entries = tokio::time::timeout(config.timeout, discovery::fetch(&config.discovery, config.auth.as_ref()))
        .await
        .map_err(|_| RunError::Timeout)??;
    for e in entries {
        println!("{e}");
    }
    Ok(())
}

async fn join(config: JoinConfig) -> Result<(), RunError> {
    if !config.delay.is_zero() {
        let wait = rand::random_range(Duration::ZERO..config.delay);
        tokio::time::sleep(wait).await;
    }
    // Classic Swarm's words; a Duration's Debug text is "20s".
    info!(
        heartbeat_s = config.heartbeat.as_secs_f64(),
        "Registering on the discovery service every {:?}...", config.heartbeat
    );
    let registering = discovery::register_forever(
        &config.discovery,
        config.auth.as_ref(),
        &config.advertise,
        config.ttl,
        config.heartbeat,
    );
    tokio::select! {
        r = registering => r.map_err(RunError::from),
        _ = shutdown_signal() => Ok(()),
    }
}

/// Resolves on the first SIGINT or SIGTERM; a second one exits at once.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    info!("Shutdown requested; a second signal exits at once.");
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        warn!("Second signal: exiting now.");
        std::process::exit(1);
    });
}

/// How long a stopping leader lets the writes it is serving finish before it hands over.
const LEADER_WORK_GRACE: Duration = Duration::from_secs(2);
/// How long a stopping manager waits to learn its successor, so that the requests it holds go
/// there rather than fail.
const SUCCESSOR_WAIT: Duration = Duration::from_secs(3);

/// A stopping manager's hand-over: the writes it serves as leader finish, it stops acting as
/// leader, asks the most up-to-date follower to campaign now (Raft) or resigns (etcd), and
/// waits until a successor is known.
async fn hand_over(state: &ApiState, raft: Option<&crate::leadership::raft::RaftNode>, resign: &CancellationToken) {
    let leading = state.leadership.is_leader();
    if leading {
        let mut work = state.leader_work.subscribe();
        if tokio::time::timeout(LEADER_WORK_GRACE, work.wait_for(|n| *n == 0)).await.is_err() {
            warn!(
                grace_ms = LEADER_WORK_GRACE.as_millis() as u64,
                "Writes still running as leader; handing over anyway."
            );
        }
        // etcd: the campaign steps down as it resigns (`resign` below); stepping down first
        // would end it as a lapse, which revokes the lease instead and elects more slowly.
        if let Some(node) = raft {
            state.leadership.step_down(None);
            node.hand_over().await;
        }
    }
    resign.cancel();
    let successor = tokio::time::timeout(SUCCESSOR_WAIT, async {
        let mut role = state.leadership.subscribe();
        loop {
            if let crate::leadership::Role::Follower { leader: Some(l) } = &*role.borrow_and_update() {
                if l != state.leadership.advertise() {
                    return l.clone();
                }
            }
            if role.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    })
    .await;
    match successor {
        Ok(l) => info!(leader = %l, was_leader = leading, "Stopping: another manager leads."),
        Err(_) => warn!("Stopping without a successor known."),
    }
}

/// A built manager, listening, not yet running.
pub struct App {
    state: ApiState,
    orchestrator: Orchestrator,
    /// The embedded Raft member, when replicating without etcd.
    raft: Option<crate::leadership::raft::RaftNode>,
    /// Cluster metadata: registry, creates in flight, reschedules.
    store: crate::store::Store,
    listeners: Vec<(String, Listener)>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    /// The etcd election key while leading, which fences the etcd store's writes.
    fence: crate::leadership::etcd::Fence,
    /// Where leadership runs, away from API load (replicated managers only).
    leadership_runtime: Option<crate::leadership::LeadershipRuntime>,
}

/// Binds a TCP listener whose accept queue holds `backlog` connections (the kernel caps it at
/// `net.core.somaxconn`): with the default of 128, a burst of new clients overflows the queue
/// and each dropped one waits a second for its SYN to be sent again.
async fn bind_tcp(addr: &str, backlog: u32) -> std::io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(backlog)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind")))
}

async fn bind(addr: &ListenAddr, backlog: u32) -> Result<(String, Listener), RunError> {
    match addr {
        ListenAddr::Tcp(a) => {
            let l = bind_tcp(a, backlog).await.map_err(|source| RunError::Bind {
                addr: a.clone(),
                hint: if source.kind() == std::io::ErrorKind::AddrInUse {
                    ": another process listens there (a Docker engine, or another manager)?"
                } else {
                    ""
                },
                source,
            })?;
            let local = l.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| a.clone());
            Ok((local, Listener::Tcp(l)))
        }
        ListenAddr::Unix(p) => {
            // A stale socket from a crashed manager would make bind fail.
            let _ = std::fs::remove_file(p);
            let l = UnixListener::bind(p).map_err(|source| RunError::Bind {
                addr: p.display().to_string(),
                hint: "",
                source,
            })?;
            Ok((format!("unix://{}", p.display()), Listener::Unix(l)))
        }
    }
}

impl App {
    /// Validates nothing (the config is validated), binds every listener and builds the
    /// subsystems.
    pub async fn build(config: ManageConfig) -> Result<App, RunError> {
        let mut listeners = Vec::new();
        for addr in &config.listen {
            let backlog = u32::try_from(config.limits.max_connections).unwrap_or(u32::MAX).clamp(128, 65_535);
            listeners.push(bind(addr, backlog).await?);
        }
        let tls = match &config.tls {
            Some(files) => Some(crate::tls::Tls::load(files).map_err(|e| ConfigError(e.to_string()))?),
            None => None,
        };
        let open_files = crate::open_files::OpenFiles::raise();
        match open_files.raised_from {
            Some(from) => {
                info!(from, to = open_files.limit, engines = open_files.engines_allowed(), "Open-files limit raised.")
            }
            None => info!(limit = open_files.limit, engines = open_files.engines_allowed(), "Open-files limit."),
        }
        let (registry, metrics) = crate::metrics::new_registry()?;
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let cluster = Cluster::new(
            ClusterOptions {
                timing: config.timing.clone(),
                overcommit: config.overcommit,
                event_buffer: config.limits.event_buffer,
                tls: tls.as_ref().map(|t| t.client.clone()),
                open_files,
            },
            metrics.clone(),
            tracker.clone(),
            cancel.child_token(),
        );
        let scheduler = Scheduler::new(config.filters.clone(), config.strategy);
        let leadership = match &config.replication {
            Some(r) => Leadership::replicated(&r.advertise, LeadershipMetrics::register(&registry)?),
            None => Leadership::standalone(),
        };
        let leadership_runtime = match config.replication {
            Some(_) => {
                Some(crate::leadership::LeadershipRuntime::start().map_err(|source| RunError::Runtime { source })?)
            }
            None => None,
        };
        let raft = match (config.replication.as_ref().and_then(|r| r.raft.clone()), &leadership_runtime) {
            (Some(settings), Some(rt)) => {
                // Checked by the config: Raft needs the secret.
                let secret = config
                    .cluster_secret
                    .as_ref()
                    .ok_or_else(|| ConfigError("--cluster-secret-file is required with --replication-peers".into()))?;
                let (peer_tls, signer) = (tls.as_ref().map(|t| t.peer.clone()), secret.manager_signer());
                let raft_metrics = crate::leadership::raft::metrics::RaftMetrics::register(&registry)?;
                // Raft's tasks are spawned where it starts: on the leadership runtime.
                Some(
                    rt.run(async move {
                        crate::leadership::raft::RaftNode::start(&settings, peer_tls, signer, raft_metrics).await
                    })
                    .await?,
                )
            }
            _ => None,
        };
        let fence = crate::leadership::etcd::Fence::default();
        let store: crate::store::Store = match (&config.replication, &raft, &config.discovery) {
            (Some(_), Some(node), _) => Arc::new(crate::store::RaftStore(node.clone())),
            (Some(r), None, DiscoveryUrl::Etcd { endpoints, prefix, tls, .. }) => Arc::new(
                crate::store::etcd::EtcdStore::new(endpoints.clone(), tls.clone(), prefix, &r.advertise, fence.clone()),
            ),
            _ => Arc::new(crate::store::LocalStore::default()),
        };
        let config_max_upload = config.limits.max_upload_bytes;
        let config_max_upload_total = config.limits.max_upload_total_bytes;
        let config_max_body_total = config.limits.max_body_total_bytes;
        let (journal_keep, journal_max) = (config.limits.request_memory, config.limits.request_memory_max);
        let (registry_max_entries, registry_entries) =
            (config.limits.registry_max_entries, metrics.registry_entries.clone());
        let control_auth = config.cluster_secret.as_ref().map(|s| s.verifier(config.control_auth_window));
        let served_token = match &config.discovery {
            DiscoveryUrl::Token(rest) => Some(discovery::token::TokenUrl::parse(rest).token),
            _ => None,
        };
        let hostname =
            std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        let orchestrator = Orchestrator::new(
            cluster.clone(),
            scheduler,
            store.clone(),
            leadership.clone(),
            metrics.clone(),
            crate::orchestrator::Settings {
                create_retry: config.create_retry,
                create_timeout: config.timing.create_timeout,
                pull_timeout: config.timing.pull_timeout,
                engine_timeout: config.timing.engine_timeout,
                request_memory: config.limits.request_memory,
            },
        );
        let state = ApiState::new(StateInner {
            cluster,
            orchestrator: orchestrator.clone(),
            config,
            metrics,
            registry,
            hostname,
            control: crate::control::ControlPlane {
                store: store.clone(),
                raft: raft.clone(),
                leadership: leadership.clone(),
                registry_max_entries,
                registry_entries,
                tokens: Default::default(),
                max_rpc_bytes: config_max_upload,
                auth: control_auth,
                served_token,
            },
            leadership,
            leader_client: Default::default(),
            tls,
            uploads: crate::body::BodyMemory::new(config_max_upload_total, 1 << 20, "--api-max-upload-total-bytes"),
            bodies: crate::body::BodyMemory::new(config_max_body_total, 1 << 10, "--api-max-body-total-bytes"),
            journal: Arc::new(crate::api::journal::Journal::new(journal_keep, journal_max)),
            leader_work: Arc::new(tokio::sync::watch::Sender::new(0)),
        });
        Ok(App { state, orchestrator, raft, store, listeners, tracker, cancel, fence, leadership_runtime })
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<String> {
        self.listeners.iter().map(|(a, _)| a.clone()).collect()
    }

    /// Runs until `shutdown` resolves, then drains within a grace period.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
        let App { state, orchestrator, raft, store, listeners, tracker, cancel, fence, leadership_runtime } = self;
        let config = &state.config;
        let (tx, mut rx) = mpsc::channel::<DiscoveryEvent>(8);
        let url = config.discovery.clone();
        let span = tracing::info_span!("discovery", backend = url.scheme());
        if let (DiscoveryUrl::Managers { .. }, Some(_)) = (&url, &raft) {
            // Our own copy of the replicated registry: no round trip, no leader needed.
            tracker
                .spawn(discovery::managers::watch_store(store.clone(), config.timing.heartbeat, tx).instrument(span));
        } else {
            let auth = config.cluster_secret.as_ref().map(|s| s.manager_signer());
            tracker.spawn(discovery::watch(url.clone(), auth, config.timing.heartbeat, tx).instrument(span));
        }
        let cluster = state.cluster.clone();
        let discovery_cancel = cancel.clone();
        tracker.spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = discovery_cancel.cancelled() => return,
                    e = rx.recv() => e,
                };
                match event {
                    Some(DiscoveryEvent::Entries(set)) => cluster.apply_entries(&set),
                    Some(DiscoveryEvent::Failed(e)) => {
                        error!(error = %crate::cluster::error_chain(&e), "Discovery failed.")
                    }
                    None => {
                        // Static backends finish after one answer; keep the nodes.
                        discovery_cancel.cancelled().await;
                        return;
                    }
                }
            }
        });
        // Cancelled first when stopping: the etcd election resigns at once, while this manager
        // still follows who leads next and passes held requests on.
        let resign = cancel.child_token();
        if let (
            Some(r @ crate::config::Replication { raft: None, .. }),
            DiscoveryUrl::Etcd { endpoints, prefix, tls, .. },
        ) = (&config.replication, &config.discovery)
        {
            let key = [prefix.as_str(), "docker/swarm/leader"]
                .iter()
                .filter(|p| !p.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("/");
            let election = EtcdElection {
                members: Arc::new(EtcdMembers::new(endpoints, tls.clone())),
                key,
                advertise: r.advertise.clone(),
                ttl: r.ttl,
                fence: fence.clone(),
            };
            let election = leadership::etcd::run(election, state.leadership.clone(), resign.clone(), cancel.clone())
                .instrument(tracing::info_span!("leadership", backend = "etcd"));
            match &leadership_runtime {
                Some(rt) => tracker.spawn_on(election, rt.handle()),
                None => tracker.spawn(election),
            };
        }
        if let (Some(r), Some(node)) = (&config.replication, &raft) {
            // openraft's followers grant votes only once the longest election timeout (their
            // leader lease) has passed since the last heartbeat they took, and campaign no
            // earlier (`raft::prompt`): the leader acts for the longest timeout less a heartbeat
            // after a quorum last acknowledged it, so it stops before anyone is elected.
            let settings = r.raft.as_ref().map(|s| (s.election_timeout * 2, s.heartbeat));
            let (longest, heartbeat) = settings.unwrap_or_default();
            let publish = node
                .clone()
                .publish_leadership(state.leadership.clone(), longest.saturating_sub(heartbeat), cancel.clone())
                .instrument(tracing::info_span!("leadership", backend = "raft"));
            let expire = node.clone().expire_entries(
                state.leadership.clone(),
                Duration::from_secs(1),
                crate::control::registry::lease_of,
                cancel.clone(),
            );
            match &leadership_runtime {
                Some(rt) => {
                    tracker.spawn_on(publish, rt.handle());
                    tracker.spawn_on(expire, rt.handle());
                }
                None => {
                    tracker.spawn(publish);
                    tracker.spawn(expire);
                }
            }
        }
        tracker.spawn(
            crate::orchestrator::reschedule::run(orchestrator, cancel.clone())
                .instrument(tracing::info_span!("reschedule")),
        );
        tracker.spawn(crate::lag::watch(state.metrics.runtime_lag.clone(), cancel.clone()));
        let stop_accepting = cancel.child_token();
        for (addr, listener) in listeners {
            api::log_listening(&addr);
            tracker.spawn(api::serve(listener, state.clone(), stop_accepting.clone(), cancel.clone(), tracker.clone()));
        }
        shutdown.await;
        // Requests that reach this manager from now on are passed on to the next leader; the
        // listener stays open through the hand-over, which the candidate's vote request
        // reaches it by. Then load balancers send new connections elsewhere at once (refused).
        state.leadership.stop_taking_requests();
        if state.leadership.is_replicated() {
            hand_over(&state, raft.as_ref(), &resign).await;
        }
        stop_accepting.cancel();
        cancel.cancel();
        state.cluster.shutdown();
        if let Some(node) = &raft {
            node.shutdown().await;
        }
        tracker.close();
        match tokio::time::timeout(DRAIN_GRACE, tracker.wait()).await {
            Ok(()) => info!("Drained; bye."),
            Err(_) => {
                warn!(grace_ms = DRAIN_GRACE.as_millis() as u64, "Drain timed out; exiting with streams still open.")
            }
        }
        drop(leadership_runtime);
        Ok(())
    }
}

//! Validated settings. Every check and every classic error text lives here, once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::auth::{join_signer, ClusterSecret, Signer};
use crate::cli::{JoinArgs, ListArgs, ManageArgs, TlsArgs};
use crate::discovery::url::DiscoveryUrl;
use crate::scheduler::{FilterKind, StrategyKind};

/// A configuration the user must fix; its text is the classic Swarm message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn bad(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// The TLS flags checked with classic Swarm's messages; `None` when TLS is off.
pub fn tls_files(a: &TlsArgs) -> Result<Option<crate::tls::TlsFiles>, ConfigError> {
    if !(a.tls || a.tlsverify || a.tlscert.is_some() || a.tlskey.is_some() || a.tlscacert.is_some()) {
        return Ok(None);
    }
    if !(a.tls || a.tlsverify) {
        return Err(bad("--tlscert, --tlskey and --tlscacert require the use of either --tls or --tlsverify"));
    }
    let (Some(cert), Some(key)) = (&a.tlscert, &a.tlskey) else {
        return Err(bad("--tlscert and --tlskey must be provided when using --tls"));
    };
    if a.tlsverify && a.tlscacert.is_none() {
        return Err(bad("--tlscacert must be provided when using --tlsverify"));
    }
    Ok(Some(crate::tls::TlsFiles {
        verify: a.tlsverify,
        ca: a.tlscacert.as_ref().map(Into::into),
        cert: cert.into(),
        key: key.into(),
    }))
}

/// Where the API front listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP socket.
    Tcp(String),
    /// A unix socket path.
    Unix(PathBuf),
}

/// Engine timing knobs. Defaults come from [`Timing::classic`], so tests can shrink them.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Lower bound of the randomized full refresh period.
    pub refresh_min: Duration,
    /// Upper bound of the randomized full refresh period.
    pub refresh_max: Duration,
    /// Consecutive failures before a node turns Unhealthy.
    pub failure_retry: u32,
    /// Period of the `/_ping` health probe.
    pub probe_interval: Duration,
    /// Most probes per second across all engines (stretches the period of large clusters).
    pub probe_rate: u32,
    /// Bound on one probe: a hung engine is Unhealthy after about
    /// `failure_retry * (probe_interval + probe_timeout)`.
    pub probe_timeout: Duration,
    /// Bound on waiting for an engine's response headers (and on connecting).
    pub engine_timeout: Duration,
    /// Discovery poll period.
    pub heartbeat: Duration,
    /// Bound on an engine's answer to a container create.
    pub create_timeout: Duration,
    /// Bound on the pull of a create's missing image.
    pub pull_timeout: Duration,
}

impl Timing {
    /// Classic Swarm's refresh defaults plus our one-second probe: a refused engine is seen in
    /// about `failure_retry` probe periods, a hung one in `failure_retry` timeouts.
    pub fn classic() -> Self {
        Timing {
            refresh_min: Duration::from_secs(30),
            refresh_max: Duration::from_secs(60),
            failure_retry: 3,
            probe_interval: Duration::from_secs(1),
            probe_rate: 100,
            probe_timeout: Duration::from_secs(2),
            engine_timeout: Duration::from_secs(3),
            heartbeat: Duration::from_secs(60),
            create_timeout: Duration::from_secs(30),
            pull_timeout: Duration::from_secs(600),
        }
    }
}

/// Named limits of the API front.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest JSON body read into memory.
    pub max_body_bytes: u64,
    /// Largest upload buffered to fan out to every engine.
    pub max_upload_bytes: u64,
    /// Events kept per subscriber before a slow `docker events` client drops some.
    pub event_buffer: usize,
    /// Time a client has to finish the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Time a client has to send a request's headers; also the idle bound of a kept-alive
    /// connection.
    pub header_timeout: Duration,
    /// Largest request head read.
    pub max_header_bytes: usize,
    /// Most client connections at once.
    pub max_connections: usize,
    /// Bound on each engine's answer to a call sent to every engine.
    pub fanout_timeout: Duration,
    /// Most bytes of all the engines' answers to one such call, together.
    pub fanout_max_bytes: u64,
    /// Most bytes every upload buffered at once may hold together.
    pub max_upload_total_bytes: u64,
    /// Most bytes every JSON body buffered at once may hold together.
    pub max_body_total_bytes: u64,
    /// Time a client has to send a JSON body.
    pub body_timeout: Duration,
    /// How long the answer of a write with a request ID is kept for its resends.
    pub request_memory: Duration,
    /// Most such answers kept at once.
    pub request_memory_max: usize,
    /// Most entries of the swarm:// registry.
    pub registry_max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 << 20,
            max_upload_bytes: 1 << 30,
            event_buffer: 10_000,
            tls_handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
            max_header_bytes: 256 << 10,
            max_connections: 4096,
            fanout_timeout: Duration::from_secs(300),
            fanout_max_bytes: 1 << 30,
            max_upload_total_bytes: 2 << 30,
            max_body_total_bytes: 256 << 20,
            body_timeout: Duration::from_secs(60),
            request_memory: Duration::from_secs(600),
            request_memory_max: 100_000,
            registry_max_entries: 10_000,
        }
    }
}

/// Leader election settings (`--replication`).
#[derive(Debug, Clone)]
pub struct Replication {
    /// Address peers and followers reach this manager at.
    pub advertise: String,
    /// Lease time to live: the failover bound.
    pub ttl: Duration,
    /// How long a follower with no known leader holds a request before answering 503.
    pub leader_wait: Duration,
    /// Embedded Raft among `--replication-peers`; `None` elects through etcd.
    pub raft: Option<crate::leadership::raft::RaftSettings>,
}

/// Embedded Raft settings from the flags.
fn raft_settings(a: &ManageArgs, advertise: &str) -> Result<crate::leadership::raft::RaftSettings, ConfigError> {
    let mut peers = Vec::new();
    for p in a.replication_peers.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        if !validate_host_port(p) {
            return Err(bad(format!("--replication-peers: \"{p}\" should be of the form ip:port or hostname:port")));
        }
        if !peers.iter().any(|q| q == p) {
            peers.push(p.to_string());
        }
    }
    let data_dir = a
        .data_dir
        .as_deref()
        .filter(|d| !d.is_empty())
        .ok_or_else(|| bad("--data-dir is required with --replication-peers"))?;
    let heartbeat = parse_duration(&a.replication_heartbeat)?;
    let election_timeout = parse_duration(&a.replication_election_timeout)?;
    if heartbeat.is_zero() || election_timeout < heartbeat * 3 {
        return Err(bad("--replication-election-timeout should be at least three --replication-heartbeat periods"));
    }
    Ok(crate::leadership::raft::RaftSettings {
        advertise: advertise.to_string(),
        peers,
        data_dir: data_dir.into(),
        heartbeat,
        election_timeout,
    })
}

/// Settings of `swarm manage`.
#[derive(Debug, Clone)]
pub struct ManageConfig {
    /// Listeners of the Docker API front.
    pub listen: Vec<ListenAddr>,
    /// Where engines come from.
    pub discovery: DiscoveryUrl,
    /// Ranking strategy.
    pub strategy: StrategyKind,
    /// Filters in order.
    pub filters: Vec<FilterKind>,
    /// Engine timing.
    pub timing: Timing,
    /// `swarm.overcommit`: fraction of extra CPU and memory to hand out.
    pub overcommit: f64,
    /// `swarm.createretry`: extra attempts on another node when a create fails.
    pub create_retry: u32,
    /// Named limits.
    pub limits: Limits,
    /// Report experimental in info and version.
    pub experimental: bool,
    /// Add CORS headers.
    pub cors: bool,
    /// Address peers reach this manager at (replication).
    pub advertise: Option<String>,
    /// `--refresh-on-node-filter`.
    pub refresh_on_node_filter: bool,
    /// `--container-name-refresh-filter`.
    pub container_name_refresh_filter: String,
    /// Leader election, when `--replication` is on.
    pub replication: Option<Replication>,
    /// `--tls`/`--tlsverify` with their files.
    pub tls: Option<crate::tls::TlsFiles>,
    /// `--cluster-secret-file`: what makes a manager one (see `control::auth`).
    pub cluster_secret: Option<ClusterSecret>,
    /// How far a control request's timestamp may be from this manager's clock.
    pub control_auth_window: Duration,
}

impl ManageConfig {
    /// A configuration for tests and embedding: defaults everywhere.
    pub fn new(discovery: DiscoveryUrl) -> Self {
        ManageConfig {
            listen: vec![ListenAddr::Tcp("127.0.0.1:2375".into())],
            discovery,
            strategy: StrategyKind::Spread,
            filters: FilterKind::defaults(),
            timing: Timing::classic(),
            overcommit: 0.05,
            create_retry: 0,
            limits: Limits::default(),
            experimental: false,
            cors: false,
            advertise: None,
            refresh_on_node_filter: false,
            container_name_refresh_filter: String::new(),
            replication: None,
            tls: None,
            cluster_secret: None,
            control_auth_window: Duration::from_secs(30),
        }
    }
}

/// Parses durations the way Go's `time.ParseDuration` reads the classic flags: `500ms`, `30s`,
/// `1m30s`, `2h`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, ConfigError> {
    let err = || bad(format!("invalid duration \"{text}\""));
    let t = text.trim();
    if t.is_empty() {
        return Err(err());
    }
    if let Ok(secs) = t.parse::<f64>() {
        // `try_`: "inf" and "1e300" parse as numbers but are no duration.
        return if secs >= 0.0 { Duration::try_from_secs_f64(secs).map_err(|_| err()) } else { Err(err()) };
    }
    let (negative, mut rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(err)?;
        let value: f64 = rest[..num_end].parse().map_err(|_| err())?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        total += value * scale;
        rest = &rest[unit_end..];
    }
    if negative && total > 0.0 {
        // Negative durations are meaningful only to be refused with the flag's own message.
        return Err(bad(format!("negative duration \"{text}\"")));
    }
    Duration::try_from_secs_f64(total).map_err(|_| err())
}

/// `d`, unless zero.
fn positive(d: Duration, flag: &str) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        return Err(bad(format!("{flag} should be positive")));
    }
    Ok(d)
}

/// Checks `host:port` with a port in 1..=65535.
/// The host must be an IPv4 address, a bracketed IPv6 address or a DNS name, so that
/// `unix:///x.sock:1` or `a/b:1` is refused rather than dialled as something else.
pub fn validate_host_port(addr: &str) -> bool {
    let Some((host, port)) = addr.rsplit_once(':') else { return false };
    let port_ok = !port.starts_with('+') && matches!(port.parse::<u32>(), Ok(p) if (1..=65535).contains(&p));
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => host.parse::<std::net::Ipv4Addr>().is_ok() || is_dns_name(host),
    };
    port_ok && host_ok
}

/// RFC 1123 host names (underscores allowed, as container and service names use them).
fn is_dns_name(host: &str) -> bool {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    !host.is_empty() && host.len() <= 253 && host.split('.').all(label_ok)
}

fn parse_listen(host: &str) -> Result<ListenAddr, ConfigError> {
    if let Some(path) = host.strip_prefix("unix://") {
        return Ok(ListenAddr::Unix(PathBuf::from(path)));
    }
    let hp = host.strip_prefix("tcp://").unwrap_or(host);
    let hp = if hp.starts_with(':') { format!("0.0.0.0{hp}") } else { hp.to_string() };
    if hp.parse::<SocketAddr>().is_err() && !validate_host_port(&hp) {
        return Err(bad(format!("invalid listen address \"{host}\": expected tcp://host:port or unix:///path")));
    }
    Ok(ListenAddr::Tcp(hp))
}

fn key_values(opts: &[String], flag: &str) -> Result<Vec<(String, String)>, ConfigError> {
    opts.iter()
        .map(|o| {
            o.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| bad(format!("{flag} must contain key=value strings")))
        })
        .collect()
}

fn discovery_of(arg: &Option<String>, command: &str, opts: &[String]) -> Result<DiscoveryUrl, ConfigError> {
    let url = arg
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad(format!("discovery required to {command} a cluster. See 'swarm {command} --help'.")))?;
    let options = key_values(opts, "--discovery-opt")?;
    DiscoveryUrl::parse(url, &options).map_err(|e| bad(e.to_string()))
}

impl TryFrom<&ManageArgs> for ManageConfig {
    type Error = ConfigError;

    fn try_from(a: &ManageArgs) -> Result<Self, ConfigError> {
        let discovery = discovery_of(&a.discovery, "manage", &a.discovery_opt)?;
        let strategy = StrategyKind::parse(&a.strategy).ok_or_else(|| {
            bad(format!("strategy not supported: \"{}\" (supported: spread, binpack, random)", a.strategy))
        })?;
        let filters = filters_of(a)?;
        let listen = if a.host.is_empty() {
            vec![ListenAddr::Tcp("127.0.0.1:2375".into())]
        } else {
            a.host.iter().map(|h| parse_listen(h)).collect::<Result<_, _>>()?
        };
        let tls = tls_files(&a.tls)?;
        let timing = timing_of(a)?;
        if a.cluster_driver != "swarm" {
            return Err(bad(format!("unsupported cluster \"{}\"", a.cluster_driver)));
        }
        let (overcommit, create_retry) = cluster_opts(a)?;
        let replication = replication_of(a, &discovery)?;
        if replication.is_some() && tls.as_ref().is_some_and(|t| t.ca.is_none()) {
            return Err(bad("--replication with --tls needs --tlscacert: managers check one another's certificates, since they pass clients' credentials to one another"));
        }
        let cluster_secret =
            a.cluster_secret_file.as_deref().map(|p| ClusterSecret::read(Path::new(p)).map_err(bad)).transpose()?;
        let raft = replication.as_ref().is_some_and(|r| r.raft.is_some());
        if cluster_secret.is_none() && (raft || matches!(discovery, DiscoveryUrl::Managers { .. })) {
            return Err(bad("--cluster-secret-file is required with --replication-peers or swarm:// discovery: managers and join agents authenticate with it (`swarm create > FILE` makes one)"));
        }
        let control_auth_window = positive(parse_duration(&a.control_auth_window)?, "--control-auth-window")?;
        Ok(ManageConfig {
            listen,
            discovery,
            strategy,
            filters,
            timing,
            overcommit,
            create_retry,
            limits: Limits {
                max_body_bytes: a.api_max_body_bytes,
                max_upload_bytes: a.api_max_upload_bytes,
                tls_handshake_timeout: parse_duration(&a.tls_handshake_timeout)?,
                header_timeout: positive(parse_duration(&a.api_header_timeout)?, "--api-header-timeout")?,
                max_header_bytes: usize::try_from(a.api_max_header_bytes.max(1024)).unwrap_or(usize::MAX),
                max_connections: a.api_max_connections.max(1),
                fanout_timeout: positive(parse_duration(&a.engine_fanout_timeout)?, "--engine-fanout-timeout")?,
                fanout_max_bytes: a.engine_fanout_max_bytes.max(1 << 20),
                max_upload_total_bytes: a.api_max_upload_total_bytes.max(a.api_max_upload_bytes),
                max_body_total_bytes: a.api_max_body_total_bytes.max(a.api_max_body_bytes),
                body_timeout: positive(parse_duration(&a.api_body_timeout)?, "--api-body-timeout")?,
                request_memory: positive(parse_duration(&a.request_memory)?, "--request-memory")?,
                request_memory_max: a.request_memory_max.max(1),
                registry_max_entries: a.registry_max_entries.max(1),
                ..Limits::default()
            },
            experimental: false,
            cors: a.api_enable_cors,
            advertise: a.advertise.clone(),
            refresh_on_node_filter: a.refresh_on_node_filter,
            container_name_refresh_filter: a.container_name_refresh_filter.clone(),
            replication,
            tls,
            cluster_secret,
            control_auth_window,
        })
    }
}

/// `-f/--filter`: every one given (comma lists too), or the classic default list.
fn filters_of(a: &ManageArgs) -> Result<Vec<FilterKind>, ConfigError> {
    if a.filter.is_empty() {
        return Ok(FilterKind::defaults());
    }
    a.filter
        .iter()
        .flat_map(|f| f.split(','))
        .map(|f| {
            FilterKind::parse(f.trim()).ok_or_else(|| {
                bad(format!(
                    "filter not supported: \"{}\" (supported: health, port, containerslots, dependency, affinity, constraint, whitelist)",
                    f.trim()
                ))
            })
        })
        .collect()
}

/// Refresh, failure, heartbeat, probe and engine timings, with classic Swarm's checks.
fn timing_of(a: &ManageArgs) -> Result<Timing, ConfigError> {
    let refresh_min = parse_duration(&a.engine_refresh_min_interval)?;
    let refresh_max = parse_duration(&a.engine_refresh_max_interval)?;
    if refresh_min.is_zero() {
        return Err(bad("min refresh interval should be a positive number"));
    }
    if refresh_max < refresh_min {
        return Err(bad("max refresh interval cannot be less than min refresh interval"));
    }
    if a.engine_refresh_retry != 3 {
        return Err(bad("--engine-refresh-retry is deprecated. Use --engine-failure-retry"));
    }
    if a.engine_failure_retry <= 0 {
        return Err(bad("invalid failure retry count"));
    }
    let heartbeat = parse_duration(&a.heartbeat)?;
    if heartbeat < std::time::Duration::from_secs(1) {
        return Err(bad("--heartbeat should be at least one second"));
    }
    let probe_interval = parse_duration(&a.engine_probe_interval)?;
    let engine_timeout = parse_duration(&a.engine_timeout)?;
    if probe_interval.is_zero() || engine_timeout.is_zero() {
        return Err(bad("--engine-probe-interval and --engine-timeout should be positive"));
    }
    Ok(Timing {
        refresh_min,
        refresh_max,
        failure_retry: a.engine_failure_retry as u32,
        probe_interval,
        probe_rate: a.engine_probe_rate.max(1),
        probe_timeout: parse_duration(&a.engine_probe_timeout)?,
        engine_timeout,
        heartbeat,
        create_timeout: parse_duration(&a.engine_create_timeout)?,
        pull_timeout: parse_duration(&a.engine_pull_timeout)?,
    })
}

/// `--cluster-opt swarm.overcommit=…` and `swarm.createretry=…`, with classic Swarm's messages.
fn cluster_opts(a: &ManageArgs) -> Result<(f64, u32), ConfigError> {
    let mut overcommit = 0.05;
    let mut create_retry = 0;
    for (k, v) in key_values(&a.cluster_opt, "--cluster-opt")? {
        match k.as_str() {
            "swarm.overcommit" => {
                let f: f64 = v.parse().map_err(|_| bad(format!("invalid value for swarm.overcommit: {v}")))?;
                if f <= -1.0 {
                    return Err(bad(format!("swarm.overcommit should be larger than -1, {f:.6} is invalid")));
                }
                if f < 0.0 {
                    tracing::warn!(
                        overcommit = f,
                        "-1 < swarm.overcommit < 0 will make swarm take less resource than docker engine offers"
                    );
                }
                overcommit = f;
            }
            "swarm.createretry" => {
                let n: i64 = v.parse().map_err(|_| bad(format!("invalid value for swarm.createretry: {v}")))?;
                if n < 0 {
                    return Err(bad(format!("swarm.createretry can not be negative, {n} is invalid")));
                }
                create_retry = n as u32;
            }
            other => return Err(bad(format!("unsupported cluster option \"{other}\""))),
        }
    }
    Ok((overcommit, create_retry))
}

/// `--replication` with `--advertise`: over etcd discovery, or embedded Raft among
/// `--replication-peers`.
fn replication_of(a: &ManageArgs, discovery: &DiscoveryUrl) -> Result<Option<Replication>, ConfigError> {
    let ttl = parse_duration(&a.replication_ttl)?;
    if ttl.is_zero() {
        return Err(bad("--replication-ttl should be a positive number"));
    }
    let leader_wait = parse_duration(&a.replication_leader_wait)?;
    if let Some(adv) = &a.advertise {
        if !validate_host_port(adv) {
            return Err(bad("--advertise should be of the form ip:port or hostname:port"));
        }
    }
    if !a.replication {
        if !a.replication_peers.is_empty() {
            return Err(bad(
                "--replication-peers needs --replication (and --advertise): without it the manager runs alone",
            ));
        }
        return Ok(None);
    }
    let advertise =
        a.advertise.clone().ok_or_else(|| bad("--advertise address must be provided when using --replication"))?;
    let etcd = matches!(discovery, DiscoveryUrl::Etcd { .. });
    let has_data_dir = a.data_dir.as_deref().is_some_and(|d| !d.is_empty());
    // A member restarted from its data directory may omit the peers: the directory holds them.
    let raft = if a.replication_peers.is_empty() && (etcd || !has_data_dir) {
        if !etcd {
            return Err(bad("--replication-peers is required for replication without etcd discovery"));
        }
        if ttl < Duration::from_secs(2) {
            return Err(bad("--replication-ttl should be at least 2s, etcd's shortest lease"));
        }
        None
    } else {
        Some(raft_settings(a, &advertise)?)
    };
    Ok(Some(Replication { advertise, ttl, leader_wait, raft }))
}

/// Settings of `swarm join`.
#[derive(Debug, Clone)]
pub struct JoinConfig {
    /// Discovery URL.
    pub discovery: DiscoveryUrl,
    /// Engine address to register.
    pub advertise: String,
    /// Registration period.
    pub heartbeat: Duration,
    /// Registration lifetime.
    pub ttl: Duration,
    /// Random delay before the first registration.
    pub delay: Duration,
    /// `--join-token-file`, for `swarm://` discovery.
    pub auth: Option<Signer>,
}

impl TryFrom<&JoinArgs> for JoinConfig {
    type Error = ConfigError;

    fn try_from(a: &JoinArgs) -> Result<Self, ConfigError> {
        let discovery = discovery_of(&a.discovery, "join", &a.discovery_opt)?;
        let advertise = a.advertise.clone().ok_or_else(|| bad("missing mandatory --advertise flag"))?;
        if !validate_host_port(&advertise) {
            return Err(bad("--advertise should be of the form ip:port or hostname:port"));
        }
        let heartbeat = parse_duration(&a.heartbeat)?;
        if heartbeat < Duration::from_secs(1) {
            return Err(bad("--heartbeat should be at least one second"));
        }
        let ttl = parse_duration(&a.ttl)?;
        if ttl <= heartbeat {
            return Err(bad("--ttl must be strictly superior to the heartbeat value"));
        }
        let delay = parse_duration(&a.delay).map_err(|_| bad("--delay should not be a negative number"))?;
        let auth = join_auth(&a.join_token_file, &discovery)?;
        Ok(JoinConfig { discovery, advertise, heartbeat, ttl, delay, auth })
    }
}

/// Settings of `swarm list`.
#[derive(Debug, Clone)]
pub struct ListConfig {
    /// Discovery URL.
    pub discovery: DiscoveryUrl,
    /// How long to wait for entries.
    pub timeout: Duration,
    /// `--join-token-file`, for `swarm://` discovery.
    pub auth: Option<Signer>,
}

/// The join signer from `--join-token-file`; required by `swarm://` discovery.
fn join_auth(path: &Option<String>, discovery: &DiscoveryUrl) -> Result<Option<Signer>, ConfigError> {
    let auth = path.as_deref().map(|p| join_signer(Path::new(p)).map_err(bad)).transpose()?;
    if auth.is_none() && matches!(discovery, DiscoveryUrl::Managers { .. }) {
        return Err(bad("swarm:// discovery needs --join-token-file (`swarm join-token --cluster-secret-file FILE` prints the token)"));
    }
    Ok(auth)
}

impl TryFrom<&ListArgs> for ListConfig {
    type Error = ConfigError;

    fn try_from(a: &ListArgs) -> Result<Self, ConfigError> {
        let discovery = discovery_of(&a.discovery, "list", &a.discovery_opt)?;
        let timeout = parse_duration(&a.timeout).map_err(|_| bad("--timeout should be a positive number"))?;
        if timeout.is_zero() {
            return Err(bad("--timeout should be a positive number"));
        }
        let auth = join_auth(&a.join_token_file, &discovery)?;
        Ok(ListConfig { discovery, timeout, auth })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("-1s").is_err());
        // Numbers that are no duration are refused, not a panic.
        for huge in ["inf", "1e300", "1e300h", "nan"] {
            assert!(parse_duration(huge).is_err(), "{huge}");
        }
    }

    #[test]
    fn host_port_needs_a_port_in_range() {
        assert!(validate_host_port("127.0.0.1:2375"));
        assert!(validate_host_port("node-1:1"));
        assert!(!validate_host_port("127.0.0.1:0"));
        assert!(!validate_host_port("127.0.0.1:65536"));
        assert!(!validate_host_port("127.0.0.1"));
        assert!(validate_host_port("[::1]:2375"));
        assert!(validate_host_port("engine_1.example.com:2375"));
        // Hosts that would be dialled as something else, or are no host.
        for bad in [
            "unix:///var/run/docker.sock:1",
            "a/b:1",
            "[::1:2375",
            "[nope]:1",
            "-a:1",
            "a..b:1",
            ":1",
            "host:+1",
            "a b:1",
        ] {
            assert!(!validate_host_port(bad), "{bad}");
        }
    }

    #[test]
    fn listen_addresses_accept_classic_forms() {
        assert_eq!(parse_listen("tcp://127.0.0.1:3375").unwrap(), ListenAddr::Tcp("127.0.0.1:3375".into()));
        assert_eq!(parse_listen(":3375").unwrap(), ListenAddr::Tcp("0.0.0.0:3375".into()));
        assert_eq!(parse_listen("unix:///tmp/s.sock").unwrap(), ListenAddr::Unix("/tmp/s.sock".into()));
        assert!(parse_listen("tcp://nope").is_err());
    }

    fn manage(args: &[&str]) -> Result<ManageConfig, ConfigError> {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([&["swarm", "manage"], args].concat()).expect("flags parse");
        let Some(crate::cli::Command::Manage(m)) = cli.command else { panic!("not manage") };
        ManageConfig::try_from(&*m)
    }

    #[test]
    fn replication_picks_raft_with_peers_and_etcd_without() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").unwrap();
        let secret = secret.to_str().unwrap();
        let raft_args = [
            "--replication",
            "--advertise",
            "127.0.0.1:4000",
            "--replication-peers",
            "127.0.0.1:4000,127.0.0.1:4001",
            "--data-dir",
            "/tmp/d",
            "swarm://127.0.0.1:4000",
        ];
        let raft = manage(&[&raft_args[..], &["--cluster-secret-file", secret]].concat()).unwrap();
        assert!(raft.cluster_secret.is_some());
        let settings = raft.replication.unwrap().raft.unwrap();
        assert_eq!(settings.peers, ["127.0.0.1:4000", "127.0.0.1:4001"]);
        assert_eq!(
            (settings.heartbeat, settings.election_timeout),
            (Duration::from_millis(50), Duration::from_millis(150))
        );
        let etcd = manage(&["--replication", "--advertise", "127.0.0.1:4000", "etcd://127.0.0.1:2379/p"]).unwrap();
        assert!(etcd.replication.unwrap().raft.is_none());
        let err = |args: &[&str]| manage(args).unwrap_err().0;
        assert!(err(&raft_args).starts_with("--cluster-secret-file is required"));
        assert!(err(&["--cluster-secret-file", "/nonexistent", "nodes://a:1"])
            .contains("cannot read the cluster secret file"));
        assert_eq!(
            err(&["--replication", "--advertise", "127.0.0.1:4000", "nodes://a:1"]),
            "--replication-peers is required for replication without etcd discovery"
        );
        assert!(err(&["--replication-peers", "127.0.0.1:4000", "--data-dir", "/d", "nodes://a:1"])
            .starts_with("--replication-peers needs --replication"));
        // A member restarted from its data directory: the directory holds the peers.
        let restarted = manage(&[
            "--replication",
            "--advertise",
            "127.0.0.1:4000",
            "--data-dir",
            "/d",
            "--cluster-secret-file",
            secret,
            "swarm://127.0.0.1:4000",
        ])
        .unwrap();
        assert!(restarted.replication.unwrap().raft.unwrap().peers.is_empty());
        assert_eq!(
            err(&[
                "--replication",
                "--advertise",
                "127.0.0.1:4000",
                "--replication-peers",
                "127.0.0.1:4000",
                "nodes://a:1"
            ]),
            "--data-dir is required with --replication-peers"
        );
        assert!(err(&[
            "--replication",
            "--advertise",
            "127.0.0.1:4000",
            "--replication-peers",
            "bad",
            "--data-dir",
            "/d",
            "nodes://a:1"
        ])
        .contains("should be of the form"));
        let slow = [
            "--replication",
            "--advertise",
            "127.0.0.1:4000",
            "--replication-peers",
            "127.0.0.1:4000",
            "--data-dir",
            "/d",
            "--replication-election-timeout",
            "100ms",
            "nodes://a:1",
        ];
        assert_eq!(
            err(&slow),
            "--replication-election-timeout should be at least three --replication-heartbeat periods"
        );
    }
}

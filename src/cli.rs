//! Command-line definitions only: names, defaults and environment variables of classic Swarm.
//! Validation lives in `config.rs`.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A byte size as Docker reads one (`-m 64m`, go-units' `RAMInBytes`): a number and an
/// optional unit k, m, g, t or p, each 1024 times the last, with an optional `i` and `b`
/// (`4MiB`, `4MB`, `4m` are all 4 × 2^20), any case. Plain numbers are bytes.
pub fn byte_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let bad = || format!("invalid size {s:?}: expected bytes, or a number with k, m, g, t or p (4MiB, 64m)");
    let number: u64 = t[..digits].parse().map_err(|_| bad())?;
    let unit = t[digits..].trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let power = match unit {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return Err(bad()),
    };
    number.checked_mul(1u64 << (10 * power)).ok_or_else(|| format!("size {s:?} is too large"))
}

/// Log levels by the names classic Swarm and logrus give them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    #[value(alias = "warning")]
    Warn,
    Error,
    Fatal,
    Panic,
}

impl LogLevel {
    /// The `tracing` level: fatal and panic messages are errors.
    pub fn directive(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error | LogLevel::Fatal | LogLevel::Panic => "error",
        }
    }
}

/// `swarm`: a Docker-native clustering system.
#[derive(Debug, Parser)]
#[command(name = "swarm", disable_version_flag = true, arg_required_else_help = true)]
pub struct Cli {
    /// Print the version and exit.
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    /// Debug mode: log at debug level.
    #[arg(long, env = "DEBUG", global = true)]
    pub debug: bool,
    /// Log level.
    #[arg(short = 'l', long = "log-level", value_enum, default_value_t = LogLevel::Info, global = true)]
    pub log_level: LogLevel,
    /// Log format: `text` (coloured only on a terminal) or `json` (one object a line, for
    /// log shippers).
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Enable experimental features (reported in info and version).
    #[arg(long, global = true)]
    pub experimental: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn log_levels_take_logrus_names_and_refuse_others_listing_the_valid_ones() {
        for (given, want) in [("warning", LogLevel::Warn), ("warn", LogLevel::Warn), ("fatal", LogLevel::Fatal)] {
            let cli = Cli::try_parse_from(["swarm", "-l", given, "list", "nodes://a:1"]).unwrap();
            assert_eq!(cli.log_level, want);
        }
        assert_eq!(LogLevel::Panic.directive(), "error");
        let refused = Cli::try_parse_from(["swarm", "-l", "verbose", "list", "nodes://a:1"]).unwrap_err().to_string();
        assert!(refused.contains("'verbose'") && refused.contains("debug") && refused.contains("error"), "{refused}");
    }

    #[test]
    fn byte_sizes_read_as_docker_reads_them() {
        for (given, want) in [
            ("4194304", 4 << 20),
            ("4MiB", 4 << 20),
            ("4MB", 4 << 20),
            ("64m", 64 << 20),
            ("1g", 1 << 30),
            ("512 KiB", 512 << 10),
            ("7b", 7),
        ] {
            assert_eq!(byte_size(given), Ok(want), "{given}");
        }
        for bad in ["", "MiB", "4 parsecs", "-1", "1.5g", "99999999999p"] {
            assert!(byte_size(bad).is_err(), "{bad}");
        }
        let cli = Cli::try_parse_from(["swarm", "manage", "--api-max-body-bytes", "8MiB", "nodes://a:1"]).unwrap();
        let Some(Command::Manage(m)) = cli.command else { panic!("not manage") };
        assert_eq!(m.api_max_body_bytes, 8 << 20);
    }

    #[test]
    fn manage_reads_classic_flags() {
        let cli = Cli::try_parse_from([
            "swarm",
            "manage",
            "-H",
            "tcp://127.0.0.1:3375",
            "--strategy",
            "binpack",
            "-f",
            "health",
            "nodes://a:1",
        ])
        .unwrap();
        let Some(Command::Manage(m)) = cli.command else { panic!("not manage") };
        assert_eq!(
            (m.host[0].as_str(), m.strategy.as_str(), m.filter[0].as_str()),
            ("tcp://127.0.0.1:3375", "binpack", "health")
        );
    }
}

/// The swarm commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a cluster token for token:// discovery.
    #[command(visible_alias = "c")]
    Create(CreateArgs),
    /// List the nodes registered in a discovery backend.
    #[command(visible_alias = "l")]
    List(ListArgs),
    /// Manage a Docker cluster.
    #[command(visible_alias = "m")]
    Manage(Box<ManageArgs>),
    /// Join a Docker engine to a cluster.
    #[command(visible_alias = "j")]
    Join(JoinArgs),
    /// List, add or remove the managers of an embedded-Raft group.
    Members(MembersArgs),
    /// Back up or restore the replicated state of an embedded-Raft group.
    Snapshot(SnapshotArgs),
    /// Print the join token that `swarm join` and `swarm list` need for swarm:// discovery.
    JoinToken(JoinTokenArgs),
}

/// `swarm join-token`.
#[derive(Debug, Args)]
pub struct JoinTokenArgs {
    /// The managers' cluster secret.
    #[arg(long = "cluster-secret-file", env = "SWARM_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: String,
}

/// `swarm members`.
#[derive(Debug, Args)]
pub struct MembersArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: MembersAction,
}

/// `swarm members list|add|remove`.
#[derive(Debug, Subcommand)]
pub enum MembersAction {
    /// Each member as it sees itself: role, term, applied index, reachable, last contact.
    List(MembersConn),
    /// Add a manager (start it first, with the group's --replication-peers): it catches up as a
    /// learner, then votes.
    Add {
        /// The manager's --advertise address, host:port.
        addr: String,
        /// Where to ask.
        #[command(flatten)]
        conn: MembersConn,
    },
    /// Remove a manager (then stop it).
    Remove {
        /// The manager's --advertise address, host:port.
        addr: String,
        /// Where to ask.
        #[command(flatten)]
        conn: MembersConn,
    },
}

/// `swarm snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: SnapshotAction,
}

/// `swarm snapshot save|restore|status`.
#[derive(Debug, Subcommand)]
pub enum SnapshotAction {
    /// Save the group's replicated state to FILE: from its leader, through any running manager
    /// (--manager), or from a stopped member's --data-dir (after a lost quorum, say).
    Save {
        /// The file to write.
        file: String,
        /// A stopped member's data directory, read instead of asking a running group.
        #[arg(long = "data-dir", conflicts_with = "manager")]
        data_dir: Option<String>,
        /// Any manager of a running group, host:port.
        #[arg(long = "manager", short = 'm', env = "SWARM_MANAGER")]
        manager: Option<String>,
        /// The managers' cluster secret (with --manager).
        #[arg(long = "cluster-secret-file", env = "SWARM_CLUSTER_SECRET_FILE")]
        cluster_secret_file: Option<String>,
        /// How long to wait for the snapshot (with --manager).
        #[arg(long = "timeout", default_value = "30s")]
        timeout: String,
        /// TLS towards managers run with --tls or --tlsverify.
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Write FILE into an empty --data-dir as a member of a new group of --replication-peers.
    /// Restore every member of the new group from the same file, then start them with the
    /// same --advertise and --data-dir.
    Restore {
        /// The snapshot file.
        file: String,
        /// The new member's data directory; it must hold no member yet.
        #[arg(long = "data-dir")]
        data_dir: String,
        /// The new member's --advertise address.
        #[arg(long = "advertise")]
        advertise: String,
        /// Every member of the new group, host:port,...
        #[arg(long = "replication-peers", value_delimiter = ',', required = true)]
        replication_peers: Vec<String>,
    },
    /// Check FILE and print what it holds.
    Status {
        /// The snapshot file.
        file: String,
    },
}

/// How `swarm members` reaches the group.
#[derive(Debug, Args)]
pub struct MembersConn {
    /// Any manager of the group, host:port.
    #[arg(long = "manager", short = 'm', env = "SWARM_MANAGER")]
    pub manager: String,
    /// The managers' cluster secret: membership is for managers only.
    #[arg(long = "cluster-secret-file", env = "SWARM_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: String,
    /// How long to wait for each manager's answer to `list`.
    #[arg(long = "timeout", default_value = "2s")]
    pub timeout: String,
    /// TLS towards managers run with --tls or --tlsverify.
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// The classic TLS flags: one pair, served by `manage` and presented to its peers.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// Use TLS.
    #[arg(long)]
    pub tls: bool,
    /// Use TLS and verify the remote.
    #[arg(long)]
    pub tlsverify: bool,
    /// CA certificate.
    #[arg(long)]
    pub tlscacert: Option<String>,
    /// TLS certificate.
    #[arg(long)]
    pub tlscert: Option<String>,
    /// TLS key.
    #[arg(long)]
    pub tlskey: Option<String>,
}

/// `swarm create` takes no arguments.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Rejected: `create` takes no arguments (kept to print the classic message).
    #[arg(hide = true)]
    pub extra: Vec<String>,
}

/// `swarm list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Discovery URL (nodes://, file://, etcd://, token://).
    #[arg(env = "SWARM_DISCOVERY")]
    pub discovery: Option<String>,
    /// How long to wait for the discovery backend.
    #[arg(long, default_value = "10s")]
    pub timeout: String,
    /// Discovery options, key=value.
    #[arg(long = "discovery-opt")]
    pub discovery_opt: Vec<String>,
    /// The join token (`swarm join-token` prints it), for swarm:// discovery.
    #[arg(long = "join-token-file", env = "SWARM_JOIN_TOKEN_FILE")]
    pub join_token_file: Option<String>,
}

/// `swarm join`.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// Discovery URL.
    #[arg(env = "SWARM_DISCOVERY")]
    pub discovery: Option<String>,
    /// Address of the Docker engine to register, host:port.
    #[arg(long = "advertise", visible_alias = "addr", env = "SWARM_ADVERTISE")]
    pub advertise: Option<String>,
    /// Period between registrations.
    #[arg(long, default_value = "60s")]
    pub heartbeat: String,
    /// Time to live of a registration.
    #[arg(long, default_value = "180s")]
    pub ttl: String,
    /// Random delay before the first registration, in [0, delay).
    #[arg(long, default_value = "0s")]
    pub delay: String,
    /// Discovery options, key=value.
    #[arg(long = "discovery-opt")]
    pub discovery_opt: Vec<String>,
    /// The join token (`swarm join-token` prints it), for swarm:// discovery.
    #[arg(long = "join-token-file", env = "SWARM_JOIN_TOKEN_FILE")]
    pub join_token_file: Option<String>,
}

/// `swarm manage`.
#[derive(Debug, Args)]
pub struct ManageArgs {
    /// Discovery URL.
    #[arg(env = "SWARM_DISCOVERY")]
    pub discovery: Option<String>,
    /// Addresses to listen on: tcp://host:port, host:port or unix:///path [default:
    /// 127.0.0.1:2375].
    #[arg(short = 'H', long = "host", env = "SWARM_HOST", value_delimiter = ',')]
    pub host: Vec<String>,
    /// Scheduling strategy: spread, binpack, random.
    #[arg(long, default_value = "spread")]
    pub strategy: String,
    /// Filters to use: health, port, containerslots, dependency, affinity, constraint,
    /// whitelist; giving any replaces the default list [default: all of them].
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Enable leader election among managers.
    #[arg(long)]
    pub replication: bool,
    /// The cluster secret every manager holds (16 bytes or more; `swarm create > FILE` makes
    /// one): required with --replication-peers and swarm:// discovery. Control routes (Raft,
    /// membership, the node registry) accept only requests signed with it or the join token.
    #[arg(long = "cluster-secret-file", env = "SWARM_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<String>,
    /// How far a signed control request's clock may be from this manager's: requests older
    /// than this are refused as replays.
    #[arg(long = "control-auth-window", default_value = "30s")]
    pub control_auth_window: String,
    /// Leader lease time to live: a dead leader is replaced within about this long. Classic
    /// Swarm used 20s; 5s fails over fast while tolerating two lost renewals (every TTL/3).
    #[arg(long = "replication-ttl", default_value = "5s")]
    pub replication_ttl: String,
    /// How long a follower that knows no leader holds a request before answering 503.
    #[arg(long = "replication-leader-wait", default_value = "10s")]
    pub replication_leader_wait: String,
    /// Address this manager is reachable at by its peers, host:port.
    #[arg(long = "advertise", visible_alias = "addr", env = "SWARM_ADVERTISE")]
    pub advertise: Option<String>,
    /// TLS for the API and towards engines and managers.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Lower bound of the randomized engine refresh interval.
    #[arg(long = "engine-refresh-min-interval", default_value = "30s")]
    pub engine_refresh_min_interval: String,
    /// Upper bound of the randomized engine refresh interval.
    #[arg(long = "engine-refresh-max-interval", default_value = "60s")]
    pub engine_refresh_max_interval: String,
    /// Consecutive failures before an engine is marked Unhealthy.
    #[arg(long = "engine-failure-retry", default_value_t = 3)]
    pub engine_failure_retry: i64,
    /// Deprecated; use --engine-failure-retry.
    #[arg(long = "engine-refresh-retry", default_value_t = 3, hide = true)]
    pub engine_refresh_retry: i64,
    /// Period of the light health probe (GET /_ping) sent to every engine.
    #[arg(long = "engine-probe-interval", default_value = "1s")]
    pub engine_probe_interval: String,
    /// Most health probes per second across all engines: past this many engines per
    /// `--engine-probe-interval`, each engine's probe period stretches to keep the rate.
    #[arg(long = "engine-probe-rate", default_value_t = 100)]
    pub engine_probe_rate: u32,
    /// Bound on one health probe.
    #[arg(long = "engine-probe-timeout", default_value = "2s")]
    pub engine_probe_timeout: String,
    /// Time after which an engine request (probe or API call waiting for headers) fails.
    #[arg(long = "engine-timeout", default_value = "3s")]
    pub engine_timeout: String,
    /// Time an engine has to answer a container create before the manager gives up on it.
    #[arg(long = "engine-create-timeout", default_value = "30s")]
    pub engine_create_timeout: String,
    /// Time an engine has to pull a create's missing image before the create fails.
    #[arg(long = "engine-pull-timeout", default_value = "10m")]
    pub engine_pull_timeout: String,
    /// Discovery poll period (file://, token://).
    #[arg(long, default_value = "60s")]
    pub heartbeat: String,
    /// Enable CORS headers.
    #[arg(long = "api-enable-cors", visible_alias = "cors")]
    pub api_enable_cors: bool,
    /// Largest JSON request body the manager reads (bytes, or with a unit: 4MiB, 64m).
    #[arg(long = "api-max-body-bytes", default_value_t = 4 * 1024 * 1024, value_parser = byte_size)]
    pub api_max_body_bytes: u64,
    /// Largest upload the manager buffers to fan out (image load and import), in bytes.
    #[arg(long = "api-max-upload-bytes", default_value_t = 1024 * 1024 * 1024, value_parser = byte_size)]
    pub api_max_upload_bytes: u64,
    /// Most bytes all the uploads buffered at once may hold together (at least
    /// --api-max-upload-bytes); past it an upload is answered 503.
    #[arg(long = "api-max-upload-total-bytes", default_value_t = 2 * 1024 * 1024 * 1024, value_parser = byte_size)]
    pub api_max_upload_total_bytes: u64,
    /// Most bytes all the JSON bodies buffered at once may hold together (at least
    /// --api-max-body-bytes); past it a request is answered 503.
    #[arg(long = "api-max-body-total-bytes", default_value_t = 256 * 1024 * 1024, value_parser = byte_size)]
    pub api_max_body_total_bytes: u64,
    /// Time a client has to send a JSON body (create, network and volume create); past it: 408.
    #[arg(long = "api-body-timeout", default_value = "60s")]
    pub api_body_timeout: String,
    /// How long a client may take to send a request's headers, and how long a kept-alive
    /// connection may sit idle between requests.
    #[arg(long = "api-header-timeout", default_value = "30s")]
    pub api_header_timeout: String,
    /// Largest request head (request line and headers) read; over it: 431. hyper's read
    /// buffer (about 400 KiB) bounds it in any case.
    #[arg(long = "api-max-header-bytes", default_value_t = 256 * 1024, value_parser = byte_size)]
    pub api_max_header_bytes: u64,
    /// Most client connections open at once; past it, a new connection is answered 503 and
    /// closed.
    #[arg(long = "api-max-connections", default_value_t = 4096)]
    pub api_max_connections: usize,
    /// Bound on each engine's whole answer to a call sent to every engine (image, network
    /// and volume lists, creates and removals, prunes, tags).
    #[arg(long = "engine-fanout-timeout", default_value = "5m")]
    pub engine_fanout_timeout: String,
    /// Most bytes of all the engines' answers to one call sent to every engine, together (an
    /// image list of 5,000 engines); past it the call fails with 500 rather than grow memory.
    #[arg(long = "engine-fanout-max-bytes", default_value_t = 1 << 30, value_parser = byte_size)]
    pub engine_fanout_max_bytes: u64,
    /// How long the leader keeps the answer of a write that carries a request ID
    /// (X-Swarm-Request-Id), so that the same request sent again gets it instead of a second run.
    #[arg(long = "request-memory", default_value = "10m")]
    pub request_memory: String,
    /// Most such answers kept at once; the oldest are forgotten first.
    #[arg(long = "request-memory-max", default_value_t = 100_000)]
    pub request_memory_max: usize,
    /// Most engines the swarm:// registry holds; registrations past it are refused.
    #[arg(long = "registry-max-entries", default_value_t = 10_000)]
    pub registry_max_entries: usize,
    /// How long a client may take to finish the TLS handshake with the API front.
    #[arg(long = "tls-handshake-timeout", default_value = "10s")]
    pub tls_handshake_timeout: String,
    /// Cluster driver; only "swarm".
    #[arg(short = 'c', long = "cluster-driver", default_value = "swarm")]
    pub cluster_driver: String,
    /// Cluster options, key=value: swarm.overcommit [default: 0.05], swarm.createretry
    /// [default: 0].
    #[arg(long = "cluster-opt")]
    pub cluster_opt: Vec<String>,
    /// Discovery options, key=value.
    #[arg(long = "discovery-opt")]
    pub discovery_opt: Vec<String>,
    /// Force a refresh of a node when `docker ps` filters on it.
    #[arg(long = "refresh-on-node-filter")]
    pub refresh_on_node_filter: bool,
    /// Refresh all engines when `docker ps` filters on this container name.
    #[arg(long = "container-name-refresh-filter", default_value = "")]
    pub container_name_refresh_filter: String,
    /// Peers of the embedded Raft group, host:port,... (replication without etcd).
    #[arg(long = "replication-peers", value_delimiter = ',')]
    pub replication_peers: Vec<String>,
    /// Directory for the embedded Raft log and snapshots.
    #[arg(long = "data-dir")]
    pub data_dir: Option<String>,
    /// Embedded Raft: how often the leader sends heartbeats (openraft's default).
    #[arg(long = "replication-heartbeat", default_value = "50ms")]
    pub replication_heartbeat: String,
    /// Embedded Raft: shortest election timeout, T (openraft's default); the longest is 2T.
    /// A follower campaigns 2T to 4T after the last heartbeat; the leader stops acting 2T less
    /// a heartbeat after its last quorum acknowledgement, before anyone can be elected.
    #[arg(long = "replication-election-timeout", default_value = "150ms")]
    pub replication_election_timeout: String,
}

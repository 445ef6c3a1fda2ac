//! Prometheus metrics. Registered on a registry the composition root creates, never on a global
//! one, so that every in-process manager (tests) has its own.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

const NAMESPACE: &str = "swarm";

/// Every metric the manager exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// API requests by method, route class and status code.
    pub api_requests: IntCounterVec,
    /// API request latency (to response headers) by method and route class.
    pub api_duration: HistogramVec,
    /// Requests proxied, by target (`engine`).
    pub proxied: IntCounterVec,
    /// Hijacked connections open now.
    pub hijacked: IntGauge,
    /// Nodes by state.
    pub nodes: IntGaugeVec,
    /// Full engine refreshes that failed.
    pub refresh_errors: IntCounter,
    /// Full engine refresh latency.
    pub refresh_duration: Histogram,
    /// Re-reads of one container asked for (after an event or a change through the manager).
    pub rereads_asked: IntCounter,
    /// Re-reads of one container made: fewer than asked when asks came while one ran.
    pub rereads: IntCounter,
    /// Scheduling decisions by result (`ok` or a failure reason).
    pub decisions: IntCounterVec,
    /// Node health transitions by kind (`engine_connect`, ...).
    pub node_transitions: IntCounterVec,
    /// Events dropped because a `docker events` client read too slowly.
    pub events_dropped: IntCounter,
    /// Client connections refused past `--api-max-connections`.
    pub refused_connections: IntCounter,
    /// Connections that had sent nothing, closed to make room for new ones.
    pub evicted_connections: IntCounter,
    /// Request bodies buffered now, by kind (`upload`, `json`), as their shared limits count them.
    pub buffered_body_bytes: IntGaugeVec,
    /// Control-plane requests refused, by reason (`unsigned`, `replayed`, ...).
    pub control_refused: IntCounterVec,
    /// Time to response headers of requests a follower forwarded to the leader.
    pub leader_proxy_duration: Histogram,
    /// Containers recreated on another node after theirs failed.
    pub rescheduled: IntCounter,
    /// How late the async runtime woke a periodic timer (see `lag`).
    pub runtime_lag: Histogram,
    /// Time to pick a node for a container, the wait for the schedule lock included.
    pub scheduling_duration: Histogram,
    /// Time to the answer's head of calls to engines, by kind (`transport::call_kind`).
    pub engine_call_duration: HistogramVec,
    /// Each engine's health as this manager sees it: 1 healthy, 0 not (set at each scrape).
    pub engine_healthy: IntGaugeVec,
    /// Requests a follower passed on to the leader, which counts them in `api_requests`.
    pub forwarded: IntCounterVec,
    /// Entries of the swarm:// registry, counted at each registration.
    pub registry_entries: IntGauge,
    /// Held while a scrape sets the gauges it owns and encodes them, so that two scrapes do
    /// not see each other's half-set series.
    pub scrape: std::sync::Arc<tokio::sync::Mutex<()>>,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NAMESPACE)
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        // Latency buckets from 100 µs (a cached answer) to 30 s (a slow engine or a pull).
        let latency = vec![
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        let m = Metrics {
            api_requests: IntCounterVec::new(
                opts("api_requests_total", "Docker API requests served."),
                &["method", "route", "code"],
            )?,
            api_duration: HistogramVec::new(
                HistogramOpts::new("api_request_duration_seconds", "Time to response headers of Docker API requests.")
                    .namespace(NAMESPACE)
                    .buckets(latency.clone()),
                &["method", "route"],
            )?,
            proxied: IntCounterVec::new(opts("proxied_requests_total", "Requests forwarded unchanged."), &["target"])?,
            hijacked: IntGauge::with_opts(opts("hijacked_connections", "Hijacked (attach, exec) connections open."))?,
            nodes: IntGaugeVec::new(opts("nodes", "Engines by state."), &["state"])?,
            refresh_errors: IntCounter::with_opts(opts(
                "engine_refresh_errors_total",
                "Engine refreshes that failed.",
            ))?,
            refresh_duration: Histogram::with_opts(
                HistogramOpts::new("engine_refresh_duration_seconds", "Time of a full engine refresh.")
                    .namespace(NAMESPACE)
                    .buckets(latency.clone()),
            )?,
            rereads_asked: IntCounter::with_opts(opts(
                "container_rereads_asked_total",
                "Re-reads of one container asked for.",
            ))?,
            rereads: IntCounter::with_opts(opts(
                "container_rereads_total",
                "Re-reads of one container made (asks made meanwhile share one).",
            ))?,
            decisions: IntCounterVec::new(
                opts("scheduler_decisions_total", "Scheduling decisions by result."),
                &["result"],
            )?,
            node_transitions: IntCounterVec::new(
                opts("node_transitions_total", "Engine health transitions."),
                &["kind"],
            )?,
            events_dropped: IntCounter::with_opts(opts("events_dropped_total", "Events a slow subscriber missed."))?,
            refused_connections: IntCounter::with_opts(opts(
                "api_connections_refused_total",
                "Client connections refused past --api-max-connections.",
            ))?,
            buffered_body_bytes: IntGaugeVec::new(
                opts("api_buffered_body_bytes", "Request bodies buffered now, by kind."),
                &["kind"],
            )?,
            evicted_connections: IntCounter::with_opts(opts(
                "api_connections_evicted_total",
                "Connections that had sent nothing, closed to make room for new ones.",
            ))?,
            control_refused: IntCounterVec::new(
                opts("control_requests_refused_total", "Control-plane requests refused, by reason."),
                &["reason"],
            )?,
            rescheduled: IntCounter::with_opts(opts(
                "containers_rescheduled_total",
                "Containers recreated after their node failed.",
            ))?,
            leader_proxy_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "leader_proxy_duration_seconds",
                    "Time to response headers of requests forwarded to the leader.",
                )
                .namespace(NAMESPACE)
                .buckets(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ]),
            )?,
            scheduling_duration: Histogram::with_opts(
                HistogramOpts::new("scheduling_duration_seconds", "Time to pick a node for a container.")
                    .namespace(NAMESPACE)
                    .buckets(vec![
                        0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
                    ]),
            )?,
            engine_call_duration: HistogramVec::new(
                HistogramOpts::new("engine_request_duration_seconds", "Time to the answer's head of calls to engines.")
                    .namespace(NAMESPACE)
                    .buckets(latency.clone()),
                &["kind"],
            )?,
            engine_healthy: IntGaugeVec::new(
                opts("engine_healthy", "1 while this manager sees the engine healthy, else 0."),
                &["addr", "node"],
            )?,
            forwarded: IntCounterVec::new(
                opts("api_forwarded_requests_total", "Requests passed on to the leader, which counts them."),
                &["method", "code"],
            )?,
            scrape: Default::default(),
            registry_entries: IntGauge::with_opts(opts(
                "registry_entries",
                "Entries of the swarm:// registry, counted at each registration.",
            ))?,
            runtime_lag: Histogram::with_opts(
                HistogramOpts::new("runtime_timer_lateness_seconds", "How late the async runtime woke a 50 ms timer.")
                    .namespace(NAMESPACE)
                    .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            )?,
        };
        registry.register(Box::new(m.api_requests.clone()))?;
        registry.register(Box::new(m.api_duration.clone()))?;
        registry.register(Box::new(m.proxied.clone()))?;
        registry.register(Box::new(m.hijacked.clone()))?;
        registry.register(Box::new(m.nodes.clone()))?;
        registry.register(Box::new(m.refresh_errors.clone()))?;
        registry.register(Box::new(m.refresh_duration.clone()))?;
        registry.register(Box::new(m.rereads_asked.clone()))?;
        registry.register(Box::new(m.rereads.clone()))?;
        registry.register(Box::new(m.decisions.clone()))?;
        registry.register(Box::new(m.node_transitions.clone()))?;
        registry.register(Box::new(m.events_dropped.clone()))?;
        registry.register(Box::new(m.refused_connections.clone()))?;
        registry.register(Box::new(m.evicted_connections.clone()))?;
        registry.register(Box::new(m.buffered_body_bytes.clone()))?;
        registry.register(Box::new(m.leader_proxy_duration.clone()))?;
        registry.register(Box::new(m.rescheduled.clone()))?;
        registry.register(Box::new(m.control_refused.clone()))?;
        registry.register(Box::new(m.runtime_lag.clone()))?;
        registry.register(Box::new(m.scheduling_duration.clone()))?;
        registry.register(Box::new(m.engine_call_duration.clone()))?;
        registry.register(Box::new(m.engine_healthy.clone()))?;
        registry.register(Box::new(m.forwarded.clone()))?;
        registry.register(Box::new(m.registry_entries.clone()))?;
        let build = IntGaugeVec::new(opts("build_info", "Build of this manager."), &["version", "revision"])?;
        build.with_label_values(&[crate::VERSION, crate::GIT_COMMIT]).set(1);
        registry.register(Box::new(build))?;
        Ok(m)
    }
}

/// A registry with the process collector (unprefixed `process_*`, the convention) and swarm's
/// metrics.
pub fn new_registry() -> prometheus::Result<(Registry, Metrics)> {
    let registry = Registry::new();
    registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
    let metrics = Metrics::register(&registry)?;
    Ok((registry, metrics))
}

/// The registry in Prometheus text format, with its content type.
pub fn encode(registry: &Registry) -> (String, Vec<u8>) {
    let encoder = TextEncoder::new();
    let mut buf = Vec::new();
    // Encoding our own well-formed families into a Vec cannot fail.
    let _ = encoder.encode(&registry.gather(), &mut buf);
    (encoder.format_type().to_string(), buf)
}

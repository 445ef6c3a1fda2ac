//! What the leader does to the cluster: place and create containers (`create`), and repair it
//! when nodes fail (`reschedule`). It works on the cluster, the scheduler, the store and the
//! leadership, never on an HTTP request: the API's handlers and the rescheduler both call it.
//!
//! - `spec`: from a create body to the scheduler's request.
//! - `create`: record, schedule, reserve, create (pulling if needed), retry elsewhere.
//! - `orphans`: removing what an interrupted create may have left on an engine.
//! - `reschedule`: the reconciler that recreates containers of failed nodes.

mod create;
mod earlier;
mod orphans;
pub mod reschedule;
pub(crate) mod spec;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::cluster::{Cluster, NodeHandle};
use crate::leadership::Leadership;
use crate::metrics::Metrics;
use crate::scheduler::{ContainerSpec, ScheduleError, Scheduler};
use crate::store::Store;
use crate::transport::EngineError;

pub use create::{CreateRequest, Created, InFlight, CREATES_PREFIX};
pub use earlier::EarlierRun;
pub use orphans::{list_by_label, remove as force_remove};
pub use spec::{build_spec, image_reference};

/// A refusal or failure, in the terms the Docker API answers with: a status and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The status a client is answered with.
    pub status: StatusCode,
    /// What went wrong, in Docker's words where the engine had some.
    pub message: String,
    /// Nothing was done because this manager no longer leads (see `api::ApiError`).
    pub not_primary: bool,
}

impl Error {
    /// Any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Error { status, message: message.into(), not_primary: false }
    }

    /// Nothing was done: this manager no longer leads.
    pub fn not_primary() -> Self {
        Error {
            not_primary: true,
            ..Error::new(StatusCode::SERVICE_UNAVAILABLE, "This manager is no longer the primary; retry")
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Error::new(StatusCode::BAD_REQUEST, message)
    }

    fn internal(message: impl Into<String>) -> Self {
        Error::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Self {
        let status = match &e {
            EngineError::Status { status, .. } => *status,
            EngineError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Error::new(status, crate::cluster::error_chain(&e))
    }
}

impl From<ScheduleError> for Error {
    fn from(e: ScheduleError) -> Self {
        Error::internal(e.to_string())
    }
}

/// The bounds the orchestrator works within.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Further nodes a create is tried on when an engine fails it (`swarm.createretry`).
    pub create_retry: u32,
    /// How long an engine may take to create or start a container (the pull aside).
    pub create_timeout: Duration,
    /// How long an engine may take to pull a create's missing image.
    pub pull_timeout: Duration,
    /// How long any other engine call may take.
    pub engine_timeout: Duration,
    /// How long a change sent with a request ID stays recorded for its resends.
    pub request_memory: Duration,
}

/// The handle the API and the rescheduler share; cheap to clone.
#[derive(Clone)]
pub struct Orchestrator {
    inner: Arc<Inner>,
}

struct Inner {
    cluster: Cluster,
    scheduler: Scheduler,
    store: Store,
    leadership: Leadership,
    metrics: Metrics,
    settings: Settings,
}

impl Orchestrator {
    /// Bundles the parts it acts through.
    pub fn new(
        cluster: Cluster,
        scheduler: Scheduler,
        store: Store,
        leadership: Leadership,
        metrics: Metrics,
        settings: Settings,
    ) -> Self {
        Orchestrator { inner: Arc::new(Inner { cluster, scheduler, store, leadership, metrics, settings }) }
    }

    /// The filters and strategy (for `docker info`).
    pub fn scheduler(&self) -> &Scheduler {
        &self.inner.scheduler
    }

    /// Picks a node for work that is not a container (an image build), without reserving.
    pub fn place(&self, spec: &ContainerSpec) -> Result<NodeHandle, Error> {
        let key = self.inner.cluster.with_schedule_view(&[], |nodes| {
            self.inner.scheduler.select(nodes, spec, &mut rand::rng()).map(|n| n.key.clone())
        })?;
        self.inner.cluster.node(&key).ok_or_else(|| Error::internal("node left the cluster"))
    }
}

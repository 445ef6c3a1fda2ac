//! The create path: record the create in the store, schedule it under the schedule lock with a
//! reservation, send it to the engine (pulling the image there if missing), and try other nodes
//! when an engine fails it.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{json, Map, Value};

use super::{build_spec, image_reference, orphans, Error, Orchestrator};
use crate::cluster::{labels, NodeHandle, PendingCreate};
use crate::scheduler::{ContainerSpec, ContainerView};
use crate::store::StoreError;
use crate::transport::error_message;
use crate::transport::EngineClient;

/// Where a create in flight is recorded, by swarm ID.
pub const CREATES_PREFIX: &str = "creates/";

/// A create in flight, as recorded in the store.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct InFlight {
    /// The node it was sent to.
    pub node: String,
    /// Its name, if any.
    pub name: Option<String>,
}

/// What to create.
pub struct CreateRequest {
    /// The create body; swarm's expressions are taken out of its `Env`.
    pub config: Map<String, Value>,
    /// The name asked for, without its `/`.
    pub name: Option<String>,
    /// `X-Registry-Auth`, for the engine's implicit pull.
    pub auth: Option<HeaderValue>,
    /// The API version the client spoke, if it named one.
    pub api_version: Option<String>,
    /// The request key when the client's request carried an ID: it becomes the swarm ID, so
    /// that the same request sent again finds what the first run made.
    pub request_key: Option<String>,
}

/// A container the engine created.
pub struct Created {
    /// The node's key.
    pub node: String,
    /// The engine's container ID.
    pub id: String,
    /// The engine's answer, passed on to the client.
    pub answer: Bytes,
    /// Its content type.
    pub content_type: Option<HeaderValue>,
}

enum Failure {
    Final(Error),
    /// Worth trying on another node.
    Retryable(String, Error),
    /// The engine stopped answering mid-create; a cleanup task now owns the in-flight record.
    Interrupted(String, Error),
}

/// One create on one chosen node.
struct Attempt<'a> {
    req: &'a CreateRequest,
    spec: &'a ContainerSpec,
    swarm_id: &'a str,
    /// The leadership term it is created under, when replicated.
    term: Option<u64>,
}

fn random_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

pub(super) fn store_failure(e: StoreError) -> Error {
    match e {
        StoreError::NotLeader => Error::not_primary(),
        // Recorded before the engine hears of it: nothing was created, and another manager
        // (this one exits when its Raft store fails) can take the retry.
        other => Error::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot record the create, nothing was created; retry: {other}"),
        ),
    }
}

/// Gives the container a swarm ID unless its labels carry one (a reschedule keeps its own).
fn swarm_id_of(config: &mut Map<String, Value>) -> String {
    if let Some(id) = config.get("Labels").and_then(|l| l.get(labels::SWARM_ID)).and_then(Value::as_str) {
        return id.to_string();
    }
    let id = random_id();
    let labels_obj = config.entry("Labels").or_insert_with(|| json!({}));
    if !labels_obj.is_object() {
        *labels_obj = json!({});
    }
    labels_obj[labels::SWARM_ID] = json!(id);
    id
}

/// Gives a create its request key as swarm ID, so that a resend finds what the first run made.
fn keyed_swarm_id(config: &mut serde_json::Map<String, Value>, key: &str) -> String {
    let labels_obj = config.entry("Labels").or_insert_with(|| json!({}));
    if !labels_obj.is_object() {
        *labels_obj = json!({});
    }
    labels_obj[labels::SWARM_ID] = json!(key);
    key.to_string()
}

/// Labels the container with who creates it under which term: evidence, read back from the
/// engines, that no two leaderships acted at once. A reschedule's copy gets the new term.
fn stamp(config: &mut Map<String, Value>, term: u64, advertise: &str) {
    if let Some(labels_obj) = config.get_mut("Labels").and_then(Value::as_object_mut) {
        labels_obj.insert(labels::TERM.into(), json!(term.to_string()));
        labels_obj.insert(labels::CREATED_BY.into(), json!(advertise));
    }
}

impl Orchestrator {
    /// Schedules and creates a container: the API's create and the rescheduler's. An engine
    /// that fails it (5xx, or no answer) is left out and the next best node tried, up to
    /// `create_retry` times.
    pub async fn create(&self, mut req: CreateRequest) -> Result<Created, Error> {
        let spec = build_spec(&mut req.config)?;
        let swarm_id = match req.request_key.clone() {
            Some(key) => keyed_swarm_id(&mut req.config, &key),
            None => swarm_id_of(&mut req.config),
        };
        if req.name.is_some() || req.request_key.is_some() {
            // A manager that just started (or took over) may not have read every engine yet: a
            // name taken on one not read looks free, and a second container of that name would
            // go to another engine (seen in an etcd campaign after every manager restarted).
            self.inner.cluster.wait_loaded(crate::cluster::CACHE_LOAD_WAIT).await;
        }
        if req.request_key.is_some() {
            if let Some(made) = self.earlier_run(&swarm_id, &req).await? {
                return Ok(made);
            }
        }
        if let Some(name) = req.name.as_deref() {
            self.wait_for_name(name).await;
        }
        let term = self.inner.leadership.acting_term();
        if let Some(term) = term {
            stamp(&mut req.config, term, self.inner.leadership.advertise());
        }
        let attempt = Attempt { req: &req, spec: &spec, swarm_id: &swarm_id, term };
        let mut excluded: Vec<String> = Vec::new();
        let mut last_err = None;
        for _ in 0..=self.inner.settings.create_retry {
            match self.create_once(&attempt, &excluded).await {
                Ok(created) => return Ok(created),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Retryable(node, e) | Failure::Interrupted(node, e)) => {
                    excluded.push(node);
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| Error::internal("create failed")))
    }

    /// Waits, up to the create timeout, while another create holds `name`: a client retrying
    /// a create whose answer it lost is then told whether that one made the container (a
    /// conflict naming it) or failed (this one proceeds), not "in use by" nothing.
    async fn wait_for_name(&self, name: &str) {
        let deadline = tokio::time::Instant::now() + self.inner.settings.create_timeout;
        self.inner.cluster.wait_not_pending(Some(name), None, deadline).await;
    }

    /// Picks a node and reserves what the container will take there, under the schedule lock so
    /// that concurrent creates see each other.
    fn schedule(&self, a: &Attempt<'_>, excluded: &[String]) -> Result<(String, crate::cluster::PendingGuard), Error> {
        let (cluster, metrics) = (&self.inner.cluster, &self.inner.metrics);
        let _timer = metrics.scheduling_duration.start_timer();
        let name = a.req.name.as_deref();
        let _lock = cluster.schedule_lock();
        if let Some(n) = name {
            if let Some(holder) = cluster.name_holder_for(n, Some(a.swarm_id)) {
                metrics.decisions.with_label_values(&["conflict"]).inc();
                return Err(Error::new(StatusCode::CONFLICT, format!(
                    "Conflict. The container name \"/{n}\" is already in use by container \"{holder}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
        }
        let chosen = cluster.with_schedule_view(excluded, |nodes| {
            self.inner.scheduler.select(nodes, a.spec, &mut rand::rng()).map(|n| n.key.clone())
        });
        let chosen = match chosen {
            Ok(key) => key,
            Err(e) => {
                metrics.decisions.with_label_values(&["unschedulable"]).inc();
                return Err(e.into());
            }
        };
        metrics.decisions.with_label_values(&["ok"]).inc();
        let view = ContainerView {
            id: String::new(),
            names: name.map(|n| vec![n.to_string()]).unwrap_or_default(),
            image: a.spec.image.clone(),
            labels: BTreeMap::from([(labels::SWARM_ID.to_string(), a.swarm_id.to_string())]),
            host_ports: a.spec.host_ports.clone(),
            host_mode_ports: a.spec.host_mode_ports.clone(),
        };
        let guard = cluster.reserve(PendingCreate {
            node: chosen.clone(),
            name: name.map(str::to_string),
            cpus: a.spec.cpus,
            memory: a.spec.memory,
            view,
        });
        Ok((chosen, guard))
    }

    async fn create_once(&self, a: &Attempt<'_>, excluded: &[String]) -> Result<Created, Failure> {
        let (node, _guard) = self.schedule(a, excluded).map_err(Failure::Final)?;
        let Some(handle) = self.inner.cluster.node(&node) else {
            return Err(Failure::Retryable(node, Error::internal("node left the cluster")));
        };
        // Recorded before the engine hears of it, so that a leader that dies now leaves the next
        // one enough to finish or undo it; a deposed leader cannot record, so cannot create.
        let record = format!("{CREATES_PREFIX}{}", a.swarm_id);
        let in_flight =
            serde_json::to_vec(&InFlight { node: node.clone(), name: a.req.name.clone() }).unwrap_or_default();
        self.inner.store.put(record.clone(), in_flight, None).await.map_err(|e| Failure::Final(store_failure(e)))?;
        let outcome = self.send_create(a, &handle).await;
        // An interrupted create keeps its record until its cleanup confirms that no copy is left.
        if !matches!(outcome, Err(Failure::Interrupted(..))) {
            let _ = self.inner.store.delete(record).await;
        }
        outcome
    }

    /// The body the engine gets: classic Swarm's `CpuShares` counts CPUs; the engine wants
    /// shares of 1024 per CPU of the node.
    fn engine_body(&self, a: &Attempt<'_>, node: &str) -> Bytes {
        let mut body = a.req.config.clone();
        if a.spec.cpus > 0 {
            let ncpu = self
                .inner
                .cluster
                .with_nodes(|n| n.get(node).and_then(|n| n.info.as_ref().map(|i| i.ncpu)))
                .unwrap_or(1)
                .max(1);
            let shares = a.spec.cpus.saturating_mul(1024).saturating_add(ncpu - 1) / ncpu;
            if let Some(hc) = body.get_mut("HostConfig").and_then(Value::as_object_mut) {
                if hc.get("CpuShares").and_then(Value::as_i64).unwrap_or(0) > 0 {
                    hc.insert("CpuShares".into(), json!(shares));
                }
            }
            if body.get("CpuShares").and_then(Value::as_i64).unwrap_or(0) > 0 {
                body.insert("CpuShares".into(), json!(shares));
            }
        }
        Bytes::from(Value::Object(body).to_string())
    }

    async fn send_create(&self, a: &Attempt<'_>, handle: &NodeHandle) -> Result<Created, Failure> {
        let node = handle.key.clone();
        let query = a
            .req
            .name
            .as_deref()
            .map(|n| form_urlencoded::Serializer::new(String::new()).append_pair("name", n).finish());
        let engine_api = handle.api_version.as_deref();
        let path = crate::api_version::engine_path(
            a.req.api_version.as_deref(),
            engine_api,
            "/containers/create",
            query.as_deref(),
        );
        let payload = self.engine_body(a, &node);
        let mut headers = HeaderMap::new();
        if let Some(auth) = &a.req.auth {
            headers.insert("x-registry-auth", auth.clone());
        }
        let mut pulled = false;
        loop {
            // A leader frozen since it recorded the create may have been deposed meanwhile: it
            // must not act on its old term. (The window left is from here to the send.)
            if a.term.is_some() && self.inner.leadership.acting_term() != a.term {
                return Err(Failure::Final(Error::not_primary()));
            }
            let bound = Some(self.inner.settings.create_timeout);
            match handle.client.call(Method::POST, &path, Some(payload.clone()), &headers, bound).await {
                Ok((status, resp_headers, bytes)) if status == StatusCode::CREATED => {
                    let id = serde_json::from_slice::<Value>(&bytes)
                        .ok()
                        .and_then(|v| v["Id"].as_str().map(str::to_string))
                        .unwrap_or_default();
                    self.inner.cluster.learn_created(&node, &id, a.req.name.as_deref(), &a.req.config);
                    tracing::info!(target: "swarm::mutation", term = a.term, node = %node, id = %id, swarm_id = %a.swarm_id, "Container created.");
                    return Ok(Created {
                        node,
                        id,
                        answer: bytes,
                        content_type: resp_headers.get(header::CONTENT_TYPE).cloned(),
                    });
                }
                Ok((StatusCode::NOT_FOUND, _, bytes)) if !pulled && error_message(&bytes).contains("No such image") => {
                    pulled = true;
                    if self.pull_on(&handle.client, a, engine_api, &headers).await.is_err() {
                        return Err(Failure::Final(Error::new(StatusCode::NOT_FOUND, error_message(&bytes))));
                    }
                }
                Ok((status, _, bytes)) => {
                    let e = Error::new(status, error_message(&bytes));
                    return Err(if status.is_server_error() { Failure::Retryable(node, e) } else { Failure::Final(e) });
                }
                Err(e) => {
                    // The engine may have created it before failing, or may yet (a hung engine
                    // that resumes): keep trying to remove it, so no half-created copy survives.
                    let (client, id, store) = (handle.client.clone(), a.swarm_id.to_string(), self.inner.store.clone());
                    tokio::spawn(async move {
                        if orphans::remove_by_swarm_id_until_gone(client, id.clone()).await {
                            let _ = store.delete(format!("{CREATES_PREFIX}{id}")).await;
                        }
                    });
                    return Err(Failure::Interrupted(node, e.into()));
                }
            }
        }
    }

    /// Pulls the create's image on the chosen engine.
    async fn pull_on(
        &self,
        client: &EngineClient,
        a: &Attempt<'_>,
        engine_api: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<(), Error> {
        let image = &a.spec.image;
        let (repo, tag) = image_reference(image);
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("fromImage", &repo)
            .append_pair("tag", &tag)
            .finish();
        let path =
            crate::api_version::engine_path(a.req.api_version.as_deref(), engine_api, "/images/create", Some(&query));
        let (status, _, bytes) =
            client.call(Method::POST, &path, None, headers, Some(self.inner.settings.pull_timeout)).await?;
        let failed = !status.is_success()
            || bytes
                .split(|b| *b == b'\n')
                .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
                .any(|m| m.get("error").is_some());
        if failed {
            return Err(Error::new(StatusCode::NOT_FOUND, format!("No such image: {image}")));
        }
        Ok(())
    }
}

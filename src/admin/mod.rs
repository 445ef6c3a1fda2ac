//! Commands an operator runs against a group of managers, through their control plane
//! (signed with the cluster secret): `swarm members` and `swarm snapshot`.

pub mod members;
pub mod snapshot;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method};
use serde_json::Value;

use crate::cli::TlsArgs;
use crate::config::ConfigError;

/// How an administration command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// A flag or file is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The manager asked did not do it.
    #[error("{0}")]
    Refused(String),
}

/// Signed calls to managers.
pub(crate) struct Caller {
    secret: crate::auth::ClusterSecret,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Caller {
    pub(crate) fn new(manager: &str, secret_file: &str, tls: &TlsArgs) -> Result<Caller, ConfigError> {
        if !crate::config::validate_host_port(manager) {
            return Err(ConfigError("--manager should be of the form ip:port or hostname:port".into()));
        }
        let tls = match crate::config::tls_files(tls)? {
            Some(files) => Some(crate::tls::client_config(&files).map_err(|e| ConfigError(e.to_string()))?),
            None => None,
        };
        let secret = crate::auth::ClusterSecret::read(std::path::Path::new(secret_file)).map_err(ConfigError)?;
        Ok(Caller { secret, tls })
    }

    /// `method path` on `manager` within `bound`: the answer's JSON, or why not.
    pub(crate) async fn call(
        &self,
        manager: &str,
        method: Method,
        path: &str,
        bound: Duration,
    ) -> Result<Value, String> {
        let body = self.call_raw(manager, method, path, bound).await?;
        if body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    }

    /// `method path` on `manager` within `bound`: the answer's bytes, or why not.
    pub(crate) async fn call_raw(
        &self,
        manager: &str,
        method: Method,
        path: &str,
        bound: Duration,
    ) -> Result<bytes::Bytes, String> {
        let headers: HeaderMap = self.secret.manager_signer().headers(&method, path, b"");
        let client = crate::transport::EngineClient::with_tls(manager, bound, self.tls.clone());
        let (status, _, body) = client.call(method, path, None, &headers, Some(bound)).await.map_err(|e| match &e {
            // Not "the Docker engine" the transport's words name: a manager.
            crate::transport::EngineError::Unreachable { source, .. } => crate::cluster::error_chain(source.as_ref()),
            other => crate::cluster::error_chain(other),
        })?;
        if !status.is_success() {
            return Err(crate::transport::error_message(&body));
        }
        Ok(body)
    }
}

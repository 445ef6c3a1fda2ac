//! Where engines come from. A backend yields whole entry sets as they change; the consumer
//! (the cluster's registry) diffs them. Backends never know their consumer.
//!
//! - `url`: parsing of discovery URLs and ranges.

pub mod etcd;
pub mod managers;
pub mod token;
pub mod url;

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::mpsc;

pub use url::DiscoveryUrl;

use crate::auth::Signer;

/// A discovery backend failed to produce entries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The file could not be read.
    #[error("failed to read discovery file {path}")]
    File {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file's content does not parse.
    #[error("invalid discovery entries")]
    Entries(#[from] url::UrlError),
    /// etcd failed.
    #[error("etcd: {0}")]
    Etcd(String),
    /// No manager answered (`swarm://`).
    #[error("managers: {0}")]
    Managers(String),
    /// The token service failed.
    #[error("token service: {0}")]
    Token(String),
    /// The backend arrives with a later issue.
    #[error("{scheme}:// discovery is not available in this build yet")]
    Unsupported {
        /// The scheme.
        scheme: &'static str,
    },
    /// The backend cannot register entries (`swarm join` on a static list).
    #[error("not implemented: {scheme}:// discovery cannot register engines; list them in the URL or file instead")]
    RegisterUnsupported {
        /// The scheme.
        scheme: &'static str,
    },
}

/// What a backend reports.
#[derive(Debug)]
pub enum DiscoveryEvent {
    /// The complete current set of engine addresses.
    Entries(BTreeSet<String>),
    /// A failed poll; the previous set stays in force.
    Failed(DiscoveryError),
}

/// Reads the current entries once (`swarm list`, and the first poll of `watch`); `auth` signs
/// the requests of `swarm://` discovery.
pub async fn fetch(url: &DiscoveryUrl, auth: Option<&Signer>) -> Result<BTreeSet<String>, DiscoveryError> {
    match url {
        DiscoveryUrl::Nodes(list) => Ok(list.iter().cloned().collect()),
        DiscoveryUrl::File(path) => {
            let text = tokio::fs::read_to_string(path)
                .await
                .map_err(|source| DiscoveryError::File { path: path.display().to_string(), source })?;
            Ok(url::expand_entries(text.lines())?.into_iter().collect())
        }
        DiscoveryUrl::Etcd { endpoints, prefix, path, tls } => {
            etcd::fetch(&etcd::EtcdNodes::new(endpoints, prefix, path, tls.clone())).await
        }
        DiscoveryUrl::Token(rest) => token::fetch(&token::TokenUrl::parse(rest)).await,
        DiscoveryUrl::Managers { managers: list, tls } => managers::fetch(list, tls.as_ref(), auth).await,
        other => Err(DiscoveryError::Unsupported { scheme: other.scheme() }),
    }
}

/// Keeps an engine address registered (`swarm join`): every `heartbeat`, with a `ttl`.
pub async fn register_forever(
    url: &DiscoveryUrl,
    auth: Option<&Signer>,
    addr: &str,
    ttl: Duration,
    heartbeat: Duration,
) -> Result<(), DiscoveryError> {
    match url {
        DiscoveryUrl::Nodes(_) | DiscoveryUrl::File(_) => {
            Err(DiscoveryError::RegisterUnsupported { scheme: url.scheme() })
        }
        DiscoveryUrl::Etcd { endpoints, prefix, path, tls } => {
            etcd::register_forever(
                etcd::EtcdNodes::new(endpoints, prefix, path, tls.clone()),
                addr.to_string(),
                ttl,
                heartbeat,
            )
            .await
        }
        DiscoveryUrl::Token(rest) => {
            token::register_forever(token::TokenUrl::parse(rest), addr.to_string(), ttl, heartbeat).await
        }
        DiscoveryUrl::Managers { managers: list, tls } => {
            managers::register_forever(list.clone(), tls.as_ref(), auth, addr.to_string(), ttl, heartbeat).await
        }
        other => Err(DiscoveryError::Unsupported { scheme: other.scheme() }),
    }
}

/// Sends the entry set now and whenever it changes (file: polled every `heartbeat`), until the
/// receiver is dropped. Static lists send once and return.
pub async fn watch(url: DiscoveryUrl, auth: Option<Signer>, heartbeat: Duration, tx: mpsc::Sender<DiscoveryEvent>) {
    if let DiscoveryUrl::Etcd { endpoints, prefix, path, tls } = &url {
        return etcd::watch(etcd::EtcdNodes::new(endpoints, prefix, path, tls.clone()), tx).await;
    }
    let mut last: Option<BTreeSet<String>> = None;
    loop {
        let event = match fetch(&url, auth.as_ref()).await {
            Ok(set) if last.as_ref() == Some(&set) => None,
            // A poll that failed keeps the previous set: a restarting service drops no node.
            Ok(set) => {
                last = Some(set.clone());
                Some(DiscoveryEvent::Entries(set))
            }
            Err(e) => Some(DiscoveryEvent::Failed(e)),
        };
        let unsupported = matches!(event, Some(DiscoveryEvent::Failed(DiscoveryError::Unsupported { .. })));
        if let Some(ev) = event {
            if tx.send(ev).await.is_err() {
                return;
            }
        }
        if matches!(url, DiscoveryUrl::Nodes(_)) || unsupported {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(heartbeat) => {}
            _ = tx.closed() => return,
        }
    }
}

impl From<crate::etcd::EtcdError> for DiscoveryError {
    fn from(e: crate::etcd::EtcdError) -> Self {
        DiscoveryError::Etcd(e.0)
    }
}

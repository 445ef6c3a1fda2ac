//! Where engines come from. A backend yields whole entry sets as they change; the consumer
//! (the cluster's registry) diffs them. Backends never know their consumer.
//!
//! - `url`: parsing of discovery URLs and ranges.

pub mod url;

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::mpsc;

pub use url::DiscoveryUrl;

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

/// Reads the current entries once (`swarm list`, and the first poll of `watch`).
pub async fn fetch(url: &DiscoveryUrl) -> Result<BTreeSet<String>, DiscoveryError> {
    match url {
        DiscoveryUrl::Nodes(list) => Ok(list.iter().cloned().collect()),
        DiscoveryUrl::File(path) => {
            let text = tokio::fs::read_to_string(path)
                .await
                .map_err(|source| DiscoveryError::File { path: path.display().to_string(), source })?;
            Ok(url::expand_entries(text.lines())?.into_iter().collect())
        }
        other => Err(DiscoveryError::Unsupported { scheme: other.scheme() }),
    }
}

/// Registers an engine address (`swarm join`).
pub async fn register(url: &DiscoveryUrl, _addr: &str, _ttl: Duration) -> Result<(), DiscoveryError> {
    match url {
        DiscoveryUrl::Nodes(_) | DiscoveryUrl::File(_) => {
            Err(DiscoveryError::RegisterUnsupported { scheme: url.scheme() })
        }
        other => Err(DiscoveryError::Unsupported { scheme: other.scheme() }),
    }
}

/// Sends the entry set now and whenever it changes (file: polled every `heartbeat`), until the
/// receiver is dropped. Static lists send once and return.
pub async fn watch(url: DiscoveryUrl, heartbeat: Duration, tx: mpsc::Sender<DiscoveryEvent>) {
    let mut last: Option<BTreeSet<String>> = None;
    loop {
        let event = match fetch(&url).await {
            Ok(set) if last.as_ref() == Some(&set) => None,
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

//! etcd as every part of swarm meets it: the client with swarm's timeouts and TLS, and one
//! member at a time (`members.rs`). Discovery, the store and the election all go through here.

mod members;

use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use crate::tls::KvTls;
pub use members::{is_transport, EtcdMembers, MemberClient};

/// Bound on connecting to etcd and on each of its calls.
pub(crate) const ETCD_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings on etcd connections while a stream (watch, observe, lease renewal) is open: a
/// frozen member keeps its sockets open and would leave the stream silent forever. etcd sends
/// GOAWAY to clients that ping more often than its `--grpc-keepalive-min-time` (5 s).
const ETCD_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(6);
/// How long a ping may go unanswered before the connection, and its streams, fail.
const ETCD_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);
/// etcd could not be reached or refused a call.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EtcdError(pub String);

impl From<etcd_client::Error> for EtcdError {
    fn from(e: etcd_client::Error) -> Self {
        EtcdError(e.to_string())
    }
}

/// An etcd client with swarm's timeouts, over TLS when `tls` is given.
pub async fn connect_client(endpoints: &[String], tls: Option<&KvTls>) -> Result<Client, EtcdError> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(ETCD_TIMEOUT)
        .with_timeout(ETCD_TIMEOUT)
        .with_keep_alive(ETCD_KEEPALIVE_INTERVAL, ETCD_KEEPALIVE_TIMEOUT);
    let mut endpoints = endpoints.to_vec();
    if let Some(tls) = tls {
        let read =
            |p: &std::path::Path| std::fs::read(p).map_err(|e| EtcdError(format!("cannot read {}: {e}", p.display())));
        let options = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(read(&tls.ca)?))
            .identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?));
        opts = opts.with_tls(options);
        endpoints =
            endpoints.iter().map(|e| if e.contains("://") { e.clone() } else { format!("https://{e}") }).collect();
    }
    Client::connect(endpoints, Some(opts)).await.map_err(EtcdError::from)
}

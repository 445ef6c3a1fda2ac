//! One etcd member at a time. etcd-client balances over every endpoint with tonic, which keeps
//! sending a share of calls to a member that died; swarm instead talks to one member and moves
//! to the next as soon as a call to it fails in transport.

use std::future::Future;
use std::time::Duration;

use etcd_client::{Client, Error};
use tokio::sync::Mutex;
use tonic::Code;

use super::{connect_client, EtcdError, ETCD_TIMEOUT};
use crate::tls::KvTls;

/// The members of one etcd cluster and the one in use.
pub struct EtcdMembers {
    endpoints: Vec<String>,
    tls: Option<KvTls>,
    current: Mutex<Current>,
}

impl std::fmt::Debug for EtcdMembers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdMembers").field("endpoints", &self.endpoints).finish_non_exhaustive()
    }
}

struct Current {
    index: usize,
    client: Option<Client>,
}

/// A client of one member; give it back to [`EtcdMembers::failed`] when it lets you down.
#[derive(Clone)]
pub struct MemberClient {
    /// The client.
    pub client: Client,
    index: usize,
}

impl EtcdMembers {
    /// Members at `endpoints`, starting with a random one so that managers spread their load.
    pub fn new(endpoints: &[String], tls: Option<KvTls>) -> EtcdMembers {
        let index = rand::random_range(0..endpoints.len().max(1));
        EtcdMembers { endpoints: endpoints.to_vec(), tls, current: Mutex::new(Current { index, client: None }) }
    }

    /// A client of the member in use.
    pub async fn client(&self) -> Result<MemberClient, EtcdError> {
        self.client_within(ETCD_TIMEOUT).await
    }

    /// A client of the member in use, connecting within `bound`; a member that cannot be
    /// reached in time is left for the next, so a hung member does not hold every caller.
    pub async fn client_within(&self, bound: Duration) -> Result<MemberClient, EtcdError> {
        let mut current = self.current.lock().await;
        if current.client.is_none() {
            let endpoint =
                self.endpoints.get(current.index).ok_or_else(|| EtcdError("no etcd endpoint".into()))?.clone();
            let connected =
                match tokio::time::timeout(bound, connect_client(std::slice::from_ref(&endpoint), self.tls.as_ref()))
                    .await
                {
                    Ok(connected) => connected,
                    Err(_) => Err(EtcdError(format!("connecting to etcd at {endpoint} took over {bound:?}"))),
                };
            match connected {
                Ok(client) => current.client = Some(client),
                Err(e) => {
                    current.index = (current.index + 1) % self.endpoints.len().max(1);
                    return Err(e);
                }
            }
        }
        Ok(MemberClient { client: current.client.clone().expect("connected above"), index: current.index })
    }

    /// `used` failed: later calls go to the next member, unless another caller moved on already.
    pub async fn failed(&self, used: &MemberClient) {
        let mut current = self.current.lock().await;
        if current.index == used.index {
            current.index = (current.index + 1) % self.endpoints.len().max(1);
            current.client = None;
        }
    }

    /// Runs `session` (a watch, a campaign) on the member in use; any failure of it leaves that
    /// member for the next, so the caller's retry goes elsewhere. The outer error is connecting.
    pub async fn session<T, E, F, Fut>(&self, session: F) -> Result<Result<T, E>, EtcdError>
    where
        F: FnOnce(MemberClient) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let member = self.client().await?;
        let outcome = session(member.clone()).await;
        if outcome.is_err() {
            self.failed(&member).await;
        }
        Ok(outcome)
    }

    /// Runs `call` on the member in use, and on each other member in turn while it fails in
    /// transport. `call` must be safe to repeat: a reply lost in transport may hide success.
    pub async fn call<T, F, Fut>(&self, mut call: F) -> Result<T, EtcdError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut attempts = self.endpoints.len();
        loop {
            let member = self.client().await?;
            match call(member.client.clone()).await {
                Err(e) if is_transport(&e) && attempts > 1 => {
                    self.failed(&member).await;
                    attempts -= 1;
                }
                Err(e) => {
                    if is_transport(&e) {
                        self.failed(&member).await;
                    }
                    return Err(e.into());
                }
                Ok(v) => return Ok(v),
            }
        }
    }
}

/// The member could not be reached or answered nothing in time (as opposed to refusing the call).
pub fn is_transport(e: &Error) -> bool {
    match e {
        Error::TransportError(_) | Error::IoError(_) => true,
        // "etcdserver: no leader" is Unavailable too: another member may have one.
        Error::GRpcStatus(s) => {
            matches!(s.code(), Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded | Code::Unknown)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_are_told_from_refusals() {
        assert!(is_transport(&Error::GRpcStatus(tonic::Status::unavailable("tcp connect error"))));
        assert!(is_transport(&Error::GRpcStatus(tonic::Status::cancelled("Timeout expired"))));
        assert!(!is_transport(&Error::GRpcStatus(tonic::Status::not_found("requested lease not found"))));
        assert!(!is_transport(&Error::GRpcStatus(tonic::Status::failed_precondition("etcdserver: permission denied"))));
    }

    #[tokio::test]
    async fn a_failed_member_is_left_once_for_the_next() {
        let members = EtcdMembers::new(&["127.0.0.1:1".into(), "127.0.0.1:2".into(), "127.0.0.1:3".into()], None);
        let first = members.client().await.unwrap();
        let stale = first.clone();
        members.failed(&first).await;
        // A second caller that saw the same member fail does not skip the next one.
        members.failed(&stale).await;
        let second = members.client().await.unwrap();
        assert_eq!(second.index, (first.index + 1) % 3);
    }

    #[tokio::test]
    async fn a_call_tries_every_member_then_reports_the_failure() {
        let members = EtcdMembers::new(&["127.0.0.1:1".into(), "127.0.0.1:2".into()], None);
        let mut tries = 0;
        let outcome = members
            .call(|mut c| {
                tries += 1;
                async move { c.get("k", None).await.map(|_| ()) }
            })
            .await;
        assert!(outcome.is_err());
        assert_eq!(tries, 2);
    }
}

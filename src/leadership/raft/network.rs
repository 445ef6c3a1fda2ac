//! Raft RPCs between managers: bincode over HTTP on each manager's own listener, under
//! [`RPC_PREFIX`]. Peers are reached through pooled keep-alive clients.
//!
//! openraft 0.9 bounds an append by one heartbeat period and pauses replication to a peer
//! that is `Unreachable` (500 ms by default) before it sends anything more, heartbeats
//! included. That pause outlasts the followers' lease: an append that was merely slow on a
//! busy host, reported as unreachable, made its follower campaign and depose a healthy leader.
//! So a timeout is reported as a network error (no pause), and the pause for a refused
//! connection is one heartbeat period.

use bytes::Bytes;
use http::{Method, StatusCode};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{codec, NodeId, TypeConfig};
use crate::auth::Signer;
use crate::transport::{EngineClient, EngineError};

/// Where Raft RPCs are served on every manager's listener.
pub const RPC_PREFIX: &str = "/_swarm/raft/";

/// Makes one client per peer.
#[derive(Clone)]
pub struct Network {
    /// TLS towards peers (`--tls`, `--tlsverify`).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Signs every RPC as a manager: peers accept no other.
    pub signer: Signer,
    /// Pause after a peer refused a connection, before replication tries it again.
    pub retry_after: std::time::Duration,
}

/// A peer.
pub struct Peer {
    target: NodeId,
    node: BasicNode,
    client: EngineClient,
    signer: Signer,
    retry_after: std::time::Duration,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        // The per-call timeout comes from openraft's RPC options.
        let client = EngineClient::with_tls(&node.addr, std::time::Duration::from_secs(2), self.tls.clone());
        Peer { target, node: node.clone(), client, signer: self.signer.clone(), retry_after: self.retry_after }
    }
}

/// How a call failed: the peer is down, or it answered an error.
enum CallError<E> {
    Unreachable(EngineError),
    Network(String),
    Remote(E),
}

impl Peer {
    async fn call<Req, Resp, E>(&self, rpc: &str, req: &Req, option: &RPCOption) -> Result<Resp, CallError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: DeserializeOwned,
    {
        let body = codec::encode(req).map_err(|e| CallError::Network(e.to_string()))?;
        let path = format!("{RPC_PREFIX}{rpc}");
        let headers = self.signer.headers(&Method::POST, &path, &body);
        let sent =
            self.client.call(Method::POST, &path, Some(Bytes::from(body)), &headers, Some(option.hard_ttl())).await;
        let (status, _, bytes) = match sent {
            Ok(r) => r,
            Err(e @ EngineError::Unreachable { .. }) => return Err(CallError::Unreachable(e)),
            // Slow is not unreachable: see the module's note.
            Err(e @ EngineError::Timeout { .. }) => return Err(CallError::Network(e.to_string())),
            Err(e) => return Err(CallError::Network(e.to_string())),
        };
        if status != StatusCode::OK {
            return Err(CallError::Network(format!("peer answered {status}: {}", String::from_utf8_lossy(&bytes))));
        }
        let result: Result<Resp, E> = codec::decode(&bytes).map_err(|e| CallError::Network(e.to_string()))?;
        result.map_err(CallError::Remote)
    }

    fn rpc_error<E: std::error::Error>(&self, e: CallError<E>) -> RPCError<NodeId, BasicNode, E> {
        match e {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Network(msg) => RPCError::Network(NetworkError::new(&std::io::Error::other(msg))),
            CallError::Remote(e) => {
                RPCError::RemoteError(RemoteError::new_with_node(self.target, self.node.clone(), e))
            }
        }
    }
}

impl Network {
    /// Asks the member at `addr` to campaign now: the leader hands its leadership over.
    pub async fn ask_to_elect(&self, addr: &str, bound: std::time::Duration) -> Result<(), String> {
        let client = EngineClient::with_tls(addr, bound, self.tls.clone());
        let path = format!("{RPC_PREFIX}elect");
        let headers = self.signer.headers(&Method::POST, &path, b"");
        match client.call(Method::POST, &path, Some(Bytes::new()), &headers, Some(bound)).await {
            Ok((StatusCode::OK, _, _)) => Ok(()),
            Ok((status, _, body)) => Err(format!("{addr} answered {status}: {}", String::from_utf8_lossy(&body))),
            Err(e) => Err(format!("{addr}: {e}")),
        }
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("append", &rpc, &option).await.map_err(|e| self.rpc_error(e))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call("snapshot", &rpc, &option).await.map_err(|e| self.rpc_error(e))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("vote", &rpc, &option).await.map_err(|e| self.rpc_error(e))
    }

    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(self.retry_after))
    }
}

//! Raft messages between managers: openraft's own serde types, carried as JSON in gRPC
//! calls over the managers' mTLS connections on 2377.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shoal_proto::RaftPayload;
use shoal_proto::live_tls::LiveTls;
use shoal_proto::raft_transport_client::RaftTransportClient;
use tonic::transport::Channel;

use super::{NodeId, TypeConfig};

/// When each peer last answered a Raft RPC: the leader's view of manager reachability.
pub type LastContact = Arc<Mutex<HashMap<NodeId, Instant>>>;

#[derive(Clone)]
pub struct Network {
    pub tls: LiveTls,
    pub last_contact: LastContact,
}

pub struct Connection {
    target: NodeId,
    node: BasicNode,
    client: Option<RaftTransportClient<Channel>>,
    tls: LiveTls,
    last_contact: LastContact,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        Connection {
            target,
            node: node.clone(),
            client: None,
            tls: self.tls.clone(),
            last_contact: self.last_contact.clone(),
        }
    }
}

type RpcErr<E> = RPCError<NodeId, BasicNode, E>;

impl Connection {
    async fn call<Req, Resp, E>(&mut self, rpc: Req, method: Method) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = if let Some(c) = &mut self.client {
            c
        } else {
            let channel = self
                .tls
                .channel(&self.node.addr)
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
            self.client.insert(RaftTransportClient::new(channel))
        };
        let payload = RaftPayload {
            json: serde_json::to_vec(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?,
        };
        let reply = match method {
            Method::Append => client.append_entries(payload).await,
            Method::Vote => client.vote(payload).await,
            Method::Snapshot => client.install_snapshot(payload).await,
        };
        let reply = match reply {
            Ok(r) => r.into_inner(),
            Err(status) => {
                // Drop the channel so the next call reconnects (the peer may have restarted).
                self.client = None;
                return Err(RPCError::Unreachable(Unreachable::new(&status)));
            }
        };
        self.last_contact
            .lock()
            .expect("poisoned")
            .insert(self.target, Instant::now());
        let result: Result<Resp, E> = serde_json::from_slice(&reply.json)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

#[derive(Clone, Copy)]
enum Method {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<RaftError<NodeId>>> {
        self.call(rpc, Method::Append).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call(rpc, Method::Snapshot).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<RaftError<NodeId>>> {
        self.call(rpc, Method::Vote).await
    }
}

/// Encodes a handler's result for the wire.
pub fn encode_result<T: Serialize, E: Serialize>(r: &Result<T, E>) -> RaftPayload {
    RaftPayload {
        json: serde_json::to_vec(r).unwrap_or_default(),
    }
}

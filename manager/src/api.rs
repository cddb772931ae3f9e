//! The manager's gRPC services on 2377: Raft transport (managers only), the CA (join and
//! renewal) and the dispatcher (agents). Every call but IssueNodeCertificate needs a
//! certificate of this swarm; manager-only calls refuse worker certificates.

use std::sync::Arc;

use shoal_proto::dispatcher_client::DispatcherClient;
use shoal_proto::stored_object::Object;
use shoal_proto::tls::{PeerIdentity, request_identity};
use shoal_proto::token::JoinToken;
use shoal_proto::{
    Empty, HeartbeatRequest, HeartbeatResponse, IssueNodeCertificateRequest, JoinRaftRequest,
    ManagerStatus, Meta, NetworkConnectRequest, Node, NodeCertificate, NodeRole, NodeSpec,
    NodeState, NodeStatus, Proposal, ProposalResult, RaftPayload, Reachability,
    RenewNodeCertificateRequest, StoreActionKind, Task,
};
use tonic::{Request, Response, Status};

use crate::ca::{Signer, node_validity, sign_node_csr, trust_bundle};
use crate::error::ManagerError;
use crate::manager::Manager;
use crate::proposer::Proposer;
use crate::state::raft::Raft;
use crate::state::raft::network::encode_result;
use crate::state::store::State;
use crate::state::store::{action, proposal};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    AnyNode,
    Manager,
}

/// Checks the caller's certificate: signed by our CA (TLS did that), of this cluster, not
/// removed, and of a manager where `access` demands it.
pub fn authorize<T>(m: &Manager, req: &Request<T>, access: Access) -> Result<PeerIdentity, Status> {
    authorize_identity(m, request_identity(req), access)
}

/// `authorize` for a caller whose certificate came through another TLS listener.
pub fn authorize_identity(
    m: &Manager,
    id: Option<PeerIdentity>,
    access: Access,
) -> Result<PeerIdentity, Status> {
    let id = id.ok_or_else(|| {
        Status::unauthenticated(
            "this call needs a node certificate of this swarm, and none was presented",
        )
    })?;
    if let Some(c) = m.store.view(|s| s.cluster().cloned()) {
        if c.removed_nodes.contains(&id.node_id) {
            return Err(Status::permission_denied(format!(
                "node {} was removed from the swarm; its certificate is no longer honoured",
                id.node_id
            )));
        }
        if id.cluster_id != c.id {
            return Err(Status::permission_denied(
                "the certificate belongs to another swarm",
            ));
        }
    }
    if access == Access::Manager && id.role != NodeRole::Manager {
        return Err(Status::permission_denied(format!(
            "permission denied: this operation is for managers only, and the certificate presented belongs to worker node {}",
            id.node_id
        )));
    }
    Ok(id)
}

#[derive(Clone)]
pub struct ManagerApi(pub Arc<Manager>);

fn decode<T: serde::de::DeserializeOwned>(p: &RaftPayload) -> Result<T, Status> {
    serde_json::from_slice(&p.json)
        .map_err(|e| Status::invalid_argument(format!("bad Raft message: {e}")))
}

impl ManagerApi {
    /// A Raft message from another manager, handed to this manager's Raft; the answer
    /// (or Raft's error) goes back as it is.
    async fn relay<Rpc, Out, E, F, Fut>(
        &self,
        req: Request<RaftPayload>,
        call: F,
    ) -> Result<Response<RaftPayload>, Status>
    where
        Rpc: serde::de::DeserializeOwned,
        Out: serde::Serialize,
        E: serde::Serialize,
        F: FnOnce(Raft, Rpc) -> Fut,
        Fut: Future<Output = Result<Out, E>>,
    {
        authorize(&self.0, &req, Access::Manager)?;
        let rpc = decode(req.get_ref())?;
        let answer = call(self.0.raft.clone(), rpc).await;
        Ok(Response::new(encode_result(&answer)))
    }

    /// A manager asking about its own Raft membership: the Raft ID must be the one the
    /// store assigned to the caller's node.
    fn raft_member_request(
        &self,
        req: Request<JoinRaftRequest>,
    ) -> Result<(PeerIdentity, JoinRaftRequest), Status> {
        let caller = authorize(&self.0, &req, Access::Manager)?;
        let req = req.into_inner();
        let owns_id = self.0.store.view(|s| {
            s.node(&caller.node_id)
                .and_then(|n| n.manager_status.as_ref())
                .is_some_and(|ms| ms.raft_id == req.raft_id)
        });
        if !owns_id {
            return Err(Status::permission_denied(format!(
                "Raft ID {} is not the one assigned to node {}",
                req.raft_id, caller.node_id
            )));
        }
        Ok((caller, req))
    }
}

#[tonic::async_trait]
impl shoal_proto::raft_transport_server::RaftTransport for ManagerApi {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.relay(
            req,
            |raft, rpc| async move { raft.append_entries(rpc).await },
        )
        .await
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        self.relay(req, |raft, rpc| async move { raft.vote(rpc).await })
            .await
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.relay(
            req,
            |raft, rpc| async move { raft.install_snapshot(rpc).await },
        )
        .await
    }

    async fn propose(&self, req: Request<Proposal>) -> Result<Response<ProposalResult>, Status> {
        authorize(&self.0, &req, Access::Manager)?;
        Ok(Response::new(self.0.propose_local(req.into_inner()).await?))
    }

    async fn read_index(
        &self,
        req: Request<Empty>,
    ) -> Result<Response<shoal_proto::ReadIndexResponse>, Status> {
        authorize(&self.0, &req, Access::Manager)?;
        Ok(Response::new(shoal_proto::ReadIndexResponse {
            index: self.0.read_index().await?,
        }))
    }

    async fn leave_raft(&self, req: Request<JoinRaftRequest>) -> Result<Response<Empty>, Status> {
        let (_, req) = self.raft_member_request(req)?;
        if !self.0.is_leader() {
            return Err(ManagerError::NoLeader.into());
        }
        self.0.remove_voter(req.raft_id).await?;
        Ok(Response::new(Empty {}))
    }

    async fn join_raft(&self, req: Request<JoinRaftRequest>) -> Result<Response<Empty>, Status> {
        let (caller, req) = self.raft_member_request(req)?;
        self.0.add_voter(req.raft_id, req.addr).await?;
        // It just answered Raft while catching up: show it reachable straight away.
        let node_id = caller.node_id;
        self.0
            .update_with_retry(|s| {
                let Some(mut n) = s.node(&node_id).cloned() else {
                    return Ok(vec![]);
                };
                if let Some(ms) = n.manager_status.as_mut() {
                    ms.reachability = Reachability::Reachable as i32;
                }
                Ok(vec![action(StoreActionKind::Update, Object::Node(n))])
            })
            .await?;
        Ok(Response::new(Empty {}))
    }
}

#[tonic::async_trait]
impl shoal_proto::ca_server::Ca for ManagerApi {
    async fn issue_node_certificate(
        &self,
        req: Request<IssueNodeCertificateRequest>,
    ) -> Result<Response<NodeCertificate>, Status> {
        Ok(Response::new(issue(&self.0, req.into_inner()).await?))
    }

    async fn renew_node_certificate(
        &self,
        req: Request<RenewNodeCertificateRequest>,
    ) -> Result<Response<NodeCertificate>, Status> {
        let caller = authorize(&self.0, &req, Access::AnyNode)?;
        Ok(Response::new(
            renew(&self.0, &caller.node_id, req.into_inner()).await?,
        ))
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A node joins: the token decides the role; the node object is written only once the
/// token and CSR are known good.
async fn issue(
    m: &Manager,
    req: IssueNodeCertificateRequest,
) -> Result<NodeCertificate, ManagerError> {
    let token: JoinToken = req
        .token
        .parse()
        .map_err(|e: shoal_proto::token::TokenError| {
            ManagerError::InvalidArgument(e.to_string())
        })?;
    let cluster = m.cluster()?;
    let root = cluster.root_ca.clone().unwrap_or_default();
    if token.ca_digest != root.ca_cert_digest {
        return Err(ManagerError::InvalidArgument(
            "the join token was made for another swarm: its CA digest does not match this swarm's CA".into(),
        ));
    }
    let tokens = root.join_tokens.clone().unwrap_or_default();
    let secret_of = |t: &str| t.parse::<JoinToken>().map(|t| t.secret).unwrap_or_default();
    let role = if constant_time_eq(&token.secret, &secret_of(&tokens.worker)) {
        NodeRole::Worker
    } else if constant_time_eq(&token.secret, &secret_of(&tokens.manager)) {
        NodeRole::Manager
    } else {
        return Err(ManagerError::FailedPrecondition(
            "the join token is invalid or has been rotated; get the current one with `shoal swarm join-token worker` (or manager) on a manager".into(),
        ));
    };
    let node_id = shoal_proto::ids::new_id();
    let cert_pem = sign_node_csr(
        &Signer::of(&root),
        &req.csr_pem,
        &node_id,
        role,
        &cluster.id,
        node_validity(&cluster),
    )
    .map_err(|e| ManagerError::InvalidArgument(e.to_string()))?;
    let raft_id = (role == NodeRole::Manager).then(crate::state::raft::new_raft_id);
    let now = shoal_proto::now_nanos();
    let node = Node {
        id: node_id.clone(),
        meta: Some(Meta {
            created_at_unix_nanos: now,
            updated_at_unix_nanos: now,
            ..Default::default()
        }),
        spec: Some(NodeSpec {
            desired_role: role as i32,
            ..Default::default()
        }),
        description: req.description,
        status: Some(NodeStatus {
            state: NodeState::Unknown as i32,
            message: "joining".into(),
            addr: host_of(&req.advertise_addr),
        }),
        manager_status: raft_id.map(|raft_id| ManagerStatus {
            raft_id,
            addr: req.advertise_addr.clone(),
            leader: false,
            reachability: Reachability::Unknown as i32,
        }),
        role: role as i32,
        ingress: None,
    };
    m.propose(proposal(vec![action(
        StoreActionKind::Create,
        Object::Node(node),
    )]))
    .await?;
    Ok(NodeCertificate {
        node_id,
        cert_pem,
        ca_cert_pem: trust_bundle(&root),
        role: role as i32,
        raft_id: raft_id.unwrap_or_default(),
        cluster_id: cluster.id,
        manager_addrs: m.store.view(State::manager_addrs),
    })
}

/// A node asks for a certificate again, typically after a promotion or demotion: the role
/// it gets is the one the store wants it to have.
async fn renew(
    m: &Manager,
    node_id: &str,
    req: RenewNodeCertificateRequest,
) -> Result<NodeCertificate, ManagerError> {
    let cluster = m.cluster()?;
    let root = cluster.root_ca.clone().unwrap_or_default();
    let node = m.store.view(|s| s.node(node_id).cloned()).ok_or_else(|| {
        ManagerError::NotFound(format!("node {node_id} is not part of this swarm"))
    })?;
    let role = node
        .spec
        .as_ref()
        .map(NodeSpec::desired_role)
        .unwrap_or_default();
    let cert_pem = sign_node_csr(
        &Signer::of(&root),
        &req.csr_pem,
        node_id,
        role,
        &cluster.id,
        node_validity(&cluster),
    )
    .map_err(|e| ManagerError::InvalidArgument(e.to_string()))?;
    let result = m
        .update_with_retry(|s| {
            let Some(mut n) = s.node(node_id).cloned() else {
                return Ok(vec![]);
            };
            n.role = role as i32;
            match role {
                NodeRole::Manager if n.manager_status.is_none() => {
                    n.manager_status = Some(ManagerStatus {
                        raft_id: crate::state::raft::new_raft_id(),
                        addr: req.advertise_addr.clone(),
                        leader: false,
                        reachability: Reachability::Unknown as i32,
                    });
                }
                // A demoted manager keeps its status until the leader has taken it out
                // of Raft (leader.rs).
                _ => {}
            }
            Ok(vec![action(StoreActionKind::Update, Object::Node(n))])
        })
        .await?;
    let raft_id = match result.objects.into_iter().next().and_then(|o| o.object) {
        Some(Object::Node(n)) => n.manager_status.map(|s| s.raft_id).unwrap_or_default(),
        _ => node.manager_status.map(|s| s.raft_id).unwrap_or_default(),
    };
    Ok(NodeCertificate {
        node_id: node_id.to_string(),
        cert_pem,
        ca_cert_pem: trust_bundle(&root),
        role: role as i32,
        raft_id,
        cluster_id: cluster.id,
        manager_addrs: m.store.view(State::manager_addrs),
    })
}

fn host_of(addr: &str) -> String {
    addr.rsplit_once(':')
        .map_or_else(|| addr.to_string(), |(h, _)| h.to_string())
}

type AssignmentStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<shoal_proto::AssignmentSet, Status>> + Send>,
>;

#[tonic::async_trait]
impl shoal_proto::dispatcher_server::Dispatcher for ManagerApi {
    type AssignmentsStream = AssignmentStream;

    /// Served from this manager's own store, which follows the leader's.
    async fn assignments(
        &self,
        req: Request<shoal_proto::AssignmentsRequest>,
    ) -> Result<Response<AssignmentStream>, Status> {
        let caller = authorize(&self.0, &req, Access::AnyNode)?;
        let manager = self.0.clone();
        let mut changes = manager.store.watch();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let node = caller.node_id;
            let mut last = None;
            loop {
                let set = crate::dispatcher::assignments(&manager.store, &node);
                if last.as_ref() != Some(&set) {
                    if tx.send(Ok(set.clone())).await.is_err() {
                        return;
                    }
                    last = Some(set);
                }
                tokio::select! {
                    change = changes.recv() => {
                        if let Err(tokio::sync::broadcast::error::RecvError::Closed) = change {
                            return;
                        }
                    }
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    type LogSubscriptionsStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<shoal_proto::LogSubscription, Status>> + Send>,
    >;

    async fn log_subscriptions(
        &self,
        req: Request<Empty>,
    ) -> Result<Response<Self::LogSubscriptionsStream>, Status> {
        let caller = authorize(&self.0, &req, Access::AnyNode)?;
        let rx = self.0.logs.listen(&caller.node_id);
        let stream = futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn publish_logs(
        &self,
        req: Request<tonic::Streaming<shoal_proto::LogChunk>>,
    ) -> Result<Response<Empty>, Status> {
        authorize(&self.0, &req, Access::AnyNode)?;
        let mut chunks = req.into_inner();
        while let Some(chunk) = chunks.message().await? {
            self.0.logs.publish(chunk).await;
        }
        Ok(Response::new(Empty {}))
    }

    async fn attach_network(
        &self,
        req: Request<NetworkConnectRequest>,
    ) -> Result<Response<Task>, Status> {
        let caller = authorize(&self.0, &req, Access::AnyNode)?;
        let mut r = req.into_inner();
        r.node_id = caller.node_id;
        Ok(Response::new(
            crate::networks::attach::attach(&self.0, r).await?,
        ))
    }

    async fn detach_network(
        &self,
        req: Request<NetworkConnectRequest>,
    ) -> Result<Response<Empty>, Status> {
        let caller = authorize(&self.0, &req, Access::AnyNode)?;
        let mut r = req.into_inner();
        r.node_id = caller.node_id;
        crate::networks::attach::detach(&self.0, r).await?;
        Ok(Response::new(Empty {}))
    }

    async fn update_task_status(
        &self,
        req: Request<shoal_proto::UpdateTaskStatusRequest>,
    ) -> Result<Response<Empty>, Status> {
        let caller = authorize(&self.0, &req, Access::AnyNode)?;
        crate::dispatcher::update_task_status(&*self.0, &caller.node_id, req.into_inner().updates)
            .await?;
        Ok(Response::new(Empty {}))
    }

    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let caller = authorize(&self.0, &req, Access::AnyNode)?;
        let mut hb = req.into_inner();
        // Only a manager may speak for another node (when forwarding to the leader).
        if caller.role != NodeRole::Manager || hb.node_id.is_empty() {
            hb.node_id = caller.node_id;
        }
        if self.0.is_leader() {
            return Ok(Response::new(
                crate::dispatcher::heartbeat(&*self.0, &self.0.dispatcher, hb).await?,
            ));
        }
        let leader = self.0.leader_addr().ok_or(ManagerError::NoLeader)?;
        let tls = &self.0.config.tls;
        let channel = tls
            .channel(&leader)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        DispatcherClient::new(channel).heartbeat(hb).await
    }
}

//! The Control service: what the CLI calls. Served on the local socket (all calls; the
//! socket is root-only) and on a manager's control port (cluster calls only, for callers
//! holding a manager certificate).

use std::sync::Arc;

use shoal_manager::api::{Access, authorize};
use shoal_manager::{networks, nodes, secrets, services, swarm_settings};
use shoal_proto::control_server::Control;
use shoal_proto::{
    Config, ConfigSpec, ListConfigsResponse, ListSecretsResponse, ObjectRef, Secret, SecretSpec,
    SwarmUnlockRequest, SwarmUpdateRequest, UnlockKeyRequest, UnlockKeyResponse,
    UpdateConfigRequest, UpdateSecretRequest,
};
use shoal_proto::{
    Empty, GetNodeRequest, InfoResponse, JoinTokenRequest, JoinTokenResponse, ListNodesResponse,
    ListServicesResponse, ListTasksRequest, ListTasksResponse, Node, NodeRole, RemoveNodeRequest,
    Service, ServiceRef, ServiceSpec, SwarmInitRequest, SwarmInitResponse, SwarmJoinRequest,
    SwarmJoinResponse, SwarmLeaveRequest, UpdateNodeRequest, UpdateServiceRequest,
};
use shoal_proto::{
    GossipStatusResponse, ListNetworksResponse, LoadBalancerStatusResponse, LogLine, Network,
    NetworkConnectRequest, NetworkConnectResponse, NetworkRef, NetworkSpec, ServiceLogsRequest,
};
use tonic::{Request, Response, Status};

use super::Daemon;

pub struct ControlService {
    daemon: Arc<Daemon>,
    remote: bool,
}

impl ControlService {
    pub fn local(daemon: Arc<Daemon>) -> Self {
        ControlService {
            daemon,
            remote: false,
        }
    }

    pub fn remote(daemon: Arc<Daemon>) -> Self {
        ControlService {
            daemon,
            remote: true,
        }
    }

    fn local_only<T>(&self, _req: &Request<T>) -> Result<(), Status> {
        if self.remote {
            return Err(Status::permission_denied(
                "this command acts on one node (swarm init, join and leave, network connect and disconnect): run it on that node, through its control socket",
            ));
        }
        Ok(())
    }

    /// Docker's `self` names the node the CLI talks to.
    async fn resolve_self(&self, key: String) -> String {
        if key == "self" {
            self.daemon.self_node_id().await
        } else {
            key
        }
    }

    /// The local manager for a read: it has caught up with the leader's writes first.
    async fn reader<T>(&self, req: &Request<T>) -> Result<Arc<shoal_manager::Manager>, Status> {
        let m = self.manager(req).await?;
        m.read_barrier().await;
        Ok(m)
    }

    /// The local manager, after checking a remote caller holds a manager certificate.
    async fn manager<T>(&self, req: &Request<T>) -> Result<Arc<shoal_manager::Manager>, Status> {
        let m = self.daemon.manager().await?;
        if self.remote {
            authorize(&m, req, Access::Manager)?;
        }
        Ok(m)
    }
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn swarm_init(
        &self,
        req: Request<SwarmInitRequest>,
    ) -> Result<Response<SwarmInitResponse>, Status> {
        self.local_only(&req)?;
        Ok(Response::new(self.daemon.init(req.into_inner()).await?))
    }

    async fn swarm_join(
        &self,
        req: Request<SwarmJoinRequest>,
    ) -> Result<Response<SwarmJoinResponse>, Status> {
        self.local_only(&req)?;
        Ok(Response::new(self.daemon.join(req.into_inner()).await?))
    }

    async fn swarm_leave(
        &self,
        req: Request<SwarmLeaveRequest>,
    ) -> Result<Response<Empty>, Status> {
        self.local_only(&req)?;
        self.daemon.leave(req.into_inner().force).await?;
        Ok(Response::new(Empty {}))
    }

    async fn join_token(
        &self,
        req: Request<JoinTokenRequest>,
    ) -> Result<Response<JoinTokenResponse>, Status> {
        let m = self.manager(&req).await?;
        let req = req.into_inner();
        let role = NodeRole::try_from(req.role)
            .map_err(|_| Status::invalid_argument("role must be worker or manager"))?;
        let token = nodes::join_token(&m, role, req.rotate).await?;
        Ok(Response::new(JoinTokenResponse {
            token,
            manager_addr: m.config.advertise_addr.clone(),
        }))
    }

    async fn list_nodes(&self, req: Request<Empty>) -> Result<Response<ListNodesResponse>, Status> {
        let m = self.reader(&req).await?;
        Ok(Response::new(ListNodesResponse {
            nodes: nodes::list_nodes(&m),
            self_node_id: self.daemon.self_node_id().await,
        }))
    }

    async fn get_node(&self, req: Request<GetNodeRequest>) -> Result<Response<Node>, Status> {
        let m = self.reader(&req).await?;
        let key = self.resolve_self(req.into_inner().id_or_name).await;
        Ok(Response::new(nodes::get_node(&m, &key)?))
    }

    async fn update_node(&self, req: Request<UpdateNodeRequest>) -> Result<Response<Node>, Status> {
        let m = self.manager(&req).await?;
        let mut req = req.into_inner();
        req.id_or_name = self.resolve_self(req.id_or_name).await;
        Ok(Response::new(nodes::update_node(&m, req).await?))
    }

    async fn remove_node(
        &self,
        req: Request<RemoveNodeRequest>,
    ) -> Result<Response<Empty>, Status> {
        let m = self.manager(&req).await?;
        let req = req.into_inner();
        nodes::remove_node(&m, &req.id_or_name, req.force).await?;
        Ok(Response::new(Empty {}))
    }

    async fn create_service(&self, req: Request<ServiceSpec>) -> Result<Response<Service>, Status> {
        let m = self.manager(&req).await?;
        Ok(Response::new(services::create(&m, req.into_inner()).await?))
    }

    async fn update_service(
        &self,
        req: Request<UpdateServiceRequest>,
    ) -> Result<Response<Service>, Status> {
        let m = self.manager(&req).await?;
        Ok(Response::new(services::update(&m, req.into_inner()).await?))
    }

    async fn remove_service(&self, req: Request<ServiceRef>) -> Result<Response<Empty>, Status> {
        let m = self.manager(&req).await?;
        services::remove(&m, &req.into_inner().id_or_name).await?;
        Ok(Response::new(Empty {}))
    }

    async fn list_services(
        &self,
        req: Request<Empty>,
    ) -> Result<Response<ListServicesResponse>, Status> {
        let m = self.reader(&req).await?;
        Ok(Response::new(services::list(&m)))
    }

    async fn get_service(&self, req: Request<ServiceRef>) -> Result<Response<Service>, Status> {
        let m = self.reader(&req).await?;
        Ok(Response::new(services::get(
            &m,
            &req.into_inner().id_or_name,
        )?))
    }

    async fn list_tasks(
        &self,
        req: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        let m = self.reader(&req).await?;
        let req = req.into_inner();
        let node = self.resolve_self(req.node).await;
        Ok(Response::new(services::tasks(&m, &req.service, &node)?))
    }

    type ServiceLogsStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<LogLine, Status>> + Send>>;

    async fn service_logs(
        &self,
        req: Request<ServiceLogsRequest>,
    ) -> Result<Response<Self::ServiceLogsStream>, Status> {
        let m = self.reader(&req).await?;
        let r = req.into_inner();
        let listed = services::tasks(&m, &r.service, "")?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(super::logs::relay(m, listed, r, tx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn create_network(&self, req: Request<NetworkSpec>) -> Result<Response<Network>, Status> {
        let m = self.manager(&req).await?;
        Ok(Response::new(networks::create(&m, req.into_inner()).await?))
    }

    async fn list_networks(
        &self,
        req: Request<Empty>,
    ) -> Result<Response<ListNetworksResponse>, Status> {
        let m = self.reader(&req).await?;
        Ok(Response::new(ListNetworksResponse {
            networks: networks::list(&m),
        }))
    }

    async fn get_network(&self, req: Request<NetworkRef>) -> Result<Response<Network>, Status> {
        let m = self.reader(&req).await?;
        Ok(Response::new(networks::get(
            &m,
            &req.into_inner().id_or_name,
        )?))
    }

    async fn remove_network(&self, req: Request<NetworkRef>) -> Result<Response<Empty>, Status> {
        let m = self.manager(&req).await?;
        networks::remove(&m, &req.into_inner().id_or_name).await?;
        Ok(Response::new(Empty {}))
    }

    async fn gossip_status(
        &self,
        req: Request<Empty>,
    ) -> Result<Response<GossipStatusResponse>, Status> {
        if self.remote {
            return Err(Status::permission_denied(
                "gossip status describes one node: run `shoal debug gossip` on that node",
            ));
        }
        let _ = req;
        Ok(Response::new(self.daemon.gossip_status().await?))
    }

    async fn load_balancer_status(
        &self,
        req: Request<Empty>,
    ) -> Result<Response<LoadBalancerStatusResponse>, Status> {
        if self.remote {
            return Err(Status::permission_denied(
                "the load balancer's status describes one node: run `shoal debug lb` on that node",
            ));
        }
        let _ = req;
        Ok(Response::new(self.daemon.lb_status().await?))
    }

    async fn connect_network(
        &self,
        req: Request<NetworkConnectRequest>,
    ) -> Result<Response<NetworkConnectResponse>, Status> {
        self.local_only(&req)?;
        Ok(Response::new(
            self.daemon.connect_network(req.into_inner()).await?,
        ))
    }

    async fn disconnect_network(
        &self,
        req: Request<NetworkConnectRequest>,
    ) -> Result<Response<Empty>, Status> {
        self.local_only(&req)?;
        self.daemon.disconnect_network(req.into_inner()).await?;
        Ok(Response::new(Empty {}))
    }

    async fn update_swarm(
        &self,
        req: Request<SwarmUpdateRequest>,
    ) -> Result<Response<Empty>, Status> {
        let m = self.manager(&req).await?;
        swarm_settings::update(&m, req.into_inner()).await?;
        Ok(Response::new(Empty {}))
    }

    async fn unlock_key(
        &self,
        req: Request<UnlockKeyRequest>,
    ) -> Result<Response<UnlockKeyResponse>, Status> {
        let m = self.manager(&req).await?;
        let unlock_key = swarm_settings::unlock_key(&m, req.into_inner().rotate).await?;
        Ok(Response::new(UnlockKeyResponse { unlock_key }))
    }

    async fn swarm_unlock(
        &self,
        req: Request<SwarmUnlockRequest>,
    ) -> Result<Response<Empty>, Status> {
        self.local_only(&req)?;
        self.daemon.unlock(&req.into_inner().unlock_key).await?;
        Ok(Response::new(Empty {}))
    }

    async fn create_secret(&self, req: Request<SecretSpec>) -> Result<Response<Secret>, Status> {
        let m = self.manager(&req).await?;
        Ok(Response::new(
            secrets::create_secret(&m, req.into_inner()).await?,
        ))
    }

    async fn list_secrets(
        &self,
        req: Request<Empty>,
    ) -> Result<Response<ListSecretsResponse>, Status> {
        let m = self.reader(&req).await?;
        Ok(Response::new(ListSecretsResponse {
            secrets: secrets::list_secrets(&m),
        }))
    }

    async fn get_secret(&self, req: Request<ObjectRef>) -> Result<Response<Secret>, Status> {
        let m = self.reader(&req).await?;
        Ok(Response::new(secrets::get_secret(
            &m,
            &req.into_inner().id_or_name,
        )?))
    }

    async fn update_secret(
        &self,
        req: Request<UpdateSecretRequest>,
    ) -> Result<Response<Secret>, Status> {
        let m = self.manager(&req).await?;
        let r = req.into_inner();
        let spec = r.spec.unwrap_or_default();
        Ok(Response::new(
            secrets::update_secret(&m, &r.id_or_name, r.version, spec).await?,
        ))
    }

    async fn remove_secret(&self, req: Request<ObjectRef>) -> Result<Response<Empty>, Status> {
        let m = self.manager(&req).await?;
        secrets::remove_secret(&m, &req.into_inner().id_or_name).await?;
        Ok(Response::new(Empty {}))
    }

    async fn create_config(&self, req: Request<ConfigSpec>) -> Result<Response<Config>, Status> {
        let m = self.manager(&req).await?;
        Ok(Response::new(
            secrets::create_config(&m, req.into_inner()).await?,
        ))
    }

    async fn list_configs(
        &self,
        req: Request<Empty>,
    ) -> Result<Response<ListConfigsResponse>, Status> {
        let m = self.reader(&req).await?;
        Ok(Response::new(ListConfigsResponse {
            configs: secrets::list_configs(&m),
        }))
    }

    async fn get_config(&self, req: Request<ObjectRef>) -> Result<Response<Config>, Status> {
        let m = self.reader(&req).await?;
        Ok(Response::new(secrets::get_config(
            &m,
            &req.into_inner().id_or_name,
        )?))
    }

    async fn update_config(
        &self,
        req: Request<UpdateConfigRequest>,
    ) -> Result<Response<Config>, Status> {
        let m = self.manager(&req).await?;
        let r = req.into_inner();
        let spec = r.spec.unwrap_or_default();
        Ok(Response::new(
            secrets::update_config(&m, &r.id_or_name, r.version, spec).await?,
        ))
    }

    async fn remove_config(&self, req: Request<ObjectRef>) -> Result<Response<Empty>, Status> {
        let m = self.manager(&req).await?;
        secrets::remove_config(&m, &req.into_inner().id_or_name).await?;
        Ok(Response::new(Empty {}))
    }

    async fn info(&self, req: Request<Empty>) -> Result<Response<InfoResponse>, Status> {
        if self.remote {
            self.manager(&req).await?;
        }
        Ok(Response::new(self.daemon.info().await))
    }
}

//! Joining, leaving and changing role: the transitions of a node's swarm membership.

use std::sync::Arc;

use shoal_agent::join::JoinError;
use shoal_agent::session::SessionEvent;
use shoal_manager::ca::{Signer, create_root_ca, node_validity, sign_node_csr};
use shoal_manager::state::raft::at_rest::{KeyError, UnlockKey};
use shoal_manager::{Bootstrap, Manager};
use shoal_proto::tls::NodeTls;
use shoal_proto::token::{JoinToken, ca_digest};
use shoal_proto::{
    Annotations, Cluster, ClusterSpec, DispatcherConfig, InfoResponse, JoinTokens, ManagerStatus,
    Meta, Node, NodeRole, NodeSpec, NodeState, NodeStatus, Reachability, RootCa, SwarmInitRequest,
    SwarmInitResponse, SwarmJoinRequest, SwarmJoinResponse,
};
use tokio::sync::mpsc;
use tonic::Status;

use super::Daemon;
use super::addr::{Advertiser, resolve_advertise};
use super::runtime::Runtime;
use super::state::{SwarmDir, SwarmState};
use crate::error::NodeError;

pub(crate) const NOT_PART_OF_SWARM: &str = "This node is not part of a swarm";
const ALREADY_IN_SWARM: &str = "This node is already part of a swarm. Use \"shoal swarm leave\" to leave this swarm and join another one.";
const NOT_IN_SWARM: &str = "This node is not a swarm manager. Use \"shoal swarm init\" or \"shoal swarm join\" to connect this node to swarm and try again.";
const WORKER_NODE: &str = "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.";

/// Metadata marking a refusal caused by the node's swarm state (not in a swarm, already
/// in one, not a manager, the last manager leaving), which dockerd answers 503
/// (errdefs.Unavailable) and the Engine API reads instead of the words.
pub const SWARM_STATE: &str = "shoal-swarm-state";

/// A refusal because of this node's swarm state.
pub fn swarm_state(message: impl Into<String>) -> Status {
    let mut status = Status::failed_precondition(message);
    status.metadata_mut().insert(
        SWARM_STATE,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    status
}

/// How long a task may take to stop when its node leaves the swarm.
const LEAVE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("{e:#}"))
}

fn port_of(listen: &str) -> u16 {
    listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(shoal_proto::CONTROL_PORT)
}

impl Daemon {
    fn swarm_dir(&self) -> SwarmDir {
        SwarmDir::new(&self.args.data_dir)
    }

    /// The local manager, or docker's explanation of why there is none.
    pub async fn manager(&self) -> Result<Arc<Manager>, Status> {
        if self.locked().is_some() {
            return Err(swarm_state(KeyError::Locked.to_string()));
        }
        let guard = self.runtime.lock().await;
        match guard.as_ref() {
            None => Err(swarm_state(NOT_IN_SWARM)),
            Some(rt) => rt.manager.clone().ok_or_else(|| swarm_state(WORKER_NODE)),
        }
    }

    pub async fn self_node_id(&self) -> String {
        let guard = self.runtime.lock().await;
        guard
            .as_ref()
            .map(|rt| rt.state.node_id.clone())
            .unwrap_or_default()
    }

    fn choose_addresses(
        &self,
        advertise: &str,
        listen: &str,
        who: Advertiser,
    ) -> Result<(String, u16, String), Status> {
        let listen = if listen.is_empty() {
            self.args.listen_addr.clone()
        } else {
            listen.to_string()
        };
        let given = if advertise.is_empty() {
            self.args.advertise_addr.as_deref()
        } else {
            Some(advertise)
        };
        let (ip, port) = resolve_advertise(given, port_of(&listen), who)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok((ip.to_string(), port, listen))
    }

    pub async fn init(
        self: &Arc<Self>,
        req: SwarmInitRequest,
    ) -> Result<SwarmInitResponse, Status> {
        let mut guard = self.runtime.lock().await;
        if req.force_new_cluster {
            return self.force_new_cluster(&mut guard).await;
        }
        if guard.is_some() {
            return Err(swarm_state(ALREADY_IN_SWARM));
        }
        let (ip, port, listen_addr) =
            self.choose_addresses(&req.advertise_addr, &req.listen_addr, Advertiser::Founder)?;
        check_address_pools(&req)?;
        shoal_manager::swarm_settings::check_cert_expiry(req.cert_expiry_secs)
            .map_err(Status::from)?;
        let cluster_id = shoal_proto::ids::new_id();
        let node_id = shoal_proto::ids::new_id();
        let raft_id = shoal_manager::state::raft::new_raft_id();
        let ca = create_root_ca(&cluster_id).map_err(internal)?;
        let worker_token = JoinToken::generate(&ca.cert_der).to_string();
        let now = shoal_proto::now_nanos();
        let meta = Some(Meta {
            created_at_unix_nanos: now,
            updated_at_unix_nanos: now,
            ..Default::default()
        });
        let heartbeat = if req.heartbeat_period_ms == 0 {
            shoal_proto::DEFAULT_HEARTBEAT_MS
        } else {
            req.heartbeat_period_ms
        };
        let cluster = Cluster {
            id: cluster_id.clone(),
            meta,
            spec: Some(ClusterSpec {
                annotations: Some(Annotations {
                    name: "default".into(),
                    ..Default::default()
                }),
                dispatcher: Some(DispatcherConfig {
                    heartbeat_period_ms: heartbeat,
                }),
                default_addr_pool: req.default_addr_pool.clone(),
                subnet_size: req.default_addr_pool_mask_length,
                encryption: None,
                orchestration: req.task_history_limit.map(|limit| {
                    shoal_proto::OrchestrationConfig {
                        task_history_retention_limit: Some(limit),
                    }
                }),
                ca_config: Some(shoal_proto::CaConfig {
                    node_cert_expiry_secs: req.cert_expiry_secs,
                    ..Default::default()
                }),
                raft: Some(shoal_proto::RaftConfig {
                    snapshot_interval: req.snapshot_interval,
                    keep_old_snapshots: req.keep_old_snapshots,
                }),
            }),
            root_ca: Some(RootCa {
                ca_cert_pem: ca.cert_pem.clone(),
                ca_key_pem: ca.key_pem.clone(),
                ca_cert_digest: ca_digest(&ca.cert_der),
                join_tokens: Some(JoinTokens {
                    worker: worker_token.clone(),
                    manager: JoinToken::generate(&ca.cert_der).to_string(),
                }),
                rotation: None,
            }),
            removed_nodes: vec![],
            network_keys: vec![shoal_manager::networks::keys::generate(1, now)],
            unlock_key: vec![],
        };
        let mut cluster = cluster;
        if req.autolock {
            shoal_manager::swarm_settings::set_autolock(&mut cluster, true);
        }
        let key = shoal_agent::certs::new_key_and_csr().map_err(internal)?;
        let root = cluster.root_ca.clone().unwrap_or_default();
        let cert_pem = sign_node_csr(
            &Signer::of(&root),
            &key.csr_pem,
            &node_id,
            NodeRole::Manager,
            &cluster_id,
            node_validity(&cluster),
        )
        .map_err(internal)?;
        let ingress = shoal_manager::networks::ingress(&cluster, now).map_err(Status::from)?;
        let state = SwarmState {
            node_id: node_id.clone(),
            cluster_id,
            manager: true,
            raft_id,
            advertise_ip: ip.clone(),
            control_port: port,
            listen_addr,
            manager_addrs: vec![format!("{ip}:{port}")],
        };
        let node = Node {
            id: node_id.clone(),
            meta,
            spec: Some(NodeSpec {
                desired_role: NodeRole::Manager as i32,
                ..Default::default()
            }),
            description: Some(shoal_agent::describe_node(&self.hostname)),
            status: Some(NodeStatus {
                state: NodeState::Ready as i32,
                message: String::new(),
                addr: ip,
            }),
            manager_status: Some(ManagerStatus {
                raft_id,
                addr: state.control_addr(),
                leader: true,
                reachability: Reachability::Reachable as i32,
            }),
            role: NodeRole::Manager as i32,
            ingress: None,
        };
        let tls = NodeTls {
            ca_cert_pem: ca.cert_pem,
            cert_pem,
            key_pem: key.key_pem,
        };
        self.swarm_dir()
            .save(&state, &tls, None)
            .map_err(internal)?;
        match Runtime::start(
            self,
            state,
            tls,
            Bootstrap::Init {
                cluster: Box::new(cluster),
                node: Box::new(node),
                ingress: Box::new(ingress),
            },
            self.events.clone(),
        )
        .await
        {
            Ok(rt) => *guard = Some(rt),
            Err(e) => {
                let _ = self.swarm_dir().wipe();
                return Err(internal(e));
            }
        }
        tracing::info!(node = %node_id, "swarm initialised");
        Ok(SwarmInitResponse {
            node_id,
            worker_token,
        })
    }

    async fn force_new_cluster(
        self: &Arc<Self>,
        guard: &mut Option<Runtime>,
    ) -> Result<SwarmInitResponse, Status> {
        let (state, tls) = self
            .swarm_dir()
            .load(self.unlock_key().as_ref())
            .map_err(internal)?
            .ok_or_else(|| {
            Status::failed_precondition(
                "--force-new-cluster needs the data of a manager of the old swarm in --data-dir, and there is none here",
            )
        })?;
        if !state.manager {
            return Err(Status::failed_precondition(
                "this node was a worker: --force-new-cluster must run on a manager that holds the swarm's data",
            ));
        }
        if let Some(rt) = guard.take() {
            rt.stop().await;
        }
        let node_id = state.node_id.clone();
        let rt = match Runtime::start(
            self,
            state.clone(),
            tls.clone(),
            Bootstrap::ForceNewCluster,
            self.events.clone(),
        )
        .await
        {
            Ok(rt) => rt,
            Err(e) => {
                // Put the node back as it was rather than leave it outside its swarm.
                if let Ok(rt) =
                    Runtime::start(self, state, tls, Bootstrap::Existing, self.events.clone()).await
                {
                    *guard = Some(rt);
                }
                return Err(internal(e));
            }
        };
        let token = rt
            .manager
            .as_ref()
            .and_then(|m| m.cluster().ok())
            .and_then(|c| c.root_ca?.join_tokens)
            .map(|t| t.worker)
            .unwrap_or_default();
        *guard = Some(rt);
        tracing::warn!(
            "started a new one-manager cluster from this node's data (--force-new-cluster)"
        );
        Ok(SwarmInitResponse {
            node_id,
            worker_token: token,
        })
    }

    pub async fn join(
        self: &Arc<Self>,
        req: SwarmJoinRequest,
    ) -> Result<SwarmJoinResponse, Status> {
        let mut guard = self.runtime.lock().await;
        if guard.is_some() {
            return Err(swarm_state(ALREADY_IN_SWARM));
        }
        let (ip, port, listen_addr) =
            self.choose_addresses(&req.advertise_addr, &req.listen_addr, Advertiser::Joiner)?;
        let remote = if req.remote_addr.contains(':') {
            req.remote_addr.clone()
        } else {
            format!("{}:{}", req.remote_addr, shoal_proto::CONTROL_PORT)
        };
        let granted = shoal_agent::join::join(
            &req.token,
            &remote,
            shoal_agent::describe_node(&self.hostname),
            &format!("{ip}:{port}"),
        )
        .await
        .map_err(|e| match e {
            JoinError::Token(_) => Status::invalid_argument(e.to_string()),
            JoinError::Unreachable { .. } => Status::unavailable(e.to_string()),
            JoinError::CaMismatch(_) | JoinError::Refused(_) => {
                Status::permission_denied(e.to_string())
            }
            JoinError::Key(_) => Status::internal(e.to_string()),
        })?;
        let cert = granted.certificate;
        let role = cert.role();
        let mut managers = cert.manager_addrs.clone();
        if !managers.contains(&remote) {
            managers.push(remote);
        }
        let state = SwarmState {
            node_id: cert.node_id.clone(),
            cluster_id: cert.cluster_id.clone(),
            manager: role == NodeRole::Manager,
            raft_id: cert.raft_id,
            advertise_ip: ip,
            control_port: port,
            listen_addr,
            manager_addrs: managers.clone(),
        };
        let tls = NodeTls {
            ca_cert_pem: cert.ca_cert_pem,
            cert_pem: cert.cert_pem,
            key_pem: granted.key_pem,
        };
        self.swarm_dir()
            .save(&state, &tls, None)
            .map_err(internal)?;
        let started = async {
            let rt =
                Runtime::start(self, state, tls, Bootstrap::Existing, self.events.clone()).await?;
            if let Some(m) = &rt.manager
                && let Err(e) = m.join_raft_via(&managers).await
            {
                rt.stop().await;
                return Err(NodeError::Manager {
                    what: "joining the managers' Raft group".into(),
                    cause: e,
                });
            }
            Ok::<_, NodeError>(rt)
        };
        match started.await {
            Ok(rt) => *guard = Some(rt),
            Err(e) => {
                let _ = self.swarm_dir().wipe();
                return Err(internal(e));
            }
        }
        tracing::info!(node = %cert.node_id, ?role, "joined the swarm");
        Ok(SwarmJoinResponse { role: role as i32 })
    }

    pub async fn leave(&self, force: bool) -> Result<(), Status> {
        let mut guard = self.runtime.lock().await;
        if self.locked().is_some() {
            if !force {
                return Err(swarm_state(format!(
                    "{} Or leave it with --force.",
                    KeyError::Locked
                )));
            }
            self.swarm_dir().wipe().map_err(internal)?;
            self.set_locked(None);
            tracing::info!("left the swarm while it was locked");
            return Ok(());
        }
        let Some(rt) = guard.take() else {
            return Err(swarm_state(NOT_PART_OF_SWARM));
        };
        if rt.state.manager && !force {
            let managers = rt.manager.as_ref().map(|m| m.voters().len()).unwrap_or(1);
            *guard = Some(rt);
            return Err(swarm_state(format!(
                "You are attempting to leave the swarm on a node that is participating as a manager. Removing this node leaves {} managers out of {managers}. Without a Raft quorum your swarm will be inaccessible. The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message.",
                managers.saturating_sub(1)
            )));
        }
        if let Some(m) = &rt.manager
            && let Err(e) = m.leave_raft().await
        {
            tracing::warn!("could not leave the managers' Raft group cleanly: {e}");
        }
        rt.leave_gossip().await;
        let tasks = rt.task_runtime.clone();
        rt.stop().await;
        // The node's tasks belong to the swarm it left: stopped and removed, as Docker
        // does (they would otherwise linger, and nothing would know them any more).
        shoal_agent::runtime::remove_all(tasks.as_ref(), LEAVE_GRACE).await;
        self.swarm_dir().wipe().map_err(internal)?;
        tracing::info!("left the swarm");
        Ok(())
    }

    /// Moves the node to the role the store wants: a new certificate, then the components
    /// of that role.
    async fn change_role(self: &Arc<Self>, role: NodeRole) {
        let mut guard = self.runtime.lock().await;
        let Some(rt) = guard.take() else { return };
        let granted = match shoal_agent::join::renew(
            &rt.tls,
            &rt.state.manager_addrs,
            &rt.state.control_addr(),
        )
        .await
        {
            Ok(g) if g.certificate.role() == role => g,
            Ok(_) => {
                tracing::warn!(
                    ?role,
                    "certificate renewal returned another role; staying as we are"
                );
                *guard = Some(rt);
                return;
            }
            Err(e) => {
                tracing::error!("renewing the certificate for role {role:?}: {e}");
                *guard = Some(rt);
                return;
            }
        };
        let mut state = rt.state.clone();
        state.manager = role == NodeRole::Manager;
        state.raft_id = granted.certificate.raft_id;
        if !granted.certificate.manager_addrs.is_empty() {
            state.manager_addrs = granted.certificate.manager_addrs.clone();
        }
        let tls = NodeTls {
            ca_cert_pem: granted.certificate.ca_cert_pem,
            cert_pem: granted.certificate.cert_pem,
            key_pem: granted.key_pem,
        };
        rt.stop().await;
        if !state.manager {
            let _ = std::fs::remove_dir_all(self.swarm_dir().raft_dir());
        }
        // A manager's key stays sealed as it was; a worker's is not (autolock is the
        // managers').
        let unlock = self.unlock_key().filter(|_| state.manager);
        if let Err(e) = self.swarm_dir().save(&state, &tls, unlock.as_ref()) {
            tracing::error!("saving the new certificate: {e:#}");
        }
        let managers = state.manager_addrs.clone();
        match Runtime::start(self, state, tls, Bootstrap::Existing, self.events.clone()).await {
            Ok(rt) => {
                if let Some(m) = &rt.manager
                    && let Err(e) = m.join_raft_via(&managers).await
                {
                    tracing::error!("joining the managers after promotion: {e}");
                }
                tracing::info!(?role, "node role changed");
                *guard = Some(rt);
            }
            Err(e) => tracing::error!("restarting in role {role:?}: {e:#}"),
        }
    }

    /// Trusts `trust_root` and, if `renew`, installs a new certificate, in place: open
    /// connections carry on, new ones use the new material (a CA rotation, or a
    /// certificate past most of its life). The trust comes first, so certificates the new
    /// root signs are accepted before this node presents one.
    async fn update_certificate(self: &Arc<Self>, trust_root: String, renew: bool) {
        let (tls, managers, addr, role) = {
            let guard = self.runtime.lock().await;
            let Some(rt) = guard.as_ref() else { return };
            (
                rt.tls.clone(),
                rt.state.manager_addrs.clone(),
                rt.state.control_addr(),
                rt.state.role(),
            )
        };
        let mut pem = tls.current();
        if !trust_root.is_empty() && trust_root != pem.ca_cert_pem {
            pem.ca_cert_pem = trust_root;
        }
        if renew {
            match shoal_agent::join::renew(&tls, &managers, &addr).await {
                // A role change renews on its own, with a restart into the new role.
                Ok(g) if g.certificate.role() == role => {
                    pem = NodeTls {
                        ca_cert_pem: g.certificate.ca_cert_pem,
                        cert_pem: g.certificate.cert_pem,
                        key_pem: g.key_pem,
                    };
                }
                Ok(_) => tracing::info!("certificate renewal deferred to the role change"),
                Err(e) => tracing::warn!("renewing the certificate: {e}"),
            }
        }
        if pem.ca_cert_pem == tls.current().ca_cert_pem && pem.cert_pem == tls.current().cert_pem {
            return;
        }
        if let Err(e) = tls.replace(pem.clone()) {
            tracing::error!("installing the new certificate: {e}");
            return;
        }
        let unlock = self.unlock_key().filter(|_| role == NodeRole::Manager);
        if let Err(e) = self.swarm_dir().save_certificates(&pem, unlock.as_ref()) {
            tracing::error!("saving the new certificate: {e:#}");
        }
        tracing::info!(
            renewed = renew,
            "the node's certificate and trust roots are updated"
        );
    }

    /// `swarm unlock`: opens the node's sealed keys with `key` and starts its part in the
    /// swarm. A wrong key changes nothing.
    pub async fn unlock(self: &Arc<Self>, key: &str) -> Result<(), Status> {
        let mut guard = self.runtime.lock().await;
        if self.locked().is_none() {
            return Err(swarm_state(if guard.is_some() {
                "swarm is not locked"
            } else {
                NOT_PART_OF_SWARM
            }));
        }
        let unlock = UnlockKey::parse(key).map_err(Status::invalid_argument)?;
        self.swarm_dir()
            .check_unlock(&unlock)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (state, tls) = self
            .swarm_dir()
            .load(Some(&unlock))
            .map_err(internal)?
            .ok_or_else(|| swarm_state(NOT_PART_OF_SWARM))?;
        self.set_unlock_key(Some(unlock));
        let rt = Runtime::start(self, state, tls, Bootstrap::Existing, self.events.clone())
            .await
            .map_err(internal)?;
        self.set_locked(None);
        *guard = Some(rt);
        tracing::info!("the swarm is unlocked");
        Ok(())
    }

    pub async fn gossip_status(&self) -> Result<shoal_proto::GossipStatusResponse, Status> {
        let guard = self.runtime.lock().await;
        let rt = guard
            .as_ref()
            .ok_or_else(|| swarm_state(NOT_PART_OF_SWARM))?;
        let gossip = rt.gossip.as_ref().ok_or_else(|| {
            Status::unavailable("gossip is not running on this node: see the daemon's log")
        })?;
        Ok(gossip.status())
    }

    pub async fn lb_status(&self) -> Result<shoal_proto::LoadBalancerStatusResponse, Status> {
        let guard = self.runtime.lock().await;
        let rt = guard
            .as_ref()
            .ok_or_else(|| swarm_state(NOT_PART_OF_SWARM))?;
        let plane = rt.data_plane.as_ref().ok_or_else(|| {
            Status::unavailable("the data plane is not running on this node: see the daemon's log")
        })?;
        Ok(plane.load_balancer().status().await)
    }

    pub async fn info(&self) -> InfoResponse {
        let guard = self.runtime.lock().await;
        let mut info = InfoResponse {
            local_node_state: "inactive".into(),
            hostname: self.hostname.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        };
        let Some(rt) = guard.as_ref() else {
            if let Some(state) = self.locked() {
                info.local_node_state = "locked".into();
                info.node_id = state.node_id;
                info.node_addr = state.advertise_ip;
                info.cluster_id = state.cluster_id;
            }
            return info;
        };
        let session = rt.session_status.lock().expect("poisoned").clone();
        info.node_id = rt.state.node_id.clone();
        info.node_addr = rt.state.advertise_ip.clone();
        info.cluster_id = rt.state.cluster_id.clone();
        info.remote_managers = if session.managers.is_empty() {
            rt.state.manager_addrs.clone()
        } else {
            session.managers
        };
        info.heartbeat_period_ms = session.period.as_millis() as u64;
        info.local_node_state = "active".into();
        if let Some(e) = &rt.error {
            info.local_node_state = "error".into();
            info.error = e.clone();
        } else if !session.connected && !session.last_error.is_empty() {
            info.error = session.last_error;
        }
        if let Some(m) = &rt.manager {
            info.control_available = true;
            info.is_leader = m.is_leader();
            let (managers, nodes) = m.store.view(|s| {
                (
                    s.nodes().filter(|n| n.manager_status.is_some()).count(),
                    s.nodes().count(),
                )
            });
            info.managers = managers as u32;
            info.nodes = nodes as u32;
            if let Ok(c) = m.cluster() {
                let root = c.root_ca.unwrap_or_default();
                info.ca_cert_digest = root.ca_cert_digest;
                info.ca_cert_pem = root.ca_cert_pem;
                info.ca_rotation_in_progress = root.rotation.is_some();
                let spec = c.spec.unwrap_or_default();
                let ca = spec.ca_config.unwrap_or_default();
                info.cert_expiry_secs = match ca.node_cert_expiry_secs {
                    0 => shoal_proto::DEFAULT_NODE_CERT_EXPIRY_SECS,
                    n => n,
                };
                info.force_rotate = ca.force_rotate;
                info.snapshot_interval = m.store.view(shoal_manager::snapshots::interval);
                info.keep_old_snapshots = m.store.view(shoal_manager::snapshots::keep_old);
                (info.snapshot_index, info.old_snapshots) = m.snapshots();
                info.heartbeat_period_ms =
                    shoal_manager::dispatcher::heartbeat_period(&m.store).as_millis() as u64;
            }
            if m.leader_id().is_none() {
                info.error = shoal_manager::error::NO_LEADER.into();
            }
        }
        info
    }
}

/// `--default-addr-pool` and `--default-addr-pool-mask-length`, checked before anything
/// is made.
fn check_address_pools(req: &SwarmInitRequest) -> Result<(), Status> {
    use shoal_manager::networks::ipam::Cidr;
    let mut widest = 32u8;
    for p in &req.default_addr_pool {
        let cidr = Cidr::parse(p)
            .map_err(|e| Status::invalid_argument(format!("--default-addr-pool: {e}")))?;
        widest = widest.min(cidr.prefix);
    }
    let size = req.default_addr_pool_mask_length;
    if size != 0
        && (!(8..=29).contains(&size)
            || (!req.default_addr_pool.is_empty() && (size as u8) < widest))
    {
        return Err(Status::invalid_argument(format!(
            "--default-addr-pool-mask-length {size} must be between 8 and 29 and no shorter than the pools' own prefix"
        )));
    }
    Ok(())
}

/// Acts on what the dispatcher session reports.
pub async fn handle_session_events(daemon: Arc<Daemon>, mut rx: mpsc::Receiver<SessionEvent>) {
    while let Some(event) = rx.recv().await {
        match event {
            SessionEvent::Managers(addrs) => {
                let mut guard = daemon.runtime.lock().await;
                if let Some(rt) = guard.as_mut() {
                    rt.state.manager_addrs = addrs;
                    if let Err(e) = daemon.swarm_dir().save_state(&rt.state) {
                        tracing::warn!("saving manager addresses: {e:#}");
                    }
                }
            }
            SessionEvent::RoleChanged(role) => daemon.change_role(role).await,
            SessionEvent::Certificate { trust_root, renew } => {
                daemon.update_certificate(trust_root, renew).await;
            }
            SessionEvent::Removed(msg) => {
                let mut guard = daemon.runtime.lock().await;
                if let Some(rt) = guard.as_mut() {
                    rt.error = Some(msg);
                }
            }
        }
    }
}

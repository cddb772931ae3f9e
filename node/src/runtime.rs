//! A node's swarm components while it is part of a swarm: for managers the Raft manager and
//! the mTLS listener on the control port; for every node the dispatcher session.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_agent::dataplane::{DataPlane, DataPlaneConfig};
use shoal_agent::executor::ExecutorConfig;
use shoal_agent::gossip::{ClusterView, Gossip};
use shoal_agent::overlay::OverlayConfig;
use shoal_agent::runtime::docker::DockerRuntime;
use shoal_agent::runtime::process::ProcessRuntime;
use shoal_agent::runtime::{Runtime as TaskRuntime, Unavailable};
use shoal_agent::session::{SessionConfig, SessionEvent, SessionStatus};
use shoal_manager::api::ManagerApi;
use shoal_manager::{Bootstrap, Manager, ManagerConfig};
use shoal_proto::ca_server::CaServer;
use shoal_proto::control_server::ControlServer;
use shoal_proto::dispatcher_server::DispatcherServer;
use shoal_proto::live_tls::LiveTls;
use shoal_proto::raft_transport_server::RaftTransportServer;
use shoal_proto::tls::NodeTls;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::transport::Server;

use super::Daemon;
use super::control::ControlService;
use super::state::{SwarmDir, SwarmState};
use crate::error::{IoContext, NodeError, Result};
use crate::events::SwarmEvents;

pub struct Runtime {
    pub state: SwarmState,
    /// The node's certificate and trust roots, replaced in place on renewal.
    pub tls: LiveTls,
    pub manager: Option<Arc<Manager>>,
    /// The swarm's events for /events, on managers.
    pub swarm_events: Option<Arc<SwarmEvents>>,
    server: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    /// The Docker Engine API over TCP (--engine-api-addr), on managers.
    engine_tcp: Option<tokio::task::AbortHandle>,
    session: JoinHandle<()>,
    executor: JoinHandle<()>,
    pub gossip: Option<Gossip>,
    pub data_plane: Option<Arc<DataPlane>>,
    pub task_runtime: Arc<dyn TaskRuntime>,
    pub session_status: Arc<Mutex<SessionStatus>>,
    /// Set when the swarm no longer accepts this node.
    pub error: Option<String>,
    /// On managers: seals the node's TLS key as the swarm's autolock says.
    lock_follower: Option<JoinHandle<()>>,
}

impl Runtime {
    pub async fn start(
        daemon: &Arc<Daemon>,
        state: SwarmState,
        tls: NodeTls,
        bootstrap: Bootstrap,
        events: mpsc::Sender<SessionEvent>,
    ) -> Result<Runtime> {
        let tls = LiveTls::new(tls).map_err(|e| NodeError::start("loading the node's TLS", e))?;
        let (manager, server) = if state.manager {
            let manager = Manager::start(
                ManagerConfig {
                    state_dir: SwarmDir::new(&daemon.args.data_dir).raft_dir(),
                    raft_id: state.raft_id,
                    node_id: state.node_id.clone(),
                    advertise_addr: state.control_addr(),
                    tls: tls.clone(),
                    unlock_key: daemon.unlock_key(),
                },
                bootstrap,
            )
            .await
            .map_err(|cause| NodeError::Manager {
                what: "starting the manager".into(),
                cause,
            })?;
            let server = match serve(daemon, &manager, &state, &tls).await {
                Ok(s) => s,
                Err(e) => {
                    manager.shutdown().await;
                    return Err(e);
                }
            };
            (Some(manager), Some(server))
        } else {
            (None, None)
        };
        let engine_tcp = match (&manager, &daemon.args.engine_api_addr) {
            (Some(m), Some(addr)) => {
                let mut names = vec![
                    state.advertise_ip.clone(),
                    "127.0.0.1".to_string(),
                    "localhost".to_string(),
                    daemon.hostname.clone(),
                ];
                names.dedup();
                match super::engine_api::tcp::serve(daemon.clone(), m.clone(), addr, names).await {
                    Ok(h) => Some(h),
                    Err(e) => {
                        tracing::error!("the Docker Engine API over TCP is unavailable: {e:#}");
                        None
                    }
                }
            }
            _ => None,
        };
        let session_status = Arc::new(Mutex::new(SessionStatus::default()));
        let mut managers = state.manager_addrs.clone();
        if state.manager && !managers.contains(&state.control_addr()) {
            managers.insert(0, state.control_addr());
        }
        let task_runtime = task_runtime(daemon, &state.node_id).await;
        let (gossip_view, view_rx) = watch::channel(ClusterView::default());
        let (gossip, data_plane) = match start_data_plane(daemon, &state, view_rx).await {
            Ok((g, o)) => (Some(g), Some(o)),
            Err(e) => {
                tracing::error!("the network data plane is unavailable: {e:#}");
                (None, None)
            }
        };
        let executor = tokio::spawn(shoal_agent::executor::run(ExecutorConfig {
            node_id: state.node_id.clone(),
            tls: tls.clone(),
            managers: managers.clone(),
            session: session_status.clone(),
            runtime: task_runtime.clone(),
            data_plane: data_plane.clone(),
        }));
        let session = tokio::spawn(shoal_agent::session::run(
            SessionConfig {
                node_id: state.node_id.clone(),
                role: state.role(),
                tls: tls.clone(),
                managers,
                description: shoal_agent::describe_node(&daemon.hostname),
                addr: state.advertise_ip.clone(),
                gossip_view,
            },
            session_status.clone(),
            events,
        ));
        let lock_follower = manager
            .as_ref()
            .map(|m| tokio::spawn(follow_lock(daemon.clone(), m.lock.clone(), tls.clone())));
        Ok(Runtime {
            lock_follower,
            state,
            tls,
            swarm_events: manager.as_deref().map(SwarmEvents::start),
            manager,
            server,
            engine_tcp,
            session,
            executor,
            gossip,
            data_plane,
            task_runtime,
            session_status,
            error: None,
        })
    }

    /// Tells the other nodes this one is going, so they drop its endpoints at once.
    pub async fn leave_gossip(&self) {
        if let Some(p) = &self.data_plane {
            p.leave().await;
        }
        if let Some(g) = &self.gossip {
            g.leave().await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(g) = self.gossip.take() {
            g.stop();
        }
        if let Some(f) = self.lock_follower.take() {
            f.abort();
        }
        self.session.abort();
        // Tasks keep running: a restarted agent adopts them.
        self.executor.abort();
        if let Some(h) = self.engine_tcp.take() {
            h.abort();
        }
        if let Some((tx, handle)) = self.server.take() {
            let _ = tx.send(());
            let abort = handle.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), handle)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        if let Some(m) = self.manager.take() {
            m.shutdown().await;
        }
    }
}

/// Seals (or unseals) this manager's TLS key as its data key is, whenever the swarm's
/// autolock or unlock key changes, and remembers the key for the next start.
async fn follow_lock(
    daemon: Arc<Daemon>,
    mut lock: watch::Receiver<Option<shoal_manager::state::raft::at_rest::UnlockKey>>,
    tls: LiveTls,
) {
    loop {
        let unlock = lock.borrow_and_update().clone();
        // The daemon's key is what the TLS key is sealed with now (none: kept as it is).
        if unlock != daemon.unlock_key() {
            let key_pem = tls.current().key_pem;
            match SwarmDir::new(&daemon.args.data_dir).save_key(&key_pem, unlock.as_ref()) {
                Ok(()) => daemon.set_unlock_key(unlock),
                Err(e) => {
                    tracing::error!("sealing the TLS key as the swarm's autolock says: {e:#}");
                }
            }
        }
        if lock.changed().await.is_err() {
            return;
        }
    }
}

/// The resolvers tasks' other queries go to, as `--dns-upstream` says.
fn dns_upstreams(flags: &[String]) -> Result<Vec<std::net::SocketAddr>> {
    if flags.is_empty() {
        let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        return Ok(shoal_agent::dns::upstreams_from(&conf));
    }
    flags
        .iter()
        .filter(|f| f.as_str() != "none")
        .map(|f| {
            f.parse::<std::net::SocketAddr>()
                .or_else(|_| f.parse::<std::net::IpAddr>().map(|ip| (ip, 53).into()))
                .map_err(|_| {
                    NodeError::Config(format!(
                        "--dns-upstream {f:?}: give an IP address, IP:PORT, or none"
                    ))
                })
        })
        .collect()
}

/// Gossip on the node's address and the data plane fed by it.
async fn start_data_plane(
    daemon: &Arc<Daemon>,
    state: &SwarmState,
    view: watch::Receiver<ClusterView>,
) -> Result<(Gossip, Arc<DataPlane>)> {
    let ip: std::net::Ipv4Addr = state.advertise_ip.parse().map_err(|_| {
        NodeError::Config(format!(
            "the advertise address {} is not IPv4",
            state.advertise_ip
        ))
    })?;
    let gossip = Gossip::start(&state.node_id, ip, shoal_agent::gossip::PORT, view)
        .await
        .io(|| format!("starting gossip on {ip}:{}", shoal_agent::gossip::PORT))?;
    let plane = DataPlane::start(
        DataPlaneConfig {
            overlay: OverlayConfig {
                node_id: state.node_id.clone(),
                netns_prefix: daemon.args.netns_prefix.clone(),
                vtep: ip,
            },
            dns_upstreams: dns_upstreams(&daemon.args.dns_upstream)?,
            dns_ttl: daemon.args.dns_ttl,
        },
        gossip.clone(),
        shoal_agent::lb::engine(
            &daemon.args.lb_engine,
            &daemon.args.lb_attach,
            ip,
            &daemon.args.netns_prefix,
        )
        .map_err(NodeError::Config)?,
    )
    .await;
    match plane {
        Ok(p) => Ok((gossip, p)),
        Err(e) => {
            gossip.stop();
            Err(NodeError::start("starting the overlay driver", e))
        }
    }
}

/// The runtime tasks run on, as `--runtime` chose. When dockerd cannot be reached every
/// task is rejected with the reason, rather than the node failing to start.
async fn task_runtime(daemon: &Arc<Daemon>, node_id: &str) -> Arc<dyn TaskRuntime> {
    match daemon.args.runtime.as_str() {
        "process" => {
            let runtime = ProcessRuntime::new(&daemon.args.run_dir, &daemon.args.netns_prefix);
            // This binary stamps the tasks' output lines (`shoal __stamp-log`).
            Arc::new(match std::env::current_exe() {
                Ok(exe) => runtime.with_log_stamper(vec![exe.into(), "__stamp-log".into()]),
                Err(e) => {
                    tracing::warn!("task output will carry no times: {e}");
                    runtime
                }
            })
        }
        _ => match DockerRuntime::connect(node_id, &daemon.args.run_dir).await {
            Ok(r) => Arc::new(r),
            Err(e) => {
                tracing::error!("the docker runtime is unavailable: {e}");
                Arc::new(Unavailable(e.to_string()))
            }
        },
    }
}

/// The control-port listener of a manager: Raft, CA, dispatcher, and the control API for
/// remote CLIs, all behind TLS; client certificates are checked per call.
async fn serve(
    daemon: &Arc<Daemon>,
    manager: &Arc<Manager>,
    state: &SwarmState,
    tls: &LiveTls,
) -> Result<(oneshot::Sender<()>, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(&state.listen_addr)
        .await
        .io(|| format!("cannot listen on {} for cluster control", state.listen_addr))?;
    let live = tls.clone();
    let (accepted, accept_loop) =
        crate::tls_accept::accept_tls(listener, "control port", move || Some(live.server_config()));
    let api = ManagerApi(manager.clone());
    let router = Server::builder()
        .add_service(RaftTransportServer::new(api.clone()))
        .add_service(CaServer::new(api.clone()))
        .add_service(DispatcherServer::new(api))
        .add_service(ControlServer::new(ControlService::remote(daemon.clone())));
    let (tx, rx) = oneshot::channel::<()>();
    let incoming = tokio_stream::wrappers::ReceiverStream::new(accepted)
        .map(|(stream, _)| Ok::<_, std::io::Error>(stream));
    let handle = tokio::spawn(async move {
        // Shutting down stops accepting at once; open calls may finish.
        let shutdown = async move {
            let _ = rx.await;
            drop(accept_loop);
        };
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
        {
            tracing::error!("control listener stopped: {e}");
        }
    });
    tracing::info!(addr = %state.listen_addr, "listening for cluster control");
    Ok((tx, handle))
}

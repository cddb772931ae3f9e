//! The load balancer: service VIPs (east-west, from every local task's namespace) and
//! published ports (the ingress routing mesh, on every node address). What to balance
//! comes from the endpoint tables (plan.rs); how is an engine's business, behind
//! [`Engine`]. The overlay's reconciler re-programs the balancer right after each of its
//! passes (on every gossip change and every few seconds), so a new backend is reachable
//! (FDB and neighbour entries in place) before it gets connections, drift is repaired,
//! and backends follow task state.

pub mod ebpf;
pub mod maglev;
pub mod nft;
pub mod plan;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::gossip::Endpoint;
use plan::{MeshFrontend, VipFrontend};

/// The engines' key for the node's own namespace.
pub(crate) const NODE_SITE: &str = "node";

/// A way to balance connections. Calls block (they write kernel state) and are made off
/// the async runtime.
/// What went wrong programming the load balancer.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// The engine cannot run on this node (its programs did not load, say why): the
    /// agent balances with nftables instead.
    #[error("{0}")]
    Unavailable(String),
    /// An interface to attach to is not there (a task's veth goes with its task).
    #[error("no interface {0}")]
    NoInterface(String),
    /// A table of the eBPF engine is full.
    #[error("no free {0} slot left")]
    Full(&'static str),
    /// A kernel call failed: what was being done, and the kernel's answer.
    #[error("{what}: {why}")]
    Kernel { what: String, why: String },
    /// nft refused a ruleset, or could not be run.
    #[error("nftables: {0}")]
    Nft(String),
}

/// Turns an error from the kernel (a syscall, a map, aya) into `LbError::Kernel`.
pub(crate) fn kernel<E: std::fmt::Display>(what: impl Into<String>) -> impl FnOnce(E) -> LbError {
    let what = what.into();
    move |e| LbError::Kernel {
        what,
        why: e.to_string(),
    }
}

pub trait Engine: Send + Sync {
    fn name(&self) -> &'static str;
    /// How the engine's programs are attached, where that is a choice (`--lb-attach`).
    fn attach_mode(&self) -> Option<&'static str> {
        None
    }
    /// Makes connections from task `task_id` (namespace `netns`, its `legs` on the
    /// networks) to `vips` reach their backends.
    fn program_task(
        &self,
        task_id: &str,
        netns: &Path,
        legs: &[TaskLeg],
        vips: &[VipFrontend],
    ) -> Result<(), LbError>;
    /// The VIPs of every local task's networks, before program_task (engines that hold
    /// them node-wide).
    fn program_vips(&self, _vips: &[VipFrontend]) -> Result<(), LbError> {
        Ok(())
    }
    /// Makes connections to the node's address on `mesh` ports reach their backends
    /// through `leg`, the node's interface on the ingress network.
    fn program_node(&self, mesh: &[MeshFrontend], leg: &Leg) -> Result<(), LbError>;
    /// Makes connections to the node's address on each host-mode port reach its task.
    fn program_host_ports(&self, ports: &[HostPort]) -> Result<(), LbError>;
    /// Forgets what it knew of a task that is gone.
    fn forget(&self, task_id: &str);
    /// Removes the node's rules (the node leaves the swarm).
    fn clear_node(&self) -> Result<(), LbError>;
    /// Whether an earlier agent left programmed state on this node.
    fn has_state(&self) -> bool;
    /// Per published port, what the engine counted (None: it does not count).
    fn counters(&self) -> Option<Vec<PortCounters>> {
        None
    }
}

/// What an engine counted for one published port and each of its backends (requests;
/// replies are not counted).
pub struct PortCounters {
    pub protocol: crate::gossip::Protocol,
    pub port: u16,
    pub total: Counted,
    pub backends: Vec<((std::net::Ipv4Addr, u16), Counted)>,
}

#[derive(Clone, Copy, Default)]
pub struct Counted {
    pub packets: u64,
    pub bytes: u64,
    pub connections: u64,
}

/// The engine `--lb-engine` names, attached as `--lb-attach` says, for the node at
/// `node_addr` (`node_name` keeps its pinned eBPF state apart from other nodes' on the
/// same machine). When the eBPF programs cannot be loaded, nftables does the work, and
/// one log line says why.
pub fn engine(
    name: &str,
    attach: &str,
    node_addr: std::net::Ipv4Addr,
    node_name: &str,
) -> Result<Arc<dyn Engine>, String> {
    match name {
        "nftables" => Ok(Arc::new(nft::NftEngine::default())),
        "ebpf" => match ebpf::EbpfEngine::load(node_addr, node_name, attach) {
            Ok(e) => Ok(Arc::new(e)),
            Err(e) => {
                tracing::warn!(
                    "the ebpf load balancer cannot run here, using nftables instead: {e}"
                );
                Ok(Arc::new(nft::NftEngine::default()))
            }
        },
        other => Err(format!(
            "unknown load-balancer engine {other:?}: use ebpf or nftables"
        )),
    }
}

/// The node's own interface on the ingress network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leg {
    pub network_id: String,
    pub ifname: String,
    pub addr: std::net::Ipv4Addr,
}

/// A local task's veth on one network, as its network's namespace sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskLeg {
    pub network_id: String,
    /// The network's namespace (/run/netns/...), where `host_veth` is.
    pub sandbox: PathBuf,
    pub host_veth: String,
}

/// A port a local task publishes in mode=host: the node's `published` port goes to the
/// task's `addr` (its gateway-bridge address) and `target` port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub protocol: crate::gossip::Protocol,
    pub published: u16,
    pub target: u16,
    pub addr: std::net::Ipv4Addr,
}

/// A local task's namespace, the networks it is on, and its host-mode ports (open only
/// while it serves).
#[derive(Clone)]
struct Site {
    netns: PathBuf,
    legs: Vec<TaskLeg>,
    networks: HashSet<String>,
    host_ports: Vec<HostPort>,
    serving: bool,
}

#[derive(Default)]
struct Sites {
    tasks: HashMap<String, Site>,
    ingress: Option<Leg>,
}

pub struct Balancer {
    engine: Arc<dyn Engine>,
    sites: Mutex<Sites>,
    /// One sync at a time, so an older plan never lands after a newer one.
    syncing: Mutex<()>,
    /// An earlier agent left programmed state: it is kept as it is until gossip has
    /// settled, as programming from incomplete tables would drop backends.
    adopting: bool,
    /// The endpoints the overlay last made reachable (FDB and neighbour entries in), and
    /// whether gossip had settled when they were read; None until its first pass, and
    /// nothing is programmed before.
    reachable: Mutex<Option<(Arc<Vec<Endpoint>>, bool)>>,
}

impl Balancer {
    pub fn start(engine: Arc<dyn Engine>) -> Arc<Balancer> {
        let adopting = engine.has_state();
        tracing::info!(engine = engine.name(), adopting, "load balancer");
        Arc::new(Balancer {
            adopting,
            engine,
            sites: Mutex::default(),
            syncing: Mutex::default(),
            reachable: Mutex::default(),
        })
    }

    pub fn engine_name(&self) -> &'static str {
        self.engine.name()
    }

    /// A task with `legs` on its networks (it reaches their VIPs), publishing
    /// `host_ports` once it serves.
    pub async fn add_task(
        &self,
        task_id: &str,
        netns: &Path,
        legs: Vec<TaskLeg>,
        host_ports: Vec<HostPort>,
    ) {
        self.sites.lock().await.tasks.insert(
            task_id.to_string(),
            Site {
                netns: netns.to_path_buf(),
                networks: legs.iter().map(|l| l.network_id.clone()).collect(),
                legs,
                host_ports,
                serving: false,
            },
        );
        self.program().await;
    }

    /// Opens or closes the task's host-mode ports; says whether it has any.
    pub async fn set_serving(&self, task_id: &str, serving: bool) -> bool {
        let has_ports = {
            let mut sites = self.sites.lock().await;
            match sites.tasks.get_mut(task_id) {
                Some(site) => {
                    site.serving = serving;
                    !site.host_ports.is_empty()
                }
                None => false,
            }
        };
        if has_ports {
            self.program().await;
        }
        has_ports
    }

    pub async fn remove_task(&self, task_id: &str) {
        self.sites.lock().await.tasks.remove(task_id);
        self.engine.forget(task_id);
    }

    /// The node's leg on the ingress network, once it has one.
    pub async fn set_ingress(&self, leg: Leg) {
        self.sites.lock().await.ingress = Some(leg);
        self.program().await;
    }

    /// Programs the engine from `endpoints`: those the overlay has just made reachable
    /// (`complete`: read once gossip had settled).
    pub async fn sync(&self, endpoints: Arc<Vec<Endpoint>>, complete: bool) {
        *self.reachable.lock().await = Some((endpoints, complete));
        self.program().await;
    }

    /// Programs the engine from the endpoints last made reachable. State an earlier
    /// agent left is only replaced from complete tables.
    async fn program(&self) {
        let _one = self.syncing.lock().await;
        let Some((endpoints, complete)) = self.reachable.lock().await.clone() else {
            return;
        };
        if self.adopting && !complete {
            return;
        }
        let sites = self.sites.lock().await;
        let host_ports: Vec<HostPort> = sites
            .tasks
            .values()
            .filter(|s| s.serving)
            .flat_map(|s| s.host_ports.iter().cloned())
            .collect();
        let tasks: Vec<(String, Site, Vec<VipFrontend>)> = sites
            .tasks
            .iter()
            .map(|(id, s)| (id.clone(), s.clone(), plan::vips(&endpoints, &s.networks)))
            .collect();
        let networks: HashSet<String> = sites
            .tasks
            .values()
            .flat_map(|s| s.networks.iter().cloned())
            .collect();
        let all_vips = plan::vips(&endpoints, &networks);
        let (mesh, leg) = match &sites.ingress {
            Some(leg) => (plan::mesh(&endpoints, &leg.network_id), Some(leg.clone())),
            None => (vec![], None),
        };
        drop(sites);
        let engine = self.engine.clone();
        let done = tokio::task::spawn_blocking(move || {
            if let Err(e) = engine.program_vips(&all_vips) {
                tracing::warn!("programming VIPs: {e}");
            }
            for (id, site, vips) in &tasks {
                // A namespace that is gone belongs to a task being stopped.
                if site.netns.exists()
                    && let Err(e) = engine.program_task(id, &site.netns, &site.legs, vips)
                {
                    tracing::warn!(task = %id, "programming the task's VIPs: {e}");
                }
            }
            if let Err(e) = engine.program_host_ports(&host_ports) {
                tracing::warn!("programming host-mode ports: {e}");
            }
            // Until the node has its ingress leg it keeps what it has.
            if let Some(leg) = &leg
                && let Err(e) = engine.program_node(&mesh, leg)
            {
                tracing::warn!("programming published ports: {e}");
            }
        })
        .await;
        if done.is_err() {
            tracing::error!("the load-balancer engine panicked");
        }
    }

    /// What `shoal debug lb` shows: the engine, the published ports with their backends
    /// and counters, and the VIPs local tasks reach.
    pub async fn status(&self) -> shoal_proto::LoadBalancerStatusResponse {
        use shoal_proto::{LbBackend, LbFrontend};
        let endpoints = self
            .reachable
            .lock()
            .await
            .clone()
            .map(|(e, _)| e)
            .unwrap_or_default();
        let sites = self.sites.lock().await;
        let mesh = sites
            .ingress
            .as_ref()
            .map(|leg| plan::mesh(&endpoints, &leg.network_id))
            .unwrap_or_default();
        let networks: HashSet<String> = sites
            .tasks
            .values()
            .flat_map(|s| s.networks.iter().cloned())
            .collect();
        drop(sites);
        let engine = self.engine.clone();
        let counters = tokio::task::spawn_blocking(move || engine.counters())
            .await
            .ok()
            .flatten();
        let counted = counters.is_some();
        let counters = counters.unwrap_or_default();
        let mut frontends: Vec<LbFrontend> = mesh
            .iter()
            .map(|f| {
                let c = counters
                    .iter()
                    .find(|c| c.port == f.port && c.protocol == f.protocol);
                let total = c.map(|c| c.total).unwrap_or_default();
                LbFrontend {
                    service: f.service_name.clone(),
                    address: format!("*:{}/{}", f.port, f.protocol.name()),
                    backends: f
                        .backends
                        .iter()
                        .map(|b| {
                            let n = c
                                .and_then(|c| c.backends.iter().find(|(x, _)| x == b))
                                .map(|(_, n)| *n)
                                .unwrap_or_default();
                            LbBackend {
                                address: format!("{}:{}", b.0, b.1),
                                packets: n.packets,
                                bytes: n.bytes,
                                connections: n.connections,
                            }
                        })
                        .collect(),
                    packets: total.packets,
                    bytes: total.bytes,
                    connections: total.connections,
                    counted,
                }
            })
            .collect();
        frontends.extend(plan::vips(&endpoints, &networks).into_iter().map(|f| {
            LbFrontend {
                service: f.service_name,
                address: f.vip.to_string(),
                backends: f
                    .backends
                    .iter()
                    .map(|b| LbBackend {
                        address: b.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }
        }));
        shoal_proto::LoadBalancerStatusResponse {
            engine: self.engine.name().into(),
            frontends,
            attach_mode: self.engine.attach_mode().unwrap_or_default().into(),
        }
    }

    /// Removes the node's published ports (leaving the swarm).
    pub async fn clear(&self) {
        let engine = self.engine.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || engine.clear_node()).await {
            tracing::warn!("removing published ports: {e}");
        }
    }
}

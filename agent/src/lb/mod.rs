//! The load balancer: service VIPs (east-west, from every local task's namespace) and
//! published ports (the ingress routing mesh, on every node address). What to balance
//! comes from the endpoint tables (plan.rs); how is an engine's business, behind
//! [`Engine`]. The overlay's reconciler re-programs the balancer right after each of its
//! passes (on every gossip change and every few seconds), so a new backend is reachable
//! (FDB and neighbour entries in place) before it gets connections, drift is repaired,
//! and backends follow task state.

pub mod nft;
pub mod plan;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::gossip::Gossip;
use plan::{MeshFrontend, VipFrontend};

/// The engines' key for the node's own namespace.
pub(crate) const NODE_SITE: &str = "node";

/// A way to balance connections. Calls block (they write kernel state) and are made off
/// the async runtime.
pub trait Engine: Send + Sync {
    fn name(&self) -> &'static str;
    /// Makes connections from task `task_id` (namespace `netns`) to `vips` reach their
    /// backends; no VIPs: nothing of the engine's in that namespace.
    fn program_task(&self, task_id: &str, netns: &Path, vips: &[VipFrontend])
    -> Result<(), String>;
    /// Makes connections to the node's addresses on `mesh` ports reach their backends
    /// through `ingress_leg`, the node's interface on the ingress network.
    fn program_node(&self, mesh: &[MeshFrontend], ingress_leg: &str) -> Result<(), String>;
    /// Forgets what it knew of a task that is gone.
    fn forget(&self, task_id: &str);
    /// Removes the node's rules (the node leaves the swarm).
    fn clear_node(&self) -> Result<(), String>;
    /// Whether an earlier agent left programmed state on this node.
    fn has_state(&self) -> bool;
}

/// The engine `--lb-engine` names.
pub fn engine(name: &str) -> Result<Arc<dyn Engine>, String> {
    match name {
        "nftables" => Ok(Arc::new(nft::NftEngine::default())),
        other => Err(format!(
            "unknown load-balancer engine {other:?}: use nftables"
        )),
    }
}

/// A local task's namespace and the networks it is on.
struct Site {
    netns: PathBuf,
    networks: HashSet<String>,
}

#[derive(Default)]
struct Sites {
    tasks: HashMap<String, Site>,
    /// The ingress network and the node's leg on it.
    ingress: Option<(String, String)>,
}

pub struct Balancer {
    engine: Arc<dyn Engine>,
    gossip: Gossip,
    sites: Mutex<Sites>,
    /// One sync at a time, so an older plan never lands after a newer one.
    syncing: Mutex<()>,
    /// An earlier agent left programmed state: it is kept as it is until gossip has
    /// settled, as programming from incomplete tables would drop backends.
    adopting: bool,
}

impl Balancer {
    pub fn start(engine: Arc<dyn Engine>, gossip: Gossip) -> Arc<Balancer> {
        let adopting = engine.has_state();
        tracing::info!(engine = engine.name(), adopting, "load balancer");
        Arc::new(Balancer {
            adopting,
            engine,
            gossip,
            sites: Mutex::default(),
            syncing: Mutex::default(),
        })
    }

    pub fn engine_name(&self) -> &'static str {
        self.engine.name()
    }

    /// A task on `networks` (its VIPs get programmed in `netns`).
    pub async fn add_task(&self, task_id: &str, netns: &Path, networks: HashSet<String>) {
        self.sites.lock().await.tasks.insert(
            task_id.to_string(),
            Site {
                netns: netns.to_path_buf(),
                networks,
            },
        );
        self.sync().await;
    }

    pub async fn remove_task(&self, task_id: &str) {
        self.sites.lock().await.tasks.remove(task_id);
        self.engine.forget(task_id);
    }

    /// The node's leg on the ingress network, once it has one.
    pub async fn set_ingress(&self, network_id: &str, leg: &str) {
        self.sites.lock().await.ingress = Some((network_id.to_string(), leg.to_string()));
        self.sync().await;
    }

    /// Programs the engine from the current endpoint tables.
    pub async fn sync(&self) {
        if self.adopting && !self.gossip.settled() {
            return;
        }
        let _one = self.syncing.lock().await;
        let endpoints = self.gossip.endpoints_shared();
        let sites = self.sites.lock().await;
        let tasks: Vec<(String, PathBuf, Vec<VipFrontend>)> = sites
            .tasks
            .iter()
            .map(|(id, s)| {
                (
                    id.clone(),
                    s.netns.clone(),
                    plan::vips(&endpoints, &s.networks),
                )
            })
            .collect();
        let (mesh, leg) = match &sites.ingress {
            Some((network, leg)) => (plan::mesh(&endpoints, network), Some(leg.clone())),
            None => (vec![], None),
        };
        drop(sites);
        let engine = self.engine.clone();
        let done = tokio::task::spawn_blocking(move || {
            for (id, netns, vips) in &tasks {
                // A namespace that is gone belongs to a task being stopped.
                if netns.exists()
                    && let Err(e) = engine.program_task(id, netns, vips)
                {
                    tracing::warn!(task = %id, "programming the task's VIPs: {e}");
                }
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

    /// Removes the node's published ports (leaving the swarm).
    pub async fn clear(&self) {
        let engine = self.engine.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || engine.clear_node()).await {
            tracing::warn!("removing published ports: {e}");
        }
    }
}

//! The overlay network driver. Per network with local tasks, a sandbox namespace (see
//! sandbox.rs); per task and network, a veth from the sandbox's bridge into the task's
//! namespace carrying the task's address and a MAC derived from it. Local endpoints are
//! published through gossip; remote ones, learnt from it, become static FDB entries
//! (MAC -> remote VTEP) and permanent neighbours (IP -> MAC) on the vxlan device.
//!
//! A reconciler compares this desired state with the kernel every few seconds, and at
//! once when gossip changes, and repairs what drifted: missing namespaces, devices,
//! veths, FDB and neighbour entries, and entries nobody publishes any more.
//!
//! This driver owns kernel state only; publishing endpoints, DNS and the balancer are the
//! coordinator's (crate::dataplane), which calls it. Files: plan.rs decides a task's legs
//! (pure); this file makes the kernel match (sandboxes, veths, the gateway leg, the
//! ingress leg); reconcile.rs repairs, deciding through diff.rs (pure).

mod diff;
pub mod gateway;
mod plan;
mod reconcile;
pub mod sandbox;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use shoal_proto::{Network, NetworkAttachment, Task};
use tokio::sync::Mutex;

use crate::gossip::{Endpoint, Gossip};
use crate::lb::{HostPort, TaskLeg};
use crate::netlink::{Netlink, NetlinkError, link_name, mac_for};
use gateway::GatewayLeg;
use plan::{InterfaceNames, host_ports};
use sandbox::{NetworkPlan, Sandbox};

/// VXLAN over IPv4 costs 50 bytes of every packet.
const VXLAN_OVERHEAD: u32 = 50;

pub struct OverlayConfig {
    pub node_id: String,
    /// Starts the name of every namespace this node makes.
    pub netns_prefix: String,
    /// The node's data-path address: the VXLAN source, and what peers send to.
    pub vtep: Ipv4Addr,
}

/// One task's leg on one network.
#[derive(Clone, Debug)]
struct Attachment {
    network_id: String,
    task_netns: PathBuf,
    ifname: String,
    host_veth: String,
    endpoint: Endpoint,
}

#[derive(Default)]
struct State {
    networks: HashMap<String, Network>,
    /// Networks the node's assigned tasks use; None until the first assignment set, so
    /// a restarted agent removes nothing before it knows what is still wanted.
    assigned: Option<HashSet<String>>,
    attached: HashMap<String, Vec<Attachment>>,
    sandboxes: HashMap<String, Sandbox>,
    /// Per task, its interface on the gateway bridge.
    gateway: HashMap<String, GatewayLeg>,
    /// Per network, remote MACs gossip no longer lists, and since when (reconcile.rs).
    fading: HashMap<String, HashMap<[u8; 6], std::time::Instant>>,
}

/// Where the node's own leg on the ingress network is kept in `State::attached`.
const INGRESS_LEG: &str = "ingress-leg";

/// The gossip entry of a node's ingress leg is named like a task's.
pub(crate) fn leg_task_id(node_id: &str) -> String {
    format!("{INGRESS_LEG}-{node_id}")
}
/// The node's interface on the ingress network (published ports leave through it).
pub const INGRESS_IFNAME: &str = "shoal_ingress";

/// The overlay driver: reads remote endpoints from gossip, never publishes.
pub struct Overlay {
    cfg: OverlayConfig,
    gossip: Gossip,
    node: Netlink,
    uplink_mtu: u32,
    state: Mutex<State>,
}

/// Why a task (or the node's own ingress leg) could not be attached to its networks.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("network {0} is not known to this node yet")]
    UnknownNetwork(String),
    #[error("the task has no address on network {0}")]
    NoAddress(String),
    #[error("bad address {addr:?} on network {network}")]
    BadAddress { network: String, addr: String },
    #[error("attaching to network {network}: {source}")]
    Network {
        network: String,
        #[source]
        source: NetlinkError,
    },
    #[error("attaching to the gateway bridge: {0}")]
    Gateway(#[source] NetlinkError),
    /// The task's network namespace could not be entered or read (it may be gone).
    #[error("{0}")]
    Namespace(#[source] NetlinkError),
    #[error("serving the task's DNS: {0}")]
    Dns(crate::dns::DnsError),
}

/// A task once plumbed: what the coordinator hands to DNS and the balancer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plumbed {
    /// Its legs on its own networks (not ingress), where names and VIPs are served.
    pub served: Vec<TaskLeg>,
    /// The ports it publishes in mode=host, to its address on the gateway bridge.
    pub host_ports: Vec<HostPort>,
}

/// How the ingress network is named in errors about the node's own leg on it.
const INGRESS_NETWORK: &str = "ingress";

type Result<T> = std::result::Result<T, NetlinkError>;

impl Overlay {
    /// The driver; its reconciler runs when the coordinator calls `reconcile`.
    pub async fn start(cfg: OverlayConfig, gossip: Gossip) -> Result<Arc<Overlay>> {
        let node = Netlink::here()?;
        let uplink_mtu = uplink_mtu(&node, cfg.vtep).await.unwrap_or(1500);
        Ok(Arc::new(Overlay {
            cfg,
            gossip,
            node,
            uplink_mtu,
            state: Mutex::default(),
        }))
    }

    fn sandbox_name(&self, vni: u32) -> String {
        format!("{}-ov{vni}", self.cfg.netns_prefix)
    }

    fn plan(&self, n: &Network) -> Option<NetworkPlan> {
        let ipam = n.ipam.first()?;
        let (subnet, prefix) = ipam.subnet.split_once('/')?;
        let spec = n.spec.clone().unwrap_or_default();
        let mtu = spec
            .options
            .iter()
            .find(|(k, _)| *k == "mtu" || *k == "com.docker.network.driver.mtu")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(self.uplink_mtu.saturating_sub(VXLAN_OVERHEAD));
        Some(NetworkPlan {
            id: n.id.clone(),
            name: spec.annotations.map(|a| a.name).unwrap_or_default(),
            vni: n.vni,
            subnet: subnet.parse().ok()?,
            prefix: prefix.parse().ok()?,
            gateway: ipam.gateway.parse().ok()?,
            mtu,
        })
    }

    /// The networks the dispatcher sent, and the ones this node's tasks use (`None`:
    /// not known yet, so nothing is pruned).
    pub(crate) async fn set_networks(&self, networks: &[Network], assigned: HashSet<String>) {
        let mut st = self.state.lock().await;
        for n in networks {
            st.networks.insert(n.id.clone(), n.clone());
        }
        st.assigned = Some(assigned);
    }

    /// The node's own leg on the ingress network: published ports reach tasks through
    /// it, and it is published like a task's endpoint so replies find their way back.
    /// Returns its endpoint when it was plumbed now (to be published), `None` when it
    /// was there already.
    pub(crate) async fn attach_ingress_leg(
        &self,
        ingress: &NetworkAttachment,
    ) -> std::result::Result<Option<Endpoint>, AttachError> {
        let mut st = self.state.lock().await;
        let (ip, prefix) = plan::leg_address(ingress, INGRESS_NETWORK)?;
        let present = st.attached.get(INGRESS_LEG).and_then(|l| l.first());
        if present.is_some_and(|l| l.endpoint.ip == ip && l.network_id == ingress.network_id) {
            return Ok(None);
        }
        let netns = PathBuf::from("/proc/self/ns/net");
        let leg = Attachment {
            network_id: ingress.network_id.clone(),
            task_netns: netns.clone(),
            ifname: INGRESS_IFNAME.into(),
            host_veth: "shoal_ileg".into(),
            endpoint: Endpoint {
                network_id: ingress.network_id.clone(),
                task_id: leg_task_id(&self.cfg.node_id),
                node_id: self.cfg.node_id.clone(),
                ip,
                prefix,
                mac: mac_for(ip),
                vtep: self.cfg.vtep,
                service_id: String::new(),
                service_name: String::new(),
                task_name: String::new(),
                hostname: String::new(),
                vip: String::new(),
                aliases: vec![],
                ports: vec![],
            },
        };
        let nl = Netlink::in_netns(&netns)
            .await
            .map_err(AttachError::Namespace)?;
        self.plumb(&mut st, &leg, &nl)
            .await
            .map_err(|source| AttachError::Network {
                network: INGRESS_NETWORK.into(),
                source,
            })?;
        tracing::info!(%ip, "joined the ingress network");
        let endpoint = leg.endpoint.clone();
        st.attached.insert(INGRESS_LEG.into(), vec![leg]);
        Ok(Some(endpoint))
    }

    /// Leaves the ingress network (the node leaves); returns the leg's endpoint.
    pub(crate) async fn detach_ingress_leg(&self) -> Vec<Endpoint> {
        self.detach(INGRESS_LEG).await
    }

    /// Plumbs a started task into each of its networks and the gateway bridge.
    pub(crate) async fn attach(
        &self,
        task: &Task,
        task_netns: &Path,
        hostname: &str,
    ) -> std::result::Result<Plumbed, AttachError> {
        let mut st = self.state.lock().await;
        let task_nl = Netlink::in_netns(task_netns)
            .await
            .map_err(AttachError::Namespace)?;
        let mut names = InterfaceNames::new(
            task_nl
                .addresses_by_link()
                .await
                .map_err(AttachError::Namespace)?,
        );
        let node = plan::NodeSide {
            node_id: &self.cfg.node_id,
            vtep: self.cfg.vtep,
        };
        let legs = plan::task_legs(task, &st.networks, task_netns, hostname, &node, &mut names)?;
        for leg in &legs {
            self.plumb(&mut st, leg, &task_nl)
                .await
                .map_err(|source| AttachError::Network {
                    network: leg.network_id.clone(),
                    source,
                })?;
        }
        // A connected container that already reaches out another way keeps its route.
        let own_route = match task.attached_container() {
            Some(_) => task_nl
                .default_gateway()
                .await
                .map_err(AttachError::Namespace)?
                .is_some_and(|gw| gw != gateway::GATEWAY),
            None => false,
        };
        if !own_route {
            let gw = GatewayLeg {
                task_netns: task_netns.to_path_buf(),
                ifname: names.for_address(gateway::in_subnet),
                host_veth: format!("gw{}", &task.id[..task.id.len().min(9)]),
                ip: None,
            };
            let gw = self
                .plumb_gateway(&mut st, &task.id, gw, &task_nl)
                .await
                .map_err(AttachError::Gateway)?;
            st.gateway.insert(task.id.clone(), gw);
        }
        // Names and VIPs are served on the task's own networks, not on ingress.
        let served = legs
            .iter()
            .filter(|l| {
                !st.networks
                    .get(&l.network_id)
                    .and_then(|n| n.spec.as_ref())
                    .is_some_and(|s| s.ingress)
            })
            .filter_map(|l| {
                Some(TaskLeg {
                    network_id: l.network_id.clone(),
                    sandbox: sandbox::netns_path(&st.sandboxes.get(&l.network_id)?.netns),
                    host_veth: l.host_veth.clone(),
                })
            })
            .collect();
        let host_ports = match st.gateway.get(&task.id).and_then(|g| g.ip) {
            Some(addr) => host_ports(task, addr),
            None => vec![],
        };
        st.attached.insert(task.id.clone(), legs);
        Ok(Plumbed { served, host_ports })
    }

    async fn plumb_gateway(
        &self,
        st: &mut State,
        task_id: &str,
        mut leg: GatewayLeg,
        task_nl: &Netlink,
    ) -> Result<GatewayLeg> {
        let bridge = gateway::ensure_bridge(&self.node).await?;
        let used: HashSet<Ipv4Addr> = st
            .gateway
            .iter()
            .filter(|(id, _)| id.as_str() != task_id)
            .filter_map(|(_, l)| l.ip)
            .collect();
        leg.ip = Some(gateway::plumb(&self.node, bridge, &leg, &used, task_nl).await?);
        Ok(leg)
    }

    /// The endpoints of a task's legs (none until it is attached).
    pub(crate) async fn endpoints(&self, task_id: &str) -> Vec<Endpoint> {
        let st = self.state.lock().await;
        st.attached
            .get(task_id)
            .map(|legs| legs.iter().map(|l| l.endpoint.clone()).collect())
            .unwrap_or_default()
    }

    /// The namespace of an attached task.
    pub(crate) async fn task_netns(&self, task_id: &str) -> Option<PathBuf> {
        let st = self.state.lock().await;
        st.attached
            .get(task_id)
            .and_then(|legs| legs.first())
            .map(|l| l.task_netns.clone())
            .or_else(|| st.gateway.get(task_id).map(|g| g.task_netns.clone()))
    }

    /// The addresses a task is attached with, once it is.
    pub async fn addresses(&self, task_id: &str) -> Option<Vec<String>> {
        let st = self.state.lock().await;
        st.attached.get(task_id).map(|legs| {
            legs.iter()
                .map(|l| format!("{}/{}", l.endpoint.ip, l.endpoint.prefix))
                .collect()
        })
    }

    /// Removes a stopped task's veths and gateway leg; a network's sandbox goes with its
    /// last local task. Returns the endpoints the task had.
    pub(crate) async fn detach(&self, task_id: &str) -> Vec<Endpoint> {
        let mut st = self.state.lock().await;
        if let Some(gw) = st.gateway.remove(task_id) {
            gateway::remove(&self.node, &gw).await;
        }
        let Some(legs) = st.attached.remove(task_id) else {
            return vec![];
        };
        for leg in &legs {
            if let Some(sb) = st.sandboxes.get(&leg.network_id)
                && let Ok(Some(l)) = sb.nl.link(&leg.host_veth).await
            {
                let _ = sb.nl.del_link(l.header.index).await;
            }
        }
        self.prune(&mut st).await;
        legs.into_iter().map(|l| l.endpoint).collect()
    }

    async fn sandbox<'a>(&self, st: &'a mut State, network_id: &str) -> Result<&'a Sandbox> {
        let intact = match st.sandboxes.get(network_id) {
            Some(sb) => sb.intact().await,
            None => false,
        };
        if !intact {
            let net = st
                .networks
                .get(network_id)
                .ok_or_else(|| NetlinkError::Io(format!("network {network_id} is unknown")))?;
            let plan = self
                .plan(net)
                .ok_or_else(|| NetlinkError::Io(format!("network {network_id} has no subnet")))?;
            let name = self.sandbox_name(plan.vni);
            let sb = Sandbox::ensure(&plan, &name, &self.node, self.cfg.vtep).await?;
            st.sandboxes.insert(network_id.to_string(), sb);
        }
        Ok(&st.sandboxes[network_id])
    }

    /// Makes one leg exist: the veth pair, the task's end named ethN with its address and
    /// MAC, the sandbox's end on the bridge. What already exists is kept.
    async fn plumb(&self, st: &mut State, leg: &Attachment, task_nl: &Netlink) -> Result<()> {
        let sb = self.sandbox(st, &leg.network_id).await?;
        let mtu = sb.plan.mtu;
        let ends = (
            task_nl.link(&leg.ifname).await?,
            sb.nl.link(&leg.host_veth).await?,
        );
        // Both ends there: keep them (and the task's connections), restoring what drifted.
        let inside = if let (Some(l), Some(_)) = ends {
            l.header.index
        } else {
            let index = sb
                .nl
                .veth_into(&leg.host_veth, task_nl, &leg.task_netns, &leg.ifname, mtu)
                .await?;
            if let Ok(lo) = task_nl.index("lo").await {
                task_nl.up(lo, None, None, None).await?;
            }
            index
        };
        task_nl
            .up(inside, Some(mtu), Some(leg.endpoint.mac), None)
            .await?;
        task_nl
            .ensure_addr(inside, leg.endpoint.ip, leg.endpoint.prefix)
            .await?;
        let host = sb.nl.index(&leg.host_veth).await?;
        sb.nl.up(host, Some(mtu), None, Some(sb.bridge)).await?;
        sb.nl.port_learning_off(host).await?;
        sb.nl.bridge_fdb_replace(host, leg.endpoint.mac).await?;
        Ok(())
    }

    /// Removes sandboxes no local task uses or is about to use, and namespaces of ours
    /// left over from before a restart.
    async fn prune(&self, st: &mut State) {
        let Some(assigned) = st.assigned.clone() else {
            return;
        };
        let in_use: HashSet<String> = st
            .attached
            .values()
            .flatten()
            .map(|l| l.network_id.clone())
            .chain(assigned)
            .collect();
        let unused: Vec<String> = st
            .sandboxes
            .keys()
            .filter(|id| !in_use.contains(*id))
            .cloned()
            .collect();
        for id in unused {
            if let Some(sb) = st.sandboxes.remove(&id) {
                tracing::info!(network = %sb.plan.name, "removing the network's sandbox: no local task uses it");
                Sandbox::remove(&sb.netns);
            }
        }
        let wanted: HashSet<String> = in_use
            .iter()
            .filter_map(|id| st.networks.get(id))
            .map(|n| self.sandbox_name(n.vni))
            .collect();
        let prefix = format!("{}-ov", self.cfg.netns_prefix);
        for ns in list_netns() {
            let ours = ns
                .strip_prefix(&prefix)
                .is_some_and(|vni| vni.parse::<u32>().is_ok());
            if ours && !wanted.contains(&ns) {
                tracing::info!("removing {ns}: left over, no local task uses it");
                Sandbox::remove(&ns);
            }
        }
    }
}

fn list_netns() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The MTU of the interface holding `addr` in the node's namespace.
async fn uplink_mtu(node: &Netlink, addr: Ipv4Addr) -> Option<u32> {
    for l in node.links().await.ok()? {
        if node
            .ipv4_addrs(l.header.index)
            .await
            .ok()?
            .iter()
            .any(|(ip, _)| *ip == addr)
        {
            tracing::debug!(link = ?link_name(&l), "data-path interface");
            return crate::netlink::link_mtu(&l);
        }
    }
    None
}

//! The reconciler: compares what the overlay should be (local attachments, remote
//! endpoints from gossip) with what the kernel has, and repairs the difference. It runs
//! every few seconds and at once when gossip changes; every step is idempotent. What to
//! change is decided by diff.rs from what was read; this file reads and applies.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::Instant;

use super::diff;
use super::gateway::{self, GatewayLeg};
use super::sandbox::Sandbox;
use super::{Attachment, Overlay, Result, State};
use crate::gossip::Endpoint;
use crate::netlink::{Mac, Netlink, errno, link_controller, mac_string};

impl Overlay {
    /// One pass of the reconciler; returns the endpoints it programmed, which the load
    /// balancer then uses (never a backend whose FDB and neighbour entries are not in),
    /// and whether gossip had settled before they were read (they are complete).
    pub async fn reconcile(&self) -> (std::sync::Arc<Vec<Endpoint>>, bool) {
        let mut st = self.state.lock().await;
        let legs: Vec<Attachment> = st.attached.values().flatten().cloned().collect();
        for leg in &legs {
            // A task whose namespace is gone is being stopped: nothing to repair.
            let Ok(task_nl) = Netlink::in_netns(&leg.task_netns).await else {
                continue;
            };
            let healthy = match st.sandboxes.get(&leg.network_id) {
                Some(sb) => {
                    sb.intact().await
                        && veth_on_bridge(sb, &leg.host_veth).await
                        && has_address(&task_nl, &leg.ifname, leg.endpoint.ip).await
                }
                None => false,
            };
            if !healthy {
                tracing::warn!(task = %leg.endpoint.task_id, "repairing the task's network attachment");
                if let Err(e) = self.plumb(&mut st, leg, &task_nl).await {
                    tracing::warn!(task = %leg.endpoint.task_id, "repairing: {e}");
                }
            }
        }
        let gws: Vec<(String, GatewayLeg)> = st
            .gateway
            .iter()
            .map(|(id, l)| (id.clone(), l.clone()))
            .collect();
        let bridge = self.node.index(gateway::BRIDGE).await.ok();
        for (task_id, leg) in gws {
            let intact = match bridge {
                Some(b) => gateway::intact(&self.node, b, &leg).await,
                None => false,
            };
            if intact {
                continue;
            }
            let Ok(task_nl) = Netlink::in_netns(&leg.task_netns).await else {
                continue;
            };
            tracing::warn!(task = %task_id, "repairing the task's gateway interface");
            match self.plumb_gateway(&mut st, &task_id, leg, &task_nl).await {
                Ok(leg) => {
                    st.gateway.insert(task_id, leg);
                }
                Err(e) => tracing::warn!(task = %task_id, "repairing: {e}"),
            }
        }
        // Entries are removed only once gossip has had time to learn them all.
        let prune = self.gossip.settled();
        let endpoints = self.gossip.endpoints_shared();
        let alive = self.gossip.alive_addrs();
        let State {
            sandboxes,
            fading,
            attached,
            ..
        } = &mut *st;
        for (id, sb) in sandboxes.iter() {
            let remote: Vec<&Endpoint> = endpoints
                .iter()
                .filter(|e| &e.network_id == id && e.node_id != self.cfg.node_id)
                .collect();
            let fading = prune.then(|| fading.entry(id.clone()).or_default());
            let kept = match program_remote(sb, &remote, fading, &alive).await {
                Ok(kept) => kept,
                Err(e) => {
                    tracing::warn!(network = %sb.plan.name, "programming remote endpoints: {e}");
                    continue;
                }
            };
            let local: Vec<&Attachment> = attached
                .values()
                .flatten()
                .filter(|l| &l.network_id == id)
                .collect();
            if let Err(e) = program_bridge(sb, &local, &kept).await {
                tracing::warn!(network = %sb.plan.name, "programming the bridge: {e}");
            }
        }
        if let Some(leg) = st.attached.get(super::INGRESS_LEG).and_then(|l| l.first()) {
            let peers: Vec<&Endpoint> = endpoints
                .iter()
                .filter(|e| e.network_id == leg.network_id && e.ip != leg.endpoint.ip)
                .collect();
            if let Err(e) = self.program_leg_neighbours(&peers, prune).await {
                tracing::warn!("programming the ingress leg's neighbours: {e}");
            }
        }
        self.prune(&mut st).await;
        (endpoints, prune)
    }

    /// Permanent neighbours on the node's ingress leg for every endpoint of the ingress
    /// network: a published port's first packet to a new task never waits on ARP.
    async fn program_leg_neighbours(&self, peers: &[&Endpoint], prune: bool) -> Result<()> {
        let leg = self.node.index(super::INGRESS_IFNAME).await?;
        let present = self.node.neighbours(leg).await?;
        let (write, remove) = diff::leg_neighbours(peers, &present, prune);
        for (ip, mac) in write {
            self.node.neighbour_replace(leg, ip, mac).await?;
        }
        for ip in remove {
            self.node.neighbour_del(leg, ip).await?;
        }
        Ok(())
    }
}

/// Whether the task's interface still carries its address.
async fn has_address(nl: &Netlink, ifname: &str, ip: Ipv4Addr) -> bool {
    match nl.link(ifname).await {
        Ok(Some(l)) => nl
            .ipv4_addrs(l.header.index)
            .await
            .is_ok_and(|a| a.iter().any(|(a, _)| *a == ip)),
        _ => false,
    }
}

async fn veth_on_bridge(sb: &Sandbox, name: &str) -> bool {
    matches!(sb.nl.link(name).await, Ok(Some(l)) if link_controller(&l) == Some(sb.bridge))
}

/// Makes the bridge forward each local task's MAC to its veth and each remote MAC the
/// vxlan device still knows (`remote`) to vxlan0, and nothing else (diff::bridge). A
/// MAC that is local now wins over gossip still naming it on its old node.
async fn program_bridge(sb: &Sandbox, local: &[&Attachment], remote: &HashSet<Mac>) -> Result<()> {
    let mut wanted: HashMap<Mac, u32> = remote.iter().map(|mac| (*mac, sb.vxlan)).collect();
    for leg in local {
        if let Ok(port) = sb.nl.index(&leg.host_veth).await {
            wanted.insert(leg.endpoint.mac, port);
        }
    }
    let present = sb.nl.bridge_fdb().await?;
    let changes = diff::bridge(&wanted, &present);
    for (port, mac) in changes.write {
        sb.nl.bridge_fdb_replace(port, mac).await?;
    }
    for (port, mac) in changes.remove {
        tracing::debug!(mac = %mac_string(&mac), port, "removing a bridge entry shoal did not program");
        match sb.nl.bridge_fdb_del(port, mac).await {
            // Moved to the right port by a write above.
            Err(err) if errno(&err) == Some(libc::ENOENT) => {}
            r => r?,
        }
    }
    Ok(())
}

/// Makes the vxlan device's FDB and neighbour table say what gossip says, fading what it
/// no longer lists (diff::remote). Returns the MACs left in the FDB.
async fn program_remote(
    sb: &Sandbox,
    remote: &[&Endpoint],
    fading: Option<&mut HashMap<Mac, Instant>>,
    alive: &HashSet<Ipv4Addr>,
) -> Result<HashSet<Mac>> {
    let fdb = sb.nl.fdb(sb.vxlan).await?;
    let neighbours = sb.nl.neighbours(sb.vxlan).await?;
    let changes = diff::remote(remote, &fdb, &neighbours, fading, alive, Instant::now());
    for (mac, vtep) in changes.fdb_add {
        tracing::debug!(%vtep, "adding an fdb entry");
        sb.nl.fdb_replace(sb.vxlan, mac, vtep).await?;
    }
    for (ip, mac) in changes.neighbour_add {
        sb.nl.neighbour_replace(sb.vxlan, ip, mac).await?;
    }
    for (mac, vtep) in changes.fdb_remove {
        tracing::debug!(%vtep, "removing a stale fdb entry");
        sb.nl.fdb_del(sb.vxlan, mac, vtep).await?;
    }
    for ip in changes.neighbour_remove {
        sb.nl.neighbour_del(sb.vxlan, ip).await?;
    }
    Ok(changes.kept)
}

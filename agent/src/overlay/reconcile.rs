//! The reconciler: compares what the overlay should be (local attachments, remote
//! endpoints from gossip) with what the kernel has, and repairs the difference. It runs
//! every few seconds and at once when gossip changes; every step is idempotent.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use super::gateway::{self, GatewayLeg};
use super::sandbox::Sandbox;
use super::{Attachment, Overlay, RECONCILE_EVERY, Result};
use crate::gossip::Endpoint;
use crate::netlink::{Netlink, link_controller};

impl Overlay {
    /// One pass of the reconciler.
    pub async fn reconcile(&self) {
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
        let endpoints = self.gossip.endpoints();
        for (id, sb) in &st.sandboxes {
            let remote: Vec<&Endpoint> = endpoints
                .iter()
                .filter(|e| &e.network_id == id && e.node_id != self.cfg.node_id)
                .collect();
            if let Err(e) = program_remote(sb, &remote).await {
                tracing::warn!(network = %sb.plan.name, "programming remote endpoints: {e}");
            }
        }
        self.prune(&mut st).await;
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

/// Makes the vxlan device's FDB and neighbour table say exactly what gossip says.
async fn program_remote(sb: &Sandbox, remote: &[&Endpoint]) -> Result<()> {
    let fdb = sb.nl.fdb(sb.vxlan).await?;
    let neighbours = sb.nl.neighbours(sb.vxlan).await?;
    for e in remote {
        if !fdb.contains(&(e.mac, e.vtep)) {
            tracing::debug!(ip = %e.ip, vtep = %e.vtep, "adding fdb and neighbour entries");
            sb.nl.fdb_replace(sb.vxlan, e.mac, e.vtep).await?;
        }
        if !neighbours.contains(&(e.ip, e.mac)) {
            sb.nl.neighbour_replace(sb.vxlan, e.ip, e.mac).await?;
        }
    }
    let wanted_fdb: HashSet<_> = remote.iter().map(|e| (e.mac, e.vtep)).collect();
    let wanted_neigh: HashSet<_> = remote.iter().map(|e| (e.ip, e.mac)).collect();
    for (mac, vtep) in fdb.into_iter().filter(|f| !wanted_fdb.contains(f)) {
        tracing::debug!(vtep = %vtep, "removing a stale fdb entry");
        sb.nl.fdb_del(sb.vxlan, mac, vtep).await?;
    }
    for (ip, _) in neighbours.into_iter().filter(|n| !wanted_neigh.contains(n)) {
        sb.nl.neighbour_del(sb.vxlan, ip).await?;
    }
    Ok(())
}

pub(super) async fn reconcile_loop(overlay: std::sync::Weak<Overlay>) {
    let Some(mut changes) = overlay.upgrade().map(|o| o.gossip.subscribe()) else {
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RECONCILE_EVERY) => {}
            r = changes.changed() => if r.is_err() { return },
        }
        let Some(o) = overlay.upgrade() else { return };
        o.reconcile().await;
    }
}

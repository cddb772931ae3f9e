//! The coordinator of a node's data plane for tasks. The overlay driver (crate::overlay)
//! makes kernel legs; this module decides who hears about them: gossip (the node's
//! endpoints and the scopes it gossips in), the task's DNS resolver, and the balancer
//! (VIP legs, host ports, the ingress leg, and the backends programmed after each
//! overlay reconcile). The executor drives it; serving.rs publishes and withdraws a
//! task's endpoints once it listens.

mod serving;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use shoal_proto::{AssignmentSet, GossipPeer, Task, TaskState};

use crate::dns::Dns;
use crate::gossip::Gossip;
use crate::lb::{Balancer, Engine, Leg};
use crate::netlink::NetlinkError;
use crate::overlay::{AttachError, INGRESS_IFNAME, Overlay, OverlayConfig, leg_task_id};

/// How often the overlay is reconciled (and the balancer synced) without a gossip change.
const RECONCILE_EVERY: Duration = Duration::from_secs(3);

pub struct DataPlaneConfig {
    pub overlay: OverlayConfig,
    /// Where tasks' DNS queries for non-cluster names go.
    pub dns_upstreams: Vec<SocketAddr>,
    /// Seconds clients may cache a cluster name's answer.
    pub dns_ttl: u32,
}

pub struct DataPlane {
    overlay: Arc<Overlay>,
    gossip: Gossip,
    dns: Arc<Dns>,
    lb: Arc<Balancer>,
}

impl DataPlane {
    pub async fn start(
        cfg: DataPlaneConfig,
        gossip: Gossip,
        lb_engine: Arc<dyn Engine>,
    ) -> Result<Arc<DataPlane>, NetlinkError> {
        let plane = Arc::new(DataPlane {
            overlay: Overlay::start(cfg.overlay, gossip.clone()).await?,
            dns: Dns::new(gossip.clone(), cfg.dns_upstreams, cfg.dns_ttl),
            lb: Balancer::start(lb_engine),
            gossip,
        });
        tokio::spawn(reconcile_loop(Arc::downgrade(&plane)));
        Ok(plane)
    }

    /// What the dispatcher assigns this node: the networks its tasks use, and the nodes
    /// that have each of them (where gossip for it goes).
    pub async fn set_assignments(&self, set: &AssignmentSet) {
        self.gossip.set_scopes(scopes(set));
        self.gossip.set_listed(listed(set));
        self.overlay
            .set_networks(&set.networks, assigned_networks(set))
            .await;
        let Some(ingress) = &set.ingress else { return };
        match self.overlay.attach_ingress_leg(ingress).await {
            Ok(Some(endpoint)) => {
                let leg = Leg {
                    network_id: ingress.network_id.clone(),
                    ifname: INGRESS_IFNAME.into(),
                    addr: endpoint.ip,
                };
                // Published like a task's endpoint, so replies find their way back.
                self.gossip.publish(endpoint);
                self.lb.set_ingress(leg).await;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("joining the ingress network: {e}"),
        }
    }

    /// Plumbs a started task into each of its networks, serves its DNS, and gives the
    /// balancer its legs (see `set_serving` for when its endpoints are published).
    pub async fn attach(
        &self,
        task: &Task,
        task_netns: &Path,
        hostname: &str,
    ) -> Result<(), AttachError> {
        let plumbed = self.overlay.attach(task, task_netns, hostname).await?;
        let networks: HashSet<String> = plumbed
            .served
            .iter()
            .map(|l| l.network_id.clone())
            .collect();
        if !networks.is_empty() {
            let dns = crate::runtime::container_spec(task)
                .dns_config
                .unwrap_or_default();
            self.dns
                .serve(&task.id, task_netns, networks, &dns.nameservers)
                .await
                .map_err(AttachError::Dns)?;
        }
        self.lb
            .add_task(&task.id, task_netns, plumbed.served, plumbed.host_ports)
            .await;
        Ok(())
    }

    /// Withdraws a stopped task's endpoints, stops its DNS and balancer entries, and
    /// removes its legs.
    pub async fn detach(&self, task_id: &str) {
        self.dns.stop(task_id).await;
        self.lb.remove_task(task_id).await;
        self.withdraw(self.overlay.detach(task_id).await);
    }

    fn withdraw(&self, endpoints: Vec<crate::gossip::Endpoint>) {
        for endpoint in endpoints {
            self.gossip.withdraw(&endpoint.key());
        }
    }

    /// Stops serving published ports and leaves the ingress network (the node leaves).
    pub async fn leave(&self) {
        self.lb.clear().await;
        self.withdraw(self.overlay.detach_ingress_leg().await);
    }

    /// The addresses a task is attached with, once it is.
    pub async fn addresses(&self, task_id: &str) -> Option<Vec<String>> {
        self.overlay.addresses(task_id).await
    }

    /// The node's load balancer (for `shoal debug lb`).
    pub fn load_balancer(&self) -> &Balancer {
        &self.lb
    }
}

/// Repairs the overlay every few seconds and at once when gossip changes, then programs
/// the balancer with the endpoints the overlay holds entries for (never a backend whose
/// FDB and neighbour entries are not in).
async fn reconcile_loop(plane: Weak<DataPlane>) {
    let Some(mut changes) = plane.upgrade().map(|p| p.gossip.subscribe()) else {
        return;
    };
    loop {
        tokio::select! {
            () = tokio::time::sleep(RECONCILE_EVERY) => {}
            r = changes.changed() => if r.is_err() { return },
        }
        let Some(p) = plane.upgrade() else { return };
        let (programmed, complete) = p.overlay.reconcile().await;
        p.lb.sync(programmed, complete).await;
    }
}

/// Per network, the nodes gossip about it goes to.
fn scopes(set: &AssignmentSet) -> HashMap<String, Vec<GossipPeer>> {
    set.network_peers
        .iter()
        .map(|p| (p.network_id.clone(), p.nodes.clone()))
        .collect()
}

/// Per network, the entries that may exist: its tasks, and one ingress leg per node.
fn listed(set: &AssignmentSet) -> HashMap<String, HashSet<String>> {
    set.network_peers
        .iter()
        .map(|p| {
            let legs = p.nodes.iter().map(|n| leg_task_id(&n.node_id));
            (
                p.network_id.clone(),
                p.tasks.iter().cloned().chain(legs).collect(),
            )
        })
        .collect()
}

/// The networks this node's tasks that should run use, and ingress when it has a leg.
fn assigned_networks(set: &AssignmentSet) -> HashSet<String> {
    set.tasks
        .iter()
        .filter(|t| t.desired_state() == TaskState::Running)
        .flat_map(|t| t.networks.iter().map(|a| a.network_id.clone()))
        .chain(set.ingress.iter().map(|a| a.network_id.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{NetworkAttachment, NetworkPeers};

    fn peer(node: &str) -> GossipPeer {
        GossipPeer {
            node_id: node.into(),
            addr: format!("192.168.56.{}", node.len()),
        }
    }

    fn task(id: &str, desired: TaskState, networks: &[&str]) -> Task {
        Task {
            id: id.into(),
            desired_state: desired as i32,
            networks: networks
                .iter()
                .map(|n| NetworkAttachment {
                    network_id: (*n).into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn set() -> AssignmentSet {
        AssignmentSet {
            tasks: vec![
                task("t1", TaskState::Running, &["back"]),
                task("t2", TaskState::Shutdown, &["old"]),
            ],
            ingress: Some(NetworkAttachment {
                network_id: "ing".into(),
                ..Default::default()
            }),
            network_peers: vec![
                NetworkPeers {
                    network_id: "back".into(),
                    nodes: vec![peer("n1"), peer("n2")],
                    tasks: vec!["t1".into(), "t9".into()],
                },
                NetworkPeers {
                    network_id: "ing".into(),
                    nodes: vec![peer("n1")],
                    tasks: vec![],
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn gossip_goes_to_the_nodes_of_each_network() {
        let scopes = scopes(&set());
        assert_eq!(scopes["back"], [peer("n1"), peer("n2")]);
        assert_eq!(scopes["ing"], [peer("n1")]);
    }

    #[test]
    fn listed_entries_are_the_networks_tasks_and_each_nodes_ingress_leg() {
        let listed = listed(&set());
        let back: HashSet<String> = ["t1", "t9", &leg_task_id("n1"), &leg_task_id("n2")]
            .map(String::from)
            .into();
        assert_eq!(listed["back"], back);
        assert_eq!(listed["ing"], HashSet::from([leg_task_id("n1")]));
    }

    #[test]
    fn only_networks_of_tasks_that_should_run_are_kept_with_ingress() {
        let assigned = assigned_networks(&set());
        assert_eq!(assigned, HashSet::from(["back".into(), "ing".into()]));
        let mut without_ingress = set();
        without_ingress.ingress = None;
        assert_eq!(
            assigned_networks(&without_ingress),
            HashSet::from(["back".into()])
        );
    }
}

//! A task's place in the cluster once its legs are plumbed: publishing or withdrawing
//! its endpoints (gossip, and so DNS and every balancer), its host ports, and the probe
//! that waits until it listens before any of that.

use std::collections::HashSet;
use std::time::Duration;

use shoal_proto::Task;

use super::DataPlane;

impl DataPlane {
    /// Publishes a task's endpoints (it runs, and is healthy where it has a healthcheck)
    /// or withdraws them; DNS and the other nodes follow.
    /// Says whether the task has endpoints at all.
    pub async fn set_serving(&self, task_id: &str, serving: bool) -> bool {
        let endpoints = self.overlay.endpoints(task_id).await;
        let has_legs = !endpoints.is_empty();
        for endpoint in endpoints {
            if serving {
                self.gossip.publish(endpoint);
            } else {
                self.gossip.withdraw(&endpoint.key());
            }
        }
        let has_host_ports = self.lb.set_serving(task_id, serving).await;
        has_legs || has_host_ports
    }

    /// Waits (up to `limit`) until the task listens on the ports its service publishes,
    /// so no connection or datagram is sent to it before it can take one.
    pub async fn wait_listening(&self, task: &Task, limit: Duration) {
        let ports: HashSet<(bool, u16)> = task
            .endpoint
            .iter()
            .flat_map(|e| &e.ports)
            .filter_map(|p| Some((p.protocol == "udp", u16::try_from(p.target_port).ok()?)))
            .collect();
        let netns = self.overlay.task_netns(&task.id).await;
        let Some(netns) = netns.filter(|_| !ports.is_empty()) else {
            return;
        };
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            match crate::netlink::listening_ports(&netns).await {
                Ok(open)
                    if ports.iter().all(|&(udp, port)| {
                        if udp { &open.udp } else { &open.tcp }.contains(&port)
                    }) =>
                {
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(task = %task.id, "reading listening sockets: {e}");
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::warn!(task = %task.id, ?ports, "the task does not listen on its published ports; publishing it anyway");
    }

    /// Withdraws the endpoints of a task this node will not run (found after a restart
    /// when it is no longer wanted), published by an earlier life of the agent.
    pub fn retract(&self, task: &Task) {
        for a in &task.networks {
            self.gossip
                .retract(&(a.network_id.clone(), task.id.clone()));
        }
    }
}

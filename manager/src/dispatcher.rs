//! The dispatcher: agents' heartbeats. The leader records when each node was last heard
//! from; a node silent for MISSED_HEARTBEATS_DOWN periods is marked Down, and marked Ready
//! again by its next heartbeat.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shoal_proto::stored_object::Object;
use shoal_proto::{
    AssignmentSet, GossipPeer, HeartbeatRequest, HeartbeatResponse, MISSED_HEARTBEATS_DOWN,
    Network, NetworkPeers, Node, NodeState, NodeStatus, StoreActionKind, Task, TaskState,
    TaskStatusUpdate,
};

use crate::error::{ManagerError, Result};
use crate::proposer::Proposer;
use crate::state::store::{State, Store, action};

/// How often the stall watch ticks, and a tick this late means the process did not run
/// (SIGSTOP, swapped out, a starved runtime): nodes could not reach this manager then,
/// so their silence is not theirs to answer for.
pub const STALL_TICK: Duration = Duration::from_millis(250);
const STALLED_AFTER: Duration = Duration::from_secs(1);

pub struct Dispatcher {
    last_seen: Mutex<HashMap<String, Instant>>,
    stalls: Mutex<StallWatch>,
}

struct StallWatch {
    ticked: Instant,
    resumed: Option<Instant>,
}

impl Default for Dispatcher {
    fn default() -> Self {
        Dispatcher {
            last_seen: Mutex::default(),
            stalls: Mutex::new(StallWatch {
                ticked: Instant::now(),
                resumed: None,
            }),
        }
    }
}

impl Dispatcher {
    /// Called every STALL_TICK by a task of its own (leader.rs).
    pub fn tick(&self) {
        let mut w = self.stalls.lock().expect("poisoned");
        let now = Instant::now();
        if now.duration_since(w.ticked) > STALLED_AFTER {
            tracing::warn!(
                "this manager did not run for {:.1} s: every node gets a fresh heartbeat grace period",
                now.duration_since(w.ticked).as_secs_f64()
            );
            w.resumed = Some(now);
        }
        w.ticked = now;
    }

    /// Since when nodes' silence counts: the later of `leading_since` and the end of
    /// this manager's last stall. None while a stall is not yet over (the watch has not
    /// ticked for too long): judge no node then.
    fn silence_counts_from(&self, leading_since: Instant) -> Option<Instant> {
        let mut w = self.stalls.lock().expect("poisoned");
        let now = Instant::now();
        if now.duration_since(w.ticked) > STALLED_AFTER {
            w.resumed = Some(now);
            return None;
        }
        Some(w.resumed.map_or(leading_since, |r| r.max(leading_since)))
    }

    fn seen(&self, node_id: &str) {
        self.last_seen
            .lock()
            .expect("poisoned")
            .insert(node_id.to_string(), Instant::now());
    }

    fn last_seen(&self, node_id: &str) -> Option<Instant> {
        self.last_seen
            .lock()
            .expect("poisoned")
            .get(node_id)
            .copied()
    }

    /// Forgets everything: a manager that just became leader starts every node afresh.
    pub fn reset(&self) {
        self.last_seen.lock().expect("poisoned").clear();
    }
}

/// The cluster's heartbeat period.
pub fn heartbeat_period(store: &Store) -> Duration {
    let ms = store
        .view(|s| {
            s.cluster().and_then(|c| {
                c.spec
                    .as_ref()?
                    .dispatcher
                    .as_ref()
                    .map(|d| d.heartbeat_period_ms)
            })
        })
        .filter(|ms| *ms > 0)
        .unwrap_or(shoal_proto::DEFAULT_HEARTBEAT_MS);
    Duration::from_millis(ms)
}

/// Handles a heartbeat on the leader.
pub async fn heartbeat(
    m: &impl Proposer,
    d: &Dispatcher,
    req: HeartbeatRequest,
) -> Result<HeartbeatResponse> {
    if !m.is_leader() {
        return Err(ManagerError::NoLeader);
    }
    let node = m.store().view(|s| s.node(&req.node_id).cloned()).ok_or_else(|| {
        ManagerError::NotFound(format!(
            "node {} is not part of this swarm (it was removed); run `shoal swarm leave` on it, then join again",
            req.node_id
        ))
    })?;
    d.seen(&node.id);
    let ready = node.status.as_ref().map(NodeStatus::state) == Some(NodeState::Ready);
    let addr_changed = node.status.as_ref().map(|s| s.addr.as_str()) != Some(req.addr.as_str());
    let desc_changed = req.description.is_some() && node.description != req.description;
    if !ready || addr_changed || desc_changed {
        let id = node.id.clone();
        m.update_with_retry(|s| {
            let Some(mut n) = s.node(&id).cloned() else {
                return Ok(vec![]);
            };
            n.status = Some(NodeStatus {
                state: NodeState::Ready as i32,
                message: String::new(),
                addr: req.addr.clone(),
            });
            if req.description.is_some() {
                n.description = req.description.clone();
            }
            n.meta.get_or_insert_default().updated_at_unix_nanos = shoal_proto::now_nanos();
            Ok(vec![action(StoreActionKind::Update, Object::Node(n))])
        })
        .await?;
        tracing::info!(node = %id, "node is ready");
    }
    // Agents learn a new key a few heartbeats before anyone seals with it.
    let network_keys = m
        .store()
        .view(|s| s.cluster().map(|c| c.network_keys.clone()))
        .unwrap_or_default();
    let period = heartbeat_period(m.store());
    let root = m
        .store()
        .view(|s| s.cluster().and_then(|c| c.root_ca.clone()))
        .unwrap_or_default();
    // What the node reported in this very beat decides, not the store's older copy.
    let reported = Node {
        description: req.description.clone().or(node.description.clone()),
        ..Default::default()
    };
    Ok(HeartbeatResponse {
        period_ms: period.as_millis() as u64,
        manager_addrs: m.store().view(State::manager_addrs),
        desired_role: node
            .spec
            .as_ref()
            .map(|s| s.desired_role)
            .unwrap_or_default(),
        primary_key_id: crate::networks::keys::primary(
            &network_keys,
            shoal_proto::now_nanos(),
            period * MISSED_HEARTBEATS_DOWN,
        ),
        network_keys,
        gossip_peers: m.store().view(|s| gossip_peers(s, &node.id)),
        trust_root_pem: crate::ca::trust_bundle(&root),
        renew_certificate: !crate::root_rotation::has_current_certificate(
            &reported,
            &crate::root_rotation::signer_key(&root),
        ),
    })
}

/// The other nodes an agent can join gossip through: those with a known address.
fn gossip_peers(s: &State, node_id: &str) -> Vec<GossipPeer> {
    s.nodes()
        .filter(|n| n.id != node_id)
        .filter(|n| n.status.as_ref().map(NodeStatus::state) == Some(NodeState::Ready))
        .filter_map(gossip_peer)
        .collect()
}

/// A node as gossip reaches it: by the address it reported.
fn gossip_peer(n: &Node) -> Option<GossipPeer> {
    let addr = n.status.as_ref()?.addr.clone();
    (!addr.is_empty()).then(|| GossipPeer {
        node_id: n.id.clone(),
        addr,
    })
}

/// On the leader: marks Down every Ready node not heard from for too long. `leading_since`
/// gives nodes a full grace period after a leader change, and so does a stall of this
/// manager's own.
pub async fn expire_silent_nodes(
    m: &impl Proposer,
    d: &Dispatcher,
    leading_since: Instant,
) -> Result<()> {
    let limit = heartbeat_period(m.store()) * MISSED_HEARTBEATS_DOWN;
    let Some(leading_since) = d.silence_counts_from(leading_since) else {
        return Ok(());
    };
    let now = Instant::now();
    let silent: Vec<String> = m.store().view(|s| {
        s.nodes()
            .filter(|n| n.status.as_ref().map(NodeStatus::state) == Some(NodeState::Ready))
            .filter(|n| {
                let last = d
                    .last_seen(&n.id)
                    .unwrap_or(leading_since)
                    .max(leading_since);
                now.duration_since(last) > limit
            })
            .map(|n| n.id.clone())
            .collect()
    });
    for id in silent {
        m.update_with_retry(|s| {
            let Some(mut n) = s.node(&id).cloned() else {
                return Ok(vec![]);
            };
            let status = n.status.get_or_insert_default();
            status.state = NodeState::Down as i32;
            status.message = "heartbeat failure".into();
            Ok(vec![action(StoreActionKind::Update, Object::Node(n))])
        })
        .await?;
        tracing::warn!(node = %id, "node missed {MISSED_HEARTBEATS_DOWN} heartbeats: marked down");
    }
    Ok(())
}

/// The tasks a node must know about: every task placed on it, until the store forgets
/// it (as Swarm's dispatcher: a finished task's workload, and so its logs, stay on the
/// node until the task leaves the history); networks only for the tasks not done.
pub fn assignments(store: &Store, node_id: &str) -> AssignmentSet {
    let mut tasks: Vec<Task> = store.view(|s| {
        s.tasks()
            .filter(|t| t.node_id == node_id)
            .filter(|t| {
                let st = t
                    .status
                    .as_ref()
                    .map(shoal_proto::TaskStatus::state)
                    .unwrap_or_default();
                st >= TaskState::Assigned
            })
            .cloned()
            .collect()
    });
    tasks.sort_by(|a, b| a.id.cmp(&b.id));
    let ingress = store.view(|s| s.node(node_id).and_then(|n| n.ingress.clone()));
    let wanted: std::collections::BTreeSet<&str> = tasks
        .iter()
        .filter(|t| !t.is_done())
        .flat_map(|t| t.networks.iter().map(|a| a.network_id.as_str()))
        .chain(ingress.iter().map(|a| a.network_id.as_str()))
        .collect();
    let (networks, network_peers) = store.view(|s| {
        let networks: Vec<Network> = s
            .networks()
            .filter(|n| wanted.contains(n.id.as_str()))
            .cloned()
            .collect();
        let peers = networks.iter().map(|n| network_peers(s, &n.id)).collect();
        (networks, peers)
    });
    let (secrets, configs) = store.view(|s| task_files(s, &tasks));
    AssignmentSet {
        tasks,
        networks,
        network_peers,
        ingress,
        secrets,
        configs,
    }
}

/// The secrets and configs (with their data) of the tasks still meant to run: a node
/// receives only what its own tasks read, and nothing once they stop.
fn task_files(s: &State, tasks: &[Task]) -> (Vec<shoal_proto::Secret>, Vec<shoal_proto::Config>) {
    let specs = || {
        tasks
            .iter()
            .filter(|t| t.desired_state() <= TaskState::Running)
            .filter_map(|t| t.spec.as_ref()?.container.as_ref())
    };
    let secret_ids: std::collections::BTreeSet<&str> = specs()
        .flat_map(|c| c.secrets.iter().map(|r| r.secret_id.as_str()))
        .collect();
    let config_ids: std::collections::BTreeSet<&str> = specs()
        .flat_map(|c| c.configs.iter().map(|r| r.config_id.as_str()))
        .collect();
    let secrets = s
        .secrets()
        .filter(|x| secret_ids.contains(x.id.as_str()))
        .cloned()
        .collect();
    let configs = s
        .configs()
        .filter(|x| config_ids.contains(x.id.as_str()))
        .cloned()
        .collect();
    (secrets, configs)
}

/// The nodes with a task (or a connected container, or, on the ingress network, their
/// own leg) holding an address on a network, and the tasks there that may publish an
/// endpoint.
fn network_peers(s: &State, network_id: &str) -> NetworkPeers {
    let legs = s
        .nodes()
        .filter(|n| {
            n.ingress
                .as_ref()
                .is_some_and(|a| a.network_id == network_id)
        })
        .map(|n| n.id.as_str());
    let holders: Vec<&Task> = s
        .tasks()
        .filter(|t| !t.node_id.is_empty() && t.holds_addresses())
        .filter(|t| t.networks.iter().any(|a| a.network_id == network_id))
        .collect();
    let mut ids: Vec<&str> = holders
        .iter()
        .map(|t| t.node_id.as_str())
        .chain(legs)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut tasks: Vec<String> = holders
        .iter()
        .filter(|t| crate::tasks::may_publish(t))
        .map(|t| t.id.clone())
        .collect();
    tasks.sort();
    NetworkPeers {
        network_id: network_id.to_string(),
        nodes: ids
            .into_iter()
            .filter_map(|id| gossip_peer(s.node(id)?))
            .collect(),
        tasks,
    }
}

/// Records what an agent reports about its tasks. A node may only report on its own
/// tasks, and a task's state never moves backwards.
pub async fn update_task_status(
    m: &impl Proposer,
    node_id: &str,
    updates: Vec<TaskStatusUpdate>,
) -> Result<()> {
    // Only the latest report per task matters; one update per task keeps the batch valid.
    let mut latest: Vec<TaskStatusUpdate> = Vec::new();
    for u in updates {
        match latest.iter_mut().find(|l| l.task_id == u.task_id) {
            Some(l) => *l = u,
            None => latest.push(u),
        }
    }
    m.update_with_retry(|s| {
        let mut actions = Vec::new();
        for u in &latest {
            let Some(mut t) = s.task(&u.task_id).cloned() else {
                continue;
            };
            if t.node_id != node_id {
                return Err(ManagerError::FailedPrecondition(format!(
                    "task {} is not assigned to node {node_id}",
                    u.task_id
                )));
            }
            let Some(new) = u.status.clone() else {
                continue;
            };
            let old = t.status.clone().unwrap_or_default();
            // States only move forward; a RUNNING task may still change its health.
            if new.state() < old.state()
                || new == old
                || (new.state() == old.state() && new.health == old.health)
            {
                continue;
            }
            t.status = Some(new);
            actions.push(action(StoreActionKind::Update, Object::Task(t)));
        }
        Ok(actions)
    })
    .await
    .map(|_| ())
}

#[cfg(test)]
#[path = "dispatcher_tests.rs"]
mod tests;

//! The scheduler: places new tasks on nodes. Filters first (ready and active, constraints,
//! resource reservations, max replicas per node), then spreads: the node group (by spread
//! preference label) and then the node with the fewest tasks of the service wins. A task
//! that fits nowhere stays pending with a reason a user can act on.

use std::collections::HashMap;

use shoal_proto::stored_object::Object;
use shoal_proto::{Node, StoreAction, StoreActionKind, Task, TaskState};

use crate::orchestrator::node_available;
use crate::services::constraints;
use crate::state::store::{State, action};

#[derive(Default, Clone, Copy)]
struct Usage {
    cpus: i64,
    memory: i64,
    tasks: usize,
}

fn reservations(t: &Task) -> (i64, i64) {
    let r = t
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.reservations)
        .unwrap_or_default();
    (r.nano_cpus, r.memory_bytes)
}

fn occupies_node(t: &Task) -> bool {
    !t.node_id.is_empty()
        && t.desired_state() == TaskState::Running
        && !(t
            .status
            .as_ref()
            .map(shoal_proto::TaskStatus::state)
            .unwrap_or_default())
        .is_terminal()
}

/// The ports a task publishes in mode=host: (port, protocol), each usable once per node.
fn host_ports(t: &Task) -> Vec<(u32, String)> {
    t.endpoint
        .iter()
        .flat_map(|e| &e.ports)
        .filter(|p| p.publish_mode() == shoal_proto::PublishMode::Host)
        .map(|p| (p.published_port, p.protocol.clone()))
        .collect()
}

#[derive(Default)]
struct Refusals {
    unavailable: usize,
    constraints: usize,
    platform: usize,
    memory: usize,
    cpu: usize,
    max_replicas: usize,
    host_ports: usize,
}

impl Refusals {
    fn reason(&self) -> String {
        let plural = |n: usize| if n == 1 { "node" } else { "nodes" };
        let mut parts = Vec::new();
        if self.unavailable > 0 {
            parts.push(format!(
                "{} {} not available for new tasks",
                self.unavailable,
                plural(self.unavailable)
            ));
        }
        if self.constraints > 0 {
            parts.push(format!(
                "scheduling constraints not satisfied on {} {}",
                self.constraints,
                plural(self.constraints)
            ));
        }
        if self.platform > 0 {
            parts.push(format!(
                "unsupported platform on {} {}",
                self.platform,
                plural(self.platform)
            ));
        }
        if self.memory > 0 {
            parts.push(format!(
                "insufficient memory on {} {}",
                self.memory,
                plural(self.memory)
            ));
        }
        if self.cpu > 0 {
            parts.push(format!(
                "insufficient cpu on {} {}",
                self.cpu,
                plural(self.cpu)
            ));
        }
        if self.max_replicas > 0 {
            parts.push(format!(
                "max replicas per node limit exceeded on {} {}",
                self.max_replicas,
                plural(self.max_replicas)
            ));
        }
        if self.host_ports > 0 {
            parts.push(format!(
                "host-mode port already in use on {} {}",
                self.host_ports,
                plural(self.host_ports)
            ));
        }
        if parts.is_empty() {
            "no suitable node (no nodes in the swarm)".into()
        } else {
            format!("no suitable node ({})", parts.join("; "))
        }
    }
}

/// Plans node assignments for every unplaced task.
pub fn plan(state: &State, now: i64) -> Vec<StoreAction> {
    let mut usage: HashMap<String, Usage> = HashMap::new();
    let mut per_service: HashMap<(String, String), usize> = HashMap::new();
    let mut ports_taken: HashMap<String, Vec<(u32, String)>> = HashMap::new();
    for t in state.tasks().filter(|t| occupies_node(t)) {
        ports_taken
            .entry(t.node_id.clone())
            .or_default()
            .extend(host_ports(t));
        let u = usage.entry(t.node_id.clone()).or_default();
        let (cpus, memory) = reservations(t);
        u.cpus += cpus;
        u.memory += memory;
        u.tasks += 1;
        *per_service
            .entry((t.service_id.clone(), t.node_id.clone()))
            .or_default() += 1;
    }
    let mut nodes: Vec<&Node> = state.nodes().collect();
    nodes.sort_by(|a, b| a.hostname().cmp(b.hostname()));
    let mut pending: Vec<&Task> = state
        .tasks()
        .filter(|t| t.desired_state() == TaskState::Running)
        // Tasks attached to networks wait for their addresses (allocator.rs).
        .filter(|t| !t.networks.is_empty() || !crate::allocator::needs_addresses(state, t))
        .filter(|t| {
            matches!(
                t.status
                    .as_ref()
                    .map(shoal_proto::TaskStatus::state)
                    .unwrap_or_default(),
                TaskState::New | TaskState::Pending
            )
        })
        .collect();
    pending.sort_by_key(|t| (t.service_name.clone(), t.slot));

    let mut actions = Vec::new();
    for task in pending {
        let spec = task.spec.clone().unwrap_or_default();
        let placement = spec.placement.clone().unwrap_or_default();
        let rules = constraints::parse_all(&placement.constraints).unwrap_or_default();
        let (cpus, memory) = reservations(task);
        let mut refused = Refusals::default();
        let mut candidates: Vec<&Node> = Vec::new();
        for node in &nodes {
            if !task.node_id.is_empty() && task.node_id != node.id {
                continue;
            }
            if !node_available(node) {
                refused.unavailable += 1;
                continue;
            }
            if !rules.iter().all(|c| c.matches(node)) {
                refused.constraints += 1;
                continue;
            }
            if !constraints::platform_matches(&placement.platforms, node) {
                refused.platform += 1;
                continue;
            }
            let used = usage.get(&node.id).copied().unwrap_or_default();
            let res = node
                .description
                .as_ref()
                .and_then(|d| d.resources)
                .unwrap_or_default();
            if memory > 0 && used.memory + memory > res.memory_bytes {
                refused.memory += 1;
                continue;
            }
            if cpus > 0 && used.cpus + cpus > res.nano_cpus {
                refused.cpu += 1;
                continue;
            }
            let mine = per_service
                .get(&(task.service_id.clone(), node.id.clone()))
                .copied()
                .unwrap_or(0);
            if placement.max_replicas > 0 && mine as u64 >= placement.max_replicas {
                refused.max_replicas += 1;
                continue;
            }
            let taken = ports_taken.get(&node.id);
            if host_ports(task)
                .iter()
                .any(|p| taken.is_some_and(|t| t.contains(p)))
            {
                refused.host_ports += 1;
                continue;
            }
            candidates.push(node);
        }
        let label = |n: &Node, key: &str| -> String {
            n.spec
                .as_ref()
                .and_then(|s| s.annotations.as_ref())
                .and_then(|a| a.labels.get(key).cloned())
                .unwrap_or_default()
        };
        let spread_keys: Vec<String> = placement
            .preferences
            .iter()
            .filter_map(|p| {
                p.spread_descriptor
                    .strip_prefix("node.labels.")
                    .map(str::to_string)
            })
            .collect();
        let group_count = |n: &Node| -> Vec<usize> {
            spread_keys
                .iter()
                .map(|key| {
                    let value = label(n, key);
                    nodes
                        .iter()
                        .filter(|o| label(o, key) == value)
                        .map(|o| {
                            per_service
                                .get(&(task.service_id.clone(), o.id.clone()))
                                .copied()
                                .unwrap_or(0)
                        })
                        .sum()
                })
                .collect()
        };
        let best = candidates.into_iter().min_by_key(|n| {
            (
                group_count(n),
                per_service
                    .get(&(task.service_id.clone(), n.id.clone()))
                    .copied()
                    .unwrap_or(0),
                usage.get(&n.id).map_or(0, |u| u.tasks),
            )
        });
        let mut t = task.clone();
        let status = t.status.get_or_insert_default();
        if let Some(node) = best {
            t.node_id = node.id.clone();
            status.state = TaskState::Assigned as i32;
            status.message = "assigned".into();
            status.err.clear();
            status.timestamp_unix_nanos = now;
            let u = usage.entry(node.id.clone()).or_default();
            u.cpus += cpus;
            u.memory += memory;
            u.tasks += 1;
            *per_service
                .entry((task.service_id.clone(), node.id.clone()))
                .or_default() += 1;
            ports_taken
                .entry(node.id.clone())
                .or_default()
                .extend(host_ports(task));
        } else {
            actions.extend(crate::tasks::pending(
                task.clone(),
                "pending task scheduling",
                refused.reason(),
                now,
            ));
            continue;
        }
        actions.push(action(StoreActionKind::Update, Object::Task(t)));
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{
        NodeAvailability, NodeDescription, NodeSpec, NodeState, NodeStatus, Placement,
        ResourceRequirements, ResourceValues, Resources, TaskSpec, TaskStatus,
    };

    fn node(id: &str, memory: i64) -> Node {
        Node {
            id: id.into(),
            spec: Some(NodeSpec {
                availability: NodeAvailability::Active as i32,
                ..Default::default()
            }),
            description: Some(NodeDescription {
                hostname: id.into(),
                resources: Some(Resources {
                    nano_cpus: 2_000_000_000,
                    memory_bytes: memory,
                }),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: NodeState::Ready as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn task(id: &str, slot: u64, spec: TaskSpec) -> Task {
        Task {
            id: id.into(),
            service_id: "svc".into(),
            slot,
            spec: Some(spec),
            desired_state: TaskState::Running as i32,
            status: Some(TaskStatus::default()),
            ..Default::default()
        }
    }

    fn run(nodes: Vec<Node>, tasks: Vec<Task>) -> State {
        let mut s = State::default();
        let mut actions: Vec<StoreAction> = nodes
            .into_iter()
            .map(|n| action(StoreActionKind::Create, Object::Node(n)))
            .collect();
        actions.extend(
            tasks
                .into_iter()
                .map(|t| action(StoreActionKind::Create, Object::Task(t))),
        );
        s.apply(1, &crate::state::store::proposal(actions));
        let planned = plan(&s, 0);
        let (r, _) = s.apply(2, &crate::state::store::proposal(planned));
        assert!(r.error.is_empty());
        s
    }

    #[test]
    fn five_tasks_spread_two_two_one() {
        let tasks = (1..=5)
            .map(|i| task(&format!("t{i}"), i, TaskSpec::default()))
            .collect();
        let s = run(
            vec![node("a", 1 << 30), node("b", 1 << 30), node("c", 1 << 30)],
            tasks,
        );
        let mut counts: HashMap<String, usize> = HashMap::new();
        for t in s.tasks() {
            *counts.entry(t.node_id.clone()).or_default() += 1;
        }
        let mut v: Vec<usize> = counts.values().copied().collect();
        v.sort_unstable();
        assert_eq!(v, [1, 2, 2]);
    }

    #[test]
    fn unsatisfiable_reservation_stays_pending_with_reason() {
        let spec = TaskSpec {
            resources: Some(ResourceRequirements {
                reservations: Some(ResourceValues {
                    memory_bytes: 4 << 30,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = run(
            vec![node("a", 1 << 30), node("b", 1 << 30)],
            vec![task("t1", 1, spec)],
        );
        let t = s.task("t1").unwrap();
        assert_eq!(t.status.as_ref().unwrap().state(), TaskState::Pending);
        assert_eq!(
            t.status.as_ref().unwrap().err,
            "no suitable node (insufficient memory on 2 nodes)"
        );
    }

    /// Of three tasks on two nodes, one went to each node: the one left over.
    fn one_per_node_and_one_left(s: &State) -> &Task {
        let placed: Vec<&str> = s
            .tasks()
            .filter(|t| !t.node_id.is_empty())
            .map(|t| t.node_id.as_str())
            .collect();
        assert_eq!(placed.len(), 2);
        assert_ne!(placed[0], placed[1]);
        s.tasks().find(|t| t.node_id.is_empty()).unwrap()
    }

    #[test]
    fn max_replicas_per_node_leaves_the_rest_pending() {
        let spec = TaskSpec {
            placement: Some(Placement {
                max_replicas: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        let tasks = (1..=3)
            .map(|i| task(&format!("t{i}"), i, spec.clone()))
            .collect();
        let s = run(vec![node("a", 1 << 30), node("b", 1 << 30)], tasks);
        let pending = one_per_node_and_one_left(&s);
        assert!(
            pending
                .status
                .as_ref()
                .unwrap()
                .err
                .contains("max replicas per node"),
            "{pending:?}"
        );
    }

    #[test]
    fn a_host_mode_port_is_used_once_per_node() {
        let host_port = |t: &mut Task| {
            t.endpoint = Some(shoal_proto::ServiceEndpoint {
                ports: vec![shoal_proto::PortConfig {
                    protocol: "tcp".into(),
                    target_port: 80,
                    published_port: 8081,
                    publish_mode: shoal_proto::PublishMode::Host as i32,
                    ..Default::default()
                }],
                ..Default::default()
            });
        };
        let tasks = (1..=3)
            .map(|i| {
                let mut t = task(&format!("t{i}"), i, TaskSpec::default());
                host_port(&mut t);
                t
            })
            .collect();
        let s = run(vec![node("a", 1 << 30), node("b", 1 << 30)], tasks);
        let pending = one_per_node_and_one_left(&s);
        assert_eq!(
            pending.status.as_ref().unwrap().err,
            "no suitable node (host-mode port already in use on 2 nodes)"
        );
    }

    #[test]
    fn spread_preference_balances_label_groups_first() {
        let labelled = |id: &str, zone: &str| {
            let mut n = node(id, 1 << 30);
            n.spec.as_mut().unwrap().annotations = Some(shoal_proto::Annotations {
                labels: [("zone".to_string(), zone.to_string())].into(),
                ..Default::default()
            });
            n
        };
        let spec = TaskSpec {
            placement: Some(Placement {
                preferences: vec![shoal_proto::SpreadOver {
                    spread_descriptor: "node.labels.zone".into(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        // Zone a has two nodes, zone b one: four tasks go two per zone, not 1-1-2 by node.
        let tasks = (1..=4)
            .map(|i| task(&format!("t{i}"), i, spec.clone()))
            .collect();
        let s = run(
            vec![
                labelled("a1", "a"),
                labelled("a2", "a"),
                labelled("b1", "b"),
            ],
            tasks,
        );
        let in_b = s.tasks().filter(|t| t.node_id == "b1").count();
        assert_eq!(in_b, 2);
    }

    #[test]
    fn constraints_pick_the_matching_node() {
        let spec = TaskSpec {
            placement: Some(Placement {
                constraints: vec!["node.hostname==b".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = run(
            vec![node("a", 1 << 30), node("b", 1 << 30)],
            vec![task("t1", 1, spec.clone()), task("t2", 2, spec)],
        );
        assert!(s.tasks().all(|t| t.node_id == "b"));
    }
}

//! The allocator: gives each new task an address on every network it attaches to (its
//! service's networks, plus the ingress network when the service publishes ports in
//! ingress mode), and each node its address on the ingress network (the routing mesh's
//! leg), before the scheduler places tasks. Service VIPs come from the same subnets
//! (services/endpoint.rs). Addresses come back when their holder is gone or a task has
//! stopped for good. The store refuses an address already held, so allocation is safe
//! across leaders.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use shoal_proto::stored_object::Object;
use shoal_proto::{
    Network, NetworkAttachment, NodeState, StoreAction, StoreActionKind, Task, TaskState,
};

use crate::networks::ipam::Cidr;
use crate::state::invariants::{held, ip_of};
use crate::state::store::{State, action};

/// Addresses in use per network ID.
pub fn used(state: &State) -> HashMap<String, HashSet<Ipv4Addr>> {
    let mut used: HashMap<String, HashSet<Ipv4Addr>> = HashMap::new();
    for (_, network, addr) in held(state) {
        if let Some(ip) = ip_of(addr) {
            used.entry(network.to_string()).or_default().insert(ip);
        }
    }
    used
}

/// Takes a free address on `network` (recording it in `used`), as "ip/prefix".
pub fn take_address(
    network: &Network,
    used: &mut HashMap<String, HashSet<Ipv4Addr>>,
) -> Result<String, String> {
    let taken = used.entry(network.id.clone()).or_default();
    let config = network.ipam.first();
    let found = config.and_then(|config| {
        let subnet = Cidr::parse(&config.subnet).ok()?;
        let gateway: Option<Ipv4Addr> = config.gateway.parse().ok();
        (1..subnet.size() - 1)
            .map(|i| Ipv4Addr::from(subnet.base + i as u32))
            .find(|ip| Some(*ip) != gateway && !taken.contains(ip))
            .map(|ip| (ip, subnet.prefix))
    });
    match found {
        Some((ip, prefix)) => {
            taken.insert(ip);
            Ok(format!("{ip}/{prefix}"))
        }
        None => Err(format!(
            "no IP address left in network {} ({}): remove tasks from it or use a larger --subnet",
            network.name(),
            config.map_or("", |c| c.subnet.as_str())
        )),
    }
}

/// Gives `addr` back to the pool while planning.
fn give_back(used: &mut HashMap<String, HashSet<Ipv4Addr>>, a: &NetworkAttachment) {
    if let Some(set) = used.get_mut(&a.network_id) {
        for ip in a.addresses.iter().filter_map(|x| ip_of(x)) {
            set.remove(&ip);
        }
    }
}

/// The swarm's ingress network, if it has one.
pub fn ingress_network(state: &State) -> Option<&Network> {
    state
        .networks()
        .find(|n| n.spec.as_ref().is_some_and(|s| s.ingress))
}

/// Whether a task's service publishes ports through the routing mesh.
pub fn publishes_ingress(t: &Task) -> bool {
    t.endpoint.as_ref().is_some_and(|e| {
        e.ports
            .iter()
            .any(|p| p.publish_mode() == shoal_proto::PublishMode::Ingress)
    })
}

/// The networks a task attaches to: its spec's, then ingress when it publishes there.
fn wanted_networks(state: &State, t: &Task) -> Vec<String> {
    let mut ids: Vec<String> = t
        .spec
        .iter()
        .flat_map(|s| s.networks.iter().map(|n| n.target.clone()))
        .collect();
    if publishes_ingress(t)
        && let Some(ingress) = ingress_network(state)
    {
        ids.push(ingress.id.clone());
    }
    ids
}

/// Whether a task attaches to any network (and so waits for addresses).
pub fn needs_addresses(state: &State, t: &Task) -> bool {
    !wanted_networks(state, t).is_empty()
}

/// Plans addresses for new tasks and for nodes without an ingress address; a task that
/// cannot get one stays pending, saying why.
pub fn plan(state: &State, now: i64) -> Vec<StoreAction> {
    let mut used = used(state);
    let mut actions = Vec::new();
    let unallocated = state.tasks().filter(|t| {
        t.desired_state() == TaskState::Running
            && t.networks.is_empty()
            && matches!(
                t.status
                    .as_ref()
                    .map(shoal_proto::TaskStatus::state)
                    .unwrap_or_default(),
                TaskState::New | TaskState::Pending
            )
    });
    for task in unallocated {
        let wanted = wanted_networks(state, task);
        if wanted.is_empty() {
            continue;
        }
        let mut attachments = Vec::new();
        let mut failure = None;
        for network_id in &wanted {
            let Some(Object::Network(network)) =
                state.get(crate::state::store::Kind::Network, network_id)
            else {
                failure = Some(format!("network {network_id} no longer exists"));
                break;
            };
            match take_address(network, &mut used) {
                Ok(addr) => attachments.push(NetworkAttachment {
                    network_id: network.id.clone(),
                    addresses: vec![addr],
                }),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let mut t = task.clone();
        match failure {
            None => t.networks = attachments,
            Some(err) => {
                // Give back what this task took before failing, and do not repeat itself.
                for a in &attachments {
                    give_back(&mut used, a);
                }
                actions.extend(crate::tasks::pending(
                    t,
                    "pending network allocation",
                    err,
                    now,
                ));
                continue;
            }
        }
        actions.push(action(StoreActionKind::Update, Object::Task(t)));
    }
    if let Some(ingress) = ingress_network(state) {
        let legless = state.nodes().filter(|n| {
            n.ingress.is_none()
                && n.status.as_ref().map(shoal_proto::NodeStatus::state) == Some(NodeState::Ready)
        });
        for node in legless {
            match take_address(ingress, &mut used) {
                Ok(addr) => {
                    let mut n = node.clone();
                    n.ingress = Some(NetworkAttachment {
                        network_id: ingress.id.clone(),
                        addresses: vec![addr],
                    });
                    actions.push(action(StoreActionKind::Update, Object::Node(n)));
                }
                Err(e) => tracing::warn!(node = %node.id, "no ingress address: {e}"),
            }
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{IpamConfig, NetworkAttachmentConfig, TaskSpec, TaskStatus};

    fn network(subnet: &str) -> Network {
        Network {
            id: "net".into(),
            spec: Some(shoal_proto::NetworkSpec {
                annotations: Some(shoal_proto::Annotations {
                    name: "webnet".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            vni: 4097,
            ipam: vec![IpamConfig {
                subnet: subnet.into(),
                gateway: Cidr::parse(subnet).unwrap().first_host().to_string(),
            }],
            ..Default::default()
        }
    }

    fn task(id: &str) -> Task {
        Task {
            id: id.into(),
            spec: Some(TaskSpec {
                networks: vec![NetworkAttachmentConfig {
                    target: "net".into(),
                    aliases: vec![],
                }],
                ..Default::default()
            }),
            desired_state: TaskState::Running as i32,
            status: Some(TaskStatus::default()),
            ..Default::default()
        }
    }

    fn state(subnet: &str, tasks: usize) -> State {
        let mut s = State::default();
        let mut actions = vec![action(
            StoreActionKind::Create,
            Object::Network(network(subnet)),
        )];
        actions.extend((0..tasks).map(|i| {
            action(
                StoreActionKind::Create,
                Object::Task(task(&format!("t{i}"))),
            )
        }));
        s.apply(1, &crate::state::store::proposal(actions));
        s
    }

    #[test]
    fn tasks_get_distinct_addresses_and_the_rest_wait_with_a_reason() {
        // A /29 has 6 host addresses; the gateway takes one.
        let mut s = state("10.9.0.0/29", 7);
        let planned = plan(&s, 0);
        let (r, _) = s.apply(2, &crate::state::store::proposal(planned));
        assert!(r.error.is_empty(), "{}", r.error);
        let mut addrs: Vec<String> = s
            .tasks()
            .flat_map(|t| t.networks.iter().flat_map(|a| a.addresses.clone()))
            .collect();
        addrs.sort();
        assert_eq!(
            addrs,
            [
                "10.9.0.2/29",
                "10.9.0.3/29",
                "10.9.0.4/29",
                "10.9.0.5/29",
                "10.9.0.6/29"
            ]
        );
        let waiting: Vec<&Task> = s.tasks().filter(|t| t.networks.is_empty()).collect();
        assert_eq!(waiting.len(), 2);
        assert!(
            waiting[0]
                .status
                .as_ref()
                .unwrap()
                .err
                .contains("no IP address left in network webnet (10.9.0.0/29)")
        );
        assert!(
            plan(&s, 0).is_empty(),
            "pending tasks are not rewritten every round"
        );
    }

    #[test]
    fn stopped_tasks_give_their_address_back_and_clashes_are_refused() {
        let mut s = state("10.9.0.0/29", 1);
        let planned = plan(&s, 0);
        s.apply(2, &crate::state::store::proposal(planned));
        let mut first = s.task("t0").unwrap().clone();
        let mut second = task("t1");
        second.networks = first.networks.clone();
        let (r, _) = s.apply(
            3,
            &crate::state::store::proposal(vec![action(
                StoreActionKind::Create,
                Object::Task(second.clone()),
            )]),
        );
        assert!(r.error.contains("already held"), "{}", r.error);
        assert_eq!(r.refusal(), shoal_proto::Refusal::AddressHeld);

        first.desired_state = TaskState::Shutdown as i32;
        first.status.as_mut().unwrap().state = TaskState::Shutdown as i32;
        s.apply(
            4,
            &crate::state::store::proposal(vec![action(
                StoreActionKind::Update,
                Object::Task(first),
            )]),
        );
        let (r, _) = s.apply(
            5,
            &crate::state::store::proposal(vec![action(
                StoreActionKind::Create,
                Object::Task(second),
            )]),
        );
        assert!(r.error.is_empty(), "{}", r.error);
    }
}

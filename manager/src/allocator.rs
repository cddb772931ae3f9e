//! The allocator: gives each new task an address on every network its service attaches
//! it to, before the scheduler places it. Addresses come back when a task has stopped for
//! good. The store refuses an address already held, so allocation is safe across leaders.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use shoal_proto::stored_object::Object;
use shoal_proto::{Network, NetworkAttachment, StoreAction, StoreActionKind, Task, TaskState};

use crate::networks::ipam::Cidr;
use crate::networks::network_name;
use crate::orchestrator::is_terminal;
use crate::store::{State, action};

/// Whether a task still holds its addresses.
pub fn holds_addresses(t: &Task) -> bool {
    !(t.desired_state() >= TaskState::Shutdown
        && is_terminal(t.status.as_ref().map(|s| s.state()).unwrap_or_default()))
}

/// Addresses in use per network ID.
fn used(state: &State) -> HashMap<String, HashSet<Ipv4Addr>> {
    let mut used: HashMap<String, HashSet<Ipv4Addr>> = HashMap::new();
    for t in state.tasks().filter(|t| holds_addresses(t)) {
        for a in &t.networks {
            for addr in &a.addresses {
                if let Some(ip) = addr.split('/').next().and_then(|ip| ip.parse().ok()) {
                    used.entry(a.network_id.clone()).or_default().insert(ip);
                }
            }
        }
    }
    used
}

fn free_address(network: &Network, taken: &HashSet<Ipv4Addr>) -> Option<String> {
    let config = network.ipam.first()?;
    let subnet = Cidr::parse(&config.subnet).ok()?;
    let gateway: Option<Ipv4Addr> = config.gateway.parse().ok();
    (1..subnet.size() - 1)
        .map(|i| Ipv4Addr::from(subnet.base + i as u32))
        .find(|ip| Some(*ip) != gateway && !taken.contains(ip))
        .map(|ip| format!("{ip}/{}", subnet.prefix))
}

/// Plans addresses for new tasks; a task that cannot get one stays pending, saying why.
pub fn plan(state: &State, now: i64) -> Vec<StoreAction> {
    let mut used = used(state);
    let mut actions = Vec::new();
    let unallocated = state.tasks().filter(|t| {
        t.desired_state() == TaskState::Running
            && t.networks.is_empty()
            && t.spec.as_ref().is_some_and(|s| !s.networks.is_empty())
            && matches!(
                t.status.as_ref().map(|s| s.state()).unwrap_or_default(),
                TaskState::New | TaskState::Pending
            )
    });
    for task in unallocated {
        let mut attachments = Vec::new();
        let mut failure = None;
        for wanted in &task.spec.as_ref().expect("filtered").networks {
            let Some(Object::Network(network)) =
                state.get(crate::store::Kind::Network, &wanted.target)
            else {
                failure = Some(format!("network {} no longer exists", wanted.target));
                break;
            };
            let taken = used.entry(network.id.clone()).or_default();
            match free_address(network, taken) {
                Some(addr) => {
                    taken.insert(
                        addr.split('/')
                            .next()
                            .and_then(|ip| ip.parse().ok())
                            .expect("formatted above"),
                    );
                    attachments.push(NetworkAttachment {
                        network_id: network.id.clone(),
                        addresses: vec![addr],
                    });
                }
                None => {
                    failure = Some(format!(
                        "no IP address left in network {} ({}): remove tasks from it or use a larger --subnet",
                        network_name(network),
                        network
                            .ipam
                            .first()
                            .map(|c| c.subnet.as_str())
                            .unwrap_or("")
                    ));
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
                    if let (Some(set), Some(ip)) = (
                        used.get_mut(&a.network_id),
                        a.addresses[0].split('/').next(),
                    ) {
                        set.remove(&ip.parse().expect("formatted above"));
                    }
                }
                actions.extend(crate::orchestrator::pending(
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
    actions
}

/// An address `task` wants that another task already holds (a race between leaders).
pub fn clash(state: &State, task: &Task) -> Option<String> {
    if !holds_addresses(task) || task.networks.is_empty() {
        return None;
    }
    for other in state
        .tasks()
        .filter(|o| o.id != task.id && holds_addresses(o))
    {
        for a in &task.networks {
            for b in other
                .networks
                .iter()
                .filter(|b| b.network_id == a.network_id)
            {
                if let Some(addr) = a.addresses.iter().find(|x| b.addresses.contains(x)) {
                    return Some(format!(
                        "address {addr} is already held by task {}",
                        other.id
                    ));
                }
            }
        }
    }
    None
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
        s.apply(1, &crate::store::proposal(actions));
        s
    }

    #[test]
    fn tasks_get_distinct_addresses_and_the_rest_wait_with_a_reason() {
        // A /29 has 6 host addresses; the gateway takes one.
        let mut s = state("10.9.0.0/29", 7);
        let planned = plan(&s, 0);
        let (r, _) = s.apply(2, &crate::store::proposal(planned));
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
        s.apply(2, &crate::store::proposal(planned));
        let mut first = s.task("t0").unwrap().clone();
        let mut second = task("t1");
        second.networks = first.networks.clone();
        let (r, _) = s.apply(
            3,
            &crate::store::proposal(vec![action(
                StoreActionKind::Create,
                Object::Task(second.clone()),
            )]),
        );
        assert!(r.error.contains("already held"), "{}", r.error);

        first.desired_state = TaskState::Shutdown as i32;
        first.status.as_mut().unwrap().state = TaskState::Shutdown as i32;
        s.apply(
            4,
            &crate::store::proposal(vec![action(StoreActionKind::Update, Object::Task(first))]),
        );
        let (r, _) = s.apply(
            5,
            &crate::store::proposal(vec![action(StoreActionKind::Create, Object::Task(second))]),
        );
        assert!(r.error.is_empty(), "{}", r.error);
    }
}

//! What the store refuses to apply, as checks on data alone: an address held twice, a
//! published port in use, a network's subnet or VNI taken. The leader's allocators plan
//! around the same checks, but two leaders racing (or an old entry replayed) are caught
//! here, when the entry is applied, identically on every manager.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use shoal_proto::stored_object::Object;
use shoal_proto::{Node, PortConfig, PublishMode, Refusal, Service, StoreActionKind, Task};

use super::store::{Kind, State};

/// Objects staged by earlier actions of the same proposal (None: removed).
pub type Staged = BTreeMap<(Kind, String), Option<Object>>;
use crate::networks::ipam::Cidr;

/// Whether `action` on `obj` may be applied to `state` (plus what the same proposal
/// staged before it): no second service of a name, no address or published port held
/// twice, no network's subnet or VNI allocated twice.
pub fn check(
    state: &State,
    action: StoreActionKind,
    obj: &Object,
    staged: &Staged,
) -> Result<(), (Refusal, String)> {
    if action == StoreActionKind::Remove {
        return Ok(());
    }
    let held = |why: Option<String>| why.map(|w| (Refusal::AddressHeld, w));
    let refused = match obj {
        Object::Service(svc) if action == StoreActionKind::Create => {
            name_taken(state, obj, staged).or_else(|| service_clash(state, svc))
        }
        Object::Secret(_) | Object::Config(_) if action == StoreActionKind::Create => {
            name_taken(state, obj, staged)
        }
        Object::Service(svc) => service_clash(state, svc),
        Object::Task(task) => held(task_clash(state, task)),
        Object::Node(node) => held(node_clash(state, node)),
        Object::Network(net) if action == StoreActionKind::Create => {
            network_clash(state, net, staged).map(|w| (Refusal::NetworkClash, w))
        }
        _ => None,
    };
    refused.map_or(Ok(()), Err)
}

/// The kinds whose names are unique, and the word a user reads for each.
fn unique_name(obj: &Object) -> Option<(&'static str, &str)> {
    match obj {
        Object::Service(x) => Some(("service", x.name())),
        Object::Secret(x) => Some(("secret", x.name())),
        Object::Config(x) => Some(("config", x.name())),
        _ => None,
    }
}

/// A new object whose name another of its kind (stored or staged) already has.
fn name_taken(state: &State, obj: &Object, staged: &Staged) -> Option<(Refusal, String)> {
    use super::store::ObjectExt;
    let (word, name) = unique_name(obj)?;
    let kind = obj.kind();
    let staged_same = staged
        .values()
        .flatten()
        .filter(|o| o.kind() == kind && o.id() != obj.id());
    let taken = state
        .list(kind)
        .chain(staged_same)
        .any(|other| unique_name(other).is_some_and(|(_, n)| n == name));
    taken.then(|| {
        (
            Refusal::NameTaken,
            format!("name conflicts with an existing object: {word} {name} already exists"),
        )
    })
}

/// Who holds an address: a task, a service (its VIP) or a node (its ingress leg).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder<'a> {
    Task(&'a str),
    Service(&'a str),
    Node(&'a str),
}

impl std::fmt::Display for Holder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::Task(id) => write!(f, "task {id}"),
            Holder::Service(id) => write!(f, "service {id} (its VIP)"),
            Holder::Node(id) => write!(f, "node {id} (its ingress address)"),
        }
    }
}

/// Every address held: (holder, network ID, "ip/prefix").
pub fn held(state: &State) -> Vec<(Holder<'_>, &str, &str)> {
    let mut all = Vec::new();
    for t in state.tasks().filter(|t| t.holds_addresses()) {
        for a in &t.networks {
            for addr in &a.addresses {
                all.push((Holder::Task(&t.id), a.network_id.as_str(), addr.as_str()));
            }
        }
    }
    for svc in state.services() {
        for vip in svc.endpoint.iter().flat_map(|e| &e.virtual_ips) {
            all.push((
                Holder::Service(&svc.id),
                vip.network_id.as_str(),
                vip.addr.as_str(),
            ));
        }
    }
    for n in state.nodes() {
        if let Some(a) = &n.ingress {
            for addr in &a.addresses {
                all.push((Holder::Node(&n.id), a.network_id.as_str(), addr.as_str()));
            }
        }
    }
    all
}

pub fn ip_of(addr: &str) -> Option<Ipv4Addr> {
    addr.split('/').next()?.parse().ok()
}

/// An address `holder` wants (`attachments`) that another already holds (a race between
/// leaders).
pub fn address_clash<'a>(
    state: &State,
    holder: Holder<'_>,
    mut attachments: impl Iterator<Item = (&'a str, &'a str)>,
) -> Option<String> {
    let held = held(state);
    attachments.find_map(|(network, addr)| {
        let ip = ip_of(addr)?;
        held.iter()
            .find(|(h, n, a)| *h != holder && *n == network && ip_of(a) == Some(ip))
            .map(|(h, _, _)| format!("address {addr} is already held by {h}"))
    })
}

/// [`address_clash`] for a task that holds addresses.
pub fn task_clash(state: &State, task: &Task) -> Option<String> {
    if !task.holds_addresses() {
        return None;
    }
    let wanted = task.networks.iter().flat_map(|a| {
        a.addresses
            .iter()
            .map(|x| (a.network_id.as_str(), x.as_str()))
    });
    address_clash(state, Holder::Task(&task.id), wanted)
}

/// [`address_clash`] for a node's ingress leg.
pub fn node_clash(state: &State, node: &Node) -> Option<String> {
    let wanted = node.ingress.iter().flat_map(|a| {
        a.addresses
            .iter()
            .map(|x| (a.network_id.as_str(), x.as_str()))
    });
    address_clash(state, Holder::Node(&node.id), wanted)
}

pub fn is_ingress(p: &PortConfig) -> bool {
    p.publish_mode() == PublishMode::Ingress
}

/// Published ports held by services other than `except`, in ingress mode or in host
/// mode: (port, protocol) -> service name.
pub fn ports_in_use<'a>(
    state: &'a State,
    except: &str,
    ingress: bool,
) -> HashMap<(u32, &'a str), &'a str> {
    state
        .services()
        .filter(|s| s.id != except)
        .flat_map(|s| {
            s.endpoint.iter().flat_map(move |e| {
                e.ports
                    .iter()
                    .filter(move |p| is_ingress(p) == ingress)
                    .map(move |p| ((p.published_port, p.protocol.as_str()), s.name()))
            })
        })
        .collect()
}

/// Why service `id` cannot publish `p`: an ingress port is open on every node, so it
/// clashes with any other use of its number; a host-mode one only with ingress ports.
pub fn port_clash(state: &State, id: &str, p: &PortConfig) -> Option<String> {
    let key = (p.published_port, p.protocol.as_str());
    if let Some(other) = ports_in_use(state, id, true).get(&key) {
        return Some(format!(
            "port '{}' is already in use by service '{other}' as an ingress port",
            p.published_port
        ));
    }
    if is_ingress(p)
        && let Some(other) = ports_in_use(state, id, false).get(&key)
    {
        return Some(format!(
            "port '{}' is already in use by service '{other}' as a host-mode port",
            p.published_port
        ));
    }
    None
}

/// A reason the store must refuse `svc`: an ingress port or a VIP another holds.
pub fn service_clash(state: &State, svc: &Service) -> Option<(Refusal, String)> {
    let endpoint = svc.endpoint.as_ref()?;
    if let Some(why) = endpoint
        .ports
        .iter()
        .find_map(|p| port_clash(state, &svc.id, p))
    {
        return Some((Refusal::PortInUse, why));
    }
    address_clash(
        state,
        Holder::Service(&svc.id),
        endpoint
            .virtual_ips
            .iter()
            .map(|v| (v.network_id.as_str(), v.addr.as_str())),
    )
    .map(|why| (Refusal::AddressHeld, why))
}

/// A new network's subnet or VNI already allocated to another (a race between two
/// managers' allocations): refused, so nothing is ever handed out twice.
pub fn network_clash(state: &State, net: &shoal_proto::Network, staged: &Staged) -> Option<String> {
    let subnets: Vec<Cidr> = net
        .ipam
        .iter()
        .filter_map(|c| Cidr::parse(&c.subnet).ok())
        .collect();
    let staged_networks = staged.values().flatten().filter_map(|o| match o {
        Object::Network(n) => Some(n),
        _ => None,
    });
    for other in state
        .networks()
        .chain(staged_networks)
        .filter(|o| o.id != net.id)
    {
        let name = other.name();
        if other.vni == net.vni {
            return Some(format!(
                "VNI {} is already allocated to network {name}",
                net.vni
            ));
        }
        for c in other
            .ipam
            .iter()
            .filter_map(|c| Cidr::parse(&c.subnet).ok())
        {
            if subnets.iter().any(|s| s.overlaps(&c)) {
                return Some(format!("subnet {c} is already allocated to network {name}"));
            }
        }
    }
    None
}

//! Overlay networks: create, list, inspect, remove. A network gets its subnet (from the
//! cluster's default address pool unless given) and its VXLAN VNI when it is created, in
//! the same Raft write, so a new leader never hands out a range twice.

pub mod attach;
pub mod ipam;
pub mod keys;

use shoal_proto::stored_object::Object;
use shoal_proto::{Cluster, IpamConfig, Meta, Network, NetworkSpec, StoreActionKind};

use crate::error::{ManagerError, Result};
use crate::proposer::Proposer;
use crate::state::store::{State, action, proposal};
use ipam::Cidr;

pub const INGRESS: &str = "ingress";

/// Finds a network by ID, name, or unique ID prefix.
pub fn find_network(state: &State, key: &str) -> Result<Network> {
    crate::lookup::find_by(
        state.networks(),
        key,
        |n| &n.id,
        Network::name,
        format!("network {key} not found"),
    )
    .map_err(|e| match e {
        ManagerError::NotFound(m) => ManagerError::NoSuchNetwork(m),
        other => other,
    })
}

/// The cluster's address pools and subnet size.
fn pools(cluster: Option<&Cluster>) -> (Vec<Cidr>, u8) {
    let spec = cluster.and_then(|c| c.spec.clone()).unwrap_or_default();
    let mut pools: Vec<Cidr> = spec
        .default_addr_pool
        .iter()
        .filter_map(|p| Cidr::parse(p).ok())
        .collect();
    if pools.is_empty() {
        pools.push(Cidr::parse(shoal_proto::DEFAULT_ADDR_POOL).expect("valid default pool"));
    }
    let size = if spec.subnet_size == 0 {
        ipam::DEFAULT_SUBNET_SIZE
    } else {
        spec.subnet_size as u8
    };
    (pools, size)
}

fn taken_subnets(state: &State) -> Vec<Cidr> {
    state
        .networks()
        .flat_map(|n| n.ipam.iter())
        .filter_map(|c| Cidr::parse(&c.subnet).ok())
        .collect()
}

/// Checks a spec and gives it its subnet, gateway and VNI against `state`.
pub fn allocate(
    state: &State,
    cluster: Option<&Cluster>,
    spec: &NetworkSpec,
    now: i64,
) -> Result<Network> {
    let invalid = ManagerError::InvalidArgument;
    let name = spec.annotations.as_ref().map_or("", |a| a.name.as_str());
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !name_ok {
        return Err(invalid(format!(
            "invalid network name {name:?}: use up to 63 letters, digits, '-', '_' or '.', starting with a letter or digit"
        )));
    }
    if !spec.driver.is_empty() && spec.driver != "overlay" {
        return Err(invalid(format!(
            "driver {:?} cannot be used for swarm networks: use -d overlay",
            spec.driver
        )));
    }
    if state.networks().any(|n| n.name() == name) {
        // A conflict (409 in the Engine API), as a taken service name is.
        return Err(ManagerError::Rejected(
            shoal_proto::Refusal::NameTaken,
            format!("network with name {name} already exists"),
        ));
    }
    for (k, v) in &spec.options {
        match k.as_str() {
            "mtu" | "com.docker.network.driver.mtu" => {
                let mtu: u32 = v.parse().map_err(|_| {
                    invalid(format!("invalid mtu {v:?}: a number from 68 to 65535"))
                })?;
                if !(68..=65535).contains(&mtu) {
                    return Err(invalid(format!(
                        "invalid mtu {mtu}: a number from 68 to 65535"
                    )));
                }
            }
            "encrypted" => {}
            other => {
                return Err(invalid(format!(
                    "unknown option {other:?}: overlay networks take mtu"
                )));
            }
        }
    }
    if spec.ipam.len() > 1 {
        return Err(invalid("one subnet per network is supported".into()));
    }
    let taken = taken_subnets(state);
    let subnet = if let Some(c) = spec.ipam.first().filter(|c| !c.subnet.is_empty()) {
        let cidr = Cidr::parse(&c.subnet).map_err(invalid)?;
        if let Some(other) = state.networks().find(|n| {
            n.ipam
                .iter()
                .filter_map(|x| Cidr::parse(&x.subnet).ok())
                .any(|x| x.overlaps(&cidr))
        }) {
            return Err(invalid(format!(
                "subnet {cidr} overlaps with network {}; pick another --subnet",
                other.name()
            )));
        }
        cidr
    } else {
        let (pools, size) = pools(cluster);
        ipam::next_subnet(&pools, size, &taken).ok_or_else(|| {
            ManagerError::FailedPrecondition(
                "the default address pool is exhausted: remove unused networks, or give --subnet"
                    .into(),
            )
        })?
    };
    let gateway = match spec
        .ipam
        .first()
        .map(|c| c.gateway.as_str())
        .filter(|g| !g.is_empty())
    {
        Some(g) => {
            let ip: std::net::Ipv4Addr = g
                .parse()
                .map_err(|_| invalid(format!("invalid gateway {g:?}")))?;
            if !subnet.is_host(ip) {
                return Err(invalid(format!(
                    "gateway {ip} is not a host address of subnet {subnet}"
                )));
            }
            ip
        }
        None => subnet.first_host(),
    };
    let vnis: Vec<u32> = state.networks().map(|n| n.vni).collect();
    Ok(Network {
        id: shoal_proto::ids::new_id(),
        meta: Some(Meta {
            created_at_unix_nanos: now,
            updated_at_unix_nanos: now,
            ..Default::default()
        }),
        spec: Some(NetworkSpec {
            driver: "overlay".into(),
            ..spec.clone()
        }),
        vni: ipam::next_vni(&vnis),
        ipam: vec![IpamConfig {
            subnet: subnet.to_string(),
            gateway: gateway.to_string(),
        }],
    })
}

/// The `ingress` network `swarm init` creates.
pub fn ingress(cluster: &Cluster, now: i64) -> Result<Network> {
    let spec = NetworkSpec {
        annotations: Some(shoal_proto::Annotations {
            name: INGRESS.into(),
            ..Default::default()
        }),
        driver: "overlay".into(),
        ingress: true,
        ..Default::default()
    };
    allocate(&State::default(), Some(cluster), &spec, now)
}

pub async fn create(m: &impl Proposer, spec: NetworkSpec) -> Result<Network> {
    if spec.ingress {
        return Err(ManagerError::InvalidArgument(
            "the swarm has its ingress network already; create ordinary overlay networks instead"
                .into(),
        ));
    }
    // The store refuses overlapping subnets and duplicate VNIs: on a race, allocate again.
    let result = m
        .update_with_retry(|s| {
            let network = allocate(s, s.cluster(), &spec, shoal_proto::now_nanos())?;
            Ok(vec![action(
                StoreActionKind::Create,
                Object::Network(network),
            )])
        })
        .await?;
    result
        .objects
        .into_iter()
        .find_map(|o| match o.object {
            Some(Object::Network(n)) => Some(n),
            _ => None,
        })
        .ok_or_else(|| ManagerError::Raft("the store did not return the network".into()))
}

pub fn list(m: &impl Proposer) -> Vec<Network> {
    let mut all: Vec<Network> = m.store().view(|s| s.networks().cloned().collect());
    all.sort_by(|a, b| a.name().cmp(b.name()));
    all
}

pub fn get(m: &impl Proposer, key: &str) -> Result<Network> {
    m.store().view(|s| find_network(s, key))
}

/// Removes a network no service uses.
pub async fn remove(m: &impl Proposer, key: &str) -> Result<()> {
    let network = get(m, key)?;
    let users: Vec<String> = m.store().view(|s| {
        s.services()
            .filter(|svc| {
                let task = svc.spec.as_ref().and_then(|s| s.task.as_ref());
                let attached =
                    task.is_some_and(|t| t.networks.iter().any(|n| n.target == network.id));
                let published = network.spec.as_ref().is_some_and(|s| s.ingress)
                    && svc
                        .spec
                        .as_ref()
                        .and_then(|s| s.endpoint.as_ref())
                        .is_some_and(|e| !e.ports.is_empty());
                attached || published
            })
            .map(|svc| svc.name().to_string())
            .collect()
    });
    if !users.is_empty() {
        return Err(ManagerError::FailedPrecondition(format!(
            "network {} is in use by service {}; remove or update the service first",
            network.name(),
            users.join(", ")
        )));
    }
    let containers = m.store().view(|s| attach::users(s, &network.id));
    if !containers.is_empty() {
        return Err(ManagerError::FailedPrecondition(format!(
            "network {} has active endpoints: container {} is connected; run `shoal network disconnect` first",
            network.name(),
            containers.join(", ")
        )));
    }
    m.propose(proposal(vec![action(
        StoreActionKind::Remove,
        Object::Network(network),
    )]))
    .await
    .map(|_| ())
}

/// Resolves a service's network attachments to network IDs, refusing unknown networks and
/// the ingress network (which services reach through published ports).
pub fn resolve_attachments(state: &State, task: &mut shoal_proto::TaskSpec) -> Result<()> {
    for attachment in &mut task.networks {
        let n = find_network(state, &attachment.target)?;
        if n.spec.as_ref().is_some_and(|s| s.ingress) {
            return Err(ManagerError::InvalidArgument(format!(
                "service cannot be explicitly attached to the ingress network {:?}",
                n.name()
            )));
        }
        attachment.target = n.id;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, subnet: &str) -> NetworkSpec {
        NetworkSpec {
            annotations: Some(shoal_proto::Annotations {
                name: name.into(),
                ..Default::default()
            }),
            driver: "overlay".into(),
            ipam: if subnet.is_empty() {
                vec![]
            } else {
                vec![IpamConfig {
                    subnet: subnet.into(),
                    gateway: String::new(),
                }]
            },
            ..Default::default()
        }
    }

    fn with(state: &mut State, n: Network, idx: u64) {
        let (r, _) = state.apply(
            idx,
            &proposal(vec![action(StoreActionKind::Create, Object::Network(n))]),
        );
        assert!(r.error.is_empty(), "{}", r.error);
    }

    #[test]
    fn networks_get_distinct_subnets_and_vnis() {
        let mut s = State::default();
        let a = allocate(&s, None, &spec("a", ""), 0).unwrap();
        assert_eq!(
            (a.ipam[0].subnet.as_str(), a.ipam[0].gateway.as_str(), a.vni),
            ("10.0.0.0/24", "10.0.0.1", 4096)
        );
        with(&mut s, a, 1);
        let b = allocate(&s, None, &spec("b", ""), 0).unwrap();
        assert_eq!((b.ipam[0].subnet.as_str(), b.vni), ("10.0.1.0/24", 4097));
        with(&mut s, b, 2);
        let err = allocate(&s, None, &spec("c", "10.0.0.0/16"), 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("overlaps with network"), "{err}");
        let err = allocate(&s, None, &spec("a", ""), 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("already exists"), "{err}");
    }

    #[test]
    fn bad_specs_are_refused() {
        let s = State::default();
        let mut bad_driver = spec("x", "");
        bad_driver.driver = "bridge".into();
        assert!(
            allocate(&s, None, &bad_driver, 0)
                .unwrap_err()
                .to_string()
                .contains("-d overlay")
        );
        let mut gw = spec("x", "10.9.0.0/24");
        gw.ipam[0].gateway = "10.8.0.1".into();
        assert!(
            allocate(&s, None, &gw, 0)
                .unwrap_err()
                .to_string()
                .contains("not a host address")
        );
        let mut mtu = spec("x", "");
        mtu.options.insert("mtu".into(), "9".into());
        assert!(
            allocate(&s, None, &mtu, 0)
                .unwrap_err()
                .to_string()
                .contains("invalid mtu")
        );
        assert!(
            allocate(&s, None, &spec("", ""), 0)
                .unwrap_err()
                .to_string()
                .contains("invalid network name")
        );
    }

    #[test]
    fn the_store_refuses_overlapping_allocations() {
        let mut s = State::default();
        let a = allocate(&s, None, &spec("a", ""), 0).unwrap();
        let b = allocate(&s, None, &spec("b", ""), 0).unwrap(); // same range: a race
        with(&mut s, a, 1);
        let (r, _) = s.apply(
            2,
            &proposal(vec![action(StoreActionKind::Create, Object::Network(b))]),
        );
        assert!(r.error.contains("allocated to"), "{}", r.error);
    }
}

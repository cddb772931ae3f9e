//! What the load balancer should do, derived from the endpoint tables alone: every node
//! computes the same frontends and backends from the same gossip, so any node can take
//! any connection. Only published endpoints (running, healthy tasks) are backends.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

use crate::gossip::{Endpoint, Protocol};

/// A service VIP on one network: connections to it (any port) go to one of `backends`
/// (same port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipFrontend {
    pub network_id: String,
    pub vip: Ipv4Addr,
    pub service_name: String,
    pub backends: Vec<Ipv4Addr>,
}

/// A port published through the routing mesh: connections to any node address on it go
/// to one of `backends` (task address on the ingress network, target port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshFrontend {
    pub protocol: Protocol,
    pub port: u16,
    pub service_name: String,
    pub backends: Vec<(Ipv4Addr, u16)>,
}

/// The VIPs reachable from a task on `networks`.
pub fn vips(endpoints: &[Endpoint], networks: &HashSet<String>) -> Vec<VipFrontend> {
    let mut by_vip: BTreeMap<(String, Ipv4Addr), VipFrontend> = BTreeMap::new();
    for e in endpoints
        .iter()
        .filter(|e| networks.contains(&e.network_id))
    {
        let Some(vip) = e.vip.split('/').next().and_then(|v| v.parse().ok()) else {
            continue;
        };
        by_vip
            .entry((e.network_id.clone(), vip))
            .or_insert_with(|| VipFrontend {
                network_id: e.network_id.clone(),
                vip,
                service_name: e.service_name.clone(),
                backends: vec![],
            })
            .backends
            .push(e.ip);
    }
    let mut all: Vec<VipFrontend> = by_vip.into_values().collect();
    for f in &mut all {
        f.backends.sort();
        f.backends.dedup();
    }
    all
}

/// The ports published through the mesh, from the endpoints on the ingress network.
pub fn mesh(endpoints: &[Endpoint], ingress_network: &str) -> Vec<MeshFrontend> {
    let mut by_port: BTreeMap<(Protocol, u16), MeshFrontend> = BTreeMap::new();
    for e in endpoints.iter().filter(|e| e.network_id == ingress_network) {
        for p in &e.ports {
            by_port
                .entry((p.protocol, p.published))
                .or_insert_with(|| MeshFrontend {
                    protocol: p.protocol,
                    port: p.published,
                    service_name: e.service_name.clone(),
                    backends: vec![],
                })
                .backends
                .push((e.ip, p.target));
        }
    }
    let mut all: Vec<MeshFrontend> = by_port.into_values().collect();
    for f in &mut all {
        f.backends.sort();
        f.backends.dedup();
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::PublishedPort;
    use crate::gossip::table::endpoint;

    #[test]
    fn vips_group_backends_by_network_and_skip_other_networks() {
        let mut a = endpoint("t1", "n1", [10, 0, 1, 5]);
        a.vip = "10.0.1.2/24".into();
        let mut b = endpoint("t2", "n2", [10, 0, 1, 6]);
        b.vip = "10.0.1.2/24".into();
        let mut other = endpoint("t3", "n2", [10, 0, 2, 6]);
        other.network_id = "net2".into();
        other.vip = "10.0.2.2/24".into();
        let dnsrr = endpoint("t4", "n1", [10, 0, 1, 9]);
        let on = HashSet::from(["net1".to_string()]);
        let got = vips(&[b, a, other, dnsrr], &on);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].vip, Ipv4Addr::new(10, 0, 1, 2));
        assert_eq!(
            got[0].backends,
            [Ipv4Addr::new(10, 0, 1, 5), Ipv4Addr::new(10, 0, 1, 6)]
        );
    }

    #[test]
    fn mesh_ports_follow_each_backends_own_target() {
        let port = |published, target| PublishedPort {
            protocol: Protocol::Tcp,
            published,
            target,
        };
        // Mid-update: the old task maps 8080 to 80, the new one to 81 and also 9090.
        let mut old = endpoint("t1", "n1", [10, 0, 0, 5]);
        old.ports = vec![port(8080, 80)];
        let mut new = endpoint("t2", "n2", [10, 0, 0, 6]);
        new.ports = vec![port(8080, 81), port(9090, 90)];
        let got = mesh(&[old, new], "net1");
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].backends,
            [
                (Ipv4Addr::new(10, 0, 0, 5), 80),
                (Ipv4Addr::new(10, 0, 0, 6), 81)
            ]
        );
        assert_eq!(
            (got[1].port, got[1].backends.as_slice()),
            (9090, &[(Ipv4Addr::new(10, 0, 0, 6), 90)][..])
        );
        assert!(mesh(&got_nothing(), "net1").is_empty());
    }

    fn got_nothing() -> Vec<Endpoint> {
        vec![endpoint("t9", "n1", [10, 0, 0, 9])]
    }
}

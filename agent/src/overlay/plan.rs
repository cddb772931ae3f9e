//! Planning a task's legs, as pure functions of the task, the networks this node knows
//! and the interfaces already in the task's namespace: names, addresses, MACs and the
//! endpoints to publish. The driver (mod.rs) then makes the kernel match the plan.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::Path;

use shoal_proto::{Network, Task};

use super::{AttachError, Attachment};
use crate::gossip::{Endpoint, Protocol, PublishedPort};
use crate::netlink::mac_for;

/// What a leg takes from the node it is on.
pub struct NodeSide<'a> {
    pub node_id: &'a str,
    pub vtep: Ipv4Addr,
}

/// One leg per network `task` attaches to: its interface name (the one already holding
/// its address keeps its name), veth name, and the endpoint it will publish.
pub fn task_legs(
    task: &Task,
    networks: &HashMap<String, Network>,
    task_netns: &Path,
    hostname: &str,
    node: &NodeSide<'_>,
    names: &mut InterfaceNames,
) -> Result<Vec<Attachment>, AttachError> {
    let mut legs = Vec::new();
    for (i, att) in task.networks.iter().enumerate() {
        let net = networks
            .get(&att.network_id)
            .ok_or_else(|| AttachError::UnknownNetwork(att.network_id.clone()))?;
        let name = net.name();
        let (ip, prefix) = leg_address(att, name)?;
        let vip = task
            .endpoint
            .iter()
            .flat_map(|e| &e.virtual_ips)
            .find(|v| v.network_id == net.id)
            .map(|v| v.addr.clone())
            .unwrap_or_default();
        let ingress = net.spec.as_ref().is_some_and(|s| s.ingress);
        let ports = if ingress {
            published_ports(task)
        } else {
            vec![]
        };
        let aliases = task
            .spec
            .as_ref()
            .and_then(|s| {
                s.networks
                    .iter()
                    .find(|n| n.target == att.network_id || n.target == name)
            })
            .map(|n| n.aliases.clone())
            .unwrap_or_default();
        legs.push(Attachment {
            network_id: net.id.clone(),
            task_netns: task_netns.to_path_buf(),
            ifname: names.for_address(|a| a == ip),
            host_veth: format!("veth{}{i}", &task.id[..task.id.len().min(8)]),
            endpoint: Endpoint {
                network_id: net.id.clone(),
                task_id: task.id.clone(),
                node_id: node.node_id.to_string(),
                ip,
                prefix,
                mac: mac_for(ip),
                vtep: node.vtep,
                service_id: task.service_id.clone(),
                service_name: task.service_name.clone(),
                task_name: match task.attached_container() {
                    Some(c) => c.to_string(),
                    None => crate::runtime::task_name(task),
                },
                hostname: hostname.to_string(),
                vip,
                aliases,
                ports,
            },
        });
    }
    Ok(legs)
}

/// Names for a task's interfaces: the one already carrying an address keeps its name
/// (adoption), a new one takes the first free ethN.
pub struct InterfaceNames {
    present: Vec<(String, Vec<Ipv4Addr>)>,
    taken: HashSet<String>,
}

impl InterfaceNames {
    pub fn new(present: Vec<(String, Vec<Ipv4Addr>)>) -> Self {
        InterfaceNames {
            present,
            taken: HashSet::new(),
        }
    }

    pub fn for_address(&mut self, owns: impl Fn(Ipv4Addr) -> bool) -> String {
        let existing = self
            .present
            .iter()
            .find(|(n, ips)| !self.taken.contains(n) && ips.iter().any(|ip| owns(*ip)))
            .map(|(n, _)| n.clone());
        let name = existing.unwrap_or_else(|| {
            (0..=u16::MAX)
                .map(|i| format!("eth{i}"))
                .find(|n| !self.taken.contains(n) && !self.present.iter().any(|(p, _)| p == n))
                .expect("a free name")
        });
        self.taken.insert(name.clone());
        name
    }
}

/// The ports a task publishes in mode=host, to its gateway-bridge address `addr`.
pub fn host_ports(task: &Task, addr: Ipv4Addr) -> Vec<crate::lb::HostPort> {
    task.endpoint
        .iter()
        .flat_map(|e| &e.ports)
        .filter(|p| p.publish_mode() == shoal_proto::PublishMode::Host)
        .filter_map(|p| {
            Some(crate::lb::HostPort {
                protocol: Protocol::parse(&p.protocol)?,
                published: u16::try_from(p.published_port).ok()?,
                target: u16::try_from(p.target_port).ok()?,
                addr,
            })
        })
        .collect()
}

/// The ports a task's service publishes through the mesh.
pub fn published_ports(task: &Task) -> Vec<PublishedPort> {
    task.endpoint
        .iter()
        .flat_map(|e| &e.ports)
        .filter(|p| p.publish_mode() == shoal_proto::PublishMode::Ingress)
        .filter_map(|p| {
            Some(PublishedPort {
                protocol: Protocol::parse(&p.protocol)?,
                published: u16::try_from(p.published_port).ok()?,
                target: u16::try_from(p.target_port).ok()?,
            })
        })
        .collect()
}

/// The address a leg on `network` (named for errors) is attached with.
pub fn leg_address(
    att: &shoal_proto::NetworkAttachment,
    network: &str,
) -> Result<(Ipv4Addr, u8), AttachError> {
    let addr = att
        .addresses
        .first()
        .ok_or_else(|| AttachError::NoAddress(network.to_string()))?;
    parse_cidr(addr).ok_or_else(|| AttachError::BadAddress {
        network: network.to_string(),
        addr: addr.clone(),
    })
}

fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, prefix) = s.split_once('/')?;
    Some((ip.parse().ok()?, prefix.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use shoal_proto::{
        Annotations, NetworkAttachment, NetworkAttachmentConfig, NetworkSpec, PortConfig,
        PublishMode, ServiceEndpoint, TaskSpec, VirtualIp,
    };

    use super::*;

    fn network(id: &str, name: &str, ingress: bool) -> Network {
        Network {
            id: id.into(),
            spec: Some(NetworkSpec {
                annotations: Some(Annotations {
                    name: name.into(),
                    ..Default::default()
                }),
                ingress,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn port(published: u32, mode: PublishMode) -> PortConfig {
        PortConfig {
            protocol: "tcp".into(),
            target_port: 80,
            published_port: published,
            publish_mode: mode as i32,
            ..Default::default()
        }
    }

    fn task(networks: &[(&str, &str)]) -> Task {
        Task {
            id: "abcdef0123456789".into(),
            service_id: "svc".into(),
            service_name: "web".into(),
            slot: 2,
            networks: networks
                .iter()
                .map(|(id, addr)| NetworkAttachment {
                    network_id: (*id).into(),
                    addresses: if addr.is_empty() {
                        vec![]
                    } else {
                        vec![(*addr).into()]
                    },
                })
                .collect(),
            endpoint: Some(ServiceEndpoint {
                ports: vec![
                    port(8080, PublishMode::Ingress),
                    port(9090, PublishMode::Host),
                ],
                virtual_ips: vec![VirtualIp {
                    network_id: "back".into(),
                    addr: "10.0.1.2/24".into(),
                }],
                ..Default::default()
            }),
            spec: Some(TaskSpec {
                networks: vec![NetworkAttachmentConfig {
                    target: "backend".into(),
                    aliases: vec!["db".into()],
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn plan(
        t: &Task,
        present: Vec<(String, Vec<Ipv4Addr>)>,
    ) -> Result<Vec<Attachment>, AttachError> {
        let networks: HashMap<String, Network> = [
            ("back".to_string(), network("back", "backend", false)),
            ("ing".to_string(), network("ing", "ingress", true)),
        ]
        .into();
        let node = NodeSide {
            node_id: "node1",
            vtep: Ipv4Addr::new(192, 168, 56, 11),
        };
        let mut names = InterfaceNames::new(present);
        task_legs(
            t,
            &networks,
            Path::new("/run/netns/t"),
            "web-2",
            &node,
            &mut names,
        )
    }

    #[test]
    fn each_network_gets_a_leg_with_its_address_mac_vip_aliases_and_ports() {
        let t = task(&[("back", "10.0.1.5/24"), ("ing", "10.255.0.7/16")]);
        // The ingress address is already on eth0 (an adopted task): it keeps the name.
        let legs = plan(
            &t,
            vec![("eth0".into(), vec![Ipv4Addr::new(10, 255, 0, 7)])],
        )
        .unwrap();
        let (back, ing) = (&legs[0], &legs[1]);
        assert_eq!(
            (back.ifname.as_str(), ing.ifname.as_str()),
            ("eth1", "eth0")
        );
        assert_eq!(
            (back.host_veth.as_str(), ing.host_veth.as_str()),
            ("vethabcdef010", "vethabcdef011")
        );
        let e = &back.endpoint;
        assert_eq!((e.ip, e.prefix), (Ipv4Addr::new(10, 0, 1, 5), 24));
        assert_eq!(e.mac, [0x02, 0x42, 10, 0, 1, 5]);
        assert_eq!(e.vtep, Ipv4Addr::new(192, 168, 56, 11));
        assert_eq!(e.vip, "10.0.1.2/24");
        assert_eq!(e.aliases, ["db"]);
        assert_eq!(e.task_name, "web.2.abcdef0123456789");
        assert_eq!(e.hostname, "web-2");
        assert!(e.ports.is_empty(), "ports are published on ingress only");
        assert_eq!(ing.endpoint.vip, "");
        assert_eq!(
            ing.endpoint.ports,
            [PublishedPort {
                protocol: Protocol::Tcp,
                published: 8080,
                target: 80
            }]
        );
        let host = host_ports(&t, Ipv4Addr::new(172, 31, 0, 2));
        assert_eq!(host.iter().map(|h| h.published).collect::<Vec<_>>(), [9090]);
    }

    #[test]
    fn a_leg_that_cannot_be_planned_says_which_network_and_why() {
        let unknown = plan(&task(&[("gone", "10.0.9.5/24")]), vec![]).unwrap_err();
        assert!(matches!(unknown, AttachError::UnknownNetwork(ref id) if id == "gone"));
        let none = plan(&task(&[("back", "")]), vec![]).unwrap_err();
        assert!(matches!(none, AttachError::NoAddress(ref n) if n == "backend"));
        let bad = plan(&task(&[("back", "10.0.1.500/24")]), vec![]).unwrap_err();
        assert_eq!(
            bad.to_string(),
            "bad address \"10.0.1.500/24\" on network backend"
        );
    }

    #[test]
    fn interface_names_skip_taken_and_present_ones() {
        let mut names = InterfaceNames::new(vec![
            ("eth0".into(), vec![Ipv4Addr::new(10, 0, 0, 2)]),
            ("eth1".into(), vec![]),
        ]);
        assert_eq!(
            names.for_address(|a| a == Ipv4Addr::new(10, 0, 0, 9)),
            "eth2"
        );
        assert_eq!(
            names.for_address(|a| a == Ipv4Addr::new(10, 0, 0, 2)),
            "eth0"
        );
        assert_eq!(names.for_address(|_| false), "eth3");
    }
}

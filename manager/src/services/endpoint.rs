//! A service's endpoint as the managers allocate it: every ingress port gets a published
//! number (given, or free from 30000-32767) that no other service holds, and a service in
//! endpoint mode vip gets a VIP on each network it attaches to. An update keeps what it
//! can (the same VIPs, the same auto-assigned ports), as Swarm does.

use shoal_proto::{
    EndpointMode, EndpointSpec, PortConfig, ServiceEndpoint, ServiceSpec, VirtualIp,
};

use crate::state::invariants::{is_ingress, port_clash, ports_in_use};
use crate::state::store::{Kind, State};

/// Ports handed out when a service publishes one without a number.
pub const DYNAMIC_PORTS: std::ops::RangeInclusive<u32> = 30000..=32767;

/// Allocates the endpoint for `spec` (already validated, networks resolved to IDs) of
/// service `service_id`, keeping what `previous` had where it still fits.
pub fn allocate(
    state: &State,
    service_id: &str,
    spec: &ServiceSpec,
    previous: Option<&ServiceEndpoint>,
) -> Result<ServiceEndpoint, String> {
    let endpoint_spec = spec.endpoint.clone().unwrap_or_default();
    let in_use = ports_in_use(state, service_id, true);
    let mut ports = Vec::new();
    for wanted in &endpoint_spec.ports {
        let mut p = wanted.clone();
        if is_ingress(&p) && p.published_port == 0 {
            let kept = previous.into_iter().flat_map(|e| &e.ports).find(|old| {
                is_ingress(old)
                    && old.target_port == p.target_port
                    && old.protocol == p.protocol
                    && DYNAMIC_PORTS.contains(&old.published_port)
            });
            let taken = |n: u32| {
                in_use.contains_key(&(n, p.protocol.as_str()))
                    || ports
                        .iter()
                        .any(|q: &PortConfig| q.published_port == n && q.protocol == p.protocol)
            };
            p.published_port = match kept {
                Some(old) if !taken(old.published_port) => old.published_port,
                _ => DYNAMIC_PORTS.clone().find(|n| !taken(*n)).ok_or_else(|| {
                    format!(
                        "no free published port left in {}-{}: remove services that publish ports, or give one with -p PUBLISHED:TARGET",
                        DYNAMIC_PORTS.start(),
                        DYNAMIC_PORTS.end()
                    )
                })?,
            };
        } else if let Some(why) = port_clash(state, service_id, &p) {
            return Err(format!(
                "{why}; publish another port, or remove it from that service first"
            ));
        }
        ports.push(p);
    }
    let mut virtual_ips = Vec::new();
    if endpoint_spec.mode() == EndpointMode::Vip {
        let mut used = crate::allocator::used(state);
        // This service's own VIPs are free for it to keep.
        for vip in previous.into_iter().flat_map(|e| &e.virtual_ips) {
            if let (Some(set), Some(ip)) = (
                used.get_mut(&vip.network_id),
                vip.addr.split('/').next().and_then(|ip| ip.parse().ok()),
            ) {
                set.remove(&ip);
            }
        }
        let networks = spec.task.iter().flat_map(|t| &t.networks);
        for target in networks.map(|n| n.target.as_str()) {
            let kept = previous
                .into_iter()
                .flat_map(|e| &e.virtual_ips)
                .find(|v| v.network_id == target);
            let addr = if let Some(v) = kept {
                v.addr.clone()
            } else {
                let Some(shoal_proto::stored_object::Object::Network(network)) =
                    state.get(Kind::Network, target)
                else {
                    return Err(format!("network {target} no longer exists"));
                };
                crate::allocator::take_address(network, &mut used)?
            };
            virtual_ips.push(VirtualIp {
                network_id: target.to_string(),
                addr,
            });
        }
    }
    Ok(ServiceEndpoint {
        spec: Some(EndpointSpec {
            mode: endpoint_spec.mode,
            ports: endpoint_spec.ports.clone(),
        }),
        ports,
        virtual_ips,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::stored_object::Object;
    use shoal_proto::{
        IpamConfig, Network, NetworkAttachmentConfig, PublishMode, Service, StoreActionKind,
        TaskSpec, service_spec,
    };

    use crate::state::store::action;

    fn spec(name: &str, ports: &[(u32, u32)], network: Option<&str>) -> ServiceSpec {
        ServiceSpec {
            annotations: Some(shoal_proto::Annotations {
                name: name.into(),
                ..Default::default()
            }),
            task: Some(TaskSpec {
                networks: network
                    .map(|n| NetworkAttachmentConfig {
                        target: n.into(),
                        aliases: vec![],
                    })
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
            mode: Some(service_spec::Mode::Replicated(Default::default())),
            endpoint: Some(EndpointSpec {
                mode: EndpointMode::Vip as i32,
                ports: ports
                    .iter()
                    .map(|&(published, target)| PortConfig {
                        protocol: "tcp".into(),
                        target_port: target,
                        published_port: published,
                        ..Default::default()
                    })
                    .collect(),
            }),
            ..Default::default()
        }
    }

    fn store(state: &mut State, id: &str, spec: ServiceSpec) -> Result<Service, String> {
        let endpoint = allocate(state, id, &spec, None)?;
        let svc = Service {
            id: id.into(),
            spec: Some(spec),
            endpoint: Some(endpoint),
            ..Default::default()
        };
        let (r, _) = state.apply(
            1,
            &crate::state::store::proposal(vec![action(
                StoreActionKind::Create,
                Object::Service(svc.clone()),
            )]),
        );
        if r.error.is_empty() {
            Ok(svc)
        } else {
            Err(r.error)
        }
    }

    fn with_network() -> State {
        let mut s = State::default();
        let net = Network {
            id: "net".into(),
            vni: 4097,
            ipam: vec![IpamConfig {
                subnet: "10.9.0.0/29".into(),
                gateway: "10.9.0.1".into(),
            }],
            ..Default::default()
        };
        s.apply(
            1,
            &crate::state::store::proposal(vec![action(
                StoreActionKind::Create,
                Object::Network(net),
            )]),
        );
        s
    }

    #[test]
    fn published_ports_are_unique_and_unnumbered_ones_are_assigned() {
        let mut s = with_network();
        let web = store(&mut s, "a", spec("web", &[(8080, 80), (0, 81)], None)).unwrap();
        assert_eq!(
            web.endpoint.as_ref().unwrap().ports[1].published_port,
            30000
        );
        let err = store(&mut s, "b", spec("api", &[(8080, 80)], None)).unwrap_err();
        assert!(
            err.contains("port '8080' is already in use by service 'web'"),
            "{err}"
        );
        let api = store(&mut s, "b", spec("api", &[(0, 80)], None)).unwrap();
        assert_eq!(api.endpoint.unwrap().ports[0].published_port, 30001);
        // An update keeps its auto-assigned port.
        let again = allocate(&s, "a", web.spec.as_ref().unwrap(), web.endpoint.as_ref()).unwrap();
        assert_eq!(again.ports[1].published_port, 30000);
    }

    #[test]
    fn a_host_mode_port_may_not_take_an_ingress_port_nor_the_other_way() {
        let mut s = with_network();
        store(&mut s, "a", spec("web", &[(8080, 80)], None)).unwrap();
        let mut host = spec("h", &[(8080, 80)], None);
        host.endpoint.as_mut().unwrap().ports[0].publish_mode = PublishMode::Host as i32;
        let err = store(&mut s, "b", host.clone()).unwrap_err();
        assert!(
            err.contains("already in use by service 'web' as an ingress port"),
            "{err}"
        );
        host.endpoint.as_mut().unwrap().ports[0].published_port = 9090;
        store(&mut s, "b", host.clone()).unwrap();
        // Two host-mode services may share a number (the scheduler keeps them apart).
        host.annotations.as_mut().unwrap().name = "h2".into();
        store(&mut s, "c", host).unwrap();
        let err = store(&mut s, "d", spec("api", &[(9090, 80)], None)).unwrap_err();
        assert!(err.contains("as a host-mode port"), "{err}");
    }

    #[test]
    fn vips_come_from_the_network_and_are_kept_across_updates() {
        let mut s = with_network();
        let web = store(&mut s, "a", spec("web", &[], Some("net"))).unwrap();
        let vip = &web.endpoint.as_ref().unwrap().virtual_ips[0];
        assert_eq!(
            (vip.network_id.as_str(), vip.addr.as_str()),
            ("net", "10.9.0.2/29")
        );
        let api = store(&mut s, "b", spec("api", &[], Some("net"))).unwrap();
        assert_eq!(api.endpoint.unwrap().virtual_ips[0].addr, "10.9.0.3/29");
        let again = allocate(&s, "a", web.spec.as_ref().unwrap(), web.endpoint.as_ref()).unwrap();
        assert_eq!(again.virtual_ips, web.endpoint.unwrap().virtual_ips);
        // A copy holding another service's VIP is refused by the store.
        let mut thief = spec("thief", &[], Some("net"));
        thief.endpoint.as_mut().unwrap().mode = EndpointMode::Dnsrr as i32;
        let svc = Service {
            id: "c".into(),
            spec: Some(thief),
            endpoint: Some(ServiceEndpoint {
                virtual_ips: vec![VirtualIp {
                    network_id: "net".into(),
                    addr: "10.9.0.2/29".into(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let (r, _) = s.apply(
            3,
            &crate::state::store::proposal(vec![action(
                StoreActionKind::Create,
                Object::Service(svc),
            )]),
        );
        assert!(r.error.contains("already held by service a"), "{}", r.error);
    }
}

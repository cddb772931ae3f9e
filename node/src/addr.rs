//! Choosing the address a node advertises to the others.

use std::net::{IpAddr, Ipv4Addr};

use crate::error::{IoContext, NodeError, Result};

/// The address VirtualBox gives every VM's NAT interface: never reachable from other VMs.
const VIRTUALBOX_NAT: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);

/// Who advertises: a node starting a swarm alone may use loopback (a single-node swarm,
/// as `docker swarm init --advertise-addr 127.0.0.1` makes); one joining others may not.
#[derive(Clone, Copy, PartialEq)]
pub enum Advertiser {
    Founder,
    Joiner,
}

/// Resolves `--advertise-addr` (IP, IP:PORT or an interface name) or, when absent, the
/// address of the interface holding the default route. Returns (ip, port).
pub fn resolve_advertise(
    given: Option<&str>,
    default_port: u16,
    who: Advertiser,
) -> Result<(IpAddr, u16)> {
    let (ip, port) = match given.filter(|s| !s.is_empty()) {
        Some(s) => parse_or_interface(s, default_port)?,
        None => (default_route_address()?, default_port),
    };
    if ip == IpAddr::V4(VIRTUALBOX_NAT) {
        return Err(NodeError::Config(format!(
            "refusing to advertise {ip}: it is the VirtualBox NAT address that every VM has, so other nodes cannot reach this one there. Pass --advertise-addr with the address of the host-only network (for example 192.168.56.11)"
        )));
    }
    if ip.is_unspecified() || (ip.is_loopback() && who == Advertiser::Joiner) {
        return Err(NodeError::Config(format!(
            "cannot advertise {ip}: other nodes cannot reach it; pass --advertise-addr with this node's address on the network they share"
        )));
    }
    if ip.is_loopback() {
        tracing::warn!(
            "advertising {ip}: a single-node swarm; no other node can join it at this address"
        );
    }
    Ok((ip, port))
}

fn parse_or_interface(s: &str, default_port: u16) -> Result<(IpAddr, u16)> {
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Ok((sa.ip(), sa.port()));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok((ip, default_port));
    }
    let (name, port) = match s.rsplit_once(':') {
        Some((n, p)) => (
            n,
            p.parse()
                .map_err(|_| NodeError::Config(format!("invalid port in {s:?}")))?,
        ),
        None => (s, default_port),
    };
    let ip = interface_ipv4(name)?.ok_or_else(|| {
        NodeError::Config(format!(
            "{s:?} is neither an IP address nor the name of an interface with an IPv4 address"
        ))
    })?;
    Ok((IpAddr::V4(ip), port))
}

/// First IPv4 address of interface `name`.
pub fn interface_ipv4(name: &str) -> Result<Option<Ipv4Addr>> {
    Ok(shoal_agent::sys::ipv4_addresses()
        .io(|| "listing the interfaces' addresses".into())?
        .into_iter()
        .find_map(|(n, ip)| (n == name).then_some(ip)))
}

fn default_route_address() -> Result<IpAddr> {
    let routes =
        std::fs::read_to_string("/proc/net/route").io(|| "reading /proc/net/route".into())?;
    let iface = routes
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[1] == "00000000")
        .map(|f| f[0].to_string())
        .ok_or_else(|| {
            NodeError::Config("could not choose an address to advertise: no interface holds a default route. Pass --advertise-addr".into())
        })?;
    let ip = interface_ipv4(&iface)?.ok_or_else(|| {
        NodeError::Config(format!(
            "interface {iface} has the default route but no IPv4 address; pass --advertise-addr"
        ))
    })?;
    Ok(IpAddr::V4(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_the_virtualbox_nat_address() {
        let err = resolve_advertise(Some("10.0.2.15"), 2377, Advertiser::Founder)
            .unwrap_err()
            .to_string();
        assert!(err.contains("VirtualBox NAT"), "{err}");
    }

    #[test]
    fn accepts_ip_and_ip_port() {
        assert_eq!(
            resolve_advertise(Some("192.168.56.11"), 2377, Advertiser::Joiner).unwrap(),
            ("192.168.56.11".parse().unwrap(), 2377)
        );
        assert_eq!(
            resolve_advertise(Some("192.168.56.11:4000"), 2377, Advertiser::Joiner).unwrap(),
            ("192.168.56.11".parse().unwrap(), 4000)
        );
    }

    #[test]
    fn loopback_and_unknown_interfaces_are_refused() {
        assert!(resolve_advertise(Some("127.0.0.1"), 2377, Advertiser::Joiner).is_err());
        // A swarm of one may live on loopback, as docker's may.
        assert!(resolve_advertise(Some("127.0.0.1"), 2377, Advertiser::Founder).is_ok());
        assert!(resolve_advertise(Some("0.0.0.0"), 2377, Advertiser::Founder).is_err());
        assert!(resolve_advertise(Some("no-such-if0"), 2377, Advertiser::Founder).is_err());
    }
}

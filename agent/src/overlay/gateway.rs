//! The gateway bridge: how tasks on overlay networks reach the world outside. Like
//! Docker's docker_gwbridge, it lives in the node's namespace; every task on an overlay
//! gets one more interface on it with a node-local address and its default route, and
//! nftables masquerades what leaves the node, so replies come back to the node.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use rtnetlink::LinkBridge;

use crate::netlink::{Netlink, NetlinkError, link_controller};

pub const BRIDGE: &str = "shoal_gwbridge";
const SUBNET: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 0);
const PREFIX: u8 = 16;
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 1);
const MTU: u32 = 1500;

type Result<T> = std::result::Result<T, NetlinkError>;

/// A task's interface on the gateway bridge.
#[derive(Clone, Debug)]
pub struct GatewayLeg {
    pub task_netns: PathBuf,
    pub ifname: String,
    pub host_veth: String,
    pub ip: Option<Ipv4Addr>,
}

/// Creates (or adopts) the bridge, forwarding and the masquerade rule; returns the bridge.
pub async fn ensure_bridge(node: &Netlink) -> Result<u32> {
    let bridge = if let Some(l) = node.link(BRIDGE).await? {
        l.header.index
    } else {
        node.add_link(
            LinkBridge::new(BRIDGE).mtu(MTU).build(),
            "the gateway bridge",
        )
        .await?;
        node.index(BRIDGE).await?
    };
    node.ensure_addr(bridge, GATEWAY, PREFIX).await?;
    node.up(bridge, None, None, None).await?;
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        .map_err(|e| NetlinkError::Io(format!("enabling IP forwarding: {e}")))?;
    masquerade()?;
    allow_past_docker();
    Ok(bridge)
}

/// Where dockerd runs in the same namespace it sets the FORWARD policy to DROP; rules in
/// its DOCKER-USER chain are how other software lets its traffic through. Only traffic
/// leaving the gateway bridge (and its replies) is let through: tasks still cannot talk
/// to each other across it.
fn allow_past_docker() {
    let iptables = |args: &[&str]| {
        std::process::Command::new("iptables")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !iptables(&["-n", "-L", "DOCKER-USER"]) {
        return;
    }
    let rules: [&[&str]; 2] = [
        &["-i", BRIDGE, "!", "-o", BRIDGE, "-j", "ACCEPT"],
        &[
            "-o",
            BRIDGE,
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        ],
    ];
    for rule in rules {
        let check = [&["-C", "DOCKER-USER"][..], rule].concat();
        let insert = [&["-I", "DOCKER-USER"][..], rule].concat();
        if !iptables(&check) && !iptables(&insert) {
            tracing::warn!("could not let the gateway bridge through docker's FORWARD policy");
        }
    }
}

/// Replaces shoal's NAT table in one nftables transaction, so a re-run repairs it.
fn masquerade() -> Result<()> {
    let body = format!(
        "  chain postrouting {{\n\
             type nat hook postrouting priority srcnat; policy accept;\n\
             ip saddr {SUBNET}/{PREFIX} oifname != \"{BRIDGE}\" masquerade\n\
           }}\n"
    );
    crate::nft::apply(None, &crate::nft::replace_table("ip", "shoal_gw", &body))
        .map_err(|e| NetlinkError::Io(format!("installing the masquerade rule: {e}")))
}

/// Whether the leg's bridge end is still in place.
pub async fn intact(node: &Netlink, bridge: u32, leg: &GatewayLeg) -> bool {
    matches!(node.link(&leg.host_veth).await, Ok(Some(l)) if link_controller(&l) == Some(bridge))
}

/// Makes the leg exist and returns its address; an address the task already has on its
/// interface is kept, so an adopted task's connections survive.
pub async fn plumb(
    node: &Netlink,
    bridge: u32,
    leg: &GatewayLeg,
    used: &HashSet<Ipv4Addr>,
    task_nl: &Netlink,
) -> Result<Ipv4Addr> {
    let existing = match task_nl.link(&leg.ifname).await? {
        Some(l) => task_nl
            .ipv4_addrs(l.header.index)
            .await?
            .into_iter()
            .map(|(ip, _)| ip)
            .find(|ip| in_subnet(*ip)),
        None => None,
    };
    if let (Some(ip), Some(_)) = (existing, node.link(&leg.host_veth).await?) {
        let host = node.index(&leg.host_veth).await?;
        node.up(host, Some(MTU), None, Some(bridge)).await?;
        return Ok(ip);
    }
    let ip = leg
        .ip
        .filter(|ip| !used.contains(ip))
        .or_else(|| free_address(used))
        .ok_or_else(|| NetlinkError::Io("the gateway bridge has no free address".into()))?;
    let inside = node
        .veth_into(&leg.host_veth, task_nl, &leg.task_netns, &leg.ifname, MTU)
        .await?;
    task_nl.up(inside, Some(MTU), None, None).await?;
    task_nl.ensure_addr(inside, ip, PREFIX).await?;
    task_nl.default_route(GATEWAY).await?;
    let host = node.index(&leg.host_veth).await?;
    node.up(host, Some(MTU), None, Some(bridge)).await?;
    Ok(ip)
}

pub async fn remove(node: &Netlink, leg: &GatewayLeg) {
    if let Ok(Some(l)) = node.link(&leg.host_veth).await {
        let _ = node.del_link(l.header.index).await;
    }
}

pub fn in_subnet(ip: Ipv4Addr) -> bool {
    u32::from(ip) >> (32 - PREFIX) == u32::from(SUBNET) >> (32 - PREFIX)
}

fn free_address(used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let base = u32::from(SUBNET);
    (2..(1u32 << (32 - PREFIX)) - 1)
        .map(|i| Ipv4Addr::from(base + i))
        .find(|ip| !used.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_skip_the_gateway_and_those_in_use() {
        let mut used = HashSet::new();
        assert_eq!(free_address(&used), Some(Ipv4Addr::new(172, 18, 0, 2)));
        used.insert(Ipv4Addr::new(172, 18, 0, 2));
        assert_eq!(free_address(&used), Some(Ipv4Addr::new(172, 18, 0, 3)));
        assert!(in_subnet(Ipv4Addr::new(172, 18, 255, 254)));
        assert!(!in_subnet(Ipv4Addr::new(172, 19, 0, 1)));
    }
}

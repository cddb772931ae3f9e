//! The lab's kernel plumbing, made with iproute2: a fabric namespace with a bridge, one
//! namespace per node wired to it by a veth, and a host-side veth at .1 of the subnet.

use std::net::Ipv4Addr;
use std::process::Command;

use crate::error::{IoContext, LabError, Result};

/// Runs `ip ARGS`, turning a failure into an error that shows what ip said.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .io(|| "running ip (install iproute2)".into())?;
    if !out.status.success() {
        return Err(LabError::Failed(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn ip_output(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .io(|| "running ip".into())?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An IPv4 subnet such as 192.168.56.0/24.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl std::str::FromStr for Subnet {
    type Err = LabError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            LabError::Invalid(format!(
                "invalid subnet {s:?}: use an IPv4 network such as 192.168.56.0/24"
            ))
        };
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(8..=27).contains(&prefix) {
            return Err(LabError::Invalid(format!(
                "subnet {s}: the prefix must be between /8 and /27 so the lab's addresses fit"
            )));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Subnet {
            base: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl Subnet {
    /// The address at `offset` from the network address.
    pub fn host(&self, offset: u32) -> Result<Ipv4Addr> {
        let size = 1u32 << (32 - self.prefix);
        if offset == 0 || offset >= size - 1 {
            return Err(LabError::Invalid(format!(
                "subnet {self} has no room for host number {offset}; use a larger subnet"
            )));
        }
        Ok(Ipv4Addr::from(u32::from(self.base) + offset))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == u32::from(self.base)
    }
}

/// Interfaces of this (host) namespace with an address inside `subnet`.
pub fn host_interfaces_in(subnet: Subnet) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for line in ip_output(&["-o", "-4", "addr", "show"])?.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let Some(pos) = fields.iter().position(|f| *f == "inet") {
            let addr = fields.get(pos + 1).and_then(|a| a.split('/').next());
            if let Some(ip) = addr.and_then(|a| a.parse::<Ipv4Addr>().ok())
                && subnet.contains(ip)
            {
                found.push(fields[1].to_string());
            }
        }
    }
    Ok(found)
}

pub fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

/// Namespaces whose name starts with `prefix`.
pub fn netns_with_prefix(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(std::result::Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Makes the fabric: namespace, bridge br0, and the host veth `host_if` at `host_ip`.
pub fn create_fabric(fabric_ns: &str, host_if: &str, host_ip: Ipv4Addr, prefix: u8) -> Result<()> {
    ip(&["netns", "add", fabric_ns])?;
    ip(&["-n", fabric_ns, "link", "set", "lo", "up"])?;
    ip(&["-n", fabric_ns, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", fabric_ns, "link", "set", "br0", "up"])?;
    ip(&[
        "link", "add", host_if, "type", "veth", "peer", "name", "host", "netns", fabric_ns,
    ])?;
    ip(&[
        "-n", fabric_ns, "link", "set", "host", "master", "br0", "up",
    ])?;
    ip(&[
        "addr",
        "add",
        &format!("{host_ip}/{prefix}"),
        "dev",
        host_if,
    ])?;
    ip(&["link", "set", host_if, "up"])?;
    Ok(())
}

/// Makes a node: its namespace with lo and eth0 at `addr`, wired to the fabric bridge.
pub fn create_node(
    fabric_ns: &str,
    node_ns: &str,
    port: &str,
    addr: Ipv4Addr,
    prefix: u8,
) -> Result<()> {
    ip(&["netns", "add", node_ns])?;
    ip(&["-n", node_ns, "link", "set", "lo", "up"])?;
    ip(&[
        "-n", fabric_ns, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns",
        node_ns,
    ])?;
    ip(&["-n", fabric_ns, "link", "set", port, "master", "br0", "up"])?;
    ip(&[
        "-n",
        node_ns,
        "addr",
        "add",
        &format!("{addr}/{prefix}"),
        "dev",
        "eth0",
    ])?;
    ip(&["-n", node_ns, "link", "set", "eth0", "up"])?;
    Ok(())
}

/// PIDs of processes living in namespace `ns`.
pub fn netns_pids(ns: &str) -> Vec<i32> {
    ip_output(&["netns", "pids", ns])
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_place_hosts() {
        let s: Subnet = "192.168.56.7/24".parse().unwrap();
        assert_eq!(s.to_string(), "192.168.56.0/24");
        assert_eq!(s.host(11).unwrap(), Ipv4Addr::new(192, 168, 56, 11));
        assert!(s.host(255).is_err());
        assert!(s.contains(Ipv4Addr::new(192, 168, 56, 200)));
        assert!(!s.contains(Ipv4Addr::new(192, 168, 57, 1)));
        assert!("192.168.56.0".parse::<Subnet>().is_err());
        assert!("192.168.56.0/30".parse::<Subnet>().is_err());
    }
}

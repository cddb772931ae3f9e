//! rtnetlink in any network namespace. A netlink socket belongs to the namespace it was
//! opened in, so `Netlink::in_netns` opens it on a short-lived thread that first enters
//! the namespace; the socket then serves requests from any task.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{Handle, LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder};

pub type Mac = [u8; 6];

/// One forwarding entry of a bridge (see `Netlink::bridge_fdb`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeEntry {
    pub mac: Mac,
    pub port: u32,
    pub programmed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("{what}: {source}")]
    Request {
        what: String,
        source: rtnetlink::Error,
    },
    #[error("{0}")]
    Io(String),
}

pub type Result<T> = std::result::Result<T, NetlinkError>;

/// The errno a failed request carries (positive), if any.
pub fn errno(e: &NetlinkError) -> Option<i32> {
    match e {
        NetlinkError::Request {
            source: rtnetlink::Error::NetlinkError(m),
            ..
        } => m.code.map(|c| -c.get()),
        _ => None,
    }
}

fn request(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let what = what.into();
    move |source| NetlinkError::Request { what, source }
}

/// Formats a MAC address the way `ip` prints it.
pub fn mac_string(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Docker's convention: 02:42 followed by the IPv4 address, so a MAC never clashes
/// within a subnet and can be computed by every node.
/// (The TC programs compute the same: the rule lives in shoal-ebpf-common.)
pub fn mac_for(ip: Ipv4Addr) -> Mac {
    shoal_ebpf_common::mac_for(ip.octets())
}

/// An open netlink socket in one namespace.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// A socket in the namespace the calling thread is in (the agent's own).
    pub fn here() -> Result<Netlink> {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| NetlinkError::Io(e.to_string()))?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// A socket in the namespace at `path` (/run/netns/NAME or /proc/PID/ns/net).
    pub async fn in_netns(path: &Path) -> Result<Netlink> {
        let runtime = tokio::runtime::Handle::current();
        let (conn, handle, _) = crate::sys::run_in_netns(path, move || {
            let _guard = runtime.enter();
            rtnetlink::new_connection()
        })
        .and_then(|opened| opened)
        .map_err(|e| NetlinkError::Io(e.to_string()))?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    pub async fn link(&self, name: &str) -> Result<Option<LinkMessage>> {
        let mut found = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match found.try_next().await {
            Ok(link) => Ok(link),
            Err(rtnetlink::Error::NetlinkError(m))
                if m.code.map(|c| -c.get()) == Some(libc::ENODEV) =>
            {
                Ok(None)
            }
            Err(e) => Err(request(format!("looking up link {name}"))(e)),
        }
    }

    pub async fn index(&self, name: &str) -> Result<u32> {
        self.link(name)
            .await?
            .map(|l| l.header.index)
            .ok_or_else(|| NetlinkError::Io(format!("link {name} does not exist")))
    }

    pub async fn links(&self) -> Result<Vec<LinkMessage>> {
        self.handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(request("listing links"))
    }

    pub async fn add_link(&self, msg: LinkMessage, what: &str) -> Result<()> {
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(request(format!("creating {what}")))
    }

    pub async fn set_link(&self, msg: LinkMessage, what: &str) -> Result<()> {
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(request(format!("configuring {what}")))
    }

    pub async fn del_link(&self, index: u32) -> Result<()> {
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(request(format!("deleting link {index}")))
    }

    /// Moves a link into the namespace open at `netns`, giving it `name` there.
    pub async fn move_link(&self, index: u32, netns: &std::fs::File, name: &str) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index)
            .setns_by_fd(netns.as_raw_fd())
            .name(name.to_string())
            .build();
        self.set_link(msg, &format!("moving link {index} as {name}"))
            .await
    }

    /// A fresh veth pair: `host` here, the other end in `task` (open at `task_path`)
    /// named `ifname`, both still down. Whatever a crash left of an earlier pair is
    /// removed first. Returns the task end's index.
    pub async fn veth_into(
        &self,
        host: &str,
        task: &Netlink,
        task_path: &Path,
        ifname: &str,
        mtu: u32,
    ) -> Result<u32> {
        // The peer's name here before it moves: unique, since `host` is.
        let staging = format!("t{}", &host[..host.len().min(14)]);
        if let Some(l) = task.link(ifname).await? {
            task.del_link(l.header.index).await?;
        }
        for name in [host, staging.as_str()] {
            if let Some(l) = self.link(name).await? {
                self.del_link(l.header.index).await?;
            }
        }
        self.add_link(
            LinkVeth::new(host, &staging).mtu(mtu).build(),
            &format!("veth {host}"),
        )
        .await?;
        let moved = async {
            let peer = self.index(&staging).await?;
            let file = std::fs::File::open(task_path)
                .map_err(|e| NetlinkError::Io(format!("opening {}: {e}", task_path.display())))?;
            self.move_link(peer, &file, ifname).await?;
            task.index(ifname).await
        };
        let moved = moved.await;
        if moved.is_err()
            && let Ok(Some(l)) = self.link(host).await
        {
            // The task went away meanwhile (its namespace with it): deleting this end
            // deletes the pair, which would otherwise stay behind here.
            let _ = self.del_link(l.header.index).await;
        }
        moved
    }

    /// Brings a link up, with its MTU, MAC and bridge (when given).
    pub async fn up(
        &self,
        index: u32,
        mtu: Option<u32>,
        mac: Option<Mac>,
        controller: Option<u32>,
    ) -> Result<()> {
        let mut b = LinkUnspec::new_with_index(index).up();
        if let Some(mtu) = mtu {
            b = b.mtu(mtu);
        }
        if let Some(mac) = mac {
            b = b.address(mac.to_vec());
        }
        if let Some(c) = controller {
            b = b.controller(c);
        }
        self.set_link(b.build(), &format!("link {index}")).await
    }

    pub async fn ipv4_addrs(&self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>> {
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(request("listing addresses"))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.index == index)
            .flat_map(|m| {
                m.attributes.iter().filter_map(move |a| match a {
                    AddressAttribute::Address(IpAddr::V4(ip)) => Some((*ip, m.header.prefix_len)),
                    _ => None,
                })
            })
            .collect())
    }

    /// Adds an address unless the link already has it.
    pub async fn ensure_addr(&self, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<()> {
        if self.ipv4_addrs(index).await?.contains(&(ip, prefix)) {
            return Ok(());
        }
        self.handle
            .address()
            .add(index, IpAddr::V4(ip), prefix)
            .execute()
            .await
            .map_err(request(format!("adding {ip}/{prefix}")))
    }

    /// Sets the default route through `gateway` (replacing any other).
    pub async fn default_route(&self, gateway: Ipv4Addr) -> Result<()> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .build();
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(request(format!("routing through {gateway}")))
    }

    /// The gateway of the IPv4 default route, if there is one.
    pub async fn default_gateway(&self) -> Result<Option<Ipv4Addr>> {
        let query = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let routes: Vec<_> = self
            .handle
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .map_err(request("listing routes"))?;
        Ok(routes
            .iter()
            .filter(|r| r.header.destination_prefix_length == 0)
            .find_map(|r| {
                r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(RouteAddress::Inet(gw)) => Some(*gw),
                    _ => None,
                })
            }))
    }

    /// IPv4 addresses per link name.
    pub async fn addresses_by_link(&self) -> Result<Vec<(String, Vec<Ipv4Addr>)>> {
        let mut out = Vec::new();
        for l in self.links().await? {
            let ips = self.ipv4_addrs(l.header.index).await?;
            if let Some(name) = link_name(&l) {
                out.push((
                    name.to_string(),
                    ips.into_iter().map(|(ip, _)| ip).collect(),
                ));
            }
        }
        Ok(out)
    }

    /// Static forwarding entries on a vxlan device: MAC -> remote VTEP.
    pub async fn fdb(&self, vxlan: u32) -> Result<Vec<(Mac, Ipv4Addr)>> {
        let msgs = self.neighbour_dump(AddressFamily::Bridge).await?;
        Ok(vxlan_entries(&msgs, vxlan))
    }

    pub async fn fdb_replace(&self, vxlan: u32, mac: Mac, vtep: Ipv4Addr) -> Result<()> {
        self.handle
            .neighbours()
            .add_bridge(vxlan, &mac)
            .destination(IpAddr::V4(vtep))
            .flags(NeighbourFlags::Own)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(request(format!(
                "adding fdb {} -> {vtep}",
                mac_string(&mac)
            )))
    }

    pub async fn fdb_del(&self, vxlan: u32, mac: Mac, vtep: Ipv4Addr) -> Result<()> {
        self.del_bridge_entry(vxlan, mac, NeighbourFlags::Own, Some(vtep), "fdb")
            .await
    }

    /// Deletes one AF_BRIDGE neighbour: the vxlan device's own (with its VTEP) or a
    /// bridge's (Controller).
    async fn del_bridge_entry(
        &self,
        index: u32,
        mac: Mac,
        flags: NeighbourFlags,
        vtep: Option<Ipv4Addr>,
        what: &str,
    ) -> Result<()> {
        let msg = bridge_entry(index, mac, flags, vtep);
        self.handle
            .neighbours()
            .del(msg)
            .execute()
            .await
            .map_err(request(format!("deleting {what} {}", mac_string(&mac))))
    }

    /// Turns MAC learning off on a bridge port: the reconciler programs every entry
    /// itself. A learned entry outlives an address that moved to another node, and the
    /// moved task may never send the frame that would re-teach it (a black hole).
    pub async fn port_learning_off(&self, port: u32) -> Result<()> {
        // Port settings travel in RTM_NEWLINK (set_port); RTM_SETLINK ignores them.
        let msg = LinkBridgePort::new(port).learning(false).build();
        self.handle
            .link()
            .set_port(msg)
            .execute()
            .await
            .map_err(request(format!(
                "turning learning off on bridge port {port}"
            )))
    }

    /// The bridge's forwarding entries (`bridge fdb show ... master`) other than the
    /// bridge's and ports' own addresses: MAC, port, and whether it was programmed
    /// (static) rather than learned.
    pub async fn bridge_fdb(&self) -> Result<Vec<BridgeEntry>> {
        let msgs = self.neighbour_dump(AddressFamily::Bridge).await?;
        Ok(bridge_entries(&msgs))
    }

    /// A static bridge entry: frames for `mac` leave through `port` (and nowhere else).
    pub async fn bridge_fdb_replace(&self, port: u32, mac: Mac) -> Result<()> {
        self.handle
            .neighbours()
            .add_bridge(port, &mac)
            .flags(NeighbourFlags::Controller)
            .state(NeighbourState::Noarp)
            .replace()
            .execute()
            .await
            .map_err(request(format!(
                "adding bridge entry {} on port {port}",
                mac_string(&mac)
            )))
    }

    pub async fn bridge_fdb_del(&self, port: u32, mac: Mac) -> Result<()> {
        self.del_bridge_entry(port, mac, NeighbourFlags::Controller, None, "bridge entry")
            .await
    }

    /// Permanent IPv4 neighbours on a device: IP -> MAC.
    pub async fn neighbours(&self, index: u32) -> Result<Vec<(Ipv4Addr, Mac)>> {
        let msgs = self.neighbour_dump(AddressFamily::Inet).await?;
        Ok(permanent_neighbours(&msgs, index))
    }

    pub async fn neighbour_replace(&self, index: u32, ip: Ipv4Addr, mac: Mac) -> Result<()> {
        self.handle
            .neighbours()
            .add(index, IpAddr::V4(ip))
            .link_layer_address(&mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(request(format!("adding neighbour {ip}")))
    }

    pub async fn neighbour_del(&self, index: u32, ip: Ipv4Addr) -> Result<()> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.ifindex = index;
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        self.handle
            .neighbours()
            .del(msg)
            .execute()
            .await
            .map_err(request(format!("deleting neighbour {ip}")))
    }

    async fn neighbour_dump(&self, family: AddressFamily) -> Result<Vec<NeighbourMessage>> {
        self.handle
            .neighbours()
            .get()
            .set_address_family(family)
            .execute()
            .try_collect()
            .await
            .map_err(request("listing neighbours"))
    }
}

/// A vxlan device's own forwarding entries (MAC -> VTEP), without the all-zero default
/// destinations.
fn vxlan_entries(msgs: &[NeighbourMessage], vxlan: u32) -> Vec<(Mac, Ipv4Addr)> {
    msgs.iter()
        .filter(|m| m.header.ifindex == vxlan && m.header.flags.contains(NeighbourFlags::Own))
        .filter_map(|m| Some((lladdr(m)?, destination(m)?)))
        .filter(|(mac, _)| *mac != [0; 6])
        .collect()
}

/// A bridge's entries on its ports (they name a Controller), without the bridge's and
/// ports' own addresses (permanent); NOARP ones were programmed, the rest learned.
fn bridge_entries(msgs: &[NeighbourMessage]) -> Vec<BridgeEntry> {
    msgs.iter()
        .filter(|m| {
            m.attributes
                .iter()
                .any(|a| matches!(a, NeighbourAttribute::Controller(_)))
        })
        .filter(|m| m.header.state != NeighbourState::Permanent)
        .filter_map(|m| {
            Some(BridgeEntry {
                mac: lladdr(m)?,
                port: m.header.ifindex,
                programmed: m.header.state == NeighbourState::Noarp,
            })
        })
        .collect()
}

/// The permanent IPv4 neighbours (IP -> MAC) on one device.
fn permanent_neighbours(msgs: &[NeighbourMessage], index: u32) -> Vec<(Ipv4Addr, Mac)> {
    msgs.iter()
        .filter(|m| m.header.ifindex == index && m.header.state == NeighbourState::Permanent)
        .filter_map(|m| Some((destination(m)?, lladdr(m)?)))
        .collect()
}

/// The AF_BRIDGE neighbour that names one entry to delete.
fn bridge_entry(
    index: u32,
    mac: Mac,
    flags: NeighbourFlags,
    vtep: Option<Ipv4Addr>,
) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = index;
    msg.header.flags = flags;
    msg.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    if let Some(vtep) = vtep {
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                vtep,
            )));
    }
    msg
}

fn lladdr(m: &NeighbourMessage) -> Option<Mac> {
    m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(l) => l.as_slice().try_into().ok(),
        _ => None,
    })
}

fn destination(m: &NeighbourMessage) -> Option<Ipv4Addr> {
    m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
        // Bridge-family (FDB) messages carry the VTEP as raw bytes.
        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
            <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from)
        }
        _ => None,
    })
}

/// A link's name.
pub fn link_name(l: &LinkMessage) -> Option<&str> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

/// A link's MTU.
pub fn link_mtu(l: &LinkMessage) -> Option<u32> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(m) => Some(*m),
        _ => None,
    })
}

/// The bridge a link is enslaved to.
pub fn link_controller(l: &LinkMessage) -> Option<u32> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(c) => Some(*c),
        _ => None,
    })
}

/// The ports something listens on in the namespace at `path` (IPv4 and IPv6): TCP
/// sockets in LISTEN, UDP sockets bound and unconnected. Read from /proc/thread-self/net
/// by a thread inside the namespace.
pub async fn listening_ports(path: &Path) -> std::io::Result<Listening> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        crate::sys::run_in_netns(&path, || Listening {
            tcp: bound_ports(&["tcp", "tcp6"], "0A"),
            udp: bound_ports(&["udp", "udp6"], "07"),
        })
    })
    .await
    .map_err(std::io::Error::other)?
}

#[derive(Debug, Default)]
pub struct Listening {
    pub tcp: HashSet<u16>,
    pub udp: HashSet<u16>,
}

/// Local ports of sockets in `state` (hex, as /proc/net shows it) in these tables.
fn bound_ports(tables: &[&str], state: &str) -> HashSet<u16> {
    tables
        .iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/thread-self/net/{t}")).ok())
        .flat_map(|text| ports_in(&text, state))
        .collect()
}

/// The local ports of a /proc/net/{tcp,udp}[6] table's sockets in `state`, leaving out
/// 127.0.0.11 (shoal's own resolver).
fn ports_in(table: &str, state: &str) -> HashSet<u16> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // local_address is ADDR:PORT in hex.
            let local = *cols.get(1)?;
            if cols.get(3) != Some(&state) || local.starts_with("0B00007F:") {
                return None;
            }
            u16::from_str_radix(local.rsplit(':').next()?, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_core::ErrorMessage;

    const MAC: Mac = [0x02, 0x42, 10, 0, 1, 5];
    const VTEP: Ipv4Addr = Ipv4Addr::new(192, 168, 56, 12);

    /// A neighbour as the kernel dumps it.
    fn dumped(
        index: u32,
        state: NeighbourState,
        flags: NeighbourFlags,
        attributes: Vec<NeighbourAttribute>,
    ) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.ifindex = index;
        m.header.state = state;
        m.header.flags = flags;
        m.attributes = attributes;
        m
    }

    fn lladdr_of(mac: Mac) -> NeighbourAttribute {
        NeighbourAttribute::LinkLayerAddress(mac.to_vec())
    }

    #[test]
    fn vxlan_entries_are_the_devices_own_with_a_vtep_and_not_the_default() {
        // FDB dumps carry the VTEP as raw bytes.
        let to = |ip: Ipv4Addr| {
            NeighbourAttribute::Destination(NeighbourAddress::Other(ip.octets().to_vec()))
        };
        let msgs = vec![
            dumped(
                7,
                NeighbourState::Permanent,
                NeighbourFlags::Own,
                vec![lladdr_of(MAC), to(VTEP)],
            ),
            // The all-zero entry floods unknown MACs: not a task's.
            dumped(
                7,
                NeighbourState::Permanent,
                NeighbourFlags::Own,
                vec![lladdr_of([0; 6]), to(VTEP)],
            ),
            // Another device's, and one the bridge holds (not NTF_SELF).
            dumped(
                8,
                NeighbourState::Permanent,
                NeighbourFlags::Own,
                vec![lladdr_of(MAC), to(VTEP)],
            ),
            dumped(
                7,
                NeighbourState::Noarp,
                NeighbourFlags::Controller,
                vec![lladdr_of(MAC)],
            ),
        ];
        assert_eq!(vxlan_entries(&msgs, 7), [(MAC, VTEP)]);
    }

    #[test]
    fn bridge_entries_tell_programmed_from_learned_and_skip_own_addresses() {
        let on_bridge = NeighbourAttribute::Controller(3);
        let learned: Mac = [0x02, 0x42, 10, 0, 1, 6];
        let msgs = vec![
            dumped(
                11,
                NeighbourState::Noarp,
                NeighbourFlags::Controller,
                vec![lladdr_of(MAC), on_bridge.clone()],
            ),
            dumped(
                12,
                NeighbourState::Reachable,
                NeighbourFlags::Controller,
                vec![lladdr_of(learned), on_bridge.clone()],
            ),
            // A port's own address (permanent), and an entry of no bridge.
            dumped(
                12,
                NeighbourState::Permanent,
                NeighbourFlags::Controller,
                vec![lladdr_of([2; 6]), on_bridge],
            ),
            dumped(
                13,
                NeighbourState::Noarp,
                NeighbourFlags::Own,
                vec![lladdr_of([3; 6])],
            ),
        ];
        assert_eq!(
            bridge_entries(&msgs),
            [
                BridgeEntry {
                    mac: MAC,
                    port: 11,
                    programmed: true
                },
                BridgeEntry {
                    mac: learned,
                    port: 12,
                    programmed: false
                },
            ]
        );
    }

    #[test]
    fn only_permanent_neighbours_of_the_device_count() {
        let ip = Ipv4Addr::new(10, 0, 1, 5);
        let dst = NeighbourAttribute::Destination(NeighbourAddress::Inet(ip));
        let msgs = vec![
            dumped(
                7,
                NeighbourState::Permanent,
                NeighbourFlags::empty(),
                vec![dst.clone(), lladdr_of(MAC)],
            ),
            dumped(
                7,
                NeighbourState::Stale,
                NeighbourFlags::empty(),
                vec![dst.clone(), lladdr_of([1; 6])],
            ),
            dumped(
                9,
                NeighbourState::Permanent,
                NeighbourFlags::empty(),
                vec![dst, lladdr_of([2; 6])],
            ),
        ];
        assert_eq!(permanent_neighbours(&msgs, 7), [(ip, MAC)]);
    }

    #[test]
    fn a_deleted_entry_names_its_device_mac_and_vtep() {
        let m = bridge_entry(7, MAC, NeighbourFlags::Own, Some(VTEP));
        assert_eq!(m.header.family, AddressFamily::Bridge);
        assert_eq!((m.header.ifindex, m.header.flags), (7, NeighbourFlags::Own));
        assert_eq!((lladdr(&m), destination(&m)), (Some(MAC), Some(VTEP)));
        let on_bridge = bridge_entry(11, MAC, NeighbourFlags::Controller, None);
        assert_eq!(destination(&on_bridge), None);
    }

    #[test]
    fn listening_ports_are_read_from_proc_tables_without_the_resolver() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue
   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000
   1: 0B00007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000
   2: 0100000A:1F90 0200000A:C350 01 00000000:00000000 00:00000000 00000000
   3: garbage";
        assert_eq!(ports_in(tcp, "0A"), HashSet::from([80]));
        assert_eq!(ports_in(tcp, "01"), HashSet::from([8080]));
    }

    #[test]
    fn errno_comes_from_the_kernels_answer_only() {
        let mut nack = ErrorMessage::default();
        nack.code = std::num::NonZeroI32::new(-17);
        let exists = NetlinkError::Request {
            what: "adding link".into(),
            source: rtnetlink::Error::NetlinkError(nack),
        };
        assert_eq!(errno(&exists), Some(17));
        assert_eq!(errno(&NetlinkError::Io("no namespace".into())), None);
        assert_eq!(mac_string(&MAC), "02:42:0a:00:01:05");
    }
}

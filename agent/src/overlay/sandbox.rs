//! One overlay network's namespace on this node: a bridge (br0, holding the network's
//! gateway address) and a vxlan device (vxlan0). The vxlan device is made in the node's
//! namespace, so its UDP socket stays bound to the node's address there, and then moved
//! in, as Docker does. Every step checks what exists first, so a re-run after a crash
//! adopts what is left instead of failing with "file exists". No bridge port learns:
//! every forwarding entry is programmed (reconcile.rs), so none can outlive a move.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rtnetlink::{LinkBridge, LinkVxlan};

use crate::netlink::{Netlink, NetlinkError};

pub const VXLAN_PORT: u16 = 4789;
pub const BRIDGE: &str = "br0";
pub const VXLAN: &str = "vxlan0";

/// What the sandbox of one network needs to be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPlan {
    pub id: String,
    pub name: String,
    pub vni: u32,
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
}

pub struct Sandbox {
    pub plan: NetworkPlan,
    pub netns: String,
    pub nl: Netlink,
    pub bridge: u32,
    pub vxlan: u32,
}

pub fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

pub fn ip(args: &[&str]) -> Result<(), NetlinkError> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| NetlinkError::Io(format!("running ip: {e}")))?;
    if !out.status.success() {
        return Err(NetlinkError::Io(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

impl Sandbox {
    /// Builds (or adopts) the namespace `netns` for `plan`; `node` is the agent's own
    /// namespace, where the vxlan device is created with `vtep` as its source.
    pub async fn ensure(
        plan: &NetworkPlan,
        netns: &str,
        node: &Netlink,
        vtep: Ipv4Addr,
    ) -> Result<Sandbox, NetlinkError> {
        let path = netns_path(netns);
        if !path.exists() {
            ip(&["netns", "add", netns])?;
        }
        let nl = Netlink::in_netns(&path).await?;
        let lo = nl.index("lo").await?;
        nl.up(lo, None, None, None).await?;
        let bridge = if let Some(l) = nl.link(BRIDGE).await? {
            l.header.index
        } else {
            nl.add_link(LinkBridge::new(BRIDGE).mtu(plan.mtu).build(), "the bridge")
                .await?;
            nl.index(BRIDGE).await?
        };
        nl.ensure_addr(bridge, plan.gateway, plan.prefix).await?;
        nl.up(bridge, Some(plan.mtu), None, None).await?;
        let vxlan = if let Some(l) = nl.link(VXLAN).await? {
            l.header.index
        } else {
            create_vxlan(plan.vni, node, vtep, &path).await?;
            nl.index(VXLAN).await?
        };
        nl.up(vxlan, Some(plan.mtu), None, Some(bridge)).await?;
        nl.port_learning_off(vxlan).await?;
        Ok(Sandbox {
            plan: plan.clone(),
            netns: netns.to_string(),
            nl,
            bridge,
            vxlan,
        })
    }

    /// Whether the namespace, both devices and the gateway address are still there.
    pub async fn intact(&self) -> bool {
        let gateway = (self.plan.gateway, self.plan.prefix);
        netns_path(&self.netns).exists()
            && matches!(self.nl.link(VXLAN).await, Ok(Some(_)))
            && match self.nl.link(BRIDGE).await {
                Ok(Some(l)) => self
                    .nl
                    .ipv4_addrs(l.header.index)
                    .await
                    .is_ok_and(|a| a.contains(&gateway)),
                _ => false,
            }
    }

    /// Removes the namespace. The vxlan device goes first, synchronously: a namespace
    /// is torn down by the kernel later, and until then its vxlan device still holds the
    /// VNI, so a sandbox made again at once for the same network would fail.
    pub fn remove(netns: &str) {
        if !netns_path(netns).exists() {
            return;
        }
        let _ = ip(&["-n", netns, "link", "del", VXLAN]);
        if let Err(e) = ip(&["netns", "del", netns]) {
            tracing::warn!("removing {netns}: {e}");
        }
    }
}

/// Creates the vxlan device in the node's namespace under a per-VNI name, then moves it
/// into the sandbox as vxlan0. A device left half-way by a crash is replaced.
async fn create_vxlan(
    vni: u32,
    node: &Netlink,
    vtep: Ipv4Addr,
    sandbox: &Path,
) -> Result<(), NetlinkError> {
    let staging = format!("shvx{vni}");
    if let Some(old) = node.link(&staging).await? {
        node.del_link(old.header.index).await?;
    }
    let msg = LinkVxlan::new(&staging, vni)
        .port(VXLAN_PORT)
        .local(vtep)
        .learning(false)
        .proxy(true)
        .l2miss(false)
        .l3miss(false)
        .build();
    node.add_link(msg, &format!("vxlan device for VNI {vni}"))
        .await?;
    let index = node.index(&staging).await?;
    let file = std::fs::File::open(sandbox)
        .map_err(|e| NetlinkError::Io(format!("opening {}: {e}", sandbox.display())))?;
    if let Err(e) = node.move_link(index, &file, VXLAN).await {
        let _ = node.del_link(index).await;
        return Err(e);
    }
    Ok(())
}

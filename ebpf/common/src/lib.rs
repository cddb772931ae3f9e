//! What the TC programs (ebpf/, `no_std`, bpfel) and the agent (agent/src/lb/ebpf.rs)
//! must agree on, written once: the maps' key and value layouts, the names of maps and
//! programs, and the rule that gives a task its MAC. The `user` feature (the agent's)
//! makes the map types `aya::Pod`.
#![no_std]

mod types;

pub use types::*;

/// Map names: the kernel side names each map after its static (`#[map] static FRONTENDS`),
/// so these must match those identifiers; the agent's tests check the built object.
pub mod maps {
    pub const FRONTENDS: &str = "FRONTENDS";
    pub const MAGLEV: &str = "MAGLEV";
    pub const BACKENDS: &str = "BACKENDS";
    pub const FLOWS: &str = "FLOWS";
    pub const REPLIES: &str = "REPLIES";
    pub const CONFIG: &str = "CONFIG";
    pub const FRONTEND_STATS: &str = "FRONTEND_STATS";
    pub const BACKEND_STATS: &str = "BACKEND_STATS";
    /// Every map, as the object defines them.
    pub const ALL: [&str; 8] = [
        FRONTENDS,
        MAGLEV,
        BACKENDS,
        FLOWS,
        REPLIES,
        CONFIG,
        FRONTEND_STATS,
        BACKEND_STATS,
    ];
}

/// Program names (the `#[classifier]` functions').
pub mod programs {
    /// On the node's interfaces (ingress): published ports to a task.
    pub const MESH_IN: &str = "shoal_mesh_in";
    /// On the ingress leg (ingress): the mesh's replies back to the client.
    pub const MESH_REPLY: &str = "shoal_mesh_reply";
    /// On a task's veth (what the task sends): VIPs to a task, ARP for VIPs.
    pub const VIP_OUT: &str = "shoal_vip_out";
    /// On a task's veth (what the task receives): replies' source back to the VIP.
    pub const VIP_BACK: &str = "shoal_vip_back";
    pub const ALL: [&str; 4] = [MESH_IN, MESH_REPLY, VIP_OUT, VIP_BACK];
}

/// A task's MAC, Docker's convention: 02:42 followed by its IPv4 address, so a MAC never
/// clashes within a subnet and every node computes the same one.
pub const fn mac_for(ipv4: [u8; 4]) -> [u8; 6] {
    [0x02, 0x42, ipv4[0], ipv4[1], ipv4[2], ipv4[3]]
}

#[cfg(feature = "user")]
mod user {
    use super::types::{Backend, Config, Counter, Frontend, FrontendKey, MaglevTable};
    // SAFETY: plain #[repr(C)] data with explicit padding, valid for any bit pattern.
    unsafe impl aya::Pod for FrontendKey {}
    unsafe impl aya::Pod for Frontend {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for MaglevTable {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for Counter {}
}

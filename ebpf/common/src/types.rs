//! Map keys and values shared by the TC programs and the agent. Plain #[repr(C)] data,
//! explicit padding, addresses and ports in network byte order as they sit in packets.

/// Slots of one frontend's Maglev table (a prime: every backend's permutation covers it).
pub const MAGLEV_SLOTS: u32 = 257;
/// Frontends (VIPs and published ports) the maps hold by default.
pub const MAX_FRONTENDS: u32 = 16384;
/// Backends the maps hold by default.
pub const MAX_BACKENDS: u32 = 65536;
/// Connections tracked (least recently used ones are forgotten first).
pub const MAX_FLOWS: u32 = 262_144;

/// A frontend by what packets carry: destination address (0 for a published port: the
/// node's address), port, protocol (6 TCP, 17 UDP).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FrontendKey {
    pub addr: u32,
    pub port: u16,
    pub proto: u8,
    pub pad: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Frontend {
    /// Index of its Maglev table and of its counters.
    pub id: u32,
    /// Live backends; 0: connections are refused.
    pub backends: u32,
}

/// One frontend's Maglev table, one map element: the backend id in each slot (0: none).
/// Written whole, so a frontend's table changes in one step and costs one map write.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaglevTable {
    pub ids: [u32; MAGLEV_SLOTS as usize],
}

impl Default for MaglevTable {
    fn default() -> Self {
        MaglevTable {
            ids: [0; MAGLEV_SLOTS as usize],
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    pub addr: u32,
    /// 0: the port the client asked for (VIPs).
    pub port: u16,
    pub pad: u16,
}

/// A connection as its packets arrive at the hook that saw it first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub pad: [u8; 3],
}

/// Where a tracked connection goes: kept while backends change.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    pub backend_id: u32,
    pub frontend_id: u32,
    pub backend_addr: u32,
    pub backend_port: u16,
    /// The source port the connection leaves with (mesh: after SNAT).
    pub nat_port: u16,
}

/// How a reply is turned back into what the client expects, keyed by the reply's
/// FlowKey (backend to node leg, or backend to task).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// The reply's new source: the node address or the VIP, and the port asked for.
    pub from_addr: u32,
    pub from_port: u16,
    /// The reply's new destination (mesh: the client behind the SNAT).
    pub to_port: u16,
    pub to_addr: u32,
    /// Mesh: the interface the request came in on, and the MACs to send back with.
    pub ifindex: u32,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
}

/// The node's own facts the mesh needs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub node_addr: u32,
    pub leg_addr: u32,
    pub leg_ifindex: u32,
    pub leg_mac: [u8; 6],
    pub pad: [u8; 2],
}

/// Per frontend or backend, per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
    pub connections: u64,
}

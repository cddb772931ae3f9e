//! shoal's TC programs: the eBPF load balancer (agent/src/lb/ebpf.rs loads them).
//!
//! The routing mesh: `shoal_mesh_in` sits on the node's interfaces (ingress). A TCP or
//! UDP packet to the node's address on a published port is given a backend (a task on
//! the ingress overlay): the connection's first packet picks one by Maglev hashing, the
//! flow table keeps it for the rest of the connection. The packet is rewritten (node
//! address:port -> task address:port, client -> the node's ingress leg with a free
//! source port, checksums fixed) and sent out the leg. `shoal_mesh_reply` sits on the
//! leg (ingress) and turns replies back into what the client expects, out the interface
//! the request came in on, with the MACs it came with.
//!
//! Service VIPs: `shoal_vip_out` sits on each task's veth in its network's namespace
//! (ingress: what the task sends). It answers the task's ARP for a VIP, and gives a
//! connection to a VIP a backend the same way (Maglev, then the flow table), rewriting
//! the destination and its MAC so the bridge carries it to the task (local, or over
//! VXLAN). `shoal_vip_back` (egress of the same veth: what the task receives) turns the
//! replies' source back into the VIP.
//!
//! Every map is pinned by name, so forwarding goes on while the agent restarts.
#![no_std]
#![no_main]

use aya_ebpf::bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, TC_ACT_OK, TC_ACT_SHOT};
use aya_ebpf::helpers::generated::bpf_redirect;
use aya_ebpf::macros::{classifier, map};
use aya_ebpf::maps::{Array, HashMap, LruHashMap, PerCpuArray};
use aya_ebpf::programs::TcContext;
use shoal_ebpf_common::*;

#[map]
static FRONTENDS: HashMap<FrontendKey, Frontend> = HashMap::pinned(MAX_FRONTENDS, 0);
#[map]
static MAGLEV: Array<MaglevTable> = Array::pinned(MAX_FRONTENDS, 0);
#[map]
static BACKENDS: Array<Backend> = Array::pinned(MAX_BACKENDS, 0);
#[map]
static FLOWS: LruHashMap<FlowKey, Flow> = LruHashMap::pinned(MAX_FLOWS, 0);
#[map]
static REPLIES: LruHashMap<FlowKey, Reply> = LruHashMap::pinned(MAX_FLOWS, 0);
#[map]
static CONFIG: Array<Config> = Array::pinned(1, 0);
#[map]
static FRONTEND_STATS: PerCpuArray<Counter> = PerCpuArray::pinned(MAX_FRONTENDS, 0);
#[map]
static BACKEND_STATS: PerCpuArray<Counter> = PerCpuArray::pinned(MAX_BACKENDS, 0);

const ETH_P_IP: u16 = 0x0800;
const IP_PROTO: usize = 23;
const IP_CSUM: usize = 24;
const IP_SRC: usize = 26;
const IP_DST: usize = 30;
const L4_SPORT: usize = 34;
const L4_DPORT: usize = 36;
const TCP_FLAGS: usize = 47;
const TCP_CSUM: usize = 50;
const UDP_CSUM: usize = 40;
const TCP: u8 = 6;
const UDP: u8 = 17;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// An IPv4 TCP or UDP packet without IP options, as loaded (network byte order).
struct Packet {
    saddr: u32,
    daddr: u32,
    sport: u16,
    dport: u16,
    proto: u8,
    syn: bool,
}

impl Packet {
    fn key(&self) -> FlowKey {
        FlowKey {
            saddr: self.saddr,
            daddr: self.daddr,
            sport: self.sport,
            dport: self.dport,
            proto: self.proto,
            pad: [0; 3],
        }
    }

    /// The key of a reply from `from` to `to` (address, port) in this packet's protocol.
    fn reply_key(&self, from: (u32, u16), to: (u32, u16)) -> FlowKey {
        FlowKey {
            saddr: from.0,
            daddr: to.0,
            sport: from.1,
            dport: to.1,
            proto: self.proto,
            pad: [0; 3],
        }
    }

    /// How a reply to this packet is turned back: from where it was sent, to its sender.
    fn answer(&self, ifindex: u32, src_mac: [u8; 6], dst_mac: [u8; 6]) -> Reply {
        Reply {
            from_addr: self.daddr,
            from_port: self.dport,
            to_port: self.sport,
            to_addr: self.saddr,
            ifindex,
            src_mac,
            dst_mac,
        }
    }

    /// A UDP checksum of 0 means "none": it must stay 0 (and never become 0).
    fn csum_flags(&self) -> u64 {
        if self.proto == UDP {
            BPF_F_MARK_MANGLED_0 as u64
        } else {
            0
        }
    }

    fn csum_at(&self) -> usize {
        if self.proto == TCP {
            TCP_CSUM
        } else {
            UDP_CSUM
        }
    }
}

// Inlined: called as a BPF function, its Option comes back through the stack, and
// kernels before 6.3 refuse to read what the None path left unwritten there.
#[inline(always)]
fn parse(ctx: &TcContext) -> Option<Packet> {
    let ethertype: u16 = ctx.load(12).ok()?;
    if u16::from_be(ethertype) != ETH_P_IP {
        return None;
    }
    // Version 4, header length 5 words; no fragments (ports are in the first one only).
    let version_ihl: u8 = ctx.load(14).ok()?;
    let frag: u16 = ctx.load(20).ok()?;
    if version_ihl != 0x45 || u16::from_be(frag) & 0x3fff != 0 {
        return None;
    }
    let proto: u8 = ctx.load(IP_PROTO).ok()?;
    if proto != TCP && proto != UDP {
        return None;
    }
    let flags: u8 = if proto == TCP {
        ctx.load(TCP_FLAGS).ok()?
    } else {
        0
    };
    Some(Packet {
        saddr: ctx.load(IP_SRC).ok()?,
        daddr: ctx.load(IP_DST).ok()?,
        sport: ctx.load(L4_SPORT).ok()?,
        dport: ctx.load(L4_DPORT).ok()?,
        proto,
        syn: proto == TCP && flags & (SYN | ACK) == SYN,
    })
}

/// murmur3's finaliser over the 5-tuple: the same flow always lands on the same slot.
fn flow_hash(k: &FlowKey) -> u32 {
    let mut h = k.saddr ^ k.daddr.rotate_left(13) ^ ((k.sport as u32) << 16 | k.dport as u32);
    h ^= k.proto as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The MAC of the task at `addr` (network byte order, as in the packet).
fn task_mac(addr: u32) -> [u8; 6] {
    mac_for(addr.to_ne_bytes())
}

fn set_addr(ctx: &TcContext, p: &Packet, at: usize, old: u32, new: u32) -> Result<(), i64> {
    if old == new {
        return Ok(());
    }
    ctx.l4_csum_replace(
        p.csum_at(),
        old as u64,
        new as u64,
        p.csum_flags() | BPF_F_PSEUDO_HDR as u64 | 4,
    )?;
    ctx.l3_csum_replace(IP_CSUM, old as u64, new as u64, 4)?;
    ctx.store(at, &new, 0)
}

fn set_port(ctx: &TcContext, p: &Packet, at: usize, old: u16, new: u16) -> Result<(), i64> {
    if old == new {
        return Ok(());
    }
    ctx.l4_csum_replace(p.csum_at(), old as u64, new as u64, p.csum_flags() | 2)?;
    ctx.store(at, &new, 0)
}

fn set_macs(ctx: &TcContext, src: &[u8; 6], dst: &[u8; 6]) -> Result<(), i64> {
    ctx.store(0, dst, 0)?;
    ctx.store(6, src, 0)
}

fn count(stats: &PerCpuArray<Counter>, index: u32, bytes: u32, connection: bool) {
    if let Some(c) = stats.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot, only this CPU writes it now.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes as u64;
            if connection {
                (*c).connections += 1;
            }
        }
    }
}

/// Where a packet to a frontend goes.
enum Route {
    /// Its connection's flow.
    Known(Flow),
    /// A new connection, to this backend (ID and entry).
    New(u32, Backend),
    /// Nothing to send it to.
    NoBackend,
}

/// The connection's flow, or a backend from the frontend's Maglev table for a new one.
/// A TCP SYN always chooses afresh: its tuple may be an old connection's.
#[inline(always)] // as parse: no Option or enum back through the stack
fn route(p: &Packet, fe: &Frontend) -> Route {
    // SAFETY: copied out at once.
    let known = if p.syn {
        None
    } else {
        unsafe { FLOWS.get(p.key()) }.copied()
    };
    match known {
        Some(f) => Route::Known(f),
        None => match choose(fe, &p.key()) {
            Some((id, backend)) => Route::New(id, backend),
            None => Route::NoBackend,
        },
    }
}

/// A TCP or UDP packet that is a reply of a tracked connection, with how to turn it back.
#[inline(always)] // as parse: no Option or enum back through the stack
fn reply_for(ctx: &TcContext) -> Option<(Packet, Reply)> {
    let p = parse(ctx)?;
    // SAFETY: copied out at once.
    let r = unsafe { REPLIES.get(p.key()) }.copied()?;
    Some((p, r))
}

/// Records a new connection: its flow, how its replies are turned back, its counts.
fn track(key: FlowKey, flow: Flow, reply_key: FlowKey, reply: Reply) -> Result<(), i64> {
    REPLIES.insert(reply_key, reply, 0).map_err(|e| e as i64)?;
    FLOWS.insert(key, flow, 0).map_err(|e| e as i64)?;
    count(&FRONTEND_STATS, flow.frontend_id, 0, true);
    count(&BACKEND_STATS, flow.backend_id, 0, true);
    Ok(())
}

/// Picks a backend for a new connection from the frontend's Maglev table.
fn choose(fe: &Frontend, key: &FlowKey) -> Option<(u32, Backend)> {
    let slot = flow_hash(key) % MAGLEV_SLOTS;
    // The compiler knows slot < MAGLEV_SLOTS and would drop the bounds check the
    // verifier needs (it cannot follow the multiply-and-shift the modulo becomes): read
    // back through memory, the check stays.
    // SAFETY: a read of a local.
    let slot = unsafe { core::ptr::read_volatile(&raw const slot) } as usize;
    let id = *MAGLEV.get(fe.id)?.ids.get(slot)?;
    let backend = *BACKENDS.get(id)?;
    (backend.addr != 0).then_some((id, backend))
}

/// A source port for the leg so that the reply's tuple names this connection alone.
fn nat_port(p: &Packet, backend: &Backend, leg: u32) -> Option<u16> {
    let mut candidate = p.sport;
    for attempt in 0..4u32 {
        let reply = p.reply_key((backend.addr, backend.port), (leg, candidate));
        // SAFETY: read only, copied out at once.
        match unsafe { REPLIES.get(reply) } {
            Some(r) if r.to_addr != p.saddr || r.to_port != p.sport => {
                let h = flow_hash(&p.key()).wrapping_add(attempt.wrapping_mul(0x9e37_79b9));
                candidate = u16::to_be(1024 + (h % 64512) as u16);
            }
            _ => return Some(candidate),
        }
    }
    None
}

/// A helper failing mid-rewrite leaves a half-rewritten packet: it is dropped.
fn verdict(result: Result<i32, i64>) -> i32 {
    result.unwrap_or(TC_ACT_SHOT)
}

#[classifier]
pub fn shoal_mesh_in(ctx: TcContext) -> i32 {
    verdict(mesh_in(&ctx))
}

fn mesh_in(ctx: &TcContext) -> Result<i32, i64> {
    let Some(p) = parse(ctx) else {
        return Ok(TC_ACT_OK);
    };
    let Some(cfg) = CONFIG.get(0).copied() else {
        return Ok(TC_ACT_OK);
    };
    // SAFETY: reading the context's own skb.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // The node's address, or loopback from the node itself (lo is ifindex 1 in every
    // namespace): as Swarm's mesh, curl localhost:PORT on a node reaches the service.
    let local = ifindex == LOOPBACK_IFINDEX && p.daddr.to_ne_bytes()[0] == 127;
    if cfg.leg_ifindex == 0 || (p.daddr != cfg.node_addr && !local) {
        return Ok(TC_ACT_OK);
    }
    let fkey = FrontendKey {
        addr: 0,
        port: p.dport,
        proto: p.proto,
        pad: 0,
    };
    // SAFETY: copied out at once.
    let Some(fe) = (unsafe { FRONTENDS.get(fkey) }).copied() else {
        return Ok(TC_ACT_OK);
    };
    let flow = match route(&p, &fe) {
        Route::Known(f) => f,
        // Nothing to send it to: the node answers as for a closed port.
        Route::NoBackend => return Ok(TC_ACT_OK),
        Route::New(id, backend) => {
            let Some(port) = nat_port(&p, &backend, cfg.leg_addr) else {
                return Ok(TC_ACT_SHOT);
            };
            let flow = Flow {
                backend_id: id,
                frontend_id: fe.id,
                backend_addr: backend.addr,
                backend_port: backend.port,
                nat_port: port,
            };
            let ours: [u8; 6] = ctx.load(0)?;
            let theirs: [u8; 6] = ctx.load(6)?;
            let reply_key = p.reply_key((backend.addr, backend.port), (cfg.leg_addr, port));
            let reply = p.answer(ifindex, ours, theirs);
            track(p.key(), flow, reply_key, reply)?;
            flow
        }
    };
    count(&FRONTEND_STATS, flow.frontend_id, ctx.len(), false);
    count(&BACKEND_STATS, flow.backend_id, ctx.len(), false);
    set_addr(ctx, &p, IP_DST, p.daddr, flow.backend_addr)?;
    set_addr(ctx, &p, IP_SRC, p.saddr, cfg.leg_addr)?;
    set_port(ctx, &p, L4_DPORT, p.dport, flow.backend_port)?;
    set_port(ctx, &p, L4_SPORT, p.sport, flow.nat_port)?;
    set_macs(ctx, &cfg.leg_mac, &task_mac(flow.backend_addr))?;
    // SAFETY: a plain helper call.
    Ok(unsafe { bpf_redirect(cfg.leg_ifindex, 0) } as i32)
}

#[classifier]
pub fn shoal_mesh_reply(ctx: TcContext) -> i32 {
    verdict(mesh_reply(&ctx))
}

fn mesh_reply(ctx: &TcContext) -> Result<i32, i64> {
    let Some((p, r)) = reply_for(ctx) else {
        return Ok(TC_ACT_OK);
    };
    set_addr(ctx, &p, IP_SRC, p.saddr, r.from_addr)?;
    set_addr(ctx, &p, IP_DST, p.daddr, r.to_addr)?;
    set_port(ctx, &p, L4_SPORT, p.sport, r.from_port)?;
    set_port(ctx, &p, L4_DPORT, p.dport, r.to_port)?;
    set_macs(ctx, &r.src_mac, &r.dst_mac)?;
    // SAFETY: a plain helper call.
    Ok(unsafe { bpf_redirect(r.ifindex, 0) } as i32)
}

const LOOPBACK_IFINDEX: u32 = 1;
const ETH_P_ARP: u16 = 0x0806;
const ARP_OP: usize = 20;
const ARP_SHA: usize = 22;
const ARP_SPA: usize = 28;
const ARP_THA: usize = 32;
const ARP_TPA: usize = 38;

fn vip_frontend(addr: u32, proto: u8) -> Option<Frontend> {
    let key = FrontendKey {
        addr,
        port: 0,
        proto,
        pad: 0,
    };
    // SAFETY: copied out at once.
    unsafe { FRONTENDS.get(key) }.copied()
}

/// Answers a task's ARP request for a VIP with the VIP's MAC, back out the same veth.
fn arp_reply(ctx: &TcContext) -> Result<i32, i64> {
    let op: u16 = ctx.load(ARP_OP)?;
    let target: u32 = ctx.load(ARP_TPA)?;
    if u16::from_be(op) != 1 || vip_frontend(target, TCP).is_none() {
        return Ok(TC_ACT_OK);
    }
    let asker_mac: [u8; 6] = ctx.load(ARP_SHA)?;
    let asker_ip: u32 = ctx.load(ARP_SPA)?;
    let vip_mac = task_mac(target);
    set_macs(ctx, &vip_mac, &asker_mac)?;
    ctx.store(ARP_OP, &u16::to_be(2), 0)?;
    ctx.store(ARP_SHA, &vip_mac, 0)?;
    ctx.store(ARP_SPA, &target, 0)?;
    ctx.store(ARP_THA, &asker_mac, 0)?;
    ctx.store(ARP_TPA, &asker_ip, 0)?;
    Ok(bounce(ctx))
}

#[classifier]
pub fn shoal_vip_out(ctx: TcContext) -> i32 {
    verdict(vip_out(&ctx))
}

/// Marks a Reply of a task connected to its own service through the VIP.
const HAIRPIN: u32 = u32::MAX;

fn bounce(ctx: &TcContext) -> i32 {
    // SAFETY: reading the context's own skb, then a plain helper call.
    unsafe { bpf_redirect((*ctx.skb.skb).ifindex, 0) as i32 }
}

fn vip_out(ctx: &TcContext) -> Result<i32, i64> {
    let ethertype: u16 = ctx.load(12)?;
    if u16::from_be(ethertype) == ETH_P_ARP {
        return arp_reply(ctx);
    }
    let Some(p) = parse(ctx) else {
        return Ok(TC_ACT_OK);
    };
    // SAFETY: copied out at once.
    if let Some(r) = unsafe { REPLIES.get(p.key()) }.copied()
        && r.ifindex == HAIRPIN
    {
        // A task answering itself through the VIP: back to it, from the VIP.
        set_addr(ctx, &p, IP_SRC, p.saddr, r.from_addr)?;
        set_port(ctx, &p, L4_SPORT, p.sport, r.from_port)?;
        set_addr(ctx, &p, IP_DST, p.daddr, r.to_addr)?;
        set_macs(ctx, &task_mac(r.from_addr), &task_mac(r.to_addr))?;
        return Ok(bounce(ctx));
    }
    let Some(fe) = vip_frontend(p.daddr, p.proto) else {
        return Ok(TC_ACT_OK);
    };
    let flow = match route(&p, &fe) {
        Route::Known(f) => f,
        Route::NoBackend => return Ok(TC_ACT_OK),
        Route::New(id, backend) => {
            let port = if backend.port == 0 {
                p.dport
            } else {
                backend.port
            };
            let flow = Flow {
                backend_id: id,
                frontend_id: fe.id,
                backend_addr: backend.addr,
                backend_port: port,
                nat_port: p.sport,
            };
            // The task itself (a bridge does not send a frame back out its port): it is
            // reached from the VIP, and answers the VIP.
            let hairpin = backend.addr == p.saddr;
            let answered = if hairpin { p.daddr } else { p.saddr };
            let reply_key = p.reply_key((backend.addr, port), (answered, p.sport));
            let reply = p.answer(if hairpin { HAIRPIN } else { 0 }, [0; 6], [0; 6]);
            track(p.key(), flow, reply_key, reply)?;
            flow
        }
    };
    count(&FRONTEND_STATS, flow.frontend_id, ctx.len(), false);
    count(&BACKEND_STATS, flow.backend_id, ctx.len(), false);
    set_addr(ctx, &p, IP_DST, p.daddr, flow.backend_addr)?;
    set_port(ctx, &p, L4_DPORT, p.dport, flow.backend_port)?;
    if flow.backend_addr == p.saddr {
        // To itself: from the VIP (its own address would look like a spoof), straight back.
        set_addr(ctx, &p, IP_SRC, p.saddr, p.daddr)?;
        set_macs(ctx, &task_mac(p.daddr), &task_mac(flow.backend_addr))?;
        return Ok(bounce(ctx));
    }
    ctx.store(0, &task_mac(flow.backend_addr), 0)?;
    Ok(TC_ACT_OK)
}

#[classifier]
pub fn shoal_vip_back(ctx: TcContext) -> i32 {
    verdict(vip_back(&ctx))
}

fn vip_back(ctx: &TcContext) -> Result<i32, i64> {
    let Some((p, r)) = reply_for(ctx) else {
        return Ok(TC_ACT_OK);
    };
    // Mesh replies (ifindex set) are shoal_mesh_reply's.
    if r.ifindex != 0 {
        return Ok(TC_ACT_OK);
    }
    set_addr(ctx, &p, IP_SRC, p.saddr, r.from_addr)?;
    set_port(ctx, &p, L4_SPORT, p.sport, r.from_port)?;
    Ok(TC_ACT_OK)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

//! The eBPF engine: the routing mesh in TC programs (ebpf/src/main.rs) loaded and
//! attached with aya. Published ports become frontends with a Maglev table each; the
//! programs keep every connection on its backend in a flow table of their own, rewrite
//! addresses and ports with correct checksums, and count packets, bytes and connections
//! per frontend and per backend. Maps (and tcx links) are pinned under
//! /sys/fs/bpf/shoal/<node>/<layout>; on kernels without tcx the programs sit in classic
//! TC filters, which the kernel keeps on their own (attach.rs). Either way forwarding goes
//! on while the agent restarts, and a restarted agent adopts what it finds. The mesh's program also sits on lo, so the node's own
//! clients reach a published port at localhost or the node's address, as on Swarm.
//! Service VIPs are frontends too, balanced by programs on each local task's veths;
//! host-mode ports are left to nftables (nft.rs).
//!
//! Here: loading, attaching and pinning, and the Engine. The tables' contents (ids,
//! Maglev tables, adopting what an earlier agent left) are table.rs, over the maps.rs
//! seam, so they are unit-tested without a kernel.

mod attach;
mod maps;
mod table;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aya::maps::{Array, MapData, PerCpuArray};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::SchedClassifierLink;
use aya::programs::{SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfLoader};

use super::nft::NftEngine;
use super::plan::{MeshFrontend, VipFrontend};
use super::{Counted, Engine, HostPort, LbError, Leg, PortCounters, TaskLeg, kernel};
use crate::gossip::Protocol;
use crate::sys::{BPFFS, ensure_bpffs, ifindex};

pub use attach::AttachMode;
use maps::KernelMaps;
use shoal_ebpf_common::programs::{MESH_IN, MESH_REPLY, VIP_BACK, VIP_OUT};
use shoal_ebpf_common::{Config, Counter, FrontendKey, maps as names};
use table::{Table, raw_addr, raw_port};

/// The TC programs, as build.rs found them (empty: ebpf/ was not built).
const OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/shoal-tc"));
/// Bumped whenever a map's layout changes: pinned maps of another layout are not reused
/// but unpinned. v2: one Maglev element per frontend.
const LAYOUT: &str = "v2";
/// The gateway bridge: tasks reach published ports on the node's address through it.
const GATEWAY_BRIDGE: &str = crate::overlay::gateway::BRIDGE;

struct Maps {
    table: KernelMaps,
    config: Array<MapData, Config>,
    frontend_stats: PerCpuArray<MapData, Counter>,
    backend_stats: PerCpuArray<MapData, Counter>,
}

/// What this agent has written, so it writes only changes.
#[derive(Default)]
struct Programmed {
    table: Table,
    config: Option<Config>,
    /// Interfaces with their programs attached (program, ifindex).
    attached: HashMap<(&'static str, String), u32>,
    /// Per local task, the veths its VIP programs sit on.
    task_veths: HashMap<String, Vec<String>>,
    /// lo takes replies for the node's own clients (accept_local_replies).
    local_replies: bool,
}

struct Loaded {
    ebpf: Ebpf,
    maps: Maps,
    done: Programmed,
}

pub struct EbpfEngine {
    node_addr: Ipv4Addr,
    mode: AttachMode,
    pin_dir: PathBuf,
    host: NftEngine,
    loaded: Mutex<Loaded>,
}

fn proto_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
    }
}

fn map<T>(ebpf: &mut Ebpf, name: &str) -> Result<T, LbError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let m = ebpf
        .take_map(name)
        .ok_or_else(|| LbError::Unavailable(format!("the eBPF object has no map {name}")))?;
    T::try_from(m).map_err(kernel(format!("map {name}")))
}

impl EbpfEngine {
    /// Loads the programs (the kernel verifies them here) and adopts pinned maps; they
    /// will be attached as `attach` (`--lb-attach`) says.
    pub fn load(node_addr: Ipv4Addr, node_name: &str, attach: &str) -> Result<EbpfEngine, LbError> {
        let mode = AttachMode::choose(attach, AttachMode::kernel_has_tcx())?;
        if OBJECT.is_empty() {
            return Err(LbError::Unavailable("the eBPF programs were not built with this agent (bpf-linker or nightly was missing when it was built: run scripts/setup.sh, then cargo build)".into()));
        }
        ensure_bpffs().map_err(kernel(format!("mounting the BPF filesystem at {BPFFS}")))?;
        let node_dir = Path::new(BPFFS).join("shoal").join(node_name);
        retire_other_layouts(&node_dir);
        let pin_dir = node_dir.join(LAYOUT);
        std::fs::create_dir_all(&pin_dir)
            .map_err(kernel(format!("creating {}", pin_dir.display())))?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&pin_dir)
            .load(OBJECT)
            .map_err(|e| LbError::Unavailable(format!("loading the eBPF object: {e}")))?;
        for name in [MESH_IN, MESH_REPLY, VIP_OUT, VIP_BACK] {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or_else(|| {
                    LbError::Unavailable(format!("the eBPF object has no program {name}"))
                })?
                .try_into()
                .map_err(|e| LbError::Unavailable(format!("{name}: {e}")))?;
            prog.load().map_err(|e| {
                LbError::Unavailable(match e {
                    aya::programs::ProgramError::LoadError {
                        io_error,
                        verifier_log,
                    } => format!(
                        "the kernel's verifier refused {name} ({io_error}); its log ends:\n{}",
                        verifier_log
                            .to_string()
                            .lines()
                            .rev()
                            .take(15)
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev()
                            .collect::<Vec<_>>()
                            .join("\n")
                    ),
                    other => format!("loading {name}: {other}"),
                })
            })?;
        }
        let maps = Maps {
            table: KernelMaps {
                frontends: map(&mut ebpf, names::FRONTENDS)?,
                maglev: map(&mut ebpf, names::MAGLEV)?,
                backends: map(&mut ebpf, names::BACKENDS)?,
            },
            config: map(&mut ebpf, names::CONFIG)?,
            frontend_stats: map(&mut ebpf, names::FRONTEND_STATS)?,
            backend_stats: map(&mut ebpf, names::BACKEND_STATS)?,
        };
        let done = Programmed {
            table: Table::adopt(&maps.table),
            ..Programmed::default()
        };
        Ok(EbpfEngine {
            node_addr,
            mode,
            pin_dir,
            host: NftEngine::default(),
            loaded: Mutex::new(Loaded { ebpf, maps, done }),
        })
    }

    fn link_pin(&self, prog: &str, ifname: &str) -> PathBuf {
        self.pin_dir.join(format!("link-{prog}-{ifname}"))
    }

    /// Attaches `prog` at `ifname` (in namespace `netns`, else the node's) in
    /// `direction`: through a pinned tcx link, where an existing pin (an earlier agent's)
    /// gets this program swapped in atomically, or as a classic filter (attach.rs).
    fn attach(
        &self,
        loaded: &mut Loaded,
        prog_name: &'static str,
        ifname: &str,
        netns: Option<&Path>,
        direction: TcAttachType,
    ) -> Result<(), LbError> {
        let key = (prog_name, ifname.to_string());
        let pin = self.link_pin(prog_name, ifname);
        let prog: &mut SchedClassifier = loaded
            .ebpf
            .program_mut(prog_name)
            .expect("loaded above")
            .try_into()
            .map_err(kernel(prog_name))?;
        let known = loaded.done.attached.get(&key).copied();
        let mode = self.mode;
        let mut attach = || -> Result<u32, LbError> {
            let index = ifindex(ifname).ok_or_else(|| LbError::NoInterface(ifname.to_string()))?;
            if mode == AttachMode::Classic {
                if known != Some(index) {
                    // A tcx link an agent in the other mode left would run as well.
                    let _ = std::fs::remove_file(&pin);
                    attach::attach_classic(prog, prog_name, ifname, direction)?;
                }
                return Ok(index);
            }
            // Attached already, to this very interface (not one made again since).
            if known == Some(index) && pin.exists() {
                return Ok(index);
            }
            attach::detach_classic(ifname, direction);
            let adopted = match PinnedLink::from_pin(&pin) {
                Err(_) => None,
                Ok(old) => match SchedClassifierLink::try_from(FdLink::from(old))
                    .map_err(|e| Some(e.to_string()))
                    .and_then(|link| prog.attach_to_link(link).map_err(link_update_error))
                {
                    Ok(id) => Some(id),
                    Err(None) => {
                        tracing::debug!(%ifname, "the pinned link's interface was made again since: attaching anew");
                        None
                    }
                    Err(Some(e)) => {
                        tracing::warn!(%ifname, "could not take over the pinned link, attaching anew: {e}");
                        None
                    }
                },
            };
            let id = if let Some(id) = adopted {
                id
            } else {
                let _ = std::fs::remove_file(&pin);
                prog.attach(ifname, direction)
                    .map_err(kernel(format!("attaching {prog_name} to {ifname}")))?
            };
            let link = prog.take_link(id).map_err(kernel("taking the link"))?;
            let fd: FdLink = link.try_into().map_err(kernel("the link's descriptor"))?;
            if !pin.exists() {
                let _ = std::fs::create_dir_all(&self.pin_dir);
                fd.pin(&pin)
                    .map_err(kernel(format!("pinning the link at {}", pin.display())))?;
            }
            Ok(index)
        };
        let index = match netns {
            None => attach()?,
            // Interface names and tcx links resolve in the calling thread's namespace.
            Some(path) => crate::sys::run_in_netns(path, attach)
                .map_err(kernel("entering the namespace"))??,
        };
        loaded.done.attached.insert(key, index);
        Ok(())
    }
}

impl Engine for EbpfEngine {
    fn name(&self) -> &'static str {
        "ebpf"
    }

    fn attach_mode(&self) -> Option<&'static str> {
        Some(self.mode.describe())
    }

    fn program_node(&self, mesh: &[MeshFrontend], leg: &Leg) -> Result<(), LbError> {
        let mut guard = self.loaded.lock().expect("not poisoned");
        let loaded = &mut *guard;
        let config = Config {
            node_addr: raw_addr(self.node_addr),
            leg_addr: raw_addr(leg.addr),
            leg_ifindex: ifindex(&leg.ifname)
                .ok_or_else(|| LbError::NoInterface(leg.ifname.clone()))?,
            leg_mac: crate::netlink::mac_for(leg.addr),
            pad: [0; 2],
        };
        if loaded.done.config != Some(config) {
            loaded
                .maps
                .config
                .set(0, config, 0)
                .map_err(kernel("writing the node's configuration"))?;
            loaded.done.config = Some(config);
        }
        let uplink = interface_with(self.node_addr).ok_or_else(|| {
            LbError::NoInterface(format!("holding the node's address {}", self.node_addr))
        })?;
        self.attach(loaded, MESH_IN, &uplink, None, TcAttachType::Ingress)?;
        if uplink != LOOPBACK {
            self.attach(loaded, MESH_IN, LOOPBACK, None, TcAttachType::Ingress)?;
        }
        if !loaded.done.local_replies {
            accept_local_replies()?;
            loaded.done.local_replies = true;
        }
        if ifindex(GATEWAY_BRIDGE).is_some() {
            self.attach(loaded, MESH_IN, GATEWAY_BRIDGE, None, TcAttachType::Ingress)?;
        }
        self.attach(loaded, MESH_REPLY, &leg.ifname, None, TcAttachType::Ingress)?;

        let wanted = mesh.iter().filter(|f| !f.backends.is_empty()).map(|f| {
            let key = FrontendKey {
                addr: 0,
                port: raw_port(f.port),
                proto: proto_number(f.protocol),
                pad: 0,
            };
            (key, f.backends.as_slice())
        });
        let Loaded { maps, done, .. } = loaded;
        done.table.sync(&mut maps.table, wanted, |k| k.addr == 0)
    }

    fn program_vips(&self, vips: &[VipFrontend]) -> Result<(), LbError> {
        // Port 0: any port, to the same port on the backend.
        let backends: Vec<(FrontendKey, Vec<(Ipv4Addr, u16)>)> = vips
            .iter()
            .filter(|f| !f.backends.is_empty())
            .map(|f| {
                let key = FrontendKey {
                    addr: raw_addr(f.vip),
                    port: 0,
                    proto: 0,
                    pad: 0,
                };
                (key, f.backends.iter().map(|b| (*b, 0)).collect())
            })
            .collect();
        let wanted = backends.iter().flat_map(|(key, backends)| {
            [Protocol::Tcp, Protocol::Udp].map(|proto| {
                let key = FrontendKey {
                    proto: proto_number(proto),
                    ..*key
                };
                (key, backends.as_slice())
            })
        });
        let mut guard = self.loaded.lock().expect("not poisoned");
        let Loaded { maps, done, .. } = &mut *guard;
        done.table.sync(&mut maps.table, wanted, |k| k.addr != 0)
    }

    fn program_task(
        &self,
        task_id: &str,
        _netns: &Path,
        legs: &[TaskLeg],
        _vips: &[VipFrontend],
    ) -> Result<(), LbError> {
        let mut guard = self.loaded.lock().expect("not poisoned");
        for leg in legs {
            let sandbox = Some(leg.sandbox.as_path());
            self.attach(
                &mut guard,
                VIP_OUT,
                &leg.host_veth,
                sandbox,
                TcAttachType::Ingress,
            )?;
            self.attach(
                &mut guard,
                VIP_BACK,
                &leg.host_veth,
                sandbox,
                TcAttachType::Egress,
            )?;
        }
        let veths = legs.iter().map(|l| l.host_veth.clone()).collect();
        guard.done.task_veths.insert(task_id.to_string(), veths);
        Ok(())
    }

    fn program_host_ports(&self, ports: &[HostPort]) -> Result<(), LbError> {
        self.host.program_host_ports(ports)
    }

    fn forget(&self, task_id: &str) {
        let mut guard = self.loaded.lock().expect("not poisoned");
        for veth in guard.done.task_veths.remove(task_id).unwrap_or_default() {
            for prog in [VIP_OUT, VIP_BACK] {
                guard.done.attached.remove(&(prog, veth.clone()));
                let _ = std::fs::remove_file(self.link_pin(prog, &veth));
            }
        }
    }

    fn clear_node(&self) -> Result<(), LbError> {
        self.host.clear_node()?;
        let mut loaded = self.loaded.lock().expect("not poisoned");
        let Loaded { maps, done, .. } = &mut *loaded;
        done.table.clear(&mut maps.table);
        // Classic filters on the node's own interfaces stay until taken off (a task's go
        // with its veth).
        if self.mode == AttachMode::Classic {
            for (prog, ifname) in done.attached.keys() {
                if [MESH_IN, MESH_REPLY].contains(prog) {
                    attach::detach_classic(ifname, TcAttachType::Ingress);
                }
            }
        }
        *done = Programmed::default();
        // Unpinning the links detaches the programs once this agent's fds close.
        if let Ok(dir) = std::fs::read_dir(&self.pin_dir) {
            for entry in dir.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let _ = std::fs::remove_dir(&self.pin_dir);
        Ok(())
    }

    fn has_state(&self) -> bool {
        let loaded = self.loaded.lock().expect("not poisoned");
        !loaded.done.table.frontends.is_empty()
    }

    fn counters(&self) -> Option<Vec<PortCounters>> {
        Some(self.counted())
    }
}

/// Unpins what an agent of another map layout left under `node_dir` (its maps cannot be
/// adopted): its tcx links detach and its maps go; this agent attaches its own at once.
fn retire_other_layouts(node_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(node_dir) else {
        return;
    };
    for entry in entries.flatten().filter(|e| e.file_name() != LAYOUT) {
        tracing::info!(
            pins = %entry.path().display(),
            "unpinning the eBPF maps and links of another layout: connections it tracked start over"
        );
        if let Err(e) = std::fs::remove_dir_all(entry.path()) {
            tracing::warn!(pins = %entry.path().display(), "could not unpin: {e}");
        }
    }
}

/// Sums a per-CPU counter.
fn total(stats: &PerCpuArray<MapData, Counter>, index: u32) -> Counted {
    stats
        .get(&index, 0)
        .map(|per_cpu| {
            per_cpu.iter().fold(Counted::default(), |a, c| Counted {
                packets: a.packets + c.packets,
                bytes: a.bytes + c.bytes,
                connections: a.connections + c.connections,
            })
        })
        .unwrap_or_default()
}

impl EbpfEngine {
    fn counted(&self) -> Vec<PortCounters> {
        let loaded = self.loaded.lock().expect("not poisoned");
        let (maps, done) = (&loaded.maps, &loaded.done);
        done.table
            .frontends
            .iter()
            .map(|(key, written)| PortCounters {
                protocol: if key.proto == 17 {
                    Protocol::Udp
                } else {
                    Protocol::Tcp
                },
                port: u16::from_be_bytes(key.port.to_ne_bytes()),
                total: total(&maps.frontend_stats, written.id),
                backends: written
                    .backends
                    .iter()
                    .filter_map(|b| {
                        Some((
                            *b,
                            total(&maps.backend_stats, done.table.backends.get(b)?.id),
                        ))
                    })
                    .collect(),
            })
            .collect()
    }
}

/// Why a pinned link could not take the new program, or None when that is expected: a
/// tcx link whose interface was deleted (a task's veth made again while the agent was
/// down, under the same name) is defunct, and the kernel answers ENOLINK. The new
/// program is then attached afresh, which is all that was needed.
fn link_update_error(e: aya::programs::ProgramError) -> Option<String> {
    match &e {
        aya::programs::ProgramError::SyscallError(s)
            if s.io_error.raw_os_error() == Some(libc::ENOLINK) =>
        {
            None
        }
        _ => Some(format!(
            "{e} ({})",
            std::error::Error::source(&e)
                .map(ToString::to_string)
                .unwrap_or_default()
        )),
    }
}

const LOOPBACK: &str = "lo";

/// Lets lo take the mesh's replies to the node's own clients (curl localhost:PORT): a
/// reply turned back from a task's leg reaches lo without the route local traffic
/// carries, so the kernel routes it as if it came from outside and would drop it for its
/// local source (accept_local) and, for 127/8, as a martian (route_localnet). Only lo
/// is changed: nothing from outside arrives on lo.
fn accept_local_replies() -> Result<(), LbError> {
    for knob in ["accept_local", "route_localnet"] {
        let path = format!("/proc/sys/net/ipv4/conf/{LOOPBACK}/{knob}");
        std::fs::write(&path, "1").map_err(kernel(format!(
            "setting {path} for the mesh's local clients"
        )))?;
    }
    Ok(())
}

/// The interface holding `addr` in this namespace.
fn interface_with(addr: Ipv4Addr) -> Option<String> {
    crate::sys::ipv4_addresses()
        .ok()?
        .into_iter()
        .find_map(|(name, ip)| (ip == addr).then_some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_of_another_layout_are_removed_and_this_ones_kept() {
        let node_dir = std::env::temp_dir().join(format!("shoal-pins-{}", std::process::id()));
        let old = node_dir.join("v1");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("MAGLEV"), b"").unwrap();
        std::fs::create_dir_all(node_dir.join(LAYOUT)).unwrap();
        retire_other_layouts(&node_dir);
        let left: Vec<_> = std::fs::read_dir(&node_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        std::fs::remove_dir_all(&node_dir).unwrap();
        assert_eq!(left, [LAYOUT]);
    }

    /// The names the agent loads by are the ones the built programs define (the kernel
    /// side names maps after their statics, so only the object can tell).
    #[test]
    fn the_built_object_defines_every_map_and_program_the_agent_uses() {
        assert!(
            !OBJECT.is_empty(),
            "the eBPF programs were not built into this agent: install bpf-linker and nightly (scripts/setup.sh)"
        );
        let object = aya_obj::Object::parse(OBJECT).expect("a BPF object");
        for name in names::ALL {
            assert!(
                object.maps.contains_key(name),
                "no map {name} in the object"
            );
        }
        for name in shoal_ebpf_common::programs::ALL {
            assert!(
                object.programs.contains_key(name),
                "no program {name} in the object"
            );
        }
        assert_eq!(object.maps.len(), names::ALL.len());
    }
}

//! The reconciler's decisions, as pure functions of what should be and what the kernel
//! has: which bridge, FDB and neighbour entries to write and which to remove. The
//! reconciler (reconcile.rs) reads the kernel, asks these, and applies the answer, so
//! every rule here is unit-tested without a namespace.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::gossip::Endpoint;
use crate::netlink::{BridgeEntry, Mac};

/// How long FDB and neighbour entries outlive their endpoint in gossip: longer than a
/// stopping task drains (executor.rs), so its open connections finish.
pub const FADE: Duration = Duration::from_secs(5);

/// Bridge entries to write and to remove: (port, MAC).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BridgeChanges {
    pub write: Vec<(u32, Mac)>,
    pub remove: Vec<(u32, Mac)>,
}

/// The bridge forwards each MAC in `wanted` to its port, and nothing else. An entry on
/// another port, or of a MAC not wanted, goes; one the kernel learned (or an older agent
/// left) on the right port is written over as programmed, in place.
pub fn bridge(wanted: &HashMap<Mac, u32>, present: &[BridgeEntry]) -> BridgeChanges {
    let mut changes = BridgeChanges::default();
    for (mac, port) in wanted {
        let entry = BridgeEntry {
            mac: *mac,
            port: *port,
            programmed: true,
        };
        if !present.contains(&entry) {
            changes.write.push((*port, *mac));
        }
    }
    for e in present {
        if wanted.get(&e.mac) != Some(&e.port) {
            changes.remove.push((e.port, e.mac));
        }
    }
    changes.write.sort_unstable();
    changes.remove.sort_unstable();
    changes
}

/// What the vxlan device's FDB and neighbour table should gain and lose.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RemoteChanges {
    pub fdb_add: Vec<(Mac, Ipv4Addr)>,
    pub neighbour_add: Vec<(Ipv4Addr, Mac)>,
    pub fdb_remove: Vec<(Mac, Ipv4Addr)>,
    pub neighbour_remove: Vec<Ipv4Addr>,
    /// The MACs the FDB holds afterwards (the bridge sends them to vxlan0).
    pub kept: HashSet<Mac>,
}

/// The FDB and neighbour table say what gossip says (`remote`). An entry gossip no
/// longer lists is removed after [`FADE`] while its node is `alive` (its task is
/// draining and open connections still flow), at once when its node is gone, and not at
/// all while `fading` is None (gossip unsettled). An entry of a MAC gossip still lists,
/// but at another node, goes at once. `fading` remembers since when each MAC is gone.
pub fn remote(
    remote: &[&Endpoint],
    fdb: &[(Mac, Ipv4Addr)],
    neighbours: &[(Ipv4Addr, Mac)],
    fading: Option<&mut HashMap<Mac, Instant>>,
    alive: &HashSet<Ipv4Addr>,
    now: Instant,
) -> RemoteChanges {
    let mut changes = RemoteChanges::default();
    for e in remote {
        if !fdb.contains(&(e.mac, e.vtep)) {
            changes.fdb_add.push((e.mac, e.vtep));
        }
        if !neighbours.contains(&(e.ip, e.mac)) {
            changes.neighbour_add.push((e.ip, e.mac));
        }
    }
    changes.kept = fdb.iter().map(|(mac, _)| *mac).collect();
    changes.kept.extend(remote.iter().map(|e| e.mac));
    let Some(fading) = fading else {
        return changes;
    };
    let wanted: HashSet<Mac> = remote.iter().map(|e| e.mac).collect();
    fading.retain(|mac, _| !wanted.contains(mac));
    let vtep_of: HashMap<Mac, Ipv4Addr> = fdb.iter().copied().collect();
    let mut faded = |mac: Mac| {
        let node_alive = vtep_of.get(&mac).is_some_and(|v| alive.contains(v));
        !node_alive || now.duration_since(*fading.entry(mac).or_insert(now)) >= FADE
    };
    let wanted_fdb: HashSet<_> = remote.iter().map(|e| (e.mac, e.vtep)).collect();
    let wanted_neighbours: HashSet<_> = remote.iter().map(|e| (e.ip, e.mac)).collect();
    for (mac, vtep) in fdb.iter().copied().filter(|f| !wanted_fdb.contains(f)) {
        if !wanted.contains(&mac) && !faded(mac) {
            continue;
        }
        changes.fdb_remove.push((mac, vtep));
        if !wanted.contains(&mac) {
            changes.kept.remove(&mac);
        }
    }
    for (ip, mac) in neighbours.iter().copied() {
        if wanted_neighbours.contains(&(ip, mac)) || (!wanted.contains(&mac) && !faded(mac)) {
            continue;
        }
        changes.neighbour_remove.push(ip);
    }
    changes
}

/// Neighbours to write and remove on the node's ingress leg: one permanent entry per
/// endpoint of the ingress network; others go only once gossip has settled (`prune`).
pub fn leg_neighbours(
    peers: &[&Endpoint],
    present: &[(Ipv4Addr, Mac)],
    prune: bool,
) -> (Vec<(Ipv4Addr, Mac)>, Vec<Ipv4Addr>) {
    let write = peers
        .iter()
        .map(|e| (e.ip, e.mac))
        .filter(|n| !present.contains(n))
        .collect();
    let wanted: HashSet<Ipv4Addr> = peers.iter().map(|e| e.ip).collect();
    let remove = if prune {
        present
            .iter()
            .map(|(ip, _)| *ip)
            .filter(|ip| !wanted.contains(ip))
            .collect()
    } else {
        Vec::new()
    };
    (write, remove)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VXLAN: u32 = 2;

    fn mac(last: u8) -> Mac {
        [0x02, 0x42, 10, 0, 0, last]
    }

    fn node(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(192, 168, 56, last)
    }

    fn endpoint(last: u8, on: u8) -> Endpoint {
        Endpoint {
            network_id: "net".into(),
            task_id: format!("task{last}"),
            node_id: format!("node{on}"),
            ip: Ipv4Addr::new(10, 0, 0, last),
            prefix: 24,
            mac: mac(last),
            vtep: node(on),
            service_id: "svc".into(),
            service_name: "web".into(),
            task_name: format!("web.{last}"),
            hostname: String::new(),
            vip: String::new(),
            aliases: vec![],
            ports: vec![],
        }
    }

    fn entry(mac: Mac, port: u32, programmed: bool) -> BridgeEntry {
        BridgeEntry {
            mac,
            port,
            programmed,
        }
    }

    #[test]
    fn the_bridge_keeps_only_what_was_programmed_and_a_local_task_wins() {
        // Task .5 moved here (veth port 7) while gossip still names it on another node;
        // .6 is remote; .9 was learned on vxlan0; .6 also sits on a wrong port.
        let wanted: HashMap<Mac, u32> = [(mac(5), 7), (mac(6), VXLAN)].into();
        let present = [
            entry(mac(5), VXLAN, true),
            entry(mac(6), VXLAN, true),
            entry(mac(6), 9, true),
            entry(mac(9), VXLAN, false),
        ];
        let changes = bridge(&wanted, &present);
        assert_eq!(changes.write, [(7, mac(5))]);
        assert_eq!(
            changes.remove,
            [(VXLAN, mac(5)), (VXLAN, mac(9)), (9, mac(6))]
        );
        // A learned entry on the right port is written over as programmed, not removed
        // (removing it after the write would drop the programmed one too).
        let learned = bridge(&wanted, &[entry(mac(6), VXLAN, false)]);
        assert!(learned.write.contains(&(VXLAN, mac(6))));
        assert!(learned.remove.is_empty());
    }

    #[test]
    fn new_endpoints_are_added_and_a_moved_one_loses_its_old_node_at_once() {
        let (a, moved) = (endpoint(5, 12), endpoint(6, 13));
        let fdb = [(mac(6), node(12))];
        let neighbours = [(moved.ip, mac(6))];
        let mut fading = HashMap::new();
        let alive: HashSet<_> = [node(12), node(13)].into();
        let changes = remote(
            &[&a, &moved],
            &fdb,
            &neighbours,
            Some(&mut fading),
            &alive,
            Instant::now(),
        );
        assert_eq!(changes.fdb_add, [(mac(5), node(12)), (mac(6), node(13))]);
        assert_eq!(changes.neighbour_add, [(a.ip, mac(5))]);
        assert_eq!(changes.fdb_remove, [(mac(6), node(12))]);
        assert!(changes.neighbour_remove.is_empty());
        assert_eq!(changes.kept, [mac(5), mac(6)].into());
    }

    #[test]
    fn a_vanished_endpoint_fades_while_its_node_lives_and_goes_at_once_when_it_does_not() {
        let gone = endpoint(5, 12);
        let fdb = [(mac(5), node(12))];
        let neighbours = [(gone.ip, mac(5))];
        let alive: HashSet<_> = [node(12)].into();
        let mut fading = HashMap::new();
        let start = Instant::now();
        let first = remote(&[], &fdb, &neighbours, Some(&mut fading), &alive, start);
        assert!(first.fdb_remove.is_empty() && first.neighbour_remove.is_empty());
        assert!(first.kept.contains(&mac(5)), "still bridged while draining");
        let later = remote(
            &[],
            &fdb,
            &neighbours,
            Some(&mut fading),
            &alive,
            start + FADE,
        );
        assert_eq!(later.fdb_remove, [(mac(5), node(12))]);
        assert_eq!(later.neighbour_remove, [gone.ip]);
        assert!(!later.kept.contains(&mac(5)));
        let node_down = remote(
            &[],
            &fdb,
            &neighbours,
            Some(&mut HashMap::new()),
            &HashSet::new(),
            start,
        );
        assert_eq!(node_down.fdb_remove, [(mac(5), node(12))]);
    }

    #[test]
    fn nothing_is_removed_before_gossip_has_settled() {
        let fdb = [(mac(5), node(12))];
        let changes = remote(&[], &fdb, &[], None, &HashSet::new(), Instant::now());
        assert!(changes.fdb_remove.is_empty());
        assert!(changes.kept.contains(&mac(5)));
        let peer = endpoint(6, 13);
        let (write, remove) =
            leg_neighbours(&[&peer], &[(Ipv4Addr::new(10, 0, 0, 9), mac(9))], false);
        assert_eq!(write, [(peer.ip, mac(6))]);
        assert!(remove.is_empty());
        let (_, remove) = leg_neighbours(&[&peer], &[(Ipv4Addr::new(10, 0, 0, 9), mac(9))], true);
        assert_eq!(remove, [Ipv4Addr::new(10, 0, 0, 9)]);
    }
}

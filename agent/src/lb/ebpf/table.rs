//! Which ids the balancer's tables give frontends and backends, and writing a wanted set
//! of frontends into them as changes only. Works on any [`BalancerMaps`], so all of it is
//! unit-tested on fake and faulty maps.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use shoal_ebpf_common::{
    Backend, Frontend, FrontendKey, MAGLEV_SLOTS, MAX_BACKENDS, MAX_FRONTENDS,
};

use super::maps::BalancerMaps;
use crate::lb::{LbError, maglev};

/// A backend as the tables know it: address and port (0: the port asked for).
pub type BackendAddr = (Ipv4Addr, u16);

/// Map slots by number, the lowest free one first.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct Slots {
    used: HashSet<u32>,
    /// No slot below this one is free.
    hint: u32,
}

impl Slots {
    fn take(&mut self, first: u32, end: u32) -> Option<u32> {
        let id = (self.hint.max(first)..end).find(|i| !self.used.contains(i))?;
        self.used.insert(id);
        self.hint = id + 1;
        Some(id)
    }

    fn free(&mut self, id: u32) {
        self.used.remove(&id);
        self.hint = self.hint.min(id);
    }
}

/// What this agent has written into the tables, so it writes only changes.
#[derive(Default, Debug)]
pub struct Table {
    frontend_slots: Slots,
    backend_slots: Slots,
    /// Frontend -> (id, its backends as last written).
    pub frontends: HashMap<FrontendKey, (u32, Vec<BackendAddr>)>,
    pub backend_ids: HashMap<BackendAddr, u32>,
}

pub fn raw_addr(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

pub fn raw_port(port: u16) -> u16 {
    u16::from_ne_bytes(port.to_be_bytes())
}

impl Table {
    /// What an earlier agent left in pinned maps: frontend and backend ids stay put.
    /// Each frontend's backends are read back from its Maglev table, so nothing still in
    /// use looks unused (and is freed) before this agent has written its own view.
    pub fn adopt(maps: &impl BalancerMaps) -> Table {
        let mut done = Table::default();
        let mut by_id: HashMap<u32, BackendAddr> = HashMap::new();
        for id in 1..MAX_BACKENDS {
            if let Some(b) = maps.backend(id)
                && b.addr != 0
            {
                let addr = Ipv4Addr::from(b.addr.to_ne_bytes());
                let port = u16::from_be_bytes(b.port.to_ne_bytes());
                done.backend_ids.insert((addr, port), id);
                done.backend_slots.used.insert(id);
                by_id.insert(id, (addr, port));
            }
        }
        for (key, fe) in maps.frontends() {
            let mut backends: Vec<BackendAddr> = (0..MAGLEV_SLOTS)
                .filter_map(|slot| maps.maglev(fe.id * MAGLEV_SLOTS + slot))
                .filter_map(|id| by_id.get(&id).copied())
                .collect();
            backends.sort();
            backends.dedup();
            done.frontend_slots.used.insert(fe.id);
            done.frontends.insert(key, (fe.id, backends));
        }
        done
    }

    /// Makes the frontends `mine` selects be exactly `wanted` (key -> backends): Maglev
    /// tables first, then the frontend, so a new frontend is never seen half-written;
    /// then backends no frontend uses any more are freed. A write that fails leaves the
    /// table as the maps are (a new frontend's slot is given back), so the next call
    /// writes what is still missing.
    pub fn sync(
        &mut self,
        maps: &mut impl BalancerMaps,
        wanted: &HashMap<FrontendKey, Vec<BackendAddr>>,
        mine: impl Fn(&FrontendKey) -> bool,
    ) -> Result<(), LbError> {
        let gone: Vec<FrontendKey> = self
            .frontends
            .keys()
            .filter(|k| mine(k) && !wanted.contains_key(k))
            .copied()
            .collect();
        for key in gone {
            maps.remove_frontend(&key);
            if let Some((id, _)) = self.frontends.remove(&key) {
                self.frontend_slots.free(id);
            }
        }
        for (key, backends) in wanted {
            let (id, new) = match self.frontends.get(key) {
                Some((_, current)) if current == backends => continue,
                Some((id, _)) => (*id, false),
                None => {
                    let id = self
                        .frontend_slots
                        .take(0, MAX_FRONTENDS)
                        .ok_or(LbError::Full("frontend"))?;
                    (id, true)
                }
            };
            if let Err(e) = self.write_frontend(maps, id, key, backends) {
                if new {
                    self.frontend_slots.free(id);
                }
                return Err(e);
            }
            self.frontends.insert(*key, (id, backends.clone()));
        }
        self.free_unused_backends(maps)
    }

    fn write_frontend(
        &mut self,
        maps: &mut impl BalancerMaps,
        id: u32,
        key: &FrontendKey,
        backends: &[BackendAddr],
    ) -> Result<(), LbError> {
        let ids: Vec<u32> = backends
            .iter()
            .map(|b| self.backend_id(maps, *b))
            .collect::<Result<_, _>>()?;
        for (slot, index) in maglev::table(backends, MAGLEV_SLOTS)
            .into_iter()
            .enumerate()
        {
            maps.set_maglev(id * MAGLEV_SLOTS + slot as u32, ids[index as usize])?;
        }
        let value = Frontend {
            id,
            backends: backends.len() as u32,
        };
        maps.set_frontend(key, value)
    }

    fn backend_id(&mut self, maps: &mut impl BalancerMaps, b: BackendAddr) -> Result<u32, LbError> {
        if let Some(id) = self.backend_ids.get(&b) {
            return Ok(*id);
        }
        // Id 0 stays unused: an empty Maglev slot reads 0.
        let id = self
            .backend_slots
            .take(1, MAX_BACKENDS)
            .ok_or(LbError::Full("backend"))?;
        let value = Backend {
            addr: raw_addr(b.0),
            port: raw_port(b.1),
            pad: 0,
        };
        if let Err(e) = maps.set_backend(id, value) {
            self.backend_slots.free(id);
            return Err(e);
        }
        self.backend_ids.insert(b, id);
        Ok(id)
    }

    fn free_unused_backends(&mut self, maps: &mut impl BalancerMaps) -> Result<(), LbError> {
        let in_use: HashSet<BackendAddr> = self
            .frontends
            .values()
            .flat_map(|(_, b)| b.iter().copied())
            .collect();
        let unused: Vec<(BackendAddr, u32)> = self
            .backend_ids
            .iter()
            .filter(|(b, _)| !in_use.contains(b))
            .map(|(b, id)| (*b, *id))
            .collect();
        for (b, id) in unused {
            maps.set_backend(id, Backend::default())?;
            self.backend_ids.remove(&b);
            self.backend_slots.free(id);
        }
        Ok(())
    }

    /// Removes every frontend this agent wrote and forgets all it knew.
    pub fn clear(&mut self, maps: &mut impl BalancerMaps) {
        for key in self.frontends.keys() {
            maps.remove_frontend(key);
        }
        *self = Table::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::ebpf::maps::{FakeMaps, FaultyMaps};

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, last)
    }

    fn port_key(port: u16) -> FrontendKey {
        FrontendKey {
            addr: 0,
            port: raw_port(port),
            proto: 6,
            pad: 0,
        }
    }

    fn wanted(list: &[(u16, &[u8])]) -> HashMap<FrontendKey, Vec<BackendAddr>> {
        list.iter()
            .map(|(port, last)| (port_key(*port), last.iter().map(|l| (ip(*l), 80)).collect()))
            .collect()
    }

    /// The backends a frontend's Maglev table sends to, read from the maps alone.
    fn steered(maps: &FakeMaps, key: &FrontendKey) -> Vec<(Ipv4Addr, usize)> {
        let fe = maps.frontends[key];
        let mut count: HashMap<Ipv4Addr, usize> = HashMap::new();
        for slot in 0..MAGLEV_SLOTS {
            let id = maps.maglev[&(fe.id * MAGLEV_SLOTS + slot)];
            let b = maps.backends[&id];
            *count
                .entry(Ipv4Addr::from(b.addr.to_ne_bytes()))
                .or_default() += 1;
        }
        let mut all: Vec<_> = count.into_iter().collect();
        all.sort();
        all
    }

    #[test]
    fn every_slot_of_a_frontend_steers_to_one_of_its_backends_evenly() {
        let (mut maps, mut table) = (FakeMaps::default(), Table::default());
        let want = wanted(&[(8080, &[1, 2, 3]), (9090, &[3, 4])]);
        table.sync(&mut maps, &want, |_| true).unwrap();
        let web = steered(&maps, &port_key(8080));
        assert_eq!(
            web.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
            [ip(1), ip(2), ip(3)]
        );
        assert!(web.iter().all(|(_, n)| (80..=92).contains(n)), "{web:?}");
        assert_eq!(steered(&maps, &port_key(9090)).len(), 2);
        assert_eq!(maps.frontends[&port_key(8080)].backends, 3);
        // A backend two frontends share is one entry.
        assert_eq!(table.backend_ids.len(), 4);
    }

    #[test]
    fn a_removed_frontend_frees_its_backends_and_their_ids_are_reused() {
        let (mut maps, mut table) = (FakeMaps::default(), Table::default());
        table
            .sync(&mut maps, &wanted(&[(8080, &[1]), (9090, &[2])]), |_| true)
            .unwrap();
        let freed = table.backend_ids[&(ip(2), 80)];
        table
            .sync(&mut maps, &wanted(&[(8080, &[1])]), |_| true)
            .unwrap();
        assert!(!maps.frontends.contains_key(&port_key(9090)));
        assert_eq!(maps.backends[&freed], Backend::default());
        table
            .sync(&mut maps, &wanted(&[(8080, &[1, 5])]), |_| true)
            .unwrap();
        assert_eq!(table.backend_ids[&(ip(5), 80)], freed, "the lowest free id");
    }

    #[test]
    fn frontends_outside_mine_are_left_alone() {
        let (mut maps, mut table) = (FakeMaps::default(), Table::default());
        let vip = FrontendKey {
            addr: raw_addr(ip(100)),
            port: 0,
            proto: 6,
            pad: 0,
        };
        let mut vips = HashMap::new();
        vips.insert(vip, vec![(ip(7), 0)]);
        table.sync(&mut maps, &vips, |k| k.addr != 0).unwrap();
        table
            .sync(&mut maps, &wanted(&[(8080, &[1])]), |k| k.addr == 0)
            .unwrap();
        assert!(maps.frontends.contains_key(&vip));
        assert_eq!(steered(&maps, &vip), [(ip(7), MAGLEV_SLOTS as usize)]);
    }

    #[test]
    fn a_restarted_agent_adopts_the_maps_and_rewrites_nothing() {
        let (mut maps, mut table) = (FakeMaps::default(), Table::default());
        let want = wanted(&[(8080, &[1, 2, 3]), (9090, &[3, 4])]);
        table.sync(&mut maps, &want, |_| true).unwrap();
        let mut adopted = Table::adopt(&maps);
        assert_eq!(adopted.backend_ids, table.backend_ids);
        assert_eq!(adopted.frontends, table.frontends);
        let before = maps.writes;
        adopted.sync(&mut maps, &want, |_| true).unwrap();
        assert_eq!(maps.writes, before, "the same wanted set writes nothing");
    }

    #[test]
    fn a_failed_write_leaks_no_slot_and_the_next_sync_completes_it() {
        let mut table = Table::default();
        let mut maps = FaultyMaps {
            inner: FakeMaps::default(),
            healthy: usize::MAX,
        };
        table
            .sync(&mut maps, &wanted(&[(8080, &[1])]), |_| true)
            .unwrap();
        let want = wanted(&[(8080, &[1]), (9090, &[2, 3])]);
        // Fail in the middle of the new frontend's Maglev table.
        maps.healthy = 100;
        assert!(matches!(
            table.sync(&mut maps, &want, |_| true),
            Err(LbError::Kernel { .. })
        ));
        assert!(
            !maps.inner.frontends.contains_key(&port_key(9090)),
            "not published half-written"
        );
        maps.healthy = usize::MAX;
        table.sync(&mut maps, &want, |_| true).unwrap();
        assert_eq!(
            table.frontend_slots.used.len(),
            2,
            "{:?}",
            table.frontend_slots
        );
        assert_eq!(
            table.frontends[&port_key(9090)].0,
            1,
            "the slot given back is reused"
        );
        assert_eq!(steered(&maps.inner, &port_key(9090)).len(), 2);
    }
}

//! Which ids the balancer's tables give frontends and backends, and writing a wanted set
//! of frontends into them as changes only. Works on any [`BalancerMaps`], so all of it is
//! unit-tested on fake and faulty maps.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use shoal_ebpf_common::{
    Backend, Frontend, FrontendKey, MAGLEV_SLOTS, MAX_BACKENDS, MAX_FRONTENDS, MaglevTable,
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

/// A frontend as this agent wrote it.
#[derive(Debug)]
pub struct Written {
    pub id: u32,
    pub backends: Vec<BackendAddr>,
    maglev: MaglevTable,
    /// The last sync that wanted it.
    seen: u64,
}

/// Equal as written (when each was last wanted aside).
impl PartialEq for Written {
    fn eq(&self, other: &Self) -> bool {
        (self.id, &self.backends, &self.maglev) == (other.id, &other.backends, &other.maglev)
    }
}

/// A backend's id in the tables, and how many frontends steer to it: at 0 it is freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendEntry {
    pub id: u32,
    users: u32,
}

/// What this agent has written into the tables, so it writes only changes: a sync costs
/// a look at each wanted frontend and writes only for those that changed (one Maglev
/// element each, their new backends), whatever the number of backends.
#[derive(Default, Debug)]
pub struct Table {
    frontend_slots: Slots,
    backend_slots: Slots,
    pub frontends: HashMap<FrontendKey, Written>,
    pub backends: HashMap<BackendAddr, BackendEntry>,
    /// Backends an earlier agent left that no frontend steers to: freed at the next sync.
    orphans: Vec<BackendAddr>,
    generation: u64,
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
                done.backends
                    .insert((addr, port), BackendEntry { id, users: 0 });
                done.backend_slots.used.insert(id);
                by_id.insert(id, (addr, port));
            }
        }
        for (key, fe) in maps.frontends() {
            let maglev = maps.maglev(fe.id).unwrap_or_default();
            let mut backends: Vec<BackendAddr> = maglev
                .ids
                .iter()
                .filter_map(|id| by_id.get(id).copied())
                .collect();
            backends.sort();
            backends.dedup();
            for b in &backends {
                if let Some(entry) = done.backends.get_mut(b) {
                    entry.users += 1;
                }
            }
            done.frontend_slots.used.insert(fe.id);
            let written = Written {
                id: fe.id,
                backends,
                maglev,
                seen: 0,
            };
            done.frontends.insert(key, written);
        }
        // Backends no frontend steers to (a crash between writes) go at the next sync.
        done.orphans = done
            .backends
            .iter()
            .filter(|(_, e)| e.users == 0)
            .map(|(b, _)| *b)
            .collect();
        done
    }

    /// Makes the frontends `mine` selects be exactly `wanted` (key -> backends): a
    /// frontend's Maglev table before the frontend, so a new one is never seen
    /// half-written; then frontends no longer wanted go, and backends no frontend uses
    /// any more are freed. A write that fails leaves the table as the maps are (a new
    /// frontend's slot is given back), so the next call writes what is still missing.
    pub fn sync<'a>(
        &mut self,
        maps: &mut impl BalancerMaps,
        wanted: impl IntoIterator<Item = (FrontendKey, &'a [BackendAddr])>,
        mine: impl Fn(&FrontendKey) -> bool,
    ) -> Result<(), LbError> {
        self.generation += 1;
        let generation = self.generation;
        let mut released = std::mem::take(&mut self.orphans);
        for (key, backends) in wanted {
            if let Some(w) = self.frontends.get_mut(&key) {
                w.seen = generation;
                if w.backends == backends {
                    continue;
                }
            }
            self.write_frontend(maps, key, backends, &mut released)?;
        }
        let gone: Vec<FrontendKey> = self
            .frontends
            .iter()
            .filter(|(k, w)| w.seen != generation && mine(k))
            .map(|(k, _)| *k)
            .collect();
        for key in gone {
            maps.remove_frontend(&key);
            if let Some(w) = self.frontends.remove(&key) {
                self.frontend_slots.free(w.id);
                self.release(w.backends, &mut released);
            }
        }
        self.free_unused(maps, released)
    }

    /// Writes one new or changed frontend; the backends it no longer uses go into
    /// `released`.
    fn write_frontend(
        &mut self,
        maps: &mut impl BalancerMaps,
        key: FrontendKey,
        backends: &[BackendAddr],
        released: &mut Vec<BackendAddr>,
    ) -> Result<(), LbError> {
        let existing = self.frontends.get(&key).map(|w| w.id);
        let id = match existing {
            Some(id) => id,
            None => self
                .frontend_slots
                .take(0, MAX_FRONTENDS)
                .ok_or(LbError::Full("frontend"))?,
        };
        let maglev = match self.write_tables(maps, id, &key, backends) {
            Ok(maglev) => maglev,
            Err(e) => {
                if existing.is_none() {
                    self.frontend_slots.free(id);
                }
                // Backends made for it and used by nothing else go again.
                released.extend_from_slice(backends);
                let _ = self.free_unused(maps, std::mem::take(released));
                return Err(e);
            }
        };
        for b in backends {
            if let Some(entry) = self.backends.get_mut(b) {
                entry.users += 1;
            }
        }
        let generation = self.generation;
        let written = Written {
            id,
            backends: backends.to_vec(),
            maglev,
            seen: generation,
        };
        if let Some(old) = self.frontends.insert(key, written) {
            self.release(old.backends, released);
        }
        Ok(())
    }

    /// A frontend no longer steers to `backends`: each has one user less.
    fn release(&mut self, backends: Vec<BackendAddr>, released: &mut Vec<BackendAddr>) {
        for b in &backends {
            if let Some(entry) = self.backends.get_mut(b) {
                entry.users = entry.users.saturating_sub(1);
            }
        }
        released.extend(backends);
    }

    /// The maps' side of a frontend: its backends, its Maglev table when it changed, the
    /// frontend when it is new or its number of backends changed.
    fn write_tables(
        &mut self,
        maps: &mut impl BalancerMaps,
        id: u32,
        key: &FrontendKey,
        backends: &[BackendAddr],
    ) -> Result<MaglevTable, LbError> {
        let ids: Vec<u32> = backends
            .iter()
            .map(|b| self.backend_id(maps, *b))
            .collect::<Result<_, _>>()?;
        let mut maglev = MaglevTable::default();
        for (slot, index) in maglev::table(backends, MAGLEV_SLOTS)
            .into_iter()
            .enumerate()
        {
            maglev.ids[slot] = ids[index as usize];
        }
        let before = self.frontends.get(key);
        if before.is_none_or(|w| w.maglev != maglev) {
            maps.set_maglev(id, &maglev)?;
        }
        if before.is_none_or(|w| w.backends.len() != backends.len()) {
            let value = Frontend {
                id,
                backends: backends.len() as u32,
            };
            maps.set_frontend(key, value)?;
        }
        Ok(maglev)
    }

    fn backend_id(&mut self, maps: &mut impl BalancerMaps, b: BackendAddr) -> Result<u32, LbError> {
        if let Some(entry) = self.backends.get(&b) {
            return Ok(entry.id);
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
        self.backends.insert(b, BackendEntry { id, users: 0 });
        Ok(id)
    }

    /// Frees those of `candidates` no frontend uses any more.
    fn free_unused(
        &mut self,
        maps: &mut impl BalancerMaps,
        candidates: Vec<BackendAddr>,
    ) -> Result<(), LbError> {
        let mut candidates = candidates.into_iter();
        while let Some(b) = candidates.next() {
            let Some(&BackendEntry { id, users: 0 }) = self.backends.get(&b) else {
                continue;
            };
            if let Err(e) = maps.set_backend(id, Backend::default()) {
                // Tried again at the next sync.
                self.orphans.push(b);
                self.orphans.extend(candidates);
                return Err(e);
            }
            self.backends.remove(&b);
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

    fn sync(
        table: &mut Table,
        maps: &mut impl BalancerMaps,
        wanted: &HashMap<FrontendKey, Vec<BackendAddr>>,
        mine: impl Fn(&FrontendKey) -> bool,
    ) -> Result<(), LbError> {
        table.sync(maps, wanted.iter().map(|(k, b)| (*k, b.as_slice())), mine)
    }

    /// The backends a frontend's Maglev table sends to, read from the maps alone.
    fn steered(maps: &FakeMaps, key: &FrontendKey) -> Vec<(Ipv4Addr, usize)> {
        let fe = maps.frontends[key];
        let mut count: HashMap<Ipv4Addr, usize> = HashMap::new();
        for id in maps.maglev[&fe.id].ids {
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
        sync(&mut table, &mut maps, &want, |_| true).unwrap();
        let web = steered(&maps, &port_key(8080));
        assert_eq!(
            web.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
            [ip(1), ip(2), ip(3)]
        );
        assert!(web.iter().all(|(_, n)| (80..=92).contains(n)), "{web:?}");
        assert_eq!(steered(&maps, &port_key(9090)).len(), 2);
        assert_eq!(maps.frontends[&port_key(8080)].backends, 3);
        // A backend two frontends share is one entry.
        assert_eq!(table.backends.len(), 4);
    }

    #[test]
    fn a_removed_frontend_frees_its_backends_and_their_ids_are_reused() {
        let (mut maps, mut table) = (FakeMaps::default(), Table::default());
        sync(
            &mut table,
            &mut maps,
            &wanted(&[(8080, &[1]), (9090, &[2])]),
            |_| true,
        )
        .unwrap();
        let freed = table.backends[&(ip(2), 80)].id;
        sync(&mut table, &mut maps, &wanted(&[(8080, &[1])]), |_| true).unwrap();
        assert!(!maps.frontends.contains_key(&port_key(9090)));
        assert_eq!(maps.backends[&freed], Backend::default());
        sync(&mut table, &mut maps, &wanted(&[(8080, &[1, 5])]), |_| true).unwrap();
        assert_eq!(table.backends[&(ip(5), 80)].id, freed, "the lowest free id");
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
        sync(&mut table, &mut maps, &vips, |k| k.addr != 0).unwrap();
        sync(&mut table, &mut maps, &wanted(&[(8080, &[1])]), |k| {
            k.addr == 0
        })
        .unwrap();
        assert!(maps.frontends.contains_key(&vip));
        assert_eq!(steered(&maps, &vip), [(ip(7), MAGLEV_SLOTS as usize)]);
    }

    #[test]
    fn a_restarted_agent_adopts_the_maps_and_rewrites_nothing() {
        let (mut maps, mut table) = (FakeMaps::default(), Table::default());
        let want = wanted(&[(8080, &[1, 2, 3]), (9090, &[3, 4])]);
        sync(&mut table, &mut maps, &want, |_| true).unwrap();
        let mut adopted = Table::adopt(&maps);
        assert_eq!(adopted.backends, table.backends);
        assert_eq!(adopted.frontends, table.frontends);
        let before = maps.writes;
        sync(&mut adopted, &mut maps, &want, |_| true).unwrap();
        assert_eq!(maps.writes, before, "the same wanted set writes nothing");
    }

    #[test]
    fn a_change_writes_only_what_changed_whatever_the_size() {
        let (mut maps, mut table) = (FakeMaps::default(), Table::default());
        let backends = |port: u16, n: u8| -> Vec<BackendAddr> {
            (1..=n)
                .map(|i| (Ipv4Addr::new(10, (port >> 8) as u8, port as u8, i), 80))
                .collect()
        };
        let mut want: HashMap<FrontendKey, Vec<BackendAddr>> =
            (1..=500).map(|p| (port_key(p), backends(p, 10))).collect();
        sync(&mut table, &mut maps, &want, |_| true).unwrap();
        // A backend more: it, the frontend's Maglev table and its count.
        want.get_mut(&port_key(7)).unwrap().push((ip(200), 80));
        let before = maps.writes;
        sync(&mut table, &mut maps, &want, |_| true).unwrap();
        assert_eq!(maps.writes - before, 3);
        assert_eq!(steered(&maps, &port_key(7)).len(), 11);
        // And gone again: the table, the count, the freed backend.
        want.get_mut(&port_key(7)).unwrap().pop();
        let before = maps.writes;
        sync(&mut table, &mut maps, &want, |_| true).unwrap();
        assert_eq!(maps.writes - before, 3);
        assert!(!table.backends.contains_key(&(ip(200), 80)));
        // A backend swapped for another: the count stays, so no frontend write.
        want.get_mut(&port_key(7)).unwrap()[0] = (ip(201), 80);
        let before = maps.writes;
        sync(&mut table, &mut maps, &want, |_| true).unwrap();
        assert_eq!(
            maps.writes - before,
            3,
            "new backend, table, old backend freed"
        );
    }

    #[test]
    fn backends_an_earlier_agent_left_unused_are_freed() {
        let (mut maps, mut table) = (FakeMaps::default(), Table::default());
        let want = wanted(&[(8080, &[1, 2])]);
        sync(&mut table, &mut maps, &want, |_| true).unwrap();
        // A crash between writing a backend and the table that used it.
        let stray = Backend {
            addr: raw_addr(ip(9)),
            port: raw_port(80),
            pad: 0,
        };
        maps.set_backend(40, stray).unwrap();
        let mut adopted = Table::adopt(&maps);
        assert!(adopted.backends.contains_key(&(ip(9), 80)));
        sync(&mut adopted, &mut maps, &want, |_| true).unwrap();
        assert!(!adopted.backends.contains_key(&(ip(9), 80)));
        assert_eq!(maps.backends[&40], Backend::default());
        assert_eq!(adopted.backends.len(), 2);
    }

    #[test]
    fn a_failed_write_leaks_no_slot_and_the_next_sync_completes_it() {
        let mut table = Table::default();
        let mut maps = FaultyMaps {
            inner: FakeMaps::default(),
            healthy: usize::MAX,
        };
        sync(&mut table, &mut maps, &wanted(&[(8080, &[1])]), |_| true).unwrap();
        let want = wanted(&[(8080, &[1]), (9090, &[2, 3])]);
        // Its two backends are written, its Maglev table is not.
        maps.healthy = 2;
        assert!(matches!(
            sync(&mut table, &mut maps, &want, |_| true),
            Err(LbError::Kernel { .. })
        ));
        assert!(
            !maps.inner.frontends.contains_key(&port_key(9090)),
            "not published half-written"
        );
        maps.healthy = usize::MAX;
        sync(&mut table, &mut maps, &want, |_| true).unwrap();
        assert_eq!(
            table.frontend_slots.used.len(),
            2,
            "{:?}",
            table.frontend_slots
        );
        assert_eq!(
            table.frontends[&port_key(9090)].id,
            1,
            "the slot given back is reused"
        );
        assert_eq!(steered(&maps.inner, &port_key(9090)).len(), 2);
    }
}

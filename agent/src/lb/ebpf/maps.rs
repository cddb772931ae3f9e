//! The balancer's tables behind a seam: the kernel's pinned maps in production, a
//! fake (and a faulty one) in unit tests, as cilium keeps real, fake and faulty LB maps.

#[cfg(test)]
use std::collections::HashMap;

use aya::maps::{Array, HashMap as BpfHashMap, MapData};
use shoal_ebpf_common::{Backend, Frontend, FrontendKey, MaglevTable};

use crate::lb::{LbError, kernel};

/// The three tables that steer connections: frontends (what is balanced), each
/// frontend's Maglev table of backend ids (one element per frontend), and the backends
/// by id.
pub trait BalancerMaps {
    fn frontends(&self) -> Vec<(FrontendKey, Frontend)>;
    fn set_frontend(&mut self, key: &FrontendKey, value: Frontend) -> Result<(), LbError>;
    fn remove_frontend(&mut self, key: &FrontendKey);
    fn maglev(&self, frontend_id: u32) -> Option<MaglevTable>;
    fn set_maglev(&mut self, frontend_id: u32, table: &MaglevTable) -> Result<(), LbError>;
    fn backend(&self, id: u32) -> Option<Backend>;
    fn set_backend(&mut self, id: u32, value: Backend) -> Result<(), LbError>;
}

/// The kernel's maps, pinned, shared with the TC programs.
pub struct KernelMaps {
    pub frontends: BpfHashMap<MapData, FrontendKey, Frontend>,
    pub maglev: Array<MapData, MaglevTable>,
    pub backends: Array<MapData, Backend>,
}

impl BalancerMaps for KernelMaps {
    fn frontends(&self) -> Vec<(FrontendKey, Frontend)> {
        self.frontends.iter().flatten().collect()
    }

    fn set_frontend(&mut self, key: &FrontendKey, value: Frontend) -> Result<(), LbError> {
        self.frontends
            .insert(key, value, 0)
            .map_err(kernel("writing a frontend"))
    }

    fn remove_frontend(&mut self, key: &FrontendKey) {
        let _ = self.frontends.remove(key);
    }

    fn maglev(&self, frontend_id: u32) -> Option<MaglevTable> {
        self.maglev.get(&frontend_id, 0).ok()
    }

    fn set_maglev(&mut self, frontend_id: u32, table: &MaglevTable) -> Result<(), LbError> {
        self.maglev
            .set(frontend_id, *table, 0)
            .map_err(kernel("writing a Maglev table"))
    }

    fn backend(&self, id: u32) -> Option<Backend> {
        self.backends.get(&id, 0).ok()
    }

    fn set_backend(&mut self, id: u32, value: Backend) -> Result<(), LbError> {
        self.backends
            .set(id, value, 0)
            .map_err(kernel("writing a backend"))
    }
}

/// Tables in memory, with a count of writes.
#[cfg(test)]
#[derive(Default, Clone)]
pub struct FakeMaps {
    pub frontends: HashMap<FrontendKey, Frontend>,
    pub maglev: HashMap<u32, MaglevTable>,
    pub backends: HashMap<u32, Backend>,
    pub writes: usize,
}

#[cfg(test)]
impl BalancerMaps for FakeMaps {
    fn frontends(&self) -> Vec<(FrontendKey, Frontend)> {
        self.frontends.iter().map(|(k, v)| (*k, *v)).collect()
    }

    fn set_frontend(&mut self, key: &FrontendKey, value: Frontend) -> Result<(), LbError> {
        self.writes += 1;
        self.frontends.insert(*key, value);
        Ok(())
    }

    fn remove_frontend(&mut self, key: &FrontendKey) {
        self.writes += 1;
        self.frontends.remove(key);
    }

    fn maglev(&self, frontend_id: u32) -> Option<MaglevTable> {
        Some(self.maglev.get(&frontend_id).copied().unwrap_or_default())
    }

    fn set_maglev(&mut self, frontend_id: u32, table: &MaglevTable) -> Result<(), LbError> {
        self.writes += 1;
        self.maglev.insert(frontend_id, *table);
        Ok(())
    }

    fn backend(&self, id: u32) -> Option<Backend> {
        Some(self.backends.get(&id).copied().unwrap_or_default())
    }

    fn set_backend(&mut self, id: u32, value: Backend) -> Result<(), LbError> {
        self.writes += 1;
        self.backends.insert(id, value);
        Ok(())
    }
}

#[cfg(test)]
/// A fake whose writes start failing after `healthy` of them, as a kernel map can
/// refuse one (memory, a map replaced under the agent).
pub struct FaultyMaps {
    pub inner: FakeMaps,
    pub healthy: usize,
}

#[cfg(test)]
impl FaultyMaps {
    fn write(&mut self) -> Result<(), LbError> {
        if self.healthy == 0 {
            return Err(LbError::Kernel {
                what: "writing a map".into(),
                why: "injected fault".into(),
            });
        }
        self.healthy -= 1;
        Ok(())
    }
}

#[cfg(test)]
impl BalancerMaps for FaultyMaps {
    fn frontends(&self) -> Vec<(FrontendKey, Frontend)> {
        self.inner.frontends()
    }

    fn set_frontend(&mut self, key: &FrontendKey, value: Frontend) -> Result<(), LbError> {
        self.write()?;
        self.inner.set_frontend(key, value)
    }

    fn remove_frontend(&mut self, key: &FrontendKey) {
        self.inner.remove_frontend(key);
    }

    fn maglev(&self, frontend_id: u32) -> Option<MaglevTable> {
        self.inner.maglev(frontend_id)
    }

    fn set_maglev(&mut self, frontend_id: u32, table: &MaglevTable) -> Result<(), LbError> {
        self.write()?;
        self.inner.set_maglev(frontend_id, table)
    }

    fn backend(&self, id: u32) -> Option<Backend> {
        self.inner.backend(id)
    }

    fn set_backend(&mut self, id: u32, value: Backend) -> Result<(), LbError> {
        self.write()?;
        self.inner.set_backend(id, value)
    }
}

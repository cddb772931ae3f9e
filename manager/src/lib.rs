//! The shoal manager: the replicated state (state: store, invariants, Raft), which
//! depends on nothing above it; the cluster CA and join tokens (ca); the dispatcher that
//! keeps agents' sessions and hands out assignments; the leader's planners (orchestrator,
//! scheduler, allocator, updater, with tasks' shared helpers); the operations behind the
//! Control service (nodes, services, networks), which services and networks take from a
//! narrow `Proposer` (store + propose) rather than the whole Manager; and the gRPC servers
//! (api). ARCHITECTURE.md has the map.

pub mod allocator;
pub mod api;
pub mod ca;
pub mod dispatcher;
pub mod error;
pub mod jobs;
pub mod leader;
pub mod logs;
pub mod lookup;
pub mod manager;
pub mod networks;
pub mod nodes;
pub mod orchestrator;
pub mod proposer;
pub mod root_rotation;

pub mod scheduler;
pub mod secrets;
pub mod services;
pub mod snapshots;
pub mod state;
pub mod swarm_settings;
pub mod tasks;
#[cfg(test)]
mod test_swarm;
pub mod updater;

pub use error::ManagerError;
pub use manager::{Bootstrap, Manager, ManagerConfig};

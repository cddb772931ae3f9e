//! The shoal manager: desired state in Raft (raft, store), the cluster CA and join tokens
//! (ca), the dispatcher that keeps agents' sessions and hands out assignments, the
//! leader's planners (orchestrator, scheduler, allocator, updater, with tasks' shared
//! helpers), the operations behind the Control service (nodes, services, networks) and
//! the gRPC servers (api). ARCHITECTURE.md has the map.

pub mod allocator;
pub mod api;
pub mod ca;
pub mod dispatcher;
pub mod leader;
pub mod logs;
pub mod manager;
pub mod networks;
pub mod nodes;
pub mod orchestrator;
pub mod raft;
pub mod scheduler;
pub mod services;
pub mod store;
pub mod tasks;
pub mod updater;

pub use manager::{Bootstrap, Manager, ManagerConfig, ManagerError};

//! The shoal manager: desired state in Raft, the cluster CA and join tokens, the dispatcher
//! that keeps agents' sessions, and the control API behind the CLI.

pub mod ca;
pub mod dispatcher;
pub mod leader;
pub mod manager;
pub mod raft;
pub mod store;

pub use manager::{Bootstrap, Manager, ManagerConfig, ManagerError};
pub mod allocator;
pub mod api;
pub mod logs;
pub mod networks;
pub mod nodes;
pub mod orchestrator;
pub mod scheduler;
pub mod services;
pub mod tasks;
pub mod updater;

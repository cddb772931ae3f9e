//! shoal's objects in docker's shapes: Engine API JSON (also `inspect` output of the CLI)
//! and the `--pretty` text.

pub mod engine;
pub mod events;
pub mod network;
pub mod node;
pub mod secret;
pub mod service;

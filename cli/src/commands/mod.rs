//! Client commands, named, flagged and printed like the docker CLI's.

mod ca_rotation;
pub mod debug;
pub mod info;
pub mod network;
pub mod node;
pub mod secret;
pub mod service;
pub mod stack;
pub mod swarm;

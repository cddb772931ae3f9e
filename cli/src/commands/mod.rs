//! Client commands, named, flagged and printed like the docker CLI's.

pub mod debug;
pub mod info;
pub mod network;
pub mod node;
pub mod service;
pub mod service_json;
pub mod service_spec;
pub mod stack;
pub mod swarm;

//! Client commands, named, flagged and printed like the docker CLI's.

pub mod info;
pub mod node;
pub mod swarm;

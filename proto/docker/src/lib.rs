#![recursion_limit = "256"]
//! Docker's vocabulary, with no I/O: what docker users type and read, turned into shoal's
//! specs and back. The `shoal` CLI and the node's Engine API both speak through it, so a
//! flag, a compose key and an Engine API field mean the same thing everywhere.
//!
//! - in: [`flags`] (service flags -> spec), [`compose`] (compose files -> stack),
//!   [`engine::request`] (Engine API request bodies -> spec), [`engine::filters`];
//! - refusals: [`error::Invalid`], one sentence saying what is wrong and what to do;
//! - out: [`render`] (Engine API JSON and `inspect --pretty`), [`tables`] (`ls`/`ps`),
//!   [`text`] (tables, times, enum words), [`duration`].

pub mod compose;
mod compose_container;
pub mod compose_secrets;
pub mod container_flags;
pub mod duration;
pub mod engine;
pub mod error;
pub mod flags;
pub mod render;
pub mod tables;
pub mod text;

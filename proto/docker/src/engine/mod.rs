//! The Docker Engine API's vocabulary: versions, request bodies and filters. The server
//! lives in the node crate; everything here is pure, so its refusals are [`BadRequest`]s
//! the server answers with 400.

pub mod filters;
pub mod request;

/// The newest API version served: Docker 20.10's, where the swarm types shoal speaks
/// (ServiceStatus, jobs excepted) are complete. Older clients down to MIN get it too.
pub const API_VERSION: (u32, u32) = (1, 41);
pub const MIN_API_VERSION: (u32, u32) = (1, 24);

pub fn version_text(v: (u32, u32)) -> String {
    format!("{}.{}", v.0, v.1)
}

/// A request the Engine API refuses as malformed (HTTP 400), with dockerd-style words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

impl BadRequest {
    pub fn new(message: impl Into<String>) -> Self {
        BadRequest(message.into())
    }
}

impl std::fmt::Display for BadRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadRequest {}

pub type Parsed<T> = Result<T, BadRequest>;

//! The Docker Engine API's vocabulary: versions, request bodies and filters. The server
//! lives in the node crate; everything here is pure, so its refusals are
//! [`crate::error::Invalid`]s the server answers with 400.

pub mod filters;
pub mod go_json;
pub mod request;

/// The newest API version served: Docker 20.10's, where the swarm types shoal speaks
/// (ServiceStatus, jobs excepted) are complete. Older clients down to MIN get it too.
pub const API_VERSION: (u32, u32) = (1, 41);
pub const MIN_API_VERSION: (u32, u32) = (1, 24);

pub fn version_text(v: (u32, u32)) -> String {
    format!("{}.{}", v.0, v.1)
}

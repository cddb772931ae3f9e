//! The Docker Engine API's vocabulary: versions, request bodies and filters. The server
//! lives in the node crate; everything here is pure, so its refusals are
//! [`crate::error::Invalid`]s the server answers with 400.
//!
//! Why hand-written shapes and not bollard-stubs (the serde models generated from the
//! same OpenAPI description, already in the tree through bollard): measured on
//! bollard-stubs 1.53.1-rc.29.3.1, they carry the description's errata that dockerd's Go
//! types do not have, exactly where clients trip: the container spec's health check is
//! `HealthCheck` (dockerd writes and reads `Healthcheck`), a service create answer
//! writes `Warnings: null` (dockerd omits it), a task has no `NetworksAttachments`, and
//! float32 ratios are f64. Shoal's shapes follow dockerd instead, decoded with Go's rules
//! (go_json.rs) and checked field by field against the description, with those errata
//! named, by tests/conformance.rs.

pub mod engine_settings;
pub mod filters;
pub mod go_json;
pub mod request;
pub mod secrets;

/// The newest API version served: Docker 28.x's (the docker CLI installed with shoal
/// speaks it). The swarm types shoal speaks kept their shape from 1.41 on (newer fields,
/// such as Healthcheck.StartInterval or ContainerSpec.OomScoreAdj, are refused unless
/// zero, by request.rs); older clients down to MIN get the same answers.
pub const API_VERSION: (u32, u32) = (1, 50);
pub const MIN_API_VERSION: (u32, u32) = (1, 24);

pub fn version_text(v: (u32, u32)) -> String {
    format!("{}.{}", v.0, v.1)
}

/// "1.41" as (1, 41).
pub fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

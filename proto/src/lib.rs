//! shoal's wire protocol (gRPC over mTLS on 2377), its Swarm-shaped object model, and the
//! plain types every crate shares: IDs, join tokens, TLS plumbing.

#[allow(clippy::all, clippy::pedantic, unused_qualifications)]
pub mod pb {
    tonic::include_proto!("shoal.v1");
}

pub mod docker_names;
pub mod ids;
pub mod live_tls;
mod objects;
pub mod sealing;
pub mod time;
pub mod tls;
pub mod token;

pub use pb::*;

/// The port managers listen on for cluster control, as in Swarm.
pub const CONTROL_PORT: u16 = 2377;
/// Finished tasks kept per slot (or node) unless the swarm says otherwise, as Swarm.
pub const DEFAULT_TASK_HISTORY: i64 = 5;
/// Node certificates last 90 days unless the swarm says otherwise, as Swarm.
pub const DEFAULT_NODE_CERT_EXPIRY_SECS: u64 = 90 * 24 * 3600;
/// Raft log entries between snapshots unless the swarm says otherwise, as Swarm.
pub const DEFAULT_SNAPSHOT_INTERVAL: u64 = 10_000;
/// Default dispatcher heartbeat period.
pub const DEFAULT_HEARTBEAT_MS: u64 = 5_000;
/// A node is marked Down after this many missed heartbeat periods.
pub const MISSED_HEARTBEATS_DOWN: u32 = 3;
/// Where overlay subnets come from when the cluster names no default address pool, as in
/// Swarm.
pub const DEFAULT_ADDR_POOL: &str = "10.0.0.0/8";

/// The largest count a service spec may hold (replicas, tasks per node, update and
/// rollback parallelism): every task is an object in Raft that the leader plans each
/// pass, so an absurd count would exhaust the managers' memory and take quorum with it.
pub const MAX_REPLICAS: u64 = 10_000;
/// The most ports one service may publish (a published range counts every port).
pub const MAX_PORTS: usize = 1_000;

/// Refuses a count above `max`, naming the setting (`what`, as the flag is spelled).
pub fn check_count(what: &str, value: u64, max: u64) -> Result<(), String> {
    if value > max {
        return Err(format!(
            "{what} {value} is more than shoal allows ({max}): give at most {max}"
        ));
    }
    Ok(())
}

/// Wall-clock time in unix nanoseconds, for object metadata.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

//! The shoal node agent: joins a swarm and keeps its certificate, holds the heartbeat
//! session, runs the tasks it is assigned (executor, runtimes), plumbs them into their
//! overlays (overlay, netlink), spreads their endpoints (gossip), answers their DNS (dns)
//! and balances service VIPs and published ports (lb); dataplane coordinates the last
//! four for each task. ARCHITECTURE.md has the map.

pub mod certs;
pub mod dataplane;
pub mod dns;
pub mod executor;
pub mod gossip;
pub mod join;
pub mod lb;
pub mod logs;
pub mod netlink;
pub mod nft;
pub mod overlay;
pub mod runtime;
pub mod session;
pub mod sys;

/// What this node is, as reported to the managers.
pub fn describe_node(hostname: &str) -> shoal_proto::NodeDescription {
    let memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<i64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as i64;
    shoal_proto::NodeDescription {
        hostname: hostname.to_string(),
        platform: Some(shoal_proto::Platform {
            architecture: std::env::consts::ARCH.to_string(),
            os: std::env::consts::OS.to_string(),
        }),
        resources: Some(shoal_proto::Resources {
            nano_cpus: cpus * 1_000_000_000,
            memory_bytes,
        }),
        engine_version: env!("CARGO_PKG_VERSION").to_string(),
        tls_info: None,
    }
}

//! `shoal info` and `shoal version`.

use shoal_proto::Empty;

use shoal_node::client::{Target, daemon_error};

pub async fn info(target: &Target) -> anyhow::Result<()> {
    let info = target
        .connect()
        .await?
        .info(Empty {})
        .await
        .map_err(daemon_error)?
        .into_inner();
    println!("Server:");
    println!(" Server Version: {}", info.version);
    println!(" Name: {}", info.hostname);
    println!(" Swarm: {}", info.local_node_state);
    if info.local_node_state == "inactive" {
        return Ok(());
    }
    println!("  NodeID: {}", info.node_id);
    if !info.error.is_empty() {
        println!("  Error: {}", info.error);
    }
    println!("  Is Manager: {}", info.control_available);
    if info.control_available {
        println!("  ClusterID: {}", info.cluster_id);
        println!("  Managers: {}", info.managers);
        println!("  Nodes: {}", info.nodes);
        println!("  Dispatcher:");
        println!(
            "   Heartbeat Period: {}",
            human_duration(info.heartbeat_period_ms)
        );
        println!("  CA Configuration:");
        println!("   Expiry Duration: {}", human_secs(info.cert_expiry_secs));
        println!("   Force Rotate: {}", info.force_rotate);
        println!("   CA Certificate Digest: {}", info.ca_cert_digest);
        if info.ca_rotation_in_progress {
            println!("   Root Rotation In Progress: true");
        }
        println!("  Raft:");
        println!("   Is Leader: {}", info.is_leader);
        println!("   Snapshot Interval: {}", info.snapshot_interval);
        println!(
            "   Number of Old Snapshots to Retain: {}",
            info.keep_old_snapshots
        );
        println!(
            "   Snapshots: newest at log index {}; older kept at {:?}",
            info.snapshot_index, info.old_snapshots
        );
    }
    println!("  Node Address: {}", info.node_addr);
    println!("  Manager Addresses:");
    for m in &info.remote_managers {
        println!("   {m}");
    }
    Ok(())
}

/// As docker prints a duration: in the largest unit that divides it.
fn human_secs(secs: u64) -> String {
    match secs {
        s if s % (24 * 3600) == 0 => format!("{} days", s / (24 * 3600)),
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        s => format!("{s} seconds"),
    }
}

fn human_duration(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{} seconds", ms / 1000)
    } else {
        format!("{ms} milliseconds")
    }
}

pub async fn version(target: &Target) -> anyhow::Result<()> {
    println!("Client:");
    println!(" Version:    {}", env!("CARGO_PKG_VERSION"));
    println!(
        " OS/Arch:    {}/{}",
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    println!();
    println!("Server:");
    match target.connect().await {
        Ok(mut c) => match c.info(Empty {}).await {
            Ok(info) => println!(" Version:    {}", info.into_inner().version),
            Err(s) => println!(" {}", daemon_error(s)),
        },
        Err(e) => println!(" {e}"),
    }
    Ok(())
}

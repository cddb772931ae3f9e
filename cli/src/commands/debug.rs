//! `shoal debug`: troubleshooting views of one node's data plane.

use clap::Subcommand;
use shoal_proto::Empty;

use shoal_docker::text::table;
use shoal_node::client::{Target, daemon_error};

#[derive(Subcommand, Debug)]
pub enum DebugCommand {
    /// This node's gossip: members, keys, endpoint table and dropped datagrams
    Gossip,
    /// This node's load balancer: engine, published ports and VIPs, their backends, and
    /// what each one carried
    Lb,
}

pub async fn run(target: &Target, cmd: DebugCommand) -> anyhow::Result<()> {
    match cmd {
        DebugCommand::Gossip => gossip(target).await,
        DebugCommand::Lb => load_balancer(target).await,
    }
}

async fn load_balancer(target: &Target) -> anyhow::Result<()> {
    let s = target
        .connect()
        .await?
        .load_balancer_status(Empty {})
        .await
        .map_err(daemon_error)?
        .into_inner();
    println!("Engine: {}", s.engine);
    if !s.attach_mode.is_empty() {
        println!("Attach mode: {}", s.attach_mode);
    }
    let mut rows = Vec::new();
    for f in &s.frontends {
        let count = |n: u64| if f.counted { n.to_string() } else { "-".into() };
        rows.push(vec![
            f.address.clone(),
            f.service.clone(),
            String::new(),
            count(f.connections),
            count(f.packets),
            count(f.bytes),
        ]);
        for b in &f.backends {
            rows.push(vec![
                String::new(),
                String::new(),
                b.address.clone(),
                count(b.connections),
                count(b.packets),
                count(b.bytes),
            ]);
        }
    }
    print!(
        "{}",
        table(
            &[
                "FRONTEND",
                "SERVICE",
                "BACKEND",
                "CONNECTIONS",
                "PACKETS",
                "BYTES"
            ],
            &rows
        )
    );
    if s.frontends.iter().any(|f| !f.counted) {
        println!("(-: not counted; the ebpf engine counts published ports)");
    }
    Ok(())
}

async fn gossip(target: &Target) -> anyhow::Result<()> {
    let s = target
        .connect()
        .await?
        .gossip_status(Empty {})
        .await
        .map_err(daemon_error)?
        .into_inner();
    println!("Node: {} ({})", s.node_id, s.addr);
    let keys: Vec<String> = s.key_ids.iter().map(ToString::to_string).collect();
    println!(
        "Keys: {} (sealing with {})",
        keys.join(", "),
        s.primary_key_id
    );
    println!("Members: {}", s.members.len());
    let members: Vec<Vec<String>> = s
        .members
        .iter()
        .map(|m| vec![m.node_id.clone(), m.addr.clone()])
        .collect();
    print!("{}", table(&["NODE", "ADDRESS"], &members));
    println!(
        "Endpoints: {} live, {} entries",
        s.endpoints.len(),
        s.entries
    );
    let endpoints: Vec<Vec<String>> = s
        .endpoints
        .iter()
        .map(|e| {
            vec![
                e.network_id.clone(),
                e.service_name.clone(),
                e.task_id.clone(),
                e.ip.clone(),
                e.mac.clone(),
                e.vtep.clone(),
                e.node_id.clone(),
                e.vip.clone(),
                e.ports.join(","),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "NETWORK", "SERVICE", "TASK", "IP", "MAC", "VTEP", "NODE", "VIP", "PORTS"
            ],
            &endpoints
        )
    );
    println!("Datagrams: received {}, sent {}", s.received, s.sent);
    println!(
        "Dropped: {} with a bad key, {} malformed",
        s.dropped_bad_key, s.dropped_malformed
    );
    println!("Push/pull exchanges: {}", s.push_pulls);
    Ok(())
}

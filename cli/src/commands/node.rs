//! `shoal node ...`

use anyhow::bail;
use clap::Subcommand;
use shoal_proto::docker_names::DockerName;
use shoal_proto::{
    Empty, GetNodeRequest, NodeAvailability, NodeRole, RemoveNodeRequest, UpdateNodeRequest,
};

use shoal_docker::render::node::{engine_json, pretty as pretty_node};
use shoal_docker::tables::ls_table;
use shoal_node::client::{Target, daemon_error};

#[derive(Subcommand)]
pub enum NodeCommand {
    /// List nodes in the swarm
    #[command(alias = "list")]
    Ls {
        /// Only display IDs
        #[arg(short, long)]
        quiet: bool,
    },
    /// Display detailed information on one or more nodes
    Inspect {
        /// Print the information in a human friendly format
        #[arg(long)]
        pretty: bool,
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Update a node
    Update {
        /// Availability of the node ("active", "pause", "drain")
        #[arg(long, value_parser = ["active", "pause", "drain"])]
        availability: Option<String>,
        /// Add or update a node label (key=value)
        #[arg(long = "label-add")]
        label_add: Vec<String>,
        /// Remove a node label if exists
        #[arg(long = "label-rm")]
        label_rm: Vec<String>,
        /// Role of the node ("worker", "manager")
        #[arg(long, value_parser = ["worker", "manager"])]
        role: Option<String>,
        node: String,
    },
    /// Promote one or more nodes to manager in the swarm
    Promote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Demote one or more nodes from manager in the swarm
    Demote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Remove one or more nodes from the swarm
    #[command(alias = "remove")]
    Rm {
        /// Force remove a node from the swarm
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        nodes: Vec<String>,
    },
}

fn parse_role(s: &str) -> NodeRole {
    if s == "manager" {
        NodeRole::Manager
    } else {
        NodeRole::Worker
    }
}

pub async fn run(target: &Target, cmd: NodeCommand) -> anyhow::Result<()> {
    let mut client = target.connect().await?;
    match cmd {
        NodeCommand::Ls { quiet } => {
            let resp = client
                .list_nodes(Empty {})
                .await
                .map_err(daemon_error)?
                .into_inner();
            if quiet {
                for n in &resp.nodes {
                    println!("{}", n.id);
                }
            } else {
                print!("{}", ls_table(&resp.nodes, &resp.self_node_id));
            }
        }
        NodeCommand::Inspect { pretty, nodes } => {
            let mut found = Vec::new();
            for key in &nodes {
                let node = client
                    .get_node(GetNodeRequest {
                        id_or_name: key.clone(),
                    })
                    .await
                    .map_err(daemon_error)?
                    .into_inner();
                found.push(node);
            }
            if pretty {
                for (i, n) in found.iter().enumerate() {
                    if i > 0 {
                        println!();
                    }
                    print!("{}", pretty_node(n));
                }
            } else {
                let docs: Vec<_> = found.iter().map(engine_json).collect();
                println!("{}", serde_json::to_string_pretty(&docs)?);
            }
        }
        NodeCommand::Update {
            availability,
            label_add,
            label_rm,
            role,
            node,
        } => {
            let mut labels = std::collections::HashMap::new();
            for l in &label_add {
                let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
                if k.is_empty() {
                    bail!("invalid label {l:?}: use key=value");
                }
                labels.insert(k.to_string(), v.to_string());
            }
            let availability = availability
                .map(|a| NodeAvailability::from_docker_name(&a).unwrap_or_default() as i32);
            client
                .update_node(UpdateNodeRequest {
                    id_or_name: node.clone(),
                    availability,
                    label_add: labels,
                    label_rm,
                    role: role.map(|r| parse_role(&r) as i32),
                })
                .await
                .map_err(daemon_error)?;
            println!("{node}");
        }
        NodeCommand::Promote { nodes } => {
            for node in nodes {
                set_role(&mut client, &node, NodeRole::Manager).await?;
                println!("Node {node} promoted to a manager in the swarm.");
            }
        }
        NodeCommand::Demote { nodes } => {
            for node in nodes {
                set_role(&mut client, &node, NodeRole::Worker).await?;
                println!("Manager {node} demoted in the swarm.");
            }
        }
        NodeCommand::Rm { force, nodes } => {
            for node in nodes {
                client
                    .remove_node(RemoveNodeRequest {
                        id_or_name: node.clone(),
                        force,
                    })
                    .await
                    .map_err(daemon_error)?;
                println!("{node}");
            }
        }
    }
    Ok(())
}

async fn set_role(
    client: &mut shoal_proto::control_client::ControlClient<tonic::transport::Channel>,
    node: &str,
    role: NodeRole,
) -> anyhow::Result<()> {
    client
        .update_node(UpdateNodeRequest {
            id_or_name: node.to_string(),
            role: Some(role as i32),
            ..Default::default()
        })
        .await
        .map_err(daemon_error)?;
    Ok(())
}

//! `shoal node ...`

use anyhow::bail;
use clap::Subcommand;
use serde_json::json;
use shoal_proto::docker_names::DockerName;
use shoal_proto::{
    Empty, GetNodeRequest, Node, NodeAvailability, NodeRole, RemoveNodeRequest, UpdateNodeRequest,
};

use crate::client::{Target, daemon_error};
use crate::output::{availability_name, reachability_name, rfc3339, role_name, state_name, table};

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

fn hostname(n: &Node) -> &str {
    n.description
        .as_ref()
        .map(|d| d.hostname.as_str())
        .unwrap_or("")
}

fn manager_status(n: &Node) -> String {
    match &n.manager_status {
        Some(ms) if ms.leader => "Leader".into(),
        Some(ms) => reachability_name(ms.reachability()).into(),
        None => String::new(),
    }
}

pub fn ls_table(nodes: &[Node], self_id: &str) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let id = if n.id == self_id {
                format!("{} *", n.id)
            } else {
                n.id.clone()
            };
            vec![
                id,
                hostname(n).to_string(),
                state_name(n.status.as_ref().map(|s| s.state()).unwrap_or_default()).to_string(),
                availability_name(
                    n.spec
                        .as_ref()
                        .map(|s| s.availability())
                        .unwrap_or_default(),
                )
                .to_string(),
                manager_status(n),
                n.description
                    .as_ref()
                    .map(|d| d.engine_version.clone())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "HOSTNAME",
            "STATUS",
            "AVAILABILITY",
            "MANAGER STATUS",
            "ENGINE VERSION",
        ],
        &rows,
    )
}

/// A node as the Docker Engine API shows it.
pub fn engine_json(n: &Node) -> serde_json::Value {
    let meta = n.meta.unwrap_or_default();
    let spec = n.spec.clone().unwrap_or_default();
    let desc = n.description.clone().unwrap_or_default();
    let status = n.status.clone().unwrap_or_default();
    let mut doc = json!({
        "ID": n.id,
        "Version": {"Index": meta.version.map(|v| v.index).unwrap_or_default()},
        "CreatedAt": rfc3339(meta.created_at_unix_nanos),
        "UpdatedAt": rfc3339(meta.updated_at_unix_nanos),
        "Spec": {
            "Labels": spec.annotations.clone().map(|a| a.labels).unwrap_or_default(),
            "Role": role_name(spec.desired_role()),
            "Availability": availability_name(spec.availability()).to_lowercase(),
        },
        "Description": {
            "Hostname": desc.hostname,
            "Platform": {
                "Architecture": desc.platform.clone().unwrap_or_default().architecture,
                "OS": desc.platform.unwrap_or_default().os,
            },
            "Resources": {
                "NanoCPUs": desc.resources.unwrap_or_default().nano_cpus,
                "MemoryBytes": desc.resources.unwrap_or_default().memory_bytes,
            },
            "Engine": {"EngineVersion": desc.engine_version},
        },
        "Status": {
            "State": state_name(status.state()).to_lowercase(),
            "Message": status.message,
            "Addr": status.addr,
        },
    });
    if let Some(ms) = &n.manager_status {
        doc["ManagerStatus"] = json!({
            "Leader": ms.leader,
            "Reachability": reachability_name(ms.reachability()).to_lowercase(),
            "Addr": ms.addr,
        });
    }
    doc
}

fn pretty_node(n: &Node) -> String {
    let spec = n.spec.clone().unwrap_or_default();
    let desc = n.description.clone().unwrap_or_default();
    let status = n.status.clone().unwrap_or_default();
    let mut out = String::new();
    out.push_str(&format!("ID:\t\t\t{}\n", n.id));
    let labels = spec
        .annotations
        .clone()
        .map(|a| a.labels)
        .unwrap_or_default();
    if !labels.is_empty() {
        out.push_str("Labels:\n");
        let mut sorted: Vec<_> = labels.iter().collect();
        sorted.sort();
        for (k, v) in sorted {
            out.push_str(&format!(" - {k}={v}\n"));
        }
    }
    out.push_str(&format!("Hostname:\t\t{}\n", desc.hostname));
    let created = n
        .meta
        .as_ref()
        .map(|m| m.created_at_unix_nanos)
        .unwrap_or_default();
    out.push_str(&format!("Joined at:\t\t{}\n", rfc3339(created)));
    out.push_str("Status:\n");
    out.push_str(&format!(" State:\t\t\t{}\n", state_name(status.state())));
    if !status.message.is_empty() {
        out.push_str(&format!(" Message:\t\t{}\n", status.message));
    }
    out.push_str(&format!(
        " Availability:\t\t{}\n",
        availability_name(spec.availability())
    ));
    out.push_str(&format!(" Address:\t\t{}\n", status.addr));
    if let Some(ms) = &n.manager_status {
        out.push_str("Manager Status:\n");
        out.push_str(&format!(" Address:\t\t{}\n", ms.addr));
        out.push_str(&format!(
            " Raft Status:\t\t{}\n",
            reachability_name(ms.reachability())
        ));
        out.push_str(&format!(
            " Leader:\t\t{}\n",
            if ms.leader { "Yes" } else { "No" }
        ));
    }
    let platform = desc.platform.unwrap_or_default();
    out.push_str("Platform:\n");
    out.push_str(&format!(" Operating System:\t{}\n", platform.os));
    out.push_str(&format!(" Architecture:\t\t{}\n", platform.architecture));
    let res = desc.resources.unwrap_or_default();
    out.push_str("Resources:\n");
    out.push_str(&format!(" CPUs:\t\t\t{}\n", res.nano_cpus / 1_000_000_000));
    out.push_str(&format!(
        " Memory:\t\t{:.4}GiB\n",
        res.memory_bytes as f64 / (1u64 << 30) as f64
    ));
    out.push_str(&format!("Engine Version:\t\t{}\n", desc.engine_version));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{ManagerStatus, NodeDescription, NodeSpec, NodeState, NodeStatus};

    #[test]
    fn ls_marks_self_and_leader() {
        let node = |id: &str, host: &str, leader: Option<bool>| Node {
            id: id.into(),
            spec: Some(NodeSpec::default()),
            description: Some(NodeDescription {
                hostname: host.into(),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: NodeState::Ready as i32,
                ..Default::default()
            }),
            manager_status: leader.map(|l| ManagerStatus {
                leader: l,
                reachability: shoal_proto::Reachability::Reachable as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        let out = ls_table(
            &[
                node("aaa", "manager1", Some(true)),
                node("bbb", "worker1", None),
            ],
            "aaa",
        );
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("ID "));
        assert!(lines[0].contains("MANAGER STATUS"));
        assert!(lines[1].starts_with("aaa *"));
        assert!(lines[1].contains("Leader"));
        assert!(
            lines[2].contains("worker1")
                && lines[2].contains("Ready")
                && lines[2].contains("Active")
        );
    }
}

//! `shoal network ...`

use anyhow::bail;
use clap::Subcommand;
use serde_json::json;
use shoal_proto::{
    Annotations, Empty, IpamConfig, Network, NetworkConnectRequest, NetworkRef, NetworkSpec,
};

use shoal_docker::render::network::engine_json;
use shoal_docker::text::table;
use shoal_node::client::{Target, daemon_error};

#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Create a network
    Create {
        /// Driver to manage the network
        #[arg(short, long, default_value = "overlay")]
        driver: String,
        /// Subnet in CIDR format
        #[arg(long)]
        subnet: Option<String>,
        /// Gateway for the subnet
        #[arg(long)]
        gateway: Option<String>,
        /// Enable manual container attachment
        #[arg(long)]
        attachable: bool,
        /// Driver options (mtu=N)
        #[arg(short, long = "opt")]
        opt: Vec<String>,
        /// Network labels (key=value)
        #[arg(long)]
        label: Vec<String>,
        name: String,
    },
    /// List networks
    #[command(alias = "list")]
    Ls {
        #[arg(short, long)]
        quiet: bool,
    },
    /// Display detailed information on one or more networks
    Inspect {
        /// Verbose output for diagnostics
        #[arg(short, long)]
        verbose: bool,
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Connect a container on this node (a docker container, or a named network
    /// namespace) to an attachable network
    Connect {
        /// Add network-scoped alias for the container
        #[arg(long)]
        alias: Vec<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container on this node from a network
    Disconnect { network: String, container: String },
}

fn pairs(items: &[String], what: &str) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("invalid {what} {kv:?}: use key=value"),
        })
        .collect()
}

pub async fn run(target: &Target, cmd: NetworkCommand) -> anyhow::Result<()> {
    let mut client = target.connect().await?;
    match cmd {
        NetworkCommand::Create {
            driver,
            subnet,
            gateway,
            attachable,
            opt,
            label,
            name,
        } => {
            if gateway.is_some() && subnet.is_none() {
                bail!("--gateway needs --subnet");
            }
            let spec = NetworkSpec {
                annotations: Some(Annotations {
                    name,
                    labels: pairs(&label, "label")?.into_iter().collect(),
                }),
                driver,
                options: pairs(&opt, "option")?.into_iter().collect(),
                ipam: subnet
                    .map(|s| {
                        vec![IpamConfig {
                            subnet: s,
                            gateway: gateway.unwrap_or_default(),
                        }]
                    })
                    .unwrap_or_default(),
                attachable,
                ingress: false,
            };
            let n = client
                .create_network(spec)
                .await
                .map_err(daemon_error)?
                .into_inner();
            println!("{}", n.id);
        }
        NetworkCommand::Connect {
            alias,
            network,
            container,
        } => {
            client
                .connect_network(NetworkConnectRequest {
                    node_id: String::new(),
                    network,
                    container,
                    aliases: alias,
                })
                .await
                .map_err(daemon_error)?;
        }
        NetworkCommand::Disconnect { network, container } => {
            client
                .disconnect_network(NetworkConnectRequest {
                    node_id: String::new(),
                    network,
                    container,
                    aliases: vec![],
                })
                .await
                .map_err(daemon_error)?;
        }
        NetworkCommand::Ls { quiet } => {
            let list = client
                .list_networks(Empty {})
                .await
                .map_err(daemon_error)?
                .into_inner()
                .networks;
            if quiet {
                for n in &list {
                    println!("{}", shoal_proto::ids::short(&n.id));
                }
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|n| {
                    vec![
                        shoal_proto::ids::short(&n.id).to_string(),
                        n.name().to_string(),
                        "overlay".into(),
                        "swarm".into(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows)
            );
        }
        NetworkCommand::Inspect { verbose, networks } => {
            let mut docs = Vec::new();
            for key in networks {
                let n = client
                    .get_network(NetworkRef { id_or_name: key })
                    .await
                    .map_err(daemon_error)?
                    .into_inner();
                let mut doc = engine_json(&n);
                if verbose {
                    add_verbose(&mut client, &n, &mut doc).await?;
                }
                docs.push(doc);
            }
            println!("{}", serde_json::to_string_pretty(&docs)?);
        }
        NetworkCommand::Rm { networks } => {
            for key in networks {
                client
                    .remove_network(NetworkRef {
                        id_or_name: key.clone(),
                    })
                    .await
                    .map_err(daemon_error)?;
                println!("{key}");
            }
        }
    }
    Ok(())
}

/// `--verbose`: the network's peers (nodes with tasks on it) and, per service, its tasks
/// with their endpoint addresses and nodes, as the managers know them.
async fn add_verbose(
    client: &mut shoal_proto::control_client::ControlClient<tonic::transport::Channel>,
    n: &Network,
    doc: &mut serde_json::Value,
) -> anyhow::Result<()> {
    let tasks = client
        .list_tasks(shoal_proto::ListTasksRequest::default())
        .await
        .map_err(daemon_error)?
        .into_inner();
    let nodes = client
        .list_nodes(Empty {})
        .await
        .map_err(daemon_error)?
        .into_inner()
        .nodes;
    let node_ip = |id: &str| {
        nodes
            .iter()
            .find(|x| x.id == id)
            .and_then(|x| x.status.as_ref())
            .map(|s| s.addr.clone())
            .unwrap_or_default()
    };
    let mut services: serde_json::Map<String, serde_json::Value> = serde_json::Map::new();
    let mut peers = std::collections::BTreeMap::new();
    let running = tasks
        .tasks
        .iter()
        .filter(|t| t.desired_state() == shoal_proto::TaskState::Running && !t.node_id.is_empty());
    for t in running {
        for a in t.networks.iter().filter(|a| a.network_id == n.id) {
            let host = tasks
                .node_names
                .get(&t.node_id)
                .cloned()
                .unwrap_or_default();
            peers.insert(host.clone(), node_ip(&t.node_id));
            let cidr = a.addresses.first().cloned().unwrap_or_default();
            if let Some(container) = t.attached_container() {
                let mac = cidr
                    .split('/')
                    .next()
                    .and_then(|ip| ip.parse().ok())
                    .map(|ip| shoal_agent::netlink::mac_string(&shoal_agent::netlink::mac_for(ip)))
                    .unwrap_or_default();
                doc["Containers"][container] = json!({
                    "Name": container,
                    "EndpointID": t.id,
                    "MacAddress": mac,
                    "IPv4Address": cidr,
                    "IPv6Address": "",
                });
                continue;
            }
            let entry = services.entry(t.service_name.clone()).or_insert_with(|| {
                let vip = t
                    .endpoint
                    .iter()
                    .flat_map(|e| &e.virtual_ips)
                    .find(|v| v.network_id == a.network_id)
                    .and_then(|v| v.addr.split('/').next())
                    .unwrap_or("");
                json!({"VIP": vip, "Ports": [], "Tasks": []})
            });
            let task_name = format!(
                "{}.{}.{}",
                t.service_name,
                if t.slot > 0 {
                    t.slot.to_string()
                } else {
                    t.node_id.clone()
                },
                t.id
            );
            let ip = a
                .addresses
                .first()
                .and_then(|x| x.split('/').next())
                .unwrap_or("")
                .to_string();
            entry["Tasks"].as_array_mut().expect("array").push(json!({
                "Name": task_name,
                "EndpointIP": ip,
                "Info": {"Host IP": node_ip(&t.node_id), "Node": host},
            }));
        }
    }
    doc["Peers"] = json!(
        peers
            .iter()
            .map(|(name, ip)| json!({"Name": name, "IP": ip}))
            .collect::<Vec<_>>()
    );
    doc["Services"] = serde_json::Value::Object(services);
    Ok(())
}

//! `shoal swarm ...`

use clap::Subcommand;
use shoal_proto::{
    JoinTokenRequest, NodeRole, SwarmInitRequest, SwarmJoinRequest, SwarmLeaveRequest,
    SwarmUnlockRequest, SwarmUpdateRequest, UnlockKeyRequest,
};

use shoal_node::client::{Target, daemon_error};

/// Lifetimes of what the swarm keeps: certificates and Raft snapshots.
#[derive(clap::Args)]
pub struct Lifetimes {
    /// Validity period for node certificates (ns|us|ms|s|m|h; default 2160h)
    #[arg(long = "cert-expiry", value_parser = shoal_docker::duration::parse)]
    cert_expiry: Option<std::time::Duration>,
    /// Number of log entries between Raft snapshots (default 10000)
    #[arg(long = "snapshot-interval")]
    snapshot_interval: Option<u64>,
    /// Number of additional Raft snapshots to retain
    #[arg(long = "max-snapshots")]
    max_snapshots: Option<u64>,
}

#[derive(Subcommand)]
pub enum SwarmCommand {
    /// Initialize a swarm
    Init {
        /// Advertised address (format: <ip|interface>[:port])
        #[arg(long)]
        advertise_addr: Option<String>,
        /// Listen address (format: <ip|interface>[:port])
        #[arg(long)]
        listen_addr: Option<String>,
        /// Force create a new cluster from current state
        #[arg(long)]
        force_new_cluster: bool,
        /// Dispatcher heartbeat period (ns|us|ms|s|m|h)
        #[arg(long, value_parser = shoal_docker::duration::parse)]
        dispatcher_heartbeat: Option<std::time::Duration>,
        /// Default address pool in CIDR format (repeatable)
        #[arg(long = "default-addr-pool")]
        default_addr_pool: Vec<String>,
        /// Default address pool subnet mask length
        #[arg(long = "default-addr-pool-mask-length")]
        default_addr_pool_mask_length: Option<u32>,
        /// Enable manager autolocking (requiring an unlock key to start a stopped manager)
        #[arg(long)]
        autolock: bool,
        /// Task history retention limit (finished tasks kept per slot; default 5)
        #[arg(long = "task-history-limit", allow_negative_numbers = true)]
        task_history_limit: Option<i64>,
        #[command(flatten)]
        lifetimes: Lifetimes,
    },
    /// Update the swarm
    Update {
        /// Change manager autolocking setting (true|false)
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        autolock: Option<bool>,
        /// Dispatcher heartbeat period (ns|us|ms|s|m|h)
        #[arg(long, value_parser = shoal_docker::duration::parse)]
        dispatcher_heartbeat: Option<std::time::Duration>,
        /// Task history retention limit (finished tasks kept per slot; negative: all)
        #[arg(long = "task-history-limit", allow_negative_numbers = true)]
        task_history_limit: Option<i64>,
        #[command(flatten)]
        lifetimes: Lifetimes,
    },
    /// Manage the unlock key
    UnlockKey {
        /// Only display the key
        #[arg(short, long)]
        quiet: bool,
        /// Rotate the unlock key
        #[arg(long)]
        rotate: bool,
    },
    /// Unlock a locked manager (the key is read from standard input, or asked for)
    Unlock,
    /// Display and rotate the root CA
    Ca {
        /// Rotate the swarm CA: every node moves to a new root (or the one given)
        #[arg(long)]
        rotate: bool,
        /// Validity period for node certificates (ns|us|ms|s|m|h)
        #[arg(long = "cert-expiry", value_parser = shoal_docker::duration::parse)]
        cert_expiry: Option<std::time::Duration>,
        /// Path to the PEM certificate of the root CA to rotate to
        #[arg(long = "ca-cert")]
        ca_cert: Option<std::path::PathBuf>,
        /// Path to the PEM key of that root CA
        #[arg(long = "ca-key")]
        ca_key: Option<std::path::PathBuf>,
        /// Exit immediately instead of waiting for the rotation to converge
        #[arg(short, long)]
        detach: bool,
        /// Suppress progress output
        #[arg(short, long)]
        quiet: bool,
    },
    /// Join a swarm as a node and/or manager
    Join {
        /// Token for entry into the swarm
        #[arg(long)]
        token: String,
        /// Advertised address (format: <ip|interface>[:port])
        #[arg(long)]
        advertise_addr: Option<String>,
        /// Listen address (format: <ip|interface>[:port])
        #[arg(long)]
        listen_addr: Option<String>,
        /// A manager's address, HOST:PORT
        remote: String,
    },
    /// Manage join tokens
    JoinToken {
        /// Only display token
        #[arg(short, long)]
        quiet: bool,
        /// Rotate join token
        #[arg(long)]
        rotate: bool,
        /// worker or manager
        #[arg(value_parser = ["worker", "manager"])]
        role: String,
    },
    /// Leave the swarm
    Leave {
        /// Force this node to leave the swarm, ignoring warnings
        #[arg(short, long)]
        force: bool,
    },
}

pub async fn run(target: &Target, cmd: SwarmCommand) -> anyhow::Result<()> {
    let mut client = target.connect().await?;
    match cmd {
        SwarmCommand::Init {
            advertise_addr,
            listen_addr,
            force_new_cluster,
            dispatcher_heartbeat,
            default_addr_pool,
            default_addr_pool_mask_length,
            autolock,
            task_history_limit,
            lifetimes,
        } => {
            let resp = client
                .swarm_init(SwarmInitRequest {
                    cert_expiry_secs: lifetimes.cert_expiry.map_or(0, |d| d.as_secs()),
                    snapshot_interval: lifetimes.snapshot_interval.unwrap_or(0),
                    keep_old_snapshots: lifetimes.max_snapshots.unwrap_or(0),
                    advertise_addr: advertise_addr.unwrap_or_default(),
                    listen_addr: listen_addr.unwrap_or_default(),
                    force_new_cluster,
                    heartbeat_period_ms: dispatcher_heartbeat.map_or(0, |d| d.as_millis() as u64),
                    default_addr_pool,
                    default_addr_pool_mask_length: default_addr_pool_mask_length.unwrap_or(0),
                    autolock,
                    task_history_limit,
                })
                .await
                .map_err(daemon_error)?
                .into_inner();
            let addr = client
                .join_token(JoinTokenRequest {
                    role: NodeRole::Worker as i32,
                    rotate: false,
                })
                .await
                .map(|r| r.into_inner().manager_addr)
                .unwrap_or_default();
            println!(
                "Swarm initialized: current node ({}) is now a manager.\n",
                resp.node_id
            );
            println!("To add a worker to this swarm, run the following command:\n");
            println!(
                "    shoal swarm join --token {} {addr}\n",
                resp.worker_token
            );
            println!(
                "To add a manager to this swarm, run 'shoal swarm join-token manager' and follow the instructions.\n"
            );
            if autolock {
                print_unlock_key(&show_unlock_key(&mut client, false).await?);
            }
        }
        SwarmCommand::Update {
            autolock,
            dispatcher_heartbeat,
            task_history_limit,
            lifetimes,
        } => {
            client
                .update_swarm(SwarmUpdateRequest {
                    autolock,
                    heartbeat_period_ms: dispatcher_heartbeat.map(|d| d.as_millis() as u64),
                    task_history_limit,
                    cert_expiry_secs: lifetimes.cert_expiry.map(|d| d.as_secs()),
                    snapshot_interval: lifetimes.snapshot_interval,
                    keep_old_snapshots: lifetimes.max_snapshots,
                    ..Default::default()
                })
                .await
                .map_err(daemon_error)?;
            println!("Swarm updated.");
            if autolock == Some(true) {
                print_unlock_key(&show_unlock_key(&mut client, false).await?);
            }
        }
        SwarmCommand::UnlockKey { quiet, rotate } => {
            let key = show_unlock_key(&mut client, rotate).await?;
            if key.is_empty() {
                anyhow::bail!(
                    "no unlock key is set: autolock is off (`swarm update --autolock=true`)"
                );
            }
            if quiet {
                println!("{key}");
                return Ok(());
            }
            if rotate {
                println!("Successfully rotated manager unlock key.\n");
            }
            print_unlock_key(&key);
        }
        SwarmCommand::Ca {
            rotate,
            cert_expiry,
            ca_cert,
            ca_key,
            detach,
            quiet,
        } => {
            if !rotate && (ca_cert.is_some() || ca_key.is_some()) {
                anyhow::bail!(
                    "--ca-cert and --ca-key need --rotate: they name the root CA to rotate to"
                );
            }
            let read = |path: Option<std::path::PathBuf>| -> anyhow::Result<String> {
                path.map(|p| {
                    std::fs::read_to_string(&p)
                        .map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))
                })
                .transpose()
                .map(Option::unwrap_or_default)
            };
            if rotate || cert_expiry.is_some() {
                client
                    .update_swarm(SwarmUpdateRequest {
                        cert_expiry_secs: cert_expiry.map(|d| d.as_secs()),
                        rotate_ca: rotate,
                        ca_cert_pem: read(ca_cert)?,
                        ca_key_pem: read(ca_key)?,
                        ..Default::default()
                    })
                    .await
                    .map_err(daemon_error)?;
            }
            if rotate && !detach {
                super::ca_rotation::wait(&mut client, quiet).await?;
            }
            let info = client
                .info(shoal_proto::Empty {})
                .await
                .map_err(daemon_error)?
                .into_inner();
            if info.ca_cert_pem.is_empty() {
                anyhow::bail!("this node is not a swarm manager: run `swarm ca` on a manager");
            }
            print!("{}", info.ca_cert_pem);
        }
        SwarmCommand::Unlock => {
            let key = read_unlock_key()?;
            client
                .swarm_unlock(SwarmUnlockRequest { unlock_key: key })
                .await
                .map_err(daemon_error)?;
        }
        SwarmCommand::Join {
            token,
            advertise_addr,
            listen_addr,
            remote,
        } => {
            let resp = client
                .swarm_join(SwarmJoinRequest {
                    token,
                    remote_addr: remote,
                    advertise_addr: advertise_addr.unwrap_or_default(),
                    listen_addr: listen_addr.unwrap_or_default(),
                })
                .await
                .map_err(daemon_error)?
                .into_inner();
            println!(
                "This node joined a swarm as a {}.",
                shoal_docker::text::role_name(resp.role())
            );
        }
        SwarmCommand::JoinToken {
            quiet,
            rotate,
            role,
        } => {
            let role = if role == "manager" {
                NodeRole::Manager
            } else {
                NodeRole::Worker
            };
            let resp = client
                .join_token(JoinTokenRequest {
                    role: role as i32,
                    rotate,
                })
                .await
                .map_err(daemon_error)?
                .into_inner();
            let name = shoal_docker::text::role_name(role);
            if quiet {
                println!("{}", resp.token);
                return Ok(());
            }
            if rotate {
                println!("Successfully rotated {name} join token.\n");
            }
            println!("To add a {name} to this swarm, run the following command:\n");
            println!(
                "    shoal swarm join --token {} {}\n",
                resp.token, resp.manager_addr
            );
        }
        SwarmCommand::Leave { force } => {
            client
                .swarm_leave(SwarmLeaveRequest { force })
                .await
                .map_err(daemon_error)?;
            println!("Node left the swarm.");
        }
    }
    Ok(())
}

async fn show_unlock_key(
    client: &mut shoal_proto::control_client::ControlClient<tonic::transport::Channel>,
    rotate: bool,
) -> anyhow::Result<String> {
    Ok(client
        .unlock_key(UnlockKeyRequest { rotate })
        .await
        .map_err(daemon_error)?
        .into_inner()
        .unlock_key)
}

fn print_unlock_key(key: &str) {
    println!(
        "To unlock a swarm manager after it restarts, run the `shoal swarm unlock`\ncommand and provide the following key:\n\n    {key}\n\nPlease remember to store this key in a password manager, since without it you\nwill not be able to restart the manager."
    );
}

/// The key from standard input: asked for when it is a terminal, as docker asks.
fn read_unlock_key() -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        print!("Please enter unlock key: ");
        std::io::stdout().flush()?;
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let key = line.trim().to_string();
    if key.is_empty() {
        anyhow::bail!("no unlock key given: pipe it in, or type it at the prompt");
    }
    Ok(key)
}

#![recursion_limit = "256"]
//! `shoal`: the one binary. Client commands named and flagged like docker's (this crate:
//! clap and printing), the per-node daemon (shoal-node) and the lab (shoal-lab, a whole
//! cluster in network namespaces on one machine).

mod commands;

use shoal_lab as lab;
use shoal_node::{self as daemon, client};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "shoal",
    version,
    about = "A Docker-Swarm-compatible cluster with an eBPF data plane"
)]
struct Cli {
    /// Daemon to talk to: unix:///path/to/shoal.sock or tcp://MANAGER:2377 (before the
    /// command, as docker's -H: `service create --host` is a hosts-file entry)
    #[arg(short = 'H', long = "host", env = "SHOAL_HOST")]
    host: Option<String>,
    /// Directory holding ca.crt, node.crt and node.key for tcp:// hosts
    #[arg(long = "tls-dir", env = "SHOAL_TLS_DIR", global = true)]
    tls_dir: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node daemon
    Daemon(daemon::DaemonArgs),
    /// Manage the swarm
    #[command(subcommand)]
    Swarm(commands::swarm::SwarmCommand),
    /// Manage swarm nodes
    #[command(subcommand)]
    Node(commands::node::NodeCommand),
    /// Manage swarm services
    #[command(subcommand)]
    Service(Box<commands::service::ServiceCommand>),
    /// Manage networks
    #[command(subcommand)]
    Network(commands::network::NetworkCommand),
    /// Manage secrets (data a service's tasks read, never shown again)
    #[command(subcommand)]
    Secret(commands::secret::FileCommand),
    /// Manage configs (files a service's tasks read)
    #[command(subcommand)]
    Config(commands::secret::FileCommand),
    /// Manage stacks (compose files)
    #[command(subcommand)]
    Stack(commands::stack::StackCommand),
    /// Troubleshoot this node's data plane
    #[command(subcommand)]
    Debug(commands::debug::DebugCommand),
    /// Display system-wide information
    Info,
    /// Show the shoal version information
    Version,
    /// A cluster of network namespaces on this machine
    #[command(subcommand)]
    Lab(lab::LabCommand),
    /// Appends standard input to FILE, each line led by its time (the process runtime
    /// runs this between a task and its log)
    #[command(name = "__stamp-log", hide = true)]
    StampLog { file: std::path::PathBuf },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::StampLog { file } = &cli.command {
        return stamp_log(file);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let target = client::Target::new(cli.host, cli.tls_dir);
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Daemon(args) => daemon::run(args).await.map_err(Into::into),
            Command::Swarm(cmd) => commands::swarm::run(&target, cmd).await,
            Command::Node(cmd) => commands::node::run(&target, cmd).await,
            // Boxed: the service commands hold a whole spec of flags.
            Command::Service(cmd) => Box::pin(commands::service::run(&target, *cmd)).await,
            Command::Network(cmd) => commands::network::run(&target, cmd).await,
            Command::Secret(cmd) => {
                commands::secret::run(&target, commands::secret::Kind::Secret, cmd).await
            }
            Command::Config(cmd) => {
                commands::secret::run(&target, commands::secret::Kind::Config, cmd).await
            }
            Command::Stack(cmd) => commands::stack::run(&target, cmd).await,
            Command::Debug(cmd) => commands::debug::run(&target, cmd).await,
            Command::Info => commands::info::info(&target).await,
            Command::Version => commands::info::version(&target).await,
            Command::Lab(cmd) => lab::run(cmd).await.map_err(Into::into),
            Command::StampLog { .. } => unreachable!("handled before the runtime starts"),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}");
            // Daemon refusals already read "Error response from daemon: ...", as docker's do.
            if msg.starts_with("Error") {
                eprintln!("{msg}");
            } else {
                eprintln!("Error: {msg}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// `__stamp-log FILE`: a process task's output, line by line with its time, into FILE
/// until the task closes it.
fn stamp_log(file: &std::path::Path) -> std::process::ExitCode {
    use shoal_agent::runtime::stamp;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file);
    match out.and_then(|f| stamp::stamp_lines(std::io::stdin().lock(), f, shoal_proto::now_nanos)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
}

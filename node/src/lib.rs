//! `shoal daemon`: the per-node process. It serves the CLI on <run-dir>/shoal.sock (root
//! only) and the Docker Engine API on <run-dir>/docker.sock (engine_api/), and while the
//! node is in a swarm runs its components (see runtime.rs). Swarm membership survives
//! restarts through <data-dir>/swarm.

mod addr;
pub mod client;
mod connect;
mod control;
mod engine_api;
pub mod error;
mod events;
pub use engine_api::SOCKET_NAME as DOCKER_SOCKET_NAME;
mod lifecycle;
mod logfile;
mod logs;
mod runtime;
pub mod state;
mod tls_accept;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use shoal_agent::session::SessionEvent;
use shoal_manager::Bootstrap;
use shoal_manager::state::raft::at_rest::UnlockKey;
use shoal_proto::control_server::ControlServer;
use tokio::sync::{Mutex, mpsc};

use crate::client::{DEFAULT_DATA_DIR, DEFAULT_RUN_DIR, SOCKET_NAME};
use crate::error::{IoContext, NodeError, Result};
use runtime::Runtime;
use state::SwarmDir;

#[derive(clap::Args, Clone)]
pub struct DaemonArgs {
    /// Where the node keeps its swarm state, certificates and Raft log
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Where the control socket lives
    #[arg(long, default_value = DEFAULT_RUN_DIR)]
    pub run_dir: PathBuf,
    /// Address managers listen on for cluster control
    #[arg(long, default_value = "0.0.0.0:2377")]
    pub listen_addr: String,
    /// Address other nodes reach this one at (IP, IP:PORT or interface); default: the
    /// address of the interface holding the default route
    #[arg(long)]
    pub advertise_addr: Option<String>,
    /// Node hostname reported to the swarm; default: this machine's hostname
    #[arg(long)]
    pub hostname: Option<String>,
    /// Where tasks run: docker (containers on the local dockerd) or process (a command in
    /// its own network namespace)
    #[arg(long, default_value = "docker", value_parser = ["docker", "process"])]
    pub runtime: String,
    /// Starts the name of every network namespace the node makes (tasks' and overlay
    /// networks'), so several nodes can share one machine (the lab)
    #[arg(long, default_value = "shoal")]
    pub netns_prefix: String,
    /// Resolver that tasks' DNS queries for non-cluster names go to (repeatable, tried in
    /// order); default: the nameservers of /etc/resolv.conf; `none`: answer cluster names
    /// only
    #[arg(long = "dns-upstream")]
    pub dns_upstream: Vec<String>,
    /// Seconds tasks may cache an answer about a cluster name: short, so nobody keeps
    /// asking a task that is gone
    #[arg(long, env = "SHOAL_DNS_TTL", default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=3600))]
    pub dns_ttl: u32,
    /// How published ports and service VIPs are balanced: ebpf (TC programs, Maglev,
    /// their own connection tracking, pinned state) or nftables (kernel NAT and
    /// conntrack); ebpf falls back to nftables where its programs cannot be loaded
    #[arg(long, default_value = "ebpf", value_parser = ["ebpf", "nftables"])]
    pub lb_engine: String,
    /// How the eBPF engine attaches its TC programs: tcx links (kernel 6.6+), tc (a clsact
    /// qdisc with direct-action cls_bpf filters, for older kernels), or auto: tcx where
    /// the kernel has it, tc otherwise
    #[arg(long, default_value = "auto", value_parser = ["auto", "tcx", "tc"])]
    pub lb_attach: String,
    /// Also serve the Docker Engine API on this TCP address (e.g. 0.0.0.0:2376) while the
    /// node is a manager, behind mutual TLS: clients present a manager certificate of the
    /// swarm (docker --tlsverify --tlscacert ca.crt --tlscert node.crt --tlskey node.key)
    #[arg(long)]
    pub engine_api_addr: Option<String>,
    /// Log format: text or json
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Log filter, e.g. info or shoal_manager=debug. The DNS library's own lines (about
    /// what upstream resolvers send) are kept to errors unless the filter names hickory
    #[arg(long, env = "SHOAL_LOG", default_value = "info,openraft=off")]
    pub log_level: String,
    /// Write the log to this file instead of standard error, starting FILE.1 afresh
    /// whenever it reaches --log-max-size
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Largest size of --log-file in MiB before it is rotated
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_240))]
    pub log_max_size: u64,
}

pub struct Daemon {
    pub args: DaemonArgs,
    pub hostname: String,
    runtime: Mutex<Option<Runtime>>,
    events: mpsc::Sender<SessionEvent>,
    /// The swarm's unlock key while autolock is on (this node's keys are sealed with
    /// it): from `swarm unlock`, or followed from the managers. Memory only.
    unlock: std::sync::Mutex<Option<UnlockKey>>,
    /// The node's membership while it waits for `swarm unlock`.
    locked: std::sync::Mutex<Option<state::SwarmState>>,
}

impl Daemon {
    pub(crate) fn unlock_key(&self) -> Option<UnlockKey> {
        self.unlock.lock().expect("poisoned").clone()
    }

    pub(crate) fn set_unlock_key(&self, key: Option<UnlockKey>) {
        *self.unlock.lock().expect("poisoned") = key;
    }

    /// The node's membership while it is locked.
    pub(crate) fn locked(&self) -> Option<state::SwarmState> {
        self.locked.lock().expect("poisoned").clone()
    }

    pub(crate) fn set_locked(&self, state: Option<state::SwarmState>) {
        *self.locked.lock().expect("poisoned") = state;
    }
}

pub async fn run(args: DaemonArgs) -> Result<()> {
    init_logging(&args)?;
    if let Some(a) = &args.advertise_addr {
        // Checked again by init (loopback allowed) or join (refused).
        addr::resolve_advertise(
            Some(a),
            shoal_proto::CONTROL_PORT,
            addr::Advertiser::Founder,
        )?;
    }
    std::fs::create_dir_all(&args.data_dir)
        .io(|| format!("creating --data-dir {}", args.data_dir.display()))?;
    std::fs::create_dir_all(&args.run_dir)
        .and_then(|()| {
            std::fs::set_permissions(&args.run_dir, std::fs::Permissions::from_mode(0o700))
        })
        .io(|| format!("creating --run-dir {}", args.run_dir.display()))?;
    let socket = args.run_dir.join(SOCKET_NAME);
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket)
        .and_then(|l| {
            std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).map(|()| l)
        })
        .io(|| format!("binding the control socket {}", socket.display()))?;

    let hostname = args.hostname.clone().unwrap_or_else(system_hostname);
    let (events_tx, events_rx) = mpsc::channel(16);
    let daemon = Arc::new(Daemon {
        args: args.clone(),
        hostname,
        runtime: Mutex::new(None),
        events: events_tx,
        unlock: std::sync::Mutex::new(None),
        locked: std::sync::Mutex::new(None),
    });
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        socket = %socket.display(),
        data_dir = %args.data_dir.display(),
        hostname = %daemon.hostname,
        "shoal daemon starting"
    );
    let swarm_dir = SwarmDir::new(&args.data_dir);
    if swarm_dir.is_locked() {
        let state = swarm_dir.load_state()?;
        tracing::warn!(
            "the swarm is locked (autolock): this node serves nothing until `shoal swarm unlock` gives it the unlock key"
        );
        daemon.set_locked(state);
    } else if let Some((state, tls)) = swarm_dir.load(None)? {
        tracing::info!(node = %state.node_id, manager = state.manager, "rejoining the swarm from saved state");
        let rt = Runtime::start(
            &daemon,
            state,
            tls,
            Bootstrap::Existing,
            daemon.events.clone(),
        )
        .await?;
        *daemon.runtime.lock().await = Some(rt);
    }
    tokio::spawn(lifecycle::handle_session_events(daemon.clone(), events_rx));
    let docker_socket = daemon.engine_socket();
    let engine = tokio::spawn({
        let (daemon, socket) = (daemon.clone(), docker_socket.clone());
        async move {
            if let Err(e) = engine_api::serve(daemon, &socket).await {
                tracing::error!(socket = %socket.display(), "Docker Engine API: {e:#}");
            }
        }
    });

    let server = tonic::transport::Server::builder()
        .add_service(ControlServer::new(control::ControlService::local(
            daemon.clone(),
        )))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::UnixListenerStream::new(listener),
            shutdown_signal(),
        );
    server
        .await
        .map_err(|e| NodeError::start("the control socket server", e))?;
    tracing::info!("shutting down");
    engine.abort();
    let _ = std::fs::remove_file(&docker_socket);
    if let Some(rt) = daemon.runtime.lock().await.take() {
        rt.stop().await;
    }
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("signal handler");
    let mut int = signal(SignalKind::interrupt()).expect("signal handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn init_logging(args: &DaemonArgs) -> Result<()> {
    let mut directives = args.log_level.clone();
    // hickory-proto logs what it makes of upstream answers: a task could fill the disk
    // through DNS.
    if !directives.contains("hickory") {
        directives.push_str(",hickory_proto=error");
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&directives).map_err(|_| {
        NodeError::Config(format!(
            "--log-level {:?} is not a log filter: try info or shoal_agent=debug",
            args.log_level
        ))
    })?;
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let json = args.log_format == "json";
    if let Some(path) = &args.log_file {
        let file = logfile::RotatingFile::open(path, args.log_max_size << 20)
            .io(|| format!("opening --log-file {}", path.display()))?;
        let builder = builder.with_ansi(false).with_writer(Arc::new(file));
        if json {
            builder.json().init();
        } else {
            builder.init();
        }
    } else {
        let builder = builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr);
        if json {
            builder.json().init();
        } else {
            builder.init();
        }
    }
    Ok(())
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

//! `shoal lab`: a whole cluster on one machine. A fabric namespace holds a bridge; each node
//! is a namespace wired to it (manager1.., worker1.. at .11, .12, ... of the subnet) running
//! its own `shoal daemon`; a host veth at .1 lets the host reach every node. Everything
//! carries the lab's name and `lab down` removes all of it.

mod daemons;
pub mod error;
mod net;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{IoContext, LabError, Result};
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use shoal_proto::{
    Empty, JoinTokenRequest, NodeRole, NodeState, SwarmInitRequest, SwarmJoinRequest,
};

use net::Subnet;
use shoal_node::client::{SOCKET_NAME, Target};

const LAB_ROOT: &str = "/var/lib/shoal/labs";
const DEFAULT_NAME: &str = "default";

#[derive(Subcommand)]
pub enum LabCommand {
    /// Build a lab cluster and start a swarm on it
    Up {
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
        /// Number of nodes
        #[arg(long, default_value_t = 3)]
        nodes: u32,
        /// How many of the nodes are managers
        #[arg(long, default_value_t = 1)]
        managers: u32,
        /// Lab network; the host gets .1, nodes .11, .12, ...
        #[arg(long, default_value = "192.168.56.0/24")]
        subnet: String,
        /// Dispatcher heartbeat period of the swarm
        #[arg(long, default_value = "5s", value_parser = shoal_docker::duration::parse)]
        dispatcher_heartbeat: Duration,
        /// Where the nodes run tasks: docker (the host's dockerd) or process
        #[arg(long, default_value = "docker", value_parser = ["docker", "process"])]
        runtime: String,
        /// A resolver (on a lab address) that tasks' non-cluster DNS names go to;
        /// repeatable, tried in order. Default: none, the lab has no uplink
        #[arg(long = "dns-upstream")]
        dns_upstream: Vec<String>,
        /// The nodes' load-balancer engine (shoal daemon --lb-engine)
        #[arg(long, default_value = "ebpf", value_parser = ["ebpf", "nftables"])]
        lb_engine: String,
        /// How the eBPF engine attaches its programs (shoal daemon --lb-attach)
        #[arg(long, default_value = "auto", value_parser = ["auto", "tcx", "tc"])]
        lb_attach: String,
    },
    /// Remove a lab: daemons, namespaces, links and files
    Down {
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
    },
    /// Show labs, or one lab's nodes
    Status {
        #[arg(long)]
        name: Option<String>,
    },
    /// Run a command inside a node, with SHOAL_HOST and DOCKER_HOST set to its daemon
    Exec {
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
        node: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Stop a node's daemon (SIGTERM, or SIGKILL with --kill)
    Stop {
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
        #[arg(long)]
        kill: bool,
        node: String,
    },
    /// Start a node's daemon again
    Start {
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
        node: String,
    },
    /// Wipe a node as a lost machine: stop its daemon, remove its tasks and its data
    /// and run directories (the node stays, outside any swarm, until started again)
    Wipe {
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
        node: String,
    },
}

#[derive(Serialize, Deserialize, Clone)]
pub struct LabNode {
    pub name: String,
    pub ip: String,
    pub netns: String,
    pub dir: PathBuf,
    pub manager: bool,
    #[serde(default = "default_runtime")]
    pub runtime: String,
    /// Resolvers the node's tasks forward other names to; none when empty (the lab has
    /// no uplink).
    #[serde(default)]
    pub dns_upstreams: Vec<String>,
    #[serde(default = "default_lb_engine")]
    pub lb_engine: String,
    #[serde(default = "default_lb_attach")]
    pub lb_attach: String,
}

fn default_lb_engine() -> String {
    "ebpf".into()
}

fn default_lb_attach() -> String {
    "auto".into()
}

fn default_runtime() -> String {
    "docker".into()
}

impl LabNode {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }
    pub fn socket(&self) -> PathBuf {
        self.run_dir().join(SOCKET_NAME)
    }
    /// The daemon's Docker Engine API, which `lab exec` gives the docker CLI.
    pub fn docker_socket(&self) -> PathBuf {
        self.run_dir().join(shoal_node::DOCKER_SOCKET_NAME)
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }
    pub fn stderr_log(&self) -> PathBuf {
        self.dir.join("daemon.stderr")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("daemon.pid")
    }
    pub fn target(&self) -> Target {
        Target::new(Some(format!("unix://{}", self.socket().display())), None)
    }
}

#[derive(Serialize, Deserialize)]
pub struct Lab {
    pub name: String,
    pub subnet: String,
    pub host_if: String,
    pub host_ip: String,
    pub fabric_ns: String,
    pub nodes: Vec<LabNode>,
}

/// Where lab `name` keeps its record (lab.json) and each node's directory.
pub fn lab_dir(name: &str) -> PathBuf {
    Path::new(LAB_ROOT).join(name)
}

fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 11
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        return Err(LabError::Invalid(format!(
            "invalid lab name {name:?}: use 1 to 11 lowercase letters, digits or dashes (it becomes part of interface names)"
        )));
    }
    Ok(())
}

impl Lab {
    /// The lab as `lab up` recorded it.
    pub fn load(name: &str) -> Result<Lab> {
        validate_name(name)?;
        let file = lab_dir(name).join("lab.json");
        let bytes = std::fs::read(&file).map_err(|_| {
            LabError::Invalid(format!("no lab named {name:?}; see `shoal lab status`"))
        })?;
        serde_json::from_slice(&bytes).map_err(|e| {
            LabError::Invalid(format!(
                "{} is corrupt ({e}); remove the lab with `shoal lab down`",
                file.display()
            ))
        })
    }

    fn save(&self) -> Result<()> {
        let file = lab_dir(&self.name).join("lab.json");
        std::fs::write(
            &file,
            serde_json::to_vec_pretty(self).expect("the lab record serializes"),
        )
        .io(|| format!("writing {}", file.display()))?;
        Ok(())
    }

    pub fn node(&self, name: &str) -> Result<&LabNode> {
        self.nodes.iter().find(|n| n.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
            LabError::Invalid(format!(
                "lab {} has no node {name:?}; its nodes are {}",
                self.name,
                names.join(", ")
            ))
        })
    }

    fn plan(name: &str, nodes: u32, managers: u32, subnet: Subnet, runtime: &str) -> Result<Lab> {
        if nodes == 0 || nodes > 200 {
            return Err(LabError::Invalid(
                "--nodes must be between 1 and 200".into(),
            ));
        }
        if managers == 0 || managers > nodes {
            return Err(LabError::Invalid(format!(
                "--managers must be between 1 and --nodes ({nodes})"
            )));
        }
        if managers.is_multiple_of(2) {
            eprintln!(
                "warning: {managers} managers tolerate no more failures than {}; use an odd number",
                managers - 1
            );
        }
        let dir = lab_dir(name);
        let nodes = (0..nodes)
            .map(|i| {
                let manager = i < managers;
                let node_name = if manager {
                    format!("manager{}", i + 1)
                } else {
                    format!("worker{}", i + 1 - managers)
                };
                Ok(LabNode {
                    ip: subnet.host(11 + i)?.to_string(),
                    netns: format!("shoal-{name}-{node_name}"),
                    dir: dir.join(&node_name),
                    name: node_name,
                    manager,
                    runtime: runtime.to_string(),
                    dns_upstreams: vec![],
                    lb_engine: default_lb_engine(),
                    lb_attach: default_lb_attach(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Lab {
            name: name.to_string(),
            subnet: subnet.to_string(),
            host_if: format!("shl-{name}"),
            host_ip: subnet.host(1)?.to_string(),
            fabric_ns: format!("shoal-{name}-fabric"),
            nodes,
        })
    }
}

/// How `lab up` runs every node's daemon.
struct DaemonOptions {
    runtime: String,
    dns_upstreams: Vec<String>,
    lb_engine: String,
    lb_attach: String,
}

pub async fn run(cmd: LabCommand) -> Result<()> {
    match cmd {
        LabCommand::Up {
            name,
            nodes,
            managers,
            subnet,
            dispatcher_heartbeat,
            runtime,
            dns_upstream,
            lb_engine,
            lb_attach,
        } => {
            let daemons = DaemonOptions {
                runtime,
                dns_upstreams: dns_upstream,
                lb_engine,
                lb_attach,
            };
            up(
                &name,
                nodes,
                managers,
                &subnet,
                dispatcher_heartbeat,
                daemons,
            )
            .await
        }
        LabCommand::Down { name } => down(&name).await,
        LabCommand::Status { name } => status(name.as_deref()).await,
        LabCommand::Exec {
            name,
            node,
            command,
        } => {
            let lab = Lab::load(&name)?;
            daemons::exec_in(lab.node(&node)?, &command)
        }
        LabCommand::Stop { name, kill, node } => {
            let lab = Lab::load(&name)?;
            daemons::stop(lab.node(&node)?, kill)
        }
        LabCommand::Start { name, node } => {
            let lab = Lab::load(&name)?;
            let node = lab.node(&node)?;
            daemons::start(node)?;
            daemons::wait_ready(node).await
        }
        LabCommand::Wipe { name, node } => {
            let lab = Lab::load(&name)?;
            let node = lab.node(&node)?;
            if daemons::running_pid(node).is_some() {
                daemons::stop(node, true)?;
            }
            daemons::remove_workloads(node).await;
            for dir in [node.data_dir(), node.run_dir()] {
                match std::fs::remove_dir_all(&dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(LabError::Failed(format!("removing {}: {e}", dir.display())));
                    }
                    _ => {}
                }
            }
            Ok(())
        }
    }
}

async fn up(
    name: &str,
    nodes: u32,
    managers: u32,
    subnet: &str,
    heartbeat: Duration,
    daemons: DaemonOptions,
) -> Result<()> {
    validate_name(name)?;
    let subnet: Subnet = subnet.parse()?;
    let mut lab = Lab::plan(name, nodes, managers, subnet, &daemons.runtime)?;
    for node in &mut lab.nodes {
        node.dns_upstreams = daemons.dns_upstreams.clone();
        node.lb_engine = daemons.lb_engine.clone();
        node.lb_attach = daemons.lb_attach.clone();
    }
    if lab_dir(name).join("lab.json").exists() || net::netns_exists(&lab.fabric_ns) {
        return Err(LabError::Invalid(format!(
            "lab {name:?} already exists; remove it with `shoal lab down --name {name}` or pick another --name"
        )));
    }
    let used = net::host_interfaces_in(subnet)?;
    if !used.is_empty() {
        return Err(LabError::Invalid(format!(
            "subnet {subnet} is already in use on this machine (interface {}); pick another with --subnet",
            used.join(", ")
        )));
    }
    std::fs::create_dir_all(lab_dir(name))
        .io(|| format!("creating {}", lab_dir(name).display()))?;
    lab.save()?;
    match build(&lab, heartbeat).await {
        Ok(()) => {
            println!(
                "Lab {name} is up: {} nodes on {subnet}, the host is {} on {}.\n",
                lab.nodes.len(),
                lab.host_ip,
                lab.host_if
            );
            let first = &lab.nodes[0];
            let nodes = first
                .target()
                .connect()
                .await?
                .list_nodes(Empty {})
                .await?
                .into_inner();
            print!(
                "{}",
                shoal_docker::tables::ls_table(&nodes.nodes, &nodes.self_node_id)
            );
            println!(
                "\nTry: shoal lab exec --name {name} {} -- shoal node ls",
                first.name
            );
            Ok(())
        }
        Err(e) => {
            eprintln!("lab {name} failed to come up; removing what was made");
            for n in &lab.nodes {
                if let Some(tail) = daemons::log_tail(n, 5) {
                    eprintln!("--- last lines of {}:\n{tail}", n.log().display());
                }
            }
            let _ = down(name).await;
            Err(e)
        }
    }
}

async fn build(lab: &Lab, heartbeat: Duration) -> Result<()> {
    let subnet: Subnet = lab.subnet.parse()?;
    net::create_fabric(
        &lab.fabric_ns,
        &lab.host_if,
        recorded_ip(&lab.host_ip)?,
        subnet.prefix,
    )?;
    for (i, node) in lab.nodes.iter().enumerate() {
        net::create_node(
            &lab.fabric_ns,
            &node.netns,
            &format!("p{}", i + 1),
            recorded_ip(&node.ip)?,
            subnet.prefix,
        )?;
        std::fs::create_dir_all(&node.dir).io(|| format!("creating {}", node.dir.display()))?;
        daemons::start(node)?;
    }
    for node in &lab.nodes {
        daemons::wait_ready(node).await?;
    }
    let first = &lab.nodes[0];
    let mut leader = first.target().connect().await?;
    leader
        .swarm_init(SwarmInitRequest {
            advertise_addr: first.ip.clone(),
            heartbeat_period_ms: heartbeat.as_millis() as u64,
            ..Default::default()
        })
        .await
        .map_err(|s| LabError::Failed(format!("swarm init on {}: {}", first.name, s.message())))?;
    let token = |role: NodeRole| {
        let mut c = leader.clone();
        async move {
            c.join_token(JoinTokenRequest {
                role: role as i32,
                rotate: false,
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| LabError::Failed(format!("join-token: {}", s.message())))
        }
    };
    let worker = token(NodeRole::Worker).await?;
    let manager = token(NodeRole::Manager).await?;
    for node in &lab.nodes[1..] {
        let t = if node.manager { &manager } else { &worker };
        node.target()
            .connect()
            .await?
            .swarm_join(SwarmJoinRequest {
                token: t.token.clone(),
                remote_addr: t.manager_addr.clone(),
                advertise_addr: node.ip.clone(),
                listen_addr: String::new(),
            })
            .await
            .map_err(|s| {
                LabError::Failed(format!("swarm join on {}: {}", node.name, s.message()))
            })?;
    }
    // Ready means every node has been heard from by the leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let nodes = leader.list_nodes(Empty {}).await?.into_inner().nodes;
        let ready = nodes
            .iter()
            .filter(|n| {
                n.status.as_ref().map(shoal_proto::NodeStatus::state) == Some(NodeState::Ready)
            })
            .count();
        if ready == lab.nodes.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LabError::Failed(format!(
                "only {ready} of {} nodes became Ready within 30 s",
                lab.nodes.len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Where nodes pin their eBPF state, one directory per node (named by its namespace).
const BPF_PINS: &str = "/sys/fs/bpf/shoal";

async fn down(name: &str) -> Result<()> {
    validate_name(name)?;
    let lab = Lab::load(name).ok();
    let mut removed = 0;
    if let Some(lab) = &lab {
        for node in &lab.nodes {
            let _ = daemons::stop(node, false);
            daemons::remove_workloads(node).await;
        }
    }
    // Sweep by name too, so a lab whose description was lost is still removed. Every
    // step is tried even when one fails, so one stuck piece leaves no others behind.
    let mut failures: Vec<String> = Vec::new();
    for ns in net::netns_with_prefix(&format!("shoal-{name}-")) {
        for pid in net::netns_pids(&ns) {
            daemons::kill_and_wait(pid, Duration::from_secs(5));
        }
        match net::ip(&["netns", "del", &ns]) {
            Ok(()) => removed += 1,
            // Gone meanwhile (a daemon removing its own): nothing left to do.
            Err(_) if !net::netns_exists(&ns) => removed += 1,
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    let host_if = format!("shl-{name}");
    if Path::new("/sys/class/net").join(&host_if).exists()
        && let Err(e) = net::ip(&["link", "del", &host_if])
    {
        failures.push(format!("{e:#}"));
    }
    // The nodes' pinned eBPF maps and links (agent/src/lb/ebpf.rs).
    if let Ok(entries) = std::fs::read_dir(BPF_PINS) {
        for e in entries.flatten() {
            let ours = e
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&format!("shoal-{name}-")));
            if ours && let Err(err) = std::fs::remove_dir_all(e.path()) {
                failures.push(format!("removing {}: {err}", e.path().display()));
            }
        }
    }
    let dir = lab_dir(name);
    let existed = dir.exists();
    if existed && let Err(e) = remove_dir_patiently(&dir) {
        failures.push(format!("removing {}: {e}", dir.display()));
    }
    if !failures.is_empty() {
        return Err(LabError::Failed(format!(
            "lab {name} was not removed entirely: {}",
            failures.join("; ")
        )));
    }
    if removed == 0 && !existed {
        return Err(LabError::Invalid(format!(
            "no lab named {name:?}; see `shoal lab status`"
        )));
    }
    println!("Lab {name} removed.");
    Ok(())
}

/// remove_dir_all, retried briefly: a process that just exited may still have had a file
/// being written into the tree.
fn remove_dir_patiently(dir: &Path) -> std::io::Result<()> {
    let mut attempt = 0;
    loop {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if attempt >= 10 => return Err(e),
            Err(_) => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// An address from the lab's record.
fn recorded_ip(s: &str) -> Result<std::net::Ipv4Addr> {
    s.parse().map_err(|_| {
        LabError::Invalid(format!(
            "the lab's record holds {s:?}, not an IPv4 address; remove the lab with `shoal lab down`"
        ))
    })
}

async fn status(name: Option<&str>) -> Result<()> {
    let Some(name) = name else {
        let mut names: Vec<String> = std::fs::read_dir(LAB_ROOT)
            .map(|d| {
                d.filter_map(std::result::Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        let rows: Vec<Vec<String>> = names
            .iter()
            .filter_map(|n| Lab::load(n).ok())
            .map(|l| vec![l.name.clone(), l.subnet.clone(), l.nodes.len().to_string()])
            .collect();
        print!(
            "{}",
            shoal_docker::text::table(&["NAME", "SUBNET", "NODES"], &rows)
        );
        return Ok(());
    };
    let lab = Lab::load(name)?;
    let rows: Vec<Vec<String>> = lab
        .nodes
        .iter()
        .map(|n| {
            let daemon = match daemons::running_pid(n) {
                Some(pid) => format!("running (pid {pid})"),
                None => "stopped".into(),
            };
            vec![n.name.clone(), n.ip.clone(), n.netns.clone(), daemon]
        })
        .collect();
    print!(
        "{}",
        shoal_docker::text::table(&["NODE", "ADDRESS", "NAMESPACE", "DAEMON"], &rows)
    );
    Ok(())
}

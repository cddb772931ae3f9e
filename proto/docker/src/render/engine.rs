//! Engine API response bodies for tasks, the swarm, `/info` and `/version` (services,
//! nodes and networks have their own modules, shared with the CLI's `inspect`).

use serde_json::{Value, json};
use shoal_proto::{Cluster, InfoResponse, Task, TaskState};

use crate::engine::{API_VERSION, MIN_API_VERSION, version_text};
use crate::render::service::task_spec_json;
use crate::text::{rfc3339, task_state_name as state_name};

fn task_state(s: TaskState) -> String {
    state_name(s).to_lowercase()
}

pub fn task(t: &Task) -> Value {
    let meta = t.meta.unwrap_or_default();
    let status = t.status.clone().unwrap_or_default();
    let mut container =
        json!({"ContainerID": status.container_id, "PID": 0, "ExitCode": status.exit_code});
    if status.container_id.is_empty() {
        container = Value::Null;
    }
    let mut doc = json!({
        "ID": t.id,
        "Version": {"Index": meta.version.map(|v| v.index).unwrap_or_default()},
        "CreatedAt": rfc3339(meta.created_at_unix_nanos),
        "UpdatedAt": rfc3339(meta.updated_at_unix_nanos),
        "Labels": {},
        "Spec": task_spec_json(&t.spec.clone().unwrap_or_default()),
        "ServiceID": t.service_id,
        "Slot": t.slot,
        "NodeID": t.node_id,
        "Status": {
            "Timestamp": rfc3339(status.timestamp_unix_nanos),
            "State": task_state(status.state()),
            "Message": status.message,
            "PortStatus": {},
        },
        "DesiredState": task_state(t.desired_state()),
        "NetworksAttachments": t.networks.iter().map(|n| json!({
            "Network": {"ID": n.network_id},
            "Addresses": n.addresses,
        })).collect::<Vec<_>>(),
    });
    if !status.err.is_empty() {
        doc["Status"]["Err"] = json!(status.err);
    }
    if t.job_iteration > 0 {
        doc["JobIteration"] = json!({"Index": t.job_iteration});
    }
    if !container.is_null() {
        doc["Status"]["ContainerStatus"] = container;
    }
    doc
}

/// What of a swarm's settings can change (the rest are fixed in shoal).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settings {
    pub heartbeat_ms: u64,
    pub autolock: bool,
    pub task_history: i64,
    /// Node certificates' life in seconds; 0: the default.
    pub cert_expiry_secs: u64,
    pub force_rotate: u64,
    /// An operator's root CA, while it is the swarm's (its key is never shown).
    pub signing_ca_cert: String,
    /// Log entries between Raft snapshots; 0: the default.
    pub snapshot_interval: u64,
    pub keep_old_snapshots: u64,
}

impl Settings {
    /// The cluster's, with the heartbeat the node reports.
    pub fn of(info: &InfoResponse, spec: Option<&shoal_proto::ClusterSpec>) -> Settings {
        let ca = spec.and_then(|s| s.ca_config.clone()).unwrap_or_default();
        let raft = spec.and_then(|s| s.raft).unwrap_or_default();
        Settings {
            heartbeat_ms: info.heartbeat_period_ms,
            autolock: spec
                .and_then(|s| s.encryption)
                .is_some_and(|e| e.auto_lock_managers),
            task_history: spec
                .and_then(|s| s.orchestration)
                .and_then(|o| o.task_history_retention_limit)
                .unwrap_or(shoal_proto::DEFAULT_TASK_HISTORY),
            cert_expiry_secs: ca.node_cert_expiry_secs,
            force_rotate: ca.force_rotate,
            signing_ca_cert: ca.signing_ca_cert_pem,
            snapshot_interval: raft.snapshot_interval,
            keep_old_snapshots: raft.keep_old_snapshots,
        }
    }
}

/// The swarm's settings as shoal has them.
pub fn swarm_spec(s: Settings) -> Value {
    let or = |v: u64, default: u64| if v == 0 { default } else { v };
    let mut ca = json!({
        "NodeCertExpiry": or(s.cert_expiry_secs, shoal_proto::DEFAULT_NODE_CERT_EXPIRY_SECS) * 1_000_000_000,
        "ForceRotate": s.force_rotate,
    });
    if !s.signing_ca_cert.is_empty() {
        ca["SigningCACert"] = json!(s.signing_ca_cert);
    }
    json!({
        "Name": "default",
        "Labels": {},
        "Orchestration": {"TaskHistoryRetentionLimit": s.task_history},
        "Raft": {
            "SnapshotInterval": or(s.snapshot_interval, shoal_proto::DEFAULT_SNAPSHOT_INTERVAL),
            "KeepOldSnapshots": s.keep_old_snapshots,
            "LogEntriesForSlowFollowers": 500, "ElectionTick": 10, "HeartbeatTick": 1,
        },
        "Dispatcher": {"HeartbeatPeriod": s.heartbeat_ms * 1_000_000},
        "CAConfig": ca,
        "TaskDefaults": {},
        "EncryptionConfig": {"AutoLockManagers": s.autolock},
    })
}

/// The root CA as the Engine API shows it (`docker swarm ca` prints TrustRoot); the
/// issuer is the CA that signs now, the new one during a rotation, as Swarm shows it.
fn tls_info(cluster: Option<&Cluster>) -> Value {
    let root = cluster.and_then(|c| c.root_ca.clone()).unwrap_or_default();
    let signer = root
        .rotation
        .as_ref()
        .map_or(&root.ca_cert_pem, |r| &r.ca_cert_pem);
    let (subject, key) = shoal_proto::tls::issuer_of(signer).unwrap_or_default();
    tls_info_json(&root.ca_cert_pem, &subject, &key)
}

/// TLSInfo, of the swarm or of a node.
pub fn tls_info_json(trust_root: &str, subject: &[u8], key: &[u8]) -> Value {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    json!({"TrustRoot": trust_root, "CertIssuerSubject": b64(subject), "CertIssuerPublicKey": b64(key)})
}

/// ClusterInfo: what /swarm and /info's Swarm.Cluster share.
pub fn cluster(info: &InfoResponse, cluster: Option<&Cluster>) -> Value {
    let meta = cluster.and_then(|c| c.meta).unwrap_or_default();
    let spec = cluster.and_then(|c| c.spec.clone()).unwrap_or_default();
    let settings = Settings::of(info, Some(&spec));
    let pool = if spec.default_addr_pool.is_empty() {
        vec![shoal_proto::DEFAULT_ADDR_POOL.to_string()]
    } else {
        spec.default_addr_pool
    };
    json!({
        "ID": info.cluster_id,
        "Version": {"Index": meta.version.map(|v| v.index).unwrap_or_default()},
        "CreatedAt": rfc3339(meta.created_at_unix_nanos),
        "UpdatedAt": rfc3339(meta.updated_at_unix_nanos),
        "Spec": swarm_spec(settings),
        "TLSInfo": tls_info(cluster),
        "RootRotationInProgress": cluster.and_then(|c| c.root_ca.as_ref()).is_some_and(|r| r.rotation.is_some()),
        "DefaultAddrPool": pool,
        "SubnetSize": if spec.subnet_size == 0 { 24 } else { spec.subnet_size },
        "DataPathPort": 4789,
    })
}

pub fn swarm_info(info: &InfoResponse, c: Option<&Cluster>) -> Value {
    let mut doc = json!({
        "NodeID": info.node_id,
        "NodeAddr": info.node_addr,
        "LocalNodeState": info.local_node_state,
        "ControlAvailable": info.control_available,
        "Error": info.error,
        "RemoteManagers": info.remote_managers.iter().map(|a| json!({"NodeID": "", "Addr": a})).collect::<Vec<_>>(),
    });
    if info.control_available {
        doc["Nodes"] = json!(info.nodes);
        doc["Managers"] = json!(info.managers);
        doc["Cluster"] = cluster(info, c);
    }
    doc
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or_default()
}

/// GET /info: the node and its swarm; container counts belong to the node's dockerd.
pub fn system_info(info: &InfoResponse, c: Option<&Cluster>, root_dir: &str) -> Value {
    let ncpu = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    json!({
        "ID": info.node_id,
        "Containers": 0, "ContainersRunning": 0, "ContainersPaused": 0, "ContainersStopped": 0,
        "Images": 0,
        "Driver": "",
        "DriverStatus": [],
        "Plugins": {"Volume": [], "Network": ["overlay"], "Authorization": null, "Log": []},
        "MemoryLimit": true, "SwapLimit": false, "CpuCfsPeriod": true, "CpuCfsQuota": true,
        "CPUShares": true, "CPUSet": true, "PidsLimit": true, "IPv4Forwarding": true,
        "Debug": false,
        "NFd": 0, "NGoroutines": 0,
        "SystemTime": rfc3339(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or_default()),
        "LoggingDriver": "",
        "CgroupDriver": "",
        "CgroupVersion": "",
        "NEventsListener": 0,
        "KernelVersion": kernel_version(),
        "OperatingSystem": "shoal",
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "",
        "RegistryConfig": null,
        "NCPU": ncpu,
        "MemTotal": mem_total(),
        "DockerRootDir": root_dir,
        "Name": info.hostname,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": info.version,
        "Runtimes": {},
        "DefaultRuntime": "",
        "Swarm": swarm_info(info, c),
        "LiveRestoreEnabled": false,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": ""},
        "InitCommit": {"ID": ""},
        "SecurityOptions": [],
        "Warnings": null,
    })
}

/// GET /version.
pub fn version() -> Value {
    let v = env!("CARGO_PKG_VERSION");
    json!({
        "Platform": {"Name": "shoal"},
        "Components": [{"Name": "shoal", "Version": v, "Details": {"ApiVersion": version_text(API_VERSION)}}],
        "Version": v,
        "ApiVersion": version_text(API_VERSION),
        "MinAPIVersion": version_text(MIN_API_VERSION),
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": std::env::consts::ARCH,
        "KernelVersion": kernel_version(),
        "BuildTime": "",
    })
}

//! Building a ServiceSpec from docker's `service create` / `service update` flags.

use crate::error::{Invalid, Result};
use crate::invalid;
use shoal_proto::docker_names::DockerName;
use shoal_proto::service_spec::Mode;
use shoal_proto::{
    Annotations, ContainerSpec, EndpointMode, EndpointSpec, GlobalService, HealthConfig,
    NetworkAttachmentConfig, Placement, PortConfig, PublishMode, ReplicatedService,
    ResourceRequirements, ResourceValues, RestartCondition, RestartPolicy, ServiceSpec, SpreadOver,
    TaskSpec, UpdateConfig, UpdateFailureAction, UpdateOrder,
};

use crate::container_flags::{ContainerFlags, ContainerLists};
use crate::duration;

/// Flags of `service create` that list things (update has -add/-rm forms instead).
#[derive(clap::Args, Clone, Default)]
pub struct CreateLists {
    /// Environment variables (KEY=VALUE)
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Service labels (key=value)
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Container labels (key=value)
    #[arg(long = "container-label")]
    pub container_label: Vec<String>,
    /// Publish a port as a node port: PUBLISHED:TARGET[/PROTO] or published=,target=,protocol=,mode=
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Placement constraints (node.role==manager, node.labels.zone==a, ...)
    #[arg(long = "constraint")]
    pub constraint: Vec<String>,
    /// Placement preferences (spread=node.labels.<label>)
    #[arg(long = "placement-pref")]
    pub placement_pref: Vec<String>,
    /// Network attachments: NETWORK, or name=NETWORK[,alias=NAME...]
    #[arg(long = "network")]
    pub network: Vec<String>,
    #[command(flatten)]
    pub container: ContainerLists,
}

/// A count flag (replicas, tasks per node, parallelism): a whole number within the
/// limit the managers enforce, so a typo is caught before anything is sent.
pub fn parse_count(s: &str) -> Result<u64> {
    let n: u64 = s.trim().parse().map_err(|_| {
        invalid!(
            "give a whole number from 0 to {}",
            shoal_proto::MAX_REPLICAS
        )
    })?;
    shoal_proto::check_count("the value", n, shoal_proto::MAX_REPLICAS).map_err(Invalid)?;
    Ok(n)
}

/// Flags `service create` and `service update` share.
#[derive(clap::Args, Clone, Default)]
pub struct SpecFlags {
    /// Maximum number of tasks per node (0 = unlimited)
    #[arg(long = "replicas-max-per-node", value_parser = parse_count)]
    pub replicas_max_per_node: Option<u64>,
    /// Endpoint mode (vip or dnsrr)
    #[arg(long = "endpoint-mode", value_parser = ["vip", "dnsrr"])]
    pub endpoint_mode: Option<String>,
    #[arg(long = "hostname")]
    pub hostname: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Time to wait before force killing a container (ns|us|ms|s|m|h)
    #[arg(long = "stop-grace-period", value_parser = duration::parse)]
    pub stop_grace_period: Option<std::time::Duration>,
    /// Limit CPUs (e.g. 0.5)
    #[arg(long = "limit-cpu")]
    pub limit_cpu: Option<String>,
    /// Limit memory (e.g. 50M)
    #[arg(long = "limit-memory")]
    pub limit_memory: Option<String>,
    /// Reserve CPUs
    #[arg(long = "reserve-cpu")]
    pub reserve_cpu: Option<String>,
    /// Reserve memory
    #[arg(long = "reserve-memory")]
    pub reserve_memory: Option<String>,
    /// Restart when condition is met ("none", "on-failure", "any")
    #[arg(long = "restart-condition", value_parser = ["none", "on-failure", "any"])]
    pub restart_condition: Option<String>,
    #[arg(long = "restart-delay", value_parser = duration::parse)]
    pub restart_delay: Option<std::time::Duration>,
    #[arg(long = "restart-max-attempts")]
    pub restart_max_attempts: Option<u64>,
    #[arg(long = "restart-window", value_parser = duration::parse)]
    pub restart_window: Option<std::time::Duration>,
    /// Maximum number of tasks updated simultaneously (0 to update all at once)
    #[arg(long = "update-parallelism", value_parser = parse_count)]
    pub update_parallelism: Option<u64>,
    #[arg(long = "update-delay", value_parser = duration::parse)]
    pub update_delay: Option<std::time::Duration>,
    #[arg(long = "update-failure-action", value_parser = ["pause", "continue", "rollback"])]
    pub update_failure_action: Option<String>,
    #[arg(long = "update-monitor", value_parser = duration::parse)]
    pub update_monitor: Option<std::time::Duration>,
    #[arg(long = "update-max-failure-ratio")]
    pub update_max_failure_ratio: Option<f32>,
    #[arg(long = "update-order", value_parser = ["start-first", "stop-first"])]
    pub update_order: Option<String>,
    #[arg(long = "rollback-parallelism", value_parser = parse_count)]
    pub rollback_parallelism: Option<u64>,
    #[arg(long = "rollback-delay", value_parser = duration::parse)]
    pub rollback_delay: Option<std::time::Duration>,
    #[arg(long = "rollback-failure-action", value_parser = ["pause", "continue"])]
    pub rollback_failure_action: Option<String>,
    #[arg(long = "rollback-monitor", value_parser = duration::parse)]
    pub rollback_monitor: Option<std::time::Duration>,
    #[arg(long = "rollback-max-failure-ratio")]
    pub rollback_max_failure_ratio: Option<f32>,
    #[arg(long = "rollback-order", value_parser = ["start-first", "stop-first"])]
    pub rollback_order: Option<String>,
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    pub health_cmd: Option<String>,
    #[arg(long = "health-interval", value_parser = duration::parse)]
    pub health_interval: Option<std::time::Duration>,
    #[arg(long = "health-timeout", value_parser = duration::parse)]
    pub health_timeout: Option<std::time::Duration>,
    #[arg(long = "health-retries")]
    pub health_retries: Option<i32>,
    #[arg(long = "health-start-period", value_parser = duration::parse)]
    pub health_start_period: Option<std::time::Duration>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    #[command(flatten)]
    pub container: ContainerFlags,
}

fn nanos(d: std::time::Duration) -> i64 {
    d.as_nanos() as i64
}

/// "50M", "1.5G", "512MiB", "1024" (bytes) to bytes.
pub fn parse_bytes(s: &str) -> Result<i64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| {
        invalid!("invalid size {s:?}: use a number with an optional unit (b, k, m, g), e.g. 50M")
    })?;
    let scale = match unit
        .to_ascii_lowercase()
        .trim_end_matches('b')
        .trim_end_matches('i')
    {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(invalid!("invalid size {s:?}: unknown unit {unit:?}")),
    };
    Ok((value * scale) as i64)
}

pub fn parse_cpus(s: &str) -> Result<i64> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| invalid!("invalid CPU amount {s:?}: use a decimal such as 0.5"))?;
    if v < 0.0 {
        return Err(invalid!("invalid CPU amount {s:?}: cannot be negative"));
    }
    Ok((v * 1e9) as i64)
}

fn key_values(items: &[String], what: &str) -> Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            if k.is_empty() {
                return Err(invalid!("invalid {what} {kv:?}: use key=value"));
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

/// `-p 8080:80`, `-p 8080:80/udp`, `-p 80` or `-p published=8080,target=80,protocol=udp,mode=host`.
pub fn parse_port(s: &str) -> Result<PortConfig> {
    let bad = |why: &str| {
        invalid!(
            "invalid publish {s:?}: {why}; use PUBLISHED:TARGET[/PROTO] or published=N,target=N[,protocol=tcp|udp][,mode=ingress|host]"
        )
    };
    let port = |v: &str| -> Result<u32> {
        let n: u32 = v
            .trim()
            .parse()
            .map_err(|_| bad(&format!("{v:?} is not a port number")))?;
        if n == 0 || n > 65535 {
            return Err(bad(&format!("port {n} is out of range 1-65535")));
        }
        Ok(n)
    };
    let mut p = PortConfig {
        protocol: "tcp".into(),
        ..Default::default()
    };
    if s.contains('=') {
        for field in s.split(',') {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| bad(&format!("{field:?} is not key=value")))?;
            match k.trim() {
                "published" => p.published_port = port(v)?,
                "target" => p.target_port = port(v)?,
                "protocol" => p.protocol = v.trim().to_string(),
                "mode" => {
                    p.publish_mode = PublishMode::from_docker_name(v.trim()).ok_or_else(|| {
                        bad(&format!("mode {:?} is not ingress or host", v.trim()))
                    })? as i32;
                }
                other => return Err(bad(&format!("unknown field {other:?}"))),
            }
        }
        if p.target_port == 0 {
            return Err(bad("target is missing"));
        }
    } else {
        let (ports, proto) = s.split_once('/').unwrap_or((s, "tcp"));
        p.protocol = proto.to_string();
        match ports.split_once(':') {
            Some((published, target)) => {
                p.published_port = port(published)?;
                p.target_port = port(target)?;
            }
            None => p.target_port = port(ports)?,
        }
    }
    if !["tcp", "udp"].contains(&p.protocol.as_str()) {
        return Err(bad(&format!("protocol {:?} is not tcp or udp", p.protocol)));
    }
    Ok(p)
}

fn update_config(
    base: Option<UpdateConfig>,
    parallelism: Option<u64>,
    delay: Option<std::time::Duration>,
    failure: Option<&String>,
    monitor: Option<std::time::Duration>,
    ratio: Option<f32>,
    order: Option<&String>,
) -> UpdateConfig {
    let mut c = base.unwrap_or(UpdateConfig {
        parallelism: 1,
        monitor_nanos: 5_000_000_000,
        ..Default::default()
    });
    if let Some(p) = parallelism {
        c.parallelism = p;
    }
    if let Some(d) = delay {
        c.delay_nanos = nanos(d);
    }
    if let Some(f) = failure {
        c.failure_action = UpdateFailureAction::from_docker_name(f).unwrap_or_default() as i32;
    }
    if let Some(m) = monitor {
        c.monitor_nanos = nanos(m);
    }
    if let Some(r) = ratio {
        c.max_failure_ratio = r;
    }
    if let Some(o) = order {
        c.order = UpdateOrder::from_docker_name(o).unwrap_or_default() as i32;
    }
    c
}

impl SpecFlags {
    /// Applies the flags on top of `spec` (a new one for create, the current one for update).
    pub fn apply(&self, spec: &mut ServiceSpec) -> Result<()> {
        let task = spec.task.get_or_insert_with(TaskSpec::default);
        let c = task.container.get_or_insert_with(ContainerSpec::default);
        if let Some(h) = &self.hostname {
            c.hostname = h.clone();
        }
        if let Some(u) = &self.user {
            c.user = u.clone();
        }
        if let Some(w) = &self.workdir {
            c.dir = w.clone();
        }
        if let Some(s) = &self.stop_signal {
            c.stop_signal = s.clone();
        }
        if let Some(g) = self.stop_grace_period {
            c.stop_grace_period_nanos = nanos(g);
        }
        if self.no_healthcheck {
            c.healthcheck = Some(HealthConfig {
                test: vec!["NONE".into()],
                ..Default::default()
            });
        } else if let Some(cmd) = &self.health_cmd {
            c.healthcheck = Some(HealthConfig {
                test: vec!["CMD-SHELL".into(), cmd.clone()],
                interval_nanos: self.health_interval.map(nanos).unwrap_or_default(),
                timeout_nanos: self.health_timeout.map(nanos).unwrap_or_default(),
                start_period_nanos: self.health_start_period.map(nanos).unwrap_or_default(),
                retries: self.health_retries.unwrap_or_default(),
            });
        }
        let resources = task
            .resources
            .get_or_insert_with(ResourceRequirements::default);
        let limits = resources.limits.get_or_insert_with(ResourceValues::default);
        if let Some(v) = &self.limit_cpu {
            limits.nano_cpus = parse_cpus(v)?;
        }
        if let Some(v) = &self.limit_memory {
            limits.memory_bytes = parse_bytes(v)?;
        }
        let reservations = resources
            .reservations
            .get_or_insert_with(ResourceValues::default);
        if let Some(v) = &self.reserve_cpu {
            reservations.nano_cpus = parse_cpus(v)?;
        }
        if let Some(v) = &self.reserve_memory {
            reservations.memory_bytes = parse_bytes(v)?;
        }
        let restart = task.restart.get_or_insert(RestartPolicy {
            delay_nanos: 5_000_000_000,
            ..Default::default()
        });
        if let Some(c) = &self.restart_condition {
            restart.condition = RestartCondition::from_docker_name(c).unwrap_or_default() as i32;
        }
        if let Some(d) = self.restart_delay {
            restart.delay_nanos = nanos(d);
        }
        if let Some(n) = self.restart_max_attempts {
            restart.max_attempts = n;
        }
        if let Some(w) = self.restart_window {
            restart.window_nanos = nanos(w);
        }
        if let Some(n) = self.replicas_max_per_node {
            task.placement
                .get_or_insert_with(Placement::default)
                .max_replicas = n;
        }
        spec.update = Some(update_config(
            spec.update,
            self.update_parallelism,
            self.update_delay,
            self.update_failure_action.as_ref(),
            self.update_monitor,
            self.update_max_failure_ratio,
            self.update_order.as_ref(),
        ));
        spec.rollback = Some(update_config(
            spec.rollback,
            self.rollback_parallelism,
            self.rollback_delay,
            self.rollback_failure_action.as_ref(),
            self.rollback_monitor,
            self.rollback_max_failure_ratio,
            self.rollback_order.as_ref(),
        ));
        let endpoint = spec.endpoint.get_or_insert_with(EndpointSpec::default);
        if let Some(m) = &self.endpoint_mode {
            endpoint.mode = EndpointMode::from_docker_name(m).unwrap_or_default() as i32;
        }
        self.container.apply(spec)
    }
}

impl CreateLists {
    pub fn apply(&self, spec: &mut ServiceSpec) -> Result<()> {
        let annotations = spec.annotations.get_or_insert_with(Annotations::default);
        annotations.labels.extend(key_values(&self.label, "label")?);
        let task = spec.task.get_or_insert_with(TaskSpec::default);
        let c = task.container.get_or_insert_with(ContainerSpec::default);
        c.env.extend(self.env.iter().cloned());
        c.labels
            .extend(key_values(&self.container_label, "container label")?);
        let placement = task.placement.get_or_insert_with(Placement::default);
        placement
            .constraints
            .extend(self.constraint.iter().cloned());
        for p in &self.placement_pref {
            placement.preferences.push(parse_preference(p)?);
        }
        for n in &self.network {
            task.networks.push(parse_network(n)?);
        }
        let endpoint = spec.endpoint.get_or_insert_with(EndpointSpec::default);
        for p in &self.publish {
            endpoint.ports.push(parse_port(p)?);
        }
        self.container.apply(spec)
    }
}

/// `--network app` or `--network name=app,alias=web,alias=www`.
pub fn parse_network(s: &str) -> Result<NetworkAttachmentConfig> {
    if !s.contains('=') {
        return Ok(NetworkAttachmentConfig {
            target: s.to_string(),
            aliases: vec![],
        });
    }
    let mut n = NetworkAttachmentConfig::default();
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("name" | "target", v)) if !v.is_empty() => n.target = v.to_string(),
            Some(("alias", v)) if !v.is_empty() => n.aliases.push(v.to_string()),
            _ => {
                return Err(invalid!(
                    "invalid --network {s:?}: {part:?} is not name=NETWORK or alias=NAME"
                ));
            }
        }
    }
    if n.target.is_empty() {
        return Err(invalid!(
            "invalid --network {s:?}: give the network with name=NETWORK"
        ));
    }
    Ok(n)
}

pub fn parse_preference(p: &str) -> Result<SpreadOver> {
    let descriptor = p.strip_prefix("spread=").ok_or_else(|| {
        invalid!("invalid placement preference {p:?}: use spread=node.labels.<label>")
    })?;
    Ok(SpreadOver {
        spread_descriptor: descriptor.to_string(),
    })
}

/// A capability as docker writes it in a spec: `net_admin` is CAP_NET_ADMIN; ALL stays.
pub fn capability(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" || upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// `--host NAME:IP` (or NAME=IP) as the service keeps it: an /etc/hosts line "IP NAME".
pub fn host_line(s: &str) -> Result<String> {
    let split = s.find([':', '=']);
    match split.map(|i| (&s[..i], &s[i + 1..])) {
        Some((name, ip)) if !name.is_empty() && ip.parse::<std::net::IpAddr>().is_ok() => {
            Ok(format!("{ip} {name}"))
        }
        _ => Err(invalid!(
            "invalid host {s:?}: use NAME:IP, e.g. db:10.0.0.5"
        )),
    }
}

/// The value docker names `value` (empty: the default), or an error naming `field` and
/// the accepted names.
pub fn one_of<T: DockerName + Default>(field: &str, value: &str) -> Result<T> {
    if value.is_empty() {
        return Ok(T::default());
    }
    T::from_docker_name(value).ok_or_else(|| {
        invalid!(
            "{field}: invalid value {value:?}: use one of {}",
            T::docker_names()
        )
    })
}

pub fn key_value(kv: &str, what: &str) -> Result<(String, String)> {
    Ok(key_values(&[kv.to_string()], what)?.remove(0))
}

/// The mode from `--mode`, `--replicas` and `--max-concurrent` (a replicated job's
/// replicas are its completions; both default to 1, as dockerd's).
pub fn mode(mode: &str, replicas: Option<u64>, max_concurrent: Option<u64>) -> Result<Mode> {
    if max_concurrent.is_some() && mode != "replicated-job" {
        return Err(invalid!(
            "max-concurrent can only be used with replicated-job mode"
        ));
    }
    match mode {
        "replicated" => Ok(Mode::Replicated(ReplicatedService {
            replicas: replicas.unwrap_or(1),
        })),
        "replicated-job" => Ok(Mode::ReplicatedJob(shoal_proto::ReplicatedJob {
            max_concurrent: max_concurrent.unwrap_or(1),
            total_completions: replicas.unwrap_or(1),
        })),
        "global" | "global-job" if replicas.is_some() => Err(invalid!(
            "replicas can only be used with replicated or replicated-job mode"
        )),
        "global" => Ok(Mode::Global(GlobalService {})),
        "global-job" => Ok(Mode::GlobalJob(shoal_proto::GlobalJob {})),
        other => Err(invalid!(
            "invalid mode {other:?}: use replicated, global, replicated-job or global-job"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_as_docker_reads_them() {
        assert_eq!(
            mode("replicated-job", Some(5), Some(2)).unwrap(),
            Mode::ReplicatedJob(shoal_proto::ReplicatedJob {
                max_concurrent: 2,
                total_completions: 5
            })
        );
        assert_eq!(
            mode("replicated-job", None, None).unwrap(),
            Mode::ReplicatedJob(shoal_proto::ReplicatedJob {
                max_concurrent: 1,
                total_completions: 1
            })
        );
        assert!(matches!(
            mode("global-job", None, None),
            Ok(Mode::GlobalJob(_))
        ));
        for (m, replicas, max, why) in [
            ("global-job", Some(2), None, "replicas can only be used"),
            (
                "replicated",
                None,
                Some(2),
                "max-concurrent can only be used",
            ),
            ("sometimes", None, None, "invalid mode"),
        ] {
            let e = mode(m, replicas, max).unwrap_err().to_string();
            assert!(e.contains(why), "{m}: {e}");
        }
    }

    #[test]
    fn networks_parse_with_aliases() {
        let n = parse_network("name=app,alias=web,alias=www").unwrap();
        assert_eq!(
            (n.target.as_str(), n.aliases),
            ("app", vec!["web".into(), "www".into()])
        );
        assert_eq!(parse_network("app").unwrap().target, "app");
        let err = parse_network("name=app,color=red").unwrap_err().to_string();
        assert!(
            err.contains("\"color=red\" is not name=NETWORK or alias=NAME"),
            "{err}"
        );
        assert!(parse_network("alias=web").is_err());
    }

    #[test]
    fn ports_parse_in_both_forms() {
        let p = parse_port("8080:80").unwrap();
        assert_eq!(
            (p.published_port, p.target_port, p.protocol.as_str()),
            (8080, 80, "tcp")
        );
        let p = parse_port("53:53/udp").unwrap();
        assert_eq!(p.protocol, "udp");
        let p = parse_port("published=8080,target=80,mode=host").unwrap();
        assert_eq!(p.publish_mode(), PublishMode::Host);
        assert!(
            parse_port("0:80")
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
        assert!(
            parse_port("8080:70000")
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
        assert!(
            parse_port("8080:80/icmp")
                .unwrap_err()
                .to_string()
                .contains("protocol")
        );
    }

    #[test]
    fn sizes_and_cpus() {
        assert_eq!(parse_bytes("50M").unwrap(), 50 * 1024 * 1024);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert!(parse_bytes("lots").is_err());
        assert_eq!(parse_cpus("0.1").unwrap(), 100_000_000);
    }
}

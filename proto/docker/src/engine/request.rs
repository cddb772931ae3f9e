//! Request bodies of the Engine API, decoded as dockerd decodes them (go_json.rs: field
//! names in any case, `null` as absent). What happens to each field:
//!
//! | field | shoal |
//! | --- | --- |
//! | a field the Engine API does not have (a typo, a newer API's field) | ignored, as dockerd ignores it |
//! | a field shoal implements | honoured |
//! | a field the API has and shoal lacks (CredentialSpec, GenericResources, ...) | accepted at its zero value (what clients send by default), else refused by name: ignoring it would lose what the user asked for |
//! | `CheckDuplicate` (network create) | read and ignored: a duplicate name is always refused |
//!
//! A value of the wrong type is a 400 naming its path. Nothing of a refused request is
//! applied.

use std::collections::HashMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use shoal_proto as pb;

use super::engine_settings::{DnsConfig, Driver, Mount, Platform, Privileges, Ulimit};
use super::go_json::GoJson;
use super::secrets::{ConfigReference, SecretReference};
use crate::error::{Invalid, Result};
use crate::flags::one_of;
use crate::render::engine::Settings;

/// Parses a JSON body with Go's rules, naming the path of whatever is wrong.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Invalid::new(format!("malformed JSON body: {e}")))?;
    serde_path_to_error::deserialize(GoJson(value)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            Invalid::new(format!("invalid JSON body: {inner}"))
        } else {
            Invalid::new(format!("invalid JSON at {path}: {inner}"))
        }
    })
}

/// A field of a JSON object, its name matched in any case, as Go matches it.
pub fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let obj = v.as_object()?;
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// Go clients send nil maps and slices as null: the same as absent.
pub(super) fn null_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A known Engine API field shoal does not implement: fine when absent or zero.
pub(super) type Unsupported = Option<Value>;

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty() || s == "default",
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_zero),
    }
}

pub(super) fn refuse_set(fields: &[(&str, &Unsupported)]) -> Result<()> {
    for (name, v) in fields {
        if v.as_ref().is_some_and(|v| !is_zero(v)) {
            return Err(Invalid::new(format!(
                "{name} is not supported by shoal: remove it from the request"
            )));
        }
    }
    Ok(())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceSpec {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: HashMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub task_template: TaskTemplate,
    pub mode: Option<Mode>,
    pub update_config: Option<UpdateConfig>,
    pub rollback_config: Option<UpdateConfig>,
    pub networks: Option<Vec<NetworkAttachment>>,
    pub endpoint_spec: Option<EndpointSpec>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct TaskTemplate {
    pub container_spec: Option<ContainerSpec>,
    pub resources: Option<Resources>,
    pub restart_policy: Option<RestartPolicy>,
    pub placement: Option<Placement>,
    pub networks: Option<Vec<NetworkAttachment>>,
    #[serde(default, deserialize_with = "null_default")]
    pub force_update: u64,
    plugin_spec: Unsupported,
    network_attachment_spec: Unsupported,
    pub log_driver: Option<Driver>,
    runtime: Unsupported,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSpec {
    #[serde(default, deserialize_with = "null_default")]
    pub image: String,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: HashMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub command: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub args: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub hostname: String,
    #[serde(default, deserialize_with = "null_default")]
    pub env: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub dir: String,
    #[serde(default, deserialize_with = "null_default")]
    pub user: String,
    #[serde(default, deserialize_with = "null_default")]
    pub stop_signal: String,
    pub stop_grace_period: Option<i64>,
    #[serde(rename = "Healthcheck")]
    pub healthcheck: Option<HealthCheck>,
    #[serde(default, deserialize_with = "null_default")]
    pub groups: Vec<String>,
    pub privileges: Option<Privileges>,
    #[serde(default, rename = "TTY", deserialize_with = "null_default")]
    pub tty: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub open_stdin: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub read_only: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub mounts: Vec<Mount>,
    #[serde(default, deserialize_with = "null_default")]
    pub hosts: Vec<String>,
    #[serde(default, rename = "DNSConfig", deserialize_with = "null_default")]
    pub dns_config: DnsConfig,
    #[serde(default, deserialize_with = "null_default")]
    pub secrets: Vec<SecretReference>,
    #[serde(default, deserialize_with = "null_default")]
    pub configs: Vec<ConfigReference>,
    isolation: Unsupported,
    pub init: Option<bool>,
    #[serde(default, deserialize_with = "null_default")]
    pub sysctls: HashMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub capability_add: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub capability_drop: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub ulimits: Vec<Ulimit>,
    #[serde(default, deserialize_with = "null_default")]
    pub oom_score_adj: i64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct HealthCheck {
    #[serde(default, deserialize_with = "null_default")]
    pub test: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub interval: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub timeout: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub start_period: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub retries: i32,
    start_interval: Unsupported,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Resources {
    pub limits: Option<Limit>,
    pub reservations: Option<Limit>,
}

/// Limits and reservations share a shape; Pids (limits) and GenericResources
/// (reservations) are the parts shoal lacks.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Limit {
    #[serde(default, rename = "NanoCPUs", deserialize_with = "null_default")]
    pub nano_cpus: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub memory_bytes: i64,
    /// Limits only (the API's Reservations have none).
    #[serde(default, deserialize_with = "null_default")]
    pub pids: i64,
    generic_resources: Unsupported,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    pub condition: Option<String>,
    pub delay: Option<i64>,
    pub max_attempts: Option<u64>,
    pub window: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Placement {
    #[serde(default, deserialize_with = "null_default")]
    pub constraints: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub preferences: Vec<Preference>,
    #[serde(default, deserialize_with = "null_default")]
    pub max_replicas: u64,
    #[serde(default, deserialize_with = "null_default")]
    pub platforms: Vec<Platform>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Preference {
    pub spread: Spread,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Spread {
    pub spread_descriptor: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkAttachment {
    pub target: String,
    #[serde(default, deserialize_with = "null_default")]
    pub aliases: Vec<String>,
    driver_opts: Unsupported,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Mode {
    pub replicated: Option<Replicated>,
    pub global: Option<Value>,
    replicated_job: Option<ReplicatedJob>,
    global_job: Option<Value>,
}

/// Both default to 1, as dockerd converts them.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReplicatedJob {
    max_concurrent: Option<u64>,
    total_completions: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Replicated {
    pub replicas: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateConfig {
    #[serde(default, deserialize_with = "null_default")]
    pub parallelism: u64,
    #[serde(default, deserialize_with = "null_default")]
    pub delay: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub failure_action: String,
    #[serde(default, deserialize_with = "null_default")]
    pub monitor: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub max_failure_ratio: f32,
    #[serde(default, deserialize_with = "null_default")]
    pub order: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointSpec {
    #[serde(default, deserialize_with = "null_default")]
    pub mode: String,
    #[serde(default, deserialize_with = "null_default")]
    pub ports: Vec<PortConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortConfig {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub protocol: String,
    pub target_port: u32,
    #[serde(default, deserialize_with = "null_default")]
    pub published_port: u32,
    #[serde(default, deserialize_with = "null_default")]
    pub publish_mode: String,
}

fn update_config(field: &str, c: UpdateConfig) -> Result<pb::UpdateConfig> {
    use pb::{UpdateFailureAction as A, UpdateOrder as O};
    let action = one_of::<A>(&format!("{field}.FailureAction"), &c.failure_action)?;
    let order = one_of::<O>(&format!("{field}.Order"), &c.order)?;
    Ok(pb::UpdateConfig {
        parallelism: c.parallelism,
        delay_nanos: c.delay,
        failure_action: action as i32,
        monitor_nanos: c.monitor,
        max_failure_ratio: c.max_failure_ratio,
        order: order as i32,
    })
}

fn attachments(list: Vec<NetworkAttachment>) -> Result<Vec<pb::NetworkAttachmentConfig>> {
    list.into_iter()
        .map(|n| {
            refuse_set(&[("TaskTemplate.Networks.DriverOpts", &n.driver_opts)])?;
            Ok(pb::NetworkAttachmentConfig {
                target: n.target,
                aliases: n.aliases,
            })
        })
        .collect()
}

impl ServiceSpec {
    /// Leaves out what a client speaking API `v` cannot mean, as dockerd does before it
    /// reads a service spec (its adjustForAPIVersion): a field newer than the client's
    /// version is one its user never set.
    #[must_use]
    pub fn for_version(mut self, v: (u32, u32)) -> ServiceSpec {
        let t = &mut self.task_template;
        if let Some(c) = t.container_spec.as_mut() {
            if v < (1, 40) {
                c.sysctls.clear();
            }
            if v < (1, 41) {
                c.capability_add.clear();
                c.capability_drop.clear();
                c.ulimits.clear();
            }
            if v < (1, 44) {
                if let Some(p) = c.privileges.as_mut() {
                    p.before_1_44();
                }
                if let Some(h) = c.healthcheck.as_mut() {
                    h.start_interval = None;
                }
            }
            if v < (1, 46) {
                c.oom_score_adj = 0;
                c.mounts.iter_mut().for_each(Mount::before_1_46);
            }
        }
        if v < (1, 40)
            && let Some(p) = t.placement.as_mut()
        {
            p.max_replicas = 0;
        }
        if v < (1, 41) {
            if let Some(l) = t.resources.as_mut().and_then(|r| r.limits.as_mut()) {
                l.pids = 0;
            }
            if let Some(m) = self.mode.as_mut() {
                m.replicated_job = None;
                m.global_job = None;
            }
        }
        // The top-level Networks (deprecated) is read only by clients before 1.44.
        if v >= (1, 44) {
            self.networks = None;
        }
        self
    }

    /// The spec in shoal's terms; the manager validates what it means (names, ports, ...).
    pub fn into_proto(self) -> Result<pb::ServiceSpec> {
        let t = self.task_template;
        refuse_set(&[
            ("TaskTemplate.PluginSpec", &t.plugin_spec),
            (
                "TaskTemplate.NetworkAttachmentSpec",
                &t.network_attachment_spec,
            ),
            ("TaskTemplate.Runtime", &t.runtime),
        ])?;
        let c = t.container_spec.unwrap_or_default();
        refuse_set(&[("ContainerSpec.Isolation", &c.isolation)])?;
        let healthcheck = match c.healthcheck {
            Some(h) => {
                refuse_set(&[("ContainerSpec.Healthcheck.StartInterval", &h.start_interval)])?;
                Some(pb::HealthConfig {
                    test: h.test,
                    interval_nanos: h.interval,
                    timeout_nanos: h.timeout,
                    start_period_nanos: h.start_period,
                    retries: h.retries,
                })
            }
            None => None,
        };
        let container = pb::ContainerSpec {
            image: c.image,
            command: c.command,
            args: c.args,
            env: c.env,
            hostname: c.hostname,
            user: c.user,
            dir: c.dir,
            healthcheck,
            stop_signal: c.stop_signal,
            stop_grace_period_nanos: c.stop_grace_period.unwrap_or(0),
            labels: c.labels,
            mounts: c
                .mounts
                .into_iter()
                .map(Mount::into_proto)
                .collect::<Result<_>>()?,
            capability_add: c.capability_add,
            capability_drop: c.capability_drop,
            init: c.init,
            read_only: c.read_only,
            sysctls: c.sysctls,
            tty: c.tty,
            open_stdin: c.open_stdin,
            hosts: c.hosts,
            dns_config: c.dns_config.into_proto(),
            groups: c.groups,
            privileges: c
                .privileges
                .map(Privileges::into_proto)
                .transpose()?
                .flatten(),
            ulimits: c.ulimits.into_iter().map(Ulimit::into_proto).collect(),
            oom_score_adj: c.oom_score_adj,
            secrets: c
                .secrets
                .into_iter()
                .map(SecretReference::into_proto)
                .collect(),
            configs: c
                .configs
                .into_iter()
                .map(ConfigReference::into_proto)
                .collect::<Result<_>>()?,
        };
        let res = t.resources.unwrap_or_default();
        let limit = |field: &str, l: Option<Limit>| -> Result<Option<pb::ResourceValues>> {
            let Some(l) = l else { return Ok(None) };
            refuse_set(&[(
                &format!("TaskTemplate.Resources.{field}.GenericResources"),
                &l.generic_resources,
            )])?;
            Ok(Some(pb::ResourceValues {
                nano_cpus: l.nano_cpus,
                memory_bytes: l.memory_bytes,
                pids: if field == "Limits" { l.pids } else { 0 },
            }))
        };
        let restart = t.restart_policy.unwrap_or_default();
        use pb::RestartCondition as R;
        let condition = one_of::<R>(
            "TaskTemplate.RestartPolicy.Condition",
            restart.condition.as_deref().unwrap_or(""),
        )?;
        let placement = t.placement.unwrap_or_default();
        // The top-level Networks is the deprecated spelling of TaskTemplate.Networks.
        let networks = attachments(t.networks.or(self.networks).unwrap_or_default())?;
        let mode = match self.mode {
            None => pb::service_spec::Mode::Replicated(pb::ReplicatedService { replicas: 1 }),
            Some(m) => {
                use pb::service_spec::Mode as M;
                let set = [
                    m.replicated.is_some(),
                    m.global.is_some(),
                    m.replicated_job.is_some(),
                    m.global_job.is_some(),
                ];
                if set.iter().filter(|x| **x).count() > 1 {
                    return Err(Invalid::new(
                        "Mode: give one of Replicated, Global, ReplicatedJob or GlobalJob",
                    ));
                }
                if let Some(j) = m.replicated_job {
                    M::ReplicatedJob(pb::ReplicatedJob {
                        max_concurrent: j.max_concurrent.unwrap_or(1),
                        total_completions: j.total_completions.unwrap_or(1),
                    })
                } else if m.global_job.is_some() {
                    M::GlobalJob(pb::GlobalJob {})
                } else if m.global.is_some() {
                    M::Global(pb::GlobalService {})
                } else {
                    M::Replicated(pb::ReplicatedService {
                        replicas: m.replicated.and_then(|r| r.replicas).unwrap_or(1),
                    })
                }
            }
        };
        let endpoint = self.endpoint_spec.unwrap_or_default();
        use pb::{EndpointMode as E, PublishMode as P};
        let endpoint_mode = one_of::<E>("EndpointSpec.Mode", &endpoint.mode)?;
        let ports = endpoint
            .ports
            .into_iter()
            .map(|p| {
                let mode = one_of::<P>("EndpointSpec.Ports.PublishMode", &p.publish_mode)?;
                Ok(pb::PortConfig {
                    name: p.name,
                    protocol: if p.protocol.is_empty() {
                        "tcp".into()
                    } else {
                        p.protocol
                    },
                    target_port: p.target_port,
                    published_port: p.published_port,
                    publish_mode: mode as i32,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(pb::ServiceSpec {
            annotations: Some(pb::Annotations {
                name: self.name.unwrap_or_default(),
                labels: self.labels,
            }),
            task: Some(pb::TaskSpec {
                container: Some(container),
                resources: Some(pb::ResourceRequirements {
                    limits: limit("Limits", res.limits)?,
                    reservations: limit("Reservations", res.reservations)?,
                }),
                restart: Some(pb::RestartPolicy {
                    condition: condition as i32,
                    delay_nanos: restart.delay.unwrap_or(5_000_000_000),
                    max_attempts: restart.max_attempts.unwrap_or(0),
                    window_nanos: restart.window.unwrap_or(0),
                }),
                placement: Some(pb::Placement {
                    constraints: placement.constraints,
                    preferences: placement
                        .preferences
                        .into_iter()
                        .map(|p| pb::SpreadOver {
                            spread_descriptor: p.spread.spread_descriptor,
                        })
                        .collect(),
                    max_replicas: placement.max_replicas,
                    platforms: placement
                        .platforms
                        .into_iter()
                        .map(Platform::into_proto)
                        .collect(),
                }),
                networks,
                force_update: t.force_update,
                attachment: None,
                log_driver: t
                    .log_driver
                    .map(Driver::into_proto)
                    .filter(|d| !(d.name.is_empty() && d.options.is_empty())),
            }),
            mode: Some(mode),
            update: self
                .update_config
                .map(|c| update_config("UpdateConfig", c))
                .transpose()?,
            rollback: self
                .rollback_config
                .map(|c| update_config("RollbackConfig", c))
                .transpose()?,
            endpoint: Some(pb::EndpointSpec {
                mode: endpoint_mode as i32,
                ports,
            }),
        })
    }
}

/// POST /networks/{id}/connect and /disconnect: a container and, to connect, its
/// endpoint's settings.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkConnect {
    pub container: String,
    #[serde(default, deserialize_with = "null_default")]
    pub endpoint_config: EndpointSettings,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointSettings {
    #[serde(default, deserialize_with = "null_default")]
    pub aliases: Vec<String>,
    #[serde(rename = "IPAMConfig")]
    ipam_config: Unsupported,
    links: Unsupported,
    driver_opts: Unsupported,
    #[serde(rename = "MacAddress")]
    mac_address: Unsupported,
}

impl EndpointSettings {
    /// What a swarm network cannot give an attached container (a static address, links,
    /// driver options, a MAC), refused by name; a local network of dockerd's may.
    pub fn swarm_refusal(&self) -> Result<()> {
        refuse_set(&[
            ("EndpointConfig.IPAMConfig", &self.ipam_config),
            ("EndpointConfig.Links", &self.links),
            ("EndpointConfig.DriverOpts", &self.driver_opts),
            ("EndpointConfig.MacAddress", &self.mac_address),
        ])
    }
}

/// POST /networks/create.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkCreate {
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub driver: String,
    #[serde(default, deserialize_with = "null_default")]
    pub attachable: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub ingress: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Option<Ipam>,
    #[serde(default, deserialize_with = "null_default")]
    pub options: HashMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: HashMap<String, String>,
    /// Read and ignored: shoal refuses a duplicate name whatever the client asks.
    #[allow(dead_code)]
    check_duplicate: Option<bool>,
    scope: Option<String>,
    internal: Unsupported,
    config_only: Unsupported,
    config_from: Unsupported,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Unsupported,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ipam {
    driver: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    config: Vec<IpamConfig>,
    options: Unsupported,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfig {
    #[serde(default, deserialize_with = "null_default")]
    subnet: String,
    #[serde(default, deserialize_with = "null_default")]
    gateway: String,
    #[serde(rename = "IPRange")]
    ip_range: Unsupported,
    auxiliary_addresses: Unsupported,
}

impl NetworkCreate {
    pub fn into_proto(self) -> Result<pb::NetworkSpec> {
        refuse_set(&[
            ("Internal", &self.internal),
            ("ConfigOnly", &self.config_only),
            ("ConfigFrom", &self.config_from),
            ("EnableIPv6", &self.enable_ipv6),
        ])?;
        if !matches!(self.driver.as_str(), "" | "overlay") {
            return Err(Invalid::new(format!(
                "driver {:?}: shoal serves swarm-scoped overlay networks only: use -d overlay",
                self.driver
            )));
        }
        if !matches!(self.scope.as_deref(), None | Some("" | "swarm")) {
            return Err(Invalid::new("Scope: shoal's networks are swarm-scoped"));
        }
        let ipam = match self.ipam {
            None => vec![],
            Some(i) => {
                refuse_set(&[("IPAM.Options", &i.options)])?;
                if !matches!(i.driver.as_deref(), None | Some("" | "default")) {
                    return Err(Invalid::new(
                        "IPAM.Driver: only the default IPAM driver exists in shoal",
                    ));
                }
                i.config
                    .into_iter()
                    .map(|c| {
                        refuse_set(&[
                            ("IPAM.Config.IPRange", &c.ip_range),
                            ("IPAM.Config.AuxiliaryAddresses", &c.auxiliary_addresses),
                        ])?;
                        Ok(pb::IpamConfig {
                            subnet: c.subnet,
                            gateway: c.gateway,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?
            }
        };
        Ok(pb::NetworkSpec {
            annotations: Some(pb::Annotations {
                name: self.name,
                labels: self.labels,
            }),
            driver: "overlay".into(),
            options: self.options,
            ipam,
            attachable: self.attachable,
            ingress: self.ingress,
        })
    }
}

/// POST /nodes/{id}/update: the whole NodeSpec.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeSpec {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: HashMap<String, String>,
    pub role: Option<String>,
    pub availability: Option<String>,
}

/// POST /swarm/init.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SwarmInit {
    #[serde(default, deserialize_with = "null_default")]
    pub listen_addr: String,
    #[serde(default, deserialize_with = "null_default")]
    pub advertise_addr: String,
    #[serde(default, deserialize_with = "null_default")]
    pub force_new_cluster: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub default_addr_pool: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub subnet_size: u32,
    pub spec: Option<Value>,
    data_path_addr: Unsupported,
    data_path_port: Option<u32>,
    #[serde(default, deserialize_with = "null_default")]
    auto_lock_managers: bool,
    availability: Option<String>,
}

/// What a swarm spec (init's or update's) sets that shoal honours: the heartbeat period
/// in ms (0: not given), autolock, the task history, the CA settings (node certificate
/// life, ForceRotate, an operator's signing CA) and Raft's snapshot settings; any other
/// setting must be as shoal has it, or it is named. The signing CA's key, never shown,
/// comes back beside the settings.
pub fn swarm_settings(spec: &Value, at: &str) -> Result<(Settings, String)> {
    let get = |path: &[&str]| path.iter().try_fold(spec, |v, key| field(v, key)).cloned();
    let number = |path: &[&str]| get(path).and_then(|v| v.as_u64()).unwrap_or(0);
    let text = |path: &[&str]| {
        get(path)
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    if get(&["CAConfig", "ExternalCAs"])
        .is_some_and(|v| v.as_array().is_some_and(|a| !a.is_empty()))
    {
        return Err(Invalid::new(format!(
            "{at}.CAConfig.ExternalCAs: shoal signs node certificates itself; to use your own root CA, rotate to it with its certificate and key (SigningCACert, SigningCAKey)"
        )));
    }
    let heartbeat = number(&["Dispatcher", "HeartbeatPeriod"]);
    let settings = Settings {
        heartbeat_ms: heartbeat / 1_000_000,
        autolock: get(&["EncryptionConfig", "AutoLockManagers"])
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        task_history: get(&["Orchestration", "TaskHistoryRetentionLimit"])
            .and_then(|v| v.as_i64())
            .unwrap_or(pb::DEFAULT_TASK_HISTORY),
        cert_expiry_secs: number(&["CAConfig", "NodeCertExpiry"]) / 1_000_000_000,
        force_rotate: number(&["CAConfig", "ForceRotate"]),
        signing_ca_cert: text(&["CAConfig", "SigningCACert"]),
        snapshot_interval: number(&["Raft", "SnapshotInterval"]),
        keep_old_snapshots: number(&["Raft", "KeepOldSnapshots"]),
    };
    let signing_key = text(&["CAConfig", "SigningCAKey"]);
    let mut compared = spec.clone();
    if let Some(ca) = compared
        .as_object_mut()
        .and_then(|o| {
            o.iter_mut()
                .find(|(k, _)| k.eq_ignore_ascii_case("CAConfig"))
        })
        .and_then(|(_, v)| v.as_object_mut())
    {
        ca.retain(|k, _| !k.eq_ignore_ascii_case("SigningCAKey"));
    }
    let shown = crate::render::engine::swarm_spec(Settings {
        heartbeat_ms: if heartbeat == 0 {
            pb::DEFAULT_HEARTBEAT_MS
        } else {
            settings.heartbeat_ms
        },
        ..settings.clone()
    });
    if let Some(path) = first_difference(&compared, &shown, at.into()) {
        return Err(Invalid::new(format!(
            "{path}: shoal does not change this swarm setting; leave it at its default"
        )));
    }
    Ok((settings, signing_key))
}

impl SwarmInit {
    pub fn into_proto(self) -> Result<pb::SwarmInitRequest> {
        refuse_set(&[("DataPathAddr", &self.data_path_addr)])?;
        if !matches!(self.data_path_port, None | Some(0 | 4789)) {
            return Err(Invalid::new("DataPathPort: shoal's VXLAN port is 4789"));
        }
        if !matches!(self.availability.as_deref(), None | Some("" | "active")) {
            return Err(Invalid::new(
                "Availability: a new node starts active; change it afterwards with node update",
            ));
        }
        let (settings, _) = swarm_settings(&self.spec.unwrap_or(Value::Null), "Spec")?;
        if !settings.signing_ca_cert.is_empty() {
            return Err(Invalid::new(
                "Spec.CAConfig.SigningCACert: a swarm starts with a root CA of its own; rotate to yours afterwards (swarm ca --rotate --ca-cert --ca-key)",
            ));
        }
        Ok(pb::SwarmInitRequest {
            advertise_addr: self.advertise_addr,
            listen_addr: self.listen_addr,
            force_new_cluster: self.force_new_cluster,
            heartbeat_period_ms: settings.heartbeat_ms,
            default_addr_pool: self.default_addr_pool,
            default_addr_pool_mask_length: self.subnet_size,
            autolock: settings.autolock || self.auto_lock_managers,
            task_history_limit: Some(settings.task_history),
            cert_expiry_secs: settings.cert_expiry_secs,
            snapshot_interval: settings.snapshot_interval,
            keep_old_snapshots: settings.keep_old_snapshots,
        })
    }
}

/// Where `sent` sets something `have` does not say (keys in any case; a zero or absent
/// value asks for the default and agrees), as a dotted path: how a swarm setting shoal
/// does not change is named.
pub fn first_difference(sent: &Value, have: &Value, path: String) -> Option<String> {
    match (sent, have) {
        (Value::Object(s), _) => s.iter().find_map(|(k, v)| {
            let here = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            first_difference(v, field(have, k).unwrap_or(&Value::Null), here)
        }),
        // A zero (or null) asks for the default, as swarmkit reads it (`swarm init`
        // sends zero Raft ticks).
        (s, _) if is_zero(s) => None,
        (s, h) if s == h || (s.as_f64().is_some() && s.as_f64() == h.as_f64()) => None,
        _ => Some(path),
    }
}

/// POST /swarm/join.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SwarmJoin {
    #[serde(default, deserialize_with = "null_default")]
    pub listen_addr: String,
    #[serde(default, deserialize_with = "null_default")]
    pub advertise_addr: String,
    #[serde(default, deserialize_with = "null_default")]
    pub remote_addrs: Vec<String>,
    pub join_token: String,
    data_path_addr: Unsupported,
    availability: Option<String>,
}

impl SwarmJoin {
    pub fn into_proto(self) -> Result<pb::SwarmJoinRequest> {
        refuse_set(&[("DataPathAddr", &self.data_path_addr)])?;
        if !matches!(self.availability.as_deref(), None | Some("" | "active")) {
            return Err(Invalid::new(
                "Availability: a new node starts active; change it afterwards with node update",
            ));
        }
        let remote = self.remote_addrs.into_iter().next().ok_or_else(|| {
            Invalid::new("RemoteAddrs: give the address of a manager to join through")
        })?;
        Ok(pb::SwarmJoinRequest {
            token: self.join_token,
            remote_addr: remote,
            advertise_addr: self.advertise_addr,
            listen_addr: self.listen_addr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docker_clis_service_create_body_becomes_a_spec() {
        let body = br#"{"Name":"web","Labels":{},"TaskTemplate":{"ContainerSpec":{"Image":"shoal/demo-web:latest","Init":false,"DNSConfig":{}},"Resources":{"Limits":{},"Reservations":{}},"Placement":{},"ForceUpdate":0},"Mode":{"Replicated":{"Replicas":3}},"EndpointSpec":{"Mode":"vip","Ports":[{"Protocol":"tcp","TargetPort":80,"PublishedPort":8080,"PublishMode":"ingress"}]}}"#;
        let spec = parse::<ServiceSpec>(body).unwrap().into_proto().unwrap();
        assert_eq!(spec.annotations.unwrap().name, "web");
        let task = spec.task.unwrap();
        assert_eq!(task.container.unwrap().image, "shoal/demo-web:latest");
        assert_eq!(
            spec.mode,
            Some(pb::service_spec::Mode::Replicated(pb::ReplicatedService {
                replicas: 3
            }))
        );
        let port = &spec.endpoint.unwrap().ports[0];
        assert_eq!((port.target_port, port.published_port), (80, 8080));
        assert_eq!(port.protocol, "tcp");
    }

    #[test]
    fn engine_settings_are_read_into_the_spec() {
        let body = br#"{"Name":"redis","TaskTemplate":{"ContainerSpec":{"Image":"redis","Init":true,
            "Mounts":[{"Type":"bind","Source":"/srv/data","Target":"/data","ReadOnly":true,"BindOptions":{"Propagation":"rslave"}},
                      {"Type":"volume","Source":"db","Target":"/db","VolumeOptions":{"NoCopy":true,"DriverConfig":{"Name":"local","Options":{"type":"tmpfs"}}}},
                      {"Type":"tmpfs","Target":"/t","TmpfsOptions":{"SizeBytes":1048576,"Mode":448}}],
            "CapabilityAdd":["CAP_NET_ADMIN"],"CapabilityDrop":["CAP_MKNOD"],"ReadOnly":true,"TTY":true,"OpenStdin":true,
            "Sysctls":{"net.core.somaxconn":"1024"},"Hosts":["10.0.0.1 db"],"Groups":["audio"],
            "DNSConfig":{"Nameservers":["192.0.2.1"],"Search":["example.org"],"Options":["timeout:1"]},
            "Privileges":{"CredentialSpec":null,"SELinuxContext":{"User":"system_u"},
                "Seccomp":{"Mode":"custom","Profile":"eyJkZWZhdWx0QWN0aW9uIjoiU0NNUF9BQ1RfQUxMT1cifQ=="},
                "AppArmor":{"Mode":"disabled"},"NoNewPrivileges":true},
            "Ulimits":[{"Name":"nofile","Soft":1024,"Hard":2048}],"OomScoreAdj":100},
            "Resources":{"Limits":{"Pids":50}},
            "LogDriver":{"Name":"json-file","Options":{"max-size":"1m"}},
            "Placement":{"Platforms":[{"Architecture":"amd64","OS":"linux"}]}}}"#;
        let spec = parse::<ServiceSpec>(body).unwrap().into_proto().unwrap();
        let task = spec.task.unwrap();
        let c = task.container.clone().unwrap();
        assert_eq!(c.mounts.len(), 3);
        assert_eq!(c.mounts[0].r#type(), pb::MountType::Bind);
        assert_eq!(c.mounts[0].bind.as_ref().unwrap().propagation, "rslave");
        assert_eq!(
            c.mounts[1]
                .volume
                .as_ref()
                .unwrap()
                .driver
                .as_ref()
                .unwrap()
                .options["type"],
            "tmpfs"
        );
        assert_eq!(c.mounts[2].tmpfs.unwrap().mode, 0o700);
        assert_eq!(c.init, Some(true));
        assert!(c.read_only && c.tty && c.open_stdin);
        assert_eq!(c.capability_drop, ["CAP_MKNOD"]);
        assert_eq!(c.hosts, ["10.0.0.1 db"]);
        assert_eq!(c.groups, ["audio"]);
        assert_eq!(c.dns_config.unwrap().options, ["timeout:1"]);
        assert_eq!(
            (c.ulimits[0].soft, c.ulimits[0].hard, c.oom_score_adj),
            (1024, 2048, 100)
        );
        assert_eq!(task.resources.unwrap().limits.unwrap().pids, 50);
        // Reservations have no Pids in the API: one sent there means nothing.
        let reserved = parse::<ServiceSpec>(
            br#"{"Name":"r","TaskTemplate":{"Resources":{"Reservations":{"Pids":7}}}}"#,
        )
        .unwrap()
        .into_proto()
        .unwrap();
        let reservations = reserved.task.unwrap().resources.unwrap().reservations;
        assert_eq!(reservations.unwrap().pids, 0);
        assert_eq!(task.log_driver.clone().unwrap().options["max-size"], "1m");
        assert_eq!(task.placement.clone().unwrap().platforms[0].os, "linux");
        assert_eq!(
            c.privileges.unwrap().security_opts(),
            [
                "label=user:system_u",
                r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#,
                "apparmor=unconfined",
                "no-new-privileges=true"
            ]
        );
        // Everything a container engine must give, named for runtimes without one.
        assert_eq!(
            task.engine_settings(),
            [
                "Mounts",
                "CapabilityAdd",
                "CapabilityDrop",
                "Init",
                "ReadOnly",
                "Sysctls",
                "TTY",
                "OpenStdin",
                "Hosts",
                "DNSConfig",
                "Groups",
                "Privileges",
                "Ulimits",
                "OomScoreAdj",
                "Resources.Limits.Pids",
                "LogDriver"
            ]
        );
        // Shown back as dockerd shows them, and read again unchanged.
        let shown = crate::render::service::spec_json(&pb::ServiceSpec {
            task: Some(task.clone()),
            ..Default::default()
        });
        assert_eq!(shown["TaskTemplate"]["ContainerSpec"]["Init"], true);
        assert_eq!(
            shown["TaskTemplate"]["ContainerSpec"]["Mounts"][0]["Type"],
            "bind"
        );
        let again = parse::<ServiceSpec>(shown.to_string().as_bytes())
            .unwrap()
            .into_proto()
            .unwrap();
        assert_eq!(again.task.unwrap(), task);
    }

    #[test]
    fn a_field_newer_than_the_clients_version_is_left_out_as_dockerd_leaves_it() {
        let body = br#"{"Name":"web","TaskTemplate":{"ContainerSpec":{"Image":"x",
            "Sysctls":{"net.core.somaxconn":"1"},"CapabilityAdd":["CAP_NET_ADMIN"],
            "Privileges":{"NoNewPrivileges":true},"Healthcheck":{"Test":["NONE"],"StartInterval":5}},
            "Placement":{"MaxReplicas":2},"Networks":[{"Target":"new"}]},
            "Networks":[{"Target":"old"}]}"#;
        let at = |v: (u32, u32)| {
            let spec = parse::<ServiceSpec>(body).unwrap().for_version(v);
            spec.into_proto()
        };
        // 1.50 keeps everything (StartInterval is then refused by name, not dropped).
        let e = at((1, 50)).unwrap_err();
        assert!(e.0.contains("StartInterval"), "{}", e.0);
        let t = at((1, 44)).unwrap_err();
        assert!(t.0.contains("StartInterval"), "{}", t.0);
        let t = at((1, 43)).unwrap().task.unwrap();
        let c = t.container.clone().unwrap();
        assert!(c.privileges.is_none(), "NoNewPrivileges is 1.44's");
        assert_eq!(c.capability_add, ["CAP_NET_ADMIN"]);
        let c = at((1, 40)).unwrap().task.unwrap().container.unwrap();
        assert!(c.capability_add.is_empty(), "capabilities are 1.41's");
        assert_eq!(c.sysctls.len(), 1);
        let t = at((1, 39)).unwrap().task.unwrap();
        assert!(
            t.container.unwrap().sysctls.is_empty(),
            "sysctls are 1.40's"
        );
        assert_eq!(t.placement.unwrap().max_replicas, 0);
        assert_eq!(
            t.networks[0].target, "new",
            "the task template's networks win"
        );
    }

    #[test]
    fn fields_shoal_lacks_are_refused_by_name_and_unknown_ones_ignored_as_dockerd() {
        // Go decoding: any case, and a field the API does not have is ignored.
        let spec = parse::<ServiceSpec>(
            br#"{"name":"web","taskTemplate":{"containerSpec":{"image":"x","Colour":"red",
                "healthcheck":{"test":["CMD","true"],"retries":2}}},
                "mode":{"global":{}},"updateconfig":{"order":"start-first"}}"#,
        )
        .unwrap()
        .into_proto()
        .unwrap();
        assert_eq!(spec.annotations.as_ref().unwrap().name, "web");
        assert!(matches!(spec.mode, Some(pb::service_spec::Mode::Global(_))));
        let container = spec.task.unwrap().container.unwrap();
        assert_eq!(container.healthcheck.unwrap().retries, 2);
        assert_eq!(
            spec.update.unwrap().order,
            pb::UpdateOrder::StartFirst as i32
        );
        // Jobs, with dockerd's defaults.
        let job = |body: &str| {
            parse::<ServiceSpec>(body.as_bytes())
                .unwrap()
                .into_proto()
                .map(|s| s.mode)
        };
        assert_eq!(
            job(r#"{"Name":"j","Mode":{"replicatedJob":{"TotalCompletions":5}}}"#).unwrap(),
            Some(pb::service_spec::Mode::ReplicatedJob(pb::ReplicatedJob {
                max_concurrent: 1,
                total_completions: 5
            }))
        );
        assert!(matches!(
            job(r#"{"Name":"j","Mode":{"GlobalJob":{}}}"#).unwrap(),
            Some(pb::service_spec::Mode::GlobalJob(_))
        ));
        let e = job(r#"{"Name":"j","Mode":{"GlobalJob":{},"Replicated":{}}}"#).unwrap_err();
        assert!(e.0.contains("give one of"), "{}", e.0);
        let wrong = parse::<ServiceSpec>(br#"{"TaskTemplate":{"ContainerSpec":{"Env":"A=1"}}}"#)
            .err()
            .unwrap();
        assert!(
            wrong.0.contains("TaskTemplate.ContainerSpec.Env"),
            "{}",
            wrong.0
        );
        let privileges = parse::<ServiceSpec>(br#"{"Name":"web","TaskTemplate":{"ContainerSpec":{"Image":"x","Privileges":{"CredentialSpec":{"File":"spec.json"}}}}}"#)
            .unwrap()
            .into_proto()
            .err()
            .unwrap();
        assert!(
            privileges.0.contains(
                "ContainerSpec.Privileges.CredentialSpec (Windows only) is not supported"
            ),
            "{}",
            privileges.0
        );
        let mountpoint = parse::<ServiceSpec>(br#"{"Name":"web","TaskTemplate":{"ContainerSpec":{"Image":"x","Mounts":[{"Type":"bind","Source":"/a","Target":"/b","BindOptions":{"CreateMountpoint":true}}]}}}"#)
            .unwrap()
            .into_proto()
            .err()
            .unwrap();
        assert!(
            mountpoint
                .0
                .contains("ContainerSpec.Mounts[/b].BindOptions.CreateMountpoint is not supported"),
            "{}",
            mountpoint.0
        );
        let bad = parse::<ServiceSpec>(b"{\"Name\": ").err().unwrap();
        assert!(bad.0.contains("malformed JSON"), "{}", bad.0);
        let condition = parse::<ServiceSpec>(
            br#"{"TaskTemplate":{"RestartPolicy":{"Condition":"sometimes"}}}"#,
        )
        .unwrap()
        .into_proto()
        .err()
        .unwrap();
        assert!(
            condition.0.contains("any, on-failure, none"),
            "{}",
            condition.0
        );
    }

    #[test]
    fn the_docker_clis_network_create_body_becomes_a_spec() {
        let body = br#"{"Driver":"overlay","Scope":"","IPAM":{"Driver":"default","Options":{},"Config":[]},"Internal":false,"Attachable":false,"Ingress":false,"ConfigOnly":false,"ConfigFrom":null,"Options":{},"Labels":{"a":"b"},"Name":"webnet","CheckDuplicate":true}"#;
        let spec = parse::<NetworkCreate>(body).unwrap().into_proto().unwrap();
        assert_eq!(spec.annotations.as_ref().unwrap().name, "webnet");
        assert_eq!(spec.annotations.unwrap().labels["a"], "b");
        let bridge = parse::<NetworkCreate>(br#"{"Name":"n","Driver":"bridge"}"#)
            .unwrap()
            .into_proto()
            .err()
            .unwrap();
        assert!(bridge.0.contains("overlay"), "{}", bridge.0);
    }

    #[test]
    fn a_swarm_setting_shoal_fixes_is_named_when_it_differs() {
        let have = serde_json::json!({"Dispatcher": {"HeartbeatPeriod": 5_000_000_000_u64}, "Name": "default"});
        let same = serde_json::json!({"dispatcher": {"HeartbeatPeriod": 5_000_000_000_u64}, "Name": "default", "Labels": {}, "TaskDefaults": {}});
        assert_eq!(first_difference(&same, &have, String::new()), None);
        let changed = serde_json::json!({"Dispatcher": {"HeartbeatPeriod": 1_000_000_000_u64}});
        assert_eq!(
            first_difference(&changed, &have, String::new()).as_deref(),
            Some("Dispatcher.HeartbeatPeriod")
        );
        // swarm init: what the docker CLI sends by default passes, the heartbeat is
        // honoured, and a setting shoal does not change is refused by name.
        let cli = br#"{"ListenAddr":"0.0.0.0:2377","Spec":{"Orchestration":{"TaskHistoryRetentionLimit":5},
            "Raft":{"SnapshotInterval":10000,"KeepOldSnapshots":0,"LogEntriesForSlowFollowers":500,"ElectionTick":0,"HeartbeatTick":0},
            "Dispatcher":{"HeartbeatPeriod":2000000000},"CAConfig":{"NodeCertExpiry":7776000000000000},
            "TaskDefaults":{},"EncryptionConfig":{"AutoLockManagers":false}}}"#;
        let init = parse::<SwarmInit>(cli).unwrap().into_proto().unwrap();
        assert_eq!(init.heartbeat_period_ms, 2000);
        let limit = br#"{"Spec":{"Orchestration":{"TaskHistoryRetentionLimit":10}}}"#;
        let init = parse::<SwarmInit>(limit).unwrap().into_proto().unwrap();
        assert_eq!(init.task_history_limit, Some(10));
        let raft = br#"{"Spec":{"Raft":{"SnapshotInterval":5000,"KeepOldSnapshots":2},"CAConfig":{"NodeCertExpiry":3600000000000}}}"#;
        let init = parse::<SwarmInit>(raft).unwrap().into_proto().unwrap();
        assert_eq!(
            (
                init.snapshot_interval,
                init.keep_old_snapshots,
                init.cert_expiry_secs
            ),
            (5000, 2, 3600)
        );
        let fixed = br#"{"Spec":{"Raft":{"ElectionTick":20}}}"#;
        let e = parse::<SwarmInit>(fixed).unwrap().into_proto().unwrap_err();
        assert!(e.0.starts_with("Spec.Raft.ElectionTick"), "{}", e.0);
        let external =
            br#"{"Spec":{"CAConfig":{"ExternalCAs":[{"Protocol":"cfssl","URL":"https://ca"}]}}}"#;
        let e = parse::<SwarmInit>(external)
            .unwrap()
            .into_proto()
            .unwrap_err();
        assert!(e.0.contains("ExternalCAs"), "{}", e.0);
        let key = br#"{"CAConfig":{"SigningCACert":"C","SigningCAKey":"K","ForceRotate":3}}"#;
        let (settings, signing_key) =
            swarm_settings(&serde_json::from_slice(key).unwrap(), "").unwrap();
        assert_eq!(
            (
                settings.signing_ca_cert.as_str(),
                signing_key.as_str(),
                settings.force_rotate
            ),
            ("C", "K", 3)
        );
    }

    #[test]
    fn secret_and_config_references_and_bodies_read_as_dockerd_reads_them() {
        let body = br#"{"Name":"web","TaskTemplate":{"ContainerSpec":{"Image":"x",
            "Secrets":[{"File":{"Name":"db","UID":"0","GID":"0","Mode":292},"SecretID":"s1","SecretName":"db"}],
            "Configs":[{"File":{"Name":"/etc/app.conf","UID":"0","GID":"0","Mode":292},"ConfigID":"c1","ConfigName":"app"}]}}}"#;
        let spec = parse::<ServiceSpec>(body).unwrap().into_proto().unwrap();
        let c = spec.task.unwrap().container.unwrap();
        assert_eq!(
            (
                c.secrets[0].secret_id.as_str(),
                c.secrets[0].file.as_ref().unwrap().mode
            ),
            ("s1", 292)
        );
        assert_eq!(c.configs[0].file.as_ref().unwrap().name, "/etc/app.conf");
        let runtime = br#"{"Name":"web","TaskTemplate":{"ContainerSpec":{"Image":"x",
            "Configs":[{"Runtime":{},"ConfigID":"c1","ConfigName":"cred"}]}}}"#;
        let e = parse::<ServiceSpec>(runtime)
            .unwrap()
            .into_proto()
            .unwrap_err();
        assert!(e.0.contains("Configs.Runtime"), "{}", e.0);

        use super::super::secrets::FileSpec;
        let secret = parse::<FileSpec>(br#"{"Name":"db","Data":"aHVzaA==","Labels":{"a":"b"}}"#)
            .unwrap()
            .into_secret()
            .unwrap();
        assert_eq!(secret.data, b"hush");
        assert_eq!(secret.annotations.unwrap().labels["a"], "b");
        let bad = parse::<FileSpec>(br#"{"Name":"db","Data":"not base64!"}"#)
            .unwrap()
            .into_secret()
            .unwrap_err();
        assert!(bad.0.contains("not base64"), "{}", bad.0);
    }
}

//! Compose files (version 3.x) turned into what `stack deploy` creates, as the docker CLI
//! converts them: names prefixed with `<stack>_`, everything labelled
//! com.docker.stack.namespace, each service reachable by its short name on its networks.
//! Keys the file may hold but shoal cannot honour are refused by name; the few that
//! swarm itself ignores (build, depends_on, ...) are reported and skipped, as docker does.
//! Every error comes out before anything is created.

use std::collections::BTreeMap;

use crate::error::{At, Result};
use crate::flags::one_of;
use crate::invalid;
use serde::Deserialize;
use serde_norway::Value;
use shoal_proto as pb;
use shoal_proto::service_spec::Mode;

use crate::compose_container::{
    ContainerKeys, Hosts, Logging, OneOrMany, UlimitValue, VolumeDecl, Volumes,
};
use crate::compose_secrets::{Declared, FileDecl, FileRef, StackFile};
use crate::flags::{parse_bytes, parse_cpus, parse_port};

pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";
const IMAGE_LABEL: &str = "com.docker.stack.image";

/// What `stack deploy` makes of a compose file.
#[derive(Debug)]
pub struct Stack {
    pub networks: Vec<StackNetwork>,
    pub services: Vec<pb::ServiceSpec>,
    /// The secrets and configs the services use, made by the stack or existing.
    pub secrets: Vec<StackFile>,
    pub configs: Vec<StackFile>,
    /// Keys swarm ignores, found in the file: "services.web.build", ...
    pub ignored: Vec<String>,
}

#[derive(Debug)]
pub enum StackNetwork {
    /// Created by the stack unless it exists.
    Owned(pb::NetworkSpec),
    /// Must exist already.
    External(String),
}

/// A known compose key shoal does not implement; an error when present.
type Refused = Option<Value>;
/// A compose key swarm ignores (docker warns and goes on).
type Ignored = Option<Value>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: Option<Value>,
    #[serde(default)]
    services: BTreeMap<String, Service>,
    #[serde(default)]
    networks: BTreeMap<String, Option<Network>>,
    #[serde(default)]
    volumes: BTreeMap<String, Option<VolumeDecl>>,
    #[serde(default)]
    secrets: BTreeMap<String, FileDecl>,
    #[serde(default)]
    configs: BTreeMap<String, FileDecl>,
    name: Ignored,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Service {
    image: Option<String>,
    command: Option<Words>,
    entrypoint: Option<Words>,
    environment: Option<Pairs>,
    /// "4000:80" strings, or mappings (LongPort).
    #[serde(default)]
    ports: Vec<Value>,
    networks: Option<ServiceNetworks>,
    deploy: Option<Deploy>,
    hostname: Option<String>,
    user: Option<String>,
    working_dir: Option<String>,
    stop_signal: Option<String>,
    stop_grace_period: Option<String>,
    healthcheck: Option<Healthcheck>,
    labels: Option<Pairs>,
    // swarm ignores these
    build: Ignored,
    container_name: Ignored,
    depends_on: Ignored,
    links: Ignored,
    external_links: Ignored,
    restart: Ignored,
    expose: Ignored,
    // what the container engine gives the task (compose_container.rs)
    #[serde(default)]
    volumes: Vec<Value>,
    #[serde(default)]
    cap_add: Vec<String>,
    #[serde(default)]
    cap_drop: Vec<String>,
    dns: Option<OneOrMany>,
    dns_search: Option<OneOrMany>,
    #[serde(default)]
    dns_opt: Vec<String>,
    extra_hosts: Option<Hosts>,
    logging: Option<Logging>,
    #[serde(default)]
    read_only: bool,
    init: Option<bool>,
    #[serde(default)]
    tty: bool,
    #[serde(default)]
    stdin_open: bool,
    sysctls: Option<Pairs>,
    #[serde(default)]
    ulimits: BTreeMap<String, UlimitValue>,
    #[serde(default)]
    secrets: Vec<FileRef>,
    #[serde(default)]
    configs: Vec<FileRef>,
    // shoal cannot honour these
    env_file: Refused,
    devices: Refused,
    privileged: Refused,
    tmpfs: Refused,
    network_mode: Refused,
    pid: Refused,
    ipc: Refused,
    security_opt: Refused,
    shm_size: Refused,
    userns_mode: Refused,
    isolation: Refused,
}

/// A string (split as a shell would) or a list.
#[derive(Deserialize)]
#[serde(untagged)]
enum Words {
    Line(String),
    List(Vec<String>),
}

/// `["K=V", ...]` or `{K: V, ...}`.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(crate) enum Pairs {
    List(Vec<String>),
    Map(BTreeMap<String, Option<Value>>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongPort {
    target: u32,
    published: Option<Value>,
    protocol: Option<String>,
    mode: Option<String>,
    host_ip: Refused,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ServiceNetworks {
    List(Vec<String>),
    Map(BTreeMap<String, Option<ServiceNetwork>>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceNetwork {
    #[serde(default)]
    aliases: Vec<String>,
    ipv4_address: Refused,
    ipv6_address: Refused,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Deploy {
    mode: Option<String>,
    replicas: Option<u64>,
    resources: Option<DeployResources>,
    restart_policy: Option<RestartPolicy>,
    placement: Option<Placement>,
    update_config: Option<UpdateConfig>,
    rollback_config: Option<UpdateConfig>,
    endpoint_mode: Option<String>,
    labels: Option<Pairs>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployResources {
    limits: Option<ResourceAmounts>,
    reservations: Option<ResourceAmounts>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceAmounts {
    cpus: Option<Value>,
    memory: Option<Value>,
    pids: Refused,
    devices: Refused,
    generic_resources: Refused,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RestartPolicy {
    condition: Option<String>,
    delay: Option<String>,
    max_attempts: Option<u64>,
    window: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Placement {
    #[serde(default)]
    constraints: Vec<String>,
    #[serde(default)]
    preferences: Vec<Preference>,
    max_replicas_per_node: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Preference {
    spread: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateConfig {
    parallelism: Option<u64>,
    delay: Option<String>,
    failure_action: Option<String>,
    monitor: Option<String>,
    max_failure_ratio: Option<f32>,
    order: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Healthcheck {
    test: Option<Words>,
    interval: Option<String>,
    timeout: Option<String>,
    start_period: Option<String>,
    retries: Option<i32>,
    #[serde(default)]
    disable: bool,
    start_interval: Refused,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Network {
    driver: Option<String>,
    #[serde(default)]
    driver_opts: BTreeMap<String, String>,
    #[serde(default)]
    attachable: bool,
    external: Option<External>,
    name: Option<String>,
    labels: Option<Pairs>,
    ipam: Option<Ipam>,
    internal: Refused,
    enable_ipv6: Refused,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum External {
    Flag(bool),
    Named { name: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Ipam {
    driver: Option<String>,
    #[serde(default)]
    config: Vec<IpamConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IpamConfig {
    subnet: String,
    gateway: Option<String>,
}

/// Reads and converts `text` (the compose file) for stack `stack`; `env` resolves
/// ${VARIABLES}. Returns the stack and warnings for unset variables.
pub fn load(
    text: &str,
    stack: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Stack, Vec<String>)> {
    if stack.is_empty()
        || !stack
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(invalid!(
            "invalid stack name {stack:?}: use letters, digits, '-', '_' or '.'"
        ));
    }
    let (text, unset) = interpolate(text, env)?;
    let mut value: Value =
        serde_norway::from_str(&text).at("the compose file is not valid YAML")?;
    value
        .apply_merge()
        .at("the compose file's `<<` merge keys")?;
    drop_extensions(&mut value);
    let file: File = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        invalid!(
            "{}: {}",
            if path == "." {
                "compose file"
            } else {
                path.as_str()
            },
            e.into_inner()
        )
    })?;
    let warnings = unset
        .into_iter()
        .map(|v| format!("The {v} variable is not set. Defaulting to a blank string."))
        .collect();
    Ok((convert(file, stack)?, warnings))
}

/// `x-` keys are the compose format's extension fields: free for anchors, never read.
fn drop_extensions(v: &mut Value) {
    if let Value::Mapping(m) = v {
        m.retain(|k, _| !k.as_str().is_some_and(|k| k.starts_with("x-")));
        if let Some(Value::Mapping(services)) = m.get_mut("services") {
            for (_, s) in services.iter_mut() {
                if let Value::Mapping(s) = s {
                    s.retain(|k, _| !k.as_str().is_some_and(|k| k.starts_with("x-")));
                }
            }
        }
    }
}

/// `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `$$`.
fn interpolate(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<(String, Vec<String>)> {
    let mut out = String::with_capacity(text.len());
    let mut unset = Vec::new();
    let mut chars = text.char_indices().peekable();
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    while let Some((i, c)) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek().map(|&(_, c)| c) {
            Some('$') => {
                chars.next();
                out.push('$');
            }
            Some('{') => {
                let end = text[i..]
                    .find('}')
                    .ok_or_else(|| invalid!("unterminated ${{ in the compose file"))?
                    + i;
                let inner = &text[i + 2..end];
                while chars.peek().is_some_and(|&(j, _)| j <= end) {
                    chars.next();
                }
                let name_end = inner.find(|c: char| !is_name(c)).unwrap_or(inner.len());
                let (name, rest) = inner.split_at(name_end);
                if name.is_empty() {
                    return Err(invalid!(
                        "invalid interpolation ${{{inner}}}: name a variable"
                    ));
                }
                let value = env(name);
                let resolved = if let Some(default) = rest.strip_prefix(":-") {
                    value
                        .filter(|v| !v.is_empty())
                        .unwrap_or_else(|| default.to_string())
                } else if let Some(default) = rest.strip_prefix('-') {
                    value.unwrap_or_else(|| default.to_string())
                } else if let Some(why) = rest.strip_prefix(":?").or_else(|| rest.strip_prefix('?'))
                {
                    value.filter(|v| !v.is_empty()).ok_or_else(|| {
                        invalid!("required variable {name} is missing a value: {why}")
                    })?
                } else if rest.is_empty() {
                    value.unwrap_or_else(|| {
                        unset.push(name.to_string());
                        String::new()
                    })
                } else {
                    return Err(invalid!(
                        "invalid interpolation ${{{inner}}}: use ${{NAME}}, ${{NAME:-default}} or ${{NAME:?error}}"
                    ));
                };
                out.push_str(&resolved);
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let mut name = String::new();
                while let Some(&(_, c)) = chars.peek().filter(|(_, c)| is_name(*c)) {
                    name.push(c);
                    chars.next();
                }
                out.push_str(&env(&name).unwrap_or_else(|| {
                    unset.push(name.clone());
                    String::new()
                }));
            }
            // `$(cmd)` and the like are for the shell inside the task: kept as written.
            _ => out.push('$'),
        }
    }
    unset.dedup();
    Ok((out, unset))
}

fn refuse(path: &str, fields: &[(&str, &Refused)]) -> Result<()> {
    for (name, v) in fields {
        if v.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(invalid!(
                "{path}.{name} is not supported by shoal: remove it from the compose file"
            ));
        }
    }
    Ok(())
}

pub(crate) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Key/value pairs as a map; `what` names them in errors.
pub(crate) fn pairs(p: Option<Pairs>, what: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    match p {
        None => {}
        Some(Pairs::List(items)) => {
            for item in items {
                let (k, v) = item.split_once('=').unwrap_or((item.as_str(), ""));
                out.insert(k.to_string(), v.to_string());
            }
        }
        Some(Pairs::Map(m)) => {
            for (k, v) in m {
                let v = match v {
                    None => String::new(),
                    Some(v) => scalar(&v)
                        .ok_or_else(|| invalid!("{what}.{k}: give a string, number or boolean"))?,
                };
                out.insert(k, v);
            }
        }
    }
    Ok(out)
}

/// Splits a command line as a POSIX shell would (quotes and backslashes).
fn shell_words(line: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(invalid!("unterminated quote in {line:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(invalid!("unterminated quote in {line:?}")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(invalid!("unterminated quote in {line:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

fn words(w: Option<Words>) -> Result<Vec<String>> {
    match w {
        None => Ok(vec![]),
        Some(Words::List(l)) => Ok(l),
        Some(Words::Line(l)) => shell_words(&l),
    }
}

fn nanos(path: &str, d: Option<&str>) -> Result<Option<i64>> {
    d.map(|d| {
        crate::duration::parse(d)
            .map(|d| d.as_nanos() as i64)
            .map_err(|e| invalid!("{path}: {e}"))
    })
    .transpose()
}

fn update_config(path: &str, c: UpdateConfig) -> Result<pb::UpdateConfig> {
    use pb::{UpdateFailureAction as A, UpdateOrder as O};
    Ok(pb::UpdateConfig {
        parallelism: c.parallelism.unwrap_or(1),
        delay_nanos: nanos(&format!("{path}.delay"), c.delay.as_deref())?.unwrap_or(0),
        failure_action: one_of::<A>(
            &format!("{path}.failure_action"),
            c.failure_action.as_deref().unwrap_or("pause"),
        )? as i32,
        monitor_nanos: nanos(&format!("{path}.monitor"), c.monitor.as_deref())?
            .unwrap_or(5_000_000_000),
        max_failure_ratio: c.max_failure_ratio.unwrap_or(0.0),
        order: one_of::<O>(
            &format!("{path}.order"),
            c.order.as_deref().unwrap_or("stop-first"),
        )? as i32,
    })
}

fn ports(path: &str, list: Vec<Value>) -> Result<Vec<pb::PortConfig>> {
    let mut out = Vec::new();
    for p in list {
        match p {
            Value::Mapping(_) => {
                let l: LongPort =
                    serde_norway::from_value(p).map_err(|e| invalid!("{path}: {e}"))?;
                refuse(path, &[("host_ip", &l.host_ip)])?;
                let published = match l.published.as_ref() {
                    None => 0,
                    Some(v) => scalar(v)
                        .and_then(|s| s.parse::<u32>().ok())
                        .ok_or_else(|| invalid!("{path}.published: give a port number"))?,
                };
                let mut spec = format!("target={}", l.target);
                if published > 0 {
                    spec.push_str(&format!(",published={published}"));
                }
                if let Some(proto) = &l.protocol {
                    spec.push_str(&format!(",protocol={proto}"));
                }
                if let Some(mode) = &l.mode {
                    spec.push_str(&format!(",mode={mode}"));
                }
                out.push(parse_port(&spec).at(path)?);
            }
            short => {
                let s = scalar(&short).ok_or_else(|| {
                    invalid!("{path}: a port is \"PUBLISHED:TARGET\" or a mapping with target:")
                })?;
                out.extend(short_ports(path, &s)?);
            }
        }
    }
    Ok(out)
}

/// "4000:80", "80", "4000:80/udp", "8000-8001:80-81".
fn short_ports(path: &str, s: &str) -> Result<Vec<pb::PortConfig>> {
    let (ports, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    let parts: Vec<&str> = ports.split(':').collect();
    let (published, target) = match parts.as_slice() {
        [t] => (None, *t),
        [p, t] => (Some(*p), *t),
        _ => {
            return Err(invalid!(
                "{path}: {s:?}: binding a published port to one host address is not supported by swarm services; use PUBLISHED:TARGET"
            ));
        }
    };
    let range = |r: &str| -> Result<(u32, u32)> {
        let (a, b) = r.split_once('-').unwrap_or((r, r));
        let n = |x: &str| {
            x.trim()
                .parse::<u32>()
                .map_err(|_| invalid!("{path}: {s:?}: {x:?} is not a port number"))
        };
        Ok((n(a)?, n(b)?))
    };
    let (t0, t1) = range(target)?;
    let published = published.map(range).transpose()?;
    if let Some((p0, p1)) = published
        && p1 - p0 != t1 - t0
    {
        return Err(invalid!(
            "{path}: {s:?}: the published and target ranges differ in length"
        ));
    }
    (0..=t1.saturating_sub(t0))
        .map(|i| {
            let spec = match published {
                Some((p0, _)) => format!("{}:{}/{proto}", p0 + i, t0 + i),
                None => format!("{}/{proto}", t0 + i),
            };
            parse_port(&spec).at(path)
        })
        .collect()
}

fn convert(file: File, stack: &str) -> Result<Stack> {
    if let Some(v) = &file.version {
        let v = scalar(v).unwrap_or_default();
        if !(v == "3" || v.starts_with("3.")) {
            return Err(invalid!(
                "version: {v:?}: stack deploy reads compose files of version 3.x"
            ));
        }
    }
    let mut ignored = Vec::new();
    if file.name.is_some() {
        ignored.push("name".to_string());
    }
    if file.services.is_empty() {
        return Err(invalid!("services: the compose file defines no service"));
    }
    let namespace = BTreeMap::from([(NAMESPACE_LABEL.to_string(), stack.to_string())]);
    let volumes = Volumes {
        declared: &file.volumes,
        stack,
        namespace: &namespace,
    };
    let secrets = Declared {
        word: "secrets",
        declared: &file.secrets,
        stack,
        namespace: &namespace,
    };
    let configs = Declared {
        word: "configs",
        declared: &file.configs,
        stack,
        namespace: &namespace,
    };
    // Only what some service uses is made or looked for, as docker stack deploy.
    let (mut used_secrets, mut used_configs) = (Vec::new(), Vec::new());
    // Every network the services use, by its key in the file, with its cluster name.
    let mut used: BTreeMap<String, String> = BTreeMap::new();
    let mut networks = Vec::new();
    let mut network_name = |key: &str, networks: &mut Vec<StackNetwork>| -> Result<String> {
        if let Some(name) = used.get(key) {
            return Ok(name.clone());
        }
        let declared = match file.networks.get(key) {
            Some(n) => n.as_ref(),
            None if key == "default" => None,
            None => {
                return Err(invalid!(
                    "a service uses network {key:?}, which the compose file does not declare under networks"
                ));
            }
        };
        let path = format!("networks.{key}");
        let name = match declared.and_then(|n| n.external.as_ref()) {
            Some(External::Named { name }) => {
                networks.push(StackNetwork::External(name.clone()));
                name.clone()
            }
            Some(External::Flag(true)) => {
                let name = declared
                    .and_then(|n| n.name.clone())
                    .unwrap_or_else(|| key.to_string());
                networks.push(StackNetwork::External(name.clone()));
                name
            }
            _ => {
                let name = declared
                    .and_then(|n| n.name.clone())
                    .unwrap_or_else(|| format!("{stack}_{key}"));
                networks.push(StackNetwork::Owned(network_spec(
                    &path, &name, declared, &namespace,
                )?));
                name
            }
        };
        used.insert(key.to_string(), name.clone());
        Ok(name)
    };
    let mut services = Vec::new();
    for (key, svc) in file.services {
        let path = format!("services.{key}");
        for (name, v) in [
            ("build", &svc.build),
            ("container_name", &svc.container_name),
            ("depends_on", &svc.depends_on),
            ("links", &svc.links),
            ("external_links", &svc.external_links),
            ("restart", &svc.restart),
            ("expose", &svc.expose),
        ] {
            if v.is_some() {
                ignored.push(format!("{path}.{name}"));
            }
        }
        refuse(
            &path,
            &[
                ("env_file", &svc.env_file),
                ("devices", &svc.devices),
                ("privileged", &svc.privileged),
                ("tmpfs", &svc.tmpfs),
                ("network_mode", &svc.network_mode),
                ("pid", &svc.pid),
                ("ipc", &svc.ipc),
                ("security_opt", &svc.security_opt),
                ("shm_size", &svc.shm_size),
                ("userns_mode", &svc.userns_mode),
                ("isolation", &svc.isolation),
            ],
        )?;
        let attachments = match svc.networks {
            None => vec![("default".to_string(), vec![])],
            Some(ServiceNetworks::List(l)) => l.into_iter().map(|n| (n, vec![])).collect(),
            Some(ServiceNetworks::Map(m)) => m
                .into_iter()
                .map(|(n, s)| {
                    let aliases = match s {
                        Some(s) => {
                            refuse(
                                &format!("{path}.networks.{n}"),
                                &[
                                    ("ipv4_address", &s.ipv4_address),
                                    ("ipv6_address", &s.ipv6_address),
                                ],
                            )?;
                            s.aliases
                        }
                        None => vec![],
                    };
                    Ok((n, aliases))
                })
                .collect::<Result<Vec<_>>>()?,
        };
        let mut task_networks = Vec::new();
        for (net, aliases) in attachments {
            let target = network_name(&net, &mut networks)?;
            let mut all = vec![key.clone()];
            all.extend(aliases.into_iter().filter(|a| a != &key));
            task_networks.push(pb::NetworkAttachmentConfig {
                target,
                aliases: all,
            });
        }
        let image = svc
            .image
            .ok_or_else(|| invalid!("{path}.image: every service needs an image"))?;
        let env: Vec<String> = pairs(svc.environment, &format!("{path}.environment"))?
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut container_labels = pairs(svc.labels, &format!("{path}.labels"))?;
        container_labels.extend(namespace.clone());
        let healthcheck = match svc.healthcheck {
            None => None,
            Some(h) => {
                let hp = format!("{path}.healthcheck");
                refuse(&hp, &[("start_interval", &h.start_interval)])?;
                let test = if h.disable {
                    vec!["NONE".to_string()]
                } else {
                    match h.test {
                        Some(Words::Line(l)) => vec!["CMD-SHELL".to_string(), l],
                        Some(Words::List(l)) => l,
                        None => vec![],
                    }
                };
                Some(pb::HealthConfig {
                    test,
                    interval_nanos: nanos(&format!("{hp}.interval"), h.interval.as_deref())?
                        .unwrap_or(0),
                    timeout_nanos: nanos(&format!("{hp}.timeout"), h.timeout.as_deref())?
                        .unwrap_or(0),
                    start_period_nanos: nanos(
                        &format!("{hp}.start_period"),
                        h.start_period.as_deref(),
                    )?
                    .unwrap_or(0),
                    retries: h.retries.unwrap_or(0),
                })
            }
        };
        let mut container = pb::ContainerSpec {
            image: image.clone(),
            command: words(svc.entrypoint)?,
            args: words(svc.command)?,
            env,
            hostname: svc.hostname.unwrap_or_default(),
            user: svc.user.unwrap_or_default(),
            dir: svc.working_dir.unwrap_or_default(),
            healthcheck,
            stop_signal: svc.stop_signal.unwrap_or_default(),
            stop_grace_period_nanos: nanos(
                &format!("{path}.stop_grace_period"),
                svc.stop_grace_period.as_deref(),
            )?
            .unwrap_or(0),
            labels: container_labels.into_iter().collect(),
            ..Default::default()
        };
        let keys = ContainerKeys {
            volumes: svc.volumes,
            cap_add: svc.cap_add,
            cap_drop: svc.cap_drop,
            dns: svc.dns,
            dns_search: svc.dns_search,
            dns_opt: svc.dns_opt,
            extra_hosts: svc.extra_hosts,
            logging: svc.logging,
            read_only: svc.read_only,
            init: svc.init,
            tty: svc.tty,
            stdin_open: svc.stdin_open,
            sysctls: pairs(svc.sysctls, &format!("{path}.sysctls"))?,
            ulimits: svc.ulimits,
        };
        let log_driver = keys.apply(&path, &volumes, &mut container)?;
        for (name, file) in secrets.references(&path, svc.secrets)? {
            used_secrets.push(name.clone());
            container.secrets.push(pb::SecretReference {
                secret_name: name,
                file: Some(file),
                ..Default::default()
            });
        }
        for (name, file) in configs.references(&path, svc.configs)? {
            used_configs.push(name.clone());
            container.configs.push(pb::ConfigReference {
                config_name: name,
                file: Some(file),
                ..Default::default()
            });
        }
        let d = svc.deploy.unwrap_or_default();
        let dp = format!("{path}.deploy");
        let mut labels = pairs(d.labels, &format!("{dp}.labels"))?;
        labels.extend(namespace.clone());
        labels.insert(IMAGE_LABEL.to_string(), image);
        let mode = match d.mode.as_deref().unwrap_or("replicated") {
            "replicated" => Mode::Replicated(pb::ReplicatedService {
                replicas: d.replicas.unwrap_or(1),
            }),
            "global" if d.replicas.is_some() => {
                return Err(invalid!(
                    "{dp}.replicas: a global service runs one task per node; drop replicas"
                ));
            }
            "global" => Mode::Global(pb::GlobalService {}),
            // Compose's jobs: replicas are the completions, all at once (as docker
            // stack deploy converts them).
            "replicated-job" => Mode::ReplicatedJob(pb::ReplicatedJob {
                max_concurrent: d.replicas.unwrap_or(1),
                total_completions: d.replicas.unwrap_or(1),
            }),
            "global-job" if d.replicas.is_some() => {
                return Err(invalid!(
                    "{dp}.replicas: a global job runs one task per node; drop replicas"
                ));
            }
            "global-job" => Mode::GlobalJob(pb::GlobalJob {}),
            other => {
                return Err(invalid!(
                    "{dp}.mode: invalid value {other:?}: use replicated, global, replicated-job or global-job"
                ));
            }
        };
        let resources = d
            .resources
            .map(|r| resources(&format!("{dp}.resources"), r))
            .transpose()?;
        let restart = restart_policy(&format!("{dp}.restart_policy"), d.restart_policy)?;
        let placement = d.placement.map(|p| pb::Placement {
            constraints: p.constraints,
            preferences: p
                .preferences
                .into_iter()
                .map(|p| pb::SpreadOver {
                    spread_descriptor: p.spread,
                })
                .collect(),
            max_replicas: p.max_replicas_per_node.unwrap_or(0),
            platforms: vec![],
        });
        let update = d
            .update_config
            .map(|c| update_config(&format!("{dp}.update_config"), c))
            .transpose()?;
        let rollback = d
            .rollback_config
            .map(|c| update_config(&format!("{dp}.rollback_config"), c))
            .transpose()?;
        use pb::EndpointMode as E;
        let endpoint_mode = one_of::<E>(
            &format!("{dp}.endpoint_mode"),
            d.endpoint_mode.as_deref().unwrap_or("vip"),
        )?;
        services.push(pb::ServiceSpec {
            annotations: Some(pb::Annotations {
                name: format!("{stack}_{key}"),
                labels: labels.into_iter().collect(),
            }),
            task: Some(pb::TaskSpec {
                container: Some(container),
                resources,
                restart: Some(restart),
                placement,
                networks: task_networks,
                force_update: 0,
                attachment: None,
                log_driver,
            }),
            mode: Some(mode),
            update,
            rollback,
            endpoint: Some(pb::EndpointSpec {
                mode: endpoint_mode as i32,
                ports: ports(&format!("{path}.ports"), svc.ports)?,
            }),
        });
    }
    let used = |plan: Vec<StackFile>, used: &[String]| -> Vec<StackFile> {
        plan.into_iter()
            .filter(|f| used.iter().any(|u| u == f.name()))
            .collect()
    };
    Ok(Stack {
        networks,
        services,
        secrets: used(secrets.plan()?, &used_secrets),
        configs: used(configs.plan()?, &used_configs),
        ignored,
    })
}

/// The restart policy, with swarm's defaults (any condition, 5 s delay) where unset.
fn restart_policy(path: &str, r: Option<RestartPolicy>) -> Result<pb::RestartPolicy> {
    let r = r.unwrap_or_default();
    use pb::RestartCondition as C;
    Ok(pb::RestartPolicy {
        condition: one_of::<C>(
            &format!("{path}.condition"),
            r.condition.as_deref().unwrap_or("any"),
        )? as i32,
        delay_nanos: nanos(&format!("{path}.delay"), r.delay.as_deref())?.unwrap_or(5_000_000_000),
        max_attempts: r.max_attempts.unwrap_or(0),
        window_nanos: nanos(&format!("{path}.window"), r.window.as_deref())?.unwrap_or(0),
    })
}

fn resources(path: &str, r: DeployResources) -> Result<pb::ResourceRequirements> {
    let amounts = |what: &str, a: Option<ResourceAmounts>| -> Result<Option<pb::ResourceValues>> {
        let Some(a) = a else { return Ok(None) };
        let p = format!("{path}.{what}");
        refuse(
            &p,
            &[
                // Reservations have no pids: only limits do.
                ("pids", if what == "limits" { &None } else { &a.pids }),
                ("devices", &a.devices),
                ("generic_resources", &a.generic_resources),
            ],
        )?;
        // A scalar parsed by `parse`, named `{p}.{field}` in errors.
        let amount = |field: &str, v: Option<&Value>, parse: fn(&str) -> Result<i64>, example| {
            v.map(|v| {
                scalar(v)
                    .ok_or_else(|| invalid!("{p}.{field}: give {example}"))
                    .and_then(|s| parse(&s).at(format!("{p}.{field}")))
            })
            .transpose()
        };
        let cpus = amount("cpus", a.cpus.as_ref(), parse_cpus, "a number such as 0.5")?;
        let memory = amount(
            "memory",
            a.memory.as_ref(),
            parse_bytes,
            "a size such as 50M",
        )?;
        let pids = match &a.pids {
            None => 0,
            Some(v) => scalar(v)
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| invalid!("{p}.pids: give a whole number of processes"))?,
        };
        Ok(Some(pb::ResourceValues {
            nano_cpus: cpus.unwrap_or(0),
            memory_bytes: memory.unwrap_or(0),
            pids,
        }))
    };
    Ok(pb::ResourceRequirements {
        limits: amounts("limits", r.limits)?,
        reservations: amounts("reservations", r.reservations)?,
    })
}

fn network_spec(
    path: &str,
    name: &str,
    n: Option<&Network>,
    namespace: &BTreeMap<String, String>,
) -> Result<pb::NetworkSpec> {
    let mut labels = BTreeMap::new();
    let mut spec = pb::NetworkSpec {
        driver: "overlay".into(),
        ..Default::default()
    };
    if let Some(n) = n {
        refuse(
            path,
            &[("internal", &n.internal), ("enable_ipv6", &n.enable_ipv6)],
        )?;
        if !matches!(n.driver.as_deref(), None | Some("overlay")) {
            return Err(invalid!(
                "{path}.driver: {:?}: a stack's networks are overlay networks",
                n.driver.as_deref().unwrap_or("")
            ));
        }
        labels = pairs(n.labels.clone(), &format!("{path}.labels"))?;
        spec.options = n.driver_opts.clone().into_iter().collect();
        spec.attachable = n.attachable;
        if let Some(ipam) = &n.ipam {
            if !matches!(ipam.driver.as_deref(), None | Some("default")) {
                return Err(invalid!(
                    "{path}.ipam.driver: only the default IPAM driver exists in shoal"
                ));
            }
            spec.ipam = ipam
                .config
                .iter()
                .map(|c| pb::IpamConfig {
                    subnet: c.subnet.clone(),
                    gateway: c.gateway.clone().unwrap_or_default(),
                })
                .collect();
        }
    }
    labels.extend(namespace.clone());
    spec.annotations = Some(pb::Annotations {
        name: name.to_string(),
        labels: labels.into_iter().collect(),
    });
    Ok(spec)
}

#[cfg(test)]
#[path = "compose_tests.rs"]
mod tests;

//! The compose keys for what a container engine gives a task (volumes, cap_add, dns,
//! extra_hosts, logging, init, read_only, sysctls, tty, ...), converted as the docker
//! CLI's `stack deploy` converts them: named volumes become `<stack>_<name>` unless
//! external, and carry the stack's label.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_norway::Value;
use shoal_proto as pb;

use crate::error::Result;
use crate::flags::{capability, host_line, parse_bytes};
use crate::invalid;

/// A string or a list of strings (`dns: 8.8.8.8` or `dns: [8.8.8.8, 1.1.1.1]`).
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn list(v: Option<OneOrMany>) -> Vec<String> {
        match v {
            None => vec![],
            Some(OneOrMany::One(s)) => vec![s],
            Some(OneOrMany::Many(l)) => l,
        }
    }
}

/// `["host:ip", ...]` or `{host: ip, ...}`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Hosts {
    List(Vec<String>),
    Map(BTreeMap<String, String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Logging {
    driver: Option<String>,
    #[serde(default)]
    options: BTreeMap<String, String>,
}

/// A service's `volumes:` entry in the long syntax.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongVolume {
    r#type: String,
    source: Option<String>,
    target: String,
    #[serde(default)]
    read_only: bool,
    consistency: Option<String>,
    bind: Option<LongBind>,
    volume: Option<LongVolumeOptions>,
    tmpfs: Option<LongTmpfs>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongBind {
    propagation: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongVolumeOptions {
    #[serde(default)]
    nocopy: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongTmpfs {
    size: Option<Value>,
    mode: Option<u32>,
}

/// A top-level `volumes:` entry.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct VolumeDecl {
    driver: Option<String>,
    #[serde(default)]
    driver_opts: BTreeMap<String, String>,
    external: Option<Value>,
    name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// `nofile: 1024` (soft and hard) or `nofile: {soft: 1024, hard: 2048}`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum UlimitValue {
    Both(i64),
    Pair { soft: i64, hard: i64 },
}

/// A service's engine keys, moved out of the service as read.
pub(crate) struct ContainerKeys {
    pub volumes: Vec<Value>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub dns: Option<OneOrMany>,
    pub dns_search: Option<OneOrMany>,
    pub dns_opt: Vec<String>,
    pub extra_hosts: Option<Hosts>,
    pub logging: Option<Logging>,
    pub read_only: bool,
    pub init: Option<bool>,
    pub tty: bool,
    pub stdin_open: bool,
    pub sysctls: BTreeMap<String, String>,
    pub ulimits: BTreeMap<String, UlimitValue>,
}

/// The stack's view of its declared volumes.
pub(crate) struct Volumes<'a> {
    pub declared: &'a BTreeMap<String, Option<VolumeDecl>>,
    pub stack: &'a str,
    pub namespace: &'a BTreeMap<String, String>,
}

impl Volumes<'_> {
    /// The volume's name on the nodes and its options, from its key in the file.
    fn named(&self, path: &str, key: &str, no_copy: bool) -> Result<(String, pb::VolumeOptions)> {
        let Some(decl) = self.declared.get(key) else {
            return Err(invalid!(
                "{path}: volume {key:?} is not declared under the top-level volumes (a host path must be absolute)"
            ));
        };
        let decl = decl.as_ref();
        let external = match decl.and_then(|d| d.external.as_ref()) {
            None | Some(Value::Bool(false)) => None,
            Some(Value::Bool(true)) => Some(decl.and_then(|d| d.name.clone())),
            Some(Value::Mapping(m)) => Some(
                m.get("name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| decl.and_then(|d| d.name.clone())),
            ),
            Some(_) => {
                return Err(invalid!(
                    "volumes.{key}.external: give true, false or {{name: NAME}}"
                ));
            }
        };
        if let Some(name) = external {
            // An external volume exists already: used as it is.
            let options = pb::VolumeOptions {
                no_copy,
                ..Default::default()
            };
            return Ok((name.unwrap_or_else(|| key.to_string()), options));
        }
        let d = decl.cloned().unwrap_or_default();
        let mut labels = d.labels;
        labels.extend(self.namespace.clone());
        let name = d.name.unwrap_or_else(|| format!("{}_{key}", self.stack));
        let options = pb::VolumeOptions {
            no_copy,
            labels: labels.into_iter().collect(),
            driver: d.driver.map(|name| pb::Driver {
                name,
                options: d.driver_opts.into_iter().collect(),
            }),
        };
        Ok((name, options))
    }

    /// `SOURCE:TARGET[:MODE]`, `TARGET` (an anonymous volume), or the long syntax.
    fn mount(&self, path: &str, v: Value) -> Result<pb::Mount> {
        match v {
            Value::String(s) => self.short(path, &s),
            Value::Mapping(_) => {
                let l: LongVolume =
                    serde_norway::from_value(v).map_err(|e| invalid!("{path}: {e}"))?;
                self.long(path, l)
            }
            _ => Err(invalid!(
                "{path}: give SOURCE:TARGET[:MODE] or a mapping with type, source and target"
            )),
        }
    }

    fn short(&self, path: &str, s: &str) -> Result<pb::Mount> {
        let parts: Vec<&str> = s.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [target] => ("", *target, ""),
            [source, target] => (*source, *target, ""),
            [source, target, mode] => (*source, *target, *mode),
            _ => {
                return Err(invalid!(
                    "{path}: {s:?}: use SOURCE:TARGET[:MODE], e.g. /srv/data:/data:ro"
                ));
            }
        };
        let mut m = pb::Mount {
            target: target.to_string(),
            ..Default::default()
        };
        let mut no_copy = false;
        let mut propagation = String::new();
        for option in mode.split(',').filter(|o| !o.is_empty()) {
            match option {
                "ro" => m.read_only = true,
                "rw" => m.read_only = false,
                "nocopy" => no_copy = true,
                p if pb::BindOptions::PROPAGATIONS.contains(&p) => propagation = p.to_string(),
                other => {
                    return Err(invalid!(
                        "{path}: {s:?}: mode {other:?} is not supported: use ro, rw, nocopy or a propagation ({})",
                        pb::BindOptions::PROPAGATIONS.join(", ")
                    ));
                }
            }
        }
        if source.starts_with('/') {
            m.r#type = pb::MountType::Bind as i32;
            m.source = source.to_string();
            m.bind = (!propagation.is_empty()).then_some(pb::BindOptions {
                propagation,
                non_recursive: false,
            });
        } else if source.starts_with('.') || source.starts_with('~') {
            return Err(invalid!(
                "{path}: {s:?}: a relative host path means nothing on the nodes: give an absolute path"
            ));
        } else {
            m.r#type = pb::MountType::Volume as i32;
            if source.is_empty() {
                m.volume = no_copy.then(|| pb::VolumeOptions {
                    no_copy,
                    ..Default::default()
                });
            } else {
                let (name, options) = self.named(path, source, no_copy)?;
                m.source = name;
                m.volume = Some(options);
            }
        }
        Ok(m)
    }

    fn long(&self, path: &str, l: LongVolume) -> Result<pb::Mount> {
        let kind = crate::flags::one_of::<pb::MountType>(&format!("{path}.type"), &l.r#type)?;
        let mut m = pb::Mount {
            r#type: kind as i32,
            target: l.target,
            read_only: l.read_only,
            consistency: l.consistency.unwrap_or_default(),
            ..Default::default()
        };
        let source = l.source.unwrap_or_default();
        match kind {
            pb::MountType::Bind => {
                m.source = source;
                m.bind = l.bind.map(|b| pb::BindOptions {
                    propagation: b.propagation.unwrap_or_default(),
                    non_recursive: false,
                });
            }
            pb::MountType::Volume => {
                let no_copy = l.volume.is_some_and(|v| v.nocopy);
                if source.is_empty() {
                    m.volume = Some(pb::VolumeOptions {
                        no_copy,
                        ..Default::default()
                    });
                } else {
                    let (name, options) = self.named(path, &source, no_copy)?;
                    m.source = name;
                    m.volume = Some(options);
                }
            }
            pb::MountType::Tmpfs => {
                m.source = source;
                if let Some(t) = l.tmpfs {
                    let size = match t.size {
                        None => 0,
                        Some(Value::Number(n)) => n.as_i64().unwrap_or(-1),
                        Some(Value::String(s)) => parse_bytes(&s)?,
                        Some(_) => {
                            return Err(invalid!("{path}.tmpfs.size: give a size such as 64M"));
                        }
                    };
                    m.tmpfs = Some(pb::TmpfsOptions {
                        size_bytes: size,
                        mode: t.mode.unwrap_or(0),
                    });
                }
            }
        }
        Ok(m)
    }
}

impl ContainerKeys {
    /// Fills the container spec's engine settings; returns the task's log driver.
    pub fn apply(
        self,
        path: &str,
        volumes: &Volumes,
        c: &mut pb::ContainerSpec,
    ) -> Result<Option<pb::Driver>> {
        for (i, v) in self.volumes.into_iter().enumerate() {
            c.mounts
                .push(volumes.mount(&format!("{path}.volumes[{i}]"), v)?);
        }
        c.capability_add = self.cap_add.iter().map(|s| capability(s)).collect();
        c.capability_drop = self.cap_drop.iter().map(|s| capability(s)).collect();
        let dns = pb::DnsConfig {
            nameservers: OneOrMany::list(self.dns),
            search: OneOrMany::list(self.dns_search),
            options: self.dns_opt,
        };
        c.dns_config = (!dns.is_empty()).then_some(dns);
        c.hosts = match self.extra_hosts {
            None => vec![],
            Some(Hosts::List(l)) => l
                .iter()
                .map(|h| host_line(h).map_err(|e| invalid!("{path}.extra_hosts: {e}")))
                .collect::<Result<_>>()?,
            Some(Hosts::Map(m)) => m.iter().map(|(h, ip)| format!("{ip} {h}")).collect(),
        };
        c.read_only = self.read_only;
        c.init = self.init;
        c.tty = self.tty;
        c.open_stdin = self.stdin_open;
        c.sysctls = self.sysctls.into_iter().collect();
        c.ulimits = self
            .ulimits
            .into_iter()
            .map(|(name, v)| {
                let (soft, hard) = match v {
                    UlimitValue::Both(n) => (n, n),
                    UlimitValue::Pair { soft, hard } => (soft, hard),
                };
                pb::Ulimit { name, soft, hard }
            })
            .collect();
        Ok(match self.logging {
            None => None,
            Some(l) => Some(pb::Driver {
                name: l.driver.ok_or_else(|| {
                    invalid!("{path}.logging.driver: name the log driver, e.g. json-file")
                })?,
                options: l.options.into_iter().collect(),
            }),
        })
    }
}

//! docker's `service create` / `service update` flags for what the container engine gives
//! a task: --mount, --cap-add/--cap-drop, --init, --read-only, -t, --sysctl, --host,
//! --dns*, --group, --log-driver/--log-opt, --secret, --config (update: the -add/-rm
//! forms of the lists).

use shoal_proto::docker_names::DockerName;
use shoal_proto::{
    BindOptions, ConfigReference, ContainerSpec, DnsConfig, Driver, FileTarget, Mount, MountType,
    SecretReference, ServiceSpec, TaskSpec, TmpfsOptions, Ulimit, VolumeOptions,
};

use crate::error::Result;
use crate::flags::{capability, host_line, key_value, parse_bytes};
use crate::invalid;

/// Settings `create` and `update` share.
#[derive(clap::Args, Clone, Default)]
pub struct ContainerFlags {
    /// Add Linux capabilities (CAP_NET_ADMIN, net_admin, ALL)
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Use an init inside each service container to forward signals and reap processes
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub init: Option<bool>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub read_only: Option<bool>,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long = "tty", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tty: Option<bool>,
    /// Logging driver for the service (json-file, local, none, syslog, ...)
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Logging driver options (key=value)
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Tune the host's OOM preferences for the tasks (-1000 to 1000)
    #[arg(long = "oom-score-adj", allow_negative_numbers = true)]
    pub oom_score_adj: Option<i64>,
    /// Limit the tasks' processes (0 = unlimited)
    #[arg(long = "limit-pids")]
    pub limit_pids: Option<i64>,
}

/// `create`'s lists.
#[derive(clap::Args, Clone, Default)]
pub struct ContainerLists {
    /// Attach a filesystem mount: type=bind|volume|tmpfs,source=,target=[,readonly]...
    #[arg(long = "mount")]
    pub mount: Vec<String>,
    /// Sysctl options (key=value)
    #[arg(long = "sysctl")]
    pub sysctl: Vec<String>,
    /// Set one or more custom host-to-IP mappings (host:ip)
    #[arg(long = "host")]
    pub host: Vec<String>,
    /// Set custom DNS servers
    #[arg(long = "dns")]
    pub dns: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option")]
    pub dns_option: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Set one or more supplementary user groups for the container
    #[arg(long = "group")]
    pub group: Vec<String>,
    /// Ulimit options: NAME=SOFT[:HARD], e.g. nofile=1024:2048
    #[arg(long = "ulimit")]
    pub ulimit: Vec<String>,
    /// Give the tasks a secret: NAME, or source=NAME[,target=FILE,uid=,gid=,mode=0400]
    #[arg(long = "secret")]
    pub secret: Vec<String>,
    /// Give the tasks a config: NAME, or source=NAME[,target=/PATH,uid=,gid=,mode=0444]
    #[arg(long = "config")]
    pub config: Vec<String>,
}

/// `update`'s edits of the same lists.
#[derive(clap::Args, Clone, Default)]
pub struct ContainerEdits {
    /// Add or update a mount (replaces the one with the same target)
    #[arg(long = "mount-add")]
    pub mount_add: Vec<String>,
    /// Remove a mount by its target path
    #[arg(long = "mount-rm")]
    pub mount_rm: Vec<String>,
    #[arg(long = "sysctl-add")]
    pub sysctl_add: Vec<String>,
    /// Remove a sysctl by its key
    #[arg(long = "sysctl-rm")]
    pub sysctl_rm: Vec<String>,
    /// Add a host-to-IP mapping (host:ip)
    #[arg(long = "host-add")]
    pub host_add: Vec<String>,
    /// Remove a host mapping (host:ip, or host for every mapping of it)
    #[arg(long = "host-rm")]
    pub host_rm: Vec<String>,
    #[arg(long = "dns-add")]
    pub dns_add: Vec<String>,
    #[arg(long = "dns-rm")]
    pub dns_rm: Vec<String>,
    #[arg(long = "dns-option-add")]
    pub dns_option_add: Vec<String>,
    #[arg(long = "dns-option-rm")]
    pub dns_option_rm: Vec<String>,
    #[arg(long = "dns-search-add")]
    pub dns_search_add: Vec<String>,
    #[arg(long = "dns-search-rm")]
    pub dns_search_rm: Vec<String>,
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    #[arg(long = "group-rm")]
    pub group_rm: Vec<String>,
    /// Add or update a ulimit (NAME=SOFT[:HARD])
    #[arg(long = "ulimit-add")]
    pub ulimit_add: Vec<String>,
    /// Remove a ulimit by its name
    #[arg(long = "ulimit-rm")]
    pub ulimit_rm: Vec<String>,
    /// Add or update a secret on a service (as --secret)
    #[arg(long = "secret-add")]
    pub secret_add: Vec<String>,
    /// Remove a secret by its name
    #[arg(long = "secret-rm")]
    pub secret_rm: Vec<String>,
    /// Add or update a config on a service (as --config)
    #[arg(long = "config-add")]
    pub config_add: Vec<String>,
    /// Remove a config by its name
    #[arg(long = "config-rm")]
    pub config_rm: Vec<String>,
}

fn bool_value(flag: &str, key: &str, v: Option<&str>) -> Result<bool> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None | Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(invalid!(
            "invalid {flag}: {key}={other}: give true or false"
        )),
    }
}

/// `--mount type=bind,source=/srv,target=/data,readonly`, as docker reads it; the type
/// defaults to volume.
pub fn parse_mount(s: &str) -> Result<Mount> {
    let flag = format!("--mount {s:?}");
    let mut m = Mount {
        r#type: MountType::Volume as i32,
        ..Default::default()
    };
    let (mut bind, mut volume, mut tmpfs) = (None, None, None);
    for field in s.split(',').filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let text = |what: &str| {
            value
                .map(str::to_string)
                .ok_or_else(|| invalid!("invalid {flag}: {key} needs a value ({what})"))
        };
        match key.as_str() {
            "type" => {
                let t = text("bind, volume or tmpfs")?;
                m.r#type = MountType::from_docker_name(&t).ok_or_else(|| {
                    invalid!("invalid {flag}: type {t:?} is not bind, volume or tmpfs")
                })? as i32;
            }
            "source" | "src" => m.source = text("a host path or a volume name")?,
            "target" | "destination" | "dst" => m.target = text("a path in the container")?,
            "readonly" | "ro" => m.read_only = bool_value(&flag, &key, value)?,
            "consistency" => m.consistency = text("default, consistent, cached or delegated")?,
            "bind-propagation" => {
                bind.get_or_insert_with(BindOptions::default).propagation =
                    text("rprivate, private, rshared, shared, rslave or slave")?;
            }
            "bind-nonrecursive" => {
                bind.get_or_insert_with(BindOptions::default).non_recursive =
                    bool_value(&flag, &key, value)?;
            }
            "volume-nocopy" => {
                volume.get_or_insert_with(VolumeOptions::default).no_copy =
                    bool_value(&flag, &key, value)?;
            }
            "volume-label" => {
                let (k, v) = key_value(&text("key=value")?, "volume label")?;
                volume
                    .get_or_insert_with(VolumeOptions::default)
                    .labels
                    .insert(k, v);
            }
            "volume-driver" => {
                volume
                    .get_or_insert_with(VolumeOptions::default)
                    .driver
                    .get_or_insert_with(Driver::default)
                    .name = text("a driver name")?;
            }
            "volume-opt" => {
                let (k, v) = key_value(&text("key=value")?, "volume option")?;
                volume
                    .get_or_insert_with(VolumeOptions::default)
                    .driver
                    .get_or_insert_with(Driver::default)
                    .options
                    .insert(k, v);
            }
            "tmpfs-size" => {
                tmpfs.get_or_insert_with(TmpfsOptions::default).size_bytes =
                    parse_bytes(&text("a size such as 64M")?)?;
            }
            "tmpfs-mode" => {
                let mode = text("an octal mode such as 1770")?;
                tmpfs.get_or_insert_with(TmpfsOptions::default).mode =
                    u32::from_str_radix(&mode, 8).map_err(|_| {
                        invalid!("invalid {flag}: tmpfs-mode {mode:?} is not an octal mode")
                    })?;
            }
            other => {
                return Err(invalid!(
                    "invalid {flag}: unknown field {other:?}; use type, source, target, readonly, consistency, bind-propagation, bind-nonrecursive, volume-nocopy, volume-label, volume-driver, volume-opt, tmpfs-size or tmpfs-mode"
                ));
            }
        }
    }
    if m.target.is_empty() {
        return Err(invalid!("invalid {flag}: target is required"));
    }
    (m.bind, m.volume, m.tmpfs) = (bind, volume, tmpfs);
    Ok(m)
}

/// `--secret db_pw` or `--secret source=db_pw,target=password,uid=0,gid=0,mode=0400` (and
/// `--config` alike), as docker reads them: the source's name and its file. The managers
/// fill in the defaults (target = the name, 0:0, 0444) and resolve the name.
pub fn parse_file_ref(flag: &str, s: &str) -> Result<(String, FileTarget)> {
    let shown = format!("--{flag} {s:?}");
    if !s.contains('=') {
        return Ok((s.trim().to_string(), FileTarget::default()));
    }
    let (mut source, mut file) = (String::new(), FileTarget::default());
    for field in s.split(',').filter(|f| !f.is_empty()) {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| invalid!("invalid {shown}: {field:?} needs a value (key=value)"))?;
        let value = value.trim().to_string();
        match key.trim().to_ascii_lowercase().as_str() {
            "source" | "src" => source = value,
            "target" => file.name = value,
            "uid" => file.uid = value,
            "gid" => file.gid = value,
            "mode" => {
                file.mode = u32::from_str_radix(&value, 8).map_err(|_| {
                    invalid!("invalid {shown}: mode {value:?} is not an octal mode such as 0400")
                })?;
            }
            other => {
                return Err(invalid!(
                    "invalid {shown}: unknown field {other:?}; use source, target, uid, gid or mode"
                ));
            }
        }
    }
    if source.is_empty() {
        return Err(invalid!("invalid {shown}: source is required"));
    }
    Ok((source, file))
}

fn secret_ref(s: &str) -> Result<SecretReference> {
    let (name, file) = parse_file_ref("secret", s)?;
    Ok(SecretReference {
        secret_name: name,
        file: Some(file),
        ..Default::default()
    })
}

fn config_ref(s: &str) -> Result<ConfigReference> {
    let (name, file) = parse_file_ref("config", s)?;
    Ok(ConfigReference {
        config_name: name,
        file: Some(file),
        ..Default::default()
    })
}

/// `--ulimit nofile=1024:2048` (or `nofile=1024`, soft and hard alike), as docker reads it.
pub fn parse_ulimit(s: &str) -> Result<Ulimit> {
    let bad = || invalid!("invalid ulimit {s:?}: use NAME=SOFT[:HARD], e.g. nofile=1024:2048");
    let (name, values) = s.split_once('=').ok_or_else(bad)?;
    let (soft, hard) = values.split_once(':').unwrap_or((values, values));
    Ok(Ulimit {
        name: name.trim().to_string(),
        soft: soft.trim().parse().map_err(|_| bad())?,
        hard: hard.trim().parse().map_err(|_| bad())?,
    })
}

/// Every item of a list flag parsed, or the first one's error.
fn each<T>(items: &[String], parse: impl Fn(&str) -> Result<T>) -> Result<Vec<T>> {
    items.iter().map(|s| parse(s)).collect()
}

fn container(spec: &mut ServiceSpec) -> &mut ContainerSpec {
    spec.task
        .get_or_insert_with(TaskSpec::default)
        .container
        .get_or_insert_with(ContainerSpec::default)
}

/// Adds each of `items` to `list` unless it is there already.
fn add_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for item in items {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

impl ContainerFlags {
    pub fn apply(&self, spec: &mut ServiceSpec) -> Result<()> {
        let log_options = each(&self.log_opt, |kv| key_value(kv, "log option"))?;
        let task = spec.task.get_or_insert_with(TaskSpec::default);
        if let Some(name) = &self.log_driver {
            task.log_driver = Some(Driver {
                name: name.clone(),
                options: log_options.into_iter().collect(),
            });
        } else if !log_options.is_empty() {
            let driver = task
                .log_driver
                .as_mut()
                .ok_or_else(|| invalid!("--log-opt needs a log driver: give --log-driver too"))?;
            driver.options.extend(log_options);
        }
        let c = container(spec);
        // As the docker CLI edits them: adding a dropped capability undoes the drop, and
        // dropping an added one undoes the add; otherwise it joins its list.
        let edits = (self.cap_add.iter().map(|s| (capability(s), true)))
            .chain(self.cap_drop.iter().map(|s| (capability(s), false)));
        for (cap, add) in edits {
            let (list, undo) = if add {
                (&mut c.capability_add, &mut c.capability_drop)
            } else {
                (&mut c.capability_drop, &mut c.capability_add)
            };
            if undo.contains(&cap) {
                undo.retain(|x| x != &cap);
            } else {
                add_unique(list, [cap]);
            }
        }
        if self.init.is_some() {
            c.init = self.init;
        }
        if let Some(r) = self.read_only {
            c.read_only = r;
        }
        if let Some(t) = self.tty {
            c.tty = t;
        }
        if let Some(n) = self.oom_score_adj {
            c.oom_score_adj = n;
        }
        if let Some(n) = self.limit_pids {
            spec.task
                .get_or_insert_with(TaskSpec::default)
                .resources
                .get_or_insert_default()
                .limits
                .get_or_insert_default()
                .pids = n;
        }
        Ok(())
    }
}

fn dns(c: &mut ContainerSpec) -> &mut DnsConfig {
    c.dns_config.get_or_insert_with(DnsConfig::default)
}

/// Drops an empty DNS config, so an edit that removes everything leaves none.
fn tidy_dns(c: &mut ContainerSpec) {
    if c.dns_config.as_ref().is_some_and(DnsConfig::is_empty) {
        c.dns_config = None;
    }
}

impl ContainerLists {
    pub fn apply(&self, spec: &mut ServiceSpec) -> Result<()> {
        let mounts = each(&self.mount, parse_mount)?;
        let hosts = each(&self.host, host_line)?;
        let sysctls = each(&self.sysctl, |kv| key_value(kv, "sysctl"))?;
        let ulimits = each(&self.ulimit, parse_ulimit)?;
        let secrets = each(&self.secret, secret_ref)?;
        let configs = each(&self.config, config_ref)?;
        let c = container(spec);
        c.secrets.extend(secrets);
        c.configs.extend(configs);
        c.mounts.extend(mounts);
        c.ulimits.extend(ulimits);
        c.hosts.extend(hosts);
        c.sysctls.extend(sysctls);
        c.groups.extend(self.group.iter().cloned());
        let d = dns(c);
        d.nameservers.extend(self.dns.iter().cloned());
        d.search.extend(self.dns_search.iter().cloned());
        d.options.extend(self.dns_option.iter().cloned());
        tidy_dns(c);
        Ok(())
    }
}

impl ContainerEdits {
    pub fn apply(&self, spec: &mut ServiceSpec) -> Result<()> {
        let added = each(&self.mount_add, parse_mount)?;
        let hosts_added = each(&self.host_add, host_line)?;
        let sysctls = each(&self.sysctl_add, |kv| key_value(kv, "sysctl"))?;
        let ulimits = each(&self.ulimit_add, parse_ulimit)?;
        let secrets = each(&self.secret_add, secret_ref)?;
        let configs = each(&self.config_add, config_ref)?;
        let c = container(spec);
        // As the docker CLI: removed by name (or ID), then the added appended; a file
        // targeted twice is refused by the managers.
        c.secrets.retain(|r| {
            !self
                .secret_rm
                .iter()
                .any(|k| *k == r.secret_name || *k == r.secret_id)
        });
        c.secrets.extend(secrets);
        c.configs.retain(|r| {
            !self
                .config_rm
                .iter()
                .any(|k| *k == r.config_name || *k == r.config_id)
        });
        c.configs.extend(configs);
        c.ulimits.retain(|u| {
            !self.ulimit_rm.contains(&u.name) && !ulimits.iter().any(|a| a.name == u.name)
        });
        c.ulimits.extend(ulimits);
        let path = |t: &str| t.trim_end_matches('/').to_string();
        c.mounts.retain(|m| {
            let t = path(&m.target);
            !self.mount_rm.iter().any(|r| path(r) == t)
                && !added.iter().any(|a| path(&a.target) == t)
        });
        c.mounts.extend(added);
        for k in &self.sysctl_rm {
            c.sysctls.remove(k.split('=').next().unwrap_or(k));
        }
        c.sysctls.extend(sysctls);
        for rm in &self.host_rm {
            // "host:ip" removes that mapping; "host" every mapping of the name.
            let exact = host_line(rm).ok();
            c.hosts.retain(|line| match &exact {
                Some(e) => line != e,
                None => line.split_whitespace().nth(1) != Some(rm.as_str()),
            });
        }
        add_unique(&mut c.hosts, hosts_added);
        c.groups.retain(|g| !self.group_rm.contains(g));
        add_unique(&mut c.groups, self.group_add.iter().cloned());
        let d = dns(c);
        for (list, rm, add) in [
            (&mut d.nameservers, &self.dns_rm, &self.dns_add),
            (&mut d.search, &self.dns_search_rm, &self.dns_search_add),
            (&mut d.options, &self.dns_option_rm, &self.dns_option_add),
        ] {
            list.retain(|x| !rm.contains(x));
            add_unique(list, add.iter().cloned());
        }
        tidy_dns(c);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_parse_as_docker_reads_them() {
        let m = parse_mount("type=bind,source=/srv/data,target=/data,readonly").unwrap();
        assert_eq!(m.r#type(), MountType::Bind);
        assert_eq!(
            (m.source.as_str(), m.target.as_str(), m.read_only),
            ("/srv/data", "/data", true)
        );
        let m = parse_mount("src=db,dst=/var/lib/db,volume-label=a=b,volume-nocopy").unwrap();
        assert_eq!(m.r#type(), MountType::Volume);
        let v = m.volume.unwrap();
        assert!(v.no_copy);
        assert_eq!(v.labels.get("a").map(String::as_str), Some("b"));
        let m = parse_mount("type=tmpfs,target=/run/cache,tmpfs-size=64M,tmpfs-mode=1770").unwrap();
        let t = m.tmpfs.unwrap();
        assert_eq!((t.size_bytes, t.mode), (64 << 20, 0o1770));
        for (bad, why) in [
            ("type=bind,source=/a", "target is required"),
            ("type=disk,target=/a", "is not bind, volume or tmpfs"),
            ("target=/a,colour=red", "unknown field \"colour\""),
            ("target=/a,readonly=maybe", "give true or false"),
            ("type=tmpfs,target=/a,tmpfs-mode=9", "not an octal mode"),
        ] {
            let err = parse_mount(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn secret_and_config_flags_read_as_docker_reads_them() {
        assert_eq!(
            parse_file_ref("secret", "db").unwrap(),
            ("db".to_string(), FileTarget::default())
        );
        let (name, file) =
            parse_file_ref("secret", "source=db,target=pw,uid=33,gid=44,mode=0400").unwrap();
        assert_eq!(name, "db");
        assert_eq!(
            (
                file.name.as_str(),
                file.uid.as_str(),
                file.gid.as_str(),
                file.mode
            ),
            ("pw", "33", "44", 0o400)
        );
        for (bad, why) in [
            ("target=pw", "source is required"),
            ("source=db,mode=rw", "not an octal mode"),
            ("source=db,colour=red", "unknown field"),
        ] {
            let e = parse_file_ref("config", bad).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("--config"), "{bad}: {e}");
        }
        let mut spec = ServiceSpec::default();
        let lists = ContainerLists {
            secret: vec!["a".into(), "source=b,target=x".into()],
            config: vec!["c".into()],
            ..Default::default()
        };
        lists.apply(&mut spec).unwrap();
        let edits = ContainerEdits {
            secret_rm: vec!["a".into()],
            secret_add: vec!["d".into()],
            config_rm: vec!["c".into()],
            ..Default::default()
        };
        edits.apply(&mut spec).unwrap();
        let c = container(&mut spec);
        let names: Vec<&str> = c.secrets.iter().map(|r| r.secret_name.as_str()).collect();
        assert_eq!(names, ["b", "d"]);
        assert!(c.configs.is_empty());
    }

    #[test]
    fn update_edits_replace_and_remove() {
        let mut spec = ServiceSpec::replicated("web", "img", 1);
        ContainerLists {
            mount: vec!["type=bind,src=/a,dst=/data".into()],
            host: vec!["db:10.0.0.1".into()],
            dns: vec!["192.0.2.1".into()],
            ..Default::default()
        }
        .apply(&mut spec)
        .unwrap();
        ContainerFlags {
            cap_add: vec!["net_admin".into()],
            init: Some(true),
            ..Default::default()
        }
        .apply(&mut spec)
        .unwrap();
        ContainerEdits {
            mount_add: vec![
                "type=bind,src=/b,dst=/data/".into(),
                "type=tmpfs,dst=/t".into(),
            ],
            host_rm: vec!["db".into()],
            dns_rm: vec!["192.0.2.1".into()],
            ..Default::default()
        }
        .apply(&mut spec)
        .unwrap();
        ContainerFlags {
            cap_drop: vec!["CAP_NET_ADMIN".into()],
            ..Default::default()
        }
        .apply(&mut spec)
        .unwrap();
        let c = spec.task.unwrap().container.unwrap();
        let mounts: Vec<_> = c
            .mounts
            .iter()
            .map(|m| (m.source.as_str(), m.target.as_str()))
            .collect();
        assert_eq!(mounts, [("/b", "/data/"), ("", "/t")]);
        assert!(c.hosts.is_empty());
        assert!(c.dns_config.is_none(), "an emptied DNS config is dropped");
        assert_eq!(c.init, Some(true));
        assert!(c.capability_add.is_empty() && c.capability_drop.is_empty());
    }

    #[test]
    fn ulimits_parse_as_docker_reads_them() {
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("nofile", 1024, 2048));
        let u = parse_ulimit("nproc=512").unwrap();
        assert_eq!((u.soft, u.hard), (512, 512));
        for bad in ["nofile", "nofile=lots", "nofile=1:x"] {
            assert!(
                parse_ulimit(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("NAME=SOFT"),
                "{bad}"
            );
        }
    }

    #[test]
    fn log_options_need_a_driver() {
        let mut spec = ServiceSpec::replicated("web", "img", 1);
        let err = ContainerFlags {
            log_opt: vec!["max-size=1m".into()],
            ..Default::default()
        }
        .apply(&mut spec)
        .unwrap_err();
        assert!(err.to_string().contains("give --log-driver"), "{err}");
    }
}

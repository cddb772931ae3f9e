//! Checks on what a container engine gives a task (mounts, capabilities, sysctls, hosts,
//! DNS, groups, log driver, platforms), so a mistake is refused at create with its reason
//! instead of failing every task on every node.

use std::collections::HashSet;
use std::net::IpAddr;

use shoal_proto::{BindOptions, ContainerSpec, Mount, MountType, TaskSpec};

/// Linux capabilities, as docker names them without the CAP_ prefix.
const CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

const CONSISTENCIES: &[&str] = &["default", "consistent", "cached", "delegated"];

/// Sysctls a container may set: those the kernel keeps per network or IPC namespace.
fn namespaced_sysctl(key: &str) -> bool {
    key.starts_with("net.")
        || key.starts_with("fs.mqueue.")
        || [
            "kernel.msgmax",
            "kernel.msgmnb",
            "kernel.msgmni",
            "kernel.sem",
        ]
        .contains(&key)
        || key.starts_with("kernel.shm")
}

fn no_space(what: &str, v: &str) -> Result<(), String> {
    if v.is_empty() || v.chars().any(char::is_whitespace) {
        return Err(format!("invalid {what} {v:?}: it must be one word"));
    }
    Ok(())
}

fn capability(cap: &str) -> Result<(), String> {
    let upper = cap.to_ascii_uppercase();
    let name = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if name == "ALL" || CAPABILITIES.contains(&name) {
        return Ok(());
    }
    Err(format!(
        "unknown capability {cap:?}: use a Linux capability such as CAP_NET_ADMIN, or ALL"
    ))
}

fn mount(m: &Mount) -> Result<(), String> {
    let at = format!("mount {:?}", m.target);
    if !m.target.starts_with('/') {
        return Err(format!(
            "invalid {at}: the target must be an absolute path inside the container"
        ));
    }
    if m.target == "/" {
        return Err(format!(
            "invalid {at}: the container's root cannot be a mount"
        ));
    }
    let kind = m.r#type();
    let options = [
        ("bind", m.bind.is_some(), MountType::Bind),
        ("volume", m.volume.is_some(), MountType::Volume),
        ("tmpfs", m.tmpfs.is_some(), MountType::Tmpfs),
    ];
    for (name, set, owner) in options {
        if set && kind != owner {
            return Err(format!(
                "invalid {at}: {name} options need type={name}, not {}",
                shoal_proto::docker_names::DockerName::docker_name(kind)
            ));
        }
    }
    if !m.consistency.is_empty() && !CONSISTENCIES.contains(&m.consistency.as_str()) {
        return Err(format!(
            "invalid {at}: consistency {:?} is not one of {}",
            m.consistency,
            CONSISTENCIES.join(", ")
        ));
    }
    match kind {
        MountType::Bind => {
            if !m.source.starts_with('/') {
                return Err(format!(
                    "invalid {at}: a bind mount needs the absolute path of a host directory or file as its source"
                ));
            }
            let propagation = m.bind.as_ref().map_or("", |b| b.propagation.as_str());
            if !propagation.is_empty() && !BindOptions::PROPAGATIONS.contains(&propagation) {
                return Err(format!(
                    "invalid {at}: bind propagation {propagation:?} is not one of {}",
                    BindOptions::PROPAGATIONS.join(", ")
                ));
            }
        }
        MountType::Volume => {
            let name_ok = m.source.is_empty()
                || (m.source.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && m.source
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)));
            if !name_ok {
                return Err(format!(
                    "invalid {at}: volume name {:?} may hold letters, digits, '_', '.' and '-' (use type=bind for a host path)",
                    m.source
                ));
            }
        }
        MountType::Tmpfs => {
            if !m.source.is_empty() {
                return Err(format!("invalid {at}: a tmpfs mount has no source"));
            }
            if m.tmpfs.is_some_and(|t| t.size_bytes < 0) {
                return Err(format!("invalid {at}: tmpfs-size cannot be negative"));
            }
            if m.tmpfs.is_some_and(|t| t.mode > 0o7777) {
                return Err(format!("invalid {at}: tmpfs-mode is an octal file mode"));
            }
        }
    }
    Ok(())
}

fn container(c: &ContainerSpec) -> Result<(), String> {
    let mut targets = HashSet::new();
    for m in &c.mounts {
        mount(m)?;
        if !targets.insert(m.target.trim_end_matches('/')) {
            return Err(format!("two mounts share the target {:?}", m.target));
        }
    }
    for cap in c.capability_add.iter().chain(&c.capability_drop) {
        capability(cap)?;
    }
    for key in c.sysctls.keys() {
        if !namespaced_sysctl(key) {
            return Err(format!(
                "sysctl {key:?} is not allowed: a container may set only namespaced sysctls (net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*)"
            ));
        }
    }
    for line in &c.hosts {
        let mut words = line.split_whitespace();
        let ip_ok = words.next().is_some_and(|ip| ip.parse::<IpAddr>().is_ok());
        if !ip_ok || words.next().is_none() {
            return Err(format!(
                "invalid host entry {line:?}: use \"IP NAME [NAME...]\" (--host NAME:IP)"
            ));
        }
    }
    let dns = c.dns_config.clone().unwrap_or_default();
    for ns in &dns.nameservers {
        if ns.parse::<IpAddr>().is_err() {
            return Err(format!(
                "invalid DNS server {ns:?}: give an IP address (--dns)"
            ));
        }
    }
    for s in &dns.search {
        no_space("DNS search domain", s)?;
    }
    for o in &dns.options {
        no_space("DNS option", o)?;
    }
    for g in &c.groups {
        no_space("group", g)?;
    }
    if let Some(p) = &c.privileges {
        privileges(p)?;
    }
    let mut seen = HashSet::new();
    for u in &c.ulimits {
        if !ULIMITS.contains(&u.name.as_str()) {
            return Err(format!(
                "unknown ulimit {:?}: use one of {}",
                u.name,
                ULIMITS.join(", ")
            ));
        }
        if !seen.insert(u.name.as_str()) {
            return Err(format!("ulimit {} is given twice", u.name));
        }
        if u.soft < -1 || u.hard < -1 || (u.hard >= 0 && (u.soft > u.hard || u.soft < 0)) {
            return Err(format!(
                "invalid ulimit {}={}:{}: the soft limit cannot be above the hard one (-1: unlimited)",
                u.name, u.soft, u.hard
            ));
        }
    }
    if !(-1000..=1000).contains(&c.oom_score_adj) {
        return Err(format!(
            "invalid OOM score adjustment {}: give -1000 to 1000",
            c.oom_score_adj
        ));
    }
    Ok(())
}

/// setrlimit's resources, as docker names them.
const ULIMITS: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

fn privileges(p: &shoal_proto::Privileges) -> Result<(), String> {
    match (p.seccomp_mode.as_str(), p.seccomp_profile.is_empty()) {
        ("custom", true) => {
            return Err(
                "seccomp mode custom needs its profile (Privileges.Seccomp.Profile)".into(),
            );
        }
        ("custom", false) => {
            serde_json::from_slice::<serde_json::Value>(&p.seccomp_profile)
                .map_err(|e| format!("the seccomp profile is not JSON: {e}"))?;
        }
        ("" | "default" | "unconfined", true) => {}
        ("" | "default" | "unconfined", false) => {
            return Err("a seccomp profile needs seccomp mode custom".into());
        }
        (other, _) => {
            return Err(format!(
                "invalid seccomp mode {other:?}: use default, unconfined or custom"
            ));
        }
    }
    if !["", "default", "disabled"].contains(&p.apparmor_mode.as_str()) {
        return Err(format!(
            "invalid AppArmor mode {:?}: use default or disabled",
            p.apparmor_mode
        ));
    }
    Ok(())
}

pub fn validate(task: &TaskSpec) -> Result<(), String> {
    container(&task.container.clone().unwrap_or_default())?;
    if let Some(limits) = task.resources.and_then(|r| r.limits)
        && limits.pids < 0
    {
        return Err(format!(
            "invalid pids limit {}: give 0 (unlimited) or more",
            limits.pids
        ));
    }
    if let Some(d) = &task.log_driver {
        no_space("log driver", &d.name)?;
        if d.options.keys().any(String::is_empty) {
            return Err("a log option has an empty name: use --log-opt key=value".into());
        }
    }
    for p in task.placement.iter().flat_map(|p| &p.platforms) {
        if p.os.is_empty() && p.architecture.is_empty() {
            return Err("a placement platform names neither an OS nor an architecture".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{BindOptions, DnsConfig, TmpfsOptions};

    fn with(c: ContainerSpec) -> Result<(), String> {
        validate(&TaskSpec {
            container: Some(c),
            ..Default::default()
        })
    }

    fn bind(source: &str, target: &str) -> Mount {
        Mount {
            r#type: MountType::Bind as i32,
            source: source.into(),
            target: target.into(),
            ..Default::default()
        }
    }

    #[test]
    fn sound_settings_pass() {
        with(ContainerSpec {
            mounts: vec![
                bind("/var/run/docker.sock", "/var/run/docker.sock"),
                Mount {
                    r#type: MountType::Volume as i32,
                    source: "db_data".into(),
                    target: "/data".into(),
                    ..Default::default()
                },
            ],
            capability_add: vec!["CAP_NET_ADMIN".into(), "sys_time".into()],
            capability_drop: vec!["ALL".into()],
            sysctls: [("net.core.somaxconn".to_string(), "1024".to_string())].into(),
            hosts: vec!["10.0.0.1 db".into()],
            dns_config: Some(DnsConfig {
                nameservers: vec!["192.0.2.1".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap();
    }

    #[test]
    fn mistakes_are_named() {
        let cases: Vec<(ContainerSpec, &str)> = vec![
            (
                ContainerSpec {
                    mounts: vec![bind("data", "/data")],
                    ..Default::default()
                },
                "absolute path of a host directory",
            ),
            (
                ContainerSpec {
                    mounts: vec![bind("/a", "data")],
                    ..Default::default()
                },
                "target must be an absolute path",
            ),
            (
                ContainerSpec {
                    mounts: vec![bind("/a", "/data"), bind("/b", "/data/")],
                    ..Default::default()
                },
                "share the target",
            ),
            (
                ContainerSpec {
                    mounts: vec![Mount {
                        r#type: MountType::Volume as i32,
                        target: "/data".into(),
                        bind: Some(BindOptions::default()),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                "bind options need type=bind",
            ),
            (
                ContainerSpec {
                    mounts: vec![Mount {
                        r#type: MountType::Tmpfs as i32,
                        target: "/t".into(),
                        tmpfs: Some(TmpfsOptions {
                            size_bytes: -1,
                            mode: 0,
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                "tmpfs-size cannot be negative",
            ),
            (
                ContainerSpec {
                    capability_add: vec!["CAP_FLY".into()],
                    ..Default::default()
                },
                "unknown capability \"CAP_FLY\"",
            ),
            (
                ContainerSpec {
                    sysctls: [("kernel.hostname".to_string(), "x".to_string())].into(),
                    ..Default::default()
                },
                "only namespaced sysctls",
            ),
            (
                ContainerSpec {
                    ulimits: vec![shoal_proto::Ulimit {
                        name: "nofile".into(),
                        soft: 4096,
                        hard: 1024,
                    }],
                    ..Default::default()
                },
                "soft limit cannot be above the hard one",
            ),
            (
                ContainerSpec {
                    ulimits: vec![shoal_proto::Ulimit {
                        name: "files".into(),
                        soft: 1,
                        hard: 1,
                    }],
                    ..Default::default()
                },
                "unknown ulimit \"files\"",
            ),
            (
                ContainerSpec {
                    hosts: vec!["db:10.0.0.1".into()],
                    ..Default::default()
                },
                "invalid host entry",
            ),
            (
                ContainerSpec {
                    privileges: Some(shoal_proto::Privileges {
                        seccomp_mode: "custom".into(),
                        seccomp_profile: b"{not json".to_vec(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                "the seccomp profile is not JSON",
            ),
            (
                ContainerSpec {
                    privileges: Some(shoal_proto::Privileges {
                        apparmor_mode: "off".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                "invalid AppArmor mode",
            ),
            (
                ContainerSpec {
                    dns_config: Some(DnsConfig {
                        nameservers: vec!["dns.example".into()],
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                "give an IP address",
            ),
        ];
        for (c, why) in cases {
            let err = with(c).unwrap_err();
            assert!(err.contains(why), "{why}: {err}");
        }
    }
}

//! A task's container settings in dockerd's terms: the host config (mounts, capabilities,
//! init, sysctls, hosts, DNS, groups, log driver, limits) the docker runtime creates the
//! container with. Pure, so each setting's translation is unit-tested.

use std::collections::HashMap;

use bollard::models::{
    HostConfig, HostConfigLogConfig, Mount, MountBindOptions, MountTmpfsOptions, MountType,
    MountVolumeOptions, MountVolumeOptionsDriverConfig, ResourcesUlimits,
};
use shoal_proto::{MountType as Kind, Task};

use super::container_spec;

fn some_vec(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

fn some_map(m: &HashMap<String, String>) -> Option<HashMap<String, String>> {
    (!m.is_empty()).then(|| m.clone())
}

fn mount(m: &shoal_proto::Mount) -> Mount {
    let kind = m.r#type();
    let bind = m.bind.clone().unwrap_or_default();
    let volume = m.volume.clone().unwrap_or_default();
    let tmpfs = m.tmpfs.unwrap_or_default();
    Mount {
        target: Some(m.target.clone()),
        source: (!m.source.is_empty()).then(|| m.source.clone()),
        typ: Some(match kind {
            Kind::Bind => MountType::BIND,
            Kind::Volume => MountType::VOLUME,
            Kind::Tmpfs => MountType::TMPFS,
        }),
        read_only: m.read_only.then_some(true),
        consistency: (!m.consistency.is_empty()).then(|| m.consistency.clone()),
        bind_options: (kind == Kind::Bind).then(|| MountBindOptions {
            // Validated by the managers against the same names.
            propagation: bind.propagation.parse().ok(),
            non_recursive: bind.non_recursive.then_some(true),
            ..Default::default()
        }),
        volume_options: (kind == Kind::Volume).then(|| MountVolumeOptions {
            no_copy: volume.no_copy.then_some(true),
            labels: some_map(&volume.labels),
            driver_config: volume.driver.map(|d| MountVolumeOptionsDriverConfig {
                name: (!d.name.is_empty()).then_some(d.name),
                options: some_map(&d.options),
            }),
            ..Default::default()
        }),
        tmpfs_options: (kind == Kind::Tmpfs).then(|| MountTmpfsOptions {
            size_bytes: (tmpfs.size_bytes > 0).then_some(tmpfs.size_bytes),
            mode: (tmpfs.mode > 0).then_some(i64::from(tmpfs.mode)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// "IP NAME [NAME...]" lines (the service's form) as dockerd's "NAME:IP" entries.
/// A task's secret or config: its tmpfs file, bound read-only at its path.
pub fn file_mount(source: &std::path::Path, target: &str) -> Mount {
    Mount {
        typ: Some(MountType::BIND),
        source: Some(source.display().to_string()),
        target: Some(target.to_string()),
        read_only: Some(true),
        ..Default::default()
    }
}

fn extra_hosts(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .flat_map(|line| {
            let mut words = line.split_whitespace();
            let ip = words.next().unwrap_or_default();
            words.map(move |name| format!("{name}:{ip}"))
        })
        .collect()
}

/// The host config for `task`'s container. Tasks on overlays ask the node's resolver
/// (as in Swarm: it forwards what is not a cluster name to the task's nameservers, or the
/// node's); other tasks ask their nameservers directly.
pub fn host_config(task: &Task) -> HostConfig {
    let c = container_spec(task);
    let spec = task.spec.clone().unwrap_or_default();
    let limits = spec.resources.and_then(|r| r.limits).unwrap_or_default();
    let dns = c.dns_config.clone().unwrap_or_default();
    let on_overlay = !task.networks.is_empty();
    let mut options = dns.options.clone();
    if on_overlay && !options.iter().any(|o| o.starts_with("ndots:")) {
        // Service names are asked as given, not with the search domains first.
        options.push("ndots:0".into());
    }
    HostConfig {
        network_mode: Some("none".into()),
        dns: if on_overlay {
            Some(vec![crate::dns::RESOLVER.to_string()])
        } else {
            some_vec(&dns.nameservers)
        },
        dns_search: some_vec(&dns.search),
        dns_options: some_vec(&options),
        memory: (limits.memory_bytes > 0).then_some(limits.memory_bytes),
        nano_cpus: (limits.nano_cpus > 0).then_some(limits.nano_cpus),
        pids_limit: (limits.pids > 0).then_some(limits.pids),
        ulimits: (!c.ulimits.is_empty()).then(|| {
            c.ulimits
                .iter()
                .map(|u| ResourcesUlimits {
                    name: Some(u.name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect()
        }),
        oom_score_adj: (c.oom_score_adj != 0).then_some(c.oom_score_adj),
        mounts: (!c.mounts.is_empty()).then(|| c.mounts.iter().map(mount).collect()),
        cap_add: some_vec(&c.capability_add),
        cap_drop: some_vec(&c.capability_drop),
        init: c.init,
        readonly_rootfs: c.read_only.then_some(true),
        sysctls: some_map(&c.sysctls),
        extra_hosts: (!c.hosts.is_empty()).then(|| extra_hosts(&c.hosts)),
        group_add: some_vec(&c.groups),
        security_opt: c
            .privileges
            .as_ref()
            .map(shoal_proto::Privileges::security_opts)
            .filter(|o| !o.is_empty()),
        log_config: spec.log_driver.map(|d| HostConfigLogConfig {
            typ: Some(d.name),
            config: some_map(&d.options),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{
        BindOptions, ContainerSpec, DnsConfig, Driver, NetworkAttachment, TaskSpec, TmpfsOptions,
    };

    fn task(c: ContainerSpec) -> Task {
        Task {
            spec: Some(TaskSpec {
                container: Some(c),
                log_driver: Some(Driver {
                    name: "json-file".into(),
                    options: [("max-size".to_string(), "1m".to_string())].into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn settings_become_dockerds() {
        let c = ContainerSpec {
            mounts: vec![
                shoal_proto::Mount {
                    r#type: Kind::Bind as i32,
                    source: "/srv/data".into(),
                    target: "/data".into(),
                    read_only: true,
                    bind: Some(BindOptions {
                        propagation: "rslave".into(),
                        non_recursive: false,
                    }),
                    ..Default::default()
                },
                shoal_proto::Mount {
                    r#type: Kind::Tmpfs as i32,
                    target: "/scratch".into(),
                    tmpfs: Some(TmpfsOptions {
                        size_bytes: 1 << 20,
                        mode: 0o700,
                    }),
                    ..Default::default()
                },
            ],
            capability_add: vec!["CAP_NET_ADMIN".into()],
            init: Some(false),
            hosts: vec!["10.0.0.1 db db.local".into()],
            dns_config: Some(DnsConfig {
                nameservers: vec!["192.0.2.53".into()],
                search: vec!["example.org".into()],
                options: vec![],
            }),
            ..Default::default()
        };
        let h = host_config(&task(c));
        let mounts = h.mounts.unwrap();
        assert_eq!(mounts[0].typ, Some(MountType::BIND));
        assert_eq!(mounts[0].read_only, Some(true));
        assert_eq!(
            mounts[0].bind_options.as_ref().unwrap().propagation,
            Some(bollard::models::MountBindOptionsPropagationEnum::RSLAVE)
        );
        assert!(mounts[0].tmpfs_options.is_none());
        let tmpfs = mounts[1].tmpfs_options.as_ref().unwrap();
        assert_eq!((tmpfs.size_bytes, tmpfs.mode), (Some(1 << 20), Some(0o700)));
        assert_eq!(h.cap_add, Some(vec!["CAP_NET_ADMIN".into()]));
        assert_eq!(h.init, Some(false));
        assert_eq!(
            h.extra_hosts,
            Some(vec!["db:10.0.0.1".into(), "db.local:10.0.0.1".into()])
        );
        // Off any overlay, the task asks its own nameservers.
        assert_eq!(h.dns, Some(vec!["192.0.2.53".into()]));
        assert_eq!(h.dns_search, Some(vec!["example.org".into()]));
        assert_eq!(h.dns_options, None);
        assert_eq!(h.log_config.unwrap().typ.as_deref(), Some("json-file"));
        assert_eq!(h.readonly_rootfs, None);
    }

    #[test]
    fn tasks_on_overlays_ask_the_nodes_resolver() {
        let mut t = task(ContainerSpec {
            dns_config: Some(DnsConfig {
                nameservers: vec!["192.0.2.53".into()],
                search: vec![],
                options: vec!["timeout:1".into()],
            }),
            ..Default::default()
        });
        t.networks.push(NetworkAttachment::default());
        let h = host_config(&t);
        assert_eq!(h.dns, Some(vec!["127.0.0.11".into()]));
        assert_eq!(
            h.dns_options,
            Some(vec!["timeout:1".into(), "ndots:0".into()])
        );
    }
}

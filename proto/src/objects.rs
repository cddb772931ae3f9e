//! Plain accessors on the stored objects: what every layer asks of a task, a service or
//! a network, written once here instead of once per crate.

use crate::{
    Annotations, ContainerSpec, Network, Node, ReplicatedService, Service, ServiceSpec, Task,
    TaskSpec, TaskState, service_spec,
};

impl crate::Privileges {
    /// The privileges as dockerd's security options (what swarmkit's executor gives a
    /// container): SELinux labels, seccomp, AppArmor, no-new-privileges.
    pub fn security_opts(&self) -> Vec<String> {
        let mut opts = Vec::new();
        if let Some(l) = &self.selinux {
            if l.disable {
                opts.push("label=disable".to_string());
            }
            for (key, value) in [
                ("user", &l.user),
                ("role", &l.role),
                ("type", &l.r#type),
                ("level", &l.level),
            ] {
                if !value.is_empty() {
                    opts.push(format!("label={key}:{value}"));
                }
            }
        }
        match self.seccomp_mode.as_str() {
            "unconfined" => opts.push("seccomp=unconfined".into()),
            "custom" => opts.push(format!(
                "seccomp={}",
                String::from_utf8_lossy(&self.seccomp_profile)
            )),
            _ => {}
        }
        if self.apparmor_mode == "disabled" {
            opts.push("apparmor=unconfined".into());
        }
        if self.no_new_privileges {
            opts.push("no-new-privileges=true".into());
        }
        opts
    }
}

impl TaskState {
    /// Complete, shut down, failed, rejected, ...: the task will not run again.
    pub fn is_terminal(self) -> bool {
        self >= TaskState::Complete
    }
}

impl Task {
    /// The state the task's agent last reported.
    pub fn current_state(&self) -> TaskState {
        self.status
            .as_ref()
            .map(super::pb::TaskStatus::state)
            .unwrap_or_default()
    }

    /// Whether the task is over for good: told to stop (or a job's task that completed,
    /// told to stay complete) and stopped.
    pub fn is_done(&self) -> bool {
        self.desired_state() >= TaskState::Complete && self.current_state().is_terminal()
    }

    /// Whether the task still holds its network addresses: all but one that is done
    /// (its addresses may then be handed to another).
    pub fn holds_addresses(&self) -> bool {
        !self.is_done()
    }

    /// The container a network-attachment task connects, if this is one.
    pub fn attached_container(&self) -> Option<&str> {
        self.spec
            .as_ref()?
            .attachment
            .as_ref()
            .map(|a| a.container.as_str())
    }
}

impl Service {
    /// The service's name ("" while it has no spec).
    pub fn name(&self) -> &str {
        name_in(self.spec.as_ref().and_then(|s| s.annotations.as_ref()))
    }
}

impl ServiceSpec {
    /// A replicated or global job: its tasks run to completion.
    pub fn is_job(&self) -> bool {
        matches!(
            self.mode,
            Some(service_spec::Mode::ReplicatedJob(_) | service_spec::Mode::GlobalJob(_))
        )
    }

    /// A replicated service of `replicas` tasks of `image`, every other setting at its
    /// default (what `service create --name NAME --replicas N IMAGE` asks for).
    pub fn replicated(name: &str, image: &str, replicas: u64) -> ServiceSpec {
        ServiceSpec {
            annotations: Some(Annotations {
                name: name.into(),
                ..Default::default()
            }),
            task: Some(TaskSpec {
                container: Some(ContainerSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            mode: Some(service_spec::Mode::Replicated(ReplicatedService {
                replicas,
            })),
            ..Default::default()
        }
    }
}

impl Network {
    /// The network's name ("" while it has no spec).
    pub fn name(&self) -> &str {
        name_in(self.spec.as_ref().and_then(|s| s.annotations.as_ref()))
    }
}

impl Node {
    /// The hostname the node reported ("" before it has).
    pub fn hostname(&self) -> &str {
        self.description
            .as_ref()
            .map_or("", |d| d.hostname.as_str())
    }
}

impl crate::Secret {
    /// The secret's name ("" while it has no spec).
    pub fn name(&self) -> &str {
        name_in(self.spec.as_ref().and_then(|s| s.annotations.as_ref()))
    }

    /// The secret as anyone but its task's agent sees it: without its data.
    #[must_use]
    pub fn without_data(mut self) -> Self {
        if let Some(spec) = self.spec.as_mut() {
            spec.data.clear();
        }
        self
    }
}

impl std::fmt::Debug for crate::SecretSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSpec")
            .field("annotations", &self.annotations)
            .field(
                "data",
                &format_args!("<{} bytes, redacted>", self.data.len()),
            )
            .field("driver", &self.driver)
            .field("templating", &self.templating)
            .finish()
    }
}

impl std::fmt::Debug for crate::Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let root = self.root_ca.as_ref();
        f.debug_struct("Cluster")
            .field("id", &self.id)
            .field("meta", &self.meta)
            .field("spec", &self.spec)
            .field("ca_cert_digest", &root.map(|r| r.ca_cert_digest.as_str()))
            .field("removed_nodes", &self.removed_nodes)
            .field(
                "network_keys",
                &format_args!("<{} redacted>", self.network_keys.len()),
            )
            .field(
                "autolock_key",
                &format_args!("<{} bytes, redacted>", self.unlock_key.len()),
            )
            .finish_non_exhaustive()
    }
}

impl crate::Config {
    /// The config's name ("" while it has no spec).
    pub fn name(&self) -> &str {
        name_in(self.spec.as_ref().and_then(|s| s.annotations.as_ref()))
    }
}

fn name_in(annotations: Option<&Annotations>) -> &str {
    annotations.map_or("", |a| a.name.as_str())
}

impl crate::DnsConfig {
    /// Nothing set: the engine's defaults.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty() && self.search.is_empty() && self.options.is_empty()
    }
}

impl crate::BindOptions {
    /// The mount propagations docker knows (empty: rprivate).
    pub const PROPAGATIONS: &'static [&'static str] = &[
        "private", "rprivate", "shared", "rshared", "slave", "rslave",
    ];
}

impl TaskSpec {
    /// The settings only a container engine can give a task, by their Engine API names:
    /// what a runtime without one must refuse rather than ignore.
    pub fn engine_settings(&self) -> Vec<&'static str> {
        let c = self.container.clone().unwrap_or_default();
        [
            ("Mounts", !c.mounts.is_empty()),
            ("CapabilityAdd", !c.capability_add.is_empty()),
            ("CapabilityDrop", !c.capability_drop.is_empty()),
            // Init false (what the docker CLI sends by default) is what runtimes do anyway.
            ("Init", c.init == Some(true)),
            ("ReadOnly", c.read_only),
            ("Sysctls", !c.sysctls.is_empty()),
            ("TTY", c.tty),
            ("OpenStdin", c.open_stdin),
            ("Hosts", !c.hosts.is_empty()),
            ("DNSConfig", !c.dns_config.unwrap_or_default().is_empty()),
            ("Groups", !c.groups.is_empty()),
            ("Privileges", c.privileges.is_some()),
            ("Ulimits", !c.ulimits.is_empty()),
            ("OomScoreAdj", c.oom_score_adj != 0),
            (
                "Resources.Limits.Pids",
                self.resources
                    .and_then(|r| r.limits)
                    .is_some_and(|l| l.pids > 0),
            ),
            ("LogDriver", self.log_driver.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::{Cluster, NetworkKey, RootCa, SecretSpec};

    #[test]
    fn keys_and_secret_data_never_show_in_debug() {
        let cluster = Cluster {
            id: "c1".into(),
            root_ca: Some(RootCa {
                ca_key_pem: "-----BEGIN PRIVATE KEY-----".into(),
                ca_cert_digest: "sha256:abc".into(),
                ..Default::default()
            }),
            network_keys: vec![NetworkKey {
                id: 1,
                key: b"gossip-key-bytes".to_vec(),
                created_unix_nanos: 0,
            }],
            unlock_key: b"unlock-key-bytes".to_vec(),
            ..Default::default()
        };
        let shown = format!("{cluster:?}");
        assert!(
            shown.contains("c1") && shown.contains("sha256:abc"),
            "{shown}"
        );
        for secret in ["PRIVATE KEY", "103, 111", "117, 110"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        let spec = SecretSpec {
            data: b"hush".to_vec(),
            ..Default::default()
        };
        assert!(
            !format!("{spec:?}").contains("104, 117"),
            "the bytes of hush"
        );
    }
}

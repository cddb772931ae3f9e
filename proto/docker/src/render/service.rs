//! Services as the Docker Engine API shows them, and `service inspect --pretty`.

use serde_json::{Value, json};
use shoal_proto::docker_names::name_of;
use shoal_proto::service_spec::Mode;
use shoal_proto::{
    EndpointMode, PublishMode, RestartCondition, Service, ServiceSpec, TaskSpec, UpdateConfig,
    UpdateFailureAction, UpdateOrder, UpdateState,
};

use crate::text::rfc3339;

/// An update's state as the Engine API spells it.
fn update_state_name(state: UpdateState) -> &'static str {
    match state {
        UpdateState::Unknown => "",
        UpdateState::Updating => "updating",
        UpdateState::Paused => "paused",
        UpdateState::Completed => "completed",
        UpdateState::RollbackStarted => "rollback_started",
        UpdateState::RollbackPaused => "rollback_paused",
        UpdateState::RollbackCompleted => "rollback_completed",
    }
}

/// Drops what Go's `omitempty` drops from an object and the objects inside it: null,
/// false, 0, "", [] and {}; except `kept`, fields dockerd always writes (no omitempty,
/// or a pointer that is set).
fn omit_empty(v: Value, kept: &[&str]) -> Value {
    fn empty(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::Bool(b) => !b,
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
        }
    }
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, omit_empty(v, kept)))
                .filter(|(k, v)| kept.contains(&k.as_str()) || !empty(v))
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| omit_empty(v, kept)).collect())
        }
        other => other,
    }
}

/// A float32 as Go prints it: its shortest decimal (0.4, not 0.4000000059604645).
fn float32(f: f32) -> Value {
    f.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

fn update_json(c: &UpdateConfig) -> Value {
    let doc = json!({
        "Parallelism": c.parallelism,
        "Delay": c.delay_nanos,
        "FailureAction": name_of::<UpdateFailureAction>(c.failure_action),
        "Monitor": c.monitor_nanos,
        "MaxFailureRatio": float32(c.max_failure_ratio),
        "Order": name_of::<UpdateOrder>(c.order),
    });
    omit_empty(doc, &["Parallelism", "MaxFailureRatio", "Order"])
}

/// A task template (TaskSpec) as the Engine API shows it: what Go omits when empty is
/// left out.
pub fn task_spec_json(task: &TaskSpec) -> Value {
    let c = task.container.clone().unwrap_or_default();
    let res = task.resources.unwrap_or_default();
    let restart = task.restart.unwrap_or_default();
    let placement = task.placement.clone().unwrap_or_default();
    let healthcheck = c.healthcheck.as_ref().map(|h| {
        json!({
            "Test": h.test,
            "Interval": h.interval_nanos,
            "Timeout": h.timeout_nanos,
            "StartPeriod": h.start_period_nanos,
            "Retries": h.retries,
        })
    });
    let values = |v: Option<shoal_proto::ResourceValues>| {
        v.map(|v| json!({"NanoCPUs": v.nano_cpus, "MemoryBytes": v.memory_bytes, "Pids": v.pids}))
    };
    let doc = json!({
        "ContainerSpec": {
            "Image": c.image,
            "Labels": c.labels,
            "Command": c.command,
            "Args": c.args,
            "Hostname": c.hostname,
            "Env": c.env,
            "Dir": c.dir,
            "User": c.user,
            "StopSignal": c.stop_signal,
            "StopGracePeriod": c.stop_grace_period_nanos,
            "Healthcheck": healthcheck,
            "Mounts": c.mounts.iter().map(mount_json).collect::<Vec<_>>(),
            "CapabilityAdd": c.capability_add,
            "CapabilityDrop": c.capability_drop,
            "ReadOnly": c.read_only,
            "Sysctls": c.sysctls,
            "TTY": c.tty,
            "OpenStdin": c.open_stdin,
            "Hosts": c.hosts,
            "DNSConfig": c.dns_config.as_ref().map(|d| json!({
                "Nameservers": d.nameservers,
                "Search": d.search,
                "Options": d.options,
            })),
            "Groups": c.groups,
            "Privileges": c.privileges.as_ref().map(privileges_json),
            "Ulimits": c.ulimits.iter().map(|u| json!({"Name": u.name, "Soft": u.soft, "Hard": u.hard})).collect::<Vec<_>>(),
            "OomScoreAdj": c.oom_score_adj,
            "Secrets": c.secrets.iter().map(|r| json!({
                "File": r.file.as_ref().map(file_json),
                "SecretID": r.secret_id,
                "SecretName": r.secret_name,
            })).collect::<Vec<_>>(),
            "Configs": c.configs.iter().map(|r| json!({
                "File": r.file.as_ref().map(file_json),
                "ConfigID": r.config_id,
                "ConfigName": r.config_name,
            })).collect::<Vec<_>>(),
        },
        "Resources": {
            "Limits": values(res.limits),
            "Reservations": values(res.reservations),
        },
        "RestartPolicy": {
            "Condition": name_of::<RestartCondition>(restart.condition),
            "Delay": restart.delay_nanos,
            "MaxAttempts": restart.max_attempts,
            "Window": restart.window_nanos,
        },
        "Placement": {
            "Constraints": placement.constraints,
            "Preferences": placement.preferences.iter().map(|p| json!({"Spread": {"SpreadDescriptor": p.spread_descriptor}})).collect::<Vec<_>>(),
            "MaxReplicas": placement.max_replicas,
            "Platforms": placement.platforms.iter().map(|p| json!({"Architecture": p.architecture, "OS": p.os})).collect::<Vec<_>>(),
        },
        "LogDriver": task.log_driver.as_ref().map(|d| json!({"Name": d.name, "Options": d.options})),
        "Networks": task.networks.iter().map(|n| json!({"Target": n.target, "Aliases": n.aliases})).collect::<Vec<_>>(),
        "ForceUpdate": task.force_update,
    });
    // RestartPolicy's Delay and MaxAttempts are pointers swarmkit always sets.
    let mut doc = omit_empty(
        doc,
        &[
            "ForceUpdate",
            "Delay",
            "MaxAttempts",
            "Spread",
            "SpreadDescriptor",
        ],
    );
    // Init is a pointer: false when set, absent when left to the engine.
    if let Some(init) = c.init {
        doc["ContainerSpec"]["Init"] = json!(init);
    }
    doc
}

fn file_json(f: &shoal_proto::FileTarget) -> Value {
    json!({"Name": f.name, "UID": f.uid, "GID": f.gid, "Mode": f.mode})
}

fn privileges_json(p: &shoal_proto::Privileges) -> Value {
    use base64::Engine;
    json!({
        "SELinuxContext": p.selinux.as_ref().map(|l| json!({
            "Disable": l.disable, "User": l.user, "Role": l.role, "Type": l.r#type, "Level": l.level,
        })),
        "Seccomp": {
            "Mode": p.seccomp_mode,
            "Profile": base64::engine::general_purpose::STANDARD.encode(&p.seccomp_profile),
        },
        "AppArmor": {"Mode": p.apparmor_mode},
        "NoNewPrivileges": p.no_new_privileges,
    })
}

fn mount_json(m: &shoal_proto::Mount) -> Value {
    let volume = m.volume.as_ref().map(|v| {
        json!({
            "NoCopy": v.no_copy,
            "Labels": v.labels,
            "DriverConfig": v.driver.as_ref().map(|d| json!({"Name": d.name, "Options": d.options})),
        })
    });
    json!({
        "Type": name_of::<shoal_proto::MountType>(m.r#type),
        "Source": m.source,
        "Target": m.target,
        "ReadOnly": m.read_only,
        "Consistency": m.consistency,
        "BindOptions": m.bind.as_ref().map(|b| json!({"Propagation": b.propagation, "NonRecursive": b.non_recursive})),
        "VolumeOptions": volume,
        "TmpfsOptions": m.tmpfs.map(|t| json!({"SizeBytes": t.size_bytes, "Mode": t.mode})),
    })
}

pub fn spec_json(spec: &ServiceSpec) -> Value {
    let endpoint = spec.endpoint.clone().unwrap_or_default();
    let mode = match spec.mode {
        Some(Mode::Global(_)) => json!({"Global": {}}),
        Some(Mode::Replicated(r)) => json!({"Replicated": {"Replicas": r.replicas}}),
        Some(Mode::ReplicatedJob(j)) => json!({"ReplicatedJob": {
            "MaxConcurrent": j.max_concurrent,
            "TotalCompletions": j.total_completions,
        }}),
        Some(Mode::GlobalJob(_)) => json!({"GlobalJob": {}}),
        None => json!({}),
    };
    let mut doc = json!({
        "Name": spec.annotations.as_ref().map(|a| a.name.clone()).unwrap_or_default(),
        "Labels": spec.annotations.as_ref().map(|a| a.labels.clone()).unwrap_or_default(),
        "TaskTemplate": task_spec_json(&spec.task.clone().unwrap_or_default()),
        "Mode": mode,
        "EndpointSpec": omit_empty(json!({
            "Mode": name_of::<EndpointMode>(endpoint.mode),
            "Ports": endpoint.ports.iter().map(port_json).collect::<Vec<_>>(),
        }), &[]),
    });
    if let Some(u) = &spec.update {
        doc["UpdateConfig"] = update_json(u);
    }
    if let Some(r) = &spec.rollback {
        doc["RollbackConfig"] = update_json(r);
    }
    doc
}

/// What `service inspect --insertDefaults` (`docker service inspect` does not ask; SDKs
/// may) shows for settings left unset: swarmkit's defaults, which the managers apply.
pub fn with_defaults(mut spec: ServiceSpec) -> ServiceSpec {
    let default_update = UpdateConfig {
        parallelism: 1,
        failure_action: UpdateFailureAction::Pause as i32,
        monitor_nanos: 5_000_000_000,
        order: UpdateOrder::StopFirst as i32,
        ..UpdateConfig::default()
    };
    spec.update.get_or_insert(default_update);
    spec.rollback.get_or_insert(default_update);
    let task = spec.task.get_or_insert_default();
    let container = task.container.get_or_insert_default();
    if container.stop_grace_period_nanos == 0 {
        container.stop_grace_period_nanos = 10_000_000_000;
    }
    spec
}

pub fn port_json(p: &shoal_proto::PortConfig) -> Value {
    omit_empty(
        json!({
            "Protocol": p.protocol,
            "TargetPort": p.target_port,
            "PublishedPort": p.published_port,
            "PublishMode": name_of::<PublishMode>(p.publish_mode),
        }),
        &[],
    )
}

/// The ports as allocated (every ingress port numbered), else as asked for.
pub fn allocated_ports(s: &Service) -> Vec<shoal_proto::PortConfig> {
    match &s.endpoint {
        Some(e) => e.ports.clone(),
        None => s
            .spec
            .as_ref()
            .and_then(|s| s.endpoint.as_ref())
            .map(|e| e.ports.clone())
            .unwrap_or_default(),
    }
}

pub fn engine_json(s: &Service) -> Value {
    let meta = s.meta.unwrap_or_default();
    let mut doc = json!({
        "ID": s.id,
        "Version": {"Index": meta.version.map(|v| v.index).unwrap_or_default()},
        "CreatedAt": rfc3339(meta.created_at_unix_nanos),
        "UpdatedAt": rfc3339(meta.updated_at_unix_nanos),
        "Spec": spec_json(&s.spec.clone().unwrap_or_default()),
    });
    if let Some(e) = &s.endpoint {
        let spec = e.spec.clone().unwrap_or_default();
        doc["Endpoint"] = json!({
            "Spec": {
                "Mode": name_of::<EndpointMode>(spec.mode),
                "Ports": spec.ports.iter().map(port_json).collect::<Vec<_>>(),
            },
            "Ports": e.ports.iter().map(port_json).collect::<Vec<_>>(),
            "VirtualIPs": e.virtual_ips.iter().map(|v| json!({"NetworkID": v.network_id, "Addr": v.addr})).collect::<Vec<_>>(),
        });
    }
    if let Some(prev) = &s.previous_spec {
        doc["PreviousSpec"] = spec_json(prev);
    }
    if s.job_iteration > 0 {
        doc["JobStatus"] = json!({
            "JobIteration": {"Index": s.job_iteration},
            "LastExecution": rfc3339(s.job_last_execution_unix_nanos),
        });
    }
    if let Some(u) = &s.update_status {
        doc["UpdateStatus"] = json!({
            "State": update_state_name(u.state()),
            "StartedAt": rfc3339(u.started_at_unix_nanos),
            "CompletedAt": rfc3339(u.completed_at_unix_nanos),
            "Message": u.message,
        });
    }
    doc
}

fn secs(nanos: i64) -> String {
    format!("{}s", nanos as f64 / 1e9)
}

pub fn pretty(s: &Service) -> String {
    let spec = s.spec.clone().unwrap_or_default();
    let task = spec.task.clone().unwrap_or_default();
    let c = task.container.clone().unwrap_or_default();
    let mut out = String::new();
    let mut line = |l: String| {
        out.push_str(&l);
        out.push('\n');
    };
    line(format!("\nID:\t\t{}", s.id));
    line(format!(
        "Name:\t\t{}",
        spec.annotations.as_ref().map_or("", |a| a.name.as_str())
    ));
    let labels = spec
        .annotations
        .as_ref()
        .map(|a| a.labels.clone())
        .unwrap_or_default();
    if !labels.is_empty() {
        line("Labels:".into());
        for (k, v) in &labels {
            line(format!(" {k}={v}"));
        }
    }
    match spec.mode {
        Some(Mode::Global(_)) => line("Service Mode:\tGlobal".into()),
        Some(Mode::Replicated(r)) => {
            line("Service Mode:\tReplicated".into());
            line(format!(" Replicas:\t{}", r.replicas));
        }
        Some(Mode::ReplicatedJob(j)) => {
            line("Service Mode:\tReplicated Job".into());
            line(format!(" Max Concurrent:\t{}", j.max_concurrent));
            line(format!(" Total Completions:\t{}", j.total_completions));
        }
        Some(Mode::GlobalJob(_)) => line("Service Mode:\tGlobal Job".into()),
        None => {}
    }
    if let Some(u) = &s.update_status {
        line("UpdateStatus:".into());
        line(format!(" State:\t\t{}", update_state_name(u.state())));
        line(format!(" Message:\t{}", u.message));
    }
    let placement = task.placement.clone().unwrap_or_default();
    line("Placement:".into());
    if !placement.constraints.is_empty() {
        line(format!(
            " Constraints:\t[{}]",
            placement.constraints.join(" ")
        ));
    }
    if placement.max_replicas > 0 {
        line(format!(
            " Max Replicas Per Node:\t{}",
            placement.max_replicas
        ));
    }
    for (name, cfg) in [
        ("UpdateConfig", spec.update),
        ("RollbackConfig", spec.rollback),
    ] {
        let cfg = cfg.unwrap_or_default();
        line(format!("{name}:"));
        line(format!(" Parallelism:\t{}", cfg.parallelism));
        if cfg.delay_nanos > 0 {
            line(format!(" Delay:\t\t{}", secs(cfg.delay_nanos)));
        }
        line(format!(
            " On failure:\t{}",
            name_of::<UpdateFailureAction>(cfg.failure_action)
        ));
        line(format!(" Monitoring Period: {}", secs(cfg.monitor_nanos)));
        line(format!(" Max failure ratio: {}", cfg.max_failure_ratio));
        line(format!(
            " Update order:      {}",
            name_of::<UpdateOrder>(cfg.order)
        ));
    }
    line("ContainerSpec:".into());
    line(format!(" Image:\t\t{}", c.image));
    if !c.args.is_empty() {
        line(format!(" Args:\t\t{}", c.args.join(" ")));
    }
    if !c.env.is_empty() {
        line(format!(" Env:\t\t{}", c.env.join(" ")));
    }
    if let Some(init) = c.init {
        line(format!(" Init:\t\t{init}"));
    }
    if !c.mounts.is_empty() {
        line("Mounts:".into());
    }
    for m in &c.mounts {
        line(format!(" Target:\t{}", m.target));
        line(format!("  Source:\t{}", m.source));
        line(format!("  ReadOnly:\t{}", m.read_only));
        line(format!(
            "  Type:\t\t{}",
            name_of::<shoal_proto::MountType>(m.r#type)
        ));
    }
    if !c.secrets.is_empty() {
        line("Secrets:".into());
    }
    for r in &c.secrets {
        let target = r.file.as_ref().map_or("", |f| f.name.as_str());
        line(format!(" Target:\t{target}"));
        line(format!("  Source:\t{}", r.secret_name));
    }
    if !c.configs.is_empty() {
        line("Configs:".into());
    }
    for r in &c.configs {
        let target = r.file.as_ref().map_or("", |f| f.name.as_str());
        line(format!(" Target:\t{target}"));
        line(format!("  Source:\t{}", r.config_name));
    }
    if !(c.capability_add.is_empty() && c.capability_drop.is_empty()) {
        line("Capabilities:".into());
        if !c.capability_add.is_empty() {
            line(format!(" Add: {}", c.capability_add.join(", ")));
        }
        if !c.capability_drop.is_empty() {
            line(format!(" Drop: {}", c.capability_drop.join(", ")));
        }
    }
    if let Some(d) = &task.log_driver {
        line("Log Driver:".into());
        line(format!(" Name:\t\t{}", d.name));
        if !d.options.is_empty() {
            line(" LogOpts:".into());
            let options: std::collections::BTreeMap<_, _> = d.options.iter().collect();
            for (k, v) in options {
                line(format!("  {k}:\t\t{v}"));
            }
        }
    }
    let res = task.resources.unwrap_or_default();
    let (limits, reservations) = (
        res.limits.unwrap_or_default(),
        res.reservations.unwrap_or_default(),
    );
    if limits.nano_cpus + limits.memory_bytes + reservations.nano_cpus + reservations.memory_bytes
        > 0
    {
        line("Resources:".into());
        for (name, v) in [("Reservations", reservations), ("Limits", limits)] {
            if v.nano_cpus + v.memory_bytes > 0 {
                line(format!(" {name}:"));
                if v.nano_cpus > 0 {
                    line(format!("  CPU:\t\t{}", v.nano_cpus as f64 / 1e9));
                }
                if v.memory_bytes > 0 {
                    line(format!("  Memory:\t{}MiB", v.memory_bytes >> 20));
                }
            }
        }
    }
    let endpoint = spec.endpoint.unwrap_or_default();
    line(format!(
        "Endpoint Mode:\t{}",
        name_of::<EndpointMode>(endpoint.mode)
    ));
    let ports = allocated_ports(s);
    if !ports.is_empty() {
        line("Ports:".into());
        for p in &ports {
            line(format!(" PublishedPort = {}", p.published_port));
            line(format!("  Protocol = {}", p.protocol));
            line(format!("  TargetPort = {}", p.target_port));
            line(format!(
                "  PublishMode = {}",
                name_of::<PublishMode>(p.publish_mode)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use shoal_proto::{HealthConfig, NetworkAttachmentConfig};

    use super::*;

    fn spec() -> ServiceSpec {
        let mut spec = ServiceSpec::replicated("web", "shoal/demo-web", 0);
        let task = spec.task.as_mut().unwrap();
        task.container.as_mut().unwrap().healthcheck = Some(HealthConfig {
            test: vec!["CMD".into(), "true".into()],
            retries: 3,
            ..Default::default()
        });
        task.networks = vec![NetworkAttachmentConfig {
            target: "net1".into(),
            aliases: vec![],
        }];
        spec.update = Some(UpdateConfig {
            parallelism: 0,
            max_failure_ratio: 0.4,
            ..Default::default()
        });
        spec
    }

    #[test]
    fn what_dockerd_leaves_out_is_left_out_and_what_it_writes_is_written() {
        let doc = spec_json(&spec());
        let task = &doc["TaskTemplate"];
        assert_eq!(
            task["Networks"],
            json!([{"Target": "net1"}]),
            "no Aliases: []"
        );
        assert!(
            task.get("Placement").is_none(),
            "no empty Constraints, Preferences, MaxReplicas"
        );
        assert!(task.get("Resources").is_none());
        assert_eq!(task["ForceUpdate"], 0, "ForceUpdate has no omitempty");
        let container = &task["ContainerSpec"];
        assert_eq!(
            container["Healthcheck"],
            json!({"Test": ["CMD", "true"], "Retries": 3})
        );
        assert!(container.get("HealthCheck").is_none() && container.get("Args").is_none());
        assert_eq!(doc["Mode"], json!({"Replicated": {"Replicas": 0}}));
        let update = &doc["UpdateConfig"];
        assert_eq!(update["Parallelism"], 0);
        assert_eq!(
            update["MaxFailureRatio"].to_string(),
            "0.4",
            "a float32 as Go prints it"
        );
        assert!(doc.get("RollbackConfig").is_none());
        let global = ServiceSpec {
            mode: Some(Mode::Global(shoal_proto::GlobalService {})),
            ..spec()
        };
        assert_eq!(spec_json(&global)["Mode"], json!({"Global": {}}));
    }

    #[test]
    fn insert_defaults_fills_what_the_managers_default() {
        let mut bare = spec();
        bare.update = None;
        let doc = spec_json(&with_defaults(bare));
        assert_eq!(doc["UpdateConfig"]["Parallelism"], 1);
        assert_eq!(doc["UpdateConfig"]["FailureAction"], "pause");
        assert_eq!(doc["RollbackConfig"]["Order"], "stop-first");
        assert_eq!(
            doc["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"],
            10_000_000_000_i64
        );
        // What was set stays as set.
        assert_eq!(
            spec_json(&with_defaults(spec()))["UpdateConfig"]["Parallelism"],
            0
        );
    }
}

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

fn update_json(c: Option<&UpdateConfig>) -> Value {
    let c = c.copied().unwrap_or_default();
    json!({
        "Parallelism": c.parallelism,
        "Delay": c.delay_nanos,
        "FailureAction": name_of::<UpdateFailureAction>(c.failure_action),
        "Monitor": c.monitor_nanos,
        "MaxFailureRatio": c.max_failure_ratio,
        "Order": name_of::<UpdateOrder>(c.order),
    })
}

/// A task template (TaskSpec) as the Engine API shows it.
pub fn task_spec_json(task: &TaskSpec) -> Value {
    let c = task.container.clone().unwrap_or_default();
    let res = task.resources.unwrap_or_default();
    let restart = task.restart.unwrap_or_default();
    let placement = task.placement.clone().unwrap_or_default();
    let mut container = json!({
        "Image": c.image,
        "Command": c.command,
        "Args": c.args,
        "Env": c.env,
        "Hostname": c.hostname,
        "User": c.user,
        "Dir": c.dir,
        "Labels": c.labels,
        "StopSignal": c.stop_signal,
        "StopGracePeriod": c.stop_grace_period_nanos,
    });
    if let Some(h) = &c.healthcheck {
        container["HealthCheck"] = json!({
            "Test": h.test,
            "Interval": h.interval_nanos,
            "Timeout": h.timeout_nanos,
            "StartPeriod": h.start_period_nanos,
            "Retries": h.retries,
        });
    }
    json!({
        "ContainerSpec": container,
        "Resources": {
            "Limits": {"NanoCPUs": res.limits.unwrap_or_default().nano_cpus, "MemoryBytes": res.limits.unwrap_or_default().memory_bytes},
            "Reservations": {"NanoCPUs": res.reservations.unwrap_or_default().nano_cpus, "MemoryBytes": res.reservations.unwrap_or_default().memory_bytes},
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
        },
        "Networks": task.networks.iter().map(|n| json!({"Target": n.target, "Aliases": n.aliases})).collect::<Vec<_>>(),
        "ForceUpdate": task.force_update,
    })
}

pub fn spec_json(spec: &ServiceSpec) -> Value {
    let endpoint = spec.endpoint.clone().unwrap_or_default();
    let mode = match spec.mode {
        Some(Mode::Global(_)) => json!({"Global": {}}),
        Some(Mode::Replicated(r)) => json!({"Replicated": {"Replicas": r.replicas}}),
        None => json!({}),
    };
    json!({
        "Name": spec.annotations.as_ref().map(|a| a.name.clone()).unwrap_or_default(),
        "Labels": spec.annotations.as_ref().map(|a| a.labels.clone()).unwrap_or_default(),
        "TaskTemplate": task_spec_json(&spec.task.clone().unwrap_or_default()),
        "Mode": mode,
        "UpdateConfig": update_json(spec.update.as_ref()),
        "RollbackConfig": update_json(spec.rollback.as_ref()),
        "EndpointSpec": {
            "Mode": name_of::<EndpointMode>(endpoint.mode),
            "Ports": endpoint.ports.iter().map(port_json).collect::<Vec<_>>(),
        },
    })
}

pub fn port_json(p: &shoal_proto::PortConfig) -> Value {
    json!({
        "Protocol": p.protocol,
        "TargetPort": p.target_port,
        "PublishedPort": p.published_port,
        "PublishMode": name_of::<PublishMode>(p.publish_mode),
    })
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

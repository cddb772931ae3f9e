//! Checks a service spec before anything is written, with messages that say what is wrong.

use shoal_proto::service_spec::Mode;
use shoal_proto::{MAX_PORTS, MAX_REPLICAS, ServiceSpec, TaskSpec, check_count};

use super::{constraints, engine_settings};

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

pub fn validate(spec: &ServiceSpec) -> Result<(), String> {
    let name = spec.annotations.as_ref().map_or("", |a| a.name.as_str());
    if name.is_empty() {
        return Err("a service needs a name (--name)".into());
    }
    if !valid_name(name) {
        return Err(format!(
            "invalid service name {name:?}: use up to 63 letters, digits, '-', '_' or '.', starting with a letter or digit"
        ));
    }
    let task = spec.task.clone().unwrap_or_default();
    validate_task(&task)?;
    validate_counts(spec)?;
    match &spec.mode {
        None => return Err("the service mode is missing: replicated or global".into()),
        Some(Mode::Global(_) | Mode::GlobalJob(_) | Mode::ReplicatedJob(_))
            if task.placement.as_ref().is_some_and(|p| p.max_replicas > 0) =>
        {
            return Err("--replicas-max-per-node can only be used with replicated mode".into());
        }
        _ => {}
    }
    for (which, cfg) in [("update", &spec.update), ("rollback", &spec.rollback)] {
        if let Some(c) = cfg {
            if c.delay_nanos < 0 || c.monitor_nanos < 0 {
                return Err(format!(
                    "--{which}-delay and --{which}-monitor cannot be negative"
                ));
            }
            if !(0.0..=1.0).contains(&c.max_failure_ratio) {
                return Err(format!(
                    "--{which}-max-failure-ratio must be between 0 and 1"
                ));
            }
        }
    }
    if spec.is_job()
        && spec.endpoint.as_ref().is_some_and(|e| {
            e.ports
                .iter()
                .any(|p| p.publish_mode() == shoal_proto::PublishMode::Ingress)
        })
    {
        return Err(
            "a job cannot publish ports through the routing mesh (its tasks end): publish with mode=host, or use a replicated service".into(),
        );
    }
    if let Some(endpoint) = &spec.endpoint {
        let mut seen = std::collections::HashSet::new();
        for p in &endpoint.ports {
            if p.target_port == 0 || p.target_port > 65535 {
                return Err(format!(
                    "invalid target port {}: ports are 1 to 65535",
                    p.target_port
                ));
            }
            if p.published_port > 65535 {
                return Err(format!(
                    "invalid published port {}: ports are 1 to 65535",
                    p.published_port
                ));
            }
            if !["tcp", "udp"].contains(&p.protocol.as_str()) {
                return Err(format!(
                    "invalid protocol {:?}: use tcp or udp (the routing mesh balances only those)",
                    p.protocol
                ));
            }
            let host_mode = p.publish_mode() == shoal_proto::PublishMode::Host;
            if host_mode && p.published_port == 0 {
                return Err(format!(
                    "port {}/{} in mode=host needs a published port: give published=N",
                    p.target_port, p.protocol
                ));
            }
            if !host_mode && endpoint.mode() == shoal_proto::EndpointMode::Dnsrr {
                return Err(format!(
                    "port {}/{} is published in ingress mode, which needs endpoint mode vip: use --endpoint-mode vip or mode=host",
                    p.target_port, p.protocol
                ));
            }
            if p.published_port != 0 && !seen.insert((p.published_port, p.protocol.clone())) {
                return Err(format!(
                    "port {}/{} is published twice",
                    p.published_port, p.protocol
                ));
            }
        }
    }
    Ok(())
}

/// Every count against its limit, before anything is planned from it.
fn validate_counts(spec: &ServiceSpec) -> Result<(), String> {
    match &spec.mode {
        Some(Mode::Replicated(r)) => check_count("--replicas", r.replicas, MAX_REPLICAS)?,
        Some(Mode::ReplicatedJob(j)) => {
            check_count("--replicas", j.total_completions, MAX_REPLICAS)?;
            check_count("--max-concurrent", j.max_concurrent, MAX_REPLICAS)?;
        }
        _ => {}
    }
    let task = spec.task.as_ref();
    if let Some(p) = task.and_then(|t| t.placement.as_ref()) {
        check_count("--replicas-max-per-node", p.max_replicas, MAX_REPLICAS)?;
    }
    for (which, cfg) in [("update", &spec.update), ("rollback", &spec.rollback)] {
        if let Some(c) = cfg {
            check_count(
                &format!("--{which}-parallelism"),
                c.parallelism,
                MAX_REPLICAS,
            )?;
        }
    }
    if let Some(e) = &spec.endpoint {
        check_count(
            "the number of published ports",
            e.ports.len() as u64,
            MAX_PORTS as u64,
        )?;
    }
    Ok(())
}

fn validate_task(task: &TaskSpec) -> Result<(), String> {
    let container = task.container.clone().unwrap_or_default();
    if container.image.trim().is_empty() {
        return Err("the image is empty: give the image to run, e.g. shoal/demo-web:latest".into());
    }
    if container.image.chars().any(char::is_whitespace) {
        return Err(format!("invalid image reference {:?}", container.image));
    }
    if container.stop_grace_period_nanos < 0 {
        return Err("--stop-grace-period cannot be negative".into());
    }
    crate::secrets::check_owners(&container)?;
    for e in &container.env {
        if e.is_empty() || e.starts_with('=') {
            return Err(format!("invalid environment variable {e:?}: use KEY=VALUE"));
        }
    }
    let res = task.resources.unwrap_or_default();
    for (what, v) in [("limits", res.limits), ("reservations", res.reservations)] {
        let v = v.unwrap_or_default();
        if v.nano_cpus < 0 || v.memory_bytes < 0 {
            return Err(format!("resource {what} cannot be negative"));
        }
    }
    if let Some(r) = &task.restart
        && (r.delay_nanos < 0 || r.window_nanos < 0)
    {
        return Err("--restart-delay and --restart-window cannot be negative".into());
    }
    engine_settings::validate(task)?;
    if let Some(p) = &task.placement {
        constraints::parse_all(&p.constraints)?;
        for pref in &p.preferences {
            if !pref.spread_descriptor.starts_with("node.labels.") {
                return Err(format!(
                    "invalid placement preference {:?}: use spread=node.labels.<label>",
                    pref.spread_descriptor
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{EndpointSpec, Placement, PortConfig, ReplicatedService};

    fn spec() -> ServiceSpec {
        ServiceSpec::replicated("web", "shoal/demo-web", 1)
    }

    #[test]
    fn a_plain_spec_is_valid() {
        validate(&spec()).unwrap();
    }

    #[test]
    fn bad_specs_are_refused_with_reasons() {
        let mut s = spec();
        s.task.as_mut().unwrap().container.as_mut().unwrap().image = " ".into();
        assert!(validate(&s).unwrap_err().contains("image is empty"));

        let mut s = spec();
        s.annotations.as_mut().unwrap().name = "-bad".into();
        assert!(validate(&s).unwrap_err().contains("invalid service name"));

        let mut s = spec();
        s.task.as_mut().unwrap().placement = Some(Placement {
            constraints: vec!["node.role=manager".into()],
            ..Default::default()
        });
        assert!(validate(&s).unwrap_err().contains("malformed constraint"));

        for (published, target, why) in [
            (0, 0, "target port 0"),
            (70000, 80, "published port 70000"),
            (80, 70000, "target port 70000"),
        ] {
            let mut s = spec();
            s.endpoint = Some(EndpointSpec {
                ports: vec![PortConfig {
                    protocol: "tcp".into(),
                    target_port: target,
                    published_port: published,
                    ..Default::default()
                }],
                ..Default::default()
            });
            assert!(validate(&s).unwrap_err().contains(why), "{why}");
        }
    }

    #[test]
    fn absurd_counts_are_refused_naming_the_setting() {
        let mut s = spec();
        s.mode = Some(Mode::Replicated(ReplicatedService {
            replicas: 9_223_372_036_854_775_808,
        }));
        let e = validate(&s).unwrap_err();
        assert!(
            e.contains("--replicas 9223372036854775808") && e.contains("10000"),
            "{e}"
        );

        let mut s = spec();
        s.mode = Some(Mode::Replicated(ReplicatedService {
            replicas: MAX_REPLICAS,
        }));
        validate(&s).unwrap();

        let mut s = spec();
        s.task.as_mut().unwrap().placement = Some(Placement {
            max_replicas: u64::MAX,
            ..Default::default()
        });
        assert!(
            validate(&s)
                .unwrap_err()
                .contains("--replicas-max-per-node")
        );

        let mut s = spec();
        s.rollback = Some(shoal_proto::UpdateConfig {
            parallelism: MAX_REPLICAS + 1,
            ..Default::default()
        });
        assert!(validate(&s).unwrap_err().contains("--rollback-parallelism"));

        let mut s = spec();
        s.endpoint = Some(EndpointSpec {
            ports: (1..=1001)
                .map(|p| PortConfig {
                    protocol: "tcp".into(),
                    target_port: p,
                    published_port: p,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
        assert!(validate(&s).unwrap_err().contains("published ports"));
    }
}

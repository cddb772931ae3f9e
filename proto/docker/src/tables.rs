//! The tables docker prints for `node ls`, `service ls` and `service ps`.

use std::collections::HashMap;

use shoal_proto::service_spec::Mode;
use shoal_proto::{Node, Service, ServiceSpec, Task};

use crate::text::{ago, availability_name, reachability_name, state_name, table, task_state_name};

fn manager_status(n: &Node) -> String {
    match &n.manager_status {
        Some(ms) if ms.leader => "Leader".into(),
        Some(ms) => reachability_name(ms.reachability()).into(),
        None => String::new(),
    }
}

pub fn ls_table(nodes: &[Node], self_id: &str) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let id = if n.id == self_id {
                format!("{} *", n.id)
            } else {
                n.id.clone()
            };
            vec![
                id,
                n.hostname().to_string(),
                state_name(
                    n.status
                        .as_ref()
                        .map(shoal_proto::NodeStatus::state)
                        .unwrap_or_default(),
                )
                .to_string(),
                availability_name(
                    n.spec
                        .as_ref()
                        .map(shoal_proto::NodeSpec::availability)
                        .unwrap_or_default(),
                )
                .to_string(),
                manager_status(n),
                n.description
                    .as_ref()
                    .map(|d| d.engine_version.clone())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "HOSTNAME",
            "STATUS",
            "AVAILABILITY",
            "MANAGER STATUS",
            "ENGINE VERSION",
        ],
        &rows,
    )
}

/// `service ls` rows of the services `keep` accepts.
pub fn services_table(
    resp: &shoal_proto::ListServicesResponse,
    keep: impl Fn(&Service) -> bool,
) -> String {
    let rows: Vec<Vec<String>> = resp
        .services
        .iter()
        .filter(|s| keep(s))
        .map(|s| {
            let spec = s.spec.clone().unwrap_or_default();
            let count = |m: &HashMap<String, u64>| m.get(&s.id).copied().unwrap_or(0);
            let (running, desired) = (count(&resp.running), count(&resp.desired));
            let completed = count(&resp.completed);
            // As docker prints a job's progress: running/desired (completed/total completed).
            let (mode, replicas) = match &spec.mode {
                Some(Mode::Global(_)) => ("global", format!("{running}/{desired}")),
                Some(Mode::ReplicatedJob(j)) => (
                    "replicated job",
                    format!(
                        "{running}/{desired} ({completed}/{} completed)",
                        j.total_completions
                    ),
                ),
                Some(Mode::GlobalJob(_)) => (
                    "global job",
                    format!(
                        "{running}/{desired} ({completed}/{} completed)",
                        desired + completed
                    ),
                ),
                _ => ("replicated", format!("{running}/{desired}")),
            };
            vec![
                shoal_proto::ids::short(&s.id).to_string(),
                s.name().to_string(),
                mode.to_string(),
                replicas,
                image_of(&spec),
                ports_of(s),
            ]
        })
        .collect();
    table(&["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"], &rows)
}

pub fn image_of(spec: &ServiceSpec) -> String {
    spec.task
        .as_ref()
        .and_then(|t| t.container.as_ref())
        .map(|c| c.image.clone())
        .unwrap_or_default()
}

pub fn ports_of(s: &Service) -> String {
    crate::render::service::allocated_ports(s)
        .iter()
        .map(|p| {
            let published = if p.published_port == 0 {
                String::new()
            } else {
                p.published_port.to_string()
            };
            format!("*:{published}->{}/{}", p.target_port, p.protocol)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn task_display_name(t: &Task) -> String {
    if t.slot > 0 {
        format!("{}.{}", t.service_name, t.slot)
    } else {
        format!("{}.{}", t.service_name, t.node_id)
    }
}

pub fn ps_table(tasks: &[Task], node_names: &HashMap<String, String>, no_trunc: bool) -> String {
    let mut rows = Vec::new();
    let mut previous_name = String::new();
    for t in tasks {
        let name = task_display_name(t);
        let shown = if name == previous_name {
            format!(" \\_ {name}")
        } else {
            name.clone()
        };
        previous_name = name;
        let status = t.status.clone().unwrap_or_default();
        let mut err = status.err.clone();
        if !no_trunc && err.chars().count() > 30 {
            err = format!("{}…", err.chars().take(29).collect::<String>());
        }
        let id = if no_trunc {
            t.id.clone()
        } else {
            shoal_proto::ids::short(&t.id).to_string()
        };
        rows.push(vec![
            id,
            shown,
            t.spec
                .as_ref()
                .and_then(|s| s.container.as_ref())
                .map(|c| c.image.clone())
                .unwrap_or_default(),
            node_names.get(&t.node_id).cloned().unwrap_or_default(),
            task_state_name(t.desired_state()).to_string(),
            format!(
                "{} {}",
                task_state_name(status.state()),
                ago(status.timestamp_unix_nanos)
            ),
            if err.is_empty() {
                String::new()
            } else {
                format!("\"{err}\"")
            },
        ]);
    }
    table(
        &[
            "ID",
            "NAME",
            "IMAGE",
            "NODE",
            "DESIRED STATE",
            "CURRENT STATE",
            "ERROR",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{ManagerStatus, NodeDescription, NodeSpec, NodeState, NodeStatus};

    #[test]
    fn ls_marks_self_and_leader() {
        let node = |id: &str, host: &str, leader: Option<bool>| Node {
            id: id.into(),
            spec: Some(NodeSpec::default()),
            description: Some(NodeDescription {
                hostname: host.into(),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: NodeState::Ready as i32,
                ..Default::default()
            }),
            manager_status: leader.map(|l| ManagerStatus {
                leader: l,
                reachability: shoal_proto::Reachability::Reachable as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        let out = ls_table(
            &[
                node("aaa", "manager1", Some(true)),
                node("bbb", "worker1", None),
            ],
            "aaa",
        );
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("ID "));
        assert!(lines[0].contains("MANAGER STATUS"));
        assert!(lines[1].starts_with("aaa *"));
        assert!(lines[1].contains("Leader"));
        assert!(
            lines[2].contains("worker1")
                && lines[2].contains("Ready")
                && lines[2].contains("Active")
        );
    }
}

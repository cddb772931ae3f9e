//! Nodes as the Docker Engine API shows them, and `node inspect --pretty`.

use serde_json::json;
use shoal_proto::Node;

use crate::text::{availability_name, reachability_name, rfc3339, role_name, state_name};

/// A node as the Docker Engine API shows it.
pub fn engine_json(n: &Node) -> serde_json::Value {
    let meta = n.meta.unwrap_or_default();
    let spec = n.spec.clone().unwrap_or_default();
    let desc = n.description.clone().unwrap_or_default();
    let status = n.status.clone().unwrap_or_default();
    let mut doc = json!({
        "ID": n.id,
        "Version": {"Index": meta.version.map(|v| v.index).unwrap_or_default()},
        "CreatedAt": rfc3339(meta.created_at_unix_nanos),
        "UpdatedAt": rfc3339(meta.updated_at_unix_nanos),
        "Spec": {
            "Labels": spec.annotations.clone().map(|a| a.labels).unwrap_or_default(),
            "Role": role_name(spec.desired_role()),
            "Availability": availability_name(spec.availability()).to_lowercase(),
        },
        "Description": {
            "Hostname": desc.hostname,
            "Platform": {
                "Architecture": desc.platform.clone().unwrap_or_default().architecture,
                "OS": desc.platform.unwrap_or_default().os,
            },
            "Resources": {
                "NanoCPUs": desc.resources.unwrap_or_default().nano_cpus,
                "MemoryBytes": desc.resources.unwrap_or_default().memory_bytes,
            },
            "Engine": {"EngineVersion": desc.engine_version},
            "TLSInfo": desc.tls_info.as_ref().map(|t| crate::render::engine::tls_info_json(
                &t.trust_root_pem,
                &t.cert_issuer_subject,
                &t.cert_issuer_public_key,
            )),
        },
        "Status": {
            "State": state_name(status.state()).to_lowercase(),
            "Message": status.message,
            "Addr": status.addr,
        },
    });
    if let Some(ms) = &n.manager_status {
        doc["ManagerStatus"] = json!({
            "Leader": ms.leader,
            "Reachability": reachability_name(ms.reachability()).to_lowercase(),
            "Addr": ms.addr,
        });
    }
    doc
}

pub fn pretty(n: &Node) -> String {
    let spec = n.spec.clone().unwrap_or_default();
    let desc = n.description.clone().unwrap_or_default();
    let status = n.status.clone().unwrap_or_default();
    let mut out = String::new();
    out.push_str(&format!("ID:\t\t\t{}\n", n.id));
    let labels = spec
        .annotations
        .clone()
        .map(|a| a.labels)
        .unwrap_or_default();
    if !labels.is_empty() {
        out.push_str("Labels:\n");
        let mut sorted: Vec<_> = labels.iter().collect();
        sorted.sort();
        for (k, v) in sorted {
            out.push_str(&format!(" - {k}={v}\n"));
        }
    }
    out.push_str(&format!("Hostname:\t\t{}\n", desc.hostname));
    let created = n
        .meta
        .as_ref()
        .map(|m| m.created_at_unix_nanos)
        .unwrap_or_default();
    out.push_str(&format!("Joined at:\t\t{}\n", rfc3339(created)));
    out.push_str("Status:\n");
    out.push_str(&format!(" State:\t\t\t{}\n", state_name(status.state())));
    if !status.message.is_empty() {
        out.push_str(&format!(" Message:\t\t{}\n", status.message));
    }
    out.push_str(&format!(
        " Availability:\t\t{}\n",
        availability_name(spec.availability())
    ));
    out.push_str(&format!(" Address:\t\t{}\n", status.addr));
    if let Some(ms) = &n.manager_status {
        out.push_str("Manager Status:\n");
        out.push_str(&format!(" Address:\t\t{}\n", ms.addr));
        out.push_str(&format!(
            " Raft Status:\t\t{}\n",
            reachability_name(ms.reachability())
        ));
        out.push_str(&format!(
            " Leader:\t\t{}\n",
            if ms.leader { "Yes" } else { "No" }
        ));
    }
    let platform = desc.platform.unwrap_or_default();
    out.push_str("Platform:\n");
    out.push_str(&format!(" Operating System:\t{}\n", platform.os));
    out.push_str(&format!(" Architecture:\t\t{}\n", platform.architecture));
    let res = desc.resources.unwrap_or_default();
    out.push_str("Resources:\n");
    out.push_str(&format!(" CPUs:\t\t\t{}\n", res.nano_cpus / 1_000_000_000));
    out.push_str(&format!(
        " Memory:\t\t{:.4}GiB\n",
        res.memory_bytes as f64 / (1u64 << 30) as f64
    ));
    out.push_str(&format!("Engine Version:\t\t{}\n", desc.engine_version));
    out
}

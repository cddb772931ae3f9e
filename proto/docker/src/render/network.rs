//! Networks as the Docker Engine API shows them.

use serde_json::json;
use shoal_proto::Network;

use crate::text::rfc3339;

pub fn name(n: &Network) -> &str {
    n.spec
        .as_ref()
        .and_then(|s| s.annotations.as_ref())
        .map(|a| a.name.as_str())
        .unwrap_or("")
}

/// A network as the Docker Engine API shows it.
pub fn engine_json(n: &Network) -> serde_json::Value {
    let spec = n.spec.clone().unwrap_or_default();
    let mut options: serde_json::Map<String, serde_json::Value> = spec
        .options
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    options.insert(
        "com.docker.network.driver.overlay.vxlanid_list".into(),
        json!(n.vni.to_string()),
    );
    json!({
        "Name": name(n),
        "Id": n.id,
        "Created": rfc3339(n.meta.map(|m| m.created_at_unix_nanos).unwrap_or_default()),
        "Scope": "swarm",
        "Driver": "overlay",
        "EnableIPv6": false,
        "IPAM": {
            "Driver": "default",
            "Options": null,
            "Config": n.ipam.iter().map(|c| json!({"Subnet": c.subnet, "Gateway": c.gateway})).collect::<Vec<_>>(),
        },
        "Internal": false,
        "Attachable": spec.attachable,
        "Ingress": spec.ingress,
        "ConfigOnly": false,
        "Containers": {},
        "Options": options,
        "Labels": spec.annotations.map(|a| a.labels).unwrap_or_default(),
    })
}

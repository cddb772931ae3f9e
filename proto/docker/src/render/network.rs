//! Networks as the Docker Engine API shows them.

use serde_json::json;
use shoal_proto::Network;

use crate::text::rfc3339;

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
        "Name": n.name(),
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

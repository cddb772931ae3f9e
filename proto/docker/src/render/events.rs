//! Swarm events as dockerd's /events writes them (API >= 1.30, scope "swarm"): a service,
//! node, network, secret or config created, updated or removed, with its name.

use serde_json::{Value, json};
use shoal_proto::StoreActionKind;
use shoal_proto::stored_object::Object;

use crate::engine::filters::Filters;

/// The filter keys /events takes.
pub const FILTER_KEYS: [&str; 14] = [
    "config",
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "secret",
    "service",
    "type",
    "volume",
];

/// The event of a store change on this manager at `nanos`, if dockerd has one for it
/// (tasks and the cluster object have none).
pub fn swarm_event(action: StoreActionKind, object: &Object, nanos: i64) -> Option<Value> {
    let (kind, id, name) = match object {
        Object::Service(s) => ("service", &s.id, s.name()),
        Object::Node(n) => ("node", &n.id, n.hostname()),
        Object::Network(n) => ("network", &n.id, n.name()),
        Object::Secret(x) => ("secret", &x.id, x.name()),
        Object::Config(x) => ("config", &x.id, x.name()),
        _ => return None,
    };
    let action = match action {
        StoreActionKind::Create => "create",
        StoreActionKind::Update => "update",
        StoreActionKind::Remove => "remove",
    };
    Some(json!({
        "Type": kind,
        "Action": action,
        "Actor": {"ID": id, "Attributes": {"name": name}},
        "scope": "swarm",
        "time": nanos / 1_000_000_000,
        "timeNano": nanos,
    }))
}

/// Whether a swarm event passes the filters, as dockerd matches them: type, action,
/// scope, and the object's ID or name under its own type's key.
pub fn wanted(event: &Value, f: &Filters) -> bool {
    let kind = event["Type"].as_str().unwrap_or_default();
    let actor = &event["Actor"];
    let names_it = |v: &str| actor["ID"] == v || actor["Attributes"]["name"] == v;
    f.any("type", |v| v == kind)
        && f.any("event", |v| event["Action"] == v)
        && f.any("scope", |v| v == "swarm")
        && f.any(kind, names_it)
        && ["container", "image", "volume", "plugin", "daemon"]
            .iter()
            .all(|other| f.values(other).is_none())
}

/// Whether the node's dockerd has events the filters let through (its scope is local).
pub fn local_wanted(f: &Filters) -> bool {
    f.any("scope", |v| v == "local")
        && f.any("type", |v| {
            !matches!(v, "service" | "node" | "secret" | "config")
        })
        && ["service", "node", "secret", "config"]
            .iter()
            .all(|swarm_only| f.values(swarm_only).is_none())
}

#[cfg(test)]
mod tests {
    use shoal_proto::ServiceSpec;

    use super::*;

    fn created_web() -> Value {
        let service = shoal_proto::Service {
            id: "svc1".into(),
            spec: Some(ServiceSpec::replicated("web", "shoal/demo-web", 1)),
            ..Default::default()
        };
        swarm_event(
            StoreActionKind::Create,
            &Object::Service(service),
            1_700_000_000_123_456_789,
        )
        .unwrap()
    }

    fn filters(raw: &str) -> Filters {
        Filters::parse(Some(raw), &FILTER_KEYS).unwrap()
    }

    #[test]
    fn a_service_created_reads_as_dockerd_writes_it() {
        assert_eq!(
            created_web(),
            json!({"Type": "service", "Action": "create",
                   "Actor": {"ID": "svc1", "Attributes": {"name": "web"}},
                   "scope": "swarm", "time": 1_700_000_000, "timeNano": 1_700_000_000_123_456_789_i64})
        );
        let task = Object::Task(shoal_proto::Task::default());
        assert!(
            swarm_event(StoreActionKind::Update, &task, 0).is_none(),
            "dockerd has no task events"
        );
    }

    #[test]
    fn filters_choose_between_the_swarms_events_and_dockerds() {
        let web = created_web();
        assert!(wanted(&web, &Filters::default()));
        assert!(wanted(
            &web,
            &filters(r#"{"type":["service"],"service":["web"],"event":["create"]}"#)
        ));
        assert!(!wanted(&web, &filters(r#"{"service":["db"]}"#)));
        assert!(!wanted(&web, &filters(r#"{"scope":["local"]}"#)));
        assert!(!wanted(&web, &filters(r#"{"container":["x"]}"#)));
        assert!(local_wanted(&filters(r#"{"type":["container"]}"#)));
        assert!(!local_wanted(&filters(r#"{"scope":["swarm"]}"#)));
        assert!(!local_wanted(&filters(r#"{"service":["web"]}"#)));
    }
}

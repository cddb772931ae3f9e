//! Placement constraints as docker writes them: `node.hostname==worker1`,
//! `node.role!=manager`, `node.labels.zone==a`, `node.platform.os==linux`.

use shoal_proto::{Node, NodeRole, Platform};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    key: String,
    equal: bool,
    value: String,
}

const KEYS: &[&str] = &[
    "node.id",
    "node.hostname",
    "node.role",
    "node.platform.os",
    "node.platform.arch",
];

impl std::str::FromStr for Constraint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (key, value, equal) = if let Some((k, v)) = s.split_once("==") {
            (k, v, true)
        } else if let Some((k, v)) = s.split_once("!=") {
            (k, v, false)
        } else {
            return Err(format!(
                "malformed constraint {s:?}: expected KEY==VALUE or KEY!=VALUE, e.g. node.role==manager"
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        if value.is_empty() {
            return Err(format!("malformed constraint {s:?}: the value is empty"));
        }
        let known = KEYS.contains(&key)
            || key
                .strip_prefix("node.labels.")
                .is_some_and(|l| !l.is_empty())
            || key
                .strip_prefix("engine.labels.")
                .is_some_and(|l| !l.is_empty());
        if !known {
            return Err(format!(
                "malformed constraint {s:?}: unknown key {key:?}; use node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.<label> or engine.labels.<label>"
            ));
        }
        if key == "node.role" && value != "manager" && value != "worker" {
            return Err(format!(
                "malformed constraint {s:?}: node.role is manager or worker"
            ));
        }
        Ok(Constraint {
            key: key.to_string(),
            equal,
            value: value.to_string(),
        })
    }
}

impl Constraint {
    pub fn matches(&self, node: &Node) -> bool {
        let desc = node.description.clone().unwrap_or_default();
        let platform = desc.platform.unwrap_or_default();
        let actual: Option<String> = match self.key.as_str() {
            "node.id" => Some(node.id.clone()),
            "node.hostname" => Some(desc.hostname),
            "node.role" => Some(
                match node
                    .spec
                    .as_ref()
                    .map(shoal_proto::NodeSpec::desired_role)
                    .unwrap_or_default()
                {
                    NodeRole::Manager => "manager",
                    NodeRole::Worker => "worker",
                }
                .to_string(),
            ),
            "node.platform.os" => Some(platform.os),
            "node.platform.arch" => Some(platform.architecture),
            key => key.strip_prefix("node.labels.").and_then(|label| {
                node.spec
                    .as_ref()
                    .and_then(|s| s.annotations.as_ref())
                    .and_then(|a| a.labels.get(label).cloned())
            }),
        };
        match actual {
            // Docker compares hostnames and values case-insensitively.
            Some(v) => v.eq_ignore_ascii_case(&self.value) == self.equal,
            None => !self.equal,
        }
    }
}

/// Names docker's image platforms use for what a node reports from uname.
fn arch_name(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "armhf" | "armel" => "arm",
        other => other,
    }
}

/// Whether the node runs one of `platforms` (empty: any); an empty field matches any.
/// As in Swarm, architectures compare by their image names (x86_64 is amd64).
pub fn platform_matches(platforms: &[Platform], node: &Node) -> bool {
    let actual = node
        .description
        .as_ref()
        .and_then(|d| d.platform.clone())
        .unwrap_or_default();
    platforms.is_empty()
        || platforms.iter().any(|p| {
            (p.os.is_empty() || p.os.eq_ignore_ascii_case(&actual.os))
                && (p.architecture.is_empty()
                    || arch_name(&p.architecture.to_ascii_lowercase())
                        == arch_name(&actual.architecture.to_ascii_lowercase()))
        })
}

pub fn parse_all(constraints: &[String]) -> Result<Vec<Constraint>, String> {
    constraints.iter().map(|c| c.parse()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{Annotations, NodeDescription, NodeSpec};

    fn node() -> Node {
        Node {
            id: "abc".into(),
            spec: Some(NodeSpec {
                annotations: Some(Annotations {
                    labels: [("zone".to_string(), "a".to_string())].into(),
                    ..Default::default()
                }),
                desired_role: NodeRole::Worker as i32,
                ..Default::default()
            }),
            description: Some(NodeDescription {
                hostname: "worker1".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn constraints_match_nodes() {
        let n = node();
        let yes = [
            "node.hostname==worker1",
            "node.role==worker",
            "node.labels.zone==a",
            "node.labels.disk!=ssd",
            "node.id!=xyz",
        ];
        for c in yes {
            assert!(c.parse::<Constraint>().unwrap().matches(&n), "{c}");
        }
        let no = [
            "node.hostname==worker2",
            "node.role==manager",
            "node.labels.zone!=a",
            "node.labels.disk==ssd",
        ];
        for c in no {
            assert!(!c.parse::<Constraint>().unwrap().matches(&n), "{c}");
        }
    }

    #[test]
    fn malformed_constraints_say_why() {
        for (c, why) in [
            ("node.hostname=worker1", "expected KEY==VALUE"),
            ("node.colour==red", "unknown key"),
            ("node.role==boss", "manager or worker"),
            ("node.labels.==x", "unknown key"),
            ("node.id==", "empty"),
        ] {
            let err = c.parse::<Constraint>().unwrap_err();
            assert!(err.contains(why), "{c}: {err}");
        }
    }

    #[test]
    fn platforms_match_by_image_names() {
        let mut n = node();
        n.description.as_mut().unwrap().platform = Some(Platform {
            architecture: "x86_64".into(),
            os: "linux".into(),
        });
        let p = |arch: &str, os: &str| Platform {
            architecture: arch.into(),
            os: os.into(),
        };
        assert!(platform_matches(&[], &n));
        assert!(platform_matches(&[p("amd64", "linux")], &n));
        assert!(platform_matches(&[p("", "linux")], &n));
        assert!(platform_matches(&[p("arm64", "linux"), p("amd64", "")], &n));
        assert!(!platform_matches(&[p("arm64", "linux")], &n));
        assert!(!platform_matches(&[p("amd64", "windows")], &n));
    }
}

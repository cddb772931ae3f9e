//! The words docker uses for shoal's enums, in flags, compose files, Engine API JSON and
//! `inspect` output: one table per enum, so every place reads and writes one spelling.

use crate::{
    EndpointMode, MountType, NodeAvailability, PublishMode, RestartCondition, UpdateFailureAction,
    UpdateOrder,
};

pub trait DockerName: Sized + Copy + PartialEq + 'static {
    /// Every value with its docker spelling.
    const NAMES: &'static [(&'static str, Self)];

    fn docker_name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, v)| *v == self)
            .map(|(n, _)| *n)
            .unwrap_or_default()
    }

    fn from_docker_name(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// "a, b, c": what an error lists as accepted.
    fn docker_names() -> String {
        let names: Vec<&str> = Self::NAMES.iter().map(|(n, _)| *n).collect();
        names.join(", ")
    }
}

/// The docker name of an enum field as prost stores it (an i32); an unknown value reads
/// as the enum's default, as prost's own accessors do.
pub fn name_of<T: DockerName + TryFrom<i32> + Default>(raw: i32) -> &'static str {
    T::try_from(raw).unwrap_or_default().docker_name()
}

impl DockerName for NodeAvailability {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("active", NodeAvailability::Active),
        ("pause", NodeAvailability::Pause),
        ("drain", NodeAvailability::Drain),
    ];
}

impl DockerName for MountType {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("bind", MountType::Bind),
        ("volume", MountType::Volume),
        ("tmpfs", MountType::Tmpfs),
    ];
}

impl DockerName for RestartCondition {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("any", RestartCondition::Any),
        ("on-failure", RestartCondition::OnFailure),
        ("none", RestartCondition::None),
    ];
}

impl DockerName for UpdateFailureAction {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("pause", UpdateFailureAction::Pause),
        ("continue", UpdateFailureAction::Continue),
        ("rollback", UpdateFailureAction::Rollback),
    ];
}

impl DockerName for UpdateOrder {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("stop-first", UpdateOrder::StopFirst),
        ("start-first", UpdateOrder::StartFirst),
    ];
}

impl DockerName for PublishMode {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("ingress", PublishMode::Ingress),
        ("host", PublishMode::Host),
    ];
}

impl DockerName for EndpointMode {
    const NAMES: &'static [(&'static str, Self)] =
        &[("vip", EndpointMode::Vip), ("dnsrr", EndpointMode::Dnsrr)];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_go_both_ways() {
        for (name, value) in UpdateOrder::NAMES {
            assert_eq!(value.docker_name(), *name);
            assert_eq!(UpdateOrder::from_docker_name(name), Some(*value));
        }
        assert_eq!(RestartCondition::docker_names(), "any, on-failure, none");
        assert_eq!(name_of::<EndpointMode>(1), "dnsrr");
        assert_eq!(name_of::<PublishMode>(99), "ingress");
        assert_eq!(NodeAvailability::from_docker_name("sleep"), None);
    }
}

//! What a cluster name means to one task: pure lookups over the endpoint tables, limited
//! to the networks the asking task is on.

use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;

use crate::gossip::Endpoint;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryType {
    A,
    Ptr,
    /// AAAA and every other type: a known name answers with no records.
    Other,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Addresses(Vec<Ipv4Addr>),
    /// PTR targets.
    Names(Vec<String>),
    /// The name is ours, but has no record of the asked type.
    NoData,
    /// Not a cluster name: forward it.
    Unknown,
}

/// Resolves `name` (any case, with or without the final dot) for a task attached to
/// `networks`.
pub fn resolve(
    endpoints: &[Endpoint],
    networks: &HashSet<String>,
    name: &str,
    qtype: QueryType,
) -> Lookup {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let visible: Vec<&Endpoint> = endpoints
        .iter()
        .filter(|e| networks.contains(&e.network_id))
        .collect();
    if let Some(ip) = reverse_ipv4(&name) {
        let names: BTreeSet<String> = visible
            .iter()
            .filter(|e| e.ip == ip)
            .map(|e| format!("{}.", e.task_name))
            .collect();
        return match (names.is_empty(), qtype) {
            (true, _) => Lookup::Unknown,
            (false, QueryType::Ptr) => Lookup::Names(names.into_iter().collect()),
            (false, _) => Lookup::NoData,
        };
    }
    let same = |a: &str| a.eq_ignore_ascii_case(&name);
    let ips: BTreeSet<Ipv4Addr> = if let Some(service) = name.strip_prefix("tasks.") {
        // Every running task of the service (or of the alias).
        visible
            .iter()
            .filter(|e| {
                e.service_name.eq_ignore_ascii_case(service)
                    || e.aliases.iter().any(|a| a.eq_ignore_ascii_case(service))
            })
            .map(|e| e.ip)
            .collect()
    } else {
        let by_service: Vec<&&Endpoint> = visible
            .iter()
            .filter(|e| same(&e.service_name) || e.aliases.iter().any(|a| same(a)))
            .collect();
        let vips: BTreeSet<Ipv4Addr> = by_service
            .iter()
            .filter_map(|e| e.vip.split('/').next()?.parse().ok())
            .collect();
        if !vips.is_empty() {
            vips
        } else if !by_service.is_empty() {
            by_service.iter().map(|e| e.ip).collect()
        } else {
            visible
                .iter()
                .filter(|e| same(&e.task_name) || same(&e.hostname))
                .map(|e| e.ip)
                .collect()
        }
    };
    match (ips.is_empty(), qtype) {
        (true, _) => Lookup::Unknown,
        (false, QueryType::A) => Lookup::Addresses(ips.into_iter().collect()),
        (false, _) => Lookup::NoData,
    }
}

/// 4.3.2.1.in-addr.arpa -> 1.2.3.4
fn reverse_ipv4(name: &str) -> Option<Ipv4Addr> {
    let octets = name.strip_suffix(".in-addr.arpa")?;
    let parts: Vec<u8> = octets
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [d, c, b, a] => Some(Ipv4Addr::new(*a, *b, *c, *d)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::table::endpoint;

    fn table() -> Vec<Endpoint> {
        let mut other_net = endpoint("t3", "n2", [10, 0, 2, 5]);
        other_net.network_id = "net2".into();
        other_net.service_name = "db".into();
        let mut aliased = endpoint("t2", "n2", [10, 0, 1, 3]);
        aliased.aliases = vec!["frontend".into()];
        vec![endpoint("t1", "n1", [10, 0, 1, 2]), aliased, other_net]
    }

    fn on_net1() -> HashSet<String> {
        HashSet::from(["net1".to_string()])
    }

    fn a(ips: &[[u8; 4]]) -> Lookup {
        Lookup::Addresses(ips.iter().map(|o| Ipv4Addr::from(*o)).collect())
    }

    #[test]
    fn services_tasks_and_aliases_resolve_on_shared_networks_only() {
        let t = table();
        let net = on_net1();
        let both = a(&[[10, 0, 1, 2], [10, 0, 1, 3]]);
        assert_eq!(resolve(&t, &net, "web", QueryType::A), both);
        assert_eq!(resolve(&t, &net, "WEB.", QueryType::A), both);
        assert_eq!(resolve(&t, &net, "tasks.web", QueryType::A), both);
        assert_eq!(
            resolve(&t, &net, "frontend", QueryType::A),
            a(&[[10, 0, 1, 3]])
        );
        assert_eq!(
            resolve(&t, &net, "web.1.t1", QueryType::A),
            a(&[[10, 0, 1, 2]])
        );
        assert_eq!(resolve(&t, &net, "t1", QueryType::A), a(&[[10, 0, 1, 2]]));
        assert_eq!(resolve(&t, &net, "db", QueryType::A), Lookup::Unknown);
        assert_eq!(
            resolve(&t, &net, "example.com", QueryType::A),
            Lookup::Unknown
        );
        assert_eq!(resolve(&t, &net, "web", QueryType::Other), Lookup::NoData);
    }

    #[test]
    fn a_service_with_a_vip_answers_the_vip() {
        let mut t = table();
        for e in &mut t {
            e.vip = "10.0.1.250/24".into();
        }
        let net = on_net1();
        assert_eq!(
            resolve(&t, &net, "web", QueryType::A),
            a(&[[10, 0, 1, 250]])
        );
        assert_eq!(
            resolve(&t, &net, "tasks.web", QueryType::A),
            a(&[[10, 0, 1, 2], [10, 0, 1, 3]])
        );
    }

    #[test]
    fn reverse_lookups_name_the_task() {
        let t = table();
        let net = on_net1();
        assert_eq!(
            resolve(&t, &net, "2.1.0.10.in-addr.arpa.", QueryType::Ptr),
            Lookup::Names(vec!["web.1.t1.".into()])
        );
        assert_eq!(
            resolve(&t, &net, "5.2.0.10.in-addr.arpa", QueryType::Ptr),
            Lookup::Unknown,
            "a task on another network"
        );
    }
}

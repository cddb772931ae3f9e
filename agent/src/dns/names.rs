//! What a cluster name means to one task: an index of the endpoint tables by network and
//! name, built once per change of the tables, so that answering a query is a few hash
//! lookups and no allocation; a task sees only the networks it is attached to.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
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
pub enum Lookup<'a> {
    /// Sorted, without duplicates.
    Addresses(Cow<'a, [Ipv4Addr]>),
    /// PTR targets, each ending in a dot.
    Names(Cow<'a, [Box<str>]>),
    /// The name is ours, but has no record of the asked type.
    NoData,
    /// Not a cluster name: forward it.
    Unknown,
}

/// One network's names.
#[derive(Debug, Default)]
struct NetworkNames {
    /// By service name and alias: the service's VIPs and its tasks' addresses.
    services: HashMap<Box<str>, Service>,
    /// By task name and hostname.
    hosts: HashMap<Box<str>, Vec<Ipv4Addr>>,
    /// By address: the names of the tasks holding it.
    reverse: HashMap<Ipv4Addr, Vec<Box<str>>>,
}

#[derive(Debug, Default)]
struct Service {
    vips: Vec<Ipv4Addr>,
    tasks: Vec<Ipv4Addr>,
}

/// The names of every network, by network ID.
#[derive(Debug, Default)]
pub struct NameIndex {
    networks: HashMap<String, NetworkNames>,
}

impl NameIndex {
    pub fn build(endpoints: &[Endpoint]) -> NameIndex {
        #[derive(Default)]
        struct Sets {
            services: HashMap<Box<str>, (BTreeSet<Ipv4Addr>, BTreeSet<Ipv4Addr>)>,
            hosts: HashMap<Box<str>, BTreeSet<Ipv4Addr>>,
            reverse: HashMap<Ipv4Addr, BTreeSet<Box<str>>>,
        }
        let lower = |s: &str| s.to_ascii_lowercase().into_boxed_str();
        let mut sets: HashMap<&str, Sets> = HashMap::new();
        for e in endpoints {
            let net = sets.entry(&e.network_id).or_default();
            let vip: Option<Ipv4Addr> = e.vip.split('/').next().and_then(|v| v.parse().ok());
            for name in std::iter::once(&e.service_name).chain(&e.aliases) {
                if name.is_empty() {
                    continue;
                }
                let (vips, tasks) = net.services.entry(lower(name)).or_default();
                vips.extend(vip);
                tasks.insert(e.ip);
            }
            for name in [&e.task_name, &e.hostname] {
                if !name.is_empty() {
                    net.hosts.entry(lower(name)).or_default().insert(e.ip);
                }
            }
            net.reverse
                .entry(e.ip)
                .or_default()
                .insert(format!("{}.", e.task_name).into_boxed_str());
        }
        let networks = sets
            .into_iter()
            .map(|(id, s)| {
                let names = NetworkNames {
                    services: s
                        .services
                        .into_iter()
                        .map(|(n, (vips, tasks))| {
                            let service = Service {
                                vips: vips.into_iter().collect(),
                                tasks: tasks.into_iter().collect(),
                            };
                            (n, service)
                        })
                        .collect(),
                    hosts: s
                        .hosts
                        .into_iter()
                        .map(|(n, ips)| (n, ips.into_iter().collect()))
                        .collect(),
                    reverse: s
                        .reverse
                        .into_iter()
                        .map(|(ip, names)| (ip, names.into_iter().collect()))
                        .collect(),
                };
                (id.to_string(), names)
            })
            .collect();
        NameIndex { networks }
    }

    /// Resolves `name` (lower case, without the final dot) for a task attached to
    /// `networks`.
    pub fn resolve<'a>(&'a self, networks: &[String], name: &str, qtype: QueryType) -> Lookup<'a> {
        let visible = || networks.iter().filter_map(|n| self.networks.get(n));
        if let Some(ip) = reverse_ipv4(name) {
            let names = union(visible().filter_map(|n| n.reverse.get(&ip)));
            return match (names.is_empty(), qtype) {
                (true, _) => Lookup::Unknown,
                (false, QueryType::Ptr) => Lookup::Names(names),
                (false, _) => Lookup::NoData,
            };
        }
        let ips = if let Some(service) = name.strip_prefix("tasks.") {
            // Every running task of the service (or of the alias).
            union(visible().filter_map(|n| n.services.get(service).map(|s| &s.tasks)))
        } else if visible().any(|n| n.services.contains_key(name)) {
            let services = || visible().filter_map(|n| n.services.get(name));
            let vips = union(services().map(|s| &s.vips));
            if vips.is_empty() {
                union(services().map(|s| &s.tasks))
            } else {
                vips
            }
        } else {
            union(visible().filter_map(|n| n.hosts.get(name)))
        };
        match (ips.is_empty(), qtype) {
            (true, _) => Lookup::Unknown,
            (false, QueryType::A) => Lookup::Addresses(ips),
            (false, _) => Lookup::NoData,
        }
    }
}

/// The sorted union of sorted lists: the list itself when only one is not empty (a task
/// on one network, the common case), so nothing is allocated.
fn union<'a, T: Ord + Clone + 'a>(lists: impl Iterator<Item = &'a Vec<T>>) -> Cow<'a, [T]> {
    let mut found: Option<Cow<'a, [T]>> = None;
    for list in lists.filter(|l| !l.is_empty()) {
        found = Some(match found {
            None => Cow::Borrowed(list.as_slice()),
            Some(so_far) => {
                let merged: BTreeSet<T> = so_far.iter().chain(list).cloned().collect();
                Cow::Owned(merged.into_iter().collect())
            }
        });
    }
    found.unwrap_or(Cow::Borrowed(&[]))
}

/// 4.3.2.1.in-addr.arpa -> 1.2.3.4
fn reverse_ipv4(name: &str) -> Option<Ipv4Addr> {
    let mut octets = name.strip_suffix(".in-addr.arpa")?.split('.');
    let mut next = || octets.next()?.parse::<u8>().ok();
    let (d, c, b, a) = (next()?, next()?, next()?, next()?);
    octets.next().is_none().then(|| Ipv4Addr::new(a, b, c, d))
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
        aliased.aliases = vec!["Frontend".into()];
        vec![endpoint("t1", "n1", [10, 0, 1, 2]), aliased, other_net]
    }

    fn on(nets: &[&str]) -> Vec<String> {
        nets.iter().map(ToString::to_string).collect()
    }

    fn a(ips: &[[u8; 4]]) -> Lookup<'static> {
        Lookup::Addresses(ips.iter().map(|o| Ipv4Addr::from(*o)).collect())
    }

    #[test]
    fn services_tasks_and_aliases_resolve_on_shared_networks_only() {
        let index = NameIndex::build(&table());
        let net = on(&["net1"]);
        let both = a(&[[10, 0, 1, 2], [10, 0, 1, 3]]);
        assert_eq!(index.resolve(&net, "web", QueryType::A), both);
        assert_eq!(index.resolve(&net, "tasks.web", QueryType::A), both);
        assert_eq!(
            index.resolve(&net, "frontend", QueryType::A),
            a(&[[10, 0, 1, 3]])
        );
        assert_eq!(
            index.resolve(&net, "web.1.t1", QueryType::A),
            a(&[[10, 0, 1, 2]])
        );
        assert_eq!(index.resolve(&net, "t1", QueryType::A), a(&[[10, 0, 1, 2]]));
        assert_eq!(index.resolve(&net, "db", QueryType::A), Lookup::Unknown);
        assert_eq!(
            index.resolve(&net, "example.com", QueryType::A),
            Lookup::Unknown
        );
        assert_eq!(index.resolve(&net, "web", QueryType::Other), Lookup::NoData);
        assert_eq!(
            index.resolve(&on(&["net1", "net2"]), "db", QueryType::A),
            a(&[[10, 0, 2, 5]])
        );
    }

    #[test]
    fn a_service_with_a_vip_answers_the_vip() {
        let mut t = table();
        for e in &mut t {
            e.vip = "10.0.1.250/24".into();
        }
        let index = NameIndex::build(&t);
        let net = on(&["net1"]);
        assert_eq!(
            index.resolve(&net, "web", QueryType::A),
            a(&[[10, 0, 1, 250]])
        );
        assert_eq!(
            index.resolve(&net, "tasks.web", QueryType::A),
            a(&[[10, 0, 1, 2], [10, 0, 1, 3]])
        );
    }

    #[test]
    fn a_task_on_two_networks_sees_the_union_of_both() {
        let mut t = table();
        let mut twin = endpoint("t4", "n1", [10, 0, 2, 7]);
        twin.network_id = "net2".into();
        t.push(twin);
        let index = NameIndex::build(&t);
        assert_eq!(
            index.resolve(&on(&["net2", "net1"]), "tasks.web", QueryType::A),
            a(&[[10, 0, 1, 2], [10, 0, 1, 3], [10, 0, 2, 7]])
        );
    }

    #[test]
    fn reverse_lookups_name_the_task() {
        let index = NameIndex::build(&table());
        let net = on(&["net1"]);
        let names =
            |list: &[&str]| Lookup::Names(list.iter().map(|n| Box::<str>::from(*n)).collect());
        assert_eq!(
            index.resolve(&net, "2.1.0.10.in-addr.arpa", QueryType::Ptr),
            names(&["web.1.t1."])
        );
        assert_eq!(
            index.resolve(&net, "5.2.0.10.in-addr.arpa", QueryType::Ptr),
            Lookup::Unknown,
            "a task on another network"
        );
        assert_eq!(
            index.resolve(&net, "2.1.0.10.in-addr.arpa", QueryType::A),
            Lookup::NoData
        );
        assert_eq!(reverse_ipv4("1.2.3.4.5.in-addr.arpa"), None);
    }
}

//! The endpoint table gossip keeps: per network, per task, the endpoint its node
//! published. Only the owning node writes an entry; each write carries a version from the
//! owner's clock, so merging is "highest version wins" whatever order copies arrive in.
//! A removal is a tombstone (kept a while so late copies cannot resurrect the entry).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A task's endpoint on one network, as every node needs it to reach the task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub network_id: String,
    pub task_id: String,
    /// The node that owns (publishes) this entry.
    pub node_id: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub mac: [u8; 6],
    /// The owner's VXLAN tunnel endpoint.
    pub vtep: Ipv4Addr,
    pub service_id: String,
    pub service_name: String,
    pub task_name: String,
    /// The hostname the task sees.
    pub hostname: String,
    pub vip: String,
    pub aliases: Vec<String>,
    /// On the ingress network: the ports the task's service publishes through the mesh.
    pub ports: Vec<PublishedPort>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A port published through the routing mesh: every node's `published` reaches a task's
/// `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublishedPort {
    pub protocol: Protocol,
    pub published: u16,
    pub target: u16,
}

impl Endpoint {
    pub fn key(&self) -> Key {
        (self.network_id.clone(), self.task_id.clone())
    }
}

pub type Key = (String, String);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub endpoint: Endpoint,
    pub version: u64,
    pub deleted: bool,
}

struct Stored {
    record: Record,
    changed: Instant,
}

#[derive(Default)]
pub struct Table {
    records: HashMap<Key, Stored>,
}

impl Table {
    /// Takes `r` if it is newer than what the table holds; says whether it was.
    pub fn merge(&mut self, r: Record, now: Instant) -> bool {
        let key = r.endpoint.key();
        if self
            .records
            .get(&key)
            .is_some_and(|s| s.record.version >= r.version)
        {
            return false;
        }
        self.records.insert(
            key,
            Stored {
                record: r,
                changed: now,
            },
        );
        true
    }

    pub fn get(&self, key: &Key) -> Option<&Record> {
        self.records.get(key).map(|s| &s.record)
    }

    /// Keeps only the records `keep` accepts.
    pub fn retain(&mut self, keep: impl Fn(&Record) -> bool) {
        self.records.retain(|_, s| keep(&s.record));
    }

    /// Everything, tombstones included: what push/pull exchanges.
    pub fn records(&self) -> Vec<Record> {
        self.records.values().map(|s| s.record.clone()).collect()
    }

    /// Live endpoints that `keep` accepts, given when each last changed.
    pub fn live(&self, keep: impl Fn(&Endpoint, Instant) -> bool) -> Vec<Endpoint> {
        let mut v: Vec<Endpoint> = self
            .records
            .values()
            .filter(|s| !s.record.deleted && keep(&s.record.endpoint, s.changed))
            .map(|s| s.record.endpoint.clone())
            .collect();
        v.sort_by_key(Endpoint::key);
        v
    }

    /// Forgets tombstones older than `ttl`, and entries of owners `gone` says left long ago.
    pub fn collect_garbage(&mut self, now: Instant, ttl: Duration, gone: impl Fn(&str) -> bool) {
        self.records.retain(|_, s| {
            let old = now.duration_since(s.changed) > ttl;
            let expired = old && s.record.deleted;
            !(expired || gone(&s.record.endpoint.node_id))
        });
    }
}

/// An owner's version clock: wall-clock milliseconds, never repeating or going back, so a
/// restarted agent's writes supersede what it wrote before.
#[derive(Default)]
pub struct Clock {
    last: u64,
}

impl Clock {
    pub fn tick(&mut self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        self.last = now.max(self.last + 1);
        self.last
    }
}

#[cfg(test)]
pub(crate) fn endpoint(task: &str, node: &str, ip: [u8; 4]) -> Endpoint {
    let ip = Ipv4Addr::from(ip);
    Endpoint {
        network_id: "net1".into(),
        task_id: task.into(),
        node_id: node.into(),
        ip,
        prefix: 24,
        mac: crate::netlink::mac_for(ip),
        vtep: Ipv4Addr::new(192, 0, 2, 1),
        service_id: "svc".into(),
        service_name: "web".into(),
        task_name: format!("web.1.{task}"),
        hostname: task.to_string(),
        vip: String::new(),
        aliases: vec![],
        ports: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(task: &str, version: u64, deleted: bool) -> Record {
        Record {
            endpoint: endpoint(task, "nodeA", [10, 0, 1, 2]),
            version,
            deleted,
        }
    }

    #[test]
    fn the_highest_version_wins_in_any_order() {
        let now = Instant::now();
        let mut a = Table::default();
        let mut b = Table::default();
        let writes = [rec("t1", 1, false), rec("t1", 3, true), rec("t1", 2, false)];
        for w in &writes {
            a.merge(w.clone(), now);
        }
        for w in writes.iter().rev() {
            b.merge(w.clone(), now);
        }
        assert_eq!(
            a.get(&rec("t1", 0, false).endpoint.key()),
            b.get(&rec("t1", 0, false).endpoint.key())
        );
        assert!(a.get(&rec("t1", 0, false).endpoint.key()).unwrap().deleted);
        assert!(
            !a.merge(rec("t1", 3, false), now),
            "an equal version is not news"
        );
        assert!(a.live(|_, _| true).is_empty());
    }

    #[test]
    fn live_hides_tombstones_and_dead_owners() {
        let now = Instant::now();
        let mut t = Table::default();
        t.merge(rec("t1", 1, false), now);
        let mut other = rec("t2", 1, false);
        other.endpoint.node_id = "nodeB".into();
        t.merge(other, now);
        t.merge(rec("t3", 1, true), now);
        let live: Vec<String> = t
            .live(|e, _| e.node_id == "nodeA")
            .into_iter()
            .map(|e| e.task_id)
            .collect();
        assert_eq!(live, vec!["t1"]);
    }

    #[test]
    fn garbage_collection_drops_old_tombstones_and_departed_owners() {
        let start = Instant::now();
        let mut t = Table::default();
        t.merge(rec("t1", 1, true), start);
        t.merge(rec("t2", 1, false), start);
        let later = start + Duration::from_mins(2);
        t.collect_garbage(later, Duration::from_mins(1), |_| false);
        assert_eq!(
            t.records().len(),
            1,
            "the old tombstone went, the live entry stayed"
        );
        t.collect_garbage(later, Duration::from_mins(1), |n| n == "nodeA");
        assert!(t.records().is_empty());
    }

    #[test]
    fn the_clock_never_repeats() {
        let mut c = Clock::default();
        let a = c.tick();
        let b = c.tick();
        assert!(b > a);
    }
}

//! Service discovery: a resolver at 127.0.0.11:53 (UDP and TCP) inside every task's
//! network namespace, served by the agent. Cluster names come from the gossip endpoint
//! tables through an index rebuilt when they change (names.rs), limited to the asking
//! task's networks, and are answered in place on the wire (wire.rs, server.rs); anything
//! else goes to the node's upstream resolvers, in order, each with a timeout.

mod batch;
mod forward;
pub mod names;
mod server;
mod wire;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::gossip::{Endpoint, Gossip};
use forward::Forwarder;
use names::NameIndex;

pub const RESOLVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
/// What a task's /etc/resolv.conf says.
pub const RESOLV_CONF: &str = "nameserver 127.0.0.11\noptions ndots:0\n";

/// The node's resolvers, from its resolv.conf.
pub fn upstreams_from(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .filter(|ip| *ip != std::net::IpAddr::V4(RESOLVER))
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// An index, and the tables it was built from.
type Built = (Arc<Vec<Endpoint>>, Arc<NameIndex>);

/// The name index of the current endpoint tables, rebuilt on the first query after they
/// change (the tables are shared: an unchanged version is the same `Arc`).
pub(crate) struct Names {
    gossip: Gossip,
    built: Mutex<Option<Built>>,
}

impl Names {
    fn current(&self) -> Arc<NameIndex> {
        let endpoints = self.gossip.endpoints_shared();
        let mut built = self.built.lock().expect("poisoned");
        match &*built {
            Some((of, index)) if Arc::ptr_eq(of, &endpoints) => index.clone(),
            _ => {
                let index = Arc::new(NameIndex::build(&endpoints));
                *built = Some((endpoints, index.clone()));
                index
            }
        }
    }
}

/// Why a task's resolver could not be served.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The task's namespace could not be entered (the task may be gone).
    #[error("entering the task's namespace: {0}")]
    Namespace(std::io::Error),
    #[error("binding the resolver at {addr}: {cause}")]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
}

/// The resolvers of every task on this node.
pub struct Dns {
    names: Arc<Names>,
    forwarder: Arc<Forwarder>,
    /// Seconds clients may cache a cluster answer.
    ttl: u32,
    /// Per task: its server's task, which owns the sockets.
    servers: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    malformed: Arc<Malformed>,
}

/// Malformed queries, answered FORMERR and reported in one warning a minute at most:
/// a task sending garbage must not be able to fill the node's disk with log lines.
#[derive(Default)]
struct Malformed {
    since_warning: std::sync::atomic::AtomicU64,
    warned: Mutex<Option<std::time::Instant>>,
}

const MALFORMED_WARN_EVERY: Duration = Duration::from_mins(1);

impl Malformed {
    fn note(&self) {
        use std::sync::atomic::Ordering;
        self.since_warning.fetch_add(1, Ordering::Relaxed);
        let mut warned = self.warned.lock().expect("poisoned");
        if warned.is_some_and(|w| w.elapsed() < MALFORMED_WARN_EVERY) {
            return;
        }
        *warned = Some(std::time::Instant::now());
        let n = self.since_warning.swap(0, Ordering::Relaxed);
        tracing::warn!(
            "answered {n} malformed DNS queries with FORMERR since the last warning (at most one warning a minute)"
        );
    }
}

impl Dns {
    pub fn new(gossip: Gossip, upstreams: Vec<SocketAddr>, ttl: u32) -> Arc<Dns> {
        Arc::new(Dns {
            names: Arc::new(Names {
                gossip,
                built: Mutex::default(),
            }),
            ttl,
            forwarder: Arc::new(Forwarder::new(upstreams)),
            servers: Mutex::default(),
            malformed: Arc::default(),
        })
    }

    /// Serves the resolver inside `netns` for a task on `networks` (again after an agent
    /// restart: the old sockets went with the old process). Names outside the cluster go
    /// to the task's `nameservers` (its DNSConfig), or to the node's when it has none.
    pub async fn serve(
        &self,
        task_id: &str,
        netns: &Path,
        networks: impl IntoIterator<Item = String>,
        nameservers: &[String],
    ) -> Result<(), DnsError> {
        let own: Vec<SocketAddr> = nameservers
            .iter()
            .filter_map(|n| n.parse::<std::net::IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        let forwarder = if own.is_empty() {
            self.forwarder.clone()
        } else {
            Arc::new(Forwarder::new(own))
        };
        self.stop(task_id).await;
        let bind = SocketAddr::from((RESOLVER, 53));
        let bound = |cause| DnsError::Bind { addr: bind, cause };
        let (udp, tcp) = crate::sys::run_in_netns(netns, || {
            let udp = std::net::UdpSocket::bind(bind)?;
            let tcp = std::net::TcpListener::bind(bind)?;
            udp.set_nonblocking(true)?;
            tcp.set_nonblocking(true)?;
            Ok::<_, std::io::Error>((udp, tcp))
        })
        .map_err(DnsError::Namespace)?
        .map_err(bound)?;
        let resolver = server::Resolver {
            names: self.names.clone(),
            networks: networks.into_iter().collect(),
            forwarder,
            ttl: self.ttl,
            malformed: self.malformed.clone(),
        };
        let udp = tokio::net::UdpSocket::from_std(udp).map_err(bound)?;
        let tcp = tokio::net::TcpListener::from_std(tcp).map_err(bound)?;
        let task = tokio::spawn(server::serve(udp, tcp, resolver));
        self.servers
            .lock()
            .expect("poisoned")
            .insert(task_id.to_string(), task);
        Ok(())
    }

    /// Stops a task's server and waits until its sockets are closed, so the task can be
    /// served again at once (a reconnected container binds 127.0.0.11:53 anew).
    pub async fn stop(&self, task_id: &str) {
        let server = self.servers.lock().expect("poisoned").remove(task_id);
        if let Some(task) = server {
            task.abort();
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                tracing::warn!(task = %task_id, "the DNS server did not stop within 2 s");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_come_from_resolv_conf_without_ourselves() {
        let conf = "# comment\nnameserver 10.0.2.3\nnameserver 127.0.0.11\nsearch lab\nnameserver 192.0.2.53\n";
        assert_eq!(
            upstreams_from(conf),
            vec![
                "10.0.2.3:53".parse().unwrap(),
                "192.0.2.53:53".parse().unwrap()
            ]
        );
    }
}

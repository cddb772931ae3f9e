//! Service discovery: a resolver at 127.0.0.11:53 (UDP and TCP) inside every task's
//! network namespace, served by the agent with hickory-server. Cluster names come from
//! the gossip endpoint tables, limited to the asking task's networks (names.rs); anything
//! else goes to the node's upstream resolvers, in order, each with a timeout.

mod forward;
pub mod names;

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Metadata, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use tokio::sync::oneshot;

use crate::gossip::Gossip;
use forward::Forwarder;
use names::{Lookup, QueryType};

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

/// A running server: how to stop it, and its task.
type Serving = (oneshot::Sender<()>, tokio::task::JoinHandle<()>);

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
    gossip: Gossip,
    forwarder: Arc<Forwarder>,
    /// Seconds clients may cache a cluster answer.
    ttl: u32,
    /// Per task: how to stop its server, and the server's task.
    servers: Mutex<HashMap<String, Serving>>,
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
            gossip,
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
        networks: HashSet<String>,
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
        let handler = Handler {
            gossip: self.gossip.clone(),
            networks,
            forwarder,
            ttl: self.ttl,
            malformed: self.malformed.clone(),
        };
        let mut server = Server::new(handler);
        server.register_socket(tokio::net::UdpSocket::from_std(udp).map_err(bound)?);
        server.register_listener(
            tokio::net::TcpListener::from_std(tcp).map_err(bound)?,
            Duration::from_secs(5),
            16 * 1024,
        );
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            tokio::select! {
                _ = server.block_until_done() => {}
                _ = stopped => {}
            }
            let _ = server.shutdown_gracefully().await;
        });
        self.servers
            .lock()
            .expect("poisoned")
            .insert(task_id.to_string(), (stop, task));
        Ok(())
    }

    /// Stops a task's server and waits until its sockets are closed, so the task can be
    /// served again at once (a reconnected container binds 127.0.0.11:53 anew).
    pub async fn stop(&self, task_id: &str) {
        let server = self.servers.lock().expect("poisoned").remove(task_id);
        if let Some((stop, task)) = server {
            let _ = stop.send(());
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                tracing::warn!(task = %task_id, "the DNS server did not stop within 2 s");
            }
        }
    }
}

struct Handler {
    gossip: Gossip,
    networks: HashSet<String>,
    forwarder: Arc<Forwarder>,
    ttl: u32,
    malformed: Arc<Malformed>,
}

impl Handler {
    fn records(&self, name: &Name, lookup: &Lookup) -> Vec<Record> {
        match lookup {
            Lookup::Addresses(ips) => ips
                .iter()
                .map(|ip| Record::from_rdata(name.clone(), self.ttl, RData::A(A(*ip))))
                .collect(),
            Lookup::Names(targets) => targets
                .iter()
                .filter_map(|t| Name::from_ascii(t).ok())
                .map(|t| Record::from_rdata(name.clone(), self.ttl, RData::PTR(PTR(t))))
                .collect(),
            Lookup::NoData | Lookup::Unknown => vec![],
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let Ok(info) = request.request_info() else {
            self.malformed.note();
            let msg = builder.error_msg(&request.metadata, ResponseCode::FormErr);
            return send(&mut response, msg, &request.metadata).await;
        };
        let name = info.query.name().to_string();
        let qtype = match info.query.query_type() {
            RecordType::A => QueryType::A,
            RecordType::PTR => QueryType::Ptr,
            _ => QueryType::Other,
        };
        let lookup = names::resolve(
            &self.gossip.endpoints_shared(),
            &self.networks,
            &name,
            qtype,
        );
        if lookup == Lookup::Unknown {
            let asked = (name.to_ascii_lowercase(), info.query.query_type());
            let Some(answer) = self.forwarder.ask(request.as_slice(), asked).await else {
                let msg = builder.error_msg(&request.metadata, ResponseCode::ServFail);
                return send(&mut response, msg, &request.metadata).await;
            };
            let mut metadata = answer.metadata;
            metadata.id = request.metadata.id;
            let msg = builder.build(
                metadata,
                answer.answers.iter(),
                answer.authorities.iter(),
                std::iter::empty(),
                answer.additionals.iter(),
            );
            return send(&mut response, msg, &request.metadata).await;
        }
        let queried = Name::from(info.query.name().clone());
        let records = self.records(&queried, &lookup);
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        metadata.recursion_available = true;
        let msg = builder.build(
            metadata,
            records.iter(),
            std::iter::empty(),
            std::iter::empty(),
            std::iter::empty(),
        );
        send(&mut response, msg, &request.metadata).await
    }
}

async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    msg: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    request: &Metadata,
) -> ResponseInfo {
    match response.send_response(msg).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!("sending a DNS answer: {e}");
            let mut metadata = Metadata::response_from_request(request);
            metadata.response_code = ResponseCode::ServFail;
            hickory_proto::op::Header {
                metadata,
                counts: Default::default(),
            }
            .into()
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

//! One task's resolver: a UDP loop that reads queries as they come, answers cluster names
//! in place from the name index, and hands every other name to a forwarding task whose
//! answer comes back to the loop; and a TCP listener for answers too big for UDP. The
//! loop alone owns the sockets, so stopping it frees 127.0.0.11:53 at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::os::fd::AsRawFd;

use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::batch;
use super::forward::Forwarder;
use super::names::{Lookup, NameIndex, QueryType};
use super::wire::{self, Query, Refused};
use super::{Malformed, Names};

/// How long a TCP client may stay silent between queries.
const TCP_IDLE: Duration = Duration::from_secs(5);
/// Forwarded queries waiting for an upstream, per task: past this, new ones are dropped
/// (the client retries), so a task flooding unknown names cannot exhaust the node.
const FORWARDS_IN_FLIGHT: usize = 256;

pub(super) struct Resolver {
    pub names: Arc<Names>,
    /// The task's networks.
    pub networks: Vec<String>,
    pub forwarder: Arc<Forwarder>,
    pub ttl: u32,
    pub malformed: Arc<Malformed>,
}

/// What became of a query.
enum Outcome {
    /// The answer is in the buffer.
    Answered,
    /// Not a cluster name: ask upstream.
    Forward,
    /// No answer at all.
    Dropped,
}

impl Resolver {
    /// Answers `packet` from `index` into `out` when it can: as much as fits in a UDP
    /// answer for that client, or in a TCP one.
    fn answer(
        &self,
        index: &NameIndex,
        packet: &[u8],
        over_tcp: bool,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let query = match Query::parse(packet) {
            Ok(q) => q,
            Err(Refused::Dropped) => return Outcome::Dropped,
            Err(Refused::Answer { id, rcode }) => {
                if rcode == wire::FORMERR {
                    self.malformed.note();
                }
                wire::refusal(id, rcode, out);
                return Outcome::Answered;
            }
        };
        let mut buf = [0; 256];
        let Some(name) = query
            .name(&mut buf)
            .filter(|_| query.qclass == wire::CLASS_IN)
        else {
            return Outcome::Forward;
        };
        let qtype = match query.qtype {
            wire::TYPE_A => QueryType::A,
            wire::TYPE_PTR => QueryType::Ptr,
            _ => QueryType::Other,
        };
        let lookup = index.resolve(&self.networks, name, qtype);
        if lookup == Lookup::Unknown {
            return Outcome::Forward;
        }
        let limit = if over_tcp {
            wire::TCP_MAX
        } else {
            query.udp_limit()
        };
        query.answer(&lookup, self.ttl, limit, out);
        Outcome::Answered
    }

    /// The upstream's answer to `packet`, or SERVFAIL when no upstream answered.
    async fn forward(&self, packet: &[u8]) -> Option<Vec<u8>> {
        let query = Query::parse(packet).ok()?;
        let mut buf = [0; 256];
        let name = query.name(&mut buf).unwrap_or_default().to_string();
        let asked = (name, RecordType::from(query.qtype));
        let mut out = Vec::new();
        match self.forwarder.ask(packet, asked).await {
            Some(mut answer) => {
                answer.metadata.id = query.id;
                out = answer.to_vec().ok()?;
            }
            None => query.error(wire::SERVFAIL, &mut out),
        }
        Some(out)
    }
}

/// Serves `resolver` on its sockets until the task is dropped.
pub(super) async fn serve(udp: UdpSocket, tcp: TcpListener, resolver: Resolver) {
    let resolver = Arc::new(resolver);
    let (forwarded, mut answers) = mpsc::channel::<(Vec<u8>, SocketAddr)>(FORWARDS_IN_FLIGHT);
    // Forwards and TCP connections live in here: dropped with the loop.
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            ready = udp.readable() => {
                if ready.is_err() {
                    return;
                }
                let mut to_forward = Vec::new();
                let fd = udp.as_raw_fd();
                let index = resolver.names.current();
                // One batch of what is queued; then the other branches get their turn.
                let _ = udp.try_io(Interest::READABLE, || {
                    batch::with(|batch| {
                        for i in 0..batch.receive(fd)? {
                            let (query, out) = batch.query(i);
                            match resolver.answer(&index, query, false, out) {
                                Outcome::Answered => batch.answered(i),
                                Outcome::Forward => {
                                    let query = query.to_vec();
                                    to_forward.extend(batch.source(i).map(|c| (query, c)));
                                }
                                Outcome::Dropped => {}
                            }
                        }
                        batch.send(fd);
                        Ok(())
                    })
                });
                for (query, client) in to_forward {
                    if tasks.len() >= FORWARDS_IN_FLIGHT {
                        break;
                    }
                    let (resolver, forwarded) = (resolver.clone(), forwarded.clone());
                    tasks.spawn(async move {
                        if let Some(answer) = resolver.forward(&query).await {
                            let _ = forwarded.send((answer, client)).await;
                        }
                    });
                }
            }
            Some((answer, client)) = answers.recv() => send(&udp, &answer, client).await,
            accepted = tcp.accept() => {
                if let Ok((stream, _)) = accepted {
                    tasks.spawn(serve_tcp(stream, resolver.clone()));
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

async fn send(udp: &UdpSocket, answer: &[u8], client: SocketAddr) {
    if let Err(e) = udp.send_to(answer, client).await {
        tracing::debug!(%client, "sending a DNS answer: {e}");
    }
}

/// One TCP client: length-prefixed queries, answered in turn, until it goes quiet.
async fn serve_tcp(mut stream: TcpStream, resolver: Arc<Resolver>) {
    let mut out = Vec::new();
    loop {
        let Ok(Ok(len)) = tokio::time::timeout(TCP_IDLE, stream.read_u16()).await else {
            return;
        };
        let mut packet = vec![0u8; len as usize];
        let read = tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet)).await;
        if !matches!(read, Ok(Ok(_))) {
            return;
        }
        let index = resolver.names.current();
        let answer = match resolver.answer(&index, &packet, true, &mut out) {
            Outcome::Answered => std::mem::take(&mut out),
            Outcome::Forward => match resolver.forward(&packet).await {
                Some(answer) => answer,
                None => return,
            },
            Outcome::Dropped => return,
        };
        let Ok(len) = u16::try_from(answer.len()) else {
            return;
        };
        if stream.write_u16(len).await.is_err() || stream.write_all(&answer).await.is_err() {
            return;
        }
        out = answer;
    }
}

//! Forwarding what is not a cluster name: to the node's upstream resolvers in turn, the
//! one that answered last first (so a dead upstream costs one timeout, not one per
//! query), with a short negative cache so a name that does not exist is not asked again
//! and again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How long "no such name" (or "no such record") is remembered.
const NEGATIVE_TTL: Duration = Duration::from_secs(10);
const NEGATIVE_ENTRIES: usize = 4096;

pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    preferred: AtomicUsize,
    negative: Mutex<HashMap<(String, RecordType), (Instant, Message)>>,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>) -> Forwarder {
        Forwarder {
            upstreams,
            preferred: AtomicUsize::new(0),
            negative: Mutex::default(),
        }
    }

    /// The upstream answer to `query` (raw wire bytes) for `asked`, or None when no
    /// upstream answered.
    pub async fn ask(&self, query: &[u8], asked: (String, RecordType)) -> Option<Message> {
        if let Some((at, cached)) = self.negative.lock().expect("poisoned").get(&asked)
            && at.elapsed() < NEGATIVE_TTL
        {
            return Some(cached.clone());
        }
        let n = self.upstreams.len();
        let first = self.preferred.load(Ordering::Relaxed);
        for i in (0..n).map(|k| (first + k) % n) {
            let upstream = self.upstreams[i];
            if let Ok(Some(answer)) =
                tokio::time::timeout(UPSTREAM_TIMEOUT, exchange(query, upstream)).await
            {
                self.preferred.store(i, Ordering::Relaxed);
                if is_negative(&answer) {
                    self.remember(asked, answer.clone());
                }
                return Some(answer);
            }
            tracing::debug!(%upstream, "upstream resolver did not answer");
        }
        None
    }

    fn remember(&self, asked: (String, RecordType), answer: Message) {
        let mut cache = self.negative.lock().expect("poisoned");
        if cache.len() >= NEGATIVE_ENTRIES {
            cache.retain(|_, (at, _)| at.elapsed() < NEGATIVE_TTL);
        }
        if cache.len() < NEGATIVE_ENTRIES {
            cache.insert(asked, (Instant::now(), answer));
        }
    }
}

fn is_negative(m: &Message) -> bool {
    m.metadata.response_code == ResponseCode::NXDomain
        || (m.metadata.response_code == ResponseCode::NoError && m.answers.is_empty())
}

async fn exchange(query: &[u8], upstream: SocketAddr) -> Option<Message> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let socket = tokio::net::UdpSocket::bind(bind).await.ok()?;
    socket.connect(upstream).await.ok()?;
    socket.send(query).await.ok()?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket.recv(&mut buf).await.ok()?;
        // Only the answer to this query (same ID) counts.
        if n >= 2 && query.len() >= 2 && buf[..2] == query[..2] {
            return Message::from_vec(&buf[..n]).ok();
        }
    }
}

//! Endpoint dissemination, scoped to each network's nodes: a write goes at once, over UDP,
//! to every node the managers list for its network; and every few seconds a node swaps
//! tables with one random peer over TCP (push/pull) for the networks both have, which
//! repairs what a lost datagram or a partition left behind.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::crypto::Rejected;
use super::swim::UPDATES;
use super::{Gossip, Member, Record};

const MAX_FRAME: usize = 16 << 20;

/// One side of a push/pull: the networks it has, and its entries for them.
#[derive(Serialize, Deserialize)]
struct Exchange {
    networks: Vec<String>,
    records: Vec<Record>,
}

impl Gossip {
    /// Seals and sends one datagram.
    pub(super) async fn send(&self, udp: &UdpSocket, plain: &[u8], dst: SocketAddr) {
        if let Some(frame) = self.seal(plain)
            && udp.send_to(&frame, dst).await.is_ok()
        {
            self.inner.counters.sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends a write to the other nodes of its network.
    pub(super) fn send_update(&self, record: &Record) {
        let Ok(body) = postcard::to_allocvec(&vec![record.clone()]) else {
            return;
        };
        let mut plain = vec![UPDATES];
        plain.extend_from_slice(&body);
        let targets = self.scope_peers(&record.endpoint.network_id);
        let me = self.clone();
        tokio::spawn(async move {
            for dst in targets {
                me.send(&me.inner.udp, &plain, dst).await;
            }
        });
    }

    /// My entries for the networks I have and `theirs` (all of mine when None).
    fn exchange(&self, theirs: Option<&[String]>) -> Vec<u8> {
        let networks: Vec<String> = self
            .inner
            .scopes
            .lock()
            .expect("poisoned")
            .keys()
            .filter(|n| theirs.is_none_or(|t| t.contains(n)))
            .cloned()
            .collect();
        let records = self
            .inner
            .table
            .lock()
            .expect("poisoned")
            .records()
            .into_iter()
            .filter(|r| networks.contains(&r.endpoint.network_id))
            .collect();
        postcard::to_allocvec(&Exchange { networks, records }).unwrap_or_default()
    }

    fn decode(&self, frame: &[u8]) -> Option<Exchange> {
        let plain = self.open(frame)?;
        if let Ok(x) = postcard::from_bytes(&plain) {
            Some(x)
        } else {
            self.count_rejected(Rejected::Malformed);
            None
        }
    }

    /// Swaps tables with one member.
    /// A swap with a node that just joined one of this node's networks: retried for a
    /// moment, since that node may not hold the gossip keys yet.
    pub(super) async fn push_pull_new_peer(self, peer: Member) {
        for attempt in 1..=4u32 {
            if self.clone().push_pull(peer.clone()).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
        }
    }

    /// Swaps tables with one member; true when both sides' tables were exchanged.
    pub(super) async fn push_pull(self, peer: Member) -> bool {
        let swap = async {
            let mut stream = TcpStream::connect(peer.addr).await?;
            let frame = self
                .seal(&self.exchange(None))
                .ok_or_else(|| std::io::Error::other("no gossip key yet"))?;
            write_frame(&mut stream, &frame).await?;
            read_frame(&mut stream).await
        };
        match tokio::time::timeout(Duration::from_secs(5), swap).await {
            Ok(Ok(reply)) => {
                let Some(x) = self.decode(&reply) else {
                    return false;
                };
                self.inner
                    .counters
                    .push_pulls
                    .fetch_add(1, Ordering::Relaxed);
                self.absorb(x.records);
                self.pulled(&x.networks);
                true
            }
            Ok(Err(e)) => {
                tracing::debug!(peer = %peer.addr, "push/pull: {e}");
                false
            }
            Err(_) => {
                tracing::debug!(peer = %peer.addr, "push/pull timed out");
                false
            }
        }
    }

    pub(super) async fn serve_push_pull(self, listener: TcpListener) {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let me = self.clone();
            tokio::spawn(async move {
                let served = async {
                    let frame = read_frame(&mut stream).await?;
                    let Some(x) = me.decode(&frame) else {
                        return Ok(());
                    };
                    me.inner.counters.push_pulls.fetch_add(1, Ordering::Relaxed);
                    me.absorb(x.records);
                    if let Some(reply) = me.seal(&me.exchange(Some(&x.networks))) {
                        write_frame(&mut stream, &reply).await?;
                    }
                    Ok::<_, std::io::Error>(())
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), served).await;
            });
        }
    }
}

async fn write_frame(s: &mut TcpStream, frame: &[u8]) -> std::io::Result<()> {
    s.write_all(&(frame.len() as u32).to_be_bytes()).await?;
    s.write_all(frame).await?;
    s.flush().await
}

async fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "a {len}-byte frame is too big"
        )));
    }
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

//! Membership and failure detection: the foca SWIM state machine, fed by one loop that
//! owns it, and the UDP receiver that opens every datagram and sends it where it belongs
//! (SWIM packets to foca, endpoint updates to the table).

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use foca::{AccumulatingRuntime, Config, Foca, NoCustomBroadcast, OwnedNotification};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::crypto::{self, Rejected};
use super::{Gossip, Member, Record};

/// The first byte of every opened datagram says what it carries.
pub const SWIM: u8 = 1;
pub const UPDATES: u8 = 2;

pub enum Input {
    Packet(Vec<u8>),
    Timer(foca::Timer<Member>),
    Announce(Member),
    Leave(oneshot::Sender<()>),
}

type Swim = Foca<Member, foca::PostcardCodec, rand_foca::rngs::StdRng, NoCustomBroadcast>;

fn config() -> Config {
    let mut c = Config::new_lan(std::num::NonZeroU32::new(32).expect("non-zero"));
    c.probe_period = Duration::from_secs(1);
    c.probe_rtt = Duration::from_millis(400);
    c.suspect_to_down_after = Duration::from_secs(3);
    // Room for the type byte and the seal.
    c.max_packet_size = NonZeroUsize::new(1400 - 1 - crypto::OVERHEAD).expect("non-zero");
    c
}

impl Gossip {
    /// Opens datagrams: SWIM goes to the state machine, updates to the table.
    pub(super) async fn receive(self, udp: Arc<UdpSocket>) {
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, _from)) = udp.recv_from(&mut buf).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            self.inner.counters.received.fetch_add(1, Ordering::Relaxed);
            let Some(plain) = self.open(&buf[..n]) else {
                continue;
            };
            match plain.split_first() {
                Some((&SWIM, packet)) => {
                    let _ = self.inner.input.send(Input::Packet(packet.to_vec()));
                }
                Some((&UPDATES, body)) => match postcard::from_bytes::<Vec<Record>>(body) {
                    Ok(records) => {
                        self.absorb(records);
                    }
                    Err(_) => self.count_rejected(Rejected::Malformed),
                },
                _ => self.count_rejected(Rejected::Malformed),
            }
        }
    }

    /// The SWIM loop: the only owner of the foca state machine.
    pub(super) async fn run_swim(
        self,
        udp: Arc<UdpSocket>,
        mut inputs: mpsc::UnboundedReceiver<Input>,
    ) {
        let rng: rand_foca::rngs::StdRng = rand_foca::make_rng();
        let mut foca = Foca::new(self.inner.me.clone(), config(), rng, foca::PostcardCodec);
        let mut rt = AccumulatingRuntime::new();
        while let Some(input) = inputs.recv().await {
            let mut left = None;
            let result = match input {
                Input::Packet(d) => foca.handle_data(&d, &mut rt),
                Input::Timer(t) => foca.handle_timer(t, &mut rt),
                Input::Announce(m) => foca.announce(m, &mut rt),
                Input::Leave(done) => {
                    left = Some(done);
                    foca.leave_cluster(&mut rt)
                }
            };
            if let Err(e) = result {
                tracing::debug!("gossip: {e}");
                if matches!(e, foca::Error::MalformedPacket) {
                    self.count_rejected(Rejected::Malformed);
                }
            }
            self.drain(&mut rt, &udp, &foca).await;
            if let Some(done) = left {
                let _ = done.send(());
            }
        }
    }

    async fn drain(&self, rt: &mut AccumulatingRuntime<Member>, udp: &UdpSocket, foca: &Swim) {
        while let Some((dst, data)) = rt.to_send() {
            let mut plain = Vec::with_capacity(data.len() + 1);
            plain.push(SWIM);
            plain.extend_from_slice(&data);
            self.send(udp, &plain, dst.addr).await;
        }
        while let Some((delay, timer)) = rt.to_schedule() {
            let input = self.inner.input.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = input.send(Input::Timer(timer));
            });
        }
        let mut membership_changed = false;
        while let Some(n) = rt.to_notify() {
            match n {
                OwnedNotification::MemberUp(m) => {
                    tracing::info!(node = %m.node_id, addr = %m.addr, "gossip: member up");
                    self.inner
                        .departed
                        .lock()
                        .expect("poisoned")
                        .remove(&m.node_id);
                    membership_changed = true;
                    tokio::spawn(self.clone().push_pull(m));
                }
                OwnedNotification::MemberDown(m) => {
                    tracing::info!(node = %m.node_id, "gossip: member down");
                    self.inner
                        .departed
                        .lock()
                        .expect("poisoned")
                        .insert(m.node_id.clone(), Instant::now());
                    membership_changed = true;
                }
                _ => {}
            }
        }
        if membership_changed {
            *self.inner.alive.lock().expect("poisoned") = foca
                .iter_members()
                .map(|m| (m.id().node_id.clone(), m.id().clone()))
                .collect();
            self.notify();
        }
    }
}

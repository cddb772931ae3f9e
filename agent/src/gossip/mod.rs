//! Gossip on port 7946: SWIM membership and failure detection over UDP (foca), endpoint
//! updates piggybacked on it as custom broadcasts, and a TCP push/pull of the whole
//! endpoint table every few seconds (anti-entropy) so a node that missed updates, or was
//! cut off, heals. Everything on the wire is sealed under the managers' keyring; what is
//! not is dropped and counted. The managers stay the authority on addresses; gossip only
//! spreads who holds them, fast.

pub mod crypto;
pub mod table;

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use foca::{AccumulatingRuntime, BroadcastHandler, Config, Foca, Invalidates, OwnedNotification};
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use shoal_proto::{GossipEndpoint, GossipPeer, GossipStatusResponse, NetworkKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};

use crypto::{Keyring, Rejected};
use table::{Clock, Table};
pub use table::{Endpoint, Key, Record};

pub const PORT: u16 = 7946;
const PUSH_PULL_EVERY: Duration = Duration::from_secs(5);
const TOMBSTONE_TTL: Duration = Duration::from_secs(300);
/// How long a departed node's entries are kept in case it comes back.
const DEPARTED_TTL: Duration = Duration::from_secs(60);
/// Entries of this node found in others' tables but not published since the start are
/// withdrawn after this grace (the executor re-publishes adopted tasks before it).
const ADOPTION_GRACE: Duration = Duration::from_secs(15);
const MAX_FRAME: usize = 16 << 20;

/// A gossip member: the node, where it listens, and a counter bumped on every (re)start
/// so a restarted agent can rejoin at once.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    pub node_id: String,
    pub addr: SocketAddr,
    pub bump: u64,
}

impl foca::Identity for Member {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Member {
            bump: self.bump.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.bump > adversary.bump
    }
}

/// What the managers tell the agent (through its heartbeats) that gossip needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterView {
    pub keys: Vec<NetworkKey>,
    pub primary_key: u32,
    pub peers: Vec<GossipPeer>,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    sent: AtomicU64,
    dropped_bad_key: AtomicU64,
    dropped_malformed: AtomicU64,
    push_pulls: AtomicU64,
}

struct Inner {
    me: Member,
    table: Mutex<Table>,
    local: Mutex<HashMap<Key, Record>>,
    clock: Mutex<Clock>,
    keyring: RwLock<Keyring>,
    /// The ring's key IDs and the primary one, as last applied.
    keys: Mutex<(Vec<u32>, u32)>,
    alive: Mutex<HashMap<String, Member>>,
    /// The other nodes as the managers list them.
    peers: Mutex<Vec<GossipPeer>>,
    departed: Mutex<HashMap<String, Instant>>,
    counters: Counters,
    changed: watch::Sender<u64>,
    started: Instant,
    input: mpsc::UnboundedSender<Input>,
    loops: Mutex<Vec<tokio::task::AbortHandle>>,
}

enum Input {
    Datagram(Vec<u8>),
    Timer(foca::Timer<Member>),
    Announce(Member),
    Broadcast(Vec<u8>),
    Leave(oneshot::Sender<()>),
}

/// The node's gossip agent. Cheap to clone.
#[derive(Clone)]
pub struct Gossip {
    inner: Arc<Inner>,
}

impl Gossip {
    /// Binds 7946 (UDP and TCP) on `addr` and starts gossiping once the managers handed
    /// out a key; `view` carries the keyring and the peers to join through.
    pub async fn start(
        node_id: &str,
        addr: Ipv4Addr,
        port: u16,
        mut view: watch::Receiver<ClusterView>,
    ) -> std::io::Result<Gossip> {
        let bind = SocketAddr::from((addr, port));
        // A previous incarnation (before a role change) may still be letting go of the port.
        let mut attempts = 0;
        let (udp, tcp) = loop {
            let bound = async {
                Ok::<_, std::io::Error>((
                    UdpSocket::bind(bind).await?,
                    TcpListener::bind(bind).await?,
                ))
            };
            match bound.await {
                Ok(b) => break b,
                Err(e) if attempts < 30 && e.kind() == std::io::ErrorKind::AddrInUse => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let udp = Arc::new(udp);
        let (input, inputs) = mpsc::unbounded_channel();
        let bump = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let inner = Arc::new(Inner {
            me: Member {
                node_id: node_id.to_string(),
                addr: bind,
                bump,
            },
            table: Mutex::default(),
            local: Mutex::default(),
            clock: Mutex::default(),
            keyring: RwLock::default(),
            keys: Mutex::default(),
            alive: Mutex::default(),
            peers: Mutex::default(),
            departed: Mutex::default(),
            counters: Counters::default(),
            changed: watch::channel(0).0,
            started: Instant::now(),
            input,
            loops: Mutex::default(),
        });
        let g = Gossip { inner };
        let me = g.clone();
        let follow_view = async move {
            loop {
                me.apply_view(&view.borrow_and_update().clone());
                if view.changed().await.is_err() {
                    return;
                }
            }
        };
        *g.inner.loops.lock().expect("poisoned") = vec![
            tokio::spawn(g.clone().receive(udp.clone())).abort_handle(),
            tokio::spawn(g.clone().run_swim(udp, inputs)).abort_handle(),
            tokio::spawn(g.clone().serve_push_pull(tcp)).abort_handle(),
            tokio::spawn(follow_view).abort_handle(),
            tokio::spawn(g.clone().maintain()).abort_handle(),
        ];
        Ok(g)
    }

    /// Stops gossiping and frees the ports (without leaving: see `leave`).
    pub fn stop(&self) {
        for l in self.inner.loops.lock().expect("poisoned").drain(..) {
            l.abort();
        }
    }

    fn apply_view(&self, view: &ClusterView) {
        let ids = (
            view.keys.iter().map(|k| k.id).collect::<Vec<u32>>(),
            view.primary_key,
        );
        let mut applied = self.inner.keys.lock().expect("poisoned");
        if *applied != ids {
            *self.inner.keyring.write().expect("poisoned") =
                Keyring::new(&view.keys, view.primary_key);
            *applied = ids;
        }
        drop(applied);
        *self.inner.peers.lock().expect("poisoned") = view.peers.clone();
        self.announce_to_missing();
    }

    /// Announces this node to the managers' peers gossip does not count as alive: how a
    /// node joins, and how both sides of a healed partition find each other again.
    fn announce_to_missing(&self) {
        let alive = self.inner.alive.lock().expect("poisoned").clone();
        let missing: Vec<GossipPeer> = self
            .inner
            .peers
            .lock()
            .expect("poisoned")
            .iter()
            .filter(|p| !alive.contains_key(&p.node_id))
            .cloned()
            .collect();
        self.announce_to(&missing);
    }

    fn announce_to(&self, peers: &[GossipPeer]) {
        for p in peers {
            let Ok(ip) = p.addr.parse::<Ipv4Addr>() else {
                continue;
            };
            let _ = self.inner.input.send(Input::Announce(Member {
                node_id: p.node_id.clone(),
                addr: SocketAddr::from((ip, self.inner.me.addr.port())),
                bump: 0,
            }));
        }
    }

    /// Tells every node about an endpoint of this node (a new one, or a change).
    pub fn publish(&self, endpoint: Endpoint) {
        self.write(endpoint, false);
    }

    /// Withdraws an endpoint this node published.
    pub fn withdraw(&self, key: &Key) {
        let existing = self.inner.local.lock().expect("poisoned").get(key).cloned();
        if let Some(r) = existing.filter(|r| !r.deleted) {
            self.write(r.endpoint, true);
        }
    }

    fn write(&self, endpoint: Endpoint, deleted: bool) {
        let record = Record {
            version: self.inner.clock.lock().expect("poisoned").tick(),
            endpoint,
            deleted,
        };
        self.inner
            .local
            .lock()
            .expect("poisoned")
            .insert(record.endpoint.key(), record.clone());
        if let Ok(bytes) = postcard::to_allocvec(&record) {
            let _ = self.inner.input.send(Input::Broadcast(bytes));
        }
    }

    /// Live endpoints of every network: this node's, and those of nodes gossip
    /// considers alive.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let alive = self.inner.alive.lock().expect("poisoned").clone();
        let me = &self.inner.me.node_id;
        self.inner
            .table
            .lock()
            .expect("poisoned")
            .live(|n| n == me || alive.contains_key(n))
    }

    /// Changes whenever the live endpoints may have changed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    /// A snapshot for `shoal debug gossip`.
    pub fn status(&self) -> GossipStatusResponse {
        let c = &self.inner.counters;
        let mut members: Vec<GossipPeer> = self
            .inner
            .alive
            .lock()
            .expect("poisoned")
            .values()
            .map(|m| GossipPeer {
                node_id: m.node_id.clone(),
                addr: m.addr.to_string(),
            })
            .collect();
        members.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        let entries = self.inner.table.lock().expect("poisoned").records().len() as u64;
        let keys = self.inner.keys.lock().expect("poisoned").clone();
        GossipStatusResponse {
            node_id: self.inner.me.node_id.clone(),
            addr: self.inner.me.addr.to_string(),
            members,
            entries,
            endpoints: self
                .endpoints()
                .into_iter()
                .map(|e| GossipEndpoint {
                    network_id: e.network_id,
                    task_id: e.task_id,
                    node_id: e.node_id,
                    ip: format!("{}/{}", e.ip, e.prefix),
                    mac: crate::netlink::mac_string(&e.mac),
                    vtep: e.vtep.to_string(),
                    service_name: e.service_name,
                })
                .collect(),
            received: c.received.load(Ordering::Relaxed),
            sent: c.sent.load(Ordering::Relaxed),
            dropped_bad_key: c.dropped_bad_key.load(Ordering::Relaxed),
            dropped_malformed: c.dropped_malformed.load(Ordering::Relaxed),
            push_pulls: c.push_pulls.load(Ordering::Relaxed),
            key_ids: keys.0,
            primary_key_id: keys.1,
        }
    }

    /// Leaves the cluster on purpose, so the others drop this node's endpoints at once.
    pub async fn leave(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.input.send(Input::Leave(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
    }

    fn notify(&self) {
        self.inner.changed.send_modify(|v| *v += 1);
    }

    fn count_rejected(&self, r: Rejected) {
        let c = &self.inner.counters;
        match r {
            Rejected::BadKey => c.dropped_bad_key.fetch_add(1, Ordering::Relaxed),
            Rejected::Malformed => c.dropped_malformed.fetch_add(1, Ordering::Relaxed),
        };
    }

    fn open(&self, frame: &[u8]) -> Option<Vec<u8>> {
        match self.inner.keyring.read().expect("poisoned").open(frame) {
            Ok(plain) => Some(plain),
            Err(r) => {
                self.count_rejected(r);
                None
            }
        }
    }

    fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.inner.keyring.read().expect("poisoned").seal(plain)
    }

    /// Merges records from another node. Returns whether anything changed.
    fn absorb(&self, records: Vec<Record>) -> bool {
        let now = Instant::now();
        let me = &self.inner.me.node_id;
        let mut changed = false;
        for r in records {
            if &r.endpoint.node_id == me {
                self.reassert(r);
                continue;
            }
            changed |= self.inner.table.lock().expect("poisoned").merge(r, now);
        }
        if changed {
            self.notify();
        }
        changed
    }

    /// Another node holds a copy of one of this node's entries: if it is stale (an
    /// earlier life of this agent wrote it), write over it.
    fn reassert(&self, theirs: Record) {
        let key = theirs.endpoint.key();
        let mine = self
            .inner
            .local
            .lock()
            .expect("poisoned")
            .get(&key)
            .cloned();
        match mine {
            Some(mine) if mine.version > theirs.version => {}
            Some(mine) => self.write(mine.endpoint, mine.deleted),
            None if theirs.deleted => {}
            None if self.inner.started.elapsed() > ADOPTION_GRACE => {
                self.write(theirs.endpoint, true)
            }
            None => {
                // Keep it until the grace ends: the executor may still adopt its task.
                self.inner
                    .table
                    .lock()
                    .expect("poisoned")
                    .merge(theirs, Instant::now());
            }
        }
    }

    async fn receive(self, udp: Arc<UdpSocket>) {
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, _from)) = udp.recv_from(&mut buf).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            self.inner.counters.received.fetch_add(1, Ordering::Relaxed);
            if let Some(plain) = self.open(&buf[..n]) {
                let _ = self.inner.input.send(Input::Datagram(plain));
            }
        }
    }

    fn foca_config() -> Config {
        let mut c = Config::new_lan(std::num::NonZeroU32::new(32).expect("non-zero"));
        c.probe_period = Duration::from_millis(1000);
        c.probe_rtt = Duration::from_millis(400);
        c.suspect_to_down_after = Duration::from_secs(3);
        c.max_packet_size = NonZeroUsize::new(1400 - crypto::OVERHEAD).expect("non-zero");
        c
    }

    /// The SWIM loop: the only owner of the foca state machine.
    async fn run_swim(self, udp: Arc<UdpSocket>, mut inputs: mpsc::UnboundedReceiver<Input>) {
        let handler = Handler {
            gossip: self.clone(),
        };
        let rng: rand_foca::rngs::StdRng = rand_foca::make_rng();
        let mut foca = Foca::with_custom_broadcast(
            self.inner.me.clone(),
            Self::foca_config(),
            rng,
            foca::PostcardCodec,
            handler,
        );
        let mut rt = AccumulatingRuntime::new();
        while let Some(input) = inputs.recv().await {
            let mut left = None;
            let result = match input {
                Input::Datagram(d) => foca.handle_data(&d, &mut rt),
                Input::Timer(t) => foca.handle_timer(t, &mut rt),
                Input::Announce(m) => foca.announce(m, &mut rt),
                Input::Broadcast(b) => foca.add_broadcast(&b).map(|_| ()),
                Input::Leave(done) => {
                    left = Some(done);
                    foca.leave_cluster(&mut rt)
                }
            };
            if let Err(e) = result {
                tracing::debug!("gossip: {e}");
                if matches!(
                    e,
                    foca::Error::MalformedPacket | foca::Error::CustomBroadcast(_)
                ) {
                    self.count_rejected(Rejected::Malformed);
                }
            }
            self.drain(&mut rt, &udp, &foca).await;
            if let Some(done) = left {
                let _ = done.send(());
            }
        }
    }

    async fn drain<B: BroadcastHandler<Member>>(
        &self,
        rt: &mut AccumulatingRuntime<Member>,
        udp: &UdpSocket,
        foca: &Foca<Member, foca::PostcardCodec, rand_foca::rngs::StdRng, B>,
    ) {
        while let Some((dst, data)) = rt.to_send() {
            if let Some(frame) = self.seal(&data)
                && udp.send_to(&frame, dst.addr).await.is_ok()
            {
                self.inner.counters.sent.fetch_add(1, Ordering::Relaxed);
            }
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

    /// Periodic work: push/pull with a random member, withdrawing stale own entries,
    /// garbage collection, and re-joining through the managers' peers when alone.
    async fn maintain(self) {
        let mut tick = tokio::time::interval(PUSH_PULL_EVERY);
        loop {
            tick.tick().await;
            let members: Vec<Member> = self
                .inner
                .alive
                .lock()
                .expect("poisoned")
                .values()
                .cloned()
                .collect();
            if let Some(m) = members.choose(&mut rand::rng()) {
                tokio::spawn(self.clone().push_pull(m.clone()));
            }
            self.announce_to_missing();
            if self.inner.started.elapsed() > ADOPTION_GRACE {
                self.withdraw_orphans();
            }
            let departed = self.inner.departed.lock().expect("poisoned").clone();
            self.inner.table.lock().expect("poisoned").collect_garbage(
                Instant::now(),
                TOMBSTONE_TTL,
                |n| departed.get(n).is_some_and(|t| t.elapsed() > DEPARTED_TTL),
            );
        }
    }

    /// Entries of this node learnt from others, for tasks it no longer runs.
    fn withdraw_orphans(&self) {
        let me = self.inner.me.node_id.clone();
        let local: HashSet<Key> = self
            .inner
            .local
            .lock()
            .expect("poisoned")
            .keys()
            .cloned()
            .collect();
        let orphans: Vec<Endpoint> = self
            .inner
            .table
            .lock()
            .expect("poisoned")
            .live(|n| n == me)
            .into_iter()
            .filter(|e| !local.contains(&e.key()))
            .collect();
        for e in orphans {
            tracing::info!(task = %e.task_id, "withdrawing an endpoint this node no longer has");
            self.write(e, true);
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        postcard::to_allocvec(&self.inner.table.lock().expect("poisoned").records())
            .unwrap_or_default()
    }

    /// Exchanges whole tables with one member.
    async fn push_pull(self, peer: Member) {
        let exchange = async {
            let mut stream = TcpStream::connect(peer.addr).await?;
            let frame = self
                .seal(&self.snapshot())
                .ok_or_else(|| std::io::Error::other("no gossip key yet"))?;
            write_frame(&mut stream, &frame).await?;
            read_frame(&mut stream).await
        };
        match tokio::time::timeout(Duration::from_secs(5), exchange).await {
            Ok(Ok(reply)) => {
                if let Some(records) = self.decode_records(&reply) {
                    self.inner
                        .counters
                        .push_pulls
                        .fetch_add(1, Ordering::Relaxed);
                    self.absorb(records);
                }
            }
            Ok(Err(e)) => tracing::debug!(peer = %peer.addr, "push/pull: {e}"),
            Err(_) => tracing::debug!(peer = %peer.addr, "push/pull timed out"),
        }
    }

    fn decode_records(&self, frame: &[u8]) -> Option<Vec<Record>> {
        let plain = self.open(frame)?;
        match postcard::from_bytes(&plain) {
            Ok(r) => Some(r),
            Err(_) => {
                self.count_rejected(Rejected::Malformed);
                None
            }
        }
    }

    async fn serve_push_pull(self, listener: TcpListener) {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let me = self.clone();
            tokio::spawn(async move {
                let served = async {
                    let frame = read_frame(&mut stream).await?;
                    let Some(records) = me.decode_records(&frame) else {
                        return Ok(());
                    };
                    me.inner.counters.push_pulls.fetch_add(1, Ordering::Relaxed);
                    me.absorb(records);
                    if let Some(reply) = me.seal(&me.snapshot()) {
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

/// Identifies one version of one endpoint entry among foca's broadcasts.
struct BroadcastKey {
    key: Key,
    version: u64,
}

impl Invalidates for BroadcastKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.key == other.key && self.version >= other.version
    }
}

/// Receives endpoint broadcasts riding on SWIM messages.
struct Handler {
    gossip: Gossip,
}

#[derive(Debug, thiserror::Error)]
#[error("undecodable endpoint broadcast")]
struct Undecodable;

impl BroadcastHandler<Member> for Handler {
    type Key = BroadcastKey;
    type Error = Undecodable;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&Member>,
    ) -> Result<Option<BroadcastKey>, Undecodable> {
        let record: Record = postcard::from_bytes(data).map_err(|_| Undecodable)?;
        let key = BroadcastKey {
            key: record.endpoint.key(),
            version: record.version,
        };
        let inner = &self.gossip.inner;
        if sender.is_none() {
            // Our own write: record it and spread it.
            inner
                .table
                .lock()
                .expect("poisoned")
                .merge(record, Instant::now());
            self.gossip.notify();
            return Ok(Some(key));
        }
        let fresh = record.endpoint.node_id != inner.me.node_id
            && inner
                .table
                .lock()
                .expect("poisoned")
                .get(&key.key)
                .is_none_or(|r| r.version < record.version);
        if fresh {
            self.gossip.absorb(vec![record]);
            Ok(Some(key))
        } else {
            if record.endpoint.node_id == inner.me.node_id {
                self.gossip.reassert(record);
            }
            Ok(None)
        }
    }
}

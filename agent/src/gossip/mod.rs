//! Gossip on port 7946: SWIM membership and failure detection over UDP (foca, swim.rs),
//! and endpoint tables scoped per network (sync.rs): a write goes straight to the other
//! nodes of its network, and a TCP push/pull every few seconds heals what was missed.
//! Everything on the wire is sealed under the managers' keyring; what is not is dropped
//! and counted. The managers stay the authority on addresses and on which nodes have a
//! network; gossip only spreads who holds what, fast.

pub mod crypto;
mod swim;
mod sync;
pub mod table;

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use shoal_proto::{GossipEndpoint, GossipPeer, GossipStatusResponse, NetworkKey};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};

use crypto::{Keyring, Rejected};
use swim::Input;
use table::{Clock, Table};
pub use table::{Endpoint, Key, Protocol, PublishedPort, Record};

pub const PORT: u16 = 7946;
const PUSH_PULL_EVERY: Duration = Duration::from_secs(5);
const TOMBSTONE_TTL: Duration = Duration::from_mins(5);
/// How long a departed node's entries are kept in case it comes back.
const DEPARTED_TTL: Duration = Duration::from_mins(1);
/// Entries of this node found in others' tables but not published since the start are
/// withdrawn after this grace (the executor re-publishes adopted tasks before it).
const ADOPTION_GRACE: Duration = Duration::from_secs(15);
/// How long a new entry of a task the managers do not (yet) list is used anyway: its
/// node may publish it before this node's assignments catch up with the new task.
const LISTING_GRACE: Duration = Duration::from_secs(10);
/// How long a task the managers stopped listing is remembered as gone (task IDs are
/// never reused; this only bounds the memory).
const DELISTED_TTL: Duration = Duration::from_hours(1);
/// How long after the start the tables may still lack what other nodes publish (it comes
/// with the first push/pulls): until then what an earlier agent programmed is kept.
const SETTLING: Duration = Duration::from_secs(10);

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
    /// The networks this node has, each with the nodes the managers list for it.
    scopes: Mutex<HashMap<String, Vec<GossipPeer>>>,
    /// Per network, the tasks the managers say may have an endpoint: the entries of
    /// other tasks are stale and not used (None until the managers said).
    listed: Mutex<Option<HashMap<String, HashSet<String>>>>,
    /// (Network, task) pairs the managers listed once and no longer do, since when: their entries are
    /// never used again, even rewritten by a node that has not yet heard (a worker
    /// back from a partition re-publishing tasks replaced meanwhile).
    delisted: Mutex<HashMap<Key, Instant>>,
    /// Whether the view holds an unlisted entry still in its LISTING_GRACE, so the view
    /// is computed again once that grace is over.
    unlisted_in_grace: std::sync::atomic::AtomicBool,
    /// This node's entries from an earlier life to withdraw as soon as a copy arrives.
    retracted: Mutex<HashSet<Key>>,
    /// Networks whose table has been swapped with another node at least once.
    pulled: Mutex<HashSet<String>>,
    udp: Arc<UdpSocket>,
    departed: Mutex<HashMap<String, Instant>>,
    counters: Counters,
    changed: watch::Sender<u64>,
    started: Instant,
    input: mpsc::UnboundedSender<Input>,
    loops: Mutex<Vec<tokio::task::AbortHandle>>,
    /// The live endpoints as of a `changed` version.
    view: Mutex<Option<(u64, Arc<Vec<Endpoint>>)>>,
}

/// Whether an entry of `task`, last changed `age` ago, may be used when the managers
/// list `listed` for its network, and whether only its grace allows it.
fn listing_allows(listed: Option<&HashSet<String>>, task: &str, age: Duration) -> (bool, bool) {
    match listed {
        Some(tasks) if !tasks.contains(task) => {
            let young = age < LISTING_GRACE;
            (young, young)
        }
        _ => (true, false),
    }
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
            scopes: Mutex::default(),
            listed: Mutex::default(),
            delisted: Mutex::default(),
            unlisted_in_grace: Default::default(),
            retracted: Mutex::default(),
            pulled: Mutex::default(),
            udp: udp.clone(),
            departed: Mutex::default(),
            counters: Counters::default(),
            changed: watch::channel(0).0,
            started: Instant::now(),
            input,
            loops: Mutex::default(),
            view: Mutex::default(),
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
        for m in peers.iter().filter_map(|p| self.member_for(p)) {
            let _ = self.inner.input.send(Input::Announce(m));
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

    /// Withdraws an entry of this node's whether this life of the agent published it or
    /// an earlier one did (a task found stopped after a restart): nobody waits out the
    /// adoption grace for it.
    pub fn retract(&self, key: &Key) {
        if self.inner.local.lock().expect("poisoned").contains_key(key) {
            return self.withdraw(key);
        }
        let stale = self
            .inner
            .table
            .lock()
            .expect("poisoned")
            .get(key)
            .filter(|r| !r.deleted && r.endpoint.node_id == self.inner.me.node_id)
            .map(|r| r.endpoint.clone());
        match stale {
            Some(endpoint) => self.write(endpoint, true),
            // Not learnt yet: withdrawn when a copy arrives (see reassert).
            None => {
                self.inner
                    .retracted
                    .lock()
                    .expect("poisoned")
                    .insert(key.clone());
            }
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
        self.inner
            .table
            .lock()
            .expect("poisoned")
            .merge(record.clone(), Instant::now());
        self.notify();
        self.send_update(&record);
    }

    /// The networks this node has and, for each, the nodes that have it too (from the
    /// managers). Entries of networks it no longer has are forgotten; for a network it
    /// just got, it swaps tables with a node of that network at once, and likewise with a
    /// node that just joined one of its networks: whichever of the two learns of the
    /// other last makes the swap, so an entry written while neither knew the other (sent
    /// to nobody) is not left waiting for the periodic push/pull.
    pub fn set_scopes(&self, scopes: HashMap<String, Vec<GossipPeer>>) {
        let me = self.inner.me.node_id.clone();
        let gained: HashMap<String, GossipPeer> = {
            let mut current = self.inner.scopes.lock().expect("poisoned");
            let mut gained = HashMap::new();
            for (network, peers) in &scopes {
                let others = peers.iter().filter(|p| p.node_id != me);
                let new: Vec<&GossipPeer> = match current.get(network) {
                    None => others.take(1).collect(),
                    Some(known) => others
                        .filter(|p| !known.iter().any(|k| k.node_id == p.node_id))
                        .collect(),
                };
                for p in new {
                    gained.insert(p.node_id.clone(), p.clone());
                }
            }
            *current = scopes;
            gained
        };
        let scopes = self.inner.scopes.lock().expect("poisoned").clone();
        self.inner
            .table
            .lock()
            .expect("poisoned")
            .retain(|r| r.endpoint.node_id == me || scopes.contains_key(&r.endpoint.network_id));
        self.notify();
        for p in gained.values() {
            if let Some(m) = self.member_for(p) {
                tokio::spawn(self.clone().push_pull_new_peer(m));
            }
        }
    }

    fn member_for(&self, p: &GossipPeer) -> Option<Member> {
        let ip: Ipv4Addr = p.addr.parse().ok()?;
        Some(Member {
            node_id: p.node_id.clone(),
            addr: SocketAddr::from((ip, self.inner.me.addr.port())),
            bump: 0,
        })
    }

    /// Where writes for `network` go: its other nodes.
    fn scope_peers(&self, network: &str) -> Vec<SocketAddr> {
        let me = &self.inner.me.node_id;
        self.inner
            .scopes
            .lock()
            .expect("poisoned")
            .get(network)
            .map(|peers| {
                peers
                    .iter()
                    .filter(|p| &p.node_id != me)
                    .filter_map(|p| self.member_for(p))
                    .map(|m| m.addr)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Live endpoints of every network: this node's, and those of nodes gossip
    /// considers alive, of tasks the managers list (or too new to be listed yet).
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let alive = self.inner.alive.lock().expect("poisoned").clone();
        let listed = self.inner.listed.lock().expect("poisoned").clone();
        let delisted = self.inner.delisted.lock().expect("poisoned").clone();
        let me = &self.inner.me.node_id;
        let now = Instant::now();
        let in_grace = std::cell::Cell::new(false);
        let live = self
            .inner
            .table
            .lock()
            .expect("poisoned")
            .live(|e, changed| {
                if !(&e.node_id == me || alive.contains_key(&e.node_id))
                    || delisted.contains_key(&e.key())
                {
                    return false;
                }
                let tasks = listed.as_ref().and_then(|l| l.get(&e.network_id));
                let (usable, grace) =
                    listing_allows(tasks, &e.task_id, now.duration_since(changed));
                in_grace.set(in_grace.get() || grace);
                usable
            });
        self.inner
            .unlisted_in_grace
            .store(in_grace.get(), Ordering::Relaxed);
        live
    }

    /// What the managers say may have an endpoint: per network, its tasks (and the
    /// ingress legs of its nodes). Gossip entries of anything else are ignored from now
    /// on, whatever version they carry: a tombstone lost in a partition leaves no
    /// stale backend behind.
    pub fn set_listed(&self, listed: HashMap<String, HashSet<String>>) {
        let mut current = self.inner.listed.lock().expect("poisoned");
        if current.as_ref() == Some(&listed) {
            return;
        }
        let now = Instant::now();
        let mut delisted = self.inner.delisted.lock().expect("poisoned");
        for (network, tasks) in current.iter().flatten() {
            let kept = listed.get(network);
            for t in tasks
                .iter()
                .filter(|t| kept.is_none_or(|k| !k.contains(*t)))
            {
                delisted.entry((network.clone(), t.clone())).or_insert(now);
            }
        }
        *current = Some(listed);
        drop((current, delisted));
        self.notify();
    }

    /// `endpoints()`, computed once per change: what the resolvers read on every query.
    pub fn endpoints_shared(&self) -> Arc<Vec<Endpoint>> {
        let version = *self.inner.changed.borrow();
        let mut cached = self.inner.view.lock().expect("poisoned");
        match &*cached {
            Some((v, list)) if *v == version => list.clone(),
            _ => {
                let list = Arc::new(self.endpoints());
                *cached = Some((version, list.clone()));
                list
            }
        }
    }

    /// Changes whenever the live endpoints may have changed.
    /// The addresses (VTEPs) of the other nodes gossip counts as alive.
    pub fn alive_addrs(&self) -> HashSet<Ipv4Addr> {
        self.inner
            .alive
            .lock()
            .expect("poisoned")
            .values()
            .filter_map(|m| match m.addr.ip() {
                std::net::IpAddr::V4(ip) => Some(ip),
                std::net::IpAddr::V6(_) => None,
            })
            .collect()
    }

    /// Whether the tables hold what other nodes publish: every network shared with
    /// another node has been swapped with one at least once and its nodes are known
    /// alive, or SETTLING has passed.
    pub fn settled(&self) -> bool {
        if self.inner.started.elapsed() >= SETTLING {
            return true;
        }
        let me = &self.inner.me.node_id;
        let scopes = self.inner.scopes.lock().expect("poisoned");
        let pulled = self.inner.pulled.lock().expect("poisoned");
        let alive = self.inner.alive.lock().expect("poisoned");
        // Entries of nodes not (yet) known alive are hidden: wait for them too.
        !scopes.is_empty()
            && scopes.iter().all(|(network, peers)| {
                let others: Vec<&GossipPeer> = peers.iter().filter(|p| &p.node_id != me).collect();
                others.is_empty()
                    || (pulled.contains(network)
                        && others.iter().all(|p| alive.contains_key(&p.node_id)))
            })
    }

    /// Notes that `networks` were swapped whole with another node.
    fn pulled(&self, networks: &[String]) {
        let newly = {
            let mut pulled = self.inner.pulled.lock().expect("poisoned");
            let before = pulled.len();
            pulled.extend(networks.iter().cloned());
            pulled.len() > before
        };
        if newly {
            self.notify();
        }
    }

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
                    vip: e.vip,
                    ports: e
                        .ports
                        .iter()
                        .map(|p| format!("{}->{}/{}", p.published, p.target, p.protocol.name()))
                        .collect(),
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
            // Expected for a moment after joining: the sender got its keys first.
            Rejected::NoKeys => 0,
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
            if !self.in_scope(&r.endpoint.network_id) {
                continue;
            }
            changed |= self.inner.table.lock().expect("poisoned").merge(r, now);
        }
        if changed {
            self.notify();
        }
        changed
    }

    fn in_scope(&self, network: &str) -> bool {
        self.inner
            .scopes
            .lock()
            .expect("poisoned")
            .contains_key(network)
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
            None if self.inner.started.elapsed() > ADOPTION_GRACE
                || self
                    .inner
                    .retracted
                    .lock()
                    .expect("poisoned")
                    .contains(&key) =>
            {
                self.write(theirs.endpoint, true);
            }
            None => {
                // Keep it until the grace ends: the executor may still adopt its task.
                if self
                    .inner
                    .table
                    .lock()
                    .expect("poisoned")
                    .merge(theirs, Instant::now())
                {
                    self.notify();
                }
            }
        }
    }

    /// Periodic work: push/pull with a random member, withdrawing stale own entries,
    /// garbage collection, and re-joining through the managers' peers when alone.
    async fn maintain(self) {
        let mut tick = tokio::time::interval(PUSH_PULL_EVERY);
        loop {
            tick.tick().await;
            // A random live node sharing a network with this one.
            let scopes = self.inner.scopes.lock().expect("poisoned").clone();
            let members: Vec<Member> = self
                .inner
                .alive
                .lock()
                .expect("poisoned")
                .values()
                .filter(|m| {
                    scopes
                        .values()
                        .any(|peers| peers.iter().any(|p| p.node_id == m.node_id))
                })
                .cloned()
                .collect();
            if let Some(m) = members.choose(&mut rand::rng()) {
                tokio::spawn(self.clone().push_pull(m.clone()));
            }
            self.announce_to_missing();
            if self.inner.unlisted_in_grace.load(Ordering::Relaxed) {
                self.notify();
            }
            self.inner
                .delisted
                .lock()
                .expect("poisoned")
                .retain(|_, since| since.elapsed() < DELISTED_TTL);
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
            .live(|e, _| e.node_id == me)
            .into_iter()
            .filter(|e| !local.contains(&e.key()))
            .collect();
        for e in orphans {
            tracing::info!(task = %e.task_id, "withdrawing an endpoint this node no longer has");
            self.write(e, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_of_tasks_the_managers_do_not_list_are_not_used() {
        let listed: HashSet<String> = ["t1".to_string()].into();
        let old = LISTING_GRACE * 30;
        // Before the managers said anything, gossip is trusted.
        assert_eq!(listing_allows(None, "t2", old), (true, false));
        assert_eq!(listing_allows(Some(&listed), "t1", old), (true, false));
        // A stale entry (its tombstone lost in a partition) is dropped at once...
        assert_eq!(listing_allows(Some(&listed), "t2", old), (false, false));
        // ...but a new task's entry may arrive before the list naming it.
        let new = Duration::from_millis(200);
        assert_eq!(listing_allows(Some(&listed), "t3", new), (true, true));
    }

    async fn node(id: &str, ip: Ipv4Addr, view: &watch::Sender<ClusterView>) -> Gossip {
        Gossip::start(id, ip, 17946, view.subscribe())
            .await
            .unwrap()
    }

    fn scope(peers: &[(&str, Ipv4Addr)]) -> HashMap<String, Vec<GossipPeer>> {
        let peers = peers
            .iter()
            .map(|(id, ip)| GossipPeer {
                node_id: id.to_string(),
                addr: ip.to_string(),
            })
            .collect();
        HashMap::from([("net1".to_string(), peers)])
    }

    /// B joins the network first and pulls an empty table from A; A then writes an entry
    /// while its own list of the network's nodes still lacks B (the write goes to
    /// nobody). When A learns B joined, B must get the entry from that swap, not from
    /// the periodic push/pull five seconds later: until then B's tasks could not answer
    /// A's (a reply needs the sender's neighbour entry).
    #[tokio::test]
    async fn a_node_joining_a_network_gets_entries_written_before_anyone_knew() {
        let (a_ip, b_ip) = (Ipv4Addr::new(127, 79, 0, 1), Ipv4Addr::new(127, 79, 0, 2));
        let view = watch::Sender::new(ClusterView {
            keys: vec![NetworkKey {
                id: 1,
                key: vec![7; 32],
                created_unix_nanos: 0,
            }],
            primary_key: 1,
            peers: vec![],
        });
        let a = node("A", a_ip, &view).await;
        let b = node("B", b_ip, &view).await;
        a.set_scopes(scope(&[("A", a_ip)]));
        b.set_scopes(scope(&[("A", a_ip), ("B", b_ip)]));
        let pulled = Instant::now();
        while !b.inner.pulled.lock().unwrap().contains("net1") {
            assert!(pulled.elapsed() < Duration::from_secs(2), "B's pull from A");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        a.publish(table::endpoint("leg-a", "A", [10, 0, 0, 2]));
        a.set_scopes(scope(&[("A", a_ip), ("B", b_ip)]));
        let learnt = Instant::now();
        while !b
            .inner
            .table
            .lock()
            .unwrap()
            .live(|_, _| true)
            .iter()
            .any(|e| e.task_id == "leg-a")
        {
            assert!(
                learnt.elapsed() < PUSH_PULL_EVERY / 2,
                "B did not get A's entry when A learnt that B joined the network"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        a.stop();
        b.stop();
    }
}

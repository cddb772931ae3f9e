//! A running manager: its Raft instance, the object store it replicates, and the duties only
//! the leader performs (dispatcher expiry, manager reachability). Writes go through
//! [`Manager::propose`], which forwards to the leader when this manager is a follower.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState};
use shoal_proto::live_tls::LiveTls;
use shoal_proto::raft_transport_client::RaftTransportClient;
use shoal_proto::stored_object::Object;
use shoal_proto::{Cluster, JoinRaftRequest, Node, Proposal, ProposalResult, StoreActionKind};
use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinHandle;

use crate::dispatcher::Dispatcher;
use crate::error::{ManagerError, Result};
use crate::proposer::Proposer;
use crate::state::raft::log_store::LogStore;
use crate::state::raft::network::{LastContact, Network};
use crate::state::raft::state_machine::StateMachine;
use crate::state::raft::{NodeId, Raft};
use crate::state::store::{Store, action, proposal};

const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a read waits to catch up with the leader before reading what it has.
const READ_BARRIER_TIMEOUT: Duration = Duration::from_secs(2);

/// A leader whose majority has not acknowledged it for this long has lost its quorum.
const QUORUM_ACK_LIMIT_MS: u64 = 3_000;

fn has_quorum(m: &openraft::RaftMetrics<NodeId, BasicNode>) -> bool {
    m.millis_since_quorum_ack
        .is_some_and(|ms| ms < QUORUM_ACK_LIMIT_MS)
}

pub struct ManagerConfig {
    /// Directory for the Raft database.
    pub state_dir: PathBuf,
    pub raft_id: NodeId,
    pub node_id: String,
    /// host:port other managers and agents reach this manager at.
    pub advertise_addr: String,
    pub tls: LiveTls,
    /// With autolock: what opens this manager's data key (`swarm unlock`).
    pub unlock_key: Option<crate::state::raft::at_rest::UnlockKey>,
}

/// How this manager's Raft state comes to be.
pub enum Bootstrap {
    /// `swarm init`: a new one-member cluster holding these first objects.
    Init {
        cluster: Box<Cluster>,
        node: Box<Node>,
        ingress: Box<shoal_proto::Network>,
    },
    /// `swarm init --force-new-cluster`: keep the objects, drop every other member.
    ForceNewCluster,
    /// Restart, or a joining manager that the leader adds to the membership.
    Existing,
}

pub struct Manager {
    pub raft: Raft,
    /// Raft's storage holds the database; a manager that has shut down must not keep it
    /// open (a new swarm in this process opens the file anew).
    db: std::sync::Weak<redb::Database>,
    pub store: Store,
    /// The swarm's autolock as this manager's key file follows it: Some(unlock key)
    /// while on, for the node to seal its own keys the same way.
    pub lock: tokio::sync::watch::Receiver<Option<crate::state::raft::at_rest::UnlockKey>>,
    pub config: ManagerConfig,
    pub dispatcher: Dispatcher,
    pub logs: crate::logs::LogBroker,
    last_contact: LastContact,
    membership_lock: AsyncMutex<()>,
    background: Mutex<Vec<JoinHandle<()>>>,
}

impl Manager {
    pub async fn start(config: ManagerConfig, bootstrap: Bootstrap) -> Result<Arc<Manager>> {
        std::fs::create_dir_all(&config.state_dir).map_err(|e| {
            ManagerError::Storage(format!("cannot create {}: {e}", config.state_dir.display()))
        })?;
        // The key first: a database whose key file is missing is refused, not replaced.
        let (key, sealed_with) = crate::state::raft::at_rest::load_or_create(
            &config.state_dir,
            config.unlock_key.as_ref(),
        )
        .map_err(|e| ManagerError::Storage(e.to_string()))?;
        let db = crate::state::raft::open_db(&config.state_dir.join("raft.redb"))
            .map_err(|e| ManagerError::Storage(format!("cannot open the Raft database: {e}")))?;
        if matches!(bootstrap, Bootstrap::ForceNewCluster) {
            crate::state::raft::reset_membership(&db)
                .map_err(|e| ManagerError::Storage(e.to_string()))?;
        }
        let store = Store::default();
        let state_machine = StateMachine::open(db.clone(), key.clone(), store.clone())
            .map_err(|e| ManagerError::Storage(e.to_string()))?;
        let (lock_tx, lock) = tokio::sync::watch::channel(sealed_with);
        let keeper_key = key.clone();
        let last_contact = LastContact::default();
        let network = Network {
            tls: config.tls.clone(),
            last_contact: last_contact.clone(),
        };
        let raft_config = openraft::Config {
            cluster_name: "shoal".into(),
            // A follower calls an election after the leader's lease (election_timeout_max)
            // plus its own random timeout: 0.9-1.2 s of silence, nine or more heartbeats
            // missed, so a busy leader is not deposed by a slow tick.
            heartbeat_interval: 100,
            election_timeout_min: 300,
            election_timeout_max: 600,
            // The swarm's settings decide when to snapshot and purge (snapshots.rs).
            snapshot_policy: openraft::SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: u64::MAX,
            purge_batch_size: 1,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ManagerError::Raft(e.to_string()))?;
        let db_handle = Arc::downgrade(&db);
        let raft = Raft::new(
            config.raft_id,
            Arc::new(raft_config),
            network,
            LogStore::new(db.clone(), key),
            state_machine,
        )
        .await
        .map_err(|e| ManagerError::Raft(e.to_string()))?;
        let keeper = tokio::spawn(crate::swarm_settings::keep_lock(
            store.clone(),
            config.state_dir.clone(),
            keeper_key,
            lock.borrow().clone(),
            lock_tx,
        ));
        let snapshots = tokio::spawn(crate::snapshots::run(raft.clone(), store.clone()));
        let manager = Arc::new(Manager {
            db: db_handle,
            raft,
            store,
            lock,
            config,
            dispatcher: Dispatcher::default(),
            logs: Default::default(),
            last_contact,
            membership_lock: AsyncMutex::new(()),
            background: Mutex::new(vec![keeper, snapshots]),
        });
        match bootstrap {
            Bootstrap::Init {
                cluster,
                node,
                ingress,
            } => {
                manager.initialize_alone().await?;
                manager
                    .propose(proposal(vec![
                        action(StoreActionKind::Create, Object::Cluster(*cluster)),
                        action(StoreActionKind::Create, Object::Node(*node)),
                        action(StoreActionKind::Create, Object::Network(*ingress)),
                    ]))
                    .await?;
            }
            Bootstrap::ForceNewCluster => {
                manager.initialize_alone().await?;
                manager.drop_other_managers().await?;
            }
            Bootstrap::Existing => {}
        }
        let leader_duties = tokio::spawn(crate::leader::run(Arc::downgrade(&manager)));
        manager
            .background
            .lock()
            .expect("poisoned")
            .push(leader_duties);
        Ok(manager)
    }

    async fn initialize_alone(&self) -> Result<()> {
        let mut members = BTreeMap::new();
        members.insert(
            self.config.raft_id,
            BasicNode {
                addr: self.config.advertise_addr.clone(),
            },
        );
        self.raft
            .initialize(members)
            .await
            .map_err(|e| ManagerError::Raft(format!("initialising Raft: {e}")))?;
        self.raft
            .wait(Some(Duration::from_secs(10)))
            .current_leader(self.config.raft_id, "become leader")
            .await
            .map_err(|e| ManagerError::Raft(format!("waiting to lead: {e}")))?;
        Ok(())
    }

    /// After --force-new-cluster: every other manager leaves the member list and its
    /// certificate stops being honoured; the objects stay.
    async fn drop_other_managers(&self) -> Result<()> {
        let me = self.config.node_id.clone();
        self.update_with_retry(|state| {
            let mut actions = Vec::new();
            let mut cluster = state.cluster().cloned().ok_or_else(|| {
                ManagerError::FailedPrecondition("the data dir holds no swarm to recover".into())
            })?;
            for n in state.nodes().filter(|n| n.id != me && n.manager_status.is_some()) {
                let mut n = n.clone();
                if let Some(ms) = n.manager_status.as_mut() {
                    ms.leader = false;
                    ms.reachability = shoal_proto::Reachability::Unreachable as i32;
                }
                if let Some(status) = n.status.as_mut() {
                    status.state = shoal_proto::NodeState::Down as i32;
                    status.message = "left behind by --force-new-cluster: demote and remove it, then join it again".into();
                }
                cluster.removed_nodes.push(n.id.clone());
                actions.push(action(StoreActionKind::Update, Object::Node(n)));
            }
            if let Some(mut n) = state.node(&me).cloned() {
                if let Some(ms) = n.manager_status.as_mut() {
                    ms.raft_id = self.config.raft_id;
                    ms.addr = self.config.advertise_addr.clone();
                }
                actions.push(action(StoreActionKind::Update, Object::Node(n)));
            }
            actions.push(action(StoreActionKind::Update, Object::Cluster(cluster)));
            Ok(actions)
        })
        .await
        .map(|_| ())
    }

    /// This manager's Raft snapshots: the newest one's last log index (0: none yet), and
    /// those of the older ones it keeps, oldest first.
    pub fn snapshots(&self) -> (u64, Vec<u64>) {
        let newest = self.raft.metrics().borrow().snapshot.map_or(0, |l| l.index);
        let old = self
            .db
            .upgrade()
            .and_then(|db| crate::state::raft::state_machine::old_snapshots(&db).ok())
            .unwrap_or_default();
        (newest, old)
    }

    pub async fn shutdown(&self) {
        for h in self.background.lock().expect("poisoned").drain(..) {
            h.abort();
        }
        let _ = self.raft.shutdown().await;
    }

    /// True while this manager leads with a quorum behind it: a leader cut off from the
    /// majority keeps its title in Raft but cannot commit, so it does not count.
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.state == ServerState::Leader
            && m.current_leader == Some(self.config.raft_id)
            && has_quorum(&m)
    }

    /// The leader as this manager sees it; None while there is no working leader.
    pub fn leader_id(&self) -> Option<NodeId> {
        let m = self.raft.metrics().borrow().clone();
        if m.state == ServerState::Leader && !has_quorum(&m) {
            return None;
        }
        m.current_leader
    }

    /// Current Raft voters.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    /// Raft peers that answered the leader recently (only meaningful on the leader).
    pub fn recently_contacted(&self, within: Duration) -> BTreeSet<NodeId> {
        let now = Instant::now();
        self.last_contact
            .lock()
            .expect("poisoned")
            .iter()
            .filter(|(_, t)| now.duration_since(**t) < within)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The control address of the leader as this manager sees it.
    pub fn leader_addr(&self) -> Option<String> {
        let leader = self.leader_id()?;
        let m = self.raft.metrics().borrow().clone();
        m.membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())
    }

    /// Applies a proposal through Raft, forwarding to the leader if need be. A leader
    /// that goes away mid-write leaves its outcome unknown: the write is sent again
    /// (to the next leader) under the same proposal ID, so it is applied at most once
    /// and the answer says what happened to it.
    pub async fn propose(&self, mut p: Proposal) -> Result<ProposalResult> {
        if p.id.is_empty() {
            p.id = shoal_proto::ids::new_id();
        }
        let deadline = Instant::now() + PROPOSE_TIMEOUT;
        loop {
            let outcome = if self.is_leader() {
                self.propose_local(p.clone()).await
            } else {
                match self.leader_addr() {
                    Some(addr) => self.forward(&addr, p.clone()).await,
                    None => Err(ManagerError::NoLeader),
                }
            };
            match outcome {
                Err(ManagerError::NoLeader) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(result) => return crate::proposer::outcome(result),
                other => return other,
            }
        }
    }

    /// The index a read must see, confirmed by a quorum (only on the leader).
    pub async fn read_index(&self) -> Result<u64> {
        match tokio::time::timeout(READ_BARRIER_TIMEOUT, self.raft.get_read_log_id()).await {
            Ok(Ok((read, _))) => Ok(read.map_or(0, |l| l.index)),
            _ => Err(ManagerError::NoLeader),
        }
    }

    /// Waits until this manager's store holds every write committed before the call, so
    /// a read made on any manager sees what another manager just wrote (Swarm forwards
    /// reads to the leader for the same reason). Without a leader within the bound, the
    /// store is read as it is: stale but available, as when quorum is lost.
    pub async fn read_barrier(&self) {
        let index = if self.is_leader() {
            self.read_index().await
        } else {
            match self.leader_addr() {
                Some(addr) => self.forward_read_index(&addr).await,
                None => Err(ManagerError::NoLeader),
            }
        };
        let Ok(index) = index else {
            tracing::debug!("read barrier: no leader answered; reading the local store");
            return;
        };
        let waited = self
            .raft
            .wait(Some(READ_BARRIER_TIMEOUT))
            .applied_index_at_least(Some(index), "read barrier")
            .await;
        if waited.is_err() {
            tracing::debug!(
                index,
                "read barrier: not applied in time; reading the local store"
            );
        }
    }

    async fn forward_read_index(&self, leader_addr: &str) -> Result<u64> {
        let channel = self
            .config
            .tls
            .channel(leader_addr)
            .map_err(|e| ManagerError::Raft(e.to_string()))?;
        let mut client = RaftTransportClient::new(channel);
        let call = client.read_index(shoal_proto::Empty {});
        match tokio::time::timeout(READ_BARRIER_TIMEOUT, call).await {
            Ok(Ok(r)) => Ok(r.into_inner().index),
            _ => Err(ManagerError::NoLeader),
        }
    }

    /// Applies locally; only on the leader (forwarded proposals land here). Bounded in
    /// time: a leader that loses its quorum mid-write reports that instead of hanging.
    pub async fn propose_local(&self, p: Proposal) -> Result<ProposalResult> {
        match tokio::time::timeout(PROPOSE_TIMEOUT, self.raft.client_write(p)).await {
            Err(_) => Err(ManagerError::NoLeader),
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                Err(ManagerError::NoLeader)
            }
            Ok(Err(e)) => Err(ManagerError::Raft(e.to_string())),
        }
    }

    async fn forward(&self, leader_addr: &str, p: Proposal) -> Result<ProposalResult> {
        let tls = &self.config.tls;
        let channel = tls
            .channel(leader_addr)
            .map_err(|e| ManagerError::Raft(e.to_string()))?;
        match RaftTransportClient::new(channel).propose(p).await {
            Ok(r) => Ok(r.into_inner()),
            // The leader's own refusals come back as results; a failed call (the leader
            // died, the connection broke) is worth a retry under the same proposal ID.
            Err(s) => {
                tracing::debug!(leader = %leader_addr, "forwarding a write: {}", s.message());
                Err(ManagerError::NoLeader)
            }
        }
    }

    /// Asks the leader to add this manager to the Raft membership as a voter.
    pub async fn join_raft_via(&self, manager_addrs: &[String]) -> Result<()> {
        let tls = &self.config.tls;
        let req = JoinRaftRequest {
            raft_id: self.config.raft_id,
            addr: self.config.advertise_addr.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last_err = String::from("no manager address known");
        while Instant::now() < deadline {
            for addr in manager_addrs {
                let channel = tls
                    .channel(addr)
                    .map_err(|e| ManagerError::Raft(e.to_string()))?;
                match RaftTransportClient::new(channel)
                    .join_raft(req.clone())
                    .await
                {
                    Ok(_) => return Ok(()),
                    Err(s) => last_err = format!("{addr}: {}", s.message()),
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(ManagerError::Raft(format!(
            "could not join the managers' Raft group: {last_err}"
        )))
    }

    /// Asks the leader to take this manager out of the Raft membership (leaving the swarm).
    pub async fn leave_raft(&self) -> Result<()> {
        if self.voters().len() <= 1 {
            return Ok(());
        }
        if self.is_leader() {
            return self.remove_voter(self.config.raft_id).await;
        }
        let addr = self.leader_addr().ok_or(ManagerError::NoLeader)?;
        let tls = &self.config.tls;
        let channel = tls
            .channel(&addr)
            .map_err(|e| ManagerError::Raft(e.to_string()))?;
        RaftTransportClient::new(channel)
            .leave_raft(JoinRaftRequest {
                raft_id: self.config.raft_id,
                addr: self.config.advertise_addr.clone(),
            })
            .await
            .map_err(|s| ManagerError::FailedPrecondition(s.message().to_string()))?;
        Ok(())
    }

    /// On the leader: adds `raft_id` as a learner, waits for it to catch up, then makes it
    /// a voter.
    pub async fn add_voter(&self, raft_id: NodeId, addr: String) -> Result<()> {
        if !self.is_leader() {
            return Err(ManagerError::NoLeader);
        }
        let _guard = self.membership_lock.lock().await;
        let mut voters = self.voters();
        if voters.contains(&raft_id) {
            return Ok(());
        }
        self.raft
            .add_learner(raft_id, BasicNode { addr }, true)
            .await
            .map_err(|e| ManagerError::Raft(format!("adding learner: {e}")))?;
        voters.insert(raft_id);
        self.raft
            .change_membership(voters, false)
            .await
            .map_err(|e| ManagerError::Raft(format!("promoting to voter: {e}")))?;
        Ok(())
    }

    /// On the leader: removes `raft_id` from the voters, refusing when the managers left
    /// could not form a quorum.
    pub async fn remove_voter(&self, raft_id: NodeId) -> Result<()> {
        let _guard = self.membership_lock.lock().await;
        let mut voters = self.voters();
        if !voters.remove(&raft_id) {
            return Ok(());
        }
        if voters.is_empty() {
            return Err(ManagerError::FailedPrecondition(
                "cannot remove the last manager of the swarm; use `swarm leave --force` on it to tear the swarm down".into(),
            ));
        }
        let reachable = self.recently_contacted(Duration::from_secs(5));
        let alive = voters
            .iter()
            .filter(|v| **v == self.config.raft_id || reachable.contains(v))
            .count();
        if alive <= voters.len() / 2 {
            return Err(ManagerError::FailedPrecondition(format!(
                "removing this manager would leave {alive} reachable of {} managers, which is not a quorum; bring the other managers back first",
                voters.len()
            )));
        }
        self.raft
            .change_membership(voters, false)
            .await
            .map_err(|e| ManagerError::Raft(format!("removing from Raft: {e}")))?;
        Ok(())
    }

    /// The cluster object; present once init has been applied.
    pub fn cluster(&self) -> Result<Cluster> {
        self.store
            .view(|s| s.cluster().cloned())
            .ok_or(ManagerError::FailedPrecondition(
                "the swarm is not initialised yet".into(),
            ))
    }
}

impl Proposer for Manager {
    fn store(&self) -> &Store {
        &self.store
    }

    fn propose(&self, p: Proposal) -> impl Future<Output = Result<ProposalResult>> + Send {
        Manager::propose(self, p)
    }

    fn leader_raft_id(&self) -> Option<u64> {
        self.leader_id()
    }

    fn is_leader(&self) -> bool {
        Manager::is_leader(self)
    }
}

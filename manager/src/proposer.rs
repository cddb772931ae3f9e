//! What the cluster operations (services, networks, nodes), the dispatcher and the
//! leader's task planners need of a manager: the store to read, a way to propose writes,
//! and who leads. `Manager` is the real one (Raft, forwarding to the leader); [`Direct`] applies proposals to a store at once, so the operations can be
//! unit-tested without Raft, as swarmkit builds its components from a store and a
//! proposer alone.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shoal_proto::{Proposal, ProposalResult, StoreAction};

use crate::error::{ManagerError, Result};
use crate::state::store::{State, Store, built_on_stale_state, proposal};

pub trait Proposer: Sync {
    /// The replicated state as this manager has applied it.
    fn store(&self) -> &Store;

    /// Applies a proposal cluster-wide; a refusal comes back as `ManagerError::Rejected`.
    fn propose(&self, p: Proposal) -> impl Future<Output = Result<ProposalResult>> + Send;

    /// The Raft ID of the leader as this manager sees it (None: no leader with quorum).
    fn leader_raft_id(&self) -> Option<u64>;

    /// Whether this manager leads, with quorum (only the leader judges heartbeats).
    fn is_leader(&self) -> bool;

    /// Reads the state, builds actions from it and proposes them; retries when another
    /// write got in between: a version conflict, or an address the allocator handed out
    /// meanwhile (the rebuilt actions pick another, or say clearly why they cannot).
    fn update_with_retry<F>(
        &self,
        mut build: F,
    ) -> impl Future<Output = Result<ProposalResult>> + Send
    where
        F: FnMut(&State) -> Result<Vec<StoreAction>> + Send,
        Self: Sized,
    {
        async move {
            let mut attempts = 0;
            loop {
                let actions = self.store().view(&mut build)?;
                if actions.is_empty() {
                    return Ok(ProposalResult::default());
                }
                match self.propose(proposal(actions)).await {
                    Err(ManagerError::Rejected(refusal, _))
                        if built_on_stale_state(refusal) && attempts < 5 =>
                    {
                        attempts += 1;
                        // Let this manager's store catch up with the write that got in first.
                        tokio::time::sleep(Duration::from_millis(50 * attempts)).await;
                    }
                    other => return other,
                }
            }
        }
    }
}

/// The outcome of applying a proposal, as every proposer reports it.
pub fn outcome(result: ProposalResult) -> Result<ProposalResult> {
    if result.error.is_empty() {
        Ok(result)
    } else {
        Err(ManagerError::Rejected(result.refusal(), result.error))
    }
}

/// A proposer with no Raft under it: each proposal is applied to the store at once, at
/// the next index. For tests of the operations, and nothing else.
#[derive(Default)]
pub struct Direct {
    pub store: Store,
    index: AtomicU64,
    /// The leader these tests pretend there is.
    pub leader: Option<u64>,
    /// This manager's own Raft ID.
    pub raft_id: u64,
}

impl Proposer for Direct {
    fn store(&self) -> &Store {
        &self.store
    }

    fn propose(&self, p: Proposal) -> impl Future<Output = Result<ProposalResult>> + Send {
        let index = self.index.fetch_add(1, Ordering::SeqCst) + 1;
        let (result, _) = self.store.apply(index, &p);
        std::future::ready(outcome(result))
    }

    fn leader_raft_id(&self) -> Option<u64> {
        self.leader
    }

    fn is_leader(&self) -> bool {
        self.leader == Some(self.raft_id)
    }
}

impl<P: Proposer + Send> Proposer for std::sync::Arc<P> {
    fn store(&self) -> &Store {
        (**self).store()
    }

    fn propose(&self, p: Proposal) -> impl Future<Output = Result<ProposalResult>> + Send {
        (**self).propose(p)
    }

    fn leader_raft_id(&self) -> Option<u64> {
        (**self).leader_raft_id()
    }

    fn is_leader(&self) -> bool {
        (**self).is_leader()
    }
}

impl Direct {
    /// A store on the manager `raft_id`, which leads, as far as the operations can tell.
    pub fn leading(raft_id: u64) -> Direct {
        Direct {
            leader: Some(raft_id),
            raft_id,
            ..Direct::default()
        }
    }
}

/// Runs an operation's future to the end, for tests.
#[cfg(test)]
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
        .block_on(f)
}

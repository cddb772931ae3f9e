//! What only the leader does, started and stopped as leadership comes and goes: expiring
//! silent nodes, and keeping the managers' leader flag and reachability in the store.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use shoal_proto::stored_object::Object;
use shoal_proto::{NodeRole, Reachability, StoreAction, StoreActionKind};

use crate::dispatcher::expire_silent_nodes;
use crate::manager::Manager;
use crate::proposer::Proposer;
use crate::state::store::{State, action};

const TICK: Duration = Duration::from_millis(500);
/// A manager that has not answered Raft for this long is shown Unreachable.
const REACHABLE_WITHIN: Duration = Duration::from_secs(3);

pub async fn run(manager: Weak<Manager>) {
    let mut leading_since: Option<Instant> = None;
    let Some(mut changes) = manager.upgrade().map(|m| m.store.watch()) else {
        return;
    };
    tokio::spawn(watch_stalls(manager.clone()));
    loop {
        // Wake on the tick, or as soon as the store changes (a new service, a task that
        // stopped), so convergence does not wait for the tick.
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            _ = changes.recv() => {
                while changes.try_recv().is_ok() {}
            }
        }
        let Some(m) = manager.upgrade() else { return };
        if !m.is_leader() {
            leading_since = None;
            continue;
        }
        let since = *leading_since.get_or_insert_with(|| {
            m.dispatcher.reset();
            Instant::now()
        });
        if let Err(e) = expire_silent_nodes(&*m, &m.dispatcher, since).await {
            tracing::debug!("expiring silent nodes: {e}");
        }
        if let Err(e) = reconcile_tasks(&m).await {
            tracing::debug!("reconciling tasks: {e}");
        }
        if let Err(e) = crate::networks::keys::rotate_if_due(&m).await {
            tracing::debug!("rotating the gossip key: {e}");
        }
        if let Err(e) = crate::root_rotation::finish_if_converged(&*m).await {
            tracing::warn!("finishing the root CA rotation: {e}");
        }
        if let Err(e) = remove_demoted_managers(&m).await {
            tracing::warn!("removing a demoted manager from Raft: {e}");
        }
        if since.elapsed() > REACHABLE_WITHIN
            && let Err(e) = update_manager_status(&m).await
        {
            tracing::debug!("updating manager status: {e}");
        }
    }
}

/// Ticks the dispatcher's stall watch until the manager is gone.
async fn watch_stalls(manager: Weak<Manager>) {
    loop {
        tokio::time::sleep(crate::dispatcher::STALL_TICK).await;
        match manager.upgrade() {
            Some(m) => m.dispatcher.tick(),
            None => return,
        }
    }
}

/// Records which manager leads and which answer, where that changed.
async fn update_manager_status(m: &Arc<Manager>) -> crate::error::Result<()> {
    let raft = RaftView {
        me: m.config.raft_id,
        leader: m.leader_id(),
        voters: m.voters(),
        contacted: m.recently_contacted(REACHABLE_WITHIN),
    };
    m.update_with_retry(|s| Ok(manager_status_changes(s, &raft)))
        .await
        .map(|_| ())
}

/// The Raft group as the leader sees it.
struct RaftView {
    me: u64,
    leader: Option<u64>,
    voters: BTreeSet<u64>,
    contacted: BTreeSet<u64>,
}

/// Managers whose leader flag or reachability differs from what Raft says: a manager is
/// reachable when it is this one, or a voter that answered recently.
fn manager_status_changes(s: &State, raft: &RaftView) -> Vec<StoreAction> {
    let mut actions = Vec::new();
    for n in s.nodes() {
        let Some(ms) = n.manager_status.as_ref() else {
            continue;
        };
        let reachable = ms.raft_id == raft.me
            || (raft.voters.contains(&ms.raft_id) && raft.contacted.contains(&ms.raft_id));
        let reachability = if reachable {
            Reachability::Reachable
        } else {
            Reachability::Unreachable
        };
        let is_leader = Some(ms.raft_id) == raft.leader;
        if ms.reachability() != reachability || ms.leader != is_leader {
            let mut n = n.clone();
            let ms = n.manager_status.as_mut().expect("checked");
            ms.reachability = reachability as i32;
            ms.leader = is_leader;
            actions.push(action(StoreActionKind::Update, Object::Node(n)));
        }
    }
    actions
}

/// Managers whose desired role is now worker leave the Raft membership, then lose their
/// manager status.
async fn remove_demoted_managers(m: &Arc<Manager>) -> crate::error::Result<()> {
    let demoted = m.store.view(|s| demoted_managers(s, m.config.raft_id));
    for (id, raft_id) in demoted {
        m.remove_voter(raft_id).await?;
        m.update_with_retry(|s| {
            let Some(mut n) = s.node(&id).cloned() else {
                return Ok(vec![]);
            };
            n.manager_status = None;
            Ok(vec![action(StoreActionKind::Update, Object::Node(n))])
        })
        .await?;
        tracing::info!(node = %id, "demoted manager removed from Raft");
    }
    Ok(())
}

/// Managers demoted to worker that still hold a Raft seat: node ID and Raft ID. Not
/// this manager (`me`): the leader cannot remove itself safely here; another manager
/// will once leadership moves, as the node renews its certificate as a worker.
fn demoted_managers(s: &State, me: u64) -> Vec<(String, u64)> {
    s.nodes()
        .filter(|n| {
            n.spec.as_ref().map(shoal_proto::NodeSpec::desired_role) == Some(NodeRole::Worker)
        })
        .filter_map(|n| {
            n.manager_status
                .as_ref()
                .map(|ms| (n.id.clone(), ms.raft_id))
        })
        .filter(|(_, raft_id)| *raft_id != me)
        .collect()
}

/// Orchestrators, the allocator, then the scheduler, each as one proposal. A proposal
/// refused because the store moved on is simply planned again on the next wake-up.
pub(crate) async fn reconcile_tasks(m: &impl Proposer) -> crate::error::Result<()> {
    let now = shoal_proto::now_nanos();
    let planners: [fn(&State, i64) -> Vec<StoreAction>; 3] = [
        crate::orchestrator::plan,
        crate::allocator::plan,
        crate::scheduler::plan,
    ];
    for plan in planners {
        let actions = m.store().view(|s| plan(s, now));
        if !actions.is_empty() {
            m.propose(crate::state::store::proposal(actions)).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use shoal_proto::NodeState;

    use super::*;
    use crate::test_swarm::{create, node, swarm};

    /// The test swarm plus managers m2 (raft 2) and m3 (raft 3, demoted to worker).
    fn managers() -> crate::proposer::Direct {
        let m = swarm();
        let mut demoted = node("m3", "manager3", Some(3), NodeState::Ready);
        demoted.spec.as_mut().unwrap().desired_role = NodeRole::Worker as i32;
        create(
            &m,
            vec![
                Object::Node(node("m2", "manager2", Some(2), NodeState::Ready)),
                Object::Node(demoted),
            ],
        );
        m
    }

    fn changed(actions: &[StoreAction]) -> Vec<(String, Reachability, bool)> {
        actions
            .iter()
            .filter_map(|a| match a.object.as_ref()?.object.as_ref()? {
                Object::Node(n) => {
                    let ms = n.manager_status.as_ref()?;
                    Some((n.id.clone(), ms.reachability(), ms.leader))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn manager_status_follows_raft_and_only_changes_are_written() {
        let m = managers();
        let raft = RaftView {
            me: 1,
            leader: Some(1),
            voters: BTreeSet::from([1, 2, 3]),
            contacted: BTreeSet::from([2]),
        };
        let actions = m.store().view(|s| manager_status_changes(s, &raft));
        let mut got = changed(&actions);
        got.sort();
        assert_eq!(
            got,
            [
                ("m1".to_string(), Reachability::Reachable, true),
                ("m2".to_string(), Reachability::Reachable, false),
                ("m3".to_string(), Reachability::Unreachable, false),
            ]
        );
        crate::proposer::block_on(m.propose(crate::state::store::proposal(actions))).unwrap();
        let again = m.store().view(|s| manager_status_changes(s, &raft));
        assert!(again.is_empty(), "nothing changed: nothing written");
    }

    #[test]
    fn demoted_managers_leave_raft_but_the_leader_never_removes_itself() {
        let m = managers();
        let demoted = m.store().view(|s| demoted_managers(s, 1));
        assert_eq!(demoted, [("m3".to_string(), 3)]);
        assert!(m.store().view(|s| demoted_managers(s, 3)).is_empty());
    }
}

//! Raft snapshots as the swarm's settings say (`swarm update --snapshot-interval
//! --max-snapshots`), followed live: each manager snapshots its state once that many log
//! entries have been applied since its last snapshot, then purges the log behind it,
//! keeping a tail for followers that lag a little (Swarm's LogEntriesForSlowFollowers);
//! a follower further behind is sent the snapshot. The state machine keeps the older
//! snapshots (state_machine.rs). openraft's own policy is fixed when Raft starts, so it
//! is off and this loop decides.

use std::time::Duration;

use crate::state::raft::Raft;
use crate::state::store::{State, Store};

const CHECK_EVERY: Duration = Duration::from_millis(500);
/// Log entries kept behind the newest snapshot, at most (Swarm's default).
const LOG_FOR_SLOW_FOLLOWERS: u64 = 500;

fn raft_config(state: &State) -> shoal_proto::RaftConfig {
    state
        .cluster()
        .and_then(|c| c.spec.as_ref()?.raft)
        .unwrap_or_default()
}

/// Log entries between snapshots.
pub fn interval(state: &State) -> u64 {
    match raft_config(state).snapshot_interval {
        0 => shoal_proto::DEFAULT_SNAPSHOT_INTERVAL,
        n => n,
    }
}

/// Snapshots kept besides the newest.
pub fn keep_old(state: &State) -> u64 {
    raft_config(state).keep_old_snapshots
}

/// Log entries kept behind a snapshot of the given interval: a fifth of it, so a short
/// interval still purges (and a lagging follower is sent the snapshot).
fn log_tail(interval: u64) -> u64 {
    (interval / 5).clamp(1, LOG_FOR_SLOW_FOLLOWERS)
}

/// Runs for the manager's life; ends when Raft shuts down.
pub async fn run(raft: Raft, store: Store) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let m = raft.metrics().borrow().clone();
        let index = |l: Option<openraft::LogId<u64>>| l.map_or(0, |l| l.index);
        let (applied, snapshot) = (index(m.last_applied), index(m.snapshot));
        let every = store.view(interval);
        let due = applied >= snapshot + every;
        let purge_to = snapshot.saturating_sub(log_tail(every));
        let result = if due {
            raft.trigger().snapshot().await
        } else if purge_to > index(m.purged) {
            raft.trigger().purge_log(purge_to).await
        } else {
            Ok(())
        };
        if result.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_tail_follows_the_interval_within_swarms_bound() {
        assert_eq!(log_tail(10), 2);
        assert_eq!(log_tail(3), 1);
        assert_eq!(log_tail(10_000), 500);
    }
}

//! The gossip keyring. Agents seal every gossip datagram with the newest key and accept
//! any key still in the ring, so a rotation never splits the cluster: the leader adds a
//! new key, keeps the previous ones for a while, and hands the ring to every agent in its
//! heartbeat answers (over mTLS, never in gossip).

use std::time::Duration;

use rand::RngCore;
use shoal_proto::stored_object::Object;
use shoal_proto::{NetworkKey, StoreActionKind};

use crate::error::Result;
use crate::proposer::Proposer;
use crate::state::store::action;

/// How many keys agents accept at once: the newest and the two before it.
pub const RING_SIZE: usize = 3;

/// How often the leader rotates (Swarm rotates its gossip key every 12 hours);
/// `SHOAL_NETWORK_KEY_ROTATION_SECS` overrides it.
pub fn rotation_period() -> Duration {
    std::env::var("SHOAL_NETWORK_KEY_ROTATION_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_hours(12), Duration::from_secs)
}

pub fn generate(id: u32, now_nanos: i64) -> NetworkKey {
    let mut key = vec![0u8; 32];
    rand::rng().fill_bytes(&mut key);
    NetworkKey {
        id,
        key,
        created_unix_nanos: now_nanos,
    }
}

/// The ring after one rotation: a fresh key last, at most RING_SIZE kept.
pub fn rotated(ring: &[NetworkKey], now_nanos: i64) -> Vec<NetworkKey> {
    let next_id = ring.iter().map(|k| k.id).max().unwrap_or(0).wrapping_add(1);
    let mut ring = ring.to_vec();
    ring.push(generate(next_id, now_nanos));
    let excess = ring.len().saturating_sub(RING_SIZE);
    ring.drain(..excess);
    ring
}

/// The key agents seal with: the newest one every agent has had time to learn (a few
/// heartbeats), so no agent seals with a key another does not hold yet.
pub fn primary(ring: &[NetworkKey], now_nanos: i64, propagation: Duration) -> u32 {
    ring.iter()
        .rev()
        .find(|k| now_nanos - k.created_unix_nanos >= propagation.as_nanos() as i64)
        .or(ring.first())
        .map(|k| k.id)
        .unwrap_or_default()
}

fn due(ring: &[NetworkKey], now_nanos: i64, period: Duration) -> bool {
    ring.last()
        .is_none_or(|k| now_nanos - k.created_unix_nanos >= period.as_nanos() as i64)
}

/// On the leader: rotates the ring when its newest key is older than the period.
pub async fn rotate_if_due(m: &impl Proposer) -> Result<()> {
    let period = rotation_period();
    let now = shoal_proto::now_nanos();
    let needed = m.store().view(|s| {
        s.cluster()
            .is_some_and(|c| due(&c.network_keys, now, period))
    });
    if !needed {
        return Ok(());
    }
    m.update_with_retry(|s| {
        let Some(mut c) = s.cluster().cloned() else {
            return Ok(vec![]);
        };
        if !due(&c.network_keys, now, period) {
            return Ok(vec![]);
        }
        c.network_keys = rotated(&c.network_keys, now);
        Ok(vec![action(StoreActionKind::Update, Object::Cluster(c))])
    })
    .await?;
    tracing::info!("rotated the gossip key");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_newest_keys_with_fresh_ids() {
        let mut ring = vec![generate(1, 0)];
        for i in 1..=4 {
            ring = rotated(&ring, i);
        }
        let ids: Vec<u32> = ring.iter().map(|k| k.id).collect();
        assert_eq!(ids, vec![3, 4, 5]);
        assert_ne!(ring[1].key, ring[2].key);
        assert!(ring.iter().all(|k| k.key.len() == 32));
    }

    #[test]
    fn a_new_key_seals_only_once_agents_had_time_to_learn_it() {
        let ring = rotated(&[generate(1, 0)], 1_000);
        let wait = Duration::from_nanos(500);
        assert_eq!(
            primary(&ring, 1_100, wait),
            1,
            "too fresh: keep sealing with key 1"
        );
        assert_eq!(primary(&ring, 1_600, wait), 2);
        assert_eq!(
            primary(&[generate(7, 1_000)], 1_001, wait),
            7,
            "the only key"
        );
    }

    #[test]
    fn rotation_is_due_only_after_the_period() {
        let ring = vec![generate(1, 1_000)];
        let hour = Duration::from_hours(1);
        assert!(!due(&ring, 1_000 + 10, hour));
        assert!(due(&ring, 1_000 + hour.as_nanos() as i64, hour));
        assert!(due(&[], 0, hour));
    }
}

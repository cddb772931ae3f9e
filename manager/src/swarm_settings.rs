//! The swarm's own settings, as `swarm update` changes them: autolock (and its unlock key,
//! kept in the cluster object, so every manager seals its keys with the same one), the
//! dispatcher's heartbeat period and the task history kept per slot. Each manager follows the cluster's lock with its own
//! key file (`keep_lock`).

use std::path::PathBuf;

use shoal_proto::stored_object::Object;
use shoal_proto::{Cluster, StoreActionKind, SwarmUpdateRequest};
use tokio::sync::watch;

use crate::error::{ManagerError, Result};
use crate::proposer::Proposer;
use crate::root_rotation::NewRoot;
use crate::state::raft::at_rest::{self, DataKey, UnlockKey};
use crate::state::store::{State, Store, action};

/// Heartbeat periods a swarm may have.
const HEARTBEAT_MS: std::ops::RangeInclusive<u64> = 100..=3_600_000;

fn cluster_in(s: &State) -> Result<Cluster> {
    s.cluster().cloned().ok_or(ManagerError::FailedPrecondition(
        "the swarm is not initialised".into(),
    ))
}

/// The unlock key the cluster's managers seal their keys with: Some while autolock is on.
pub fn unlock_key_of(cluster: &Cluster) -> Option<UnlockKey> {
    let on = cluster
        .spec
        .as_ref()
        .and_then(|s| s.encryption)
        .is_some_and(|e| e.auto_lock_managers);
    on.then(|| UnlockKey::from_bytes(&cluster.unlock_key))
        .flatten()
}

/// Turns autolock on (with a fresh unlock key) or off in `cluster`.
pub fn set_autolock(cluster: &mut Cluster, on: bool) {
    let spec = cluster.spec.get_or_insert_default();
    spec.encryption.get_or_insert_default().auto_lock_managers = on;
    if !on {
        cluster.unlock_key.clear();
    } else if UnlockKey::from_bytes(&cluster.unlock_key).is_none() {
        cluster.unlock_key = UnlockKey::generate().bytes().to_vec();
    }
}

/// A node certificate life the swarm accepts (0: the default).
pub fn check_cert_expiry(secs: u64) -> Result<()> {
    if secs != 0 && secs < crate::ca::MIN_NODE_VALIDITY_SECS {
        return Err(ManagerError::InvalidArgument(format!(
            "invalid certificate expiry {secs}s: node certificates must last at least 1h"
        )));
    }
    Ok(())
}

pub async fn update(m: &impl Proposer, req: SwarmUpdateRequest) -> Result<()> {
    if let Some(ms) = req.heartbeat_period_ms
        && !HEARTBEAT_MS.contains(&ms)
    {
        return Err(ManagerError::InvalidArgument(format!(
            "invalid dispatcher heartbeat period {ms} ms: give 100ms to 1h"
        )));
    }
    if let Some(secs) = req.cert_expiry_secs {
        check_cert_expiry(secs)?;
    }
    if req.snapshot_interval == Some(0) {
        return Err(ManagerError::InvalidArgument(
            "invalid snapshot interval 0: give the number of log entries between snapshots (at least 1)".into(),
        ));
    }
    m.update_with_retry(|s| {
        let mut cluster = cluster_in(s)?;
        if let Some(new) = rotation_asked(&cluster, &req)? {
            crate::root_rotation::start(&mut cluster, new)?;
        }
        if let Some(on) = req.autolock {
            set_autolock(&mut cluster, on);
        }
        let spec = cluster.spec.get_or_insert_default();
        if let Some(ms) = req.heartbeat_period_ms {
            spec.dispatcher.get_or_insert_default().heartbeat_period_ms = ms;
        }
        if let Some(limit) = req.task_history_limit {
            spec.orchestration
                .get_or_insert_default()
                .task_history_retention_limit = Some(limit);
        }
        let ca_config = spec.ca_config.get_or_insert_default();
        if let Some(secs) = req.cert_expiry_secs {
            ca_config.node_cert_expiry_secs = secs;
        }
        if let Some(n) = req.force_rotate {
            ca_config.force_rotate = ca_config.force_rotate.max(n);
        }
        if let Some(n) = req.snapshot_interval {
            spec.raft.get_or_insert_default().snapshot_interval = n;
        }
        if let Some(n) = req.keep_old_snapshots {
            spec.raft.get_or_insert_default().keep_old_snapshots = n;
        }
        Ok(vec![action(
            StoreActionKind::Update,
            Object::Cluster(cluster),
        )])
    })
    .await
    .map(|_| ())
}

/// Whether `req` starts a root CA rotation, and to which given CA (certificate, key):
/// asked by name (`swarm ca --rotate`), by a raised ForceRotate, or by a signing CA other
/// than the swarm's (the Engine API sends the one it has back unchanged: no rotation).
fn rotation_asked<'r>(
    cluster: &Cluster,
    req: &'r SwarmUpdateRequest,
) -> Result<Option<NewRoot<'r>>> {
    let root = cluster.root_ca.clone().unwrap_or_default();
    let known = |cert: &str| {
        cert == root.ca_cert_pem
            || root
                .rotation
                .as_ref()
                .is_some_and(|r| r.ca_cert_pem == cert)
    };
    let (cert, key) = (req.ca_cert_pem.as_str(), req.ca_key_pem.as_str());
    let given = match (cert.is_empty(), key.is_empty()) {
        (true, true) => None,
        (false, true) if known(cert) && !req.rotate_ca => None,
        (false, false) => Some(NewRoot::Given { cert, key }),
        _ => {
            return Err(ManagerError::InvalidArgument(
                "give both the new root CA's certificate (--ca-cert) and its key (--ca-key): shoal signs node certificates itself, so it needs the key".into(),
            ));
        }
    };
    let forced = cluster
        .spec
        .as_ref()
        .and_then(|s| s.ca_config.as_ref())
        .map(|c| c.force_rotate)
        .unwrap_or_default();
    let raised = req.force_rotate.is_some_and(|n| n > forced);
    Ok(given.or((req.rotate_ca || raised).then_some(NewRoot::Generated)))
}

/// The current unlock key ("" while autolock is off), after rotating it if asked.
pub async fn unlock_key(m: &impl Proposer, rotate: bool) -> Result<String> {
    if rotate {
        m.update_with_retry(|s| {
            let mut cluster = cluster_in(s)?;
            if unlock_key_of(&cluster).is_none() {
                return Err(ManagerError::FailedPrecondition(
                    "cannot rotate because autolock is not turned on: `swarm update --autolock=true` first".into(),
                ));
            }
            cluster.unlock_key = UnlockKey::generate().bytes().to_vec();
            Ok(vec![action(
                StoreActionKind::Update,
                Object::Cluster(cluster),
            )])
        })
        .await?;
    }
    let cluster = m.store().view(cluster_in)?;
    Ok(unlock_key_of(&cluster)
        .map(|k| k.text())
        .unwrap_or_default())
}

/// Keeps this manager's key file sealed as the cluster says (with the unlock key, or
/// not at all), and publishes the lock for the node's own keys (its TLS key). Runs for
/// the manager's life; `sealed` is what the key file was opened with.
pub async fn keep_lock(
    store: Store,
    state_dir: PathBuf,
    key: DataKey,
    sealed: Option<UnlockKey>,
    lock: watch::Sender<Option<UnlockKey>>,
) {
    let mut events = store.watch();
    let mut current = sealed;
    loop {
        let wanted = store.view(|s| s.cluster().map(unlock_key_of));
        // Before the cluster object has arrived (a joining manager), nothing changes.
        if let Some(wanted) = wanted
            && wanted != current
        {
            match at_rest::store(&state_dir, &key, wanted.as_ref()) {
                Ok(()) => {
                    tracing::info!(
                        locked = wanted.is_some(),
                        "this manager's data key follows the swarm's autolock"
                    );
                    current = wanted;
                }
                Err(e) => tracing::error!("sealing the data key: {e}"),
            }
        }
        lock.send_if_modified(|l| {
            let changed = *l != current;
            l.clone_from(&current);
            changed
        });
        loop {
            match events.recv().await {
                Ok(e) if matches!(e.object, Object::Cluster(_)) => break,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// Finished tasks to keep per slot (or node): None keeps them all.
pub fn task_history(state: &State) -> Option<usize> {
    let limit = state
        .cluster()
        .and_then(|c| c.spec.as_ref()?.orchestration?.task_history_retention_limit)
        .unwrap_or(shoal_proto::DEFAULT_TASK_HISTORY);
    usize::try_from(limit).ok()
}

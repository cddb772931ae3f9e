//! The replicated state machine: the object store, persisted in redb next to the log. Each
//! applied batch is one redb transaction holding the changed objects and the applied index,
//! so a crash never leaves the two out of step.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StoredMembership,
};
use redb::{Database, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use shoal_proto::ProposalResult;
use shoal_proto::stored_object::Object;

use super::at_rest::DataKey;
use super::tables::{OBJECTS, OLD_SNAPSHOTS, SM_META};
use super::{NodeId, StorageError, TypeConfig, io_err};
use crate::state::store::{Event, Kind, ObjectExt, State, Store};

pub(crate) const LAST_APPLIED: &str = "last_applied";
pub(crate) const MEMBERSHIP: &str = "membership";
pub(crate) const SNAPSHOT: &str = "snapshot";

type Membership = StoredMembership<NodeId, BasicNode>;

#[derive(Serialize, Deserialize)]
struct SnapshotData {
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
    state: State,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Database>,
    key: DataKey,
    store: Store,
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
}

fn object_key(kind: Kind, id: &str) -> String {
    format!("{kind:?}/{id}")
}

/// Where a value is, for sealing (at_rest.rs binds each value to its place).
fn object_place(key: &str) -> String {
    format!("objects/{key}")
}

fn meta_place(key: &str) -> String {
    format!("sm_meta/{key}")
}

fn old_snapshot_place(index: u64) -> String {
    format!("old_snapshots/{index}")
}

/// The last log indexes of the older snapshots this database keeps, oldest first.
pub fn old_snapshots(db: &Database) -> Result<Vec<u64>, StorageError> {
    let txn = db.begin_read().map_err(io_err)?;
    let Ok(table) = txn.open_table(OLD_SNAPSHOTS) else {
        return Ok(vec![]);
    };
    table
        .iter()
        .map_err(io_err)?
        .map(|item| item.map(|(k, _)| k.value()).map_err(io_err))
        .collect()
}

impl StateMachine {
    /// Loads the persisted objects into `store`; every value is sealed with `key`.
    pub fn open(db: Arc<Database>, key: DataKey, store: Store) -> Result<Self, StorageError> {
        let mut state = State::default();
        let (mut last_applied, mut membership) = (None, Membership::default());
        let txn = db.begin_read().map_err(io_err)?;
        if let Ok(table) = txn.open_table(OBJECTS) {
            for item in table.iter().map_err(io_err)? {
                let (k, v) = item.map_err(io_err)?;
                let obj: Object = key.open(&object_place(k.value()), v.value())?;
                state
                    .objects
                    .entry(obj.kind())
                    .or_default()
                    .insert(obj.id().to_string(), obj);
            }
        }
        if let Ok(meta) = txn.open_table(SM_META) {
            if let Some(v) = meta.get(LAST_APPLIED).map_err(io_err)? {
                last_applied = key.open(&meta_place(LAST_APPLIED), v.value())?;
            }
            if let Some(v) = meta.get(MEMBERSHIP).map_err(io_err)? {
                membership = key.open(&meta_place(MEMBERSHIP), v.value())?;
            }
        }
        store.replace(state);
        Ok(StateMachine {
            db,
            key,
            store,
            last_applied,
            membership,
        })
    }

    fn persist(&self, events: &[Event], replace_all: Option<&State>) -> Result<(), StorageError> {
        let txn = self.db.begin_write().map_err(io_err)?;
        {
            let mut objects = txn.open_table(OBJECTS).map_err(io_err)?;
            if let Some(state) = replace_all {
                objects.retain(|_, _| false).map_err(io_err)?;
                for obj in state.objects.values().flat_map(|m| m.values()) {
                    let key = object_key(obj.kind(), obj.id());
                    let bytes = self.key.seal(&object_place(&key), obj)?;
                    objects
                        .insert(key.as_str(), bytes.as_slice())
                        .map_err(io_err)?;
                }
            }
            for e in events {
                let key = object_key(e.object.kind(), e.object.id());
                if e.action == shoal_proto::StoreActionKind::Remove {
                    objects.remove(key.as_str()).map_err(io_err)?;
                } else {
                    let bytes = self.key.seal(&object_place(&key), &e.object)?;
                    objects
                        .insert(key.as_str(), bytes.as_slice())
                        .map_err(io_err)?;
                }
            }
            let mut meta = txn.open_table(SM_META).map_err(io_err)?;
            let applied = self
                .key
                .seal(&meta_place(LAST_APPLIED), &self.last_applied)?;
            meta.insert(LAST_APPLIED, applied.as_slice())
                .map_err(io_err)?;
            let membership = self.key.seal(&meta_place(MEMBERSHIP), &self.membership)?;
            meta.insert(MEMBERSHIP, membership.as_slice())
                .map_err(io_err)?;
        }
        txn.commit().map_err(io_err)
    }

    /// Makes `snapshot` the newest; the one it replaces joins the older snapshots, of which
    /// the swarm's `--max-snapshots` are kept.
    fn save_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), StorageError> {
        let keep = self.store.view(crate::snapshots::keep_old) as usize;
        let bytes = self.key.seal(&meta_place(SNAPSHOT), snapshot)?;
        let txn = self.db.begin_write().map_err(io_err)?;
        {
            let mut meta = txn.open_table(SM_META).map_err(io_err)?;
            let mut old = txn.open_table(OLD_SNAPSHOTS).map_err(io_err)?;
            let previous = meta.insert(SNAPSHOT, bytes.as_slice()).map_err(io_err)?;
            if let Some(previous) = previous {
                let previous: StoredSnapshot =
                    self.key.open(&meta_place(SNAPSHOT), previous.value())?;
                let index = index_of(previous.meta.last_log_id);
                if keep > 0 && index < index_of(snapshot.meta.last_log_id) {
                    let sealed = self.key.seal(&old_snapshot_place(index), &previous)?;
                    old.insert(index, sealed.as_slice()).map_err(io_err)?;
                }
            }
            let kept: Vec<u64> = old
                .iter()
                .map_err(io_err)?
                .map(|item| item.map(|(k, _)| k.value()).map_err(io_err))
                .collect::<Result<_, _>>()?;
            for index in &kept[..kept.len().saturating_sub(keep)] {
                old.remove(index).map_err(io_err)?;
            }
        }
        txn.commit().map_err(io_err)
    }
}

fn index_of(log_id: Option<LogId<NodeId>>) -> u64 {
    log_id.map_or(0, |l| l.index)
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let data = serde_json::to_vec(&SnapshotData {
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            state: self.store.snapshot(),
        })
        .map_err(io_err)?;
        let snapshot_id = match self.last_applied {
            Some(l) => format!("{}-{}", l.leader_id, l.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        self.save_snapshot(&StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        })?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, Membership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ProposalResult>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        let mut events = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => results.push(ProposalResult::default()),
                EntryPayload::Normal(proposal) => {
                    let (result, applied) = self.store.apply(entry.log_id.index, &proposal);
                    events.extend(applied);
                    results.push(result);
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    results.push(ProposalResult::default());
                }
            }
        }
        self.persist(&events, None)?;
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let data: SnapshotData = serde_json::from_slice(&bytes).map_err(io_err)?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.persist(&[], Some(&data.state))?;
        self.store.replace(data.state);
        self.save_snapshot(&StoredSnapshot {
            meta: meta.clone(),
            data: bytes,
        })
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let Ok(meta) = txn.open_table(SM_META) else {
            return Ok(None);
        };
        let Some(v) = meta.get(SNAPSHOT).map_err(io_err)? else {
            return Ok(None);
        };
        let stored: StoredSnapshot = self.key.open(&meta_place(SNAPSHOT), v.value())?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}

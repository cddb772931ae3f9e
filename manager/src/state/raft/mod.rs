//! Raft (openraft) for the manager: the log and the state machine persisted in one redb file
//! under the data dir, and a gRPC transport over the managers' mTLS connections.

// openraft's storage traits fix StorageError as the error type, large as it is.
#![allow(clippy::result_large_err)]

pub mod at_rest;
pub mod log_store;
pub mod network;
pub mod state_machine;

use std::io::Cursor;

use shoal_proto::{Proposal, ProposalResult};

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Proposal,
        R = ProposalResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type NodeId = u64;
pub type StorageError = openraft::StorageError<NodeId>;

/// A fresh Raft member ID: unique among the managers with overwhelming odds; 0 is reserved.
pub fn new_raft_id() -> NodeId {
    rand::random::<u64>().max(1)
}

/// The redb tables shared by the log store and the state machine.
pub(crate) mod tables {
    use redb::TableDefinition;
    pub const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
    pub const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
    pub const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
    pub const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");
    /// Snapshots kept besides the newest (`--max-snapshots`), by last log index.
    pub const OLD_SNAPSHOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("old_snapshots");
}

/// Wraps any storage-layer failure as openraft wants it.
pub(crate) fn io_err(e: impl std::fmt::Display) -> StorageError {
    openraft::StorageIOError::write(&std::io::Error::other(e.to_string())).into()
}

/// Opens (or creates) the manager's Raft database. A manager restarted in the same process
/// (role change, --force-new-cluster) shares the handle its predecessor's winding-down
/// tasks may still hold, since redb allows one opener per file.
pub fn open_db(
    path: &std::path::Path,
) -> Result<std::sync::Arc<redb::Database>, redb::DatabaseError> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock, Weak};
    static OPEN: OnceLock<Mutex<HashMap<std::path::PathBuf, Weak<redb::Database>>>> =
        OnceLock::new();
    let mut open = OPEN.get_or_init(Default::default).lock().expect("poisoned");
    if let Some(db) = open.get(path).and_then(Weak::upgrade) {
        return Ok(db);
    }
    // The last holder may be dropping its handle right now; its file lock goes with it.
    let mut attempts = 0;
    let db = loop {
        match redb::Database::create(path) {
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if attempts < 50 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => break Arc::new(other?),
        }
    };
    open.insert(path.to_path_buf(), Arc::downgrade(&db));
    Ok(db)
}

/// Forgets the Raft log, vote and membership but keeps the objects: the first step of
/// `swarm init --force-new-cluster`, after which the node initialises a one-member cluster.
pub fn reset_membership(db: &redb::Database) -> Result<(), StorageError> {
    let txn = db.begin_write().map_err(io_err)?;
    txn.delete_table(tables::LOG).map_err(io_err)?;
    txn.delete_table(tables::RAFT_META).map_err(io_err)?;
    {
        let mut meta = txn.open_table(tables::SM_META).map_err(io_err)?;
        for key in [
            state_machine::LAST_APPLIED,
            state_machine::MEMBERSHIP,
            state_machine::SNAPSHOT,
        ] {
            meta.remove(key).map_err(io_err)?;
        }
    }
    txn.commit().map_err(io_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::log_store::LogStore;
    use super::state_machine::StateMachine;
    use super::{StorageError, TypeConfig};
    use crate::state::store::Store;

    struct RedbBuilder;

    impl openraft::testing::StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir>
        for RedbBuilder
    {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().expect("tempdir");
            let (key, _) = super::at_rest::load_or_create(dir.path(), None).expect("key");
            let db = super::open_db(&dir.path().join("raft.redb")).expect("open");
            let sm = StateMachine::open(db.clone(), key.clone(), Store::default())?;
            Ok((dir, LogStore::new(db, key), sm))
        }
    }

    #[tokio::test]
    async fn applied_objects_survive_reopening_the_database() {
        use openraft::storage::RaftStateMachine;
        use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
        use shoal_proto::stored_object::Object;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        let (key, _) = super::at_rest::load_or_create(dir.path(), None).unwrap();
        let node = Object::Node(shoal_proto::Node {
            id: "n1".into(),
            ..Default::default()
        });
        {
            let db = super::open_db(&path).unwrap();
            let mut sm = StateMachine::open(db, key.clone(), Store::default()).unwrap();
            let entry = Entry::<TypeConfig> {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), 7),
                payload: EntryPayload::Normal(crate::state::store::proposal(vec![
                    crate::state::store::action(shoal_proto::StoreActionKind::Create, node),
                ])),
            };
            let results = sm.apply([entry]).await.unwrap();
            assert!(results[0].error.is_empty());
        }
        let store = Store::default();
        let db = super::open_db(&path).unwrap();
        let mut sm = StateMachine::open(db, key, store.clone()).unwrap();
        assert_eq!(
            store.view(|s| s.node("n1").map(|n| n.id.clone())),
            Some("n1".into())
        );
        let (applied, _) = sm.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(7));
    }

    /// openraft's own conformance suite for log stores and state machines.
    #[test]
    fn redb_storage_passes_the_openraft_suite() {
        openraft::testing::Suite::test_all(RedbBuilder).unwrap();
    }
}

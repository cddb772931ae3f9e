//! The Raft log in redb: entries by index, plus vote, committed and purged markers.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, RaftLogReader, Vote};
use redb::{Database, ReadableDatabase, ReadableTable};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::at_rest::DataKey;
use super::tables::{LOG, RAFT_META};
use super::{NodeId, StorageError, TypeConfig, io_err};

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "last_purged";

#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    key: DataKey,
}

fn log_place(index: u64) -> String {
    format!("raft_log/{index}")
}

fn meta_place(key: &str) -> String {
    format!("raft_meta/{key}")
}

impl LogStore {
    /// The log in `db`, every value sealed with `key`.
    pub fn new(db: Arc<Database>, key: DataKey) -> Self {
        LogStore { db, key }
    }

    fn entry(&self, index: u64, bytes: &[u8]) -> Result<Entry<TypeConfig>, StorageError> {
        self.key.open(&log_place(index), bytes)
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let table = match txn.open_table(RAFT_META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(io_err(e)),
        };
        match table.get(key).map_err(io_err)? {
            Some(v) => Ok(Some(self.key.open(&meta_place(key), v.value())?)),
            None => Ok(None),
        }
    }

    fn write_meta<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StorageError> {
        let bytes = self.key.seal(&meta_place(key), value)?;
        let txn = self.db.begin_write().map_err(io_err)?;
        txn.open_table(RAFT_META)
            .map_err(io_err)?
            .insert(key, bytes.as_slice())
            .map_err(io_err)?;
        txn.commit().map_err(io_err)
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId<NodeId>>, StorageError> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let table = match txn.open_table(LOG) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(io_err(e)),
        };
        match table.last().map_err(io_err)? {
            Some((k, v)) => Ok(Some(self.entry(k.value(), v.value())?.log_id)),
            None => Ok(None),
        }
    }

    /// Removes entries whose index satisfies `range`.
    fn remove_range(&self, range: impl RangeBounds<u64>) -> Result<(), StorageError> {
        let txn = self.db.begin_write().map_err(io_err)?;
        {
            let mut table = txn.open_table(LOG).map_err(io_err)?;
            let keys: Vec<u64> = table
                .range(range)
                .map_err(io_err)?
                .map(|r| r.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()
                .map_err(io_err)?;
            for k in keys {
                table.remove(k).map_err(io_err)?;
            }
        }
        txn.commit().map_err(io_err)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let table = match txn.open_table(LOG) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![]),
            Err(e) => return Err(io_err(e)),
        };
        let mut out = Vec::new();
        for item in table.range(range).map_err(io_err)? {
            let (k, v) = item.map_err(io_err)?;
            out.push(self.entry(k.value(), v.value())?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.read_meta(PURGED)?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.write_meta(VOTE, vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta(VOTE)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError> {
        self.write_meta(COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        Ok(self
            .read_meta::<Option<LogId<NodeId>>>(COMMITTED)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let txn = self.db.begin_write().map_err(io_err)?;
        {
            let mut table = txn.open_table(LOG).map_err(io_err)?;
            for entry in entries {
                let bytes = self.key.seal(&log_place(entry.log_id.index), &entry)?;
                table
                    .insert(entry.log_id.index, bytes.as_slice())
                    .map_err(io_err)?;
            }
        }
        // redb commits durably (fsync) by default, so the entries are on disk here.
        let result = txn.commit().map_err(std::io::Error::other);
        let failed = result.as_ref().err().map(io_err);
        callback.log_io_completed(result);
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        self.remove_range(log_id.index..)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        self.write_meta(PURGED, &log_id)?;
        self.remove_range(..=log_id.index)
    }
}

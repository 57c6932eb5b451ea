//! The control plane's state: [`Store`], a key-value store with a global revision,
//! compare-and-put and watch (the operations the manager needs, and what etcd offers, so an
//! etcd implementation can take its place for manager HA), and [`RedbStore`], the embedded
//! implementation `ironhorn server` uses.
//!
//! Keys are strings such as `volumes/pvc-1`; values are bytes (the manager stores JSON).
//! Every change gets the next store revision; an entry carries the revision of its last
//! change, which compare-and-put checks.

mod redb_store;

pub use redb_store::RedbStore;

use thiserror::Error;

/// One stored value and the store revision of its last change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Vec<u8>,
    pub revision: u64,
}

/// What a write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Anything, or nothing.
    Any,
    /// No entry under the key (create).
    Absent,
    /// The entry as of this revision (update what was read).
    Revision(u64),
}

/// A change, as watchers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Put(Entry),
    Delete { key: String, revision: u64 },
}

impl Event {
    pub fn key(&self) -> &str {
        match self {
            Event::Put(e) => &e.key,
            Event::Delete { key, .. } => key,
        }
    }

    pub fn revision(&self) -> u64 {
        match self {
            Event::Put(e) => e.revision,
            Event::Delete { revision, .. } => *revision,
        }
    }
}

#[derive(Debug, Error)]
pub enum StoreError {
    /// The entry is not as the write expected: someone changed it since it was read.
    #[error("{key} changed meanwhile (expected {expected:?}, found revision {found:?}): read it again and retry")]
    Conflict {
        key: String,
        expected: Expect,
        found: Option<u64>,
    },
    #[error("state store {path}: {message}")]
    Backend { path: String, message: String },
}

/// The operations the control plane needs from its state store.
pub trait Store: Send + Sync {
    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError>;
    /// Every entry whose key starts with `prefix`, in key order.
    fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError>;
    /// Writes `value` under `key` if the entry is as `expect` says; returns the new revision.
    fn put(&self, key: &str, value: &[u8], expect: Expect) -> Result<u64, StoreError>;
    /// Deletes the entry if it is as `expect` says; `Ok(None)` when there was none.
    fn delete(&self, key: &str, expect: Expect) -> Result<Option<u64>, StoreError>;
    /// The store's current revision.
    fn revision(&self) -> Result<u64, StoreError>;
    /// Changes from now on, for every key (filter with [`Event::key`]). A receiver that falls
    /// behind gets `Lagged` and should list again.
    fn watch(&self) -> tokio::sync::broadcast::Receiver<Event>;
}

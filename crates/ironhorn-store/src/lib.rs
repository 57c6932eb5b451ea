//! The control plane's state: [`Store`], an async key-value store with a global revision and
//! compare-and-put (the operations the manager needs, and what etcd offers), with two
//! implementations: [`RedbStore`], the embedded one `ironhorn server` uses by default, and
//! [`EtcdStore`], etcd's v3 API, for several managers (`--store etcd://...`).
//!
//! Keys are strings such as `volumes/pvc-1`; values are bytes (the manager stores JSON).
//! Every change gets the next store revision; an entry carries the revision of its last
//! change, which compare-and-put checks.

mod etcd_store;
mod redb_store;

pub use etcd_store::{EtcdConfig, EtcdStore};
pub use redb_store::RedbStore;

use std::future::Future;
use std::pin::Pin;

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

#[derive(Debug, Error)]
pub enum StoreError {
    /// The entry is not as the write expected: someone changed it since it was read.
    #[error("{key} changed meanwhile (expected {expected:?}, found revision {found:?}): read it again and retry")]
    Conflict {
        key: String,
        expected: Expect,
        found: Option<u64>,
    },
    /// The store itself failed (I/O, corruption, a lost connection).
    #[error("state store {path}: {source}")]
    Backend {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What a store operation returns: a future that may run on another thread, so the
/// runtime's workers never wait for a disk or a network round trip.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The operations the control plane needs from its state store. Every operation is async:
/// an implementation does its blocking work (redb's fsync at commit, etcd's round trips) off
/// the runtime's worker threads.
pub trait Store: Send + Sync {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Entry>>;
    /// Every entry whose key starts with `prefix`, in key order.
    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<Entry>>;
    /// Writes `value` under `key` if the entry is as `expect` says; returns the new revision.
    fn put<'a>(&'a self, key: &'a str, value: &'a [u8], expect: Expect) -> StoreFuture<'a, u64>;
    /// Deletes the entry if it is as `expect` says; `Ok(None)` when there was none.
    fn delete<'a>(&'a self, key: &'a str, expect: Expect) -> StoreFuture<'a, Option<u64>>;
    /// The store's current revision.
    fn revision(&self) -> StoreFuture<'_, u64>;
}

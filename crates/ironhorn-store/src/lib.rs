//! The control plane's state: [`Store`], an async key-value store with a global revision and
//! compare-and-put (the operations the manager needs, and what etcd offers), with two
//! implementations: [`RedbStore`], the embedded one `ironhorn server` uses by default, and
//! [`EtcdStore`], etcd's v3 API, for several managers (`--store etcd://...`).
//!
//! Keys are strings such as `volumes/pvc-1`; values are bytes (the manager stores JSON).
//! Every change gets the next store revision; an entry carries the revision of its last
//! change, which compare-and-put checks. [`Store::changes`] tells of every change, by any
//! writer, so controllers react at once instead of polling.
//!
//! Several managers share one etcd; one of them leads (runs the controllers) for a
//! [`Term`], won with [`Store::campaign`]. A term's own store is fenced: its writes succeed
//! only while the term holds, so a deposed leader's late write fails.

mod etcd_election;
mod etcd_mirror;
mod etcd_store;
mod redb_store;

pub use etcd_store::{EtcdConfig, EtcdStore, EtcdTls};
pub use redb_store::RedbStore;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use thiserror::Error;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

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
    /// The write was made for a leadership term that has ended: another manager leads now.
    #[error("this manager's term as leader (number {term}) has ended, so its write was refused: the manager that leads now acts instead")]
    Fenced { term: u64 },
    /// The store cannot be reached or cannot decide now (etcd without a quorum, its members
    /// unreachable): nothing was written, and the same call may work later.
    #[error("the state store {path} is unavailable (etcd has no quorum or cannot be reached), so nothing was changed; try again once etcd answers: {source}")]
    Unavailable {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
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
    /// The newest revision this store has seen written, by this process or any other: it
    /// changes after every write. Notices coalesce (a slow reader sees the latest only).
    fn changes(&self) -> watch::Receiver<u64>;
    /// Waits until `candidate` leads, then returns its term. Only one candidate leads at a
    /// time across every process sharing the store.
    fn campaign<'a>(&'a self, candidate: &'a str) -> StoreFuture<'a, Term>;
    /// Who leads now, as it said when it campaigned (`None` with an embedded store, where
    /// the one process using it always leads).
    fn leader(&self) -> StoreFuture<'_, Option<String>>;
    /// `embedded` (one process holds it) or `etcd` (several may share it).
    fn kind(&self) -> &'static str;
}

/// A leader's time in office.
pub struct Term {
    /// Tells terms apart: grows from one term to the next.
    pub number: u64,
    /// The store to act through while leading: its writes succeed only while this term
    /// holds (a late write fails with [`StoreError::Fenced`]). Reads are as the store's.
    pub store: Arc<dyn Store>,
    /// Cancelled when the term ends, or is about to: the leader stops acting at once, before
    /// another can be elected.
    pub ended: CancellationToken,
    /// Ends the term early (a manager shutting down), so another takes over at once.
    resign: Option<Box<dyn FnOnce() -> StoreFuture<'static, ()> + Send>>,
}

impl std::fmt::Debug for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Term")
            .field("number", &self.number)
            .field("ended", &self.ended.is_cancelled())
            .finish()
    }
}

impl Term {
    /// A term that lasts as long as the process (an embedded store has no rival).
    pub fn unending(store: Arc<dyn Store>) -> Term {
        Term {
            number: 1,
            store,
            ended: CancellationToken::new(),
            resign: None,
        }
    }

    /// Gives up leadership at once.
    pub async fn resign(mut self) -> Result<(), StoreError> {
        self.ended.cancel();
        match self.resign.take() {
            Some(resign) => resign().await,
            None => Ok(()),
        }
    }
}

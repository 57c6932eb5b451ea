//! [`RedbStore`]: the embedded store, one redb file. Every write is one redb transaction,
//! durable when it returns (redb commits with fsync), so a kill -9 loses nothing that was
//! acknowledged. Every operation runs on tokio's blocking pool: an fsync never holds up a
//! runtime worker.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::watch;

use crate::{Entry, Expect, Store, StoreError, StoreFuture, Term};

/// key -> 8-byte little-endian revision, then the value.
const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
/// "revision" -> the store's revision.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION_KEY: &str = "revision";

/// The store; cheap to clone (one database behind it).
#[derive(Clone)]
pub struct RedbStore {
    db: Arc<Redb>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.db.path)
            .finish()
    }
}

/// The database and its blocking operations.
struct Redb {
    db: Database,
    path: PathBuf,
    /// Serialises writes: redb allows one write transaction at a time anyway, and this keeps
    /// the blocking pool's threads from piling up inside redb.
    write_lock: Mutex<()>,
    /// The revision of the last commit, for [`Store::changes`].
    changes: watch::Sender<u64>,
}

fn encode(revision: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&revision.to_le_bytes());
    out.extend_from_slice(value);
    out
}

fn decode(key: &str, raw: &[u8]) -> Entry {
    let mut rev = [0u8; 8];
    let n = raw.len().min(8);
    rev[..n].copy_from_slice(&raw[..n]);
    Entry {
        key: key.to_string(),
        value: raw.get(8..).unwrap_or_default().to_vec(),
        revision: u64::from_le_bytes(rev),
    }
}

fn backend(path: &Path, source: impl Into<redb::Error>) -> StoreError {
    StoreError::Backend {
        path: path.display().to_string(),
        source: Box::new(source.into()),
    }
}

impl RedbStore {
    /// Opens the store at `path`, creating it when missing. (Blocking: call it before the
    /// runtime serves, or on the blocking pool.)
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        let db = Database::create(path).map_err(|e| backend(path, e))?;
        // Both tables exist from the start, so reads never meet a missing table.
        let txn = db.begin_write().map_err(|e| backend(path, e))?;
        {
            txn.open_table(ENTRIES).map_err(|e| backend(path, e))?;
            txn.open_table(META).map_err(|e| backend(path, e))?;
        }
        txn.commit().map_err(|e| backend(path, e))?;
        let db = Redb {
            db,
            path: path.to_path_buf(),
            write_lock: Mutex::new(()),
            changes: watch::Sender::new(0),
        };
        db.changes.send_replace(db.revision()?);
        Ok(RedbStore { db: Arc::new(db) })
    }

    /// Runs `op` on the blocking pool.
    fn blocking<T, F>(&self, op: F) -> StoreFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(&Redb) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        Box::pin(async move {
            let path = db.path.clone();
            tokio::task::spawn_blocking(move || op(&db))
                .await
                .map_err(|e| StoreError::Backend {
                    path: path.display().to_string(),
                    source: Box::new(e),
                })?
        })
    }
}

impl Redb {
    fn fail(&self, e: impl Into<redb::Error>) -> StoreError {
        backend(&self.path, e)
    }

    fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let entries = txn.open_table(ENTRIES).map_err(|e| self.fail(e))?;
        let raw = entries.get(key).map_err(|e| self.fail(e))?;
        Ok(raw.map(|raw| decode(key, raw.value())))
    }

    fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let entries = txn.open_table(ENTRIES).map_err(|e| self.fail(e))?;
        let mut out = Vec::new();
        for item in entries.range(prefix..).map_err(|e| self.fail(e))? {
            let (key, raw) = item.map_err(|e| self.fail(e))?;
            if !key.value().starts_with(prefix) {
                break;
            }
            out.push(decode(key.value(), raw.value()));
        }
        Ok(out)
    }

    fn revision(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let meta = txn.open_table(META).map_err(|e| self.fail(e))?;
        let revision = meta.get(REVISION_KEY).map_err(|e| self.fail(e))?;
        Ok(revision.map(|g| g.value()).unwrap_or(0))
    }

    /// Runs one write transaction: checks `expect` against the entry under `key`, then
    /// stores `value` there (or deletes it when `None`) with the next revision.
    fn write(
        &self,
        key: &str,
        value: Option<&[u8]>,
        expect: Expect,
    ) -> Result<Option<u64>, StoreError> {
        let _serial = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let txn = self.db.begin_write().map_err(|e| self.fail(e))?;
        let revision = {
            let mut entries = txn.open_table(ENTRIES).map_err(|e| self.fail(e))?;
            let mut meta = txn.open_table(META).map_err(|e| self.fail(e))?;
            let found = entries
                .get(key)
                .map_err(|e| self.fail(e))?
                .map(|raw| decode(key, raw.value()).revision);
            let ok = match expect {
                Expect::Any => true,
                Expect::Absent => found.is_none(),
                Expect::Revision(r) => found == Some(r),
            };
            if !ok {
                return Err(StoreError::Conflict {
                    key: key.to_string(),
                    expected: expect,
                    found,
                });
            }
            if value.is_none() && found.is_none() {
                return Ok(None);
            }
            let current = meta
                .get(REVISION_KEY)
                .map_err(|e| self.fail(e))?
                .map(|g| g.value())
                .unwrap_or(0);
            let next = current + 1;
            meta.insert(REVISION_KEY, next).map_err(|e| self.fail(e))?;
            match value {
                Some(v) => {
                    entries
                        .insert(key, encode(next, v).as_slice())
                        .map_err(|e| self.fail(e))?;
                }
                None => {
                    entries.remove(key).map_err(|e| self.fail(e))?;
                }
            }
            next
        };
        txn.commit().map_err(|e| self.fail(e))?;
        self.changes.send_replace(revision);
        Ok(Some(revision))
    }
}

impl Store for RedbStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Entry>> {
        let key = key.to_string();
        self.blocking(move |db| db.get(&key))
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<Entry>> {
        let prefix = prefix.to_string();
        self.blocking(move |db| db.list(&prefix))
    }

    fn put<'a>(&'a self, key: &'a str, value: &'a [u8], expect: Expect) -> StoreFuture<'a, u64> {
        let (key, value) = (key.to_string(), value.to_vec());
        self.blocking(move |db| {
            db.write(&key, Some(&value), expect)?.ok_or_else(|| {
                db.fail(redb::StorageError::Corrupted("a put stored nothing".into()))
            })
        })
    }

    fn delete<'a>(&'a self, key: &'a str, expect: Expect) -> StoreFuture<'a, Option<u64>> {
        let key = key.to_string();
        self.blocking(move |db| db.write(&key, None, expect))
    }

    fn revision(&self) -> StoreFuture<'_, u64> {
        self.blocking(|db| db.revision())
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.db.changes.subscribe()
    }

    /// One process holds the file, so it leads, for as long as it runs.
    fn campaign<'a>(&'a self, _candidate: &'a str) -> StoreFuture<'a, Term> {
        let store: Arc<dyn Store> = Arc::new(self.clone());
        Box::pin(async move { Ok(Term::unending(store)) })
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn leader(&self) -> StoreFuture<'_, Option<String>> {
        Box::pin(async { Ok(None) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn store() -> (tempfile::TempDir, RedbStore) {
        let tmp = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&tmp.path().join("state.redb")).unwrap();
        (tmp, store)
    }

    #[tokio::test]
    async fn state_survives_reopening() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state.redb");
        let rev = {
            let s = RedbStore::open(&path).unwrap();
            s.put("settings/x", b"1", Expect::Any).await.unwrap();
            s.put("settings/y", b"2", Expect::Any).await.unwrap()
        };
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.revision().await.unwrap(), rev);
        assert_eq!(s.get("settings/y").await.unwrap().unwrap().revision, rev);
        // Revisions go on from where they were.
        assert!(s.put("settings/z", b"3", Expect::Any).await.unwrap() > rev);
    }

    #[test]
    fn a_damaged_file_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state.redb");
        std::fs::write(&path, vec![0x5a; 64 * 1024]).unwrap();
        let error = RedbStore::open(&path).unwrap_err();
        assert!(matches!(error, StoreError::Backend { .. }));
        assert!(error.to_string().contains("state.redb"), "{error}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// The store behaves like a map with a revision counter.
        #[test]
        fn matches_a_map(ops in proptest::collection::vec((0u8..3, 0u8..4, any::<u8>()), 1..40)) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (_tmp, s) = store();
            let mut model: BTreeMap<String, (Vec<u8>, u64)> = BTreeMap::new();
            let mut revision = 0;
            for (op, k, v) in ops {
                let key = format!("k{k}");
                match op {
                    0 => {
                        revision += 1;
                        prop_assert_eq!(runtime.block_on(s.put(&key, &[v], Expect::Any)).unwrap(), revision);
                        model.insert(key, (vec![v], revision));
                    }
                    1 => {
                        let had = model.remove(&key).is_some();
                        if had { revision += 1; }
                        prop_assert_eq!(runtime.block_on(s.delete(&key, Expect::Any)).unwrap(), had.then_some(revision));
                    }
                    _ => {
                        let got = runtime.block_on(s.get(&key)).unwrap().map(|e| (e.value, e.revision));
                        prop_assert_eq!(got, model.get(&key).cloned());
                    }
                }
            }
            prop_assert_eq!(runtime.block_on(s.revision()).unwrap(), revision);
        }
    }
}

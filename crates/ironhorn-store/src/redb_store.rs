//! [`RedbStore`]: the embedded store, one redb file. Every write is one redb transaction,
//! durable when it returns (redb commits with fsync), so a kill -9 loses nothing that was
//! acknowledged. Watchers are told after the commit.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::broadcast;

use crate::{Entry, Event, Expect, Store, StoreError};

/// key -> 8-byte little-endian revision, then the value.
const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");
/// "revision" -> the store's revision.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION_KEY: &str = "revision";

/// Events kept for a slow watcher before it is told it lagged.
const WATCH_BUFFER: usize = 4096;

pub struct RedbStore {
    db: Database,
    path: PathBuf,
    events: broadcast::Sender<Event>,
    /// Serialises writes with their event sends, so watchers see revisions in order.
    write_lock: Mutex<()>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
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

impl RedbStore {
    /// Opens the store at `path`, creating it when missing.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        let fail = |e: &dyn std::fmt::Display| StoreError::Backend {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let db = Database::create(path).map_err(|e| fail(&e))?;
        // Both tables exist from the start, so reads never meet a missing table.
        let txn = db.begin_write().map_err(|e| fail(&e))?;
        {
            txn.open_table(ENTRIES).map_err(|e| fail(&e))?;
            txn.open_table(META).map_err(|e| fail(&e))?;
        }
        txn.commit().map_err(|e| fail(&e))?;
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        Ok(RedbStore {
            db,
            path: path.to_path_buf(),
            events,
            write_lock: Mutex::new(()),
        })
    }

    fn fail(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Backend {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
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
        let event = match value {
            Some(v) => Event::Put(Entry {
                key: key.to_string(),
                value: v.to_vec(),
                revision,
            }),
            None => Event::Delete {
                key: key.to_string(),
                revision,
            },
        };
        // No watcher is not an error.
        let _ = self.events.send(event);
        Ok(Some(revision))
    }
}

impl Store for RedbStore {
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

    fn put(&self, key: &str, value: &[u8], expect: Expect) -> Result<u64, StoreError> {
        self.write(key, Some(value), expect)?
            .ok_or_else(|| self.fail("a put stored nothing"))
    }

    fn delete(&self, key: &str, expect: Expect) -> Result<Option<u64>, StoreError> {
        self.write(key, None, expect)
    }

    fn revision(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let meta = txn.open_table(META).map_err(|e| self.fail(e))?;
        let revision = meta.get(REVISION_KEY).map_err(|e| self.fail(e))?;
        Ok(revision.map(|g| g.value()).unwrap_or(0))
    }

    fn watch(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
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

    #[test]
    fn compare_and_put_refuses_a_stale_revision() {
        let (_tmp, s) = store();
        let r1 = s.put("volumes/a", b"one", Expect::Absent).unwrap();
        assert!(matches!(
            s.put("volumes/a", b"again", Expect::Absent),
            Err(StoreError::Conflict {
                found: Some(r),
                ..
            }) if r == r1
        ));
        let r2 = s.put("volumes/a", b"two", Expect::Revision(r1)).unwrap();
        assert!(r2 > r1);
        let stale = s.put("volumes/a", b"lost update", Expect::Revision(r1));
        assert!(matches!(stale, Err(StoreError::Conflict { .. })));
        assert_eq!(s.get("volumes/a").unwrap().unwrap().value, b"two");
        assert!(matches!(
            s.delete("volumes/a", Expect::Revision(r1)),
            Err(StoreError::Conflict { .. })
        ));
        assert!(s
            .delete("volumes/a", Expect::Revision(r2))
            .unwrap()
            .is_some());
        assert_eq!(s.delete("volumes/a", Expect::Any).unwrap(), None);
        assert!(s.get("volumes/a").unwrap().is_none());
    }

    #[test]
    fn list_returns_one_prefix_in_key_order() {
        let (_tmp, s) = store();
        for key in [
            "volumes/b",
            "nodes/n1",
            "volumes/a",
            "volumes0",
            "volumes/c",
        ] {
            s.put(key, key.as_bytes(), Expect::Any).unwrap();
        }
        let keys: Vec<String> = s
            .list("volumes/")
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, ["volumes/a", "volumes/b", "volumes/c"]);
    }

    #[test]
    fn state_survives_reopening() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state.redb");
        let rev = {
            let s = RedbStore::open(&path).unwrap();
            s.put("settings/x", b"1", Expect::Any).unwrap();
            s.put("settings/y", b"2", Expect::Any).unwrap()
        };
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.revision().unwrap(), rev);
        assert_eq!(s.get("settings/y").unwrap().unwrap().revision, rev);
        // Revisions go on from where they were.
        assert!(s.put("settings/z", b"3", Expect::Any).unwrap() > rev);
    }

    #[tokio::test]
    async fn watchers_see_every_change_in_order() {
        let (_tmp, s) = store();
        let mut w = s.watch();
        let r1 = s.put("k", b"v", Expect::Any).unwrap();
        let r2 = s.delete("k", Expect::Any).unwrap().unwrap();
        assert_eq!(
            w.recv().await.unwrap(),
            Event::Put(Entry {
                key: "k".into(),
                value: b"v".to_vec(),
                revision: r1
            })
        );
        assert_eq!(
            w.recv().await.unwrap(),
            Event::Delete {
                key: "k".into(),
                revision: r2
            }
        );
    }

    #[test]
    fn concurrent_increments_lose_nothing() {
        let (_tmp, s) = store();
        s.put("counter", b"0", Expect::Absent).unwrap();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..25 {
                        loop {
                            let e = s.get("counter").unwrap().unwrap();
                            let n: u64 = std::str::from_utf8(&e.value).unwrap().parse().unwrap();
                            let next = (n + 1).to_string();
                            match s.put("counter", next.as_bytes(), Expect::Revision(e.revision)) {
                                Ok(_) => break,
                                Err(StoreError::Conflict { .. }) => continue,
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                });
            }
        });
        assert_eq!(s.get("counter").unwrap().unwrap().value, b"100");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// The store behaves like a map with a revision counter.
        #[test]
        fn matches_a_map(ops in proptest::collection::vec((0u8..3, 0u8..4, any::<u8>()), 1..40)) {
            let (_tmp, s) = store();
            let mut model: BTreeMap<String, (Vec<u8>, u64)> = BTreeMap::new();
            let mut revision = 0;
            for (op, k, v) in ops {
                let key = format!("k{k}");
                match op {
                    0 => {
                        revision += 1;
                        prop_assert_eq!(s.put(&key, &[v], Expect::Any).unwrap(), revision);
                        model.insert(key, (vec![v], revision));
                    }
                    1 => {
                        let had = model.remove(&key).is_some();
                        if had { revision += 1; }
                        prop_assert_eq!(s.delete(&key, Expect::Any).unwrap(), had.then_some(revision));
                    }
                    _ => {
                        let got = s.get(&key).unwrap().map(|e| (e.value, e.revision));
                        prop_assert_eq!(got, model.get(&key).cloned());
                    }
                }
            }
            prop_assert_eq!(s.revision().unwrap(), revision);
        }
    }
}

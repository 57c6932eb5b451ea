//! The copy of the namespace each [`crate::EtcdStore`] keeps in memory, fed by its one etcd
//! watch (which also drives [`crate::Store::changes`]).
//!
//! Reads stay linearizable: a read first asks etcd for its current revision (one key, no
//! data), and is answered from the copy only when the copy has applied every change up to
//! that revision; otherwise it goes to etcd as before. An idle cluster writes nothing, so
//! its reads (the leader's lists every round, the API's) cost etcd no range over the
//! namespace, only that revision lookup.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{EventType, GetOptions, WatchOptions};
use tokio::sync::watch;

use crate::etcd_store::Members;
use crate::Entry;

/// The namespace's entries as of `revision` (keys without the namespace).
#[derive(Debug, Default)]
struct Copy {
    entries: BTreeMap<String, Entry>,
    revision: u64,
}

/// A shared, watch-fed copy of the namespace.
#[derive(Debug, Default, Clone)]
pub(crate) struct Mirror {
    copy: Arc<Mutex<Copy>>,
    /// Reads the copy answered so far.
    answered: Arc<AtomicU64>,
}

impl Mirror {
    /// Reads answered from the copy so far.
    pub(crate) fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    fn answering<T>(&self, answer: Option<T>) -> Option<T> {
        if answer.is_some() {
            self.answered.fetch_add(1, Ordering::Relaxed);
        }
        answer
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Copy> {
        self.copy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry at `key`, if the copy has every change up to revision `at` (a read that
    /// learnt of `at` after it began may be answered with any state since).
    pub(crate) fn get(&self, key: &str, at: u64) -> Option<Option<Entry>> {
        let copy = self.lock();
        self.answering((copy.revision >= at).then(|| copy.entries.get(key).cloned()))
    }

    /// The entries under `prefix` in key order, if the copy has every change up to `at`.
    pub(crate) fn list(&self, prefix: &str, at: u64) -> Option<Vec<Entry>> {
        let copy = self.lock();
        self.answering((copy.revision >= at).then(|| {
            copy.entries
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, e)| e.clone())
                .collect()
        }))
    }

    /// Replaces the copy with `entries`, read at `revision`.
    fn reload(&self, entries: Vec<Entry>, revision: u64) {
        let mut copy = self.lock();
        copy.entries = entries.into_iter().map(|e| (e.key.clone(), e)).collect();
        copy.revision = revision;
    }

    fn revision(&self) -> u64 {
        self.lock().revision
    }
}

/// An etcd revision as ours (etcd's are never negative).
pub(crate) fn revision(r: i64) -> u64 {
    u64::try_from(r).unwrap_or(0)
}

/// Reads the whole namespace into `mirror`; returns the revision it was read at.
pub(crate) async fn load(
    members: &Members,
    namespace: &str,
    mirror: &Mirror,
) -> Result<u64, etcd_client::Error> {
    let response = members
        .read(|c| async move {
            c.kv_client()
                .get(namespace, Some(GetOptions::new().with_prefix()))
                .await
        })
        .await?;
    let at = response.header().map_or(0, |h| revision(h.revision()));
    let entries = response
        .kvs()
        .iter()
        .map(|kv| entry(namespace, kv))
        .collect();
    mirror.reload(entries, at);
    Ok(at)
}

/// An etcd key-value as an entry (its key without the namespace).
pub(crate) fn entry(namespace: &str, kv: &etcd_client::KeyValue) -> Entry {
    let key = String::from_utf8_lossy(kv.key());
    Entry {
        key: key.strip_prefix(namespace).unwrap_or(&key).to_string(),
        value: kv.value().to_vec(),
        revision: revision(kv.mod_revision()),
    }
}

/// Follows every change under `namespace`: applies it to `mirror` and tells `changed` its
/// revision. After a broken watch it starts again where it left off; once etcd has
/// compacted that history, it reads the namespace again. Ends when nobody listens any more.
pub(crate) async fn follow(
    members: Arc<Members>,
    namespace: String,
    mirror: Mirror,
    changed: watch::Sender<u64>,
) {
    loop {
        let next = mirror.revision().saturating_add(1);
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(i64::try_from(next).unwrap_or(i64::MAX));
        let watched = members
            .read(|c| {
                let options = options.clone();
                let namespace = namespace.as_str();
                async move { c.watch_client().watch(namespace, Some(options)).await }
            })
            .await;
        match watched {
            Ok(mut stream) => {
                while let Ok(Some(response)) = stream.message().await {
                    if response.compact_revision() > 0 {
                        // History gone: read everything again.
                        match load(&members, &namespace, &mirror).await {
                            Ok(at) => {
                                changed.send_replace(at);
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "rereading etcd after a compaction; retrying")
                            }
                        }
                        break;
                    }
                    if response.canceled() {
                        break;
                    }
                    let newest = apply(&mirror, &namespace, response.events());
                    if let Some(newest) = newest {
                        changed.send_replace(newest);
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "watching etcd for changes; retrying"),
        }
        if changed.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Applies a watch response's events (in revision order) to the copy; the newest revision.
fn apply(mirror: &Mirror, namespace: &str, events: &[etcd_client::Event]) -> Option<u64> {
    let mut copy = mirror.lock();
    let mut newest = None;
    for event in events {
        let Some(kv) = event.kv() else {
            continue;
        };
        let e = entry(namespace, kv);
        let at = e.revision;
        match event.event_type() {
            EventType::Put => {
                copy.entries.insert(e.key.clone(), e);
            }
            EventType::Delete => {
                copy.entries.remove(&e.key);
            }
        }
        copy.revision = copy.revision.max(at);
        newest = newest.max(Some(at));
    }
    newest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, revision: u64) -> Entry {
        Entry {
            key: key.into(),
            value: key.as_bytes().to_vec(),
            revision,
        }
    }

    #[test]
    fn the_copy_answers_only_once_it_is_as_new_as_etcd() {
        let mirror = Mirror::default();
        mirror.reload(
            vec![
                entry("volumes/b", 4),
                entry("volumes/a", 3),
                entry("volumesx", 5),
                entry("replicas/r", 2),
            ],
            7,
        );
        let keys = |found: Vec<Entry>| found.into_iter().map(|e| e.key).collect::<Vec<_>>();
        assert_eq!(
            keys(mirror.list("volumes/", 7).unwrap()),
            ["volumes/a", "volumes/b"]
        );
        assert_eq!(mirror.get("volumes/a", 6).unwrap().unwrap().revision, 3);
        assert!(mirror.get("volumes/c", 7).unwrap().is_none());
        // etcd is further on: the copy may miss a change, so it does not answer.
        assert!(mirror.list("volumes/", 8).is_none());
        assert!(mirror.get("volumes/a", 8).is_none());
        assert_eq!(mirror.answered(), 3);
    }
}

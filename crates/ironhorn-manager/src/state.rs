//! Typed access to the state store: resources as JSON under `volumes/`, `nodes/`,
//! `replicas/` and `settings/`, and read-modify-write with compare-and-put. Failures are
//! [`StateError`]s; the API turns them into HTTP answers in `error.rs`.

use ironhorn_control::settings::Settings;
use ironhorn_store::{Expect, Store, StoreError};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub const VOLUMES: &str = "volumes/";
pub const NODES: &str = "nodes/";
pub const REPLICAS: &str = "replicas/";
pub const SETTINGS: &str = "settings/";
/// Recurring jobs by name.
pub const RECURRING_JOBS: &str = "recurringjobs/";
/// The last runs of each job on each volume: `recurringruns/<job>/<volume>`.
pub const RECURRING_RUNS: &str = "recurringruns/";

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored {key} cannot be read ({source}); restore the state directory from a backup")]
    Unreadable {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{key} cannot be stored: {source}")]
    Unwritable {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// A read-modify-write lost the race too many times in a row.
    #[error("{key} keeps changing; try again")]
    KeepsChanging { key: String },
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(bytes).map_err(|source| StateError::Unreadable {
        key: key.to_string(),
        source,
    })
}

fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(value).map_err(|source| StateError::Unwritable {
        key: key.to_string(),
        source,
    })
}

/// The value under `key` and its revision.
pub async fn get<T: DeserializeOwned>(
    store: &dyn Store,
    key: &str,
) -> Result<Option<(T, u64)>, StateError> {
    match store.get(key).await? {
        Some(entry) => Ok(Some((decode(key, &entry.value)?, entry.revision))),
        None => Ok(None),
    }
}

/// Parsed values by key, with the revision they were parsed at: the controllers list every
/// resource each round, and most have not changed since the last one.
#[derive(Debug)]
pub struct ParseCache<T>(std::sync::Mutex<std::collections::HashMap<String, (u64, T)>>);

impl<T> Default for ParseCache<T> {
    fn default() -> Self {
        ParseCache(std::sync::Mutex::new(std::collections::HashMap::new()))
    }
}

/// [`list`], parsing only entries changed since the last call with the same cache.
pub async fn list_cached<T: DeserializeOwned + Clone>(
    store: &dyn Store,
    prefix: &str,
    cache: &ParseCache<T>,
) -> Result<Vec<(T, u64)>, StateError> {
    let entries = store.list(prefix).await?;
    let mut cache = cache.0.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::with_capacity(entries.len());
    let mut seen = std::collections::HashSet::with_capacity(entries.len());
    for e in entries {
        let value = match cache.get(&e.key) {
            Some((revision, value)) if *revision == e.revision => value.clone(),
            _ => {
                let value: T = decode(&e.key, &e.value)?;
                cache.insert(e.key.clone(), (e.revision, value.clone()));
                value
            }
        };
        out.push((value, e.revision));
        seen.insert(e.key);
    }
    cache.retain(|k, _| seen.contains(k));
    Ok(out)
}

/// Every value under `prefix`, with its revision, in key order.
pub async fn list<T: DeserializeOwned>(
    store: &dyn Store,
    prefix: &str,
) -> Result<Vec<(T, u64)>, StateError> {
    store
        .list(prefix)
        .await?
        .into_iter()
        .map(|e| Ok((decode(&e.key, &e.value)?, e.revision)))
        .collect()
}

pub async fn put<T: Serialize>(
    store: &dyn Store,
    key: &str,
    value: &T,
    expect: Expect,
) -> Result<u64, StateError> {
    Ok(store.put(key, &encode(key, value)?, expect).await?)
}

/// Writes `value` under `key` if there is nothing there yet: false when there is.
pub async fn create<T: Serialize>(
    store: &dyn Store,
    key: &str,
    value: &T,
) -> Result<bool, StateError> {
    match put(store, key, value, Expect::Absent).await {
        Ok(_) => Ok(true),
        Err(StateError::Store(StoreError::Conflict { .. })) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reads `key`, applies `change` and writes it back if nobody changed it meanwhile (else
/// reads again, up to a few times). `missing` is the error when there is no such entry.
pub async fn update<T, E, F>(
    store: &dyn Store,
    key: &str,
    missing: impl Fn() -> E,
    mut change: F,
) -> Result<T, E>
where
    T: Serialize + DeserializeOwned,
    E: From<StateError>,
    F: FnMut(&mut T) -> Result<(), E>,
{
    for _ in 0..16 {
        let Some((mut value, revision)) = get::<T>(store, key).await? else {
            return Err(missing());
        };
        change(&mut value)?;
        match store
            .put(key, &encode(key, &value)?, Expect::Revision(revision))
            .await
        {
            Ok(_) => return Ok(value),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(StateError::from(e).into()),
        }
    }
    Err(StateError::KeepsChanging {
        key: key.to_string(),
    }
    .into())
}

/// The settings as stored (unset keys read as their defaults).
pub async fn settings(store: &dyn Store) -> Result<Settings, StateError> {
    let mut settings = Settings::default();
    for entry in store.list(SETTINGS).await? {
        let key = entry.key.trim_start_matches(SETTINGS).to_string();
        let value = String::from_utf8_lossy(&entry.value).into_owned();
        settings.values.insert(key, value);
    }
    Ok(settings)
}

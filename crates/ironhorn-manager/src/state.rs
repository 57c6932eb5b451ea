//! Typed access to the state store: resources as JSON under `volumes/`, `nodes/`,
//! `replicas/` and `settings/`, and read-modify-write with compare-and-put.

use ironhorn_control::settings::Settings;
use ironhorn_store::{Expect, Store, StoreError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ApiError;

pub const VOLUMES: &str = "volumes/";
pub const NODES: &str = "nodes/";
pub const REPLICAS: &str = "replicas/";
pub const SETTINGS: &str = "settings/";

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::internal(format!(
            "stored {key} cannot be read ({e}); restore the state directory from a backup"
        ))
    })
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|e| ApiError::internal(e.to_string()))
}

/// The value under `key` and its revision.
pub fn get<T: DeserializeOwned>(
    store: &dyn Store,
    key: &str,
) -> Result<Option<(T, u64)>, ApiError> {
    match store.get(key)? {
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
pub fn list_cached<T: DeserializeOwned + Clone>(
    store: &dyn Store,
    prefix: &str,
    cache: &ParseCache<T>,
) -> Result<Vec<(T, u64)>, ApiError> {
    let entries = store.list(prefix)?;
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
pub fn list<T: DeserializeOwned>(
    store: &dyn Store,
    prefix: &str,
) -> Result<Vec<(T, u64)>, ApiError> {
    store
        .list(prefix)?
        .into_iter()
        .map(|e| Ok((decode(&e.key, &e.value)?, e.revision)))
        .collect()
}

pub fn put<T: Serialize>(
    store: &dyn Store,
    key: &str,
    value: &T,
    expect: Expect,
) -> Result<u64, StoreError> {
    let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Backend {
        path: key.to_string(),
        message: e.to_string(),
    })?;
    store.put(key, &bytes, expect)
}

/// Reads `key`, applies `change` and writes it back if nobody changed it meanwhile (else
/// reads again, up to a few times). `missing` is the error when there is no such entry.
pub fn update<T, F>(
    store: &dyn Store,
    key: &str,
    missing: impl Fn() -> ApiError,
    mut change: F,
) -> Result<T, ApiError>
where
    T: Serialize + DeserializeOwned,
    F: FnMut(&mut T) -> Result<(), ApiError>,
{
    for _ in 0..16 {
        let Some((mut value, revision)) = get::<T>(store, key)? else {
            return Err(missing());
        };
        change(&mut value)?;
        match store.put(key, &encode(&value)?, Expect::Revision(revision)) {
            Ok(_) => return Ok(value),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict(format!(
        "{key} keeps changing; try again"
    )))
}

/// The settings as stored (unset keys read as their defaults).
pub fn settings(store: &dyn Store) -> Result<Settings, ApiError> {
    let mut settings = Settings::default();
    for entry in store.list(SETTINGS)? {
        let key = entry.key.trim_start_matches(SETTINGS).to_string();
        let value = String::from_utf8_lossy(&entry.value).into_owned();
        settings.values.insert(key, value);
    }
    Ok(settings)
}

//! The audit log: every change asked of the API, and every sign-in, from the UI, the CLI, the
//! CSI driver or a script: who, how, from where, what, when, and the result. Kept in the
//! store (`audit/<time>`; the newest [`KEEP`]), listed at `/v1/audit` for admins, and written
//! as a structured log line (target `audit`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ironhorn_api::auth::AuditEntry;
use ironhorn_store::Expect;

use crate::error::ApiError;
use crate::state;
use crate::Manager;

pub const AUDIT: &str = "audit/";
/// Entries kept.
pub const KEEP: usize = 10_000;
/// Pruning looks every this many entries.
const PRUNE_EVERY: u64 = 200;

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The result word of an HTTP status.
pub fn result_of(status: u16) -> &'static str {
    match status {
        200..=399 => "ok",
        401 | 403 | 429 => "denied",
        _ => "failed",
    }
}

/// Records `entry`: a log line now, the store entry after (a failure to store is logged).
/// On a response: the call changed nothing and is left out of the audit log (a node
/// agent's registration heartbeat, every few seconds per node).
#[derive(Debug, Clone, Copy)]
pub struct NothingChanged;

pub async fn record(m: &Manager, entry: AuditEntry) {
    tracing::info!(target: "audit", user = %entry.user, via = %entry.via, from = %entry.from,
        method = %entry.method, path = %entry.path, status = entry.status, result = %entry.result, "audit");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let key = format!("{AUDIT}{nanos:024}-{seq:012}");
    if let Err(e) = state::put(m.store.as_ref(), &key, &entry, Expect::Absent).await {
        tracing::warn!(error = %e, "audit entry not stored (it is in this log)");
    }
    if seq % PRUNE_EVERY == PRUNE_EVERY - 1 {
        if let Err(e) = prune(m).await {
            tracing::warn!(error = %e, "pruning the audit log");
        }
    }
}

async fn prune(m: &Manager) -> Result<(), ApiError> {
    let entries = m.store.list(AUDIT).await?;
    let excess = entries.len().saturating_sub(KEEP);
    for e in entries.into_iter().take(excess) {
        m.store.delete(&e.key, Expect::Any).await?;
    }
    Ok(())
}

/// The newest `limit` entries, newest first.
pub async fn list(m: &Manager, limit: usize) -> Result<Vec<AuditEntry>, ApiError> {
    let mut entries: Vec<AuditEntry> = state::list::<AuditEntry>(m.store.as_ref(), AUDIT)
        .await?
        .into_iter()
        .map(|(e, _)| e)
        .collect();
    entries.reverse();
    entries.truncate(limit);
    Ok(entries)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use ironhorn_store::RedbStore;

    use super::*;

    fn entry(path: &str, status: u16) -> AuditEntry {
        AuditEntry {
            at: String::new(),
            user: "olga".into(),
            via: "session".into(),
            from: "10.0.0.1".into(),
            method: "POST".into(),
            path: path.into(),
            status,
            result: result_of(status).into(),
        }
    }

    #[tokio::test]
    async fn entries_list_newest_first_and_stay_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(&dir.path().join("s.redb")).unwrap());
        let m = Manager::new(store, None);
        for i in 0..5 {
            record(&m, entry(&format!("/v1/volumes/v{i}/attach"), 202)).await;
        }
        record(&m, entry("/v1/settings/x", 403)).await;
        let listed = list(&m, 3).await.unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[0].path, "/v1/settings/x");
        assert_eq!(listed[0].result, "denied");
        assert_eq!(listed[1].path, "/v1/volumes/v4/attach");
        assert_eq!(result_of(500), "failed");
        assert_eq!(result_of(204), "ok");
    }
}

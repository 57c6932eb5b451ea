//! Leader election on etcd. A candidate takes a lease and wins by creating the leader key
//! under it while there is none; the key's create revision numbers the term, and the term's
//! store requires it on every write ([`crate::etcd_store::Fence`]). The leader renews its
//! lease four times per time-to-live and steps down ([`Term::ended`]) once two thirds of it
//! have passed without a renewal it can count on: before etcd can expire the lease and let
//! another candidate win. When a leader dies, its lease expires, etcd deletes the key, and
//! the candidates watching it campaign again.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, EventType, PutOptions, Txn, TxnOp, WatchOptions};
use tokio_util::sync::CancellationToken;

use crate::etcd_store::{EtcdStore, Fence};
use crate::{StoreError, StoreFuture, Term};

/// How long a follower trusts its watch on the leader key before campaigning again anyway.
const VACANCY_RECHECK: Duration = Duration::from_secs(60);

/// The leader key, under the store's namespace; its value names the leader.
pub(crate) const LEADER_KEY: &str = "election/leader";

/// Campaigns until `candidate` leads; fails only when etcd cannot be reached.
pub(crate) async fn campaign(store: &EtcdStore, candidate: &str) -> Result<Term, StoreError> {
    let ttl = store.config.lease_ttl;
    let key = store.leader_key();
    loop {
        let asked_at = Instant::now();
        let ttl_secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let lease = store
            .members
            .call(|c| async move { c.lease_client().grant(ttl_secs, None).await })
            .await
            .map_err(|e| store.fail(e))?;
        // The term's keep-alives, and a follower's watch, go to the member calls go to now.
        let client = store.members.client();
        let id = lease.id();
        let take = Txn::new()
            .when([Compare::version(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.as_str(),
                candidate,
                Some(PutOptions::new().with_lease(id)),
            )])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let response = match store
            .members
            .call(|c| {
                let take = take.clone();
                async move { c.kv_client().txn(take).await }
            })
            .await
        {
            Ok(response) => response,
            Err(e) => {
                revoke_quietly(client.clone(), id);
                return Err(store.fail(e));
            }
        };
        let seen = response.header().map_or(0, |h| h.revision());
        if response.succeeded() {
            let ended = CancellationToken::new();
            tokio::spawn(keep_lease(client.clone(), id, ttl, asked_at, ended.clone()));
            let resign_client = client.clone();
            let resign: Box<dyn FnOnce() -> StoreFuture<'static, ()> + Send> =
                Box::new(move || {
                    Box::pin(async move {
                        revoke(resign_client, id).await;
                        Ok(())
                    })
                });
            return Ok(Term {
                number: u64::try_from(seen).unwrap_or(0),
                store: Arc::new(store.fenced(Fence {
                    key: key.clone(),
                    term: seen,
                })),
                ended,
                resign: Some(resign),
            });
        }
        // Someone leads: give the lease back and wait for the leader key to go.
        revoke_quietly(client.clone(), id);
        wait_for_vacancy(&client, &key, seen, ttl).await;
    }
}

/// Returns once the leader key is deleted after revision `seen`, or once the watch breaks
/// (a member cut off is noticed by the connection's keep-alive within seconds), or after a
/// minute anyway: the caller then campaigns again. An idle follower costs etcd one
/// campaign a minute.
async fn wait_for_vacancy(client: &Client, key: &str, seen: i64, ttl: Duration) {
    let watching = async {
        let options = WatchOptions::new().with_start_revision(seen + 1);
        let Ok(mut stream) = client.watch_client().watch(key, Some(options)).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        };
        while let Ok(Some(response)) = stream.message().await {
            if response.canceled()
                || response
                    .events()
                    .iter()
                    .any(|e| e.event_type() == EventType::Delete)
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let _ = tokio::time::timeout(VACANCY_RECHECK.max(ttl * 2), watching).await;
}

/// Renews lease `id` (granted as asked at `asked_at`) until the term ends; ends the term
/// when a renewal is not confirmed in time, two thirds of `ttl` after the last confirmed one
/// was asked for.
async fn keep_lease(
    client: Client,
    id: i64,
    ttl: Duration,
    asked_at: Instant,
    ended: CancellationToken,
) {
    tokio::select! {
        _ = renew(&client, id, ttl, asked_at) => {
            tracing::warn!("the leader's lease could not be renewed in time: stepping down");
            ended.cancel();
            revoke_quietly(client, id);
        }
        _ = ended.cancelled() => {}
    }
}

/// Renews until a renewal fails or comes too late; returns then.
async fn renew(client: &Client, id: i64, ttl: Duration, asked_at: Instant) -> Option<Infallible> {
    let step_down_after = ttl * 2 / 3;
    let renew_every = ttl / 4;
    let deadline = |renewed: Instant| tokio::time::Instant::from_std(renewed + step_down_after);
    let mut renewed = asked_at;
    let mut asked = Instant::now();
    // Opening the stream renews once, and waits for etcd to confirm it.
    let (mut keeper, mut stream) =
        tokio::time::timeout_at(deadline(renewed), client.lease_client().keep_alive(id))
            .await
            .ok()?
            .ok()?;
    loop {
        renewed = asked;
        tokio::time::sleep(renew_every).await;
        asked = Instant::now();
        tokio::time::timeout_at(deadline(renewed), keeper.keep_alive())
            .await
            .ok()?
            .ok()?;
        let response = tokio::time::timeout_at(deadline(renewed), stream.message())
            .await
            .ok()?
            .ok()??;
        if response.ttl() <= 0 {
            return None; // expired already
        }
    }
}

async fn revoke(client: Client, id: i64) {
    let _ = tokio::time::timeout(Duration::from_secs(2), client.lease_client().revoke(id)).await;
}

/// Gives a lease back in the background (it expires by itself anyway).
fn revoke_quietly(client: Client, id: i64) {
    tokio::spawn(revoke(client, id));
}

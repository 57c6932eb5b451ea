//! `GET /v1/events`: a server-sent-events stream that tells a client (the web UI) when the
//! cluster's state changed, so it refetches what it shows instead of polling. Every change
//! to the store (an API call, a controller's status update, a job's record) moves its
//! revision; the store tells of it ([`ironhorn_store::Store::changes`], from any manager
//! when they share etcd), and the stream sends `event: change` with `{"revision": N}`, at
//! most every [`CHECK_EVERY`], and a comment line as keep-alive so proxies keep it open.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;

use super::Shared;

/// The shortest time between two events: changes in between come together.
pub(crate) const CHECK_EVERY: Duration = Duration::from_millis(500);

/// What a `change` event carries.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Change {
    /// The store's revision now; it only grows.
    revision: u64,
}

#[utoipa::path(get, path = "/v1/events", tag = "events", responses((status = 200, description = "A text/event-stream that does not end: `event: change` with data {\"revision\": N} each time the cluster's state changed (the first at once), and `:` keep-alive comments", content_type = "text/event-stream", body = Change), (status = 401, description = "Not signed in", body = ironhorn_api::error::ErrorBody)))]
pub(super) async fn events(State(m): Shared) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut changes = m.store.changes();
    // The first event at once: what the client shows may be older than this.
    changes.mark_changed();
    let stream = futures::stream::unfold((changes, false), |(mut changes, sent)| async move {
        if sent {
            // Changes in the meantime come together in the next event.
            tokio::time::sleep(CHECK_EVERY).await;
        }
        changes.changed().await.ok()?;
        let now = *changes.borrow_and_update();
        let event = Event::default()
            .event("change")
            .json_data(Change { revision: now })
            .unwrap_or_else(|_| Event::default().event("change"));
        Some((Ok(event), (changes, true)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

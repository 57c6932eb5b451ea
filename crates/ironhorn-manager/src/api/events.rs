//! `GET /v1/events`: a server-sent-events stream that tells a client (the web UI) when the
//! cluster's state changed, so it refetches what it shows instead of polling. Every change
//! to the store (an API call, a controller's status update, a job's record) moves its
//! revision; the stream sends `event: change` with `{"revision": N}` when it moved, at most
//! every [`CHECK_EVERY`], and a comment line as keep-alive so proxies keep it open.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;

use super::Shared;

/// How often the stream looks at the store's revision.
pub(crate) const CHECK_EVERY: Duration = Duration::from_millis(500);

/// What a `change` event carries.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Change {
    /// The store's revision now; it only grows.
    revision: u64,
}

#[utoipa::path(get, path = "/v1/events", tag = "events", responses((status = 200, description = "A text/event-stream that does not end: `event: change` with data {\"revision\": N} each time the cluster's state changed (the first at once), and `:` keep-alive comments", content_type = "text/event-stream", body = Change), (status = 401, description = "Not signed in", body = ironhorn_api::error::ErrorBody)))]
pub(super) async fn events(State(m): Shared) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let store = m.store.clone();
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures::stream::unfold(
        (store, ticks, None::<u64>),
        |(store, mut ticks, last)| async move {
            loop {
                ticks.tick().await;
                // A store that fails a read now may answer next time; the stream waits.
                let Ok(now) = store.revision().await else {
                    continue;
                };
                if last != Some(now) {
                    let event = Event::default()
                        .event("change")
                        .json_data(Change { revision: now })
                        .unwrap_or_else(|_| Event::default().event("change"));
                    return Some((Ok(event), (store, ticks, Some(now))));
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

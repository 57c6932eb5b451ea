//! `GET /v1/leader`: which manager runs the controllers. Every manager serves the API;
//! the one elected through the store leads (see [`crate::Loops`]).

use std::sync::atomic::Ordering;

use axum::extract::State;
use ironhorn_api::rest::Leadership;
use ironhorn_api::ErrorBody;

use super::{Json, Result, Shared};

#[utoipa::path(get, path = "/v1/leader", tag = "managers", responses((status = 200, description = "The leading manager, and whether it is the one that answered", body = Leadership), (status = 401, description = "Not signed in", body = ErrorBody)))]
pub(super) async fn leader(State(m): Shared) -> Result<Json<Leadership>> {
    let term = m.leading.load(Ordering::Relaxed);
    // An embedded store names no leader: the one process that holds it leads once started.
    let leader = match m.store.leader().await? {
        Some(name) => name,
        None if term > 0 => m.identity.clone(),
        None => String::new(),
    };
    Ok(Json(Leadership {
        store: m.store.kind().to_string(),
        leading: term > 0 && leader == m.identity,
        leader,
        this_manager: m.identity.clone(),
        term,
    }))
}

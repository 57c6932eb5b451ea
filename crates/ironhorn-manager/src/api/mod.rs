//! The REST API under `/v1`: volumes (with snapshots), nodes (with disks), settings, and
//! the registration of node agents. Changes are written to the store and the controllers are
//! woken; requests that need a running engine (snapshots, expand) are passed to its node.
//! Every error has the one shape (`error::ApiError`).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, State};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::Manager;

pub mod auth;
pub(crate) mod backups;
mod events;
mod leader;
mod nodes;
pub mod recurring;
mod settings;
#[cfg(test)]
mod tests;
pub(crate) mod volumes;

use auth::*;
use backups::*;
use events::*;
use leader::*;
pub use nodes::register;
use nodes::*;
use recurring::*;
use settings::*;
use volumes::*;

type Result<T> = std::result::Result<T, ApiError>;
type Shared = State<Arc<Manager>>;

/// A JSON object body; anything else (an array, a string, bad JSON, a wrong field) is
/// refused in the API's error shape.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::invalid(rejection.body_text())
    }
}

/// Reads a request body that must be one JSON object of the shape `T`.
pub(super) fn parse_body<T: DeserializeOwned>(value: Value) -> Result<T> {
    if !value.is_object() {
        return Err(ApiError::invalid("the request body must be a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            ApiError::invalid(format!("request body: {}", e.inner()))
        } else {
            ApiError::invalid(format!("request body: {path}: {}", e.inner()))
        }
    })
}

/// Query parameters, refused in the API's one error shape.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::invalid(format!("query parameters: {}", e.body_text())))
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self> {
        let axum::Json(value) = axum::Json::<Value>::from_request(req, state).await?;
        parse_body(value).map(Json)
    }
}

/// The API's OpenAPI document (kept in the repository as `api/openapi.json`).
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(
        title = "Ironhorn API",
        version = "1",
        description = "Volumes, snapshots, nodes with their disks, backups, recurring jobs and settings, with Longhorn's names. Every error is {code, message} with an HTTP status."
    ),
    paths(
        list_volumes, create_volume, get_volume, delete_volume, attach, detach, expand, trim, salvage,
        list_snapshots, create_snapshot, delete_snapshot, revert_snapshot, purge_snapshots,
        list_nodes, register_node, get_node, update_node, delete_node, add_disk, update_disk, remove_disk,
        list_orphans, get_orphan, delete_orphan,
        list_settings, get_setting, set_setting,
        list_backup_targets, get_backup_target, put_backup_target, delete_backup_target,
        list_secrets, put_secret, delete_secret,
        list_backup_volumes, get_backup_volume, delete_backup_volume,
        list_backups, get_backup, delete_backup, create_backup, activate,
        list_recurring_jobs, create_recurring_job, get_recurring_job, update_recurring_job,
        delete_recurring_job, run_recurring_job, list_job_runs, list_volume_runs,
        set_volume_labels,
        login, logout, me, list_users, create_user, delete_user, list_tokens, create_token,
        revoke_token, list_audit, events, leader
    ),
    tags(
        (name = "volumes", description = "Replicated block volumes"),
        (name = "snapshots", description = "Snapshots of an attached volume"),
        (name = "nodes", description = "Nodes and their disks"),
        (name = "orphans", description = "Replica directories no volume owns"),
        (name = "settings", description = "Settings with Longhorn's keys"),
        (name = "backups", description = "Backup targets, backup volumes and backups (Longhorn's backupstore layout), restores and standby volumes"),
        (name = "recurringjobs", description = "Scheduled snapshots, backups, cleanups and trims (Longhorn's RecurringJob), with every run recorded"),
        (name = "managers", description = "The managers: every one serves the API, one leads (runs the controllers)"),
        (name = "events", description = "A stream of change notices for live views (server-sent events)"),
        (name = "auth", description = "Sign-in, users with roles (viewer, operator, admin) and API tokens. Every other operation needs `Authorization: Bearer <token>` or a session cookie (with X-CSRF-Token on changes): 401 without, 403 when the role may not")
    ),
    modifiers(&StoreUnavailable)
)]
pub struct ApiDoc;

/// Documents on every operation what any of them answers when the state store cannot be
/// reached (etcd without a quorum): 503, with nothing changed.
struct StoreUnavailable;

impl utoipa::Modify for StoreUnavailable {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let response = ResponseBuilder::new()
            .description("The state store is unavailable (etcd has no quorum or cannot be reached): nothing was changed; try again once it answers")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                operation
                    .responses
                    .responses
                    .entry("503".to_string())
                    .or_insert_with(|| response.clone().into());
            }
        }
    }
}

/// The OpenAPI document as served at `/v1/openapi.json`.
pub fn openapi_json() -> String {
    use utoipa::OpenApi;
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

async fn openapi() -> impl IntoResponse {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        DOCUMENT.get_or_init(openapi_json).clone(),
    )
}

async fn metrics(State(m): Shared) -> Result<impl IntoResponse> {
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::render(&m).await?,
    ))
}

/// The node address of the volume's running engine, or why there is none.
pub(crate) async fn engine_node_address(
    m: &Manager,
    volume: &ironhorn_api::resource::Volume,
) -> Result<String> {
    volumes::engine_address(m, volume).await
}

pub fn router(manager: Arc<Manager>) -> Router {
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        // For probes: answers without credentials, and says nothing but that it serves.
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/v1/volumes", get(list_volumes).post(create_volume))
        .route("/v1/volumes/{name}", get(get_volume).delete(delete_volume))
        .route("/v1/volumes/{name}/attach", post(attach))
        .route("/v1/volumes/{name}/detach", post(detach))
        .route("/v1/volumes/{name}/expand", post(expand))
        .route("/v1/volumes/{name}/trim", post(trim))
        .route("/v1/volumes/{name}/salvage", post(salvage))
        .route(
            "/v1/volumes/{name}/snapshots",
            get(list_snapshots).post(create_snapshot),
        )
        .route(
            "/v1/volumes/{name}/snapshots/{snapshot}",
            axum::routing::delete(delete_snapshot),
        )
        .route(
            "/v1/volumes/{name}/snapshots/{snapshot}/revert",
            post(revert_snapshot),
        )
        .route("/v1/volumes/{name}/purge", post(purge_snapshots))
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/nodes/register", post(register_node))
        .route(
            "/v1/nodes/{name}",
            get(get_node).patch(update_node).delete(delete_node),
        )
        .route("/v1/nodes/{name}/disks", post(add_disk))
        .route(
            "/v1/nodes/{name}/disks/{disk}",
            axum::routing::patch(update_disk).delete(remove_disk),
        )
        .route("/v1/orphans", get(list_orphans))
        .route("/v1/orphans/{name}", get(get_orphan).delete(delete_orphan))
        .route("/v1/volumes/{name}/backups", post(create_backup))
        .route("/v1/volumes/{name}/activate", post(activate))
        .route("/v1/backuptargets", get(list_backup_targets))
        .route(
            "/v1/backuptargets/{name}",
            get(get_backup_target)
                .put(put_backup_target)
                .delete(delete_backup_target),
        )
        .route("/v1/secrets", get(list_secrets))
        .route("/v1/secrets/{name}", put(put_secret).delete(delete_secret))
        .route("/v1/backupvolumes", get(list_backup_volumes))
        .route(
            "/v1/backupvolumes/{volume}",
            get(get_backup_volume).delete(delete_backup_volume),
        )
        .route("/v1/backupvolumes/{volume}/backups", get(list_backups))
        .route(
            "/v1/backupvolumes/{volume}/backups/{backup}",
            get(get_backup).delete(delete_backup),
        )
        .route(
            "/v1/recurringjobs",
            get(list_recurring_jobs).post(create_recurring_job),
        )
        .route(
            "/v1/recurringjobs/{name}",
            get(get_recurring_job)
                .put(update_recurring_job)
                .delete(delete_recurring_job),
        )
        .route("/v1/recurringjobs/{name}/run", post(run_recurring_job))
        .route("/v1/recurringjobs/{name}/runs", get(list_job_runs))
        .route("/v1/volumes/{name}/recurringjobruns", get(list_volume_runs))
        .route("/v1/volumes/{name}/labels", post(set_volume_labels))
        .route("/v1/login", post(login))
        .route("/v1/logout", post(logout))
        .route("/v1/me", get(me))
        .route("/v1/users", get(list_users).post(create_user))
        .route("/v1/users/{name}", axum::routing::delete(delete_user))
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/{id}", axum::routing::delete(revoke_token))
        .route("/v1/audit", get(list_audit))
        .route("/v1/events", get(events))
        .route("/v1/leader", get(leader))
        .route("/v1/settings", get(list_settings))
        .route("/v1/settings/{name}", put(set_setting).get(get_setting))
        .fallback(crate::ui::serve)
        .layer(axum::middleware::from_fn_with_state(
            manager.clone(),
            auth::gate,
        ))
        .with_state(manager)
}

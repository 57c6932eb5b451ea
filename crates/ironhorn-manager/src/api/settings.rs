//! `/v1/settings` (Longhorn's settings by key) and `/v1/orphans` (replica directories no
//! volume owns).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use ironhorn_api::rest::{List, Orphan, SettingValue, SettingView};
use ironhorn_api::ErrorBody;
use ironhorn_control::settings::{self, DEFINITIONS};
use ironhorn_store::Expect;

use crate::error::ApiError;
use crate::state::{self, SETTINGS};

use super::{Json, Result, Shared};

pub(super) fn orphan_missing(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "no orphan {name:?}; `ironhorn orphan ls` lists them"
    ))
}

#[utoipa::path(get, path = "/v1/orphans", tag = "orphans", responses((status = 200, description = "Replica directories on the disks of ready nodes that no volume owns", body = List<Orphan>), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn list_orphans(State(m): Shared) -> Result<Json<List<Orphan>>> {
    Ok(Json(List {
        data: crate::orphans::find(&m).await?,
    }))
}

#[utoipa::path(get, path = "/v1/orphans/{name}", tag = "orphans", params(("name" = String, Path, description = "Orphan name")), responses((status = 200, description = "The orphan", body = Orphan), (status = 404, description = "No such resource", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn get_orphan(State(m): Shared, Path(name): Path<String>) -> Result<Json<Orphan>> {
    crate::orphans::find(&m)
        .await?
        .into_iter()
        .find(|o| o.name == name)
        .map(Json)
        .ok_or_else(|| orphan_missing(&name))
}

#[utoipa::path(delete, path = "/v1/orphans/{name}", tag = "orphans", params(("name" = String, Path, description = "Orphan name")), responses((status = 204, description = "Its directory is removed"), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 503, description = "A node did not answer", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn delete_orphan(
    State(m): Shared,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    let orphan = crate::orphans::find(&m)
        .await?
        .into_iter()
        .find(|o| o.name == name)
        .ok_or_else(|| orphan_missing(&name))?;
    crate::orphans::remove(&m, &orphan).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/settings", tag = "settings", responses((status = 200, description = "Every setting with its value and definition", body = List<SettingView>), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn list_settings(State(m): Shared) -> Result<Json<List<SettingView>>> {
    let current = state::settings(m.store.as_ref()).await?;
    Ok(Json(List {
        data: DEFINITIONS
            .iter()
            .map(|d| SettingView {
                name: d.key.to_string(),
                value: current.get(d.key).to_string(),
                definition: d.to_api(),
            })
            .collect(),
    }))
}

#[utoipa::path(get, path = "/v1/settings/{name}", tag = "settings", params(("name" = String, Path, description = "Setting name (Longhorn's key)")), responses((status = 200, description = "The setting", body = SettingView), (status = 404, description = "No such resource", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn get_setting(
    State(m): Shared,
    Path(name): Path<String>,
) -> Result<Json<SettingView>> {
    let definition = settings::definition(&name).map_err(|e| ApiError::not_found(e.to_string()))?;
    let current = state::settings(m.store.as_ref()).await?;
    Ok(Json(SettingView {
        name: definition.key.to_string(),
        value: current.get(definition.key).to_string(),
        definition: definition.to_api(),
    }))
}

#[utoipa::path(put, path = "/v1/settings/{name}", tag = "settings", params(("name" = String, Path, description = "Setting name (Longhorn's key)")), request_body = SettingValue, responses((status = 200, description = "Changed", body = SettingView), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn set_setting(
    State(m): Shared,
    Path(name): Path<String>,
    Json(req): Json<SettingValue>,
) -> Result<Json<SettingView>> {
    let definition = settings::definition(&name).map_err(|e| ApiError::not_found(e.to_string()))?;
    let (key, value) =
        settings::validate(&name, &req.value).map_err(|e| ApiError::invalid(e.to_string()))?;
    m.store
        .put(&format!("{SETTINGS}{key}"), value.as_bytes(), Expect::Any)
        .await?;
    m.wake.notify_one();
    m.recurring.wake.notify_one();
    Ok(Json(SettingView {
        name: key.to_string(),
        value,
        definition: definition.to_api(),
    }))
}

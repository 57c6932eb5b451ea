//! `/v1/nodes`: nodes, their registration by node agents, and their disks.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use ironhorn_api::node_api;
use ironhorn_api::resource::{DiskSpec, Node, NodeSpec, Replica};
use ironhorn_api::rest::{AddDisk, DiskUpdate, List, NodeUpdate, RegisterNode};
use ironhorn_api::ErrorBody;
use ironhorn_control::validate::{check_name, MAX_NAME};
use ironhorn_store::{Expect, StoreError};

use crate::error::ApiError;
use crate::state::{self, StateError, NODES, REPLICAS};
use crate::Manager;

use super::volumes::*;
use super::{Json, Result, Shared};

#[utoipa::path(get, path = "/v1/nodes", tag = "nodes", responses((status = 200, description = "Every node", body = List<Node>), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn list_nodes(State(m): Shared) -> Result<Json<List<Node>>> {
    let nodes = state::list::<Node>(m.store.as_ref(), NODES).await?;
    Ok(Json(List {
        data: nodes.into_iter().map(|(n, _)| n).collect(),
    }))
}

pub(super) fn node_missing(name: &str) -> ApiError {
    ApiError::not_found(format!("no node {name:?}; `ironhorn node ls` lists them"))
}

#[utoipa::path(get, path = "/v1/nodes/{name}", tag = "nodes", params(("name" = String, Path, description = "Node name")), responses((status = 200, description = "The node", body = Node), (status = 404, description = "No such resource", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn get_node(State(m): Shared, Path(name): Path<String>) -> Result<Json<Node>> {
    state::get::<Node>(m.store.as_ref(), &format!("{NODES}{name}"))
        .await?
        .map(|(n, _)| Json(n))
        .ok_or_else(|| node_missing(&name))
}

/// Registers a node (first time: with its default disk) or updates its address.
pub async fn register(m: &Manager, req: &RegisterNode) -> Result<Node> {
    Ok(register_changed(m, req).await?.0)
}

/// [`register`], and whether it changed anything (a node agent's heartbeat does not).
async fn register_changed(m: &Manager, req: &RegisterNode) -> Result<(Node, bool)> {
    check_name("node", &req.name, MAX_NAME).map_err(|e| ApiError::invalid(e.to_string()))?;
    if req
        .address
        .rsplit_once(':')
        .is_none_or(|(_, p)| p.parse::<u16>().is_err())
    {
        return Err(ApiError::invalid(format!(
            "node address {:?} is not HOST:PORT",
            req.address
        )));
    }
    let key = format!("{NODES}{}", req.name);
    loop {
        match state::get::<Node>(m.store.as_ref(), &key).await? {
            Some((mut node, revision)) => {
                if node.spec.address == req.address {
                    return Ok((node, false));
                }
                node.spec.address = req.address.clone();
                match state::put(m.store.as_ref(), &key, &node, Expect::Revision(revision)).await {
                    Ok(_) => {
                        m.wake.notify_one();
                        return Ok((node, true));
                    }
                    Err(StateError::Store(StoreError::Conflict { .. })) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            None => {
                let mut disks = BTreeMap::new();
                if let Some(path) = &req.default_disk_path {
                    disks.insert(
                        "default".to_string(),
                        DiskSpec {
                            path: path.clone(),
                            allow_scheduling: true,
                            storage_reserved: 0,
                            tags: Vec::new(),
                            eviction_requested: false,
                        },
                    );
                }
                let node = Node {
                    name: req.name.clone(),
                    spec: NodeSpec {
                        address: req.address.clone(),
                        allow_scheduling: true,
                        tags: Vec::new(),
                        zone: String::new(),
                        disks,
                        eviction_requested: false,
                    },
                    status: Default::default(),
                };
                match state::put(m.store.as_ref(), &key, &node, Expect::Absent).await {
                    Ok(_) => {
                        tracing::info!(node = req.name, address = req.address, "node registered");
                        m.wake.notify_one();
                        return Ok((node, true));
                    }
                    Err(StateError::Store(StoreError::Conflict { .. })) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}

#[utoipa::path(post, path = "/v1/nodes/register", tag = "nodes", request_body = RegisterNode, responses((status = 200, description = "Registered (first time with its default disk) or updated", body = Node), (status = 400, description = "Invalid request", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn register_node(
    State(m): Shared,
    Json(req): Json<RegisterNode>,
) -> Result<axum::response::Response> {
    use axum::response::IntoResponse;
    let (node, changed) = register_changed(&m, &req).await?;
    let mut response = Json(node).into_response();
    if !changed {
        // A node agent's heartbeat: nothing for the audit log.
        response
            .extensions_mut()
            .insert(crate::audit::NothingChanged);
    }
    Ok(response)
}

pub(super) async fn update_node_with(
    m: &Manager,
    name: &str,
    change: impl FnMut(&mut Node) -> Result<()>,
) -> Result<Node> {
    let node = state::update(
        m.store.as_ref(),
        &format!("{NODES}{name}"),
        || node_missing(name),
        change,
    )
    .await?;
    m.wake.notify_one();
    Ok(node)
}

#[utoipa::path(patch, path = "/v1/nodes/{name}", tag = "nodes", params(("name" = String, Path, description = "Node name")), request_body = NodeUpdate, responses((status = 200, description = "Updated", body = Node), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn update_node(
    State(m): Shared,
    Path(name): Path<String>,
    Json(req): Json<NodeUpdate>,
) -> Result<Json<Node>> {
    if let Some(tags) = &req.tags {
        check_tags("node tag", tags)?;
    }
    let node = update_node_with(&m, &name, |n| {
        if let Some(allow) = req.allow_scheduling {
            n.spec.allow_scheduling = allow;
        }
        if let Some(tags) = &req.tags {
            n.spec.tags = tags.clone();
        }
        if let Some(zone) = &req.zone {
            n.spec.zone = zone.clone();
        }
        if let Some(evict) = req.eviction_requested {
            n.spec.eviction_requested = evict;
        }
        Ok(())
    })
    .await?;
    Ok(Json(node))
}

#[utoipa::path(delete, path = "/v1/nodes/{name}", tag = "nodes", params(("name" = String, Path, description = "Node name")), responses((status = 204, description = "Removed; its replicas are failed and rebuilt elsewhere"), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn delete_node(State(m): Shared, Path(name): Path<String>) -> Result<StatusCode> {
    let key = format!("{NODES}{name}");
    let (node, revision) = state::get::<Node>(m.store.as_ref(), &key)
        .await?
        .ok_or_else(|| node_missing(&name))?;
    if node.status.ready || m.local_node.as_deref() == Some(name.as_str()) {
        return Err(ApiError::conflict(format!(
            "node {name} is up: stop its agent first (a node is removed when its machine is gone for good)"
        )));
    }
    match m.store.delete(&key, Expect::Revision(revision)).await {
        Ok(_) => {}
        Err(StoreError::Conflict { .. }) => {
            return Err(ApiError::conflict(format!(
                "node {name} changed meanwhile; try again"
            )))
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(node = name, "node removed");
    m.wake.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/nodes/{name}/disks", tag = "nodes", params(("name" = String, Path, description = "Node name")), request_body = AddDisk, responses((status = 201, description = "Added", body = Node), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 503, description = "A node did not answer", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn add_disk(
    State(m): Shared,
    Path(name): Path<String>,
    Json(req): Json<AddDisk>,
) -> Result<(StatusCode, Json<Node>)> {
    check_name("disk", &req.name, MAX_NAME).map_err(|e| ApiError::invalid(e.to_string()))?;
    check_tags("disk tag", &req.tags)?;
    if !req.path.starts_with('/') {
        return Err(ApiError::invalid(format!(
            "disk path {:?} must be absolute",
            req.path
        )));
    }
    let reserved = match &req.storage_reserved {
        Some(s) => size_bytes(s)?,
        None => 0,
    };
    let (node, _) = state::get::<Node>(m.store.as_ref(), &format!("{NODES}{name}"))
        .await?
        .ok_or_else(|| node_missing(&name))?;
    if node.spec.disks.contains_key(&req.name) {
        return Err(ApiError::exists(format!(
            "node {name} has a disk {:?} already",
            req.name
        )));
    }
    let path = req.path.trim_end_matches('/').to_string();
    if let Some((other, _)) = node
        .spec
        .disks
        .iter()
        .find(|(_, d)| d.path.trim_end_matches('/') == path)
    {
        return Err(ApiError::exists(format!(
            "path {path} is disk {other} of node {name} already"
        )));
    }
    // The path must exist on that node: its agent checks.
    let probe = m
        .client
        .call(&node.spec.address, node_api::probe(&path))
        .await?;
    let uuid = probe.disk_uuid;
    if node
        .status
        .disks
        .values()
        .any(|d| !uuid.is_empty() && d.disk_uuid == uuid)
    {
        return Err(ApiError::exists(format!(
            "{path} is a disk of node {name} already (same disk identity {uuid})"
        )));
    }
    let node = update_node_with(&m, &name, |n| {
        n.spec.disks.insert(
            req.name.clone(),
            DiskSpec {
                path: path.clone(),
                allow_scheduling: req.allow_scheduling,
                storage_reserved: reserved,
                tags: req.tags.clone(),
                eviction_requested: false,
            },
        );
        Ok(())
    })
    .await?;
    Ok((StatusCode::CREATED, Json(node)))
}

#[utoipa::path(patch, path = "/v1/nodes/{name}/disks/{disk}", tag = "nodes", params(("name" = String, Path, description = "Node name"), ("disk" = String, Path, description = "Disk name")), request_body = DiskUpdate, responses((status = 200, description = "Updated", body = Node), (status = 400, description = "Invalid request", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn update_disk(
    State(m): Shared,
    Path((name, disk)): Path<(String, String)>,
    Json(req): Json<DiskUpdate>,
) -> Result<Json<Node>> {
    if let Some(tags) = &req.tags {
        check_tags("disk tag", tags)?;
    }
    let reserved = match &req.storage_reserved {
        Some(s) => Some(size_bytes(s)?),
        None => None,
    };
    let node = update_node_with(&m, &name, |n| {
        let d = n
            .spec
            .disks
            .get_mut(&disk)
            .ok_or_else(|| ApiError::not_found(format!("node {name} has no disk {disk:?}")))?;
        if let Some(allow) = req.allow_scheduling {
            d.allow_scheduling = allow;
        }
        if let Some(reserved) = reserved {
            d.storage_reserved = reserved;
        }
        if let Some(tags) = &req.tags {
            d.tags = tags.clone();
        }
        if let Some(evict) = req.eviction_requested {
            d.eviction_requested = evict;
        }
        Ok(())
    })
    .await?;
    Ok(Json(node))
}

#[utoipa::path(delete, path = "/v1/nodes/{name}/disks/{disk}", tag = "nodes", params(("name" = String, Path, description = "Node name"), ("disk" = String, Path, description = "Disk name")), responses((status = 200, description = "Removed", body = Node), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "Conflicts with the current state", body = ErrorBody), (status = 500, description = "Failed", body = ErrorBody)))]
pub(super) async fn remove_disk(
    State(m): Shared,
    Path((name, disk)): Path<(String, String)>,
) -> Result<Json<Node>> {
    let holding: Vec<String> = state::list::<Replica>(m.store.as_ref(), REPLICAS)
        .await?
        .into_iter()
        .filter(|(r, _)| r.node == name && r.disk == disk)
        .map(|(r, _)| format!("{} (volume {})", r.name, r.volume))
        .collect();
    if !holding.is_empty() {
        return Err(ApiError::conflict(format!(
            "disk {disk} of node {name} holds replicas: {}; request eviction (`ironhorn node disk update {name} {disk} --eviction on`), which moves them while their volumes are attached, then remove it",
            holding.join(", ")
        )));
    }
    let node = update_node_with(&m, &name, |n| {
        n.spec
            .disks
            .remove(&disk)
            .ok_or_else(|| ApiError::not_found(format!("node {name} has no disk {disk:?}")))?;
        Ok(())
    })
    .await?;
    Ok(Json(node))
}

//! `ironhorn cluster-secret`, the install manifest's Job, against a stand-in for the
//! Kubernetes API: a mock, because no Kubernetes API server can run here. The mock answers
//! the two calls the command makes (read a Secret, create one) as the API server does:
//! 404 and 409 `Status` objects, 403 for a token without the right, bearer tokens checked.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

const TOKEN: &str = "service-account-token";

#[derive(Default)]
struct Api {
    secrets: Mutex<Vec<Value>>,
    creates: Mutex<u32>,
}

fn status(code: StatusCode, reason: &str, message: &str) -> (StatusCode, Json<Value>) {
    (
        code,
        Json(
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": message, "reason": reason, "code": code.as_u16()}),
        ),
    )
}

fn allowed(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

async fn read(
    State(api): State<Arc<Api>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    if !allowed(&headers) {
        return status(StatusCode::FORBIDDEN, "Forbidden", &format!("secrets \"{name}\" is forbidden: User \"system:serviceaccount:{ns}:other\" cannot get resource \"secrets\" in API group \"\" in the namespace \"{ns}\""));
    }
    let secrets = api.secrets.lock().unwrap();
    match secrets.iter().find(|s| s["metadata"]["name"] == name) {
        // The real API server returns stringData base64-encoded under data; the mock keeps
        // the text (the command only checks that the key is there).
        Some(s) => (
            StatusCode::OK,
            Json(json!({"metadata": s["metadata"], "data": s["stringData"]})),
        ),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("secrets \"{name}\" not found"),
        ),
    }
}

async fn create(
    State(api): State<Arc<Api>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if !allowed(&headers) {
        return status(StatusCode::FORBIDDEN, "Forbidden", &format!("secrets is forbidden: User \"system:serviceaccount:{ns}:other\" cannot create resource \"secrets\" in API group \"\" in the namespace \"{ns}\""));
    }
    *api.creates.lock().unwrap() += 1;
    let mut secrets = api.secrets.lock().unwrap();
    let name = body["metadata"]["name"].clone();
    if secrets.iter().any(|s| s["metadata"]["name"] == name) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!("secrets {name} already exists"),
        );
    }
    secrets.push(body.clone());
    (StatusCode::CREATED, Json(body))
}

fn start_api() -> (String, Arc<Api>, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let api = Arc::new(Api::default());
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/api/v1/namespaces/{ns}/secrets/{name}", get(read))
        .route(
            "/api/v1/namespaces/{ns}/secrets",
            axum::routing::post(create),
        )
        .with_state(api.clone());
    runtime.spawn(async move { axum::serve(listener, app).await });
    (url, api, runtime)
}

fn cluster_secret(url: &str, token_file: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ironhorn"))
        .args([
            "cluster-secret",
            "--api-server",
            url,
            "--namespace",
            "ironhorn-system",
            "--token-file",
            token_file.to_str().unwrap(),
            "--ca-cert",
            "/nonexistent/ca.crt",
        ])
        .env_remove("POD_NAMESPACE")
        .output()
        .unwrap()
}

#[test]
fn the_cluster_secret_is_made_once_and_kept_after() {
    let (url, api, _runtime) = start_api();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();

    let out = cluster_secret(&url, &token);
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("ironhorn-system/ironhorn-cluster-secret: made"),
        "{said}"
    );
    let made = api.secrets.lock().unwrap()[0].clone();
    assert_eq!(made["kind"], "Secret");
    assert_eq!(made["metadata"]["namespace"], "ironhorn-system");
    let value = made["stringData"]["secret"].as_str().unwrap();
    assert_eq!(value.len(), 64, "{value}");
    assert!(value.chars().all(|c| c.is_ascii_hexdigit()));

    // Run again (the Job after an upgrade): the secret everyone holds is kept.
    let out = cluster_secret(&url, &token);
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{said}");
    assert!(said.contains("exists: kept"), "{said}");
    assert_eq!(*api.creates.lock().unwrap(), 1);
    assert_eq!(
        api.secrets.lock().unwrap()[0]["stringData"]["secret"],
        value
    );

    // A service account without the right: the API's message and what to grant.
    std::fs::write(&token, "another-token").unwrap();
    let out = cluster_secret(&url, &token);
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(
        said.contains("cannot get resource \"secrets\"") && said.contains("needs get and create"),
        "{said}"
    );
}

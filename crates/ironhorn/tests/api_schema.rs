//! The REST API against its OpenAPI document with requests we did not write: schemathesis
//! (from PyPI; `.ci/run` installs it) generates valid and invalid requests for every
//! operation from `/v1/openapi.json` and checks that no answer is a 5xx, that every status
//! code and body is one the document declares, and that invalid requests are refused.
//! Also: API validation errors, checked one by one.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use ironhorn_testkit::{free_port, Proc};
use serde_json::{json, Value};

struct Server {
    url: String,
    dir: tempfile::TempDir,
    proc: Proc,
    /// The first admin's API token.
    token: String,
}

fn start_server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("127.0.0.1:{}", free_port());
    // Block devices cannot get their links here (a file is in the way): attaching with the
    // blockdev frontend fails on the node, which is what one test needs.
    let in_the_way = dir.path().join("not-a-directory");
    std::fs::write(&in_the_way, b"").unwrap();
    let device_dir = in_the_way.join("ironhorn");
    let proc = Proc::spawn(
        env!("CARGO_BIN_EXE_ironhorn"),
        &[
            "server",
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "--listen",
            &url,
            "--node-name",
            "st-node",
            "--poll-window",
            "0",
            "--device-dir",
            device_dir.to_str().unwrap(),
        ],
    );
    proc.wait_for("API at");
    let token = std::fs::read_to_string(dir.path().join("data/admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let server = Server {
        url: format!("http://{url}"),
        dir,
        proc,
        token,
    };
    // The machine's filesystem may be fuller than the default 25% free allows for.
    let (status, _) = request(
        &server,
        "PUT",
        "/v1/settings/storage-minimal-available-percentage",
        Some(json!({"value": "0"})),
    );
    assert_eq!(status, 200);
    server
}

/// (status, body) of one request, as the first admin.
fn request(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    request_as(server, Some(&server.token), method, path, body)
}

/// (status, body) of one request with `token` (None: no credentials).
fn request_as(
    server: &Server,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    let (status, body, _) = send(server, method, path, &headers, body);
    (status, body)
}

/// (status, body, Set-Cookie) of one request with `headers`.
fn send(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}{path}", server.url);
    macro_rules! with_headers {
        ($req:expr) => {{
            let mut req = $req;
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req
        }};
    }
    let response = match (method, body) {
        ("GET", _) => with_headers!(agent.get(&url)).call(),
        ("DELETE", _) => with_headers!(agent.delete(&url)).call(),
        ("PATCH", Some(b)) => with_headers!(agent.patch(&url)).send_json(b),
        ("PATCH", None) => with_headers!(agent.patch(&url)).send_empty(),
        ("PUT", Some(b)) => with_headers!(agent.put(&url)).send_json(b),
        ("PUT", None) => with_headers!(agent.put(&url)).send_empty(),
        (_, Some(b)) => with_headers!(agent.post(&url)).send_json(b),
        (_, None) => with_headers!(agent.post(&url)).send_empty(),
    }
    .unwrap();
    let status = response.status().as_u16();
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = response.into_body().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        cookie,
    )
}

fn wait_until(server: &Server, what: &str, check: impl Fn(&Value) -> bool, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = request(server, "GET", path, None);
        if check(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}: {body}\n{}",
            server.proc.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts the one error shape and the status.
fn refused(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<Value>,
    status: u16,
    code: &str,
    says: &str,
) {
    let (got, answer) = request(server, method, path, body.clone());
    assert_eq!(got, status, "{method} {path} {body:?}: {answer}");
    assert_eq!(answer["code"], code, "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains(says),
        "{message:?} should mention {says:?}"
    );
}

#[test]
fn invalid_requests_get_the_one_error_shape_with_a_clear_message() {
    let server = start_server();
    let volumes = "/v1/volumes";
    refused(
        &server,
        "POST",
        volumes,
        Some(json!({"name": "Bad_Name", "size": "1Gi"})),
        400,
        "invalid",
        "lowercase",
    );
    refused(
        &server,
        "POST",
        volumes,
        Some(json!({"name": "v", "size": "ten gigs"})),
        400,
        "invalid",
        "size",
    );
    refused(
        &server,
        "POST",
        volumes,
        Some(json!({"name": "v", "size": 0})),
        400,
        "invalid",
        "greater than 0",
    );
    refused(
        &server,
        "POST",
        volumes,
        Some(json!({"name": "v", "size": "1Gi", "numberOfReplicas": 21})),
        400,
        "invalid",
        "between 1 and 20",
    );
    refused(
        &server,
        "POST",
        volumes,
        Some(json!({"name": "v", "size": "1Gi", "frontend": "iscsi"})),
        400,
        "invalid",
        "frontend",
    );
    refused(
        &server,
        "POST",
        volumes,
        Some(json!({"name": "v", "size": "1Gi", "colour": "red"})),
        400,
        "invalid",
        "colour",
    );
    refused(
        &server,
        "GET",
        "/v1/volumes/nope",
        None,
        404,
        "not_found",
        "volume ls",
    );
    refused(
        &server,
        "GET",
        "/v1/nowhere",
        None,
        404,
        "not_found",
        "openapi.json",
    );

    // Sizes are rounded up to 2 MiB, as Longhorn does; a duplicate is a conflict.
    let (status, created) = request(
        &server,
        "POST",
        volumes,
        Some(json!({"name": "v1", "size": "3Mi", "numberOfReplicas": 1})),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["spec"]["size"], 4 << 20);
    assert_eq!(created["spec"]["staleReplicaTimeout"], 2880);
    refused(
        &server,
        "POST",
        volumes,
        Some(json!({"name": "v1", "size": "1Gi"})),
        409,
        "already_exists",
        "exists",
    );

    // Snapshots need an attached volume; revert needs maintenance mode.
    refused(
        &server,
        "POST",
        "/v1/volumes/v1/snapshots",
        Some(json!({"name": "s1"})),
        409,
        "conflict",
        "attach it first",
    );
    refused(
        &server,
        "POST",
        "/v1/volumes/v1/attach",
        Some(json!({"node": "elsewhere"})),
        400,
        "invalid",
        "no node",
    );
    // An optional body, when given, is one JSON object all the same.
    refused(
        &server,
        "POST",
        "/v1/volumes/v1/attach",
        Some(json!([null])),
        400,
        "invalid",
        "must be a JSON object",
    );
    refused(
        &server,
        "POST",
        "/v1/volumes/v1/detach",
        Some(json!({"force": "yes"})),
        400,
        "invalid",
        "force",
    );
    refused(
        &server,
        "POST",
        "/v1/volumes/v1/attach",
        Some(json!({"frontend": "iscsi"})),
        400,
        "invalid",
        "frontend",
    );
    let (status, _) = request(&server, "POST", "/v1/volumes/v1/attach", None);
    assert_eq!(status, 202);
    wait_until(
        &server,
        "attached",
        |v| v["status"]["state"] == "attached",
        "/v1/volumes/v1",
    );
    let (status, snap) = request(
        &server,
        "POST",
        "/v1/volumes/v1/snapshots",
        Some(json!({"name": "s1"})),
    );
    assert_eq!(status, 201, "{snap}");
    assert_eq!(snap["name"], "s1");
    refused(
        &server,
        "POST",
        "/v1/volumes/v1/snapshots/s1/revert",
        None,
        409,
        "conflict",
        "maintenance",
    );
    refused(
        &server,
        "POST",
        "/v1/volumes/v1/expand",
        Some(json!({"size": "2Mi"})),
        400,
        "invalid",
        "shrinking",
    );
    let (status, expanded) = request(
        &server,
        "POST",
        "/v1/volumes/v1/expand",
        Some(json!({"size": "8Mi"})),
    );
    assert_eq!(status, 200, "{expanded}");
    assert_eq!(expanded["spec"]["size"], 8 << 20);

    // What a node refuses or fails shows in the volume's conditions: here, a block device
    // whose link cannot be made (see `start_server`).
    let (status, _) = request(
        &server,
        "POST",
        volumes,
        Some(json!({"name": "bd", "size": "4Mi", "numberOfReplicas": 1, "frontend": "blockdev"})),
    );
    assert_eq!(status, 201);
    let (status, _) = request(&server, "POST", "/v1/volumes/bd/attach", None);
    assert_eq!(status, 202);
    let refused_attach = wait_until(
        &server,
        "the refusal shows",
        |v| {
            v["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Reconciled" && c["status"] == "False")
            })
        },
        "/v1/volumes/bd",
    );
    let message = refused_attach["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Reconciled")
        .unwrap()["message"]
        .to_string();
    assert!(message.contains("not-a-directory"), "{message}");
    assert_eq!(refused_attach["status"]["state"], "attaching");

    // Disks: a path that does not exist, a system directory, one that holds replicas.
    let disks = "/v1/nodes/st-node/disks";
    refused(
        &server,
        "POST",
        disks,
        Some(json!({"name": "d2", "path": "/nonexistent/disk"})),
        400,
        "invalid",
        "does not exist",
    );
    refused(
        &server,
        "POST",
        disks,
        Some(json!({"name": "d2", "path": "/etc"})),
        400,
        "invalid",
        "system directory",
    );
    refused(
        &server,
        "POST",
        disks,
        Some(json!({"name": "d2", "path": "relative"})),
        400,
        "invalid",
        "absolute",
    );
    let extra = tempfile::tempdir().unwrap();
    let (status, node) = request(
        &server,
        "POST",
        disks,
        Some(
            json!({"name": "d2", "path": extra.path(), "storageReserved": "1Gi", "tags": ["ssd"]}),
        ),
    );
    assert_eq!(status, 201, "{node}");
    assert_eq!(node["spec"]["disks"]["d2"]["storageReserved"], 1u64 << 30);
    assert!(extra.path().join("replicas").is_dir());
    refused(
        &server,
        "POST",
        disks,
        Some(json!({"name": "d3", "path": extra.path()})),
        409,
        "already_exists",
        "already",
    );
    let (status, _) = request(&server, "DELETE", "/v1/nodes/st-node/disks/d2", None);
    assert_eq!(status, 200);
    refused(
        &server,
        "DELETE",
        "/v1/nodes/st-node/disks/default",
        None,
        409,
        "conflict",
        "v1-r-",
    );

    // Metrics: read back with the Prometheus project's own parser.
    let families = parse_metrics(&server);
    let sample = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        families[name]
            .as_array()?
            .iter()
            .find(|s| labels.iter().all(|(k, v)| s["labels"][k] == *v))?["value"]
            .as_f64()
    };
    assert_eq!(
        sample("ironhorn_volume_size_bytes", &[("volume", "v1")]),
        Some(8.0 * 1048576.0)
    );
    assert_eq!(
        sample(
            "ironhorn_volume_state",
            &[("volume", "v1"), ("state", "attached")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            "ironhorn_volume_state",
            &[("volume", "v1"), ("state", "detached")]
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            "ironhorn_volume_robustness",
            &[("volume", "v1"), ("robustness", "healthy")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample("ironhorn_node_ready", &[("node", "st-node")]),
        Some(1.0)
    );
    assert!(
        sample(
            "ironhorn_disk_capacity_bytes",
            &[("node", "st-node"), ("disk", "default")]
        )
        .unwrap()
            > 0.0
    );
    // v1 (8 MiB) and bd (4 MiB) have their replica there.
    assert_eq!(
        sample(
            "ironhorn_disk_scheduled_bytes",
            &[("node", "st-node"), ("disk", "default")]
        ),
        Some(12.0 * 1048576.0)
    );

    // A node that is up cannot be removed; a registered one that never answers can.
    refused(
        &server,
        "DELETE",
        "/v1/nodes/st-node",
        None,
        409,
        "conflict",
        "stop its agent first",
    );
    let (status, _) = request(
        &server,
        "POST",
        "/v1/nodes/register",
        Some(json!({"name": "ghost", "address": "127.0.0.1:1"})),
    );
    assert_eq!(status, 200);
    wait_until(
        &server,
        "the ghost node is seen down",
        |n| {
            n["status"]["conditions"]
                .as_array()
                .is_some_and(|c| !c.is_empty())
        },
        "/v1/nodes/ghost",
    );
    let (status, _) = request(&server, "DELETE", "/v1/nodes/ghost", None);
    assert_eq!(status, 204);
    refused(
        &server,
        "GET",
        "/v1/nodes/ghost",
        None,
        404,
        "not_found",
        "node ls",
    );

    // Settings: Longhorn's keys and validation.
    refused(
        &server,
        "PUT",
        "/v1/settings/engine-replica-timeout",
        Some(json!({"value": "3"})),
        400,
        "invalid",
        "engine-replica-timeout",
    );
    refused(
        &server,
        "PUT",
        "/v1/settings/replica-soft-anti",
        Some(json!({"value": "true"})),
        404,
        "not_found",
        "did you mean",
    );
    let (status, set) = request(
        &server,
        "PUT",
        "/v1/settings/orphan-auto-deletion",
        Some(json!({"value": "TRUE"})),
    );
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["name"], "orphan-resource-auto-deletion");
    assert_eq!(set["value"], "true");
}

/// `/metrics` parsed by prometheus_client's OpenMetrics parser (PyPI, in the same
/// virtualenv as schemathesis): `{family: [{labels, value}]}`.
fn parse_metrics(server: &Server) -> Value {
    let tool = schemathesis();
    let python = std::path::Path::new(&tool)
        .parent()
        .map(|dir| dir.join("python3"))
        .filter(|p| p.exists())
        .map_or("python3".to_string(), |p| p.display().to_string());
    let script = r#"
import json, sys, urllib.request
from prometheus_client.openmetrics.parser import text_string_to_metric_families
req = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]})
text = urllib.request.urlopen(req).read().decode()
out = {}
for family in text_string_to_metric_families(text):
    for s in family.samples:
        out.setdefault(s.name, []).append({"labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;
    let out = Command::new(python)
        .args([
            "-c",
            script,
            &format!("{}/metrics", server.url),
            &server.token,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Finds schemathesis: on PATH, or in the virtualenv `.ci/run` makes.
fn schemathesis() -> String {
    for candidate in ["schemathesis", "/var/tmp/ironhorn-ci-venv/bin/schemathesis"] {
        if Command::new(candidate)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return candidate.to_string();
        }
    }
    panic!("schemathesis is not installed: `python3 -m venv /var/tmp/ironhorn-ci-venv && /var/tmp/ironhorn-ci-venv/bin/pip install schemathesis` (what .ci/run does)");
}

#[test]
fn every_operation_answers_as_the_openapi_document_says() {
    let tool = schemathesis();
    let server = start_server();
    // Something to act on: a volume with a snapshot, attached.
    let (status, _) = request(
        &server,
        "POST",
        "/v1/volumes",
        Some(json!({"name": "vol-st", "size": "16Mi", "numberOfReplicas": 1})),
    );
    assert_eq!(status, 201);
    request(&server, "POST", "/v1/volumes/vol-st/attach", None);
    wait_until(
        &server,
        "attached",
        |v| v["status"]["state"] == "attached",
        "/v1/volumes/vol-st",
    );
    let (status, _) = request(
        &server,
        "POST",
        "/v1/volumes/vol-st/snapshots",
        Some(json!({"name": "snap-st"})),
    );
    assert_eq!(status, 201);

    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        r#"
[[operations]]
include-path-regex = "^/v1/volumes/"
parameters = { "path.name" = "vol-st", "path.snapshot" = "snap-st" }

[[operations]]
include-path-regex = "^/v1/nodes/"
parameters = { "path.name" = "st-node", "path.disk" = "default" }
"#,
    )
    .unwrap();
    // The document is read with credentials too: from a file, the calls with the token.
    let (status, document) = request(&server, "GET", "/v1/openapi.json", None);
    assert_eq!(status, 200);
    let schema = work.path().join("openapi.json");
    std::fs::write(&schema, document.to_string()).unwrap();
    let out = Command::new(&tool)
        .current_dir(work.path())
        .args([
            "--config-file",
            config.to_str().unwrap(),
            "run",
            schema.to_str().unwrap(),
            "--url",
            &server.url,
            "--header",
            &format!("Authorization: Bearer {}", server.token),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection",
            // Adding a disk writes into the path it is given: not with generated paths.
            "--exclude-operation-id",
            "add_disk",
            // The change stream never ends; its own test reads it.
            "--exclude-operation-id",
            "events",
            // Revoking the token this run calls with, or deleting its user (both listed by
            // GET /v1/tokens and /v1/users, so a generated scenario finds them), would make
            // every later call a 401; both are tested on their own (the manager's users
            // tests, and the role test above).
            "--exclude-operation-id",
            "revoke_token",
            "--exclude-operation-id",
            "delete_user",
            "--max-examples",
            "40",
            // One worker: with two, hypothesis reads lambda sources with `ast.parse` on two
            // threads, and CPython 3.11's AST converter keeps one recursion counter for both
            // ("SystemError: AST constructor recursion depth mismatch", cpython#106905).
            "--workers",
            "1",
            "--no-color",
        ])
        .output()
        .unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\nserver log:\n{}",
        server.proc.text()
    );
    assert!(report.contains("passed"), "{report}");
}

#[test]
fn orphaned_replica_directories_are_listed_and_removed() {
    let server = start_server();
    let replicas = server.dir.path().join("data/replicas");
    let make = |name: &str| {
        let dir = replicas.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("volume.meta"), b"{}").unwrap();
        dir
    };
    let first = make("gone-0000aaaa");
    // Not a replica (no volume.meta): never listed, never touched.
    let notes = replicas.join("notes");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("todo.txt"), b"keep me").unwrap();

    let list = wait_until(
        &server,
        "the orphan is listed",
        |v| v["data"].as_array().is_some_and(|a| !a.is_empty()),
        "/v1/orphans",
    );
    let orphans = list["data"].as_array().unwrap();
    assert_eq!(orphans.len(), 1, "{list}");
    assert_eq!(orphans[0]["dataDirectoryName"], "gone-0000aaaa");
    assert_eq!(orphans[0]["node"], "st-node");
    let name = orphans[0]["name"].as_str().unwrap().to_string();
    let (status, _) = request(&server, "DELETE", &format!("/v1/orphans/{name}"), None);
    assert_eq!(status, 204);
    assert!(!first.exists());
    refused(
        &server,
        "GET",
        &format!("/v1/orphans/{name}"),
        None,
        404,
        "not_found",
        "orphan ls",
    );

    // With auto-deletion on, the controllers remove them.
    let second = make("gone-0000bbbb");
    let (status, _) = request(
        &server,
        "PUT",
        "/v1/settings/orphan-resource-auto-deletion",
        Some(json!({"value": "true"})),
    );
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    while second.exists() {
        assert!(
            Instant::now() < deadline,
            "not removed: {}",
            server.proc.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(notes.join("todo.txt").exists());
}

/// A concrete path for a documented template: every parameter a made-up segment.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|seg| if seg.starts_with('{') { "made-up" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn every_operation_needs_credentials_and_the_role_it_asks_for() {
    let server = start_server();
    let (status, _) = request(
        &server,
        "POST",
        "/v1/users",
        Some(json!({"name": "vera", "role": "viewer"})),
    );
    assert_eq!(status, 201);
    let (status, issued) = request(&server, "POST", "/v1/tokens", Some(json!({"user": "vera"})));
    assert_eq!(status, 201, "{issued}");
    let viewer = issued["token"].as_str().unwrap().to_string();
    let (status, who) = request_as(&server, Some(&viewer), "GET", "/v1/me", None);
    assert_eq!(
        (status, who["user"].as_str(), who["role"].as_str()),
        (200, Some("vera"), Some("viewer"))
    );

    let (_, doc) = request(&server, "GET", "/v1/openapi.json", None);
    let mut checked = 0;
    for (template, operations) in doc["paths"].as_object().unwrap() {
        let path = concrete(template);
        for method in operations.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            let body = (method != "GET" && method != "DELETE").then(|| json!({}));
            if template == "/v1/login" {
                continue; // the one public operation: below
            }
            let (status, answer) = request_as(&server, None, &method, &path, body.clone());
            assert_eq!(status, 401, "{method} {path} without credentials: {answer}");
            assert_eq!(answer["code"], "unauthenticated", "{method} {path}");
            // A viewer reads what is not an admin's; it changes nothing but its own
            // session and tokens.
            let admin_only = ["/v1/users", "/v1/secrets", "/v1/audit"]
                .iter()
                .any(|p| template.starts_with(p));
            let own = matches!(
                template.as_str(),
                "/v1/logout" | "/v1/tokens" | "/v1/tokens/{id}"
            );
            if template == "/v1/events" {
                checked += 1;
                continue; // a stream that never ends: read in its own test
            }
            let (status, answer) = request_as(&server, Some(&viewer), &method, &path, body);
            if admin_only || (method != "GET" && !own) {
                assert_eq!(status, 403, "{method} {path} as a viewer: {answer}");
                assert_eq!(answer["code"], "forbidden");
                assert!(
                    answer["message"]
                        .as_str()
                        .unwrap()
                        .contains("vera (viewer) may not"),
                    "{answer}"
                );
            } else {
                assert!(
                    status != 401 && status != 403,
                    "{method} {path} as a viewer: {status} {answer}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 55, "{checked}");

    // The node API answers the cluster secret only, not even an admin's token.
    let secret = std::fs::read_to_string(server.dir.path().join("data/cluster.secret")).unwrap();
    let (status, _) = request(&server, "GET", "/node/v1/engines", None);
    assert_eq!(status, 401);
    let (status, _) = request_as(
        &server,
        Some(secret.trim()),
        "GET",
        "/node/v1/engines",
        None,
    );
    assert_eq!(status, 200);
    // A revoked token stands for nobody.
    let id = issued["id"].as_str().unwrap();
    let (status, _) = request(&server, "DELETE", &format!("/v1/tokens/{id}"), None);
    assert_eq!(status, 204);
    let (status, _) = request_as(&server, Some(&viewer), "GET", "/v1/volumes", None);
    assert_eq!(status, 401);
    // Probes need nothing.
    let (status, _) = request_as(&server, None, "GET", "/healthz", None);
    assert_eq!(status, 200);
}

#[test]
fn sessions_need_the_csrf_token_end_at_logout_and_guessing_is_slowed() {
    let server = start_server();
    let (status, _) = request(
        &server,
        "POST",
        "/v1/users",
        Some(json!({"name": "olga", "role": "operator", "password": "a long passphrase"})),
    );
    assert_eq!(status, 201);
    let (status, me, cookie) = send(
        &server,
        "POST",
        "/v1/login",
        &[],
        Some(json!({"user": "olga", "password": "a long passphrase"})),
    );
    assert_eq!(status, 200, "{me}");
    let cookie = cookie.unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let csrf = me["csrfToken"].as_str().unwrap().to_string();
    assert_eq!(me["role"], "operator");

    let (status, _, _) = send(&server, "GET", "/v1/volumes", &[("Cookie", &session)], None);
    assert_eq!(status, 200);
    let volume = json!({"name": "by-session", "size": "16Mi", "numberOfReplicas": 1});
    let (status, answer, _) = send(
        &server,
        "POST",
        "/v1/volumes",
        &[("Cookie", &session)],
        Some(volume.clone()),
    );
    assert_eq!(status, 403, "a change without the CSRF token: {answer}");
    assert!(answer["message"].as_str().unwrap().contains("X-CSRF-Token"));
    let (status, _, _) = send(
        &server,
        "POST",
        "/v1/volumes",
        &[("Cookie", &session), ("X-CSRF-Token", "0000")],
        Some(volume.clone()),
    );
    assert_eq!(status, 403, "a wrong CSRF token");
    let (status, answer, _) = send(
        &server,
        "POST",
        "/v1/volumes",
        &[("Cookie", &session), ("X-CSRF-Token", &csrf)],
        Some(volume),
    );
    assert_eq!(status, 201, "{answer}");
    let (status, _, cleared) = send(
        &server,
        "POST",
        "/v1/logout",
        &[("Cookie", &session), ("X-CSRF-Token", &csrf)],
        None,
    );
    assert_eq!(status, 204);
    assert!(cleared.unwrap().contains("Max-Age=0"));
    let (status, _, _) = send(&server, "GET", "/v1/volumes", &[("Cookie", &session)], None);
    assert_eq!(status, 401, "a stolen cookie is useless after logout");

    // Guessing: after a few failures, every attempt (even the right password) waits.
    let attempt = |password: &str| {
        send(
            &server,
            "POST",
            "/v1/login",
            &[],
            Some(json!({"user": "olga", "password": password})),
        )
    };
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(attempt("not the passphrase").0);
    }
    assert_eq!(statuses[..5], [401; 5]);
    assert_eq!(statuses[6], 429, "{statuses:?}");
    let (status, answer, _) = attempt("a long passphrase");
    assert_eq!(status, 429, "{answer}");
    assert_eq!(answer["code"], "throttled");

    // Every change and sign-in is in the audit log: who, how, what, the result.
    let (status, log) = request(&server, "GET", "/v1/audit?limit=50", None);
    assert_eq!(status, 200, "{log}");
    let entries = log["data"].as_array().unwrap();
    let find = |method: &str, path: &str, code: u64| {
        entries
            .iter()
            .find(|e| e["method"] == method && e["path"] == path && e["status"] == code)
            .cloned()
            .unwrap_or_else(|| panic!("no {method} {path} {code} in {log}"))
    };
    let created = find("POST", "/v1/volumes", 201);
    assert_eq!(
        (
            created["user"].as_str(),
            created["via"].as_str(),
            created["result"].as_str()
        ),
        (Some("olga"), Some("session"), Some("ok"))
    );
    assert_eq!(created["from"], "127.0.0.1");
    let refused = find("POST", "/v1/volumes", 403);
    assert_eq!(
        (refused["user"].as_str(), refused["result"].as_str()),
        (Some("olga"), Some("denied"))
    );
    assert_eq!(find("POST", "/v1/login", 200)["user"], "olga");
    assert_eq!(find("POST", "/v1/login", 429)["result"], "denied");
    let made_user = find("POST", "/v1/users", 201);
    assert_eq!(made_user["user"], "admin");
    assert!(made_user["via"].as_str().unwrap().starts_with("token:"));
    // Newest first; reads are not logged.
    assert_eq!(entries[0]["path"], "/v1/login");
    assert!(entries.iter().all(|e| e["method"] != "GET"));
    // Admins only.
    let (status, _) = request_as(&server, None, "GET", "/v1/audit", None);
    assert_eq!(status, 401);
}

/// Reads one server-sent event (`event:` and `data:` lines up to a blank line), skipping
/// keep-alive comments.
fn next_event(reader: &mut impl std::io::BufRead) -> (String, Value) {
    let (mut event, mut data) = (String::new(), String::new());
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the stream ended");
        let line = line.trim_end();
        if line.is_empty() && !event.is_empty() {
            return (event, serde_json::from_str(&data).unwrap());
        } else if let Some(e) = line.strip_prefix("event:") {
            event = e.trim().to_string();
        } else if let Some(d) = line.strip_prefix("data:") {
            data.push_str(d.trim());
        }
    }
}

#[test]
fn the_change_stream_tells_a_viewer_when_the_state_moved() {
    use std::io::{BufRead, BufReader, Write};
    let server = start_server();
    let (_, user) = request(
        &server,
        "POST",
        "/v1/users",
        Some(json!({"name": "vic", "role": "viewer"})),
    );
    assert_eq!(user["name"], "vic");
    let (_, issued) = request(&server, "POST", "/v1/tokens", Some(json!({"user": "vic"})));
    let viewer = issued["token"].as_str().unwrap();

    let address = server.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET /v1/events HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {viewer}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    // Chunked framing: the chunk-size lines carry no colon and no event, so the reader
    // below skips them as it skips comments.
    let (event, first) = next_event(&mut reader);
    assert_eq!(event, "change");
    let before = first["revision"].as_u64().unwrap();

    let (status, _) = request(
        &server,
        "POST",
        "/v1/volumes",
        Some(json!({"name": "vol-ev", "size": "16Mi", "numberOfReplicas": 1})),
    );
    assert_eq!(status, 201);
    let (event, next) = next_event(&mut reader);
    assert_eq!(event, "change");
    assert!(
        next["revision"].as_u64().unwrap() > before,
        "{next} after {before}"
    );
}

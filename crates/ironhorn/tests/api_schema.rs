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
    let server = Server {
        url: format!("http://{url}"),
        dir,
        proc,
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

/// (status, body) of one request.
fn request(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}{path}", server.url);
    let response = match (method, body) {
        ("GET", _) => agent.get(&url).call(),
        ("DELETE", _) => agent.delete(&url).call(),
        ("PATCH", Some(b)) => agent.patch(&url).send_json(b),
        ("PUT", Some(b)) => agent.put(&url).send_json(b),
        (_, Some(b)) => agent.post(&url).send_json(b),
        (_, None) => agent.post(&url).send_empty(),
    }
    .unwrap();
    let status = response.status().as_u16();
    let text = response.into_body().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
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
text = urllib.request.urlopen(sys.argv[1]).read().decode()
out = {}
for family in text_string_to_metric_families(text):
    for s in family.samples:
        out.setdefault(s.name, []).append({"labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;
    let out = Command::new(python)
        .args(["-c", script, &format!("{}/metrics", server.url)])
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
    let out = Command::new(&tool)
        .current_dir(work.path())
        .args([
            "--config-file",
            config.to_str().unwrap(),
            "run",
            &format!("{}/v1/openapi.json", server.url),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection",
            // Adding a disk writes into the path it is given: not with generated paths.
            "--exclude-operation-id",
            "add_disk",
            "--max-examples",
            "40",
            "--workers",
            "2",
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

//! The web UI in a real browser: Debian's Chromium driven by playwright-core (from npm, in
//! `ui/node_modules`) against a real server, the scripts in `ui/e2e/`: a journey through
//! the main pages (sign in, create, attach, snapshot, expand, detach, delete; a viewer sees
//! nothing that changes anything and gets 403 when it calls the API anyway; sign out, and the
//! old cookie is worth nothing), the volume list with 1,000 volumes rendered within a second,
//! and the size of what the browser downloads. Screenshots of the main pages land in
//! `IRONHORN_UI_SCREENSHOTS` (default: cargo's test temporary directory, `ui-screenshots/`).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Cluster;

const CHROMIUM: &str = "/usr/bin/chromium";

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui")
}

fn screenshots() -> PathBuf {
    std::env::var_os("IRONHORN_UI_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots"))
}

/// Runs `ui/e2e/SCRIPT` with node against `cluster`; panics with its output when it fails.
fn run_browser_script(cluster: &Cluster, script: &str, env: &[(&str, &str)]) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: apt-get install chromium (scripts/setup does)"
    );
    assert!(
        ui_dir().join("node_modules/playwright-core").exists(),
        "ui/node_modules/playwright-core is missing: (cd ui && npm ci), which building the manager does"
    );
    std::fs::create_dir_all(screenshots()).unwrap();
    let out = Command::new("node")
        .arg(ui_dir().join("e2e").join(script))
        .env("IRONHORN_URL", &cluster.url)
        .env("CHROMIUM", CHROMIUM)
        .env("SCREENSHOTS", screenshots())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{script} failed:\n{text}\nserver log:\n{}",
        cluster.log()
    );
    text
}

#[test]
fn a_browser_signs_in_manages_a_volume_and_a_viewer_changes_nothing() {
    let cluster = Cluster::single();
    cluster.user_with_password("alice", "admin", "alice-password-1");
    cluster.user_with_password("victor", "viewer", "victor-password-1");
    // A volume for the viewer's volume page, which the admin's journey leaves alone.
    cluster.json(&[
        "volume",
        "create",
        "keep-vol",
        "--size",
        "16Mi",
        "--replicas",
        "1",
    ]);
    let said = run_browser_script(
        &cluster,
        "journey.mjs",
        &[
            ("ADMIN_USER", "alice"),
            ("ADMIN_PASSWORD", "alice-password-1"),
            ("VIEWER_USER", "victor"),
            ("VIEWER_PASSWORD", "victor-password-1"),
        ],
    );
    println!("{said}");
    // What the browser did went through the API: the audit log names the user and the UI's
    // session, for every change.
    let audit = cluster.json(&["audit", "ls", "--limit", "500"]);
    let entries = audit["data"].as_array().unwrap();
    let by_alice = |method: &str, path: &str| {
        entries.iter().any(|e| {
            e["user"] == "alice"
                && e["via"] == "session"
                && e["method"] == method
                && e["path"].as_str().unwrap_or("").starts_with(path)
        })
    };
    for (method, path) in [
        ("POST", "/v1/login"),
        ("POST", "/v1/volumes"),
        ("POST", "/v1/volumes/ui-vol/attach"),
        ("POST", "/v1/volumes/ui-vol/snapshots"),
        ("POST", "/v1/volumes/ui-vol/expand"),
        ("POST", "/v1/volumes/ui-vol/detach"),
        ("DELETE", "/v1/volumes/ui-vol"),
        ("POST", "/v1/logout"),
    ] {
        assert!(
            by_alice(method, path),
            "no audit entry for {method} {path}: {audit}"
        );
    }
    assert!(
        entries
            .iter()
            .any(|e| e["user"] == "victor" && e["status"] == 403),
        "the viewer's refused call is audited: {audit}"
    );
}

#[test]
fn the_volume_list_shows_a_thousand_volumes_within_a_second() {
    let cluster = Cluster::single();
    cluster.user_with_password("alice", "admin", "alice-password-1");
    let token = cluster.admin_token();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    for i in 0..1000 {
        let status = agent
            .post(&format!("{}/v1/volumes", cluster.url))
            .header("Authorization", &format!("Bearer {token}"))
            .send_json(serde_json::json!({
                "name": format!("pvc-{i:04}"),
                "size": "64Mi",
                "numberOfReplicas": 1,
            }))
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 201);
    }
    let said = run_browser_script(
        &cluster,
        "thousand.mjs",
        &[
            ("ADMIN_USER", "alice"),
            ("ADMIN_PASSWORD", "alice-password-1"),
            ("VOLUMES", "1000"),
            ("BUDGET_MS", "1000"),
        ],
    );
    println!("{said}");
}

/// What a browser downloads for the UI: every script and style sheet `index.html` names,
/// gzip-compressed as the manager sends them, under 300 KiB together.
#[test]
fn the_ui_is_small_and_sent_compressed() {
    let cluster = Cluster::single();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let get = |path: &str| {
        let mut response = agent
            .get(&format!("{}{path}", cluster.url))
            .header("Accept-Encoding", "gzip, deflate, br")
            .call()
            .unwrap();
        let headers = response.headers().clone();
        let body = response.body_mut().read_to_vec().unwrap();
        (response.status().as_u16(), headers, body)
    };
    // The page needs no sign-in, and keeps itself from frames and foreign scripts.
    let mut page = agent.get(&format!("{}/", cluster.url)).call().unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    let index = page.body_mut().read_to_string().unwrap();
    let assets: Vec<&str> = index
        .split('"')
        .filter(|s| s.starts_with("/assets/") && (s.ends_with(".js") || s.ends_with(".css")))
        .collect();
    assert!(
        assets.iter().any(|a| a.ends_with(".js")),
        "index.html names no script (is the UI built in?): {index}"
    );
    let mut total = 0;
    for asset in &assets {
        let (status, headers, body) = get(asset);
        assert_eq!(status, 200, "{asset}");
        assert_eq!(headers["content-encoding"], "gzip", "{asset}");
        assert!(headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable"));
        total += body.len();
    }
    println!(
        "the UI's scripts and styles: {} files, {:.1} KiB gzip-compressed",
        assets.len(),
        total as f64 / 1024.0
    );
    assert!(total < 300 * 1024, "{total} bytes compressed");
}

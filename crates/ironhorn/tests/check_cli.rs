//! `ironhorn check` on this machine: the report's shape, its verdict matching its exit
//! code, and the backend matching what the kernel offers here.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

#[test]
fn check_reports_this_machine_and_exits_by_its_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("not-yet-created");
    let out = Command::new(env!("CARGO_BIN_EXE_ironhorn"))
        .args(["check", "-o", "json", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = report["items"].as_array().unwrap();
    assert!(items.len() >= 10, "{report}");
    for item in items {
        assert!(
            ["ok", "warning", "missing"].contains(&item["status"].as_str().unwrap()),
            "{item}"
        );
        if item["status"] != "ok" {
            assert!(
                !item["fix"].as_str().unwrap_or("").is_empty(),
                "no fix: {item}"
            );
        }
    }
    let required_missing = items
        .iter()
        .any(|i| i["required"] == true && i["status"] == "missing");
    assert_eq!(report["ready"], !required_missing);
    assert_eq!(out.status.success(), !required_missing, "{report}");
    assert!(!data.exists(), "check creates nothing");

    // The backend is the best the kernel offers: ublk, then nbd, then fuse with loop.
    let exists = |p: &str| Path::new(p).exists();
    let expected = if exists("/dev/ublk-control") {
        "ublk"
    } else if exists("/sys/module/nbd") {
        "nbd"
    } else if exists("/dev/fuse") && exists("/dev/loop-control") {
        "fuse-loop"
    } else {
        ""
    };
    assert_eq!(report["blockdevBackend"].as_str().unwrap_or(""), expected);

    let table = Command::new(env!("CARGO_BIN_EXE_ironhorn"))
        .args(["check", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("blockdev backend"), "{text}");
    assert!(text.contains("this node"), "{text}");
}

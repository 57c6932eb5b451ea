//! `ironhorn recover` as an operator runs it: the real binary on Longhorn-written replica
//! directories and on broken copies of them.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ironhorn_testkit::*;
use serde_json::Value;

const HEAD_8M: &str = "a3101d7d6ef2764a7686371fbe65df980cad5b0f60dfa8fe34ba542c81bda8c1";
const S1_8M: &str = "9d3f9022bd29a7ba50423dc7a9dd4d540cd64ead9dd1276caab832a80a6a3c1b";

fn ironhorn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ironhorn"))
        .args(args)
        .output()
        .expect("running ironhorn")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn fixture_dir(root: &Path) -> PathBuf {
    root.join("replica-before-purge").join(FIXTURE_VOLUME)
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>, i64)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
                md.mtime(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn inspect_json_shows_the_manifest_chain() {
    let (_tmp, root) = extract_fixture();
    let out = ironhorn(&[
        "recover",
        "inspect",
        fixture_dir(&root).to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["volume"], "pvc-2e8c4a6b-1d3f-4b5a-9c7e-0f1a2b3c4d5e");
    assert_eq!(report["size"], 8388608);
    assert_eq!(report["head"], "volume-head-004.img");
    assert_eq!(report["dirty"], false);
    assert_eq!(report["revision_counter"], 10);
    assert_eq!(
        report["chain"],
        serde_json::json!(["volume-head", "s3", "expand-8388608", "s2", "s1"])
    );
    let snaps = report["snapshots"].as_array().unwrap();
    let find = |name: &str| snaps.iter().find(|s| s["name"] == name).unwrap().clone();
    assert_eq!(find("expand-8388608")["user_created"], false);
    assert_eq!(
        find("expand-8388608")["labels"]["replica-expansion"],
        "8388608"
    );
    assert_eq!(find("s1")["labels"]["fixture/phase"], "one");
    assert_eq!(find("s1")["created"], "2026-11-27T12:29:56Z");
    assert_eq!(find("s2")["allocated_bytes"], 1052672);
    assert_eq!(find("s2")["parent"], "s1");
    assert_eq!(find("s3")["removed"], false);
    let warnings = report["warnings"].as_array().unwrap();
    assert!(warnings
        .iter()
        .any(|w| w.as_str().unwrap().contains("stale checksum")));
}

#[test]
fn inspect_table_names_everything() {
    let (_tmp, root) = extract_fixture();
    let dir = root.join("replica-after-purge").join(FIXTURE_VOLUME);
    let out = ironhorn(&["recover", "inspect", dir.to_str().unwrap()]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    for needle in [
        "pvc-2e8c4a6b-1d3f-4b5a-9c7e-0f1a2b3c4d5e",
        "8 MiB",
        "volume-head-004.img",
        "s3",
        "yes",
    ] {
        assert!(stdout.contains(needle), "{needle} missing from:\n{stdout}");
    }
}

#[test]
fn export_keeps_holes_and_hashes_as_the_manifest_says() {
    let (tmp, root) = extract_fixture();
    let dir = fixture_dir(&root);
    let before = listing(&dir);
    let out_path = tmp.path().join("head.raw");
    let out = ironhorn(&[
        "recover",
        "export",
        dir.to_str().unwrap(),
        "--output",
        out_path.to_str().unwrap(),
        "--sha256",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), format!("sha256:{HEAD_8M}"));
    let bytes = std::fs::read(&out_path).unwrap();
    assert_eq!(bytes.len(), 8 << 20);
    assert_eq!(sha256_hex(&bytes), HEAD_8M);
    // Holes stay holes: only the sectors some layer holds are allocated.
    let allocated: u64 = data_ranges(&out_path).iter().map(|(s, e)| e - s).sum();
    assert_eq!(allocated, 1_081_344, "{:?}", data_ranges(&out_path));
    assert_eq!(
        listing(&dir),
        before,
        "export wrote into the replica directory"
    );

    // Refuses to overwrite without --force.
    let again = ironhorn(&[
        "recover",
        "export",
        dir.to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("--force"));
}

#[test]
fn export_snapshot_to_stdout() {
    let (_tmp, root) = extract_fixture();
    let dir = fixture_dir(&root);
    let out = ironhorn(&[
        "recover",
        "export",
        dir.to_str().unwrap(),
        "-o",
        "-",
        "--snapshot",
        "s1",
        "--sha256",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout.len(), 8 << 20);
    assert_eq!(sha256_hex(&out.stdout), S1_8M);
    assert!(text(&out.stderr).contains(&format!("sha256:{S1_8M}")));
}

fn expect_failure(args: &[&str], needles: &[&str]) {
    let out = ironhorn(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    let stderr = text(&out.stderr);
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} missing from: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let (tmp, root) = extract_fixture();
    let good = fixture_dir(&root);
    let good_s = good.to_str().unwrap();
    let out = tmp.path().join("out.raw");
    let out_s = out.to_str().unwrap();

    expect_failure(
        &["recover", "inspect", tmp.path().to_str().unwrap()],
        &["not a replica directory"],
    );
    expect_failure(
        &["recover", "inspect", "/nonexistent/dir"],
        &["/nonexistent/dir"],
    );
    expect_failure(
        &[
            "recover",
            "export",
            good_s,
            "-o",
            out_s,
            "--snapshot",
            "nope",
        ],
        &["snapshot \"nope\" does not exist", "s1"],
    );
    expect_failure(
        &[
            "recover",
            "export",
            good_s,
            "-o",
            good.join("x.raw").to_str().unwrap(),
        ],
        &["inside the replica directory"],
    );

    let broken = |name: &str, change: &dyn Fn(&Path)| {
        let dir = tmp.path().join(name).join(FIXTURE_VOLUME);
        std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
        copy_replica_dir(&good, &dir);
        change(&dir);
        dir
    };
    let truncated = broken("truncated", &|d| {
        let text = std::fs::read(d.join("volume.meta")).unwrap();
        std::fs::write(d.join("volume.meta"), &text[..40]).unwrap();
    });
    expect_failure(
        &["recover", "inspect", truncated.to_str().unwrap()],
        &["volume.meta", "EOF"],
    );
    let garbage = broken("garbage", &|d| {
        std::fs::write(d.join("volume-snap-s2.img.meta"), b"\x00\xffnot json").unwrap();
    });
    expect_failure(
        &["recover", "inspect", garbage.to_str().unwrap()],
        &["volume-snap-s2.img.meta"],
    );
    let no_parent = broken("noparent", &|d| {
        std::fs::remove_file(d.join("volume-snap-s2.img")).unwrap();
        std::fs::remove_file(d.join("volume-snap-s2.img.meta")).unwrap();
    });
    expect_failure(
        &[
            "recover",
            "export",
            no_parent.to_str().unwrap(),
            "-o",
            out_s,
        ],
        &["missing parent", "volume-snap-s2.img"],
    );
    let cycle = broken("cycle", &|d| {
        let meta = std::fs::read_to_string(d.join("volume-snap-s1.img.meta")).unwrap();
        let meta = meta.replace(r#""Parent":"""#, r#""Parent":"volume-snap-s3.img""#);
        std::fs::write(d.join("volume-snap-s1.img.meta"), meta).unwrap();
    });
    expect_failure(&["recover", "inspect", cycle.to_str().unwrap()], &["cycle"]);
    let missing_image = broken("noimage", &|d| {
        std::fs::remove_file(d.join("volume-snap-s1.img")).unwrap();
    });
    expect_failure(
        &["recover", "inspect", missing_image.to_str().unwrap()],
        &["volume-snap-s1.img", "image file is missing"],
    );

    // A head shorter than the volume is legitimate (older layers may be): a warning only.
    let short = broken("short", &|d| {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(d.join("volume-head-004.img"))
            .unwrap();
        f.set_len(4 << 20).unwrap();
    });
    let ok = ironhorn(&[
        "recover",
        "export",
        short.to_str().unwrap(),
        "-o",
        out_s,
        "--force",
    ]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stderr).contains("shorter than the volume size"));
    // Nothing was written into any of the broken directories either.
    for dir in [&truncated, &garbage, &no_parent, &cycle, &missing_image] {
        assert!(!std::fs::read_dir(dir).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp")));
    }
}

#[test]
fn leftovers_of_an_interrupted_snapshot_are_reported_not_touched() {
    let (tmp, root) = extract_fixture();
    let dir = tmp.path().join("crashed").join(FIXTURE_VOLUME);
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    copy_replica_dir(&fixture_dir(&root), &dir);
    // What a crash between "new head" and "commit" leaves: a stray head, a hard link.
    std::fs::write(dir.join("volume-head-005.img"), b"").unwrap();
    std::fs::write(
        dir.join("volume-head-005.img.meta"),
        br#"{"Name":"volume-head-005.img","Parent":"volume-snap-new.img"}"#,
    )
    .unwrap();
    std::fs::hard_link(
        dir.join("volume-head-004.img"),
        dir.join("volume-snap-new.img"),
    )
    .unwrap();
    std::fs::copy(
        dir.join("volume-head-004.img.meta"),
        dir.join("volume-snap-new.img.meta"),
    )
    .unwrap();
    std::fs::write(dir.join("volume.meta.tmp"), b"{").unwrap();
    let before = listing(&dir);
    let out = ironhorn(&["recover", "inspect", dir.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let all: Vec<&str> = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    let all = all.join("\n");
    assert!(all.contains("stray head file volume-head-005.img"), "{all}");
    assert!(all.contains("snapshot new was not committed"), "{all}");
    assert!(
        all.contains("leftover temporary file volume.meta.tmp"),
        "{all}"
    );
    assert!(report["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["name"] != "new"));
    let exported = ironhorn(&[
        "recover",
        "export",
        dir.to_str().unwrap(),
        "-o",
        "-",
        "--sha256",
    ]);
    assert_eq!(sha256_hex(&exported.stdout), HEAD_8M);
    assert_eq!(listing(&dir), before);
}

//! `ironhorn recover backup` and `recover backups` as an operator runs them after losing the
//! cluster: the real binary on Longhorn-written backup targets (a directory and the same
//! tree served by an S3 server), images checked against the fixture's recorded hashes.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use ironhorn_testkit::servers::{S3Kind, S3Server};
use ironhorn_testkit::*;
use serde_json::Value;

const VOLUME: &str = "pvc-2e8c4a6b-1d3f-4b5a-9c7e-0f1a2b3c4d5e";
const S2_8M: &str = "7b327a30a61cff088db358d69ce8332e76de2cc48ac8e5308b3f5117c41e8f2e";
const S3_8M: &str = "6e497ffb702955c6ca75e0a8de1a88f45fcd202551af967c6d36fde6fa0e9990";

fn ironhorn(args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ironhorn"))
        .args(args)
        .envs(env.iter().cloned())
        .output()
        .expect("running ironhorn")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn target(root: &Path, kind: &str) -> String {
    format!(
        "file://{}",
        root.join(format!("backup-target-{kind}")).display()
    )
}

#[test]
fn restores_every_longhorn_compression_to_a_file_and_to_stdout() {
    let (_tmp, root) = extract_fixture();
    let out_dir = tempfile::tempdir().unwrap();
    for (kind, backup, expected) in [
        ("lz4", "backup-5a2f0c9e81d7b364", S2_8M),
        ("lz4", "backup-e1b97d04c6a8f253", S3_8M),
        ("none", "backup-93c0d6e2a7f14b58", S3_8M),
        ("gzip", "backup-0f7e6d5c4b3a2918", S3_8M),
    ] {
        let out = out_dir.path().join(format!("{backup}.img"));
        let t = target(&root, kind);
        let o = ironhorn(
            &[
                "recover",
                "backup",
                "--target",
                &t,
                "--volume",
                VOLUME,
                "--backup",
                backup,
                "--output",
                out.to_str().unwrap(),
                "--sha256",
            ],
            &[],
        );
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert_eq!(text(&o.stdout).trim(), format!("sha256:{expected}"));
        assert_eq!(
            sha256_hex(&std::fs::read(&out).unwrap()),
            expected,
            "{kind} {backup}"
        );
        let o = ironhorn(
            &[
                "recover", "backup", "--target", &t, "--volume", VOLUME, "--backup", backup, "-o",
                "-",
            ],
            &[],
        );
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert_eq!(sha256_hex(&o.stdout), expected, "stdout {kind} {backup}");
    }
}

#[test]
fn lists_volumes_and_backups_and_refuses_what_is_not_there() {
    let (_tmp, root) = extract_fixture();
    let t = target(&root, "lz4");
    let o = ironhorn(&["recover", "backups", "--target", &t, "--json"], &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["name"], VOLUME);
    assert_eq!(v[0]["last_backup"], "backup-e1b97d04c6a8f253");
    let o = ironhorn(
        &[
            "recover", "backups", "--target", &t, "--volume", VOLUME, "--json",
        ],
        &[],
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    assert_eq!(v[1]["snapshot"], "s3");
    assert!(v[1]["url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("?backup=backup-e1b97d04c6a8f253&volume={VOLUME}")));

    let out = root.join("nope.img");
    let o = ironhorn(
        &[
            "recover",
            "backup",
            "--target",
            &t,
            "--volume",
            VOLUME,
            "--backup",
            "backup-nope",
            "-o",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("backup-nope") && text(&o.stderr).contains("not found"),
        "{}",
        text(&o.stderr)
    );
    assert!(!out.exists(), "a failed restore leaves no image behind");
    let o = ironhorn(&["recover", "backups", "--target", "ftp://x/y"], &[]);
    assert!(
        text(&o.stderr).contains("nfs://server:/export/path"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn restores_from_s3_with_credentials_from_the_environment() {
    let (_tmp, root) = extract_fixture();
    let server = S3Server::start(S3Kind::Moto);
    let env: Vec<(String, String)> = server.credentials().into_iter().collect();
    // Upload Longhorn's gzip target with boto3 (a client we did not write).
    let base = root.join("backup-target-gzip");
    let script = format!(
        "import boto3,os\n\
         s3=boto3.client('s3',endpoint_url='{ep}',aws_access_key_id='ironhorn',aws_secret_access_key='ironhorn-secret',region_name='us-east-1')\n\
         base='{base}'\n\
         for d,_,fs in os.walk(base):\n\
         \x20   for f in fs:\n\
         \x20       p=os.path.join(d,f); s3.upload_file(p,'backups','lh/'+os.path.relpath(p,base))\n",
        ep = server.endpoint,
        base = base.display()
    );
    let up = Command::new(format!("{}/bin/python3", servers::CI_VENV))
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", text(&up.stderr));
    let o = ironhorn(
        &[
            "recover",
            "backup",
            "--target",
            &server.url("lh"),
            "--volume",
            VOLUME,
            "--backup",
            "backup-0f7e6d5c4b3a2918",
            "-o",
            "-",
        ],
        &env,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(sha256_hex(&o.stdout), S3_8M);
    let o = ironhorn(&["recover", "backups", "--target", &server.url("lh")], &[]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("AWS_ACCESS_KEY_ID"),
        "{}",
        text(&o.stderr)
    );
}

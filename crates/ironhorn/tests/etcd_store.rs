//! `ironhorn server --store etcd://...` against Debian's etcd: the state lives in etcd (no
//! redb file is made; etcdctl, a client we did not write, reads the volume under
//! `/ironhorn/`), survives a kill -9 of the server, and a server that cannot reach etcd
//! stops at once saying so.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::Cluster;
use ironhorn_testkit::servers::EtcdServer;

#[test]
fn a_server_keeps_its_state_in_etcd_across_a_kill() {
    let etcd = EtcdServer::start();
    let mut cluster = Cluster::single_with_store(&etcd.url());
    cluster.json(&[
        "volume",
        "create",
        "vol-etcd",
        "--size",
        "16Mi",
        "--replicas",
        "1",
    ]);
    assert!(!cluster.root.path().join("server/state.redb").exists());

    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &etcd.endpoint,
            "get",
            "/ironhorn/volumes/vol-etcd",
            "--print-value-only",
        ])
        .output()
        .unwrap();
    let stored: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "etcdctl: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(stored["spec"]["size"], 16 << 20);

    // Kill -9 and start again on the same etcd: the volume, the settings and the first
    // admin (whose token still works; none is made again) are all there.
    cluster.server.as_mut().unwrap().kill9();
    cluster.start_server();
    let volume = cluster.volume("vol-etcd");
    assert_eq!(volume["spec"]["size"], 16 << 20);
    let setting = cluster.json(&["setting", "get", "storage-minimal-available-percentage"]);
    assert_eq!(setting["value"], "0", "{setting}");
    // The restarted server found its first admin in etcd: it made no new one.
    assert!(
        !cluster.log().contains("the first admin's API token is in"),
        "{}",
        cluster.log()
    );
}

#[test]
fn a_server_that_cannot_reach_etcd_stops_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ironhorn"))
        .args([
            "server",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--store",
            "etcd://127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("etcd://127.0.0.1:1") && said.contains("is etcd running"),
        "{said}"
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_ironhorn"))
        .args(["server", "--store", "postgres://x"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("etcd://HOST:PORT"));
}

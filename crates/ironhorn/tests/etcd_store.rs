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

/// Runs openssl in `dir`; panics with its output when it fails.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a certificate for etcd (127.0.0.1) and one for its client, all signed by the CA.
fn make_pki(dir: &std::path::Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=test-ca"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(dir, &ca);
    for (name, ext) in [
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ("client", "extendedKeyUsage=clientAuth"),
    ] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let mut req = vec!["req", "-new", "-subj"];
        let subject = format!("/CN=ironhorn-{name}");
        req.push(&subject);
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr]);
        openssl(dir, &req);
        let extfile = format!("{name}.ext");
        std::fs::write(dir.join(&extfile), format!("{ext}\n")).unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &extfile,
                "-out",
                &pem,
            ],
        );
    }
}

/// etcd serving HTTPS and asking for client certificates: the server reaches it with
/// `--etcd-ca`, `--etcd-cert` and `--etcd-key` and keeps its state there; without the client
/// certificate it is refused and says so.
#[test]
fn a_server_reaches_etcd_over_tls_with_a_client_certificate() {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let file = |name: &str| pki.path().join(name).display().to_string();
    let (client, peer) = (ironhorn_testkit::free_port(), ironhorn_testkit::free_port());
    let data = tempfile::tempdir().unwrap();
    let client_url = format!("https://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let etcd = ironhorn_testkit::Proc::spawn(
        "etcd",
        &[
            "--name",
            "tls",
            "--data-dir",
            &data.path().join("etcd").display().to_string(),
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster",
            &format!("tls={peer_url}"),
            "--cert-file",
            &file("server.pem"),
            "--key-file",
            &file("server.key"),
            "--trusted-ca-file",
            &file("ca.pem"),
            "--client-cert-auth",
            "--listen-metrics-urls",
            &format!("http://127.0.0.1:{}", ironhorn_testkit::free_port()),
        ],
    );
    etcd.wait_for("ready to serve client requests");
    let store = format!("etcd://127.0.0.1:{client}");
    let cluster = Cluster::single_with_server_args(
        &store,
        &[
            "--etcd-ca",
            &file("ca.pem"),
            "--etcd-cert",
            &file("client.pem"),
            "--etcd-key",
            &file("client.key"),
        ],
    );
    cluster.json(&[
        "volume",
        "create",
        "vol-tls",
        "--size",
        "16Mi",
        "--replicas",
        "1",
    ]);
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &client_url,
            "--cacert",
            &file("ca.pem"),
            "--cert",
            &file("client.pem"),
            "--key",
            &file("client.key"),
            "get",
            "/ironhorn/volumes/vol-tls",
            "--print-value-only",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("vol-tls"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Without a client certificate etcd turns the server away, and it says where it failed.
    let dir = tempfile::tempdir().unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_ironhorn"))
        .args([
            "server",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--store",
            &store,
            "--etcd-ca",
            &file("ca.pem"),
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains(&store), "{said}");
}

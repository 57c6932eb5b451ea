//! The control plane end to end with real processes: `ironhorn server` and two `ironhorn
//! node` agents (three nodes), driven through the CLI, data written and verified with
//! qemu-io over NBD. A node agent is killed and comes back (its replica catches up), the
//! server is restarted after a kill -9, with the volume detached and then attached.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

const MIB: u64 = 1 << 20;
const VOLUME_SIZE: u64 = 64 * MIB;

mod common;

use common::Cluster;

fn qemu_io(endpoint: &str, commands: &[String]) {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw"]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    let out = cmd.arg(endpoint).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !text.contains("fail") && !text.contains("error"),
        "qemu-io {commands:?} on {endpoint}: {text}"
    );
}

/// Reads every byte of the volume and checks it: A in the first 4 MiB, B in the next 4 MiB,
/// zeros after.
fn verify_all(endpoint: &str) {
    qemu_io(
        endpoint,
        &[
            format!("read -P 0xa1 0 {}", 4 * MIB),
            format!("read -P 0xb2 {} {}", 4 * MIB, 4 * MIB),
            format!("read -P 0 {} {}", 8 * MIB, VOLUME_SIZE - 8 * MIB),
        ],
    );
}

fn replica_dirs(root: &Path, node: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join(node).join("replicas"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_volume_survives_a_node_agent_kill_and_server_restarts() {
    let (mut cluster, agents) = Cluster::three_nodes();
    let [mut node2, _node3]: [_; 2] = agents.try_into().ok().unwrap();

    // Create: three replicas, one per node.
    let created = cluster.json(&[
        "volume",
        "create",
        "vol-a",
        "--size",
        "64Mi",
        "--replicas",
        "3",
        "--wait",
    ]);
    assert_eq!(created["spec"]["size"], VOLUME_SIZE);
    let volume = cluster.volume("vol-a");
    let mut nodes: Vec<String> = volume["status"]["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node"].as_str().unwrap().to_string())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["node-1", "node-2", "node-3"]);

    // Attach over NBD, write, snapshot.
    let attached = cluster.json(&["volume", "attach", "vol-a", "--wait"]);
    assert_eq!(attached["status"]["state"], "attached");
    assert_eq!(attached["status"]["robustness"], "healthy");
    let endpoint = attached["status"]["endpoint"].as_str().unwrap().to_string();
    assert!(endpoint.starts_with("nbd://127.0.0.1:"), "{endpoint}");
    qemu_io(
        &endpoint,
        &[format!("write -P 0xa1 0 {}", 4 * MIB), "flush".into()],
    );
    cluster.json(&["volume", "snapshot", "create", "vol-a", "snap-1"]);
    let snapshots = cluster.json(&["volume", "snapshot", "ls", "vol-a"]);
    assert!(
        snapshots["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "snap-1" && s["userCreated"] == true),
        "{snapshots}"
    );

    // Kill -9 a node agent: its replica fails, the volume is degraded, I/O goes on.
    node2.kill9();
    cluster.until("the volume is degraded", |c| {
        c.volume("vol-a")["status"]["robustness"] == "degraded"
    });
    qemu_io(
        &endpoint,
        &[
            format!("write -P 0xb2 {} {}", 4 * MIB, 4 * MIB),
            "flush".into(),
        ],
    );

    // The agent comes back: its replica is caught up with what it missed, not rebuilt.
    let _node2 = cluster.start_node("node-2");
    cluster.until("the volume is healthy again", |c| {
        let v = c.volume("vol-a");
        v["status"]["robustness"] == "healthy"
            && v["status"]["replicas"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["healthy"] == true && r["mode"] == "RW")
    });
    let log = cluster.log();
    assert!(
        log.lines()
            .any(|l| l.contains("replica rebuilt") && l.contains("incremental=true")),
        "the returning replica was not caught up incrementally:\n{log}"
    );
    verify_all(&endpoint);

    // Detach, kill -9 the server, start it again, attach: every byte is there.
    let detached = cluster.json(&["volume", "detach", "vol-a", "--wait"]);
    assert_eq!(detached["status"]["state"], "detached");
    cluster.server.as_mut().unwrap().kill9();
    cluster.start_server();
    let attached = cluster.json(&["volume", "attach", "vol-a", "--wait"]);
    let endpoint = attached["status"]["endpoint"].as_str().unwrap().to_string();
    verify_all(&endpoint);

    // Kill -9 the server while attached: it comes back attached, with the same data.
    cluster.server.as_mut().unwrap().kill9();
    cluster.start_server();
    cluster.until("the volume is attached again after the restart", |c| {
        let v = c.volume("vol-a");
        v["status"]["state"] == "attached" && v["status"]["robustness"] == "healthy"
    });
    let endpoint = cluster.volume("vol-a")["status"]["endpoint"]
        .as_str()
        .unwrap()
        .to_string();
    verify_all(&endpoint);

    // Errors have exit codes.
    let (code, _, err) = cluster.cli(&["volume", "get", "no-such-volume"]);
    assert_eq!(code, 3, "{err}");
    let (code, _, err) = cluster.cli(&["volume", "create", "vol-a", "--size", "1Gi"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("exists"), "{err}");
    let (code, _, err) = cluster.cli(&["volume", "attach", "vol-a", "--node", "node-2"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("detach it first"), "{err}");

    // Delete: every replica directory goes.
    cluster.json(&["volume", "delete", "vol-a", "--wait"]);
    for node in ["server", "node-2", "node-3"] {
        assert_eq!(
            replica_dirs(cluster.root.path(), node),
            Vec::<String>::new(),
            "{node}"
        );
    }
}

/// A volume whose only replica failed is faulted and, with auto-salvage off, stays so when
/// the replica's node returns; `ironhorn volume salvage` lets the replica serve again, and
/// every acknowledged byte is there. Salvage is refused for a volume that is not faulted and
/// for a replica that is not one of its failed ones.
#[test]
fn a_faulted_volume_is_salvaged_from_its_failed_replica() {
    let (cluster, agents) = Cluster::three_nodes();
    let [mut node2, _node3]: [_; 2] = agents.try_into().ok().unwrap();
    cluster.json(&["setting", "set", "auto-salvage", "false"]);
    // The replica goes to node-2, whose agent can be killed alone.
    cluster.json(&["node", "update", "node-1", "--scheduling", "off"]);
    cluster.json(&["node", "update", "node-3", "--scheduling", "off"]);
    cluster.json(&[
        "volume",
        "create",
        "vol-s",
        "--size",
        "64Mi",
        "--replicas",
        "1",
        "--wait",
    ]);
    let attached = cluster.json(&["volume", "attach", "vol-s", "--wait"]);
    let endpoint = attached["status"]["endpoint"].as_str().unwrap().to_string();
    qemu_io(
        &endpoint,
        &[format!("write -P 0xa1 0 {}", 4 * MIB), "flush".into()],
    );
    let (code, _, err) = cluster.cli(&["volume", "salvage", "vol-s"]);
    assert_ne!(code, 0);
    assert!(err.contains("not faulted"), "{err}");

    node2.kill9();
    cluster.until("the volume is faulted", |c| {
        c.volume("vol-s")["status"]["robustness"] == "faulted"
    });
    let _node2 = cluster.start_node("node-2");
    cluster.until("node-2 is back and the volume still faulted", |c| {
        let (_, out, _) = c.cli(&["node", "get", "node-2", "-o", "json"]);
        out.contains("\"ready\": true") || out.contains("\"ready\":true")
    });
    assert_eq!(cluster.volume("vol-s")["status"]["robustness"], "faulted");

    let (code, _, err) = cluster.cli(&["volume", "salvage", "vol-s", "--replica", "nope"]);
    assert_ne!(code, 0);
    assert!(err.contains("not a failed replica"), "{err}");

    cluster.json(&["volume", "salvage", "vol-s"]);
    cluster.until("the salvaged volume serves again", |c| {
        let v = c.volume("vol-s");
        v["status"]["state"] == "attached" && v["status"]["robustness"] == "healthy"
    });
    let endpoint = cluster.volume("vol-s")["status"]["endpoint"]
        .as_str()
        .unwrap()
        .to_string();
    qemu_io(
        &endpoint,
        &[
            format!("read -P 0xa1 0 {}", 4 * MIB),
            format!("read -P 0 {} {}", 4 * MIB, 4 * MIB),
        ],
    );
    assert!(cluster.log().contains("replica salvaged"));
}

/// Evicting a node moves an attached volume's replica to another node while I/O goes on
/// (rebuilt there first, then removed), after which the node's disk can be removed.
#[test]
fn evicting_a_node_moves_its_replicas_and_frees_its_disk() {
    let (cluster, _agents) = Cluster::three_nodes();
    cluster.json(&["node", "update", "node-1", "--scheduling", "off"]);
    cluster.json(&["node", "update", "node-3", "--scheduling", "off"]);
    cluster.json(&[
        "volume",
        "create",
        "vol-e",
        "--size",
        "64Mi",
        "--replicas",
        "1",
        "--wait",
    ]);
    let attached = cluster.json(&["volume", "attach", "vol-e", "--wait"]);
    let endpoint = attached["status"]["endpoint"].as_str().unwrap().to_string();
    assert_eq!(attached["status"]["replicas"][0]["node"], "node-2");
    qemu_io(
        &endpoint,
        &[format!("write -P 0xa1 0 {}", 4 * MIB), "flush".into()],
    );
    let (code, _, err) = cluster.cli(&["node", "disk", "rm", "node-2", "default"]);
    assert_ne!(code, 0);
    assert!(err.contains("eviction"), "{err}");

    cluster.json(&["node", "update", "node-3", "--scheduling", "on"]);
    let node = cluster.json(&["node", "update", "node-2", "--eviction", "on"]);
    assert_eq!(node["spec"]["evictionRequested"], true);
    cluster.until("the replica has moved to node-3", |c| {
        let v = c.volume("vol-e");
        let replicas = v["status"]["replicas"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        replicas.len() == 1
            && replicas[0]["node"] == "node-3"
            && replicas[0]["healthy"] == true
            && replicas[0]["mode"] == "RW"
    });
    // The same NBD connection point serves every byte, now from node-3.
    qemu_io(
        &endpoint,
        &[
            format!("read -P 0xa1 0 {}", 4 * MIB),
            format!("read -P 0 {} {}", 4 * MIB, 4 * MIB),
        ],
    );
    cluster.until("node-2's disk holds no replica", |c| {
        c.cli(&["node", "disk", "rm", "node-2", "default"]).0 == 0
    });
}

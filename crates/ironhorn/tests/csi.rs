//! The CSI plugin driven over its Unix socket the way a CO drives it (the kubelet and the
//! provisioner, attacher, resizer and snapshotter sidecars): every RPC, every idempotent call
//! twice, the error codes the specification asks for, against a real three-node cluster of
//! `ironhorn` processes with real block devices (FUSE + loop), xfs and ext4. There is no
//! Kubernetes API server here: this test stands in for the CO, nothing is mocked.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{spawn, Cluster};
use ironhorn_csi::csi::controller_client::ControllerClient;
use ironhorn_csi::csi::identity_client::IdentityClient;
use ironhorn_csi::csi::node_client::NodeClient;
use ironhorn_csi::csi::volume_capability::access_mode::Mode;
use ironhorn_csi::csi::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use ironhorn_csi::csi::*;
use ironhorn_csi::tonic::transport::Channel;
use ironhorn_csi::tonic::{self, Code};
use ironhorn_testkit::Proc;

const MIB: i64 = 1 << 20;

/// One `ironhorn csi` process and clients for its three services.
struct Plugin {
    _proc: Proc,
    identity: IdentityClient<Channel>,
    controller: ControllerClient<Channel>,
    node: NodeClient<Channel>,
}

async fn plugin(dir: &Path, manager: &str, node: Option<&str>) -> Plugin {
    let socket = dir.join(format!("csi-{}.sock", node.unwrap_or("controller")));
    let endpoint = format!("unix://{}", socket.display());
    // The driver holds the cluster secret, as the install manifest gives it.
    let secret = dir.join("server/cluster.secret").display().to_string();
    let mut args = vec![
        "csi",
        "--endpoint",
        &endpoint,
        "--manager",
        manager,
        "--wait",
        "60s",
    ];
    if std::path::Path::new(&secret).exists() {
        args.extend(["--token-file", &secret]);
    }
    if let Some(n) = node {
        args.extend(["--node-id", n]);
    }
    let proc = spawn(&args);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the plugin did not start: {}",
            proc.text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The socket file exists from bind() on; connections succeed from listen() on.
    let channel = loop {
        match ironhorn_csi::connect(socket.clone()).await {
            Ok(channel) => break channel,
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "cannot connect: {e}: {}",
                    proc.text()
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    Plugin {
        _proc: proc,
        identity: IdentityClient::new(channel.clone()),
        controller: ControllerClient::new(channel.clone()),
        node: NodeClient::new(channel),
    }
}

fn mount_cap(fs: &str) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            mount_flags: vec![],
            volume_mount_group: String::new(),
        })),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    }
}

fn block_cap() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    }
}

fn seed_params() -> HashMap<String, String> {
    [
        ("numberOfReplicas", "3"),
        ("staleReplicaTimeout", "2880"),
        ("fromBackup", ""),
        ("dataLocality", "disabled"),
        ("csi.storage.k8s.io/pvc/name", "data"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn create(name: &str, size: i64, cap: VolumeCapability) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: size,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![cap],
        parameters: seed_params(),
        ..Default::default()
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> Code {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => s.code(),
    }
}

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256(path: &Path) -> String {
    sh("sha256sum", &[path.to_str().unwrap()])
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn is_mounted(path: &Path) -> bool {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines()
        .any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
}

/// Cleans mounts under the test's directory when a test fails half-way.
struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let prefix = self.0.to_string_lossy().to_string();
        let mut points: Vec<String> = text
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|p| p.starts_with(&prefix))
            .collect();
        points.reverse();
        for p in points {
            let _ = Command::new("umount").args(["-l", &p]).status();
        }
    }
}

struct Paths {
    staging: PathBuf,
    target: PathBuf,
}

fn paths(root: &Path, tag: &str) -> Paths {
    let staging = root.join(format!("kubelet/{tag}/globalmount"));
    std::fs::create_dir_all(&staging).unwrap();
    Paths {
        staging,
        target: root.join(format!("kubelet/pods/{tag}/mount")),
    }
}

async fn publish_and_mount(
    controller: &mut ControllerClient<Channel>,
    node: &mut NodeClient<Channel>,
    volume: &str,
    node_id: &str,
    cap: &VolumeCapability,
    p: &Paths,
    context: &HashMap<String, String>,
) {
    for _ in 0..2 {
        let published = controller
            .controller_publish_volume(ControllerPublishVolumeRequest {
                volume_id: volume.into(),
                node_id: node_id.into(),
                volume_capability: Some(cap.clone()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(published.publish_context["devicePath"].ends_with(volume));
    }
    for _ in 0..2 {
        node.node_stage_volume(NodeStageVolumeRequest {
            volume_id: volume.into(),
            staging_target_path: p.staging.to_string_lossy().into(),
            volume_capability: Some(cap.clone()),
            volume_context: context.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    for _ in 0..2 {
        node.node_publish_volume(NodePublishVolumeRequest {
            volume_id: volume.into(),
            staging_target_path: p.staging.to_string_lossy().into(),
            target_path: p.target.to_string_lossy().into(),
            volume_capability: Some(cap.clone()),
            volume_context: context.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
}

async fn unmount_and_unpublish(
    controller: &mut ControllerClient<Channel>,
    node: &mut NodeClient<Channel>,
    volume: &str,
    node_id: &str,
    p: &Paths,
) {
    for _ in 0..2 {
        node.node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: volume.into(),
            target_path: p.target.to_string_lossy().into(),
        })
        .await
        .unwrap();
    }
    assert!(!p.target.exists(), "the target path is removed");
    for _ in 0..2 {
        node.node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: volume.into(),
            staging_target_path: p.staging.to_string_lossy().into(),
        })
        .await
        .unwrap();
    }
    assert!(!is_mounted(&p.staging));
    for _ in 0..2 {
        controller
            .controller_unpublish_volume(ControllerUnpublishVolumeRequest {
                volume_id: volume.into(),
                node_id: node_id.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_filesystem_volume_through_every_rpc() {
    ironhorn_testkit::require_fuse_loop();
    let (cluster, _agents) = Cluster::three_nodes_with("fuse-loop");
    let root = cluster.root.path().to_path_buf();
    let _cleanup = Unmount(root.clone());
    runtime().block_on(async {
        let mut one = plugin(&root, &cluster.url, Some("node-1")).await;
        let mut two = plugin(&root, &cluster.url, Some("node-2")).await;

        // Identity.
        let info = one
            .identity
            .get_plugin_info(GetPluginInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.name, "driver.ironhorn.io");
        let caps = one
            .identity
            .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(caps.capabilities.len(), 3);
        assert_eq!(
            one.identity
                .probe(ProbeRequest {})
                .await
                .unwrap()
                .into_inner()
                .ready,
            Some(true)
        );
        let node_info = two
            .node
            .node_get_info(NodeGetInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(node_info.node_id, "node-2");
        assert_eq!(
            node_info.accessible_topology.unwrap().segments["topology.ironhorn.io/node"],
            "node-2"
        );
        let ccaps = one
            .controller
            .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(ccaps.capabilities.len() >= 9);
        let ncaps = one
            .node
            .node_get_capabilities(NodeGetCapabilitiesRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ncaps.capabilities.len(), 4);

        // Create: idempotent by name; another size under the same name is AlreadyExists.
        let name = "pvc-3f2a9c1e-8d7b-4e6f-a5c4-1b2d3e4f5a6b";
        let cap = mount_cap("xfs");
        let mut created = Vec::new();
        for _ in 0..2 {
            created.push(
                one.controller
                    .create_volume(create(name, 300 * MIB, cap.clone()))
                    .await
                    .unwrap()
                    .into_inner()
                    .volume
                    .unwrap(),
            );
        }
        assert_eq!(created[0].volume_id, name);
        assert_eq!(created[0], created[1]);
        assert_eq!(created[0].capacity_bytes, 300 * MIB);
        assert_eq!(
            code(
                one.controller
                    .create_volume(create(name, 600 * MIB, cap.clone()))
                    .await
            ),
            Code::AlreadyExists
        );
        let v = cluster.volume(name);
        assert_eq!(v["spec"]["numberOfReplicas"], 3);
        assert_eq!(v["spec"]["staleReplicaTimeout"], 2880);
        assert_eq!(v["spec"]["frontend"], "blockdev");

        let validated = one
            .controller
            .validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
                volume_id: name.into(),
                volume_capabilities: vec![cap.clone()],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(validated.confirmed.is_some());
        let mut shared = cap.clone();
        shared.access_mode = Some(AccessMode {
            mode: Mode::MultiNodeMultiWriter as i32,
        });
        let refused = one
            .controller
            .validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
                volume_id: name.into(),
                volume_capabilities: vec![shared],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(refused.confirmed.is_none() && !refused.message.is_empty());

        // Publish on node-1, stage (mkfs.xfs), publish, write files.
        let p1 = paths(&root, "a");
        let context = created[0].volume_context.clone();
        publish_and_mount(
            &mut one.controller,
            &mut one.node,
            name,
            "node-1",
            &cap,
            &p1,
            &context,
        )
        .await;
        assert_eq!(
            sh(
                "findmnt",
                &["-n", "-o", "FSTYPE", p1.target.to_str().unwrap()]
            )
            .trim(),
            "xfs"
        );
        sh(
            "dd",
            &[
                "if=/dev/urandom",
                &format!("of={}/data", p1.target.display()),
                "bs=1M",
                "count=20",
                "status=none",
            ],
        );
        sh("sync", &[]);
        let digest = sha256(&p1.target.join("data"));

        // Published elsewhere already: FailedPrecondition.
        let elsewhere = one
            .controller
            .controller_publish_volume(ControllerPublishVolumeRequest {
                volume_id: name.into(),
                node_id: "node-2".into(),
                volume_capability: Some(cap.clone()),
                ..Default::default()
            })
            .await;
        assert_eq!(code(elsewhere), Code::FailedPrecondition);

        // Stats: bytes and inodes, healthy.
        let stats = one
            .node
            .node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: name.into(),
                volume_path: p1.target.to_string_lossy().into(),
                staging_target_path: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(stats.usage.len(), 2);
        assert!(stats.usage[0].used >= 20 * MIB, "{stats:?}");
        assert!(stats.usage[1].total > 0);
        let total_before = stats.usage[0].total;

        // Online expansion: controller, then node (xfs_growfs).
        let expanded = one
            .controller
            .controller_expand_volume(ControllerExpandVolumeRequest {
                volume_id: name.into(),
                capacity_range: Some(CapacityRange {
                    required_bytes: 600 * MIB,
                    limit_bytes: 0,
                }),
                volume_capability: Some(cap.clone()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(expanded.capacity_bytes, 600 * MIB);
        assert!(expanded.node_expansion_required);
        one.node
            .node_expand_volume(NodeExpandVolumeRequest {
                volume_id: name.into(),
                volume_path: p1.target.to_string_lossy().into(),
                capacity_range: Some(CapacityRange {
                    required_bytes: 600 * MIB,
                    limit_bytes: 0,
                }),
                staging_target_path: p1.staging.to_string_lossy().into(),
                volume_capability: Some(cap.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        let stats = one
            .node
            .node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: name.into(),
                volume_path: p1.target.to_string_lossy().into(),
                staging_target_path: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            stats.usage[0].total > total_before + 200 * MIB,
            "{} -> {}",
            total_before,
            stats.usage[0].total
        );

        // Snapshot (twice: the same snapshot), list with pagination, clone, compare.
        let mut snaps = Vec::new();
        for _ in 0..2 {
            snaps.push(
                one.controller
                    .create_snapshot(CreateSnapshotRequest {
                        source_volume_id: name.into(),
                        name: "snapshot-7d1c".into(),
                        parameters: HashMap::from([("type".to_string(), "snap".to_string())]),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .snapshot
                    .unwrap(),
            );
        }
        assert_eq!(snaps[0].snapshot_id, snaps[1].snapshot_id);
        assert!(snaps[0].ready_to_use);
        assert_eq!(snaps[0].source_volume_id, name);
        one.controller
            .create_snapshot(CreateSnapshotRequest {
                source_volume_id: name.into(),
                name: "snapshot-second".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let first_page = one
            .controller
            .list_snapshots(ListSnapshotsRequest {
                max_entries: 1,
                source_volume_id: name.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first_page.entries.len(), 1);
        assert!(!first_page.next_token.is_empty());
        let second_page = one
            .controller
            .list_snapshots(ListSnapshotsRequest {
                max_entries: 1,
                source_volume_id: name.into(),
                starting_token: first_page.next_token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(second_page.entries.len(), 1);
        assert_ne!(first_page.entries[0], second_page.entries[0]);
        let bad_token = one
            .controller
            .list_snapshots(ListSnapshotsRequest {
                starting_token: "not-a-token".into(),
                ..Default::default()
            })
            .await;
        assert_eq!(code(bad_token), Code::Aborted);
        let by_id = one
            .controller
            .list_snapshots(ListSnapshotsRequest {
                snapshot_id: snaps[0].snapshot_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(by_id.entries.len(), 1);

        let from_snapshot = CreateVolumeRequest {
            volume_content_source: Some(VolumeContentSource {
                r#type: Some(volume_content_source::Type::Snapshot(
                    volume_content_source::SnapshotSource {
                        snapshot_id: snaps[0].snapshot_id.clone(),
                    },
                )),
            }),
            ..create("clone-of-snapshot", 600 * MIB, cap.clone())
        };
        let clone = one
            .controller
            .create_volume(from_snapshot.clone())
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        assert_eq!(clone.capacity_bytes, 600 * MIB);
        assert!(clone.content_source.is_some());
        assert_eq!(
            one.controller
                .create_volume(from_snapshot)
                .await
                .unwrap()
                .into_inner()
                .volume
                .unwrap(),
            clone
        );
        let p2 = paths(&root, "b");
        publish_and_mount(
            &mut one.controller,
            &mut two.node,
            &clone.volume_id,
            "node-2",
            &cap,
            &p2,
            &HashMap::new(),
        )
        .await;
        assert_eq!(
            sha256(&p2.target.join("data")),
            digest,
            "the clone holds the snapshot's data"
        );
        unmount_and_unpublish(
            &mut one.controller,
            &mut two.node,
            &clone.volume_id,
            "node-2",
            &p2,
        )
        .await;

        // A clone of the volume itself (a snapshot taken for it).
        let from_volume = CreateVolumeRequest {
            volume_content_source: Some(VolumeContentSource {
                r#type: Some(volume_content_source::Type::Volume(
                    volume_content_source::VolumeSource {
                        volume_id: name.into(),
                    },
                )),
            }),
            ..create("clone-of-volume", 600 * MIB, cap.clone())
        };
        let vclone = one
            .controller
            .create_volume(from_volume)
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();

        // Unpublish everything on node-1, then stage the volume again on node-2.
        unmount_and_unpublish(&mut one.controller, &mut one.node, name, "node-1", &p1).await;
        let p3 = paths(&root, "c");
        publish_and_mount(
            &mut one.controller,
            &mut two.node,
            name,
            "node-2",
            &cap,
            &p3,
            &context,
        )
        .await;
        assert_eq!(
            sha256(&p3.target.join("data")),
            digest,
            "the data followed the volume to node-2"
        );
        unmount_and_unpublish(&mut one.controller, &mut two.node, name, "node-2", &p3).await;
        let p4 = paths(&root, "d");
        publish_and_mount(
            &mut one.controller,
            &mut one.node,
            &vclone.volume_id,
            "node-1",
            &cap,
            &p4,
            &HashMap::new(),
        )
        .await;
        assert_eq!(
            sha256(&p4.target.join("data")),
            digest,
            "the volume clone holds the data"
        );
        unmount_and_unpublish(
            &mut one.controller,
            &mut one.node,
            &vclone.volume_id,
            "node-1",
            &p4,
        )
        .await;

        // Listing with pagination.
        let listed = one
            .controller
            .list_volumes(ListVolumesRequest {
                max_entries: 2,
                starting_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.entries.len(), 2);
        let rest = one
            .controller
            .list_volumes(ListVolumesRequest {
                max_entries: 2,
                starting_token: listed.next_token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(rest.entries.len(), 1);
        assert!(rest.next_token.is_empty());
        assert_eq!(
            code(
                one.controller
                    .list_volumes(ListVolumesRequest {
                        max_entries: 0,
                        starting_token: "99".into()
                    })
                    .await
            ),
            Code::Aborted
        );

        // Delete snapshots and volumes, twice each.
        for _ in 0..2 {
            one.controller
                .delete_snapshot(DeleteSnapshotRequest {
                    snapshot_id: snaps[0].snapshot_id.clone(),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        let left = one
            .controller
            .list_snapshots(ListSnapshotsRequest {
                snapshot_id: snaps[0].snapshot_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(left.entries.is_empty());
        for v in [name, clone.volume_id.as_str(), vclone.volume_id.as_str()] {
            for _ in 0..2 {
                one.controller
                    .delete_volume(DeleteVolumeRequest {
                        volume_id: v.into(),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
            }
        }
        cluster.until("the volumes are gone", |c| {
            c.json(&["volume", "ls"])["data"]
                .as_array()
                .unwrap()
                .is_empty()
        });
    });
}

#[test]
fn a_raw_block_volume_through_every_rpc() {
    ironhorn_testkit::require_fuse_loop();
    let (cluster, mut agents) = Cluster::three_nodes_with("fuse-loop");
    let root = cluster.root.path().to_path_buf();
    let _cleanup = Unmount(root.clone());
    runtime().block_on(async {
        let mut one = plugin(&root, &cluster.url, Some("node-1")).await;
        let mut three = plugin(&root, &cluster.url, Some("node-3")).await;
        let cap = block_cap();
        let v = one
            .controller
            .create_volume(create("raw", 64 * MIB, cap.clone()))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        let p = paths(&root, "raw");
        // A CO may make the target a directory (csi-sanity does): the device file replaces it.
        std::fs::create_dir_all(&p.target).unwrap();
        publish_and_mount(
            &mut one.controller,
            &mut one.node,
            &v.volume_id,
            "node-1",
            &cap,
            &p,
            &HashMap::new(),
        )
        .await;
        assert!(p.target.is_file() || p.target.exists());
        let pattern = root.join("pattern");
        sh(
            "dd",
            &[
                "if=/dev/urandom",
                &format!("of={}", pattern.display()),
                "bs=1M",
                "count=8",
                "status=none",
            ],
        );
        sh(
            "dd",
            &[
                &format!("if={}", pattern.display()),
                &format!("of={}", p.target.display()),
                "bs=1M",
                "oflag=direct",
                "status=none",
            ],
        );
        let stats = one
            .node
            .node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: v.volume_id.clone(),
                volume_path: p.target.to_string_lossy().into(),
                staging_target_path: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(stats.usage[0].total, 64 * MIB);
        assert!(!stats.volume_condition.unwrap().abnormal);
        let expanded = one
            .controller
            .controller_expand_volume(ControllerExpandVolumeRequest {
                volume_id: v.volume_id.clone(),
                capacity_range: Some(CapacityRange {
                    required_bytes: 128 * MIB,
                    limit_bytes: 0,
                }),
                volume_capability: Some(cap.clone()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!expanded.node_expansion_required);
        unmount_and_unpublish(
            &mut one.controller,
            &mut one.node,
            &v.volume_id,
            "node-1",
            &p,
        )
        .await;

        let q = paths(&root, "raw-again");
        publish_and_mount(
            &mut one.controller,
            &mut three.node,
            &v.volume_id,
            "node-3",
            &cap,
            &q,
            &HashMap::new(),
        )
        .await;
        let back = root.join("back");
        sh(
            "dd",
            &[
                &format!("if={}", q.target.display()),
                &format!("of={}", back.display()),
                "bs=1M",
                "count=8",
                "iflag=direct",
                "status=none",
            ],
        );
        assert_eq!(
            sha256(&back),
            sha256(&pattern),
            "the block data followed the volume to node-3"
        );
        let device = cluster.volume(&v.volume_id)["status"]["blockdev"]["device"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(Path::new(&device).exists(), "{device} is on node-3");
        unmount_and_unpublish(
            &mut one.controller,
            &mut three.node,
            &v.volume_id,
            "node-3",
            &q,
        )
        .await;

        // A replica lost while published: the volume stats say the volume is abnormal.
        let r = paths(&root, "raw-degraded");
        publish_and_mount(
            &mut one.controller,
            &mut one.node,
            &v.volume_id,
            "node-1",
            &cap,
            &r,
            &HashMap::new(),
        )
        .await;
        agents[0].kill9();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            block_write(&r.target, &pattern);
            let stats = one
                .node
                .node_get_volume_stats(NodeGetVolumeStatsRequest {
                    volume_id: v.volume_id.clone(),
                    volume_path: r.target.to_string_lossy().into(),
                    staging_target_path: String::new(),
                })
                .await
                .unwrap()
                .into_inner();
            let condition = stats.volume_condition.unwrap();
            if condition.abnormal {
                assert!(
                    condition.message.contains("degraded"),
                    "{}",
                    condition.message
                );
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the volume never showed degraded: {}",
                cluster.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        unmount_and_unpublish(
            &mut one.controller,
            &mut one.node,
            &v.volume_id,
            "node-1",
            &r,
        )
        .await;
        one.controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: v.volume_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    });
}

#[test]
fn bad_input_gets_the_spec_error_codes_and_creates_nothing() {
    let (cluster, _agents) = Cluster::three_nodes();
    let root = cluster.root.path().to_path_buf();
    runtime().block_on(async {
        let mut one = plugin(&root, &cluster.url, Some("node-1")).await;
        let c = &mut one.controller;
        let cap = mount_cap("ext4");
        // Missing fields.
        let mut no_caps = create("a", MIB, cap.clone());
        no_caps.volume_capabilities.clear();
        assert_eq!(code(c.create_volume(no_caps).await), Code::InvalidArgument);
        assert_eq!(
            code(c.create_volume(create("", MIB, cap.clone())).await),
            Code::InvalidArgument
        );
        let mut no_mode = cap.clone();
        no_mode.access_mode = None;
        assert_eq!(
            code(c.create_volume(create("a", MIB, no_mode)).await),
            Code::InvalidArgument
        );
        assert_eq!(
            code(c.create_volume(create("a", MIB, mount_cap("btrfs"))).await),
            Code::InvalidArgument
        );
        assert_eq!(
            code(c.delete_volume(DeleteVolumeRequest::default()).await),
            Code::InvalidArgument
        );
        assert_eq!(
            code(
                c.controller_publish_volume(ControllerPublishVolumeRequest {
                    volume_id: "a".into(),
                    ..Default::default()
                })
                .await
            ),
            Code::InvalidArgument
        );
        assert_eq!(
            code(
                c.create_snapshot(CreateSnapshotRequest {
                    name: "s".into(),
                    ..Default::default()
                })
                .await
            ),
            Code::InvalidArgument
        );
        assert_eq!(
            code(
                c.controller_expand_volume(ControllerExpandVolumeRequest {
                    volume_id: "a".into(),
                    ..Default::default()
                })
                .await
            ),
            Code::InvalidArgument
        );
        // Sizes: negative, limit below required, huge.
        assert_eq!(
            code(c.create_volume(create("a", -1, cap.clone())).await),
            Code::InvalidArgument
        );
        assert_eq!(
            code(c.create_volume(create("a", i64::MAX, cap.clone())).await),
            Code::OutOfRange
        );
        assert_eq!(
            code(c.create_volume(create("a", 1 << 49, cap.clone())).await),
            Code::ResourceExhausted
        );
        // The node's zone is part of its topology.
        cluster.json(&["node", "update", "node-1", "--zone", "zone-a"]);
        let info = one
            .node
            .node_get_info(NodeGetInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        let segments = info.accessible_topology.unwrap().segments;
        assert_eq!(segments["topology.ironhorn.io/node"], "node-1");
        assert_eq!(segments["topology.kubernetes.io/zone"], "zone-a");
        let c = &mut one.controller;
        // Capacity per topology segment: a node's own, none for a node that is not there.
        let capacity = |segments: &[(&str, &str)]| GetCapacityRequest {
            volume_capabilities: vec![mount_cap("xfs")],
            parameters: seed_params(),
            accessible_topology: Some(Topology {
                segments: segments
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }),
        };
        let all = c
            .get_capacity(GetCapacityRequest::default())
            .await
            .unwrap()
            .into_inner();
        let node2 = c
            .get_capacity(capacity(&[("topology.ironhorn.io/node", "node-2")]))
            .await
            .unwrap()
            .into_inner();
        let zone = c
            .get_capacity(capacity(&[("topology.kubernetes.io/zone", "zone-a")]))
            .await
            .unwrap()
            .into_inner();
        // One node of three is in zone-a (free space is the machine's, shared by the three).
        assert!(zone.available_capacity > 0 && zone.available_capacity < all.available_capacity);
        let nowhere = c
            .get_capacity(capacity(&[("topology.ironhorn.io/node", "nowhere")]))
            .await
            .unwrap()
            .into_inner();
        assert!(
            node2.available_capacity > 0 && node2.available_capacity < all.available_capacity,
            "{node2:?} {all:?}"
        );
        assert_eq!(nowhere.available_capacity, 0);
        assert!(all.maximum_volume_size.unwrap() > 0);
        // Unknown parameters and bad values name the parameter.
        let mut typo = create("a", MIB, cap.clone());
        typo.parameters.insert("numberOfReplica".into(), "2".into());
        let status = c.create_volume(typo).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains("numberOfReplica"),
            "{}",
            status.message()
        );
        let mut bad_value = create("a", MIB, cap.clone());
        bad_value
            .parameters
            .insert("dataLocality".into(), "nearby".into());
        assert!(c
            .create_volume(bad_value)
            .await
            .unwrap_err()
            .message()
            .contains("dataLocality"));
        // Unknown volumes, nodes and snapshots.
        let publish = |volume: &str, node: &str| ControllerPublishVolumeRequest {
            volume_id: volume.into(),
            node_id: node.into(),
            volume_capability: Some(mount_cap("ext4")),
            ..Default::default()
        };
        assert_eq!(
            code(c.controller_publish_volume(publish("nope", "node-1")).await),
            Code::NotFound
        );
        c.create_volume(create("real", 16 * MIB, cap.clone()))
            .await
            .unwrap();
        assert_eq!(
            code(
                c.controller_publish_volume(publish("real", "no-such-node"))
                    .await
            ),
            Code::NotFound
        );
        assert_eq!(
            code(
                c.validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
                    volume_id: "nope".into(),
                    volume_capabilities: vec![cap.clone()],
                    ..Default::default()
                })
                .await
            ),
            Code::NotFound
        );
        let mut from_missing = create("from-missing", 16 * MIB, cap.clone());
        from_missing.volume_content_source = Some(VolumeContentSource {
            r#type: Some(volume_content_source::Type::Snapshot(
                volume_content_source::SnapshotSource {
                    snapshot_id: "snap://real/none".into(),
                },
            )),
        });
        assert_eq!(code(c.create_volume(from_missing).await), Code::NotFound);
        c.delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: "snap://nope/none".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        c.controller_unpublish_volume(ControllerUnpublishVolumeRequest {
            volume_id: "nope".into(),
            node_id: "node-1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        // Paths that do not exist.
        let n = &mut one.node;
        let missing = root.join("missing/path");
        assert_eq!(
            code(
                n.node_get_volume_stats(NodeGetVolumeStatsRequest {
                    volume_id: "real".into(),
                    volume_path: missing.to_string_lossy().into(),
                    staging_target_path: String::new()
                })
                .await
            ),
            Code::NotFound
        );
        assert_eq!(
            code(
                n.node_stage_volume(NodeStageVolumeRequest {
                    volume_id: "real".into(),
                    staging_target_path: missing.to_string_lossy().into(),
                    volume_capability: Some(cap.clone()),
                    ..Default::default()
                })
                .await
            ),
            Code::NotFound
        );
        n.node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: "real".into(),
            target_path: missing.to_string_lossy().into(),
        })
        .await
        .unwrap();
        n.node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: "real".into(),
            staging_target_path: missing.to_string_lossy().into(),
        })
        .await
        .unwrap();
        // Staging a volume not published here.
        let staging = paths(&root, "x").staging;
        assert_eq!(
            code(
                n.node_stage_volume(NodeStageVolumeRequest {
                    volume_id: "real".into(),
                    staging_target_path: staging.to_string_lossy().into(),
                    volume_capability: Some(cap.clone()),
                    ..Default::default()
                })
                .await
            ),
            Code::FailedPrecondition
        );
        let names: Vec<String> = cluster.json(&["volume", "ls"])["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            names,
            vec!["real"],
            "nothing but the one good volume was created"
        );
    });

    // A manager that is down: Unavailable (the CO retries), nothing half-created.
    runtime().block_on(async {
        let down = format!("http://127.0.0.1:{}", ironhorn_testkit::free_port());
        let dir = root.join("down");
        std::fs::create_dir_all(&dir).unwrap();
        let mut lost = plugin(&dir, &down, Some("node-1")).await;
        assert_eq!(
            code(lost.identity.probe(ProbeRequest {}).await),
            Code::Unavailable
        );
        assert_eq!(
            code(
                lost.controller
                    .create_volume(create("while-down", 16 * MIB, mount_cap("xfs")))
                    .await
            ),
            Code::Unavailable
        );
        assert_eq!(
            code(lost.node.node_get_info(NodeGetInfoRequest {}).await),
            Code::Unavailable
        );
    });
    let (code_, out, _) = cluster.cli(&["volume", "get", "while-down"]);
    assert_ne!(code_, 0, "{out}");
}

fn block_write(target: &Path, pattern: &Path) {
    sh(
        "dd",
        &[
            &format!("if={}", pattern.display()),
            &format!("of={}", target.display()),
            "bs=1M",
            "oflag=direct",
            "status=none",
        ],
    );
}

fn block_read(target: &Path, to: &Path, mib: u64) {
    sh(
        "dd",
        &[
            &format!("if={}", target.display()),
            &format!("of={}", to.display()),
            "bs=1M",
            &format!("count={mib}"),
            "iflag=direct",
            "status=none",
        ],
    );
}

#[test]
fn detached_snapshots_backups_to_s3_and_restores() {
    ironhorn_testkit::require_fuse_loop();
    let s3 = ironhorn_testkit::servers::S3Server::start(ironhorn_testkit::servers::S3Kind::Moto);
    let (cluster, _agents) = Cluster::three_nodes_with("fuse-loop");
    let mut secret = vec!["secret".to_string(), "set".into(), "s3-creds".into()];
    secret.extend(s3.credentials().iter().map(|(k, v)| format!("{k}={v}")));
    cluster.json(&secret.iter().map(String::as_str).collect::<Vec<_>>());
    let target = cluster.json(&[
        "backup",
        "target",
        "set",
        "default",
        &s3.url("csi"),
        "--credential-secret",
        "s3-creds",
    ]);
    assert_eq!(target["status"]["available"], true, "{target}");
    let root = cluster.root.path().to_path_buf();
    let _cleanup = Unmount(root.clone());
    runtime().block_on(async {
        let mut one = plugin(&root, &cluster.url, Some("node-1")).await;
        let mut two = plugin(&root, &cluster.url, Some("node-2")).await;
        let cap = block_cap();
        let src = one
            .controller
            .create_volume(create("src", 32 * MIB, cap.clone()))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        one.controller
            .create_volume(create("other", 32 * MIB, cap.clone()))
            .await
            .unwrap();
        let pattern = root.join("pattern");
        sh(
            "dd",
            &[
                "if=/dev/urandom",
                &format!("of={}", pattern.display()),
                "bs=1M",
                "count=16",
                "status=none",
            ],
        );
        let p = paths(&root, "src");
        publish_and_mount(
            &mut one.controller,
            &mut one.node,
            &src.volume_id,
            "node-1",
            &cap,
            &p,
            &HashMap::new(),
        )
        .await;
        block_write(&p.target, &pattern);
        unmount_and_unpublish(
            &mut one.controller,
            &mut one.node,
            &src.volume_id,
            "node-1",
            &p,
        )
        .await;
        assert_eq!(cluster.volume("src")["status"]["state"], "detached");

        // A snapshot of a detached volume: attached for the moment it takes, listed detached.
        let snap = one
            .controller
            .create_snapshot(CreateSnapshotRequest {
                source_volume_id: "src".into(),
                name: "snapshot-a".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .snapshot
            .unwrap();
        assert_eq!(cluster.volume("src")["status"]["state"], "detached");
        assert!(cluster.volume("src")["spec"]["nodeId"]
            .as_str()
            .unwrap_or("")
            .is_empty());
        let listed = one
            .controller
            .list_snapshots(ListSnapshotsRequest {
                source_volume_id: "src".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.entries.len(), 1, "{listed:?}");
        assert_eq!(
            listed.entries[0].snapshot.as_ref().unwrap().snapshot_id,
            snap.snapshot_id
        );
        // The same CSI name on another volume: AlreadyExists.
        let taken = one
            .controller
            .create_snapshot(CreateSnapshotRequest {
                source_volume_id: "other".into(),
                name: "snapshot-a".into(),
                ..Default::default()
            })
            .await;
        assert_eq!(code(taken), Code::AlreadyExists);

        // type: bak is a backup in the target; a volume is created from it.
        let bak = one
            .controller
            .create_snapshot(CreateSnapshotRequest {
                source_volume_id: "src".into(),
                name: "snapshot-b".into(),
                parameters: HashMap::from([("type".to_string(), "bak".to_string())]),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .snapshot
            .unwrap();
        assert!(
            bak.snapshot_id.starts_with("bak://src/"),
            "{}",
            bak.snapshot_id
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let found = one
                .controller
                .list_snapshots(ListSnapshotsRequest {
                    snapshot_id: bak.snapshot_id.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            if found
                .entries
                .first()
                .and_then(|e| e.snapshot.as_ref())
                .is_some_and(|s| s.ready_to_use)
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the backup did not complete: {found:?}\n{}",
                cluster.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let from_backup = CreateVolumeRequest {
            volume_content_source: Some(VolumeContentSource {
                r#type: Some(volume_content_source::Type::Snapshot(
                    volume_content_source::SnapshotSource {
                        snapshot_id: bak.snapshot_id.clone(),
                    },
                )),
            }),
            ..create("restored", 32 * MIB, cap.clone())
        };
        let restored = one
            .controller
            .create_volume(from_backup)
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        let q = paths(&root, "restored");
        publish_and_mount(
            &mut one.controller,
            &mut two.node,
            &restored.volume_id,
            "node-2",
            &cap,
            &q,
            &HashMap::new(),
        )
        .await;
        let back = root.join("back");
        block_read(&q.target, &back, 16);
        assert_eq!(
            sha256(&back),
            sha256(&pattern),
            "the restored volume holds the backed-up data"
        );
        unmount_and_unpublish(
            &mut one.controller,
            &mut two.node,
            &restored.volume_id,
            "node-2",
            &q,
        )
        .await;
        for _ in 0..2 {
            one.controller
                .delete_snapshot(DeleteSnapshotRequest {
                    snapshot_id: bak.snapshot_id.clone(),
                    ..Default::default()
                })
                .await
                .unwrap();
        }

        // A deleted volume is gone when DeleteVolume answers: not listed, its name free.
        one.controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: "src".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let names: Vec<String> = one
            .controller
            .list_volumes(ListVolumesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .entries
            .into_iter()
            .map(|e| e.volume.unwrap().volume_id)
            .collect();
        assert!(!names.contains(&"src".to_string()), "{names:?}");
        // The name is free again once the volume is gone: Aborted until then, as a CO retries.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match one
                .controller
                .create_volume(create("src", 16 * MIB, cap.clone()))
                .await
            {
                Ok(_) => break,
                Err(e) => assert_eq!(e.code(), Code::Aborted, "{e:?}"),
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the name src never came free"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
}

#[test]
fn concurrent_creates_make_each_volume_once() {
    let (cluster, _agents) = Cluster::three_nodes();
    let root = cluster.root.path().to_path_buf();
    runtime().block_on(async {
        let one = plugin(&root, &cluster.url, None).await;
        // 100 calls at once, each of 50 names asked twice (as a CO retrying a slow call does).
        let calls: Vec<_> = (0..100)
            .map(|i| {
                let mut c = one.controller.clone();
                tokio::spawn(async move {
                    let name = format!("pvc-concurrent-{:02}", i % 50);
                    loop {
                        match c
                            .create_volume(create(&name, 8 * MIB, mount_cap("xfs")))
                            .await
                        {
                            Ok(r) => return r.into_inner().volume.unwrap().volume_id,
                            // The same name in flight: the CO retries.
                            Err(e) if e.code() == Code::Aborted => {
                                tokio::time::sleep(std::time::Duration::from_millis(20)).await
                            }
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                })
            })
            .collect();
        let mut ids = Vec::new();
        for call in calls {
            ids.push(call.await.unwrap());
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 50);
    });
    let held = cluster.json(&["volume", "ls"])["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(held, 50, "each name made one volume");
}

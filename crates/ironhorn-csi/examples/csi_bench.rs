//! The CSI benchmark (`bench/csi.sh` runs it on a release build): a three-node cluster of
//! real `ironhorn` processes (a server, two node agents, block devices through FUSE + loop)
//! and the CSI plugin on its Unix socket, driven as the provisioner, attacher and kubelet do.
//!
//! 1. CreateVolume → ControllerPublishVolume → NodeStageVolume (mkfs.xfs, mount), one volume
//!    after another: latency percentiles (target: p50 under 2 s).
//! 2. 100 CreateVolume calls at once: every one succeeds, and the manager holds exactly those
//!    100 volumes, no duplicate.
//!
//! Usage: csi_bench BIN [VOLUMES] [CONCURRENT]

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ironhorn_api::client::{ApiClient, Timeouts};
use ironhorn_api::manager_api;
use ironhorn_csi::csi::controller_client::ControllerClient;
use ironhorn_csi::csi::node_client::NodeClient;
use ironhorn_csi::csi::volume_capability::access_mode::Mode;
use ironhorn_csi::csi::volume_capability::{AccessMode, AccessType, MountVolume};
use ironhorn_csi::csi::*;

type Error = Box<dyn std::error::Error>;

struct Kill(Vec<Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(19500)
}

fn spawn(bin: &str, args: &[&str], log: &Path) -> Result<Child, Error> {
    let out = std::fs::File::create(log)?;
    Ok(Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()?)
}

fn cap() -> VolumeCapability {
    VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: "xfs".into(),
            ..Default::default()
        })),
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
    }
}

fn create(name: &str) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: 320 << 20,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![cap()],
        parameters: HashMap::from([
            ("numberOfReplicas".to_string(), "3".to_string()),
            ("staleReplicaTimeout".to_string(), "2880".to_string()),
        ]),
        ..Default::default()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let bin = args
        .get(1)
        .ok_or("usage: csi_bench BIN [VOLUMES] [CONCURRENT]")?
        .clone();
    let volumes: usize = args.get(2).map_or(Ok(50), |v| v.parse())?;
    let concurrent: usize = args.get(3).map_or(Ok(100), |v| v.parse())?;
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut children = Kill(Vec::new());
    let server_dir = root.join("server");
    children.0.push(spawn(
        &bin,
        &[
            "server",
            "--data-dir",
            server_dir.to_str().ok_or("path")?,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--node-name",
            "node-1",
            "--poll-window",
            "0",
            "--blockdev-backend",
            "fuse-loop",
        ],
        &root.join("server.log"),
    )?);
    // The server writes the cluster secret and the first admin's token at start.
    let secret = server_dir.join("cluster.secret");
    let admin_token = server_dir.join("admin.token");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(secret.exists() && admin_token.exists()) {
        if Instant::now() > deadline {
            return Err("the server did not write its credentials".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secret_path = secret.to_str().ok_or("path")?;
    for n in ["node-2", "node-3"] {
        let d = root.join(n);
        children.0.push(spawn(
            &bin,
            &[
                "node",
                "--cluster-secret-file",
                secret_path,
                "--manager",
                &url,
                "--name",
                n,
                "--data-dir",
                d.to_str().ok_or("path")?,
                "--listen",
                "127.0.0.1:0",
                "--poll-window",
                "0",
            ],
            &root.join(format!("{n}.log")),
        )?);
    }
    let token = std::fs::read_to_string(&admin_token)?;
    let api = ApiClient::new(Timeouts::default()).with_bearer(Some(token.trim()));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(nodes) = api.call(&url, manager_api::list_nodes()).await {
            if nodes.data.len() == 3 && nodes.data.iter().all(|n| n.status.ready) {
                break;
            }
        }
        if Instant::now() > deadline {
            return Err("the cluster did not become ready".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    api.call(
        &url,
        manager_api::set_setting("storage-minimal-available-percentage", "0"),
    )
    .await?;
    let socket = root.join("csi.sock");
    children.0.push(spawn(
        &bin,
        &[
            "csi",
            "--endpoint",
            &format!("unix://{}", socket.display()),
            "--node-id",
            "node-1",
            "--manager",
            &url,
            "--token-file",
            secret_path,
        ],
        &root.join("csi.log"),
    )?);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let channel = loop {
        match ironhorn_csi::connect(socket.clone()).await {
            Ok(channel) => break channel,
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let mut controller = ControllerClient::new(channel.clone());
    let mut node = NodeClient::new(channel);

    // 1. CreateVolume to a staged, mounted filesystem.
    let mut times = Vec::new();
    for i in 0..volumes {
        let name = format!("pvc-bench-{i:04}");
        let staging = root.join(format!("staging/{name}"));
        std::fs::create_dir_all(&staging)?;
        let start = Instant::now();
        let v = controller
            .create_volume(create(&name))
            .await?
            .into_inner()
            .volume
            .ok_or("no volume")?;
        controller
            .controller_publish_volume(ControllerPublishVolumeRequest {
                volume_id: v.volume_id.clone(),
                node_id: "node-1".into(),
                volume_capability: Some(cap()),
                ..Default::default()
            })
            .await?;
        node.node_stage_volume(NodeStageVolumeRequest {
            volume_id: v.volume_id.clone(),
            staging_target_path: staging.to_string_lossy().into(),
            volume_capability: Some(cap()),
            ..Default::default()
        })
        .await?;
        times.push(start.elapsed());
        node.node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: v.volume_id.clone(),
            staging_target_path: staging.to_string_lossy().into(),
        })
        .await?;
        controller
            .controller_unpublish_volume(ControllerUnpublishVolumeRequest {
                volume_id: v.volume_id.clone(),
                node_id: "node-1".into(),
                ..Default::default()
            })
            .await?;
        controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: v.volume_id,
                ..Default::default()
            })
            .await?;
    }
    times.sort();
    println!(
        "create → publish → stage (xfs), {volumes} volumes of 3 replicas: p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms (target: p50 under 2000 ms)",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.9).as_secs_f64() * 1e3,
        times.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while !api
        .call(&url, manager_api::list_volumes())
        .await?
        .data
        .is_empty()
    {
        if Instant::now() > deadline {
            return Err("the benchmark's volumes were not deleted".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 2. Concurrent CreateVolume.
    let start = Instant::now();
    let calls: Vec<_> = (0..concurrent)
        .map(|i| {
            let mut c = controller.clone();
            tokio::spawn(async move { c.create_volume(create(&format!("pvc-many-{i:04}"))).await })
        })
        .collect();
    let (mut ids, mut errors) = (Vec::new(), Vec::new());
    for call in calls {
        match call.await? {
            Ok(r) => ids.push(
                r.into_inner()
                    .volume
                    .map(|v| v.volume_id)
                    .unwrap_or_default(),
            ),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let elapsed = start.elapsed();
    let held: Vec<String> = api
        .call(&url, manager_api::list_volumes())
        .await?
        .data
        .into_iter()
        .map(|v| v.name)
        .collect();
    let unique: BTreeSet<&String> = held.iter().collect();
    println!(
        "{concurrent} concurrent CreateVolume: {} succeeded, {} failed, in {:.2} s; the manager holds {} volumes, {} distinct (target: all succeed, {concurrent} volumes, no duplicate)",
        ids.len(),
        errors.len(),
        elapsed.as_secs_f64(),
        held.len(),
        unique.len()
    );
    if let Some(e) = errors.first() {
        println!("first error: {e}");
    }
    let ok = percentile(&times, 0.5) < Duration::from_secs(2)
        && errors.is_empty()
        && held.len() == concurrent
        && unique.len() == concurrent;
    if !ok {
        return Err("a target was missed".into());
    }
    Ok(())
}

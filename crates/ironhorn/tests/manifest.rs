//! `deploy/ironhorn.yaml` against Kubernetes' own schemas (kubernetes-validate, strict: no
//! unknown field passes) for the newest Kubernetes and an older one still in support, and
//! against the plugin itself: the driver name everywhere is the one the plugin reports, the
//! StorageClass and VolumeSnapshotClass parameters are ones the plugin accepts, the
//! StorageClass is the seed's. No API server runs here; these checks stand in for
//! `kubectl apply --dry-run=server`.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use serde_yaml_ng::Value;

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/ironhorn.yaml")
}

fn validator() -> String {
    for candidate in [
        "kubernetes-validate",
        "/var/tmp/ironhorn-ci-venv/bin/kubernetes-validate",
    ] {
        if Command::new(candidate)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return candidate.to_string();
        }
    }
    panic!("kubernetes-validate is not installed: `/var/tmp/ironhorn-ci-venv/bin/pip install kubernetes-validate` (scripts/setup does it)");
}

fn documents() -> Vec<Value> {
    let text = std::fs::read_to_string(manifest()).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect()
}

fn string_map(v: &Value) -> HashMap<String, String> {
    v.as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_string(),
                v.as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn every_object_validates_against_kubernetes_schemas() {
    let tool = validator();
    for version in ["1.37.0", "1.30.0"] {
        let out = Command::new(&tool)
            .args(["--strict", "-k", version, manifest().to_str().unwrap()])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "kubernetes {version}:\n{text}");
        let passed = text
            .lines()
            .filter(|l| l.contains(" passed for resource "))
            .count();
        // Every object but the VolumeSnapshotClass (a CRD of the external snapshotter,
        // whose schema kubernetes-validate does not carry: checked below instead).
        assert_eq!(
            passed,
            documents().len() - 1,
            "kubernetes {version}:\n{text}"
        );
    }
}

#[test]
fn the_manifest_agrees_with_the_plugin() {
    let docs = documents();
    let driver = ironhorn_csi::DRIVER_NAME;
    assert_eq!(
        of_kind(&docs, "CSIDriver")[0]["metadata"]["name"].as_str(),
        Some(driver)
    );
    assert_eq!(
        of_kind(&docs, "Namespace")[0]["metadata"]["name"].as_str(),
        Some("ironhorn-system")
    );

    let classes = of_kind(&docs, "StorageClass");
    let seed = classes
        .iter()
        .find(|c| c["metadata"]["name"].as_str() == Some("ironhorn"))
        .unwrap();
    assert_eq!(seed["provisioner"].as_str(), Some(driver));
    assert_eq!(
        seed["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"].as_str(),
        Some("true")
    );
    assert_eq!(seed["reclaimPolicy"].as_str(), Some("Retain"));
    assert_eq!(seed["allowVolumeExpansion"].as_bool(), Some(true));
    let params = ironhorn_csi::params::volume_params(&string_map(&seed["parameters"])).unwrap();
    assert_eq!(params.number_of_replicas, Some(3));
    assert_eq!(params.stale_replica_timeout, Some(2880));
    assert_eq!(params.fs_type.as_deref(), Some("xfs"));
    // Its volumes run the default group: the seed's schedules (the ConfigMap's jobs).
    assert_eq!(
        params
            .labels
            .get("recurring-job-group.longhorn.io/default")
            .map(String::as_str),
        Some("enabled")
    );

    let snapshot_class = of_kind(&docs, "VolumeSnapshotClass")[0];
    assert_eq!(
        snapshot_class["apiVersion"].as_str(),
        Some("snapshot.storage.k8s.io/v1")
    );
    assert_eq!(snapshot_class["driver"].as_str(), Some(driver));
    assert!(matches!(
        snapshot_class["deletionPolicy"].as_str(),
        Some("Delete" | "Retain")
    ));
    ironhorn_csi::params::snapshot_params(&string_map(&snapshot_class["parameters"])).unwrap();

    // The registrar tells the kubelet where the node plugin's socket is on the host.
    let text = std::fs::read_to_string(manifest()).unwrap();
    assert!(text.contains(&format!(
        "--kubelet-registration-path=/var/lib/kubelet/plugins/{driver}/csi.sock"
    )));
    assert!(text.contains(&format!("path: /var/lib/kubelet/plugins/{driver}")));
    // Every component that calls another holds the cluster secret; probes need nothing.
    assert!(text.contains("\"--cluster-secret-file\", \"/etc/ironhorn-secret/secret\""));
    assert!(text.contains("exec ironhorn node --cluster-secret-file /etc/ironhorn-secret/secret"));
    assert_eq!(text.matches("--token-file").count(), 2, "both CSI plugins");
    assert_eq!(
        text.matches("secretName: ironhorn-cluster-secret").count(),
        3
    );
    assert!(text.contains("path: /healthz"));
    // The secret is made by the install itself (a Job), with no more rights than that.
    let job = of_kind(&docs, "Job")[0];
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(
        serde_json::to_value(&pod["containers"][0]["command"]).unwrap(),
        serde_json::json!([
            "ironhorn",
            "cluster-secret",
            "--name",
            "ironhorn-cluster-secret"
        ])
    );
    let account = pod["serviceAccountName"].as_str().unwrap();
    let role = of_kind(&docs, "Role")
        .into_iter()
        .find(|r| r["metadata"]["name"].as_str() == Some(account))
        .unwrap();
    assert_eq!(
        serde_json::to_value(&role["rules"]).unwrap(),
        serde_json::json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create"]}])
    );
    assert!(of_kind(&docs, "RoleBinding")
        .iter()
        .any(|b| b["roleRef"]["name"].as_str() == Some(account)
            && b["subjects"][0]["name"].as_str() == Some(account)));
    // Every node checks its prerequisites before its agent starts.
    assert!(text.contains("command: [\"ironhorn\", \"check\""));
    // Every sidecar the controller needs runs beside it.
    for sidecar in [
        "csi-provisioner",
        "csi-attacher",
        "csi-resizer",
        "csi-snapshotter",
    ] {
        assert!(text.contains(&format!("name: {sidecar}")), "{sidecar}");
    }
    // The image runs what the commands name.
    let dockerfile =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../Dockerfile"))
            .unwrap();
    assert!(dockerfile.contains("/usr/local/bin/ironhorn"));
    for tool in ["xfsprogs", "e2fsprogs", "util-linux"] {
        assert!(dockerfile.contains(tool), "{tool}");
    }
}

#[test]
fn the_manager_runs_without_a_node_as_the_manifest_starts_it() {
    let dir = tempfile::tempdir().unwrap();
    // The seed's recurring jobs, from the manifest's ConfigMap.
    let docs = documents();
    let config = of_kind(&docs, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == "ironhorn-recurring-jobs")
        .expect("the recurring jobs' ConfigMap");
    let jobs_file = dir.path().join("recurring-jobs.yaml");
    std::fs::write(
        &jobs_file,
        config["data"]["recurring-jobs.yaml"].as_str().unwrap(),
    )
    .unwrap();
    let port = ironhorn_testkit::free_port();
    let proc = ironhorn_testkit::Proc::spawn(
        env!("CARGO_BIN_EXE_ironhorn"),
        &[
            "server",
            "--no-node",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            dir.path().join("state").to_str().unwrap(),
            "--recurring-jobs",
            jobs_file.to_str().unwrap(),
        ],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !proc.text().contains("API at") {
        assert!(std::time::Instant::now() < deadline, "{}", proc.text());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_ironhorn"))
        .args(["node", "ls", "-o", "json"])
        .env("IRONHORN_URL", format!("http://127.0.0.1:{port}"))
        .env("IRONHORN_TOKEN_FILE", dir.path().join("state/admin.token"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        nodes["data"].as_array().unwrap().len(),
        0,
        "no node registers itself"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ironhorn"))
        .args(["recurring-job", "ls", "-o", "json"])
        .env("IRONHORN_URL", format!("http://127.0.0.1:{port}"))
        .env("IRONHORN_TOKEN_FILE", dir.path().join("state/admin.token"))
        .output()
        .unwrap();
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let seed: Vec<(String, String, u64)> = jobs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["task"].as_str().unwrap().to_string(),
                j["cron"].as_str().unwrap().to_string(),
                j["retain"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seed,
        [
            ("backup".to_string(), "0 1 * * ?".to_string(), 7),
            ("backup".to_string(), "0 3 ? * SAT".to_string(), 4),
            ("snapshot".to_string(), "0 0/3 * * ?".to_string(), 5),
        ],
        "the seed's schedules, listed by name"
    );
    drop(proc);
}

//! Prometheus metrics at `/metrics` (OpenMetrics text), computed when scraped from the
//! stored resources and what the nodes reported in the last controller round: volume size,
//! actual size, state and robustness; node readiness; disk capacity, availability,
//! scheduled and reserved bytes; rebuild progress; recurring-job runs by job and result, and
//! each volume's last backup time (for an alert when backups stop).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use ironhorn_api::recurring::{RecurringJob, RunResult};
use ironhorn_api::resource::{wire_name, Node, Robustness, Volume, VolumeState};

use crate::error::ApiError;
use crate::plan::engine_of;
use crate::state::{self, NODES, RECURRING_JOBS, VOLUMES};
use crate::Manager;

type Labels = Vec<(&'static str, String)>;

fn family(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let family = Family::<Labels, Gauge>::default();
    registry.register(name, help, family.clone());
    family
}

fn set(family: &Family<Labels, Gauge>, labels: Labels, value: u64) {
    family
        .get_or_create(&labels)
        .set(i64::try_from(value).unwrap_or(i64::MAX));
}

/// The metrics as OpenMetrics text.
pub async fn render(manager: &Manager) -> Result<String, ApiError> {
    let store = manager.store.as_ref();
    let volumes = state::list::<Volume>(store, VOLUMES).await?;
    let nodes = state::list::<Node>(store, NODES).await?;
    let reports = manager.reports();
    let mut registry = Registry::with_prefix("ironhorn");

    let size = family(&mut registry, "volume_size_bytes", "Volume size");
    let actual = family(
        &mut registry,
        "volume_actual_size_bytes",
        "Bytes one replica of the volume occupies",
    );
    let volume_state = family(
        &mut registry,
        "volume_state",
        "1 for the volume's state (creating, detached, attaching, attached, detaching, deleting)",
    );
    let robustness = family(
        &mut registry,
        "volume_robustness",
        "1 for the volume's robustness (healthy, degraded, faulted, unknown)",
    );
    let replicas = family(
        &mut registry,
        "volume_replicas_healthy",
        "Replicas of the volume that are healthy",
    );
    let rebuild_copied = family(
        &mut registry,
        "volume_rebuild_copied_bytes",
        "Bytes the running rebuild of the volume has copied",
    );
    let rebuild_total = family(
        &mut registry,
        "volume_rebuild_total_bytes",
        "Bytes the running rebuild of the volume copies in all",
    );
    let last_backup = family(
        &mut registry,
        "volume_last_backup_timestamp_seconds",
        "When the volume's last backup completed (seconds since the Unix epoch; 0: never)",
    );
    let states = [
        VolumeState::Creating,
        VolumeState::Detached,
        VolumeState::Attaching,
        VolumeState::Attached,
        VolumeState::Detaching,
        VolumeState::Deleting,
    ];
    let robustnesses = [
        Robustness::Healthy,
        Robustness::Degraded,
        Robustness::Faulted,
        Robustness::Unknown,
    ];
    for (v, _) in &volumes {
        let labels = || vec![("volume", v.name.clone())];
        set(&size, labels(), v.spec.size);
        set(&actual, labels(), v.status.actual_size);
        for s in states {
            let mut l = labels();
            l.push(("state", wire_name(s)));
            set(&volume_state, l, u64::from(v.status.state == s));
        }
        for r in robustnesses {
            let mut l = labels();
            l.push(("robustness", wire_name(r)));
            set(&robustness, l, u64::from(v.status.robustness == r));
        }
        let backed_up = humantime::parse_rfc3339(&v.status.last_backup_at)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        set(&last_backup, labels(), backed_up);
        let healthy = v.status.replicas.iter().filter(|r| r.healthy).count();
        set(&replicas, labels(), healthy as u64);
        if let Some((_, engine)) = engine_of(&reports, &v.name) {
            if engine.rebuilding {
                set(&rebuild_copied, labels(), engine.rebuild_copied);
                set(&rebuild_total, labels(), engine.rebuild_total);
            }
        }
    }

    let ready = family(&mut registry, "node_ready", "1 when the node agent answers");
    let capacity = family(
        &mut registry,
        "disk_capacity_bytes",
        "Size of the disk's filesystem",
    );
    let available = family(
        &mut registry,
        "disk_available_bytes",
        "Free bytes on the disk's filesystem",
    );
    let scheduled = family(
        &mut registry,
        "disk_scheduled_bytes",
        "Sum of the sizes of the replicas on the disk",
    );
    let reserved = family(
        &mut registry,
        "disk_reserved_bytes",
        "Bytes of the disk kept free of replicas",
    );
    for (n, _) in &nodes {
        set(
            &ready,
            vec![("node", n.name.clone())],
            u64::from(n.status.ready),
        );
        for (disk, spec) in &n.spec.disks {
            let labels = || vec![("node", n.name.clone()), ("disk", disk.clone())];
            set(&reserved, labels(), spec.storage_reserved);
            if let Some(status) = n.status.disks.get(disk) {
                set(&capacity, labels(), status.storage_maximum);
                set(&available, labels(), status.storage_available);
                set(&scheduled, labels(), status.storage_scheduled);
            }
        }
    }

    let runs = Family::<Labels, Counter>::default();
    registry.register(
        "recurring_job_runs",
        "Runs of each recurring job on a volume since the manager started, by result (succeeded, skipped, failed, missed)",
        runs.clone(),
    );
    // Every job shows every result, at 0 until it happens, so an alert's rate is defined.
    for (job, _) in state::list::<RecurringJob>(store, RECURRING_JOBS).await? {
        for result in RunResult::ALL {
            if result != RunResult::Running {
                runs.get_or_create(&vec![
                    ("job", job.spec.name.clone()),
                    ("result", result.name().to_string()),
                ])
                .inc_by(0);
            }
        }
    }
    for ((job, result), n) in manager.recurring.counts() {
        runs.get_or_create(&vec![("job", job), ("result", result.name().to_string())])
            .inc_by(n);
    }

    let mut text = String::new();
    encode(&mut text, &registry).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(text)
}

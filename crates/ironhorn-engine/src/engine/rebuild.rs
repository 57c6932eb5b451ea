//! Changing the replica set while I/O runs: removing a replica, rebuilding a new one (a
//! system snapshot, the target takes new writes as WO while the snapshot files are copied,
//! then it becomes RW), and catching up a replica that comes back after a failure by copying
//! only the regions it missed.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::borrow::Cow;

use ironhorn_proto::replica::{LayerInfo, ReplicaInfo};
use ironhorn_replica::SnapshotSpec;

use super::slot::MISSED_REGION;
use super::{Engine, Mode, RebuildReport, ReplicaSpec, Slot};
use crate::error::{CallError, EngineError, Refusal};
use crate::layer_send::LayerSender;
use crate::BlockDevice;

/// A pseudo-random UUID for system snapshot names, as Longhorn names them.
fn system_snapshot_name() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Engine {
    /// Drops a replica from the volume (its data stays where it is).
    pub async fn remove_replica(&self, address: &str) -> Result<(), EngineError> {
        let _paused = self.gate.write().await;
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let before = slots.len();
        let remaining: Vec<Arc<Slot>> = slots
            .iter()
            .filter(|s| s.spec.to_string() != address)
            .cloned()
            .collect();
        if remaining.len() == before {
            return Err(Refusal::NotAReplica(address.to_string()).into());
        }
        if !remaining.iter().any(|s| s.mode() == Mode::RW) {
            return Err(Refusal::LastHealthy(address.to_string()).into());
        }
        *slots = remaining;
        Ok(())
    }

    /// Adds a replica and rebuilds it while I/O goes on: a system snapshot on every replica,
    /// the target lays out the source's snapshot files and receives every new write (WO),
    /// then the snapshot files' data is copied (allocated extents only; files the target
    /// already holds with the same checksum are skipped), and the target becomes RW.
    pub async fn add_replica(&self, spec: &ReplicaSpec) -> Result<RebuildReport, EngineError> {
        self.add_returning_replica(spec, None).await
    }

    /// [`Engine::add_replica`] for a replica that failed while it was known at `previous` (a
    /// replica server that restarted on another port): it is caught up incrementally as if it
    /// had come back at its old address.
    pub async fn add_returning_replica(
        &self,
        spec: &ReplicaSpec,
        previous: Option<&str>,
    ) -> Result<RebuildReport, EngineError> {
        let returning = self.slots().into_iter().find(|s| {
            s.spec == *spec
                || previous.is_some_and(|p| s.mode() == Mode::ERR && s.spec.to_string() == p)
        });
        if returning.as_ref().is_some_and(|s| s.mode() != Mode::ERR) {
            return Err(Refusal::AlreadyAReplica(spec.to_string()).into());
        }
        if self.rebuilding.swap(true, Ordering::SeqCst) {
            return Err(Refusal::AnotherRebuild.into());
        }
        let result = match returning {
            Some(old) => match self.catch_up(spec, &old).await {
                Ok(report) => Ok(report),
                Err(why) => {
                    tracing::warn!(replica = %spec, reason = %why, "incremental catch-up not possible: full rebuild");
                    self.slots
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .retain(|s| !Arc::ptr_eq(s, &old));
                    self.rebuild(spec).await
                }
            },
            None => self.rebuild(spec).await,
        };
        self.rebuilding.store(false, Ordering::SeqCst);
        result
    }

    /// A replica that failed and came back with its data as it was: copy only the regions
    /// written while it was away (Longhorn would copy the whole replica again).
    async fn catch_up(
        &self,
        spec: &ReplicaSpec,
        old: &Arc<Slot>,
    ) -> Result<RebuildReport, EngineError> {
        const OP: &str = "catching up";
        let on_target = || EngineError::replica(OP, spec);
        if old.missed().whole {
            return Err(Refusal::ChangedWhileAway(spec.to_string()).into());
        }
        let (target, info) = self.open_target(spec, OP).await?;
        if info.rebuilding {
            return Err(Refusal::UnfinishedRebuild(spec.to_string()).into());
        }
        let source = self.first_rw(OP)?;
        let tree = |layers: Vec<LayerInfo>| {
            let head_parent = layers.iter().find(|l| l.is_head).map(|l| l.parent.clone());
            let snapshots: std::collections::BTreeSet<String> = layers
                .into_iter()
                .filter(|l| !l.is_head)
                .map(|l| l.file)
                .collect();
            (head_parent, snapshots)
        };
        let theirs = tree(target.layers().await.map_err(on_target())?);
        let ours = tree(
            source
                .layers()
                .await
                .map_err(EngineError::replica(OP, &source.spec))?,
        );
        if theirs != ours {
            return Err(Refusal::TreeDiffers(spec.to_string()).into());
        }
        let mut report = RebuildReport {
            replica: spec.to_string(),
            source: source.spec.to_string(),
            incremental: true,
            ..RebuildReport::default()
        };
        let regions = {
            let _paused = self.gate.write().await;
            target
                .timed(target.backend().set_rebuilding(true))
                .await
                .map_err(on_target())?;
            target.set_mode(Mode::WO);
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.retain(|s| !Arc::ptr_eq(s, old));
            slots.push(target.clone());
            let missed = std::mem::take(&mut *old.missed());
            report.bytes_written_while_away = missed.bytes_written;
            missed.regions
        };
        // Runs of missed regions, each copied while I/O is paused so no newer write to the
        // same region can be overtaken by the copy.
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for region in regions {
            match runs.last_mut() {
                Some((start, len))
                    if *start + *len == region * MISSED_REGION && *len < (1 << 20) =>
                {
                    *len += MISSED_REGION
                }
                _ => runs.push((region * MISSED_REGION, MISSED_REGION)),
            }
        }
        self.rebuild_done.store(0, Ordering::Relaxed);
        self.rebuild_total
            .store(runs.iter().map(|(_, len)| len).sum(), Ordering::Relaxed);
        for (start, len) in runs {
            let len = len.min(self.size().saturating_sub(start));
            let _paused = self.gate.write().await;
            let data = self.read_async(start, len as usize).await.map_err(|e| {
                EngineError::replica(OP, &source.spec)(CallError::Io(std::io::Error::other(e)))
            })?;
            let written = target.timed(target.backend().write(start, Arc::new(data), false));
            if let Err(e) = written.await {
                target.fail(&e);
                return Err(on_target()(e));
            }
            report.bytes_copied += len;
            self.rebuild_done.fetch_add(len, Ordering::Relaxed);
        }
        let _paused = self.gate.write().await;
        let revision = source
            .info()
            .await
            .map_err(EngineError::replica(OP, &source.spec))?
            .revision;
        let backend = target.backend();
        for step in [
            backend.set_revision(revision),
            backend.set_rebuilding(false),
        ] {
            if let Err(e) = target.timed(step).await {
                target.fail(&e);
                return Err(on_target()(e));
            }
        }
        target.set_mode(Mode::RW);
        tracing::info!(replica = %spec, copied = report.bytes_copied, written = report.bytes_written_while_away, "caught up incrementally: replica is RW");
        Ok(report)
    }

    /// Opens the replica to rebuild or catch up; it must have the volume's size.
    async fn open_target(
        &self,
        spec: &ReplicaSpec,
        op: &'static str,
    ) -> Result<(Arc<Slot>, ReplicaInfo), EngineError> {
        let on_target = || EngineError::replica(op, spec);
        let target = Slot::open(
            &self.volume,
            spec,
            self.size(),
            self.timeout,
            &self.locals,
            self.generation,
        )
        .await
        .map_err(on_target())?;
        let info = target.info().await.map_err(on_target())?;
        if info.size != self.size() {
            return Err(Refusal::SizeDiffers {
                replica: spec.to_string(),
                size: info.size,
                volume_size: self.size(),
            }
            .into());
        }
        Ok((Arc::new(target), info))
    }

    async fn rebuild(&self, spec: &ReplicaSpec) -> Result<RebuildReport, EngineError> {
        const OP: &str = "rebuilding";
        let on_target = || EngineError::replica(OP, spec);
        let (target, _) = self.open_target(spec, OP).await?;
        let source = self.first_rw(OP)?;
        let on_source = || EngineError::replica(OP, &source.spec);
        let mut report = RebuildReport {
            replica: spec.to_string(),
            source: source.spec.to_string(),
            ..RebuildReport::default()
        };
        // Snapshots are immutable: compare checksums before pausing I/O.
        let source_layers = source.layers().await.map_err(on_source())?;
        let target_layers = target.layers().await.map_err(on_target())?;
        let mut identical = std::collections::BTreeSet::new();
        for layer in source_layers.iter().filter(|l| !l.is_head) {
            if !target_layers
                .iter()
                .any(|t| t.file == layer.file && t.len == layer.len)
            {
                continue;
            }
            let file = layer.file.clone();
            let (a, b) = futures::join!(
                source.timed(source.backend().layer_checksum(file.clone())),
                target.timed(target.backend().layer_checksum(file.clone()))
            );
            if let (Ok(a), Ok(b)) = (a, b) {
                if a == b {
                    identical.insert(file);
                }
            }
        }

        let layers = {
            let _paused = self.gate.write().await;
            let name = system_snapshot_name();
            let snapshot = SnapshotSpec {
                name: name.clone(),
                user_created: false,
                created: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                    .to_string(),
                labels: Default::default(),
            };
            self.control_all("rebuilding: system snapshot", |b| {
                b.snapshot(snapshot.clone())
            })
            .await?;
            let mut layers = source.layers().await.map_err(on_source())?;
            layers.retain(|l| !l.is_head);
            for l in &mut layers {
                l.keep = identical.contains(&l.file);
            }
            let head_parent = format!("volume-snap-{name}.img");
            target
                .timed(
                    target
                        .backend()
                        .prepare_rebuild(head_parent, layers.clone()),
                )
                .await
                .map_err(on_target())?;
            target.set_mode(Mode::WO);
            self.slots
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(target.clone());
            tracing::info!(replica = %spec, source = %source.spec, "rebuild started: the new replica takes writes (WO)");
            layers
        };

        self.rebuild_done.store(0, Ordering::Relaxed);
        self.rebuild_total.store(
            layers.iter().filter(|l| !l.keep).map(|l| l.allocated).sum(),
            Ordering::Relaxed,
        );
        let copied = self
            .copy_layers(&source, &target, &layers, &mut report)
            .await;
        if let Err(e) = copied {
            target.fail(&e);
            return Err(e);
        }
        let _paused = self.gate.write().await;
        let revision = source.info().await.map_err(on_source())?.revision;
        if let Err(e) = target
            .timed(target.backend().finish_rebuild(revision))
            .await
        {
            target.fail(&e);
            return Err(on_target()(e));
        }
        target.set_mode(Mode::RW);
        tracing::info!(replica = %spec, bytes = report.bytes_copied, "rebuild finished: replica is RW");
        Ok(report)
    }

    async fn copy_layers(
        &self,
        source: &Slot,
        target: &Slot,
        layers: &[LayerInfo],
        report: &mut RebuildReport,
    ) -> Result<(), EngineError> {
        const CHUNK: u64 = 4 << 20;
        const COPIES_IN_FLIGHT: usize = 6;
        use futures::StreamExt;
        // From an in-process replica to a replica server, the kernel moves the data
        // (sendfile on a connection of its own); otherwise chunks pass through the engine.
        let on_target = |op: Cow<'static, str>| EngineError::replica(op, &target.spec);
        let on_source = |op: Cow<'static, str>| EngineError::replica(op, &source.spec);
        let mut sender = match (source.backend().in_process(), &target.spec) {
            (Some(_), ReplicaSpec::Remote(addr)) => {
                let mut sender = LayerSender::connect(addr, self.timeout)
                    .await
                    .map_err(|e| {
                        on_target("rebuilding: connecting for the copy".into())(CallError::Connect(
                            e,
                        ))
                    })?;
                if self.generation > 0 {
                    sender.claim(self.generation).await.map_err(|e| {
                        on_target("rebuilding: claiming the copy's connection".into())(
                            CallError::LayerSend(e),
                        )
                    })?;
                }
                Some(sender)
            }
            _ => None,
        };
        for layer in layers {
            if layer.keep {
                report.layers_skipped += 1;
                continue;
            }
            let extents = source
                .timed(source.backend().layer_extents(layer.file.clone()))
                .await
                .map_err(on_source(
                    format!("rebuilding: listing extents of {}", layer.file).into(),
                ))?;
            let mut chunks = Vec::new();
            for (start, end) in extents {
                let mut pos = start;
                while pos < end {
                    let n = (end - pos).min(CHUNK);
                    chunks.push((pos, n));
                    pos += n;
                }
            }
            if let (Some(sender), Some(replica)) = (&mut sender, source.backend().in_process()) {
                let handle = replica.read().layer_handle(&layer.file).map_err(|e| {
                    on_source(format!("rebuilding: opening {}", layer.file).into())(e.into())
                })?;
                report.bytes_copied += sender
                    .send(
                        &layer.file,
                        &handle,
                        &chunks,
                        COPIES_IN_FLIGHT,
                        &self.rebuild_done,
                    )
                    .await
                    .map_err(|e| {
                        on_target(format!("rebuilding: copying {}", layer.file).into())(e.into())
                    })?;
                report.layers_copied += 1;
                continue;
            }
            // Several chunks in flight: reading the source and writing the target overlap.
            let file = &layer.file;
            let copies = futures::stream::iter(chunks.into_iter().map(|(pos, n)| async move {
                let data = source
                    .timed(source.backend().read_layer(file, pos, n as u32))
                    .await
                    .map_err(|e| on_source(format!("rebuilding: reading {file}").into())(e))?;
                let data = Arc::new(data);
                target
                    .timed(target.backend().write_layer(file, pos, data.clone()))
                    .await
                    .map_err(|e| on_target(format!("rebuilding: writing {file}").into())(e))?;
                if let Ok(buffer) = Arc::try_unwrap(data) {
                    ironhorn_runtime::buffers::give(buffer);
                }
                Ok::<u64, EngineError>(n)
            }))
            .buffer_unordered(COPIES_IN_FLIGHT);
            futures::pin_mut!(copies);
            while let Some(copied) = futures::StreamExt::next(&mut copies).await {
                let copied = copied?;
                report.bytes_copied += copied;
                self.rebuild_done.fetch_add(copied, Ordering::Relaxed);
            }
            report.layers_copied += 1;
        }
        Ok(())
    }
}

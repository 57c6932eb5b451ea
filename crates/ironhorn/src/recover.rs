//! `ironhorn recover`: read-only tools for a replica directory when the cluster is gone.
//!
//! `inspect` shows what the directory holds; `export` writes the logical volume (at the head
//! or at a snapshot) as a raw image, holes kept; `serve` exposes it over NBD. Only
//! `serve --writable` writes into the directory.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use ironhorn_engine::ReplicaDevice;
use ironhorn_format::chain::{Layout, Warning};
use ironhorn_format::names;
use ironhorn_frontend::nbd::{nbd_uri, serve as serve_nbd, Export};
use ironhorn_replica::{Chunk, Replica, ReplicaOptions, StreamError, StreamOptions};
use ironhorn_runtime::net::{Addr, Listener};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::units::human_size;

#[derive(Debug, Subcommand)]
pub enum RecoverCommand {
    /// Show a replica directory: volume, size, head, flags, revision counter, the snapshot
    /// tree and warnings.
    Inspect(InspectArgs),
    /// Write the logical volume (head or a snapshot) as a raw image; holes stay holes.
    Export(ExportArgs),
    /// Serve the volume (head or a snapshot) over NBD; read-only unless --writable.
    Serve(ServeArgs),
    /// Write a backup from a backup target (file://, nfs://, s3://) as a raw image: no
    /// cluster, no manager, only the target.
    Backup(crate::recover_backup::BackupArgs),
    /// List the backup volumes of a backup target, or the backups of one volume.
    Backups(crate::recover_backup::ListArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Replica directory (holds volume.meta and volume-*.img files).
    pub dir: PathBuf,
    /// Listen address: HOST:PORT or unix:PATH.
    #[arg(long, default_value = "127.0.0.1:10809")]
    pub nbd: Addr,
    /// Serve this snapshot instead of the head (always read-only).
    #[arg(long)]
    pub snapshot: Option<String>,
    /// Accept writes into the head (the directory is then changed: repaired, marked dirty
    /// while served, cleanly closed on SIGINT/SIGTERM).
    #[arg(long, conflicts_with = "snapshot")]
    pub writable: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Replica directory (holds volume.meta and volume-*.img files).
    pub dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Replica directory (holds volume.meta and volume-*.img files).
    pub dir: PathBuf,
    /// Where to write the raw image: a file, a block device, or `-` for standard output.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Export this snapshot instead of the head (`volume-head` is the head).
    #[arg(long)]
    pub snapshot: Option<String>,
    /// Print the SHA-256 of the whole logical volume as `sha256:<hex>`.
    #[arg(long)]
    pub sha256: bool,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(cmd: RecoverCommand) -> Result<()> {
    match cmd {
        RecoverCommand::Inspect(args) => inspect(&args),
        RecoverCommand::Export(args) => export(&args),
        RecoverCommand::Serve(args) => serve(&args),
        RecoverCommand::Backup(args) => crate::recover_backup::restore(&args),
        RecoverCommand::Backups(args) => crate::recover_backup::list(&args),
    }
}

fn open_read_only(dir: &Path, snapshot: Option<String>) -> Result<Replica> {
    Replica::open(
        dir,
        &ReplicaOptions {
            read_only: true,
            snapshot,
        },
    )
    .with_context(|| format!("opening replica directory {}", dir.display()))
}

/// One snapshot (or the head) as `inspect` reports it.
#[derive(Debug, Serialize)]
struct LayerReport {
    name: String,
    file: String,
    parent: String,
    children: Vec<String>,
    created: String,
    user_created: bool,
    removed: bool,
    labels: BTreeMap<String, String>,
    /// Bytes allocated on disk for this layer's image.
    allocated_bytes: u64,
    /// Apparent length of the image file.
    file_size: u64,
    on_live_chain: bool,
}

#[derive(Debug, Serialize)]
struct InspectReport {
    directory: String,
    volume: String,
    size: u64,
    head: String,
    parent: String,
    dirty: bool,
    rebuilding: bool,
    revision_counter: u64,
    sector_size: u64,
    backing_file: String,
    /// Live chain, newest first (head first).
    chain: Vec<String>,
    snapshots: Vec<LayerReport>,
    warnings: Vec<String>,
}

fn build_report(dir: &Path, replica: &Replica) -> InspectReport {
    let layout = replica.layout();
    let dir_name = dir
        .canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let vm = &layout.volume_meta;
    let mut snapshots: Vec<LayerReport> = layout
        .layers
        .iter()
        .map(|(file, node)| LayerReport {
            name: names::display_name(file),
            file: file.clone(),
            parent: if node.meta.parent.is_empty() {
                String::new()
            } else {
                names::display_name(&node.meta.parent)
            },
            children: node
                .children
                .iter()
                .map(|c| names::display_name(c))
                .collect(),
            created: node.meta.created.clone(),
            user_created: node.meta.user_created,
            removed: node.meta.removed,
            labels: node.meta.labels(),
            allocated_bytes: node.image.allocated,
            file_size: node.image.len,
            on_live_chain: layout.chain.contains(file),
        })
        .collect();
    // Live chain newest first, then the other branches by creation time.
    let position = |r: &LayerReport| layout.chain.iter().position(|c| *c == r.file);
    snapshots.sort_by(|a, b| match (position(a), position(b)) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.created.cmp(&b.created).then(a.name.cmp(&b.name)),
    });
    InspectReport {
        directory: dir.display().to_string(),
        volume: names::volume_name_from_dir(&dir_name).to_string(),
        size: vm.size,
        head: vm.head.clone(),
        parent: vm.parent.clone(),
        dirty: vm.dirty,
        rebuilding: vm.rebuilding,
        revision_counter: replica.revision(),
        sector_size: vm.sector_size,
        backing_file: vm.backing_file_path.clone(),
        chain: layout
            .chain
            .iter()
            .rev()
            .map(|c| names::display_name(c))
            .collect(),
        snapshots,
        warnings: replica.warnings().iter().map(ToString::to_string).collect(),
    }
}

fn inspect(args: &InspectArgs) -> Result<()> {
    let replica = open_read_only(&args.dir, None)?;
    let report = build_report(&args.dir, &replica);
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "Directory:         {}", report.directory)?;
    writeln!(out, "Volume:            {}", report.volume)?;
    writeln!(
        out,
        "Size:              {} ({} bytes)",
        human_size(report.size),
        report.size
    )?;
    writeln!(out, "Head:              {}", report.head)?;
    writeln!(out, "Dirty:             {}", report.dirty)?;
    writeln!(out, "Rebuilding:        {}", report.rebuilding)?;
    writeln!(out, "Revision counter:  {}", report.revision_counter)?;
    if !report.backing_file.is_empty() {
        writeln!(out, "Backing file:      {}", report.backing_file)?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<40} {:<22} {:<7} {:<8} {:>12}  LABELS",
        "SNAPSHOT", "CREATED", "TYPE", "REMOVED", "ALLOCATED"
    )?;
    for s in &report.snapshots {
        let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        writeln!(
            out,
            "{:<40} {:<22} {:<7} {:<8} {:>12}  {}",
            format!(
                "{}{}",
                if s.on_live_chain { "" } else { "(branch) " },
                s.name
            ),
            s.created,
            if s.name == names::HEAD_DISPLAY_NAME {
                "head"
            } else if s.user_created {
                "user"
            } else {
                "system"
            },
            if s.removed { "yes" } else { "no" },
            human_size(s.allocated_bytes),
            labels.join(",")
        )?;
    }
    writeln!(out)?;
    writeln!(out, "Tree (* = live chain):")?;
    write_tree(&mut out, replica.layout())?;
    if !report.warnings.is_empty() {
        writeln!(out)?;
        writeln!(out, "Warnings:")?;
        for w in &report.warnings {
            writeln!(out, "  - {w}")?;
        }
    }
    Ok(())
}

fn write_tree(out: &mut impl Write, layout: &Layout) -> io::Result<()> {
    let roots: Vec<&String> = layout
        .layers
        .iter()
        .filter(|(_, n)| n.meta.parent.is_empty() || !layout.layers.contains_key(&n.meta.parent))
        .map(|(name, _)| name)
        .collect();
    let mut stack: Vec<(&String, usize)> = roots.into_iter().rev().map(|r| (r, 0)).collect();
    let mut printed = 0;
    while let Some((name, depth)) = stack.pop() {
        printed += 1;
        if printed > layout.layers.len() {
            break;
        }
        let live = if layout.chain.contains(name) {
            "*"
        } else {
            " "
        };
        let indent = "   ".repeat(depth);
        let branch = if depth == 0 { "" } else { "└─ " };
        writeln!(
            out,
            "  {live} {indent}{branch}{}",
            names::display_name(name)
        )?;
        if let Some(node) = layout.node(name) {
            for child in node.children.iter().rev() {
                stack.push((child, depth + 1));
            }
        }
    }
    Ok(())
}

pub(crate) enum Sink {
    /// A regular file: holes are skipped and stay holes.
    Sparse(File),
    /// A stream or device: every byte is written, holes as zeros.
    Stream(Box<dyn Write>),
}

fn open_sink(args: &ExportArgs, size: u64) -> Result<Sink> {
    let dir = args
        .dir
        .canonicalize()
        .context("resolving the replica directory")?;
    open_output(&args.output, args.force, size, Some(&dir))
}

/// Opens where an image goes: `-` (standard output) or a device as a stream, a regular
/// file (created, or replaced with `force`) sized to `size` so holes stay holes. Refuses
/// a file inside `protected`.
pub(crate) fn open_output(
    out: &Path,
    force: bool,
    size: u64,
    protected: Option<&Path>,
) -> Result<Sink> {
    if out.as_os_str() == "-" {
        return Ok(Sink::Stream(Box::new(io::BufWriter::with_capacity(
            1 << 20,
            io::stdout().lock(),
        ))));
    }
    let out_parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .canonicalize()
        .with_context(|| format!("the directory of {} does not exist", out.display()))?;
    if let Some(dir) = protected.filter(|dir| out_parent.starts_with(dir)) {
        bail!(
            "refusing to write {} inside the replica directory {}: export never writes into it",
            out.display(),
            dir.display()
        );
    }
    match std::fs::metadata(out) {
        Ok(md) if md.file_type().is_file() && !force => {
            bail!("{} exists; pass --force to overwrite it", out.display())
        }
        Ok(md) if !md.file_type().is_file() => {
            let file = OpenOptions::new()
                .write(true)
                .open(out)
                .with_context(|| format!("opening {}", out.display()))?;
            return Ok(Sink::Stream(Box::new(io::BufWriter::with_capacity(
                1 << 20,
                file,
            ))));
        }
        _ => {}
    }
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    file.set_len(size)
        .with_context(|| format!("sizing {}", out.display()))?;
    Ok(Sink::Sparse(file))
}

static ZEROS: [u8; 1 << 16] = [0u8; 1 << 16];

/// A progress bar over `size` bytes on a terminal's stderr (hidden otherwise).
pub(crate) fn byte_progress(size: u64) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(size);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Accounts `len` bytes of zeros: hashed, and written into a stream (a sparse file keeps
/// the hole).
pub(crate) fn write_zeros(
    sink: &mut Sink,
    hasher: &mut Option<Sha256>,
    mut len: u64,
) -> io::Result<()> {
    while len > 0 {
        let n = len.min(ZEROS.len() as u64) as usize;
        if let Some(h) = hasher.as_mut() {
            h.update(&ZEROS[..n]);
        }
        if let Sink::Stream(w) = sink {
            w.write_all(&ZEROS[..n])?;
        }
        len -= n as u64;
    }
    Ok(())
}

fn export(args: &ExportArgs) -> Result<()> {
    let replica = open_read_only(&args.dir, args.snapshot.clone())?;
    for warning in replica.warnings() {
        // Checksums are about re-hashing, not about the data being exported.
        if !matches!(warning, Warning::StaleChecksum(_)) {
            eprintln!("warning: {warning}");
        }
    }
    let size = replica.size();
    let mut sink = open_sink(args, size)?;
    let progress = byte_progress(size);
    let mut hasher = args.sha256.then(Sha256::new);
    let mut data_bytes = 0u64;
    let what = args.snapshot.as_deref().unwrap_or("the head");
    replica.advise_sequential();
    let streamed = replica.stream(
        StreamOptions::default(),
        |offset, chunk| -> io::Result<()> {
            match chunk {
                Chunk::Hole(len) => {
                    write_zeros(&mut sink, &mut hasher, len)?;
                    progress.inc(len);
                }
                Chunk::Data(bytes) => {
                    if let Some(h) = hasher.as_mut() {
                        h.update(bytes);
                    }
                    match &mut sink {
                        Sink::Sparse(file) => file.write_all_at(bytes, offset)?,
                        Sink::Stream(w) => w.write_all(bytes)?,
                    }
                    data_bytes += bytes.len() as u64;
                    progress.inc(bytes.len() as u64);
                }
            }
            Ok(())
        },
    );
    match streamed {
        Ok(()) => {}
        Err(StreamError::Read(e)) => {
            return Err(anyhow::Error::new(e).context(format!("reading {what}")))
        }
        Err(StreamError::Visit(e)) => {
            return Err(anyhow::Error::new(e).context("writing the output"))
        }
    }
    match &mut sink {
        Sink::Sparse(file) => file.sync_all().context("flushing the output")?,
        Sink::Stream(w) => w.flush().context("flushing the output")?,
    }
    progress.finish_and_clear();
    let to_stdout = args.output.as_os_str() == "-";
    eprintln!(
        "exported {} ({} of data) of {} from {}{}",
        human_size(size),
        human_size(data_bytes),
        what,
        args.dir.display(),
        if to_stdout {
            String::new()
        } else {
            format!(" to {}", args.output.display())
        }
    );
    if let Some(h) = hasher {
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        if to_stdout {
            eprintln!("sha256:{hex}");
        } else {
            println!("sha256:{hex}");
        }
    }
    Ok(())
}

fn serve(args: &ServeArgs) -> Result<()> {
    let replica = Replica::open(
        &args.dir,
        &ReplicaOptions {
            read_only: !args.writable,
            snapshot: args.snapshot.clone(),
        },
    )
    .with_context(|| format!("opening replica directory {}", args.dir.display()))?;
    for warning in replica.warnings() {
        if !matches!(warning, Warning::StaleChecksum(_)) {
            eprintln!("warning: {warning}");
        }
    }
    let dir_name = args
        .dir
        .canonicalize()
        .unwrap_or_else(|_| args.dir.clone())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let volume = names::volume_name_from_dir(&dir_name).to_string();
    let size = replica.size();
    let device = Arc::new(ReplicaDevice::new(replica));
    let export = Arc::new(Export::new(
        &volume,
        &format!(
            "{} of {}",
            args.snapshot.as_deref().unwrap_or("head"),
            args.dir.display()
        ),
        device.clone(),
    ));
    crate::runtime::run_until_signal(|shutdown| async move {
        let listener = Listener::bind(&args.nbd)
            .await
            .with_context(|| format!("listening on {}", args.nbd))?;
        eprintln!(
            "serving {} of volume {volume} ({}, {}) at {}",
            args.snapshot.as_deref().unwrap_or("the head"),
            human_size(size),
            if args.writable {
                "read-write"
            } else {
                "read-only"
            },
            nbd_uri(&listener.local_addr(), &volume)
        );
        serve_nbd(listener, export, shutdown).await;
        Ok(())
    })?;
    // Every connection has ended, so nothing else holds the replica.
    let replica = Arc::try_unwrap(device)
        .ok()
        .and_then(ReplicaDevice::into_inner)
        .context("the replica is still in use after the server stopped; it was not closed")?;
    replica.close().context("closing the replica")?;
    eprintln!("stopped; the replica was flushed and closed");
    Ok(())
}

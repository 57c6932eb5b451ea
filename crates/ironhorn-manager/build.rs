//! Builds the web UI (`ui/`, with npm) and embeds it: the files land in `OUT_DIR/ui`, each
//! text file also gzip-compressed beside it, and `OUT_DIR/ui_assets.rs` lists them for
//! `src/ui.rs` to serve.
//!
//! - `IRONHORN_UI_DIST=DIR` embeds an already built UI instead of building one.
//! - Without npm the binary gets a page that says how to build the UI (the API works all
//!   the same), with a cargo warning; `IRONHORN_UI_REQUIRED=1` (CI sets it) makes that an
//!   error instead.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const FALLBACK_PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Ironhorn</title></head>\
<body><h1>Ironhorn</h1><p>This binary was built without its web UI, because npm was not found. \
Install Node.js (18 or newer) with npm and build again (<code>cargo build</code> builds <code>ui/</code>), \
or set IRONHORN_UI_DIST to a built <code>ui/dist</code>. The REST API is at <code>/v1</code> \
(described at <code>/v1/openapi.json</code>).</p></body></html>\n";

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    let ui = manifest.join("../../ui");
    println!("cargo:rerun-if-env-changed=IRONHORN_UI_DIST");
    println!("cargo:rerun-if-env-changed=IRONHORN_UI_REQUIRED");

    let dist = match std::env::var_os("IRONHORN_UI_DIST") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            println!("cargo:rerun-if-changed={}", dir.display());
            dir
        }
        None => {
            watch_sources(&ui);
            let dist = out.join("ui");
            match build_ui(&ui, &dist) {
                Ok(()) => dist,
                Err(why) => {
                    if std::env::var("IRONHORN_UI_REQUIRED").as_deref() == Ok("1") {
                        panic!("building the web UI: {why}");
                    }
                    println!("cargo:warning=the web UI is not built into this binary: {why}");
                    let fallback = out.join("ui-fallback");
                    std::fs::create_dir_all(&fallback).expect("OUT_DIR is writable");
                    std::fs::write(fallback.join("index.html"), FALLBACK_PAGE)
                        .expect("OUT_DIR is writable");
                    fallback
                }
            }
        }
    };
    let listing = embed(&dist, &out.join("ui-gzip")).expect("reading the built UI");
    std::fs::write(out.join("ui_assets.rs"), listing).expect("OUT_DIR is writable");
}

/// Tells cargo which files the UI is built from (the generated API types excluded: the
/// build writes them, and watching them would rebuild every time).
fn watch_sources(ui: &Path) {
    for name in [
        "package.json",
        "package-lock.json",
        "index.html",
        "vite.config.ts",
        "tsconfig.json",
        "public",
        "../api/openapi.json",
    ] {
        println!("cargo:rerun-if-changed={}", ui.join(name).display());
    }
    let mut stack = vec![ui.join("src")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "generated") {
                    stack.push(path);
                }
            } else {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}

/// `npm ci` when the installed packages are missing or older than the lock file, then
/// `npm run build` into `dist`.
fn build_ui(ui: &Path, dist: &Path) -> Result<(), String> {
    if !ui.join("package.json").exists() {
        return Err(format!("{} has no package.json", ui.display()));
    }
    let npm = std::env::var("NPM").unwrap_or_else(|_| "npm".to_string());
    let installed = ui.join("node_modules/.package-lock.json");
    let stale = match (
        modified(&installed),
        modified(&ui.join("package-lock.json")),
    ) {
        (Some(installed), Some(lock)) => installed < lock,
        _ => true,
    };
    if stale {
        run(Command::new(&npm)
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(ui))?;
    }
    run(Command::new(&npm)
        .args(["run", "build", "--silent"])
        .env("IRONHORN_UI_OUT", dist)
        .current_dir(ui))?;
    if !dist.join("index.html").exists() {
        return Err(format!(
            "npm run build left no {}",
            dist.join("index.html").display()
        ));
    }
    Ok(())
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .map_err(|e| format!("{shown}: {e} (is Node.js with npm installed?)"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{shown} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// Lists every file under `dist` as Rust source, with a gzip copy (under `gzip_dir`) of the
/// text ones it makes smaller.
fn embed(dist: &Path, gzip_dir: &Path) -> std::io::Result<String> {
    let mut files = Vec::new();
    let mut stack = vec![dist.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    std::fs::create_dir_all(gzip_dir)?;
    let mut listing = String::from(
        "/// The UI's files, as built into this binary.\npub(crate) static ASSETS: &[Asset] = &[\n",
    );
    for (i, file) in files.iter().enumerate() {
        let relative = file
            .strip_prefix(dist)
            .map_err(std::io::Error::other)?
            .to_string_lossy()
            .replace('\\', "/");
        let body = std::fs::read(file)?;
        let content_type = content_type(&relative);
        let gzip = if content_type.starts_with("text/")
            || content_type.contains("javascript")
            || content_type.contains("json")
            || content_type.contains("svg")
        {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            encoder.write_all(&body)?;
            let compressed = encoder.finish()?;
            (compressed.len() < body.len()).then_some(compressed)
        } else {
            None
        };
        let gzip = match gzip {
            Some(bytes) => {
                let path = gzip_dir.join(format!("{i}.gz"));
                std::fs::write(&path, bytes)?;
                format!("Some(include_bytes!({:?}))", path.display().to_string())
            }
            None => "None".to_string(),
        };
        let _ = writeln!(
            listing,
            "    Asset {{ path: {:?}, content_type: {:?}, etag: \"\\\"{:016x}\\\"\", body: include_bytes!({:?}), gzip: {gzip} }},",
            format!("/{relative}"),
            content_type,
            fnv1a(&body),
            file.display().to_string(),
        );
    }
    listing.push_str("];\n");
    Ok(listing)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// A stable 64-bit digest of a file, for its ETag.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

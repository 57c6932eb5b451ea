//! A backup target in a local directory (`file:///path`, Longhorn's `vfs`): atomic writes
//! by temp file, fsync, rename, fsync of the directory; empty directories pruned on delete.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{check_path, temp_name, Driver, DriverError, DriverFuture, Entry};

#[derive(Debug, Clone)]
pub struct FileDriver {
    root: PathBuf,
}

impl FileDriver {
    /// A driver rooted at `root`, which must be an existing directory.
    pub fn open(root: &Path) -> Result<FileDriver, DriverError> {
        match fs::metadata(root) {
            Ok(m) if m.is_dir() => Ok(FileDriver {
                root: root.to_path_buf(),
            }),
            Ok(_) => Err(DriverError::new(
                super::DriverErrorKind::Other,
                format!("{}: not a directory", root.display()),
            )),
            Err(e) => Err(DriverError::from_io(&root.display().to_string(), &e)),
        }
    }

    fn full(&self, path: &str) -> Result<PathBuf, DriverError> {
        check_path(path)?;
        Ok(self.root.join(path))
    }

    async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> Result<T, DriverError> + Send + 'static,
    ) -> Result<T, DriverError> {
        tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
            Err(DriverError::new(
                super::DriverErrorKind::Other,
                format!("file driver task failed: {e}"),
            ))
        })
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> DriverError + '_ {
    move |e| DriverError::from_io(&path.display().to_string(), &e)
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), DriverError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(temp_name(&name));
    let result = (|| {
        let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(data).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, path).map_err(io_err(path))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes now-empty directories above `path`, at most two levels (blocks/xx/yy).
fn prune_empty_parents(path: &Path) {
    let mut dir = path.parent();
    for _ in 0..2 {
        match dir {
            Some(d) if fs::remove_dir(d).is_ok() => dir = d.parent(),
            _ => break,
        }
    }
}

fn walk(base: &Path, rel: &str, out: &mut Vec<String>) -> Result<(), DriverError> {
    let dir = if rel.is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    };
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(DriverError::from_io(&dir.display().to_string(), &e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(&dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if entry.file_type().map_err(io_err(&dir))?.is_dir() {
            walk(base, &child, out)?;
        } else {
            out.push(child);
        }
    }
    Ok(())
}

impl Driver for FileDriver {
    fn read<'a>(&'a self, path: &'a str) -> DriverFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let full = self.full(path)?;
            Self::blocking(move || fs::read(&full).map_err(io_err(&full))).await
        })
    }

    fn write<'a>(&'a self, path: &'a str, data: Vec<u8>) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let full = self.full(path)?;
            Self::blocking(move || write_atomic(&full, &data)).await
        })
    }

    fn modified<'a>(&'a self, path: &'a str) -> DriverFuture<'a, Option<SystemTime>> {
        Box::pin(async move {
            let full = self.full(path)?;
            Self::blocking(move || match fs::metadata(&full) {
                Ok(m) => Ok(Some(m.modified().map_err(io_err(&full))?)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(DriverError::from_io(&full.display().to_string(), &e)),
            })
            .await
        })
    }

    fn list<'a>(&'a self, dir: &'a str) -> DriverFuture<'a, Vec<Entry>> {
        Box::pin(async move {
            let full = self.full(dir)?;
            Self::blocking(move || {
                let entries = match fs::read_dir(&full) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(DriverError::from_io(&full.display().to_string(), &e)),
                };
                let mut out = Vec::new();
                for entry in entries {
                    let entry = entry.map_err(io_err(&full))?;
                    out.push(Entry {
                        name: entry.file_name().to_string_lossy().into_owned(),
                        is_dir: entry.file_type().map_err(io_err(&full))?.is_dir(),
                    });
                }
                out.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(out)
            })
            .await
        })
    }

    fn list_recursive<'a>(&'a self, dir: &'a str) -> DriverFuture<'a, Vec<String>> {
        Box::pin(async move {
            let full = self.full(dir)?;
            Self::blocking(move || {
                let mut out = Vec::new();
                walk(&full, "", &mut out)?;
                out.sort();
                Ok(out)
            })
            .await
        })
    }

    fn delete<'a>(&'a self, path: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let full = self.full(path)?;
            Self::blocking(move || match fs::remove_file(&full) {
                Ok(()) => {
                    prune_empty_parents(&full);
                    Ok(())
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(DriverError::from_io(&full.display().to_string(), &e)),
            })
            .await
        })
    }

    fn delete_tree<'a>(&'a self, dir: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let full = self.full(dir)?;
            Self::blocking(move || match fs::remove_dir_all(&full) {
                Ok(()) => {
                    prune_empty_parents(&full);
                    Ok(())
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(DriverError::from_io(&full.display().to_string(), &e)),
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_are_atomic_and_listing_sees_only_finished_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = FileDriver::open(dir.path()).expect("open");
        d.write("a/b/c.cfg", b"one".to_vec()).await.expect("write");
        d.write("a/b/c.cfg", b"two".to_vec())
            .await
            .expect("rewrite");
        assert_eq!(d.read("a/b/c.cfg").await.ok(), Some(b"two".to_vec()));
        let names: Vec<String> = d
            .list("a/b")
            .await
            .expect("list")
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, vec!["c.cfg".to_string()]);
        assert!(d.read("a/nope").await.is_err_and(|e| e.is_not_found()));
        assert!(d.exists("a/b/c.cfg").await.unwrap_or(false));
        assert_eq!(
            d.list_recursive("a").await.ok(),
            Some(vec!["b/c.cfg".to_string()])
        );
        d.delete("a/b/c.cfg").await.expect("delete");
        d.delete("a/b/c.cfg").await.expect("delete again");
        assert!(!dir.path().join("a").exists(), "empty parents pruned");
        assert!(d.read("../etc/passwd").await.is_err());
        assert!(d.list("missing").await.is_ok_and(|l| l.is_empty()));
    }
}

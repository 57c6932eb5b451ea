//! An NFSv3 target (`nfs://server:/export/path`) spoken from user space: no kernel mount,
//! so a dead server costs a timeout and an error, never a hung node. MOUNT once for the
//! root handle, then a small pool of NFS connections (each call sequence holds one;
//! a connection is dropped, never reused, after a transport error or a timeout). Writes go
//! to `<name>.tmp.<nanos>`, UNSTABLE then COMMIT (verifier checked), then RENAME.
//! Ports come from the portmapper unless `nfsOptions=port=N,mountport=N` names them.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use nfs3_client::net::Connector;
use nfs3_client::nfs3_types::nfs3::{
    self, createhow3, diropargs3, filename3, ftype3, nfs_fh3, nfsstat3, sattr3, stable_how,
    Nfs3Option, Nfs3Result,
};
use nfs3_client::nfs3_types::rpc::{auth_unix, opaque_auth};
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::tokio::{TokioConnector, TokioIo};
use nfs3_client::{Nfs3Client, Nfs3ConnectionBuilder, RpcError};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::{check_path, temp_name, Driver, DriverError, DriverErrorKind, DriverFuture, Entry};

type Client = Nfs3Client<TokioIo<TcpStream>>;

const MAX_CONNECTIONS: usize = 8;
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const MOUNT_TIMEOUT: Duration = Duration::from_secs(15);
const IO_CAP: u32 = 1 << 20;

/// What went wrong in a sequence of NFS calls.
#[derive(Debug)]
enum NfsErr {
    Rpc(RpcError),
    Status(nfsstat3, &'static str),
    Driver(DriverError),
}

impl From<RpcError> for NfsErr {
    fn from(e: RpcError) -> Self {
        NfsErr::Rpc(e)
    }
}

impl NfsErr {
    fn is_noent(&self) -> bool {
        matches!(self, NfsErr::Status(nfsstat3::NFS3ERR_NOENT, _))
    }

    fn connection_reusable(&self) -> bool {
        match self {
            NfsErr::Rpc(e) => e.is_connection_reusable(),
            _ => true,
        }
    }

    fn into_driver(self, server: &str, path: &str) -> DriverError {
        let at = format!("nfs://{server}: {path}");
        match self {
            NfsErr::Driver(e) => e,
            NfsErr::Rpc(RpcError::Io(e)) => DriverError::new(
                DriverErrorKind::Unreachable,
                format!("{at}: connection to the NFS server failed: {e}"),
            ),
            NfsErr::Rpc(e) => DriverError::new(DriverErrorKind::Other, format!("{at}: {e}")),
            NfsErr::Status(status, op) => {
                let kind = match status {
                    nfsstat3::NFS3ERR_NOENT => DriverErrorKind::NotFound,
                    nfsstat3::NFS3ERR_ACCES | nfsstat3::NFS3ERR_PERM | nfsstat3::NFS3ERR_ROFS => {
                        DriverErrorKind::Denied
                    }
                    nfsstat3::NFS3ERR_NOSPC | nfsstat3::NFS3ERR_DQUOT => DriverErrorKind::NoSpace,
                    nfsstat3::NFS3ERR_JUKEBOX => DriverErrorKind::Unreachable,
                    _ => DriverErrorKind::Other,
                };
                let hint = match kind {
                    DriverErrorKind::Denied => {
                        "; check the export's permissions (rw, no_root_squash)"
                    }
                    DriverErrorKind::NoSpace => {
                        "; the export is full: free space or delete old backups"
                    }
                    _ => "",
                };
                DriverError::new(kind, format!("{at}: {op} failed with {status}{hint}"))
            }
        }
    }
}

fn ok<T, E>(r: Nfs3Result<T, E>, op: &'static str) -> Result<T, NfsErr> {
    match r {
        Nfs3Result::Ok(v) => Ok(v),
        Nfs3Result::Err((status, _)) => Err(NfsErr::Status(status, op)),
    }
}

fn name(s: &str) -> filename3<'_> {
    filename3(Opaque::borrowed(s.as_bytes()))
}

fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

pub struct NfsDriver {
    server: String,
    addr: SocketAddr,
    root: nfs_fh3,
    credential: opaque_auth<'static>,
    privileged: bool,
    rmax: u32,
    wmax: u32,
    idle: Mutex<Vec<Client>>,
    slots: Semaphore,
    /// Handles of directories below the root, by path.
    dirs: Mutex<HashMap<String, nfs_fh3>>,
}

impl std::fmt::Debug for NfsDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NfsDriver")
            .field("server", &self.server)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// A connection on loan for one call sequence, with its concurrency slot.
struct Lease<'a> {
    client: Option<Client>,
    _slot: SemaphorePermit<'a>,
}

/// Runs `$call` (an expression using `$c: &mut Client`) on a leased connection with a
/// timeout, and settles the lease.
macro_rules! on_connection {
    ($driver:expr, $path:expr, |$c:ident| $call:expr) => {{
        let mut lease = $driver.checkout($path).await?;
        let outcome = match lease.client.as_mut() {
            Some($c) => tokio::time::timeout(CALL_TIMEOUT, $call).await,
            None => Ok(Err(NfsErr::Driver(DriverError::new(
                DriverErrorKind::Other,
                "no connection",
            )))),
        };
        $driver.finish(lease, $path, outcome)
    }};
}

impl NfsDriver {
    /// Mounts `path` on `server` (or, if the server exports a parent of it, that parent,
    /// then looks up the rest).
    pub async fn connect(
        server: &str,
        path: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<NfsDriver, DriverError> {
        let unreachable = |what: String| DriverError::new(DriverErrorKind::Unreachable, what);
        let ip: IpAddr = match server.parse() {
            Ok(ip) => ip,
            Err(_) => tokio::net::lookup_host((server, 0))
                .await
                .map_err(|e| {
                    unreachable(format!(
                        "nfs://{server}: cannot resolve the server name: {e}"
                    ))
                })?
                .map(|a| a.ip())
                .find(IpAddr::is_ipv4)
                .ok_or_else(|| {
                    unreachable(format!("nfs://{server}: the name has no IPv4 address"))
                })?,
        };
        let port = |k: &str| options.get(k).and_then(|v| v.parse::<u16>().ok());
        let credential = opaque_auth::auth_unix(&auth_unix {
            machinename: Opaque::owned(b"ironhorn".to_vec()),
            ..Default::default()
        });
        let privileged = rustix::process::geteuid().is_root();
        let mut candidates = vec![path.to_string()];
        let mut p = path;
        while let Some((parent, _)) = p.rsplit_once('/') {
            candidates.push(if parent.is_empty() {
                "/".to_string()
            } else {
                parent.to_string()
            });
            p = parent;
        }
        let mut last_error = String::new();
        for export in candidates {
            let mut builder = Nfs3ConnectionBuilder::new(TokioConnector, ip.to_string(), &export)
                .credential(credential.clone())
                .connect_from_privileged_port(privileged);
            if let Some(p) = port("mountport") {
                builder = builder.mount_port(p);
            }
            if let Some(p) = port("port").or(port("nfsport")) {
                builder = builder.nfs3_port(p);
            }
            let conn = match tokio::time::timeout(MOUNT_TIMEOUT, builder.mount()).await {
                Err(_) => {
                    return Err(unreachable(format!(
                    "nfs://{server}:{path}: no answer within {}s; check the server and the ports",
                    MOUNT_TIMEOUT.as_secs()
                )))
                }
                Ok(Err(nfs3_client::ConnectError::Mount(e))) => {
                    last_error = e.to_string();
                    continue;
                }
                Ok(Err(e)) => {
                    return Err(unreachable(format!(
                        "nfs://{server}:{path}: cannot reach the NFS server: {e}"
                    )))
                }
                Ok(Ok(conn)) => conn,
            };
            let addr = SocketAddr::new(ip, conn.nfs3_port);
            let export_root = conn.root_nfs_fh3();
            let mut client = conn.into_nfs3_client();
            let info = ok(
                client
                    .fsinfo(&nfs3::FSINFO3args {
                        fsroot: export_root.clone(),
                    })
                    .await
                    .map_err(|e| NfsErr::Rpc(e).into_driver(server, path))?,
                "FSINFO",
            )
            .map_err(|e| e.into_driver(server, path))?;
            let mut driver = NfsDriver {
                server: server.to_string(),
                addr,
                root: export_root,
                credential: credential.clone(),
                privileged,
                rmax: info.rtmax.clamp(4096, IO_CAP),
                wmax: info.wtmax.clamp(4096, IO_CAP),
                idle: Mutex::new(Vec::new()),
                slots: Semaphore::new(MAX_CONNECTIONS),
                dirs: Mutex::new(HashMap::new()),
            };
            // The part of the URL path below the mounted export.
            let rest = path
                .strip_prefix(export.as_str())
                .unwrap_or("")
                .trim_matches('/')
                .to_string();
            if !rest.is_empty() {
                let fh = driver
                    .dir_handle(&mut client, &rest, false)
                    .await
                    .map_err(|e| e.into_driver(server, &rest))?;
                driver.root = fh;
                driver.dirs.lock().map(|mut d| d.clear()).ok();
            }
            driver.idle.lock().map(|mut i| i.push(client)).ok();
            return Ok(driver);
        }
        Err(DriverError::new(
            DriverErrorKind::Denied,
            format!("nfs://{server}:{path}: the server exports no directory on this path ({last_error})"),
        ))
    }

    async fn open_client(&self) -> Result<Client, NfsErr> {
        let io = if self.privileged {
            let mut last = None;
            let mut conn = None;
            for i in 0..64u16 {
                let port = 300 + (fastrand_port(i) % 723);
                match TokioConnector.connect_with_port(self.addr, port).await {
                    Ok(io) => {
                        conn = Some(io);
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
                    Err(e) => return Err(NfsErr::Rpc(RpcError::Io(e))),
                }
            }
            match conn {
                Some(io) => io,
                None => {
                    return Err(NfsErr::Rpc(RpcError::Io(last.unwrap_or_else(|| {
                        std::io::Error::other("no free privileged port")
                    }))))
                }
            }
        } else {
            TokioConnector
                .connect(self.addr)
                .await
                .map_err(|e| NfsErr::Rpc(RpcError::Io(e)))?
        };
        Ok(Nfs3Client::new_with_auth(
            io,
            self.credential.clone(),
            opaque_auth::default(),
        ))
    }

    async fn lease(&self) -> Result<Lease<'_>, NfsErr> {
        let slot = self.slots.acquire().await.map_err(|_| {
            NfsErr::Driver(DriverError::new(DriverErrorKind::Other, "driver closed"))
        })?;
        let pooled = self.idle.lock().ok().and_then(|mut i| i.pop());
        let client = match pooled {
            Some(c) => c,
            None => self.open_client().await?,
        };
        Ok(Lease {
            client: Some(client),
            _slot: slot,
        })
    }

    async fn checkout(&self, path: &str) -> Result<Lease<'_>, DriverError> {
        self.lease()
            .await
            .map_err(|e| e.into_driver(&self.server, path))
    }

    /// Ends a call sequence run under [`CALL_TIMEOUT`]: the connection goes back to the
    /// pool only if it is known to be in a clean state (not after a timeout or a transport
    /// error).
    fn finish<T>(
        &self,
        mut lease: Lease<'_>,
        path: &str,
        outcome: Result<Result<T, NfsErr>, tokio::time::error::Elapsed>,
    ) -> Result<T, DriverError> {
        let Ok(result) = outcome else {
            return Err(DriverError::new(
                DriverErrorKind::Unreachable,
                format!(
                    "nfs://{}: {path}: no answer within {}s",
                    self.server,
                    CALL_TIMEOUT.as_secs()
                ),
            ));
        };
        if result
            .as_ref()
            .err()
            .is_none_or(NfsErr::connection_reusable)
        {
            if let (Some(c), Ok(mut idle)) = (lease.client.take(), self.idle.lock()) {
                idle.push(c);
            }
        }
        if matches!(result, Err(NfsErr::Status(nfsstat3::NFS3ERR_STALE, _))) {
            self.dirs.lock().map(|mut d| d.clear()).ok();
        }
        result.map_err(|e| e.into_driver(&self.server, path))
    }

    async fn lookup(
        &self,
        c: &mut Client,
        dir: &nfs_fh3,
        n: &str,
    ) -> Result<nfs3::LOOKUP3resok, NfsErr> {
        let r = c
            .lookup(&nfs3::LOOKUP3args {
                what: diropargs3 {
                    dir: dir.clone(),
                    name: name(n),
                },
            })
            .await?;
        ok(r, "LOOKUP")
    }

    /// The handle of directory `dir` (relative to the root), made if `create`.
    async fn dir_handle(&self, c: &mut Client, dir: &str, create: bool) -> Result<nfs_fh3, NfsErr> {
        if dir.is_empty() {
            return Ok(self.root.clone());
        }
        if let Some(fh) = self.dirs.lock().ok().and_then(|d| d.get(dir).cloned()) {
            return Ok(fh);
        }
        let mut cur = self.root.clone();
        let mut acc = String::new();
        for comp in dir.split('/') {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(comp);
            if let Some(fh) = self.dirs.lock().ok().and_then(|d| d.get(&acc).cloned()) {
                cur = fh;
                continue;
            }
            let fh = match self.lookup(c, &cur, comp).await {
                Ok(found) => found.object,
                Err(e) if e.is_noent() && create => {
                    let made = c
                        .mkdir(&nfs3::MKDIR3args {
                            where_: diropargs3 {
                                dir: cur.clone(),
                                name: name(comp),
                            },
                            attributes: sattr3 {
                                mode: Nfs3Option::Some(0o755),
                                ..Default::default()
                            },
                        })
                        .await?;
                    match made {
                        Nfs3Result::Ok(ok) => match ok.obj {
                            Nfs3Option::Some(fh) => fh,
                            Nfs3Option::None => self.lookup(c, &cur, comp).await?.object,
                        },
                        Nfs3Result::Err((nfsstat3::NFS3ERR_EXIST, _)) => {
                            self.lookup(c, &cur, comp).await?.object
                        }
                        Nfs3Result::Err((s, _)) => return Err(NfsErr::Status(s, "MKDIR")),
                    }
                }
                Err(e) => return Err(e),
            };
            if let Ok(mut d) = self.dirs.lock() {
                d.insert(acc.clone(), fh.clone());
            }
            cur = fh;
        }
        Ok(cur)
    }

    fn forget_dir(&self, dir: &str) {
        if let Ok(mut d) = self.dirs.lock() {
            let prefix = format!("{dir}/");
            d.retain(|k, _| k != dir && !k.starts_with(&prefix));
        }
    }

    async fn mtime(&self, c: &mut Client, path: &str) -> Result<Option<SystemTime>, NfsErr> {
        let (dir, file) = split(path);
        let dir = match self.dir_handle(c, dir, false).await {
            Ok(fh) => fh,
            Err(e) if e.is_noent() => return Ok(None),
            Err(e) => return Err(e),
        };
        let found = match self.lookup(c, &dir, file).await {
            Ok(f) => f,
            Err(e) if e.is_noent() => return Ok(None),
            Err(e) => return Err(e),
        };
        let attr = match found.obj_attributes {
            Nfs3Option::Some(a) => a,
            Nfs3Option::None => {
                let r = c
                    .getattr(&nfs3::GETATTR3args {
                        object: found.object,
                    })
                    .await?;
                ok(r, "GETATTR")?.obj_attributes
            }
        };
        Ok(Some(SystemTime::from(attr.mtime)))
    }

    async fn read_file(&self, c: &mut Client, path: &str) -> Result<Vec<u8>, NfsErr> {
        let (dir, file) = split(path);
        let dir = self.dir_handle(c, dir, false).await?;
        let found = self.lookup(c, &dir, file).await?;
        let mut out = Vec::new();
        if let Nfs3Option::Some(attr) = &found.obj_attributes {
            out.reserve(usize::try_from(attr.size).unwrap_or(0));
        }
        loop {
            let r = c
                .read(&nfs3::READ3args {
                    file: found.object.clone(),
                    offset: out.len() as u64,
                    count: self.rmax,
                })
                .await?;
            let r = ok(r, "READ")?;
            out.extend_from_slice(&r.data);
            if r.eof || r.data.is_empty() {
                return Ok(out);
            }
        }
    }

    async fn write_file(&self, c: &mut Client, path: &str, data: &[u8]) -> Result<(), NfsErr> {
        let (dir_path, file) = split(path);
        let dir = self.dir_handle(c, dir_path, true).await?;
        let tmp = temp_name(file);
        let created = c
            .create(&nfs3::CREATE3args {
                where_: diropargs3 {
                    dir: dir.clone(),
                    name: name(&tmp),
                },
                how: createhow3::UNCHECKED(sattr3 {
                    mode: Nfs3Option::Some(0o644),
                    size: Nfs3Option::Some(0),
                    ..Default::default()
                }),
            })
            .await?;
        let created = ok(created, "CREATE")?;
        let fh = match created.obj {
            Nfs3Option::Some(fh) => fh,
            Nfs3Option::None => self.lookup(c, &dir, &tmp).await?.object,
        };
        let result = self.fill(c, &fh, data).await;
        let result = match result {
            Ok(()) => c
                .rename(&nfs3::RENAME3args {
                    from: diropargs3 {
                        dir: dir.clone(),
                        name: name(&tmp),
                    },
                    to: diropargs3 {
                        dir: dir.clone(),
                        name: name(file),
                    },
                })
                .await
                .map_err(NfsErr::from)
                .and_then(|r| ok(r, "RENAME").map(|_| ())),
            Err(e) => Err(e),
        };
        if result.is_err() {
            let _ = c
                .remove(&nfs3::REMOVE3args {
                    object: diropargs3 {
                        dir,
                        name: name(&tmp),
                    },
                })
                .await;
        }
        result
    }

    /// Writes `data` UNSTABLE, then COMMITs; a changed write verifier (the server restarted
    /// and may have lost unstable data) fails the write.
    async fn fill(&self, c: &mut Client, fh: &nfs_fh3, data: &[u8]) -> Result<(), NfsErr> {
        let mut verifier = None;
        let mut at = 0usize;
        while at < data.len() {
            let end = (at + self.wmax as usize).min(data.len());
            let chunk = &data[at..end];
            let w = c
                .write(&nfs3::WRITE3args {
                    file: fh.clone(),
                    offset: at as u64,
                    count: chunk.len() as u32,
                    stable: stable_how::UNSTABLE,
                    data: Opaque::borrowed(chunk),
                })
                .await?;
            let w = ok(w, "WRITE")?;
            if w.count == 0 {
                return Err(NfsErr::Status(nfsstat3::NFS3ERR_IO, "WRITE (no progress)"));
            }
            if *verifier.get_or_insert(w.verf.0) != w.verf.0 {
                return Err(NfsErr::Status(
                    nfsstat3::NFS3ERR_IO,
                    "WRITE (server restarted)",
                ));
            }
            at += w.count as usize;
        }
        let committed = c
            .commit(&nfs3::COMMIT3args {
                file: fh.clone(),
                offset: 0,
                count: 0,
            })
            .await?;
        let committed = ok(committed, "COMMIT")?;
        if verifier.is_some_and(|v| v != committed.verf.0) {
            return Err(NfsErr::Status(
                nfsstat3::NFS3ERR_IO,
                "COMMIT (server restarted)",
            ));
        }
        Ok(())
    }

    async fn read_dir(&self, c: &mut Client, dir: &str) -> Result<Vec<Entry>, NfsErr> {
        let fh = match self.dir_handle(c, dir, false).await {
            Ok(fh) => fh,
            Err(e) if e.is_noent() => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        let (mut cookie, mut cookieverf) = (0u64, nfs3::cookieverf3::default());
        loop {
            let r = c
                .readdirplus(&nfs3::READDIRPLUS3args {
                    dir: fh.clone(),
                    cookie,
                    cookieverf,
                    dircount: 64 * 1024,
                    maxcount: 256 * 1024,
                })
                .await?;
            let r = ok(r, "READDIRPLUS")?;
            let eof = r.reply.eof;
            let entries = r.reply.entries.into_inner();
            let last = entries.last().map(|e| e.cookie);
            for e in entries {
                let n = String::from_utf8_lossy(e.name.0.as_ref()).into_owned();
                if n == "." || n == ".." {
                    continue;
                }
                let is_dir =
                    matches!(&e.name_attributes, Nfs3Option::Some(a) if a.type_ == ftype3::NF3DIR);
                out.push(Entry { name: n, is_dir });
            }
            match last {
                Some(next) if !eof => {
                    cookie = next;
                    cookieverf = r.cookieverf;
                }
                _ => break,
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn remove_file(&self, c: &mut Client, path: &str) -> Result<(), NfsErr> {
        let (dir_path, file) = split(path);
        let dir = match self.dir_handle(c, dir_path, false).await {
            Ok(fh) => fh,
            Err(e) if e.is_noent() => return Ok(()),
            Err(e) => return Err(e),
        };
        let r = c
            .remove(&nfs3::REMOVE3args {
                object: diropargs3 {
                    dir,
                    name: name(file),
                },
            })
            .await?;
        match ok(r, "REMOVE") {
            Ok(_) => {}
            Err(e) if e.is_noent() => {}
            Err(e) => return Err(e),
        }
        self.prune(c, dir_path, 2).await;
        Ok(())
    }

    /// Removes `dir` and up to `levels - 1` parents while they are empty.
    async fn prune(&self, c: &mut Client, mut dir: &str, levels: usize) {
        for _ in 0..levels {
            if dir.is_empty() {
                return;
            }
            let (parent, last) = split(dir);
            let Ok(parent_fh) = self.dir_handle(c, parent, false).await else {
                return;
            };
            let removed = c
                .rmdir(&nfs3::RMDIR3args {
                    object: diropargs3 {
                        dir: parent_fh,
                        name: name(last),
                    },
                })
                .await;
            if !matches!(removed, Ok(Nfs3Result::Ok(_))) {
                return;
            }
            self.forget_dir(dir);
            dir = parent;
        }
    }

    async fn remove_tree(&self, c: &mut Client, dir: &str) -> Result<(), NfsErr> {
        let mut stack = vec![(dir.to_string(), false)];
        while let Some((d, expanded)) = stack.pop() {
            if expanded {
                let (parent, last) = split(&d);
                let parent_fh = self.dir_handle(c, parent, false).await?;
                let r = c
                    .rmdir(&nfs3::RMDIR3args {
                        object: diropargs3 {
                            dir: parent_fh,
                            name: name(last),
                        },
                    })
                    .await?;
                match ok(r, "RMDIR") {
                    Ok(_) => {}
                    Err(e) if e.is_noent() => {}
                    Err(e) => return Err(e),
                }
                self.forget_dir(&d);
                continue;
            }
            let entries = self.read_dir(c, &d).await?;
            if entries.is_empty() && self.dir_handle(c, &d, false).await.is_err() {
                continue; // already gone
            }
            stack.push((d.clone(), true));
            let fh = self.dir_handle(c, &d, false).await?;
            for e in entries {
                if e.is_dir {
                    stack.push((format!("{d}/{}", e.name), false));
                } else {
                    let r = c
                        .remove(&nfs3::REMOVE3args {
                            object: diropargs3 {
                                dir: fh.clone(),
                                name: name(&e.name),
                            },
                        })
                        .await?;
                    match ok(r, "REMOVE") {
                        Ok(_) => {}
                        Err(e) if e.is_noent() => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        let (parent, _) = split(dir);
        self.prune(c, parent, 2).await;
        Ok(())
    }
}

/// A spread of source ports to try (no need for real randomness).
fn fastrand_port(i: u16) -> u16 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    ((nanos as u16).wrapping_add(i.wrapping_mul(97))) & 0x7fff
}

impl Driver for NfsDriver {
    fn read<'a>(&'a self, path: &'a str) -> DriverFuture<'a, Vec<u8>> {
        Box::pin(async move {
            check_path(path)?;
            on_connection!(self, path, |c| self.read_file(c, path))
        })
    }

    fn write<'a>(&'a self, path: &'a str, data: Vec<u8>) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            check_path(path)?;
            on_connection!(self, path, |c| self.write_file(c, path, &data))
        })
    }

    fn modified<'a>(&'a self, path: &'a str) -> DriverFuture<'a, Option<SystemTime>> {
        Box::pin(async move {
            check_path(path)?;
            on_connection!(self, path, |c| self.mtime(c, path))
        })
    }

    fn list<'a>(&'a self, dir: &'a str) -> DriverFuture<'a, Vec<Entry>> {
        Box::pin(async move {
            check_path(dir)?;
            on_connection!(self, dir, |c| self.read_dir(c, dir))
        })
    }

    fn list_recursive<'a>(&'a self, dir: &'a str) -> DriverFuture<'a, Vec<String>> {
        Box::pin(async move {
            check_path(dir)?;
            let mut out = Vec::new();
            let mut pending = vec![String::new()];
            while let Some(rel) = pending.pop() {
                let full = if rel.is_empty() {
                    dir.to_string()
                } else {
                    format!("{dir}/{rel}")
                };
                for e in self.list(&full).await? {
                    let child = if rel.is_empty() {
                        e.name
                    } else {
                        format!("{rel}/{}", e.name)
                    };
                    if e.is_dir {
                        pending.push(child);
                    } else {
                        out.push(child);
                    }
                }
            }
            out.sort();
            Ok(out)
        })
    }

    fn delete<'a>(&'a self, path: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            check_path(path)?;
            on_connection!(self, path, |c| self.remove_file(c, path))
        })
    }

    fn delete_tree<'a>(&'a self, dir: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            check_path(dir)?;
            on_connection!(self, dir, |c| self.remove_tree(c, dir))
        })
    }
}

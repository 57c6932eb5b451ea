//! The control plane across hosts: three network namespaces on a bridge (10.78.0.1-3), each
//! running an etcd member (Debian's etcd-server), a manager and a node agent. A 3-replica
//! volume is attached on the first host and fio writes and verifies it over NBD, run after
//! run, through everything that follows; every run must pass:
//!
//! 1. the leader manager is killed with SIGKILL: another leads within 5 s;
//! 2. every manager is killed for 60 s: the volume keeps serving; they come back and the
//!    volume's state is right;
//! 3. one host's etcd member and manager are cut off (nftables on their ports): never two
//!    leaders at once, and every change acknowledged meanwhile (through the other managers)
//!    is there once it heals, while the cut-off manager answers 503;
//! 4. etcd loses its quorum (two members killed): the API answers 503 saying so and changes
//!    nothing, the volume keeps serving; the members return and the managers resume;
//! 5. the engine's host is cut off from everything: its engine acknowledges no more writes,
//!    the volume is started on another host only once a majority of its replicas took the
//!    new generation (a 2-replica volume waits), and after healing the old engine is
//!    stopped and what fio verified is intact.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ironhorn_testkit::hosts::Hosts;
use ironhorn_testkit::Proc;
use serde_json::Value;

const HOSTS: usize = 3;
const IRONHORN: &str = env!("CARGO_BIN_EXE_ironhorn");

/// Fields drop in this order: the processes first, then their files, then the hosts.
struct Cluster {
    nodes: Vec<Proc>,
    managers: Vec<Option<Proc>>,
    etcd: Vec<Option<Proc>>,
    dir: tempfile::TempDir,
    hosts: Hosts,
}

impl Cluster {
    fn start() -> Cluster {
        let hosts = Hosts::new(HOSTS);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cluster.secret"), "multi-host-secret\n").unwrap();
        let mut c = Cluster {
            hosts,
            dir,
            etcd: (0..HOSTS).map(|_| None).collect(),
            managers: (0..HOSTS).map(|_| None).collect(),
            nodes: Vec::new(),
        };
        for i in 0..HOSTS {
            c.start_etcd(i);
        }
        for i in 0..HOSTS {
            c.etcd[i]
                .as_ref()
                .unwrap()
                .wait_for("ready to serve client requests");
        }
        for i in 0..HOSTS {
            c.start_manager(i);
        }
        for i in 0..HOSTS {
            c.wait_manager(i);
        }
        for i in 0..HOSTS {
            let node = c.hosts.spawn(
                i,
                IRONHORN,
                &[
                    "node",
                    "--cluster-secret-file",
                    &c.secret(),
                    "--manager",
                    &c.manager_urls(),
                    "--name",
                    &format!("node-{i}"),
                    "--data-dir",
                    &c.dir.path().join(format!("node-{i}")).display().to_string(),
                    "--listen",
                    &format!("{}:9502", c.hosts.addr(i)),
                    "--poll-window",
                    "0",
                ],
            );
            c.nodes.push(node);
        }
        c
    }

    fn secret(&self) -> String {
        self.dir.path().join("cluster.secret").display().to_string()
    }

    fn manager_urls(&self) -> String {
        (0..HOSTS)
            .map(|i| format!("http://{}:9500", self.hosts.addr(i)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn store(&self) -> String {
        let members: Vec<String> = (0..HOSTS)
            .map(|i| format!("{}:2379", self.hosts.addr(i)))
            .collect();
        format!("etcd://{}", members.join(","))
    }

    fn start_etcd(&mut self, i: usize) {
        let initial: Vec<String> = (0..HOSTS)
            .map(|j| format!("m{j}=http://{}:2380", self.hosts.addr(j)))
            .collect();
        let addr = self.hosts.addr(i);
        self.etcd[i] = Some(
            self.hosts.spawn(
                i,
                "etcd",
                &[
                    "--name",
                    &format!("m{i}"),
                    "--data-dir",
                    &self
                        .dir
                        .path()
                        .join(format!("etcd-{i}"))
                        .display()
                        .to_string(),
                    "--listen-client-urls",
                    &format!("http://{addr}:2379"),
                    "--advertise-client-urls",
                    &format!("http://{addr}:2379"),
                    "--listen-peer-urls",
                    &format!("http://{addr}:2380"),
                    "--initial-advertise-peer-urls",
                    &format!("http://{addr}:2380"),
                    "--initial-cluster",
                    &initial.join(","),
                    "--initial-cluster-token",
                    "ironhorn-multi-host",
                    "--listen-metrics-urls",
                    "http://127.0.0.1:2381",
                ],
            ),
        );
    }

    fn start_manager(&mut self, i: usize) {
        self.managers[i] = Some(
            self.hosts.spawn(
                i,
                IRONHORN,
                &[
                    "server",
                    "--no-node",
                    "--data-dir",
                    &self
                        .dir
                        .path()
                        .join(format!("manager-{i}"))
                        .display()
                        .to_string(),
                    "--listen",
                    &format!("{}:9500", self.hosts.addr(i)),
                    "--store",
                    &self.store(),
                    "--cluster-secret-file",
                    &self.secret(),
                ],
            ),
        );
    }

    fn wait_manager(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.manager_log(i).contains("API at") {
            assert!(Instant::now() < deadline, "manager {i}:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn manager_log(&self, i: usize) -> String {
        self.managers[i]
            .as_ref()
            .map(Proc::text)
            .unwrap_or_default()
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for i in 0..HOSTS {
            out += &format!("--- manager {i}:\n{}", self.manager_log(i));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            out += &format!("--- node {i}:\n{}", n.text());
        }
        out
    }

    fn token_file(&self) -> PathBuf {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for i in 0..HOSTS {
                let f = self.dir.path().join(format!("manager-{i}/admin.token"));
                if f.exists() {
                    return f;
                }
            }
            assert!(Instant::now() < deadline, "no admin token\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A CLI command on host `i` against its own manager: (exit code, stdout, stderr).
    fn cli(&self, i: usize, args: &[&str]) -> (i32, String, String) {
        let out = self
            .hosts
            .command(i, IRONHORN)
            .args(args)
            .env(
                "IRONHORN_URL",
                format!("http://{}:9500", self.hosts.addr(i)),
            )
            .env("IRONHORN_TOKEN_FILE", self.token_file())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn json(&self, i: usize, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let (code, out, err) = self.cli(i, &all);
        assert_eq!(code, 0, "{args:?} on host {i}: {err}\n{}", self.logs());
        serde_json::from_str(&out).unwrap()
    }

    /// [`Cluster::json`] for a check that is tried again: a failure is `None` (said on
    /// stderr, with when).
    fn try_json(&self, i: usize, args: &[&str]) -> Option<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let (code, out, err) = self.cli(i, &all);
        if code != 0 {
            eprintln!("{args:?} on host {i} failed (tried again): {}", err.trim());
            return None;
        }
        serde_json::from_str(&out).ok()
    }

    /// The managers that say they lead, among `asked`.
    fn leaders(&self, asked: &[usize]) -> Vec<(usize, u64)> {
        asked
            .iter()
            .filter(|i| self.managers[**i].is_some())
            .filter_map(|&i| {
                let (code, out, _) = self.cli(i, &["manager", "leader", "-o", "json"]);
                let l: Value = serde_json::from_str(&out).ok()?;
                (code == 0 && l["leading"] == true).then(|| (i, l["term"].as_u64().unwrap_or(0)))
            })
            .collect()
    }

    fn until(&self, what: &str, timeout: Duration, check: impl Fn(&Cluster) -> bool) {
        let deadline = Instant::now() + timeout;
        while !check(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn volume_is(&self, i: usize, name: &str, state: &str, robustness: &str) -> bool {
        self.volume_matches(i, name, |v| {
            v["status"]["state"] == state && v["status"]["robustness"] == robustness
        })
    }

    /// Whether manager `i` answers for the volume, with what `check` wants to see.
    fn volume_matches(&self, i: usize, name: &str, check: impl Fn(&Value) -> bool) -> bool {
        self.try_json(i, &["volume", "get", name])
            .is_some_and(|v| check(&v))
    }
}

/// fio runs, one after another on host 0, each writing and verifying 16 MiB of the volume,
/// until told to stop; every report is kept.
struct FioLoop {
    stop: Arc<AtomicBool>,
    runs: Arc<Mutex<Vec<(bool, String)>>>,
    thread: std::thread::JoinHandle<()>,
}

impl FioLoop {
    fn start(c: &Cluster, endpoint: &str) -> FioLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let runs = Arc::new(Mutex::new(Vec::new()));
        let mut fio = c.hosts.command(0, "fio");
        fio.current_dir(c.dir.path());
        fio.args([
            "--name=verify",
            "--ioengine=nbd",
            &format!("--uri={endpoint}"),
            "--rw=randwrite",
            "--bs=4k",
            "--size=16M",
            "--iodepth=8",
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_state_save=0",
            "--randrepeat=0",
        ]);
        let (s, r) = (stop.clone(), runs.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let out = fio.output().unwrap();
                let report = String::from_utf8_lossy(&out.stdout).to_string()
                    + &String::from_utf8_lossy(&out.stderr);
                let ok = out.status.success()
                    && report.contains("err= 0")
                    && !report.contains("verify: bad");
                r.lock().unwrap().push((ok, report));
            }
        });
        FioLoop { stop, runs, thread }
    }

    /// How many runs have finished.
    fn finished(&self) -> usize {
        self.runs.lock().unwrap().len()
    }

    /// Stops after the run under way; panics unless every run passed.
    fn finish(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        let runs = self.runs.lock().unwrap();
        for (ok, report) in runs.iter() {
            assert!(ok, "a fio run failed:\n{report}");
        }
        runs.len()
    }
}

#[test]
fn the_control_plane_survives_losing_managers_and_etcd_members_while_a_volume_serves() {
    if let Some(what) = ironhorn_testkit::hosts::missing() {
        panic!("this test needs {what}");
    }
    let mut c = Cluster::start();
    c.until("three nodes are ready", Duration::from_secs(90), |c| {
        let (code, out, _) = c.cli(0, &["node", "ls", "-o", "json"]);
        code == 0
            && serde_json::from_str::<Value>(&out).is_ok_and(|v| {
                let nodes = v["data"].as_array().cloned().unwrap_or_default();
                nodes.len() == HOSTS && nodes.iter().all(|n| n["status"]["ready"] == true)
            })
    });
    c.json(
        1,
        &[
            "setting",
            "set",
            "storage-minimal-available-percentage",
            "0",
        ],
    );
    c.json(
        2,
        &[
            "volume",
            "create",
            "vol-mh",
            "--size",
            "64Mi",
            "--replicas",
            "3",
            "--wait",
        ],
    );
    let attached = c.json(
        0,
        &["volume", "attach", "vol-mh", "--node", "node-0", "--wait"],
    );
    assert_eq!(attached["status"]["robustness"], "healthy");
    let endpoint = attached["status"]["endpoint"].as_str().unwrap().to_string();
    assert!(endpoint.contains("10.78.0.1"), "{endpoint}");
    let fio = FioLoop::start(&c, &endpoint);

    // 1. SIGKILL the leader: another leads within 5 s.
    let all: Vec<usize> = (0..HOSTS).collect();
    let [(first, term)] = c.leaders(&all)[..] else {
        panic!(
            "not exactly one leader: {:?}\n{}",
            c.leaders(&all),
            c.logs()
        );
    };
    c.managers[first].take().unwrap().kill9();
    let killed = Instant::now();
    let others: Vec<usize> = all.iter().copied().filter(|i| *i != first).collect();
    loop {
        if let [(_, t)] = c.leaders(&others)[..] {
            if t > term {
                break;
            }
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "no new leader in 5 s\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("new leader {:?} after the SIGKILL", killed.elapsed());
    c.start_manager(first);
    c.wait_manager(first);

    // 2. Every manager down for 60 s: the volume serves on.
    let runs_before = fio.finished();
    for i in 0..HOSTS {
        c.managers[i].take().unwrap().kill9();
    }
    std::thread::sleep(Duration::from_secs(60));
    assert!(
        fio.finished() > runs_before,
        "fio made no progress without managers"
    );
    for i in 0..HOSTS {
        c.start_manager(i);
    }
    for i in 0..HOSTS {
        c.wait_manager(i);
    }
    c.until(
        "the volume is attached and healthy again",
        Duration::from_secs(60),
        |c| c.volume_is(1, "vol-mh", "attached", "healthy"),
    );

    // 3. Cut host 2's etcd member and manager off (the node agent stays reachable).
    c.hosts.isolate(2, &[2379, 2380, 9500]);
    let cut = Instant::now();
    let mut acknowledged = Vec::new();
    let mut n = 0;
    // Until a few changes went through (calls sent to the cut-off member fail until the
    // managers' etcd clients notice it is gone), for 10 s at least.
    while cut.elapsed() < Duration::from_secs(10)
        || (acknowledged.len() < 3 && cut.elapsed() < Duration::from_secs(60))
    {
        let leading = c.leaders(&all);
        assert!(
            leading.len() <= 1,
            "two leaders at once: {leading:?}\n{}",
            c.logs()
        );
        let name = format!("vol-p-{n}");
        let at = n % 2; // through managers 0 and 1
        let (code, _, _) = c.cli(
            at,
            &[
                "volume",
                "create",
                &name,
                "--size",
                "16Mi",
                "--replicas",
                "1",
            ],
        );
        if code == 0 {
            acknowledged.push(name);
        }
        n += 1;
    }
    let (code, _, err) = c.cli(2, &["volume", "create", "vol-cut-off", "--size", "16Mi"]);
    assert_ne!(code, 0, "the cut-off manager acknowledged a change");
    assert!(err.contains("unavailable"), "{err}");
    c.hosts.heal(2);
    assert!(
        !acknowledged.is_empty(),
        "no change was acknowledged while host 2 was cut off"
    );
    c.until(
        "the healed manager sees every acknowledged change",
        Duration::from_secs(30),
        |c| {
            let (code, out, _) = c.cli(2, &["volume", "ls", "-o", "json"]);
            let Ok(list) = serde_json::from_str::<Value>(&out) else {
                return false;
            };
            let names: Vec<&str> = list["data"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v["name"].as_str()).collect())
                .unwrap_or_default();
            code == 0 && acknowledged.iter().all(|a| names.contains(&a.as_str()))
        },
    );

    // 4. Quorum lost: two members killed.
    c.etcd[1].take().unwrap().kill9();
    c.etcd[2].take().unwrap().kill9();
    let (code, _, err) = c.cli(0, &["volume", "create", "vol-no-quorum", "--size", "16Mi"]);
    assert_ne!(code, 0);
    assert!(err.contains("unavailable"), "{err}");
    let runs_before = fio.finished();
    c.until(
        "fio finishes a run without quorum",
        Duration::from_secs(60),
        |_| fio.finished() > runs_before,
    );
    c.start_etcd(1);
    c.start_etcd(2);
    c.until("a manager leads again", Duration::from_secs(60), |c| {
        c.leaders(&all).len() == 1
    });
    c.json(
        0,
        &[
            "volume",
            "create",
            "vol-after",
            "--size",
            "16Mi",
            "--replicas",
            "1",
        ],
    );
    let (code, _, _) = c.cli(1, &["volume", "get", "vol-no-quorum"]);
    assert_eq!(
        code, 3,
        "a change refused without quorum was stored after all"
    );
    assert!(
        c.volume_is(2, "vol-mh", "attached", "healthy"),
        "{}",
        c.logs()
    );

    let runs = fio.finish();
    eprintln!("{runs} fio runs, every one verified");

    // 5. The node running the engine is cut off from everything.
    partition_the_engines_node(&mut c, &endpoint);
}

/// One fio pass on host `i` over the first 16 MiB of `endpoint`, sequential 64 KiB blocks
/// with crc32c headers (the same blocks every time, so a later `--verify_only` pass checks
/// what an earlier one wrote): whether it succeeded, its exit code (124: it timed out),
/// and its report. It runs in the cluster's directory and saves no verify state.
fn fio_pass(c: &Cluster, i: usize, endpoint: &str, extra: &[&str]) -> (bool, i32, String) {
    let out = c
        .hosts
        .command(i, "timeout")
        .current_dir(c.dir.path())
        .args([
            "120",
            "fio",
            "--name=pattern",
            "--ioengine=nbd",
            &format!("--uri={endpoint}"),
            "--rw=write",
            "--bs=64k",
            "--size=16M",
            "--iodepth=4",
            "--randrepeat=1",
            "--verify_state_save=0",
        ])
        .args(extra)
        .output()
        .unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let ok = out.status.success() && report.contains("err= 0") && !report.contains("verify: bad");
    (ok, out.status.code().unwrap_or(-1), report)
}

/// The attachment generation each of the volume's replica directories (under the cluster's
/// directory) was last claimed with, by directory.
fn claimed_generations(c: &Cluster, volume: &str) -> Vec<(PathBuf, String)> {
    fn walk(dir: &std::path::Path, volume: &str, found: &mut Vec<(PathBuf, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let generation = path.join("ironhorn.generation");
            if name.starts_with(&format!("{volume}-")) && generation.exists() {
                let text = std::fs::read_to_string(&generation).unwrap();
                found.push((path, text.trim().to_string()));
            } else {
                walk(&path, volume, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(c.dir.path(), volume, &mut found);
    found
}

/// Step 5: host 0 (the engine of vol-mh, one replica, and a manager and an etcd member) is
/// cut off from everything. Its engine needs two of three replicas for a write, so it
/// acknowledges nothing more; the volume is started on host 1 on the two others, which take
/// the new attachment's generation. A 2-replica volume (whose engine acknowledges with one
/// replica) is not started elsewhere. Once healed, the old engine is stopped, the replica
/// left behind is rebuilt, and what fio verified before the cut is intact.
fn partition_the_engines_node(c: &mut Cluster, old_endpoint: &str) {
    c.json(
        1,
        &[
            "volume",
            "create",
            "vol-two",
            "--size",
            "16Mi",
            "--replicas",
            "2",
            "--wait",
        ],
    );
    c.json(
        1,
        &["volume", "attach", "vol-two", "--node", "node-0", "--wait"],
    );
    let write_and_verify = ["--verify=crc32c", "--do_verify=1"];
    let (ok, _, report) = fio_pass(c, 0, old_endpoint, &write_and_verify);
    assert!(ok, "writing the pattern before the cut:\n{report}");

    c.hosts.isolate(0, &[]);
    let cut = Instant::now();
    // The old engine's writes (zeros over the pattern) fail: the replicas on hosts 1 and 2
    // do not answer, and its own is one of three.
    let (ok, code, report) = fio_pass(c, 0, old_endpoint, &["--zero_buffers"]);
    assert!(!ok, "the cut-off engine acknowledged writes:\n{report}");
    assert_ne!(code, 124, "fio hung instead of getting errors:\n{report}");
    assert!(
        report.contains("error"),
        "fio failed without an I/O error:\n{report}"
    );
    eprintln!(
        "the cut-off engine refused writes after {:?}",
        cut.elapsed()
    );
    c.until("node-0 is seen down", Duration::from_secs(60), |c| {
        c.try_json(1, &["node", "get", "node-0"])
            .is_some_and(|n| n["status"]["ready"] == false)
    });
    eprintln!("node-0 seen down {:?} after the cut", cut.elapsed());
    for volume in ["vol-mh", "vol-two"] {
        c.json(1, &["volume", "detach", volume]);
    }
    let moved = c.json(
        1,
        &["volume", "attach", "vol-mh", "--node", "node-1", "--wait"],
    );
    eprintln!(
        "vol-mh attached on node-1 {:?} after the cut",
        cut.elapsed()
    );
    assert_eq!(moved["status"]["currentNodeId"], "node-1", "{moved}");
    assert_eq!(moved["status"]["robustness"], "degraded", "{moved}");
    let new_endpoint = moved["status"]["endpoint"].as_str().unwrap().to_string();
    assert!(new_endpoint.contains("10.78.0.2"), "{new_endpoint}");
    let (ok, _, report) = fio_pass(c, 1, &new_endpoint, &["--verify=crc32c", "--verify_only"]);
    assert!(ok, "the pattern after the move:\n{report}");
    assert!(
        c.logs().contains("must claim enough replicas"),
        "the volume was not started as a move off a node that does not answer\n{}",
        c.logs()
    );

    c.json(1, &["volume", "attach", "vol-two", "--node", "node-1"]);
    c.until(
        "vol-two says it waits for node-0",
        Duration::from_secs(30),
        |c| {
            c.volume_matches(1, "vol-two", |v| {
                v["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c["reason"] == "EngineElsewhere"
                            && c["message"]
                                .as_str()
                                .is_some_and(|m| m.contains("with one replica"))
                    })
                })
            })
        },
    );
    let v = c.json(1, &["volume", "get", "vol-two"]);
    assert_ne!(v["status"]["state"], "attached", "{v}");

    c.hosts.heal(0);
    c.until(
        "vol-mh is healthy on node-1, its replica on node-0 rebuilt",
        Duration::from_secs(120),
        |c| {
            c.volume_matches(1, "vol-mh", |v| {
                v["status"]["currentNodeId"] == "node-1"
                    && v["status"]["state"] == "attached"
                    && v["status"]["robustness"] == "healthy"
            })
        },
    );
    c.until(
        "vol-two follows to node-1 once node-0 answers",
        Duration::from_secs(120),
        |c| {
            c.volume_matches(1, "vol-two", |v| {
                v["status"]["currentNodeId"] == "node-1" && v["status"]["state"] == "attached"
            })
        },
    );
    for line in c
        .logs()
        .lines()
        .filter(|l| l.contains("must claim enough replicas"))
    {
        eprintln!("{line}");
    }
    let stopped = c.nodes[0]
        .text()
        .lines()
        .filter(|l| l.contains("engine stopped") && l.contains("vol-mh"))
        .count();
    assert!(
        stopped >= 1,
        "the old engine of vol-mh still runs on node-0\n{}",
        c.logs()
    );
    // Every replica, the rebuilt one on node-0 too, took the new attachment's generation: the
    // old engine's calls are refused by all of them.
    let generation = c.json(1, &["volume", "get", "vol-mh"])["status"]["generation"]
        .as_u64()
        .unwrap();
    let claimed = claimed_generations(c, "vol-mh");
    assert_eq!(claimed.len(), 3, "{claimed:?}");
    for (dir, claimed_with) in &claimed {
        assert_eq!(claimed_with, &generation.to_string(), "{}", dir.display());
    }
    // What the old engine wrote reached no replica the volume serves from.
    let (ok, _, report) = fio_pass(c, 1, &new_endpoint, &["--verify=crc32c", "--verify_only"]);
    assert!(ok, "the pattern after the partition healed:\n{report}");
}

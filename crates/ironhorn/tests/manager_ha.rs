//! Several managers on one etcd (a real 3-member cluster of Debian's etcd-server): every
//! manager serves the API, one leads. Four node agents know all three managers. A 3-replica
//! volume is written over NBD with qemu-io; the leader is killed with SIGKILL and another
//! takes over within 5 s; a node holding a replica is then killed, and the new leader
//! replaces the replica (the old one plays no part); every acknowledged byte reads back.
//! Then a leader that freezes (SIGSTOP) is replaced, and on waking it knows it no longer
//! leads.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{qemu_write, spawn};
use ironhorn_testkit::servers::EtcdCluster;
use ironhorn_testkit::{free_port, Proc};
use serde_json::Value;

const MIB: u64 = 1 << 20;

/// Three managers (`ironhorn server --no-node`) on one etcd, and node agents.
struct Managers {
    etcd: EtcdCluster,
    root: tempfile::TempDir,
    urls: Vec<String>,
    procs: Vec<Option<Proc>>,
}

impl Managers {
    fn start(count: usize) -> Managers {
        let etcd = EtcdCluster::start(3);
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            root.path().join("cluster.secret"),
            "ha-test-cluster-secret\n",
        )
        .unwrap();
        let mut managers = Managers {
            etcd,
            root,
            urls: (0..count)
                .map(|_| format!("http://127.0.0.1:{}", free_port()))
                .collect(),
            procs: (0..count).map(|_| None).collect(),
        };
        for i in 0..count {
            managers.start_manager(i);
        }
        for i in 0..count {
            managers.wait_serving(i);
        }
        managers
    }

    fn secret(&self) -> PathBuf {
        self.root.path().join("cluster.secret")
    }

    fn start_manager(&mut self, i: usize) {
        let dir = self.root.path().join(format!("manager-{i}"));
        let listen = self.urls[i].trim_start_matches("http://").to_string();
        self.procs[i] = Some(spawn(&[
            "server",
            "--no-node",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            &listen,
            "--store",
            &self.etcd.url(),
            "--cluster-secret-file",
            self.secret().to_str().unwrap(),
        ]));
    }

    fn wait_serving(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.log(i).contains("API at") {
            assert!(Instant::now() < deadline, "manager {i}: {}", self.log(i));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self, i: usize) -> String {
        self.procs[i].as_ref().map(Proc::text).unwrap_or_default()
    }

    fn logs(&self) -> String {
        (0..self.procs.len())
            .map(|i| format!("--- manager {i} ({}):\n{}", self.urls[i], self.log(i)))
            .collect()
    }

    /// The first admin's token: in the data directory of whichever manager made it.
    fn token_file(&self) -> PathBuf {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for i in 0..self.urls.len() {
                let file = self.root.path().join(format!("manager-{i}/admin.token"));
                if file.exists() {
                    return file;
                }
            }
            assert!(Instant::now() < deadline, "no admin token\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn start_node(&self, name: &str) -> Proc {
        let dir = self.root.path().join(name);
        spawn(&[
            "node",
            "--cluster-secret-file",
            self.secret().to_str().unwrap(),
            "--manager",
            &self.urls.join(","),
            "--name",
            name,
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--poll-window",
            "0",
        ])
    }

    /// Runs a client command against manager `i`: (exit code, stdout, stderr).
    fn cli_on(&self, i: usize, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_ironhorn"))
            .args(args)
            .env("IRONHORN_URL", &self.urls[i])
            .env("IRONHORN_TOKEN_FILE", self.token_file())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn json_on(&self, i: usize, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let (code, out, err) = self.cli_on(i, &all);
        assert_eq!(code, 0, "{args:?} on manager {i}: {err}\n{}", self.logs());
        serde_json::from_str(&out).unwrap()
    }

    /// The running managers.
    fn alive(&self) -> Vec<usize> {
        (0..self.procs.len())
            .filter(|i| self.procs[*i].is_some())
            .collect()
    }

    /// The manager that says it leads, among the running ones.
    fn leader(&self) -> Option<(usize, u64)> {
        self.leader_besides(None)
    }

    /// [`Managers::leader`], not asking `skip` (a frozen manager would not answer).
    fn leader_besides(&self, skip: Option<usize>) -> Option<(usize, u64)> {
        self.alive()
            .into_iter()
            .filter(|i| Some(*i) != skip)
            .find_map(|i| {
                let (code, out, _) = self.cli_on(i, &["manager", "leader", "-o", "json"]);
                let l: Value = serde_json::from_str(&out).ok()?;
                (code == 0 && l["leading"] == true).then(|| (i, l["term"].as_u64().unwrap_or(0)))
            })
    }

    fn until(&self, what: &str, check: impl Fn(&Managers) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !check(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until a manager other than `old` leads, in a term after `term`; returns it and
    /// how long it took from `since`.
    fn new_leader(&self, old: usize, term: u64, since: Instant) -> (usize, u64, Duration) {
        let deadline = since + Duration::from_secs(30);
        loop {
            if let Some((i, t)) = self.leader_besides(Some(old)) {
                if i != old && t > term {
                    return (i, t, since.elapsed());
                }
            }
            assert!(Instant::now() < deadline, "no new leader\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

fn replicas(v: &Value) -> Vec<Value> {
    v["status"]["replicas"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn another_manager_takes_over_when_the_leader_dies_and_the_volume_keeps_serving() {
    let mut m = Managers::start(3);
    let mut nodes: Vec<Proc> = ["node-1", "node-2", "node-3", "node-4"]
        .iter()
        .map(|n| m.start_node(n))
        .collect();
    m.until("four nodes are ready", |m| {
        let nodes = m.json_on(0, &["node", "ls"]);
        let nodes = nodes["data"].as_array().cloned().unwrap_or_default();
        nodes.len() == 4 && nodes.iter().all(|n| n["status"]["ready"] == true)
    });
    // Every manager serves the API, changes included.
    m.json_on(
        1,
        &[
            "setting",
            "set",
            "storage-minimal-available-percentage",
            "0",
        ],
    );
    let setting = m.json_on(
        2,
        &["setting", "get", "storage-minimal-available-percentage"],
    );
    assert_eq!(setting["value"], "0");
    // A lost replica is replaced at once (Longhorn's default waits 600 s for it to return).
    m.json_on(
        0,
        &["setting", "set", "replica-replenishment-wait-interval", "0"],
    );
    let (first, first_term) = m.leader().expect("a leader");
    assert!(m.log(first).contains("leading"), "{}", m.logs());

    m.json_on(
        2,
        &[
            "volume",
            "create",
            "vol-ha",
            "--size",
            "32Mi",
            "--replicas",
            "3",
            "--wait",
        ],
    );
    let attached = m.json_on(
        1,
        &["volume", "attach", "vol-ha", "--node", "node-1", "--wait"],
    );
    let endpoint = attached["status"]["endpoint"].as_str().unwrap().to_string();
    qemu_write(&endpoint, 0, 4 * MIB, 0xa1);

    // SIGKILL the leader: another is elected within 5 s, while I/O goes on.
    m.procs[first].take().unwrap().kill9();
    let killed = Instant::now();
    qemu_write(&endpoint, 4 * MIB, 4 * MIB, 0xb2);
    let (second, second_term, took) = m.new_leader(first, first_term, killed);
    eprintln!("leader failover after SIGKILL: {took:?} (manager {first} -> {second})");
    assert!(took < Duration::from_secs(5), "failover took {took:?}");

    // Kill a node holding one of the replicas (not the engine's): the new leader replaces
    // the replica on the spare node.
    let volume = m.json_on(second, &["volume", "get", "vol-ha"]);
    let victim = replicas(&volume)
        .iter()
        .map(|r| r["node"].as_str().unwrap().to_string())
        .find(|n| n != "node-1")
        .unwrap();
    let index = ["node-1", "node-2", "node-3", "node-4"]
        .iter()
        .position(|n| *n == victim)
        .unwrap();
    nodes[index].kill9();
    qemu_write(&endpoint, 8 * MIB, 4 * MIB, 0xc3);
    m.until("the lost replica is replaced and the volume healthy", |m| {
        let v = m.json_on(second, &["volume", "get", "vol-ha"]);
        let healthy: Vec<String> = replicas(&v)
            .iter()
            .filter(|r| r["healthy"] == true && r["mode"] == "RW")
            .map(|r| r["node"].as_str().unwrap_or("").to_string())
            .collect();
        v["status"]["robustness"] == "healthy" && healthy.len() == 3 && !healthy.contains(&victim)
    });
    assert!(
        m.log(second).contains("replica rebuilt"),
        "the new leader did not rebuild:\n{}",
        m.logs()
    );

    // Every acknowledged byte reads back.
    let out = Command::new("qemu-io")
        .args(["-f", "raw"])
        .args(["-c", &format!("read -P 0xa1 0 {}", 4 * MIB)])
        .args(["-c", &format!("read -P 0xb2 {} {}", 4 * MIB, 4 * MIB)])
        .args(["-c", &format!("read -P 0xc3 {} {}", 8 * MIB, 4 * MIB)])
        .arg(&endpoint)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("fail"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The killed manager comes back as a follower; the API answers there as well.
    m.start_manager(first);
    m.wait_serving(first);
    let (leader, _) = m.leader().unwrap();
    assert_eq!(leader, second, "{}", m.logs());
    let seen = m.json_on(first, &["volume", "get", "vol-ha"]);
    assert_eq!(seen["status"]["state"], "attached");

    // A leader that freezes (SIGSTOP) is replaced; woken, it knows it no longer leads.
    m.procs[second].as_ref().unwrap().send_signal("-STOP");
    let stopped = Instant::now();
    let (third, _, took) = m.new_leader(second, second_term, stopped);
    eprintln!("leader failover after SIGSTOP: {took:?}");
    m.procs[second].as_ref().unwrap().send_signal("-CONT");
    m.until("the woken manager knows it no longer leads", |m| {
        m.log(second).contains("no longer leading")
    });
    let (leader, _) = m.leader().unwrap();
    assert_eq!(leader, third);
}

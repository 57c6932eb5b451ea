//! What the end-to-end tests share: a cluster of real `ironhorn` processes (a server and node
//! agents) in a temporary directory, driven through the CLI.
#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

use ironhorn_testkit::{free_port, Proc};
use serde_json::Value;

/// Writes `len` bytes of `byte` at `offset` of an NBD export with qemu-io, then flushes.
pub fn qemu_write(endpoint: &str, offset: u64, len: u64, byte: u8) {
    let out = Command::new("qemu-io")
        .args([
            "-f",
            "raw",
            "-c",
            &format!("write -P {byte} {offset} {len}"),
            "-c",
            "flush",
            endpoint,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn spawn(args: &[&str]) -> Proc {
    Proc::spawn(env!("CARGO_BIN_EXE_ironhorn"), args)
}

/// How many times slower than a normal machine this one is taken to be.
pub fn time_scale() -> u32 {
    std::env::var("IRONHORN_TEST_TIME_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// A server (node-1) and node agents started in a temporary directory, driven by the CLI.
pub struct Cluster {
    pub url: String,
    pub root: tempfile::TempDir,
    pub server: Option<Proc>,
    /// The server's `--blockdev-backend`.
    pub backend: &'static str,
    /// The server's `--store`.
    pub store: String,
    /// More arguments for the server.
    pub server_args: Vec<String>,
}

impl Cluster {
    pub fn start_server(&mut self) {
        let dir = self.root.path().join("server");
        let listen = self.url.trim_start_matches("http://").to_string();
        let mut args: Vec<String> = [
            "server",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            &listen,
            "--node-name",
            "node-1",
            "--poll-window",
            "0",
            "--blockdev-backend",
            self.backend,
            "--store",
            &self.store,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.extend(self.server_args.iter().cloned());
        self.server = Some(Proc::spawn(env!("CARGO_BIN_EXE_ironhorn"), &args));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.log().contains("API at") {
            assert!(
                Instant::now() < deadline,
                "the server did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The first admin's API token the server wrote.
    pub fn admin_token_file(&self) -> std::path::PathBuf {
        self.root.path().join("server/admin.token")
    }

    /// The cluster secret the server wrote (node agents and the CSI driver hold it).
    pub fn cluster_secret_file(&self) -> std::path::PathBuf {
        self.root.path().join("server/cluster.secret")
    }

    /// The first admin's API token.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.admin_token_file())
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn start_node(&self, name: &str) -> Proc {
        let dir = self.root.path().join(name);
        let secret = self.cluster_secret_file();
        spawn(&[
            "node",
            "--cluster-secret-file",
            secret.to_str().unwrap(),
            "--manager",
            &self.url,
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

    /// Runs a client command; returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_ironhorn"))
            .args(args)
            .env("IRONHORN_URL", &self.url)
            .env("IRONHORN_TOKEN_FILE", self.admin_token_file())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let (code, out, err) = self.cli(&all);
        assert_eq!(code, 0, "{args:?}: {err}\nserver log:\n{}", self.log());
        serde_json::from_str(&out).unwrap()
    }

    pub fn volume(&self, name: &str) -> Value {
        self.json(&["volume", "get", name])
    }

    pub fn log(&self) -> String {
        self.server.as_ref().map(Proc::text).unwrap_or_default()
    }

    /// Polls until `check` holds (the controllers work in rounds of about two seconds), for
    /// up to a minute times `IRONHORN_TEST_TIME_SCALE` (default 1; `scripts/vm-run` sets
    /// it for software-emulated machines).
    pub fn until(&self, what: &str, check: impl Fn(&Cluster) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60) * time_scale();
        while !check(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}; server log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Cluster {
    /// A server alone (one node, its own), ready, replicas allowed any free space.
    pub fn single() -> Cluster {
        Cluster::single_with_store("redb")
    }

    /// [`Cluster::single`] with its state in `store` (`--store`).
    pub fn single_with_store(store: &str) -> Cluster {
        Cluster::single_with_server_args(store, &[])
    }

    /// [`Cluster::single_with_store`] with more arguments for the server.
    pub fn single_with_server_args(store: &str, extra: &[&str]) -> Cluster {
        let mut cluster = Cluster {
            url: format!("http://127.0.0.1:{}", free_port()),
            root: tempfile::tempdir().unwrap(),
            server: None,
            backend: "auto",
            store: store.into(),
            server_args: extra.iter().map(|a| a.to_string()).collect(),
        };
        cluster.start_server();
        cluster.until("the node is ready", |c| {
            let (code, out, _) = c.cli(&["node", "ls", "-o", "json"]);
            code == 0
                && serde_json::from_str::<Value>(&out)
                    .is_ok_and(|v| v["data"][0]["status"]["ready"] == true)
        });
        cluster.json(&[
            "setting",
            "set",
            "storage-minimal-available-percentage",
            "0",
        ]);
        cluster
    }

    /// Makes a user with a password (for signing in to the web UI).
    pub fn user_with_password(&self, name: &str, role: &str, password: &str) {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_ironhorn"))
            .args(["user", "create", name, "--role", role, "--password-stdin"])
            .env("IRONHORN_URL", &self.url)
            .env("IRONHORN_TOKEN_FILE", self.admin_token_file())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A server on a free port, with `nodes` more node agents, all ready; replicas may use
    /// any free space (the machine's disk may be fuller than the default allows).
    pub fn three_nodes() -> (Cluster, Vec<Proc>) {
        Cluster::three_nodes_with("auto")
    }

    /// [`Cluster::three_nodes`] whose server makes block devices with `backend`.
    pub fn three_nodes_with(backend: &'static str) -> (Cluster, Vec<Proc>) {
        let mut cluster = Cluster {
            url: format!("http://127.0.0.1:{}", free_port()),
            root: tempfile::tempdir().unwrap(),
            server: None,
            backend,
            store: "redb".into(),
            server_args: Vec::new(),
        };
        cluster.start_server();
        let agents = vec![cluster.start_node("node-2"), cluster.start_node("node-3")];
        cluster.until("three nodes are ready", |c| {
            let (code, out, _) = c.cli(&["node", "ls", "-o", "json"]);
            code == 0
                && serde_json::from_str::<Value>(&out).is_ok_and(|v| {
                    let nodes = v["data"].as_array().cloned().unwrap_or_default();
                    nodes.len() == 3 && nodes.iter().all(|n| n["status"]["ready"] == true)
                })
        });
        cluster.json(&[
            "setting",
            "set",
            "storage-minimal-available-percentage",
            "0",
        ]);
        (cluster, agents)
    }
}

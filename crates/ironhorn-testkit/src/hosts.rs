//! Several "hosts" on one machine for multi-host tests: network namespaces, each with one
//! address (10.78.0.1, .2, ...) on a bridge that lives in a namespace of its own (nothing is
//! added to this namespace's network), as `../shared/test-env/netns-hosts.sh` shows. A host
//! can be cut off from the others with nftables (all of it, or some ports) and healed.
//! Processes started on a host run in its namespace; files are shared with this one.

use std::process::Command;

use crate::Proc;

/// Hosts on a private bridge; removed (with their processes' network) when dropped.
#[derive(Debug)]
pub struct Hosts {
    prefix: String,
    count: usize,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running ip: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Why multi-host tests cannot run here, if they cannot: they need root, `ip` and `nft`.
pub fn missing() -> Option<String> {
    if !crate::is_root() {
        return Some("root (to make network namespaces)".into());
    }
    for tool in ["ip", "nft"] {
        let found = Command::new(tool)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("{tool} (iproute2, nftables)"));
        }
    }
    None
}

impl Hosts {
    /// `count` hosts, all reaching each other. Panics, saying what is missing, when this
    /// machine cannot make them.
    pub fn new(count: usize) -> Hosts {
        if let Some(what) = missing() {
            panic!("multi-host tests need {what}; run them as root, as .ci/run does");
        }
        // Unique per process and instance: tests run in parallel.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let prefix = format!("ih{}x{n}", std::process::id() % 100_000);
        let hosts = Hosts { prefix, count };
        let switch = hosts.switch();
        ip(&["netns", "add", &switch]);
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        for i in 0..count {
            let name = hosts.name(i);
            ip(&["netns", "add", &name]);
            let (inside, outside) = (format!("v{i}"), format!("p{i}"));
            ip(&[
                "link", "add", &inside, "netns", &name, "type", "veth", "peer", "name", &outside,
                "netns", &switch,
            ]);
            ip(&[
                "-n", &switch, "link", "set", &outside, "master", "br0", "up",
            ]);
            ip(&["-n", &name, "link", "set", "lo", "up"]);
            ip(&[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{}/24", hosts.addr(i)),
                "dev",
                &inside,
            ]);
            ip(&["-n", &name, "link", "set", &inside, "up"]);
        }
        hosts
    }

    fn switch(&self) -> String {
        format!("{}sw", self.prefix)
    }

    /// Host `i`'s namespace.
    pub fn name(&self, i: usize) -> String {
        format!("{}h{i}", self.prefix)
    }

    /// Host `i`'s address.
    pub fn addr(&self, i: usize) -> String {
        format!("10.78.0.{}", i + 1)
    }

    /// `program` to run on host `i`.
    pub fn command(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name(i), program]);
        c
    }

    /// Starts `program` on host `i` (its stderr kept, as [`Proc::spawn`] does).
    pub fn spawn<S: AsRef<str>>(&self, i: usize, program: &str, args: &[S]) -> Proc {
        let mut all: Vec<String> =
            vec!["netns".into(), "exec".into(), self.name(i), program.into()];
        all.extend(args.iter().map(|a| a.as_ref().to_string()));
        Proc::spawn("ip", &all)
    }

    /// Cuts host `i` off: every packet in or out but loopback's is dropped. With `ports`,
    /// only TCP to or from those ports (a service cut off, the rest of the host not).
    pub fn isolate(&self, i: usize, ports: &[u16]) {
        let rules = if ports.is_empty() {
            "table inet ihpart {\n chain in { type filter hook input priority 0; policy drop; iif \"lo\" accept; }\n chain out { type filter hook output priority 0; policy drop; oif \"lo\" accept; }\n}\n".to_string()
        } else {
            let set = ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "table inet ihpart {{\n chain in {{ type filter hook input priority 0; policy accept; iif \"lo\" accept; tcp dport {{ {set} }} drop; tcp sport {{ {set} }} drop; }}\n chain out {{ type filter hook output priority 0; policy accept; oif \"lo\" accept; tcp dport {{ {set} }} drop; tcp sport {{ {set} }} drop; }}\n}}\n"
            )
        };
        let mut nft = self.command(i, "nft");
        nft.args(["-f", "-"]);
        nft.stdin(std::process::Stdio::piped());
        let mut child = nft.spawn().unwrap_or_else(|e| panic!("running nft: {e}"));
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap_or_else(|| panic!("nft's stdin"));
            stdin
                .write_all(rules.as_bytes())
                .unwrap_or_else(|e| panic!("writing nft rules: {e}"));
        }
        let status = child.wait().unwrap_or_else(|e| panic!("nft: {e}"));
        assert!(status.success(), "nft -f failed for host {i}");
    }

    /// Undoes [`Hosts::isolate`].
    pub fn heal(&self, i: usize) {
        let status = self
            .command(i, "nft")
            .args(["delete", "table", "inet", "ihpart"])
            .status()
            .unwrap_or_else(|e| panic!("running nft: {e}"));
        assert!(status.success(), "healing host {i}");
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for i in 0..self.count {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name(i)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.switch()])
            .status();
    }
}

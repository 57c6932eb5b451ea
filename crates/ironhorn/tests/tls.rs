//! The manager over HTTPS (`--tls-cert`, `--tls-key`): curl (a client we did not write)
//! verifies its certificate and gets answers, plain HTTP gets none, the CLI trusts the
//! certificate through IRONHORN_CA_CERT and says what is wrong without it, the manager drives
//! its own node over HTTPS (a volume attaches), and session cookies are Secure.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ironhorn_testkit::{free_port, Proc};

/// A self-signed certificate for 127.0.0.1 and localhost, made with openssl as the README
/// shows.
fn make_certificate(dir: &Path) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=ironhorn-test",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            // A certificate that is its own authority must say it is no CA (webpki).
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_manager_serves_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    make_certificate(dir.path());
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let listen = format!("127.0.0.1:{}", free_port());
    let data = dir.path().join("data");
    let devices = dir.path().join("dev");
    let server = Proc::spawn(
        env!("CARGO_BIN_EXE_ironhorn"),
        &[
            "server",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            &listen,
            "--node-name",
            "tls-node",
            "--device-dir",
            devices.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    server.wait_for(&format!("API at https://{listen}"));
    let url = format!("https://{listen}");
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let token = token.trim();

    // curl checks the certificate against the one authority it is given.
    let curl = |args: &[&str]| {
        Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                "--cacert",
                cert.to_str().unwrap(),
            ])
            .args(args)
            .output()
            .unwrap()
    };
    let out = curl(&[&format!("{url}/healthz")]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok", "{}", text(&out));
    let out = curl(&[
        "-H",
        &format!("Authorization: Bearer {token}"),
        &format!("{url}/v1/me"),
    ]);
    let me: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(me["user"], "admin", "{}", text(&out));
    // Without the authority curl refuses the certificate; plain HTTP gets no answer.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", &format!("{url}/healthz")])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            &format!("http://{listen}/healthz"),
        ])
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&out.stdout), "ok", "{}", text(&out));

    // The CLI: told nothing of the certificate, it fails saying why.
    let cli = |ca: Option<&Path>, args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ironhorn"));
        command
            .args(args)
            .env("IRONHORN_URL", &url)
            .env("IRONHORN_TOKEN", token)
            .env_remove("IRONHORN_CA_CERT");
        if let Some(ca) = ca {
            command.env("IRONHORN_CA_CERT", ca);
        }
        command.output().unwrap()
    };
    let out = cli(None, &["volume", "ls"]);
    assert!(!out.status.success());
    assert!(
        text(&out).to_lowercase().contains("certificate"),
        "the error should name the certificate: {}",
        text(&out)
    );
    // This machine's filesystem may be fuller than the default 25% free allows for.
    let out = cli(
        Some(&cert),
        &[
            "setting",
            "set",
            "storage-minimal-available-percentage",
            "0",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = cli(
        Some(&cert),
        &[
            "volume",
            "create",
            "tls-vol",
            "--size",
            "16Mi",
            "--replicas",
            "1",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    // The manager reaches its own node over HTTPS: the volume attaches.
    let out = cli(
        Some(&cert),
        &["volume", "attach", "tls-vol", "--frontend", "nbd"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = cli(Some(&cert), &["volume", "get", "tls-vol", "-o", "json"]);
        let volume: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if volume["status"]["state"] == "attached" {
            break;
        }
        assert!(Instant::now() < deadline, "not attached: {}", text(&out));
        std::thread::sleep(Duration::from_millis(200));
    }

    // A browser's session cookie is never sent in clear.
    let out = cli(Some(&cert), &["user", "create", "tina", "--role", "viewer"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut create = Command::new(env!("CARGO_BIN_EXE_ironhorn"));
    let out = create
        .args([
            "user",
            "create",
            "olga",
            "--role",
            "operator",
            "--password-stdin",
        ])
        .env("IRONHORN_URL", &url)
        .env("IRONHORN_TOKEN", token)
        .env("IRONHORN_CA_CERT", &cert)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"olga-password-123\n")?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = curl(&[
        "-i",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"user":"olga","password":"olga-password-123"}"#,
        &format!("{url}/v1/login"),
    ]);
    let answer = text(&out);
    let cookie = answer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {answer}"));
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    drop(server);
}

//! `ironhorn cluster-secret`: makes the Kubernetes Secret holding the cluster secret (what
//! node agents, the CSI driver and the manager prove themselves to each other with) when it
//! does not exist, and keeps it when it does; the manifest runs it before the manager, so
//! `kubectl apply -f deploy/ironhorn.yaml` is the whole install. It speaks to the Kubernetes
//! API with the pod's service account (its token and CA under
//! /var/run/secrets/kubernetes.io/serviceaccount), two calls: read the Secret, create it.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use ironhorn_api::client::{ApiClient, ClientError, Timeouts};
use ironhorn_api::Request;
use serde_json::{json, Value};

const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[derive(Debug, Args)]
pub struct ClusterSecretArgs {
    /// The Secret's name; the value is under the key `secret`.
    #[arg(long, default_value = "ironhorn-cluster-secret")]
    pub name: String,
    /// Its namespace (default: the pod's own, from the service account).
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// The Kubernetes API (default: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT).
    #[arg(long)]
    pub api_server: Option<String>,
    /// The service account's token.
    #[arg(
        long,
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )]
    pub token_file: PathBuf,
    /// The authority that signed the API server's certificate.
    #[arg(
        long,
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    )]
    pub ca_cert: PathBuf,
}

/// What a Kubernetes error answer says (a `Status` object's message), or its raw text.
fn kubernetes_message(error: &ClientError) -> String {
    match error {
        ClientError::Api { body, .. } => serde_json::from_str::<Value>(&body.message)
            .ok()
            .and_then(|status| status["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| body.message.clone()),
        other => other.to_string(),
    }
}

fn api_server(args: &ClusterSecretArgs) -> Result<String> {
    if let Some(url) = &args.api_server {
        return Ok(url.trim_end_matches('/').to_string());
    }
    match (
        std::env::var("KUBERNETES_SERVICE_HOST"),
        std::env::var("KUBERNETES_SERVICE_PORT"),
    ) {
        (Ok(host), Ok(port)) if host.contains(':') => Ok(format!("https://[{host}]:{port}")),
        (Ok(host), Ok(port)) => Ok(format!("https://{host}:{port}")),
        _ => bail!("not in a Kubernetes pod (no KUBERNETES_SERVICE_HOST): give --api-server"),
    }
}

pub fn run(args: ClusterSecretArgs) -> Result<()> {
    let server = api_server(&args)?;
    let namespace = match &args.namespace {
        Some(ns) => ns.clone(),
        None => std::fs::read_to_string(format!("{SERVICE_ACCOUNT}/namespace"))
            .map(|ns| ns.trim().to_string())
            .context("the pod's namespace (give --namespace)")?,
    };
    let token = crate::runtime::read_secret_file(&args.token_file)
        .context("the service account's token")?;
    let mut client = ApiClient::new(Timeouts::default()).with_bearer(Some(&token));
    if args.ca_cert.exists() {
        client = client.trusting(&args.ca_cert);
    }
    let path = format!("/api/v1/namespaces/{namespace}/secrets");
    let shown = format!("secret {namespace}/{}", args.name);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let read = Request::<Value>::get(format!("{path}/{}", args.name));
        match client.call(&server, read).await {
            Ok(found) => {
                if found["data"]["secret"].as_str().is_some_and(|s| !s.is_empty()) {
                    eprintln!("{shown} exists: kept");
                    return Ok(());
                }
                bail!("{shown} exists but has no key `secret`: delete it (kubectl -n {namespace} delete secret {}) to have it made again", args.name);
            }
            Err(e) if e.status() == Some(404) => {}
            Err(e) => bail!(
                "reading {shown}: {} (the service account needs get and create on secrets in {namespace})",
                kubernetes_message(&e)
            ),
        }
        let value = ironhorn_auth::secret::new_secret()
            .map_err(|e| anyhow::anyhow!("no randomness for the cluster secret: {e}"))?;
        let secret = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": args.name,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/name": "ironhorn"},
            },
            "stringData": {"secret": value},
        });
        match client
            .call(&server, Request::<Value>::post(path.clone()).json(&secret))
            .await
        {
            Ok(_) => {
                eprintln!("{shown}: made");
                Ok(())
            }
            // Another pod made it meanwhile: theirs is the one.
            Err(e) if e.status() == Some(409) => {
                eprintln!("{shown} exists: kept");
                Ok(())
            }
            Err(e) => bail!(
                "making {shown}: {} (the service account needs create on secrets in {namespace})",
                kubernetes_message(&e)
            ),
        }
    })
}

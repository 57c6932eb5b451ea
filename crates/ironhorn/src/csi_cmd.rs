//! `ironhorn csi`: the CSI plugin, serving the identity, controller and node services on a
//! Unix socket for the kubelet and the CSI sidecars (see `ironhorn_csi`).

use anyhow::Result;
use clap::Args;

#[derive(Debug, Args)]
pub struct CsiArgs {
    /// The socket to serve (`unix:///csi/csi.sock`).
    #[arg(long, env = "CSI_ENDPOINT", default_value = "unix:///csi/csi.sock")]
    pub endpoint: String,
    /// This node's name in Ironhorn (as `ironhorn node ls` shows it): the node service
    /// mounts volumes attached here. Without it only the identity and controller services
    /// answer.
    #[arg(long, env = "NODE_ID")]
    pub node_id: Option<String>,
    /// The manager's REST address.
    #[arg(long, env = "IRONHORN_URL", default_value = "http://127.0.0.1:9500")]
    pub manager: String,
    /// How long an attach, detach or device wait may take before the CO is told to retry.
    #[arg(long, default_value = "2m", value_parser = crate::runtime::parse_duration)]
    pub wait: std::time::Duration,
    /// A file holding the credentials for the manager: the cluster secret (as the install
    /// manifest mounts it) or an API token.
    #[arg(long, env = "IRONHORN_TOKEN_FILE")]
    pub token_file: Option<std::path::PathBuf>,
}

pub fn run(args: CsiArgs) -> Result<()> {
    crate::runtime::run_until_signal(|shutdown| async move {
        let token = match &args.token_file {
            Some(path) => Some(crate::runtime::read_secret_file(path)?),
            None => std::env::var("IRONHORN_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        };
        let config = ironhorn_csi::PluginConfig {
            manager: args.manager,
            node_id: args.node_id,
            wait: args.wait,
            token,
        };
        ironhorn_csi::serve(
            &args.endpoint,
            config,
            Box::pin(async move { shutdown.cancelled().await }),
        )
        .await?;
        Ok(())
    })
}

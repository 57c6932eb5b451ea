//! Serving the three CSI services on a Unix socket (`unix:///csi/csi.sock`), as the kubelet
//! and the sidecars expect.

use std::path::PathBuf;

use tokio_stream::wrappers::UnixListenerStream;
use tokio_util_shim::Shutdown;

use crate::controller::ControllerService;
use crate::csi::controller_server::ControllerServer;
use crate::csi::identity_server::IdentityServer;
use crate::csi::node_server::NodeServer;
use crate::identity::IdentityService;
use crate::node::NodeService;
use crate::plugin::{Plugin, PluginConfig};

mod tokio_util_shim {
    /// A future that ends the server.
    pub type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

/// Why the plugin could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("endpoint {0:?} is not a unix socket (write unix:///path/csi.sock)")]
    Endpoint(String),
    #[error("listening on {path}: {source}")]
    Listen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("serving gRPC: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// The socket path of a CSI endpoint (`unix:///p`, `unix:/p` or `/p`).
pub fn socket_path(endpoint: &str) -> Result<PathBuf, ServeError> {
    let path = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .unwrap_or(endpoint);
    if !path.starts_with('/') {
        return Err(ServeError::Endpoint(endpoint.to_string()));
    }
    Ok(PathBuf::from(path))
}

/// Serves until `shutdown` completes; a stale socket file from an earlier run is replaced.
pub async fn serve(
    endpoint: &str,
    config: PluginConfig,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    let path = socket_path(endpoint)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| ServeError::Listen {
            path: path.clone(),
            source,
        })?;
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(ServeError::Listen { path, source }),
    }
    let listener = tokio::net::UnixListener::bind(&path).map_err(|source| ServeError::Listen {
        path: path.clone(),
        source,
    })?;
    let plugin = Plugin::new(config);
    tracing::info!(socket = %path.display(), manager = %plugin.config.manager, node = ?plugin.config.node_id, "CSI plugin serving");
    tonic::transport::Server::builder()
        .add_service(IdentityServer::new(IdentityService {
            plugin: plugin.clone(),
        }))
        .add_service(ControllerServer::new(ControllerService {
            plugin: plugin.clone(),
        }))
        .add_service(NodeServer::new(NodeService { plugin }))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await?;
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// A client channel to a plugin's socket (for tests and tools).
pub async fn connect(path: PathBuf) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    tonic::transport::Endpoint::try_from("http://[::1]:50051")?
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
}

//! A standalone engine's control API (`ironhorn engine serve --control`): the node API's
//! engine routes (`/node/v1/engines/...`, `ironhorn_node::api::engine_routes`) served for its
//! one volume, so `ironhorn engine info|replica|snapshot|expand` and the manager speak to an
//! engine the same way, with the same types.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use ironhorn_api::node::EngineInstance;
use ironhorn_engine::Engine;
use ironhorn_frontend::nbd::Export;
use ironhorn_node::agent::{engine_view, AgentError, AgentErrorKind};
use ironhorn_node::api::EngineHost;

/// One engine with its NBD export.
#[derive(Debug)]
pub struct StandaloneEngine {
    pub volume: String,
    pub engine: Arc<Engine>,
    pub export: Arc<Export>,
    /// The NBD URI clients connect to.
    pub endpoint: String,
}

impl StandaloneEngine {
    fn connections(&self) -> usize {
        self.export.connections.load(Ordering::SeqCst)
    }

    fn instance(&self) -> EngineInstance {
        EngineInstance {
            endpoint: self.endpoint.clone(),
            frontend: "nbd".to_string(),
            ..engine_view(&self.volume, &self.engine, self.connections())
        }
    }

    fn check(&self, volume: &str) -> Result<(), AgentError> {
        if volume == self.volume {
            Ok(())
        } else {
            Err(AgentError::new(
                AgentErrorKind::NotFound,
                format!("this engine serves volume {}, not {volume}", self.volume),
            ))
        }
    }
}

impl EngineHost for StandaloneEngine {
    async fn engines(&self) -> Vec<EngineInstance> {
        vec![self.instance()]
    }

    async fn engine_report(&self, volume: &str) -> Result<EngineInstance, AgentError> {
        self.check(volume)?;
        Ok(self.instance())
    }

    async fn engine(&self, volume: &str) -> Result<(Arc<Engine>, usize), AgentError> {
        self.check(volume)?;
        Ok((self.engine.clone(), self.connections()))
    }

    async fn expand(&self, volume: &str, size: u64) -> Result<(), AgentError> {
        self.check(volume)?;
        Ok(self.engine.expand(size).await?)
    }
}

//! What every CSI service shares: the manager's address and an HTTP client for it, the
//! mapping from the REST API's error codes to gRPC's, and the guard that answers `Aborted`
//! when an operation on the same volume is already running in this plugin.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ironhorn_api::client::{ApiClient, ClientError, Timeouts};
use ironhorn_api::manager_api;
use ironhorn_api::resource::Volume;
use ironhorn_api::{ErrorCode, Request};
use tonic::Status;

/// The driver's name, as the CSIDriver object and every PersistentVolume carry it.
pub const DRIVER_NAME: &str = "driver.ironhorn.io";

/// How the plugin was started.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// The manager's REST address (`http://host:port`).
    pub manager: String,
    /// This node's name, for the node service (None: controller only).
    pub node_id: Option<String>,
    /// How long an attach, detach or device wait may take before the CO is told to retry.
    pub wait: Duration,
    /// The credentials it calls the manager with (the cluster secret or an API token).
    pub token: Option<String>,
}

/// The shared state of the three services.
#[derive(Debug, Clone)]
pub struct Plugin {
    pub config: Arc<PluginConfig>,
    api: ApiClient,
    busy: Arc<Mutex<HashSet<String>>>,
}

/// Held while an operation runs on a volume; dropping it frees the volume.
#[derive(Debug)]
pub struct VolumeGuard {
    busy: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        if let Ok(mut busy) = self.busy.lock() {
            busy.remove(&self.key);
        }
    }
}

/// The gRPC status for a manager error.
pub fn status_of(e: ClientError) -> Status {
    let message = e.message();
    match e {
        ClientError::Unreachable { .. } => Status::unavailable(format!(
            "the Ironhorn manager does not answer ({message}); retry when it is up"
        )),
        _ => match e.code() {
            ErrorCode::Invalid => Status::invalid_argument(message),
            ErrorCode::NotFound => Status::not_found(message),
            ErrorCode::AlreadyExists => Status::already_exists(message),
            ErrorCode::Conflict => Status::failed_precondition(message),
            ErrorCode::Unavailable => Status::unavailable(message),
            ErrorCode::Internal | ErrorCode::Unknown => Status::internal(message),
            ErrorCode::Unauthenticated => Status::unauthenticated(message),
            ErrorCode::Forbidden => Status::permission_denied(message),
            ErrorCode::Throttled => Status::resource_exhausted(message),
        },
    }
}

impl Plugin {
    pub fn new(config: PluginConfig) -> Plugin {
        let token = config.token.clone();
        Plugin {
            config: Arc::new(config),
            api: ApiClient::new(Timeouts {
                short: Duration::from_secs(5),
                normal: Duration::from_secs(30),
                long: Duration::from_secs(600),
            })
            .with_bearer(token.as_deref()),
            busy: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Sends a request to the manager.
    pub async fn call<R: serde::de::DeserializeOwned>(
        &self,
        request: Request<R>,
    ) -> Result<R, Status> {
        self.api
            .call(&self.config.manager, request)
            .await
            .map_err(status_of)
    }

    /// The volume, or None when it does not exist.
    pub async fn find_volume(&self, name: &str) -> Result<Option<Volume>, Status> {
        match self
            .api
            .call(&self.config.manager, manager_api::get_volume(name))
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(status_of(e)),
        }
    }

    /// The volume, or NotFound.
    pub async fn volume(&self, name: &str) -> Result<Volume, Status> {
        self.find_volume(name)
            .await?
            .ok_or_else(|| Status::not_found(format!("no volume {name:?}")))
    }

    /// Marks `key` (a volume) busy for the guard's life; Aborted when it is already.
    pub fn guard(&self, key: &str) -> Result<VolumeGuard, Status> {
        let mut busy = self
            .busy
            .lock()
            .map_err(|_| Status::internal("the operation registry is poisoned"))?;
        if !busy.insert(key.to_string()) {
            return Err(Status::aborted(format!(
                "an operation on {key} is already running; retry when it completes"
            )));
        }
        Ok(VolumeGuard {
            busy: self.busy.clone(),
            key: key.to_string(),
        })
    }

    /// Polls the volume until `done` says it is ready (returning what it gives), or the
    /// plugin's wait runs out (DeadlineExceeded, saying what it waited for).
    pub async fn wait_for<T>(
        &self,
        name: &str,
        what: &str,
        done: impl FnMut(&Volume) -> Result<Option<T>, Status>,
    ) -> Result<T, Status> {
        self.wait_within(self.config.wait, name, what, done).await
    }

    /// [`Plugin::wait_for`] with its own bound.
    pub async fn wait_within<T>(
        &self,
        wait: Duration,
        name: &str,
        what: &str,
        mut done: impl FnMut(&Volume) -> Result<Option<T>, Status>,
    ) -> Result<T, Status> {
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(20);
        loop {
            let volume = self.volume(name).await?;
            if let Some(t) = done(&volume)? {
                return Ok(t);
            }
            if Instant::now() >= deadline {
                return Err(Status::deadline_exceeded(format!(
                    "volume {name} is not {what} after {wait:?} (state {:?}); retry",
                    volume.status.state
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_second_operation_on_a_volume_is_aborted_until_the_first_ends() {
        let plugin = Plugin::new(PluginConfig {
            token: None,
            manager: "http://127.0.0.1:1".into(),
            node_id: None,
            wait: Duration::from_secs(1),
        });
        let first = plugin.guard("v").unwrap();
        assert_eq!(plugin.guard("v").unwrap_err().code(), tonic::Code::Aborted);
        let other = plugin.guard("w").unwrap();
        drop(first);
        plugin.guard("v").unwrap();
        drop(other);
    }

    #[test]
    fn manager_errors_map_to_the_csi_codes() {
        let api = |code: ErrorCode| ClientError::Api {
            status: code.http_status(),
            body: ironhorn_api::ErrorBody::new(code, "m"),
        };
        assert_eq!(
            status_of(api(ErrorCode::Invalid)).code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            status_of(api(ErrorCode::NotFound)).code(),
            tonic::Code::NotFound
        );
        assert_eq!(
            status_of(api(ErrorCode::AlreadyExists)).code(),
            tonic::Code::AlreadyExists
        );
        assert_eq!(
            status_of(api(ErrorCode::Conflict)).code(),
            tonic::Code::FailedPrecondition
        );
        assert_eq!(
            status_of(api(ErrorCode::Unavailable)).code(),
            tonic::Code::Unavailable
        );
        assert_eq!(
            status_of(api(ErrorCode::Internal)).code(),
            tonic::Code::Internal
        );
    }
}

//! The API's one error shape: an HTTP status, a machine-readable code and a `message` that
//! says what to do next (`ironhorn_api::ErrorBody` on the wire). Every error the manager
//! answers with becomes an HTTP response here, and only here.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ironhorn_api::{ErrorBody, ErrorCode};
use ironhorn_store::StoreError;

use crate::node_client::NodeCallError;
use crate::state::StateError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, message)
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Invalid, message)
    }

    pub fn exists(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::AlreadyExists, message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Conflict, message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Unavailable, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Unauthenticated, message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Forbidden, message)
    }

    pub fn throttled(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Throttled, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Internal, message)
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => ApiError::conflict(e.to_string()),
            StoreError::Backend { .. } => ApiError::internal(e.to_string()),
            StoreError::Unavailable { .. } | StoreError::Fenced { .. } => {
                ApiError::unavailable(e.to_string())
            }
        }
    }
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Store(e) => e.into(),
            StateError::KeepsChanging { .. } => ApiError::conflict(e.to_string()),
            StateError::Unreadable { .. } | StateError::Unwritable { .. } => {
                ApiError::internal(e.to_string())
            }
        }
    }
}

/// A node's answer keeps its class; a node that did not answer makes the request
/// unavailable (it may work once the node is back).
impl From<NodeCallError> for ApiError {
    fn from(e: NodeCallError) -> Self {
        match e.code() {
            ErrorCode::Unavailable => ApiError::unavailable(e.to_string()),
            ErrorCode::Unknown => ApiError::internal(e.source.message()),
            code => ApiError::new(code, e.source.message()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        (status, Json(ErrorBody::new(self.code, self.message))).into_response()
    }
}

//! The one error shape of every Ironhorn HTTP API (the manager's REST API, the node API and a
//! standalone engine's control API): an HTTP status, a machine-readable [`ErrorCode`] and a
//! message that says what happened and what to do next. The status follows from the code, in
//! [`ErrorCode::http_status`] only.

use serde::{Deserialize, Serialize};

/// What kind of failure an error is. Clients act on the code, people read the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or asks for something impossible; sending it again fails again.
    Invalid,
    /// The resource (or API path) does not exist.
    NotFound,
    /// A resource of that name exists already.
    AlreadyExists,
    /// The request conflicts with the current state (attached elsewhere, mounted, in use).
    Conflict,
    /// Something it needs (a node, a replica) did not answer; it may work later.
    Unavailable,
    /// The server failed; its log says more.
    Internal,
    /// No credentials, or ones that stand for nobody (unknown, revoked or expired).
    Unauthenticated,
    /// The caller is known but its role may not do this.
    Forbidden,
    /// Too many attempts (failed logins): wait as the message says.
    Throttled,
    /// A code this version does not know (from a newer peer).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The HTTP status every API answers this code with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Invalid => 400,
            ErrorCode::NotFound => 404,
            ErrorCode::AlreadyExists | ErrorCode::Conflict => 409,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal | ErrorCode::Unknown => 500,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::Throttled => 429,
        }
    }

    /// The code for an error answer whose body could not be read.
    pub fn from_http_status(status: u16) -> ErrorCode {
        match status {
            400 | 405 | 413 | 415 | 422 => ErrorCode::Invalid,
            404 => ErrorCode::NotFound,
            409 => ErrorCode::Conflict,
            401 => ErrorCode::Unauthenticated,
            403 => ErrorCode::Forbidden,
            429 => ErrorCode::Throttled,
            502..=504 => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }

    /// The code's name on the wire (`not_found`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Invalid => "invalid",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Throttled => "throttled",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const ALL: [ErrorCode; 9] = [
        ErrorCode::Invalid,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::Conflict,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::Throttled,
    ];

    #[test]
    fn codes_travel_by_their_names() {
        for code in ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn an_unknown_code_is_read_not_refused() {
        let body: ErrorBody =
            serde_json::from_str(r#"{"code": "quota_exceeded", "message": "m"}"#).unwrap();
        assert_eq!(body.code, ErrorCode::Unknown);
        assert_eq!(body.message, "m");
    }

    #[test]
    fn a_status_read_back_gives_the_same_class() {
        for code in ALL {
            let back = ErrorCode::from_http_status(code.http_status());
            assert_eq!(back.http_status(), code.http_status(), "{code}");
        }
    }
}

//! Users, roles, API tokens, sessions and the audit log as they cross the wire. Secrets
//! travel once (a new token's text, a login's password) and are never shown again.

use serde::{Deserialize, Serialize};

/// A user's role; each includes what the ones before it may do: `viewer` reads, `operator`
/// also changes volumes, snapshots, backups, recurring jobs and nodes' scheduling, `admin`
/// also settings, backup targets, credentials and users, and reads the audit log.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Reads a role's name; the error lists the roles.
    pub fn parse(name: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| format!("role {name:?} is unknown: use viewer, operator or admin"))
    }
}

/// A user as shown (never its password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub name: String,
    pub role: Role,
    pub created: String,
    /// Whether a password is set (a user may sign in with tokens only).
    pub has_password: bool,
}

/// An API token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    pub id: String,
    pub user: String,
    #[serde(default)]
    pub description: String,
    pub created: String,
    /// RFC 3339; empty when it does not expire.
    #[serde(default)]
    pub expires: String,
}

/// A token just made: `token` is shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuedToken {
    #[serde(flatten)]
    pub view: TokenView,
    /// `Authorization: Bearer <token>`.
    pub token: String,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    pub user: String,
    pub role: Role,
    /// `session`, `token:<id>`, or `node` (the cluster secret).
    pub via: String,
}

/// `POST /v1/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub user: String,
    pub password: String,
}

/// Who is calling; for a browser session, the CSRF token its changes carry in
/// `X-CSRF-Token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    #[serde(flatten)]
    pub principal: Principal,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub csrf_token: String,
}

/// `POST /v1/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUser {
    #[schema(pattern = "^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")]
    pub name: String,
    pub role: Role,
    /// At least 10 characters; without one the user signs in with API tokens only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// `POST /v1/tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateToken {
    #[serde(default)]
    pub description: String,
    /// Whose token (admins only; the caller's by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// How long it is valid (at most ten years); until revoked when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 316224000)]
    pub expires_in_seconds: Option<u64>,
}

/// One entry of the audit log: a change asked of the API (or a sign-in), by whom, with what
/// result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// RFC 3339 with milliseconds.
    pub at: String,
    /// The user (`system` for the cluster secret; `-` when nobody was recognised).
    pub user: String,
    /// `session`, `token:<id>`, `node`, or `-`.
    pub via: String,
    /// The client's address.
    pub from: String,
    pub method: String,
    /// What was acted on: the API path.
    pub path: String,
    pub status: u16,
    /// `ok`, `denied` (401, 403, 429) or `failed`.
    pub result: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_read_back_and_order() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.name()), Ok(r));
            assert_eq!(
                serde_json::to_value(r).ok(),
                Some(serde_json::Value::String(r.name().into()))
            );
        }
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert!(Role::parse("root")
            .unwrap_err()
            .contains("viewer, operator or admin"));
    }
}

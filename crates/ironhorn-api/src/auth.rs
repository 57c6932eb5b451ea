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

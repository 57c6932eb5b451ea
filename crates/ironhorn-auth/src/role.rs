//! Roles and what each may call. `viewer` reads; `operator` also changes volumes, snapshots,
//! backups, recurring jobs and nodes' scheduling; `admin` also changes settings, backup
//! targets, credentials and users, and reads the audit log. Node agents and the manager prove
//! themselves to each other with the cluster secret, not a user's role.

pub use ironhorn_api::auth::Role;

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Nothing: the login call and the UI's static files (which hold no data).
    Public,
    /// A signed-in user (session or API token) with at least this role.
    User(Role),
    /// The cluster secret: node agents and the manager calling each other.
    Node,
}

/// Whether a method only reads.
fn reads(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// What a call of `method` on `path` (query string allowed) needs.
pub fn requirement(method: &str, path: &str) -> Requirement {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let under = |prefix: &str| {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    if under("/node/v1") {
        return Requirement::Node;
    }
    if !under("/v1") && path != "/metrics" {
        // The UI's page and assets: data comes only through the API.
        return Requirement::Public;
    }
    if path == "/v1/login" && method == "POST" {
        return Requirement::Public;
    }
    if path == "/v1/nodes/register" && !reads(method) {
        return Requirement::Node;
    }
    if under("/v1/users") || under("/v1/audit") || under("/v1/secrets") {
        return Requirement::User(Role::Admin);
    }
    if reads(method) || path == "/v1/logout" || under("/v1/tokens") {
        // Tokens: everyone manages their own; the handler keeps others' to admins.
        return Requirement::User(Role::Viewer);
    }
    if under("/v1/settings") || under("/v1/backuptargets") {
        return Requirement::User(Role::Admin);
    }
    Requirement::User(Role::Operator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_read_back_and_order() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.name()), Ok(r));
        }
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert!(Role::parse("root")
            .unwrap_err()
            .contains("viewer, operator or admin"));
    }

    #[test]
    fn each_call_needs_what_its_effect_asks() {
        use Requirement::*;
        let cases = [
            ("GET", "/v1/volumes", User(Role::Viewer)),
            ("GET", "/v1/volumes/v?x=1", User(Role::Viewer)),
            ("GET", "/metrics", User(Role::Viewer)),
            ("GET", "/v1/openapi.json", User(Role::Viewer)),
            ("POST", "/v1/volumes", User(Role::Operator)),
            ("POST", "/v1/volumes/v/attach", User(Role::Operator)),
            ("DELETE", "/v1/volumes/v/snapshots/s", User(Role::Operator)),
            ("PATCH", "/v1/nodes/n1", User(Role::Operator)),
            ("POST", "/v1/recurringjobs/j/run", User(Role::Operator)),
            ("PUT", "/v1/settings/backup-target", User(Role::Admin)),
            ("PUT", "/v1/backuptargets/default", User(Role::Admin)),
            ("GET", "/v1/secrets", User(Role::Admin)),
            ("GET", "/v1/users", User(Role::Admin)),
            ("GET", "/v1/audit", User(Role::Admin)),
            ("POST", "/v1/tokens", User(Role::Viewer)),
            ("POST", "/v1/logout", User(Role::Viewer)),
            ("POST", "/v1/login", Public),
            ("GET", "/v1/login", User(Role::Viewer)),
            ("POST", "/v1/nodes/register", Node),
            ("GET", "/node/v1/report", Node),
            ("POST", "/node/v1/engines/v/snapshots", Node),
            ("GET", "/", Public),
            ("GET", "/assets/index-3f2a.js", Public),
            // Prefixes match whole segments only.
            ("GET", "/v1x", Public),
            ("POST", "/v1/usersx", User(Role::Operator)),
            ("PUT", "/v1/settings", User(Role::Admin)),
            // An unknown method changes something until shown otherwise.
            ("BREW", "/v1/volumes", User(Role::Operator)),
        ];
        for (method, path, want) in cases {
            assert_eq!(requirement(method, path), want, "{method} {path}");
        }
    }
}

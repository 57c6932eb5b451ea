//! The gate in front of every endpoint (who is calling, and may they), and the endpoints of
//! users, API tokens and browser sessions: `/v1/login`, `/v1/logout`, `/v1/me`,
//! `/v1/users`, `/v1/tokens`. A caller is known by `Authorization: Bearer <token>` (an API
//! token, or the cluster secret node agents and the CSI driver hold) or by the session
//! cookie a login sets; a browser's changes must echo the session's CSRF token in
//! `X-CSRF-Token`.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use ironhorn_api::auth::{
    AuditEntry, CreateToken, CreateUser, IssuedToken, Login, Me, Principal, Role, TokenView, User,
};
use ironhorn_api::rest::List;
use ironhorn_api::ErrorBody;
use ironhorn_auth::limit::LoginLimiter;
use ironhorn_auth::secret;
use ironhorn_auth::{requirement, Requirement};

use crate::audit;
use crate::error::ApiError;
use crate::users::{self, AuthError};
use crate::Manager;

use super::{Json, Query, Result, Shared};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "ironhorn_session";
/// The header a browser's changes carry the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What the gate knows: whether it is open (authentication turned off, on loopback only),
/// the cluster secret, and the failed logins.
#[derive(Debug, Default)]
pub struct Gate {
    pub open: bool,
    pub cluster_secret: Option<String>,
    pub limiter: Mutex<LoginLimiter>,
    /// The listener is HTTPS: session cookies are marked Secure (never sent in clear).
    pub secure_cookies: bool,
}

/// The principal the cluster secret stands for: node agents and the CSI driver.
pub fn system() -> Principal {
    Principal {
        user: "system".into(),
        role: Role::Operator,
        via: "node".into(),
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let message = e.to_string();
        match e {
            AuthError::Invalid(_) => ApiError::invalid(message),
            AuthError::Exists(_) => ApiError::exists(message),
            AuthError::LastAdmin(_) => ApiError::conflict(message),
            AuthError::NoUser(_) | AuthError::NoToken(_) => ApiError::not_found(message),
            AuthError::BadLogin => ApiError::unauthenticated(message),
            AuthError::Throttled(_) => ApiError::throttled(message),
            AuthError::State(s) => s.into(),
            AuthError::Random(_) => ApiError::internal(message),
        }
    }
}

/// What keeps the session cookie from scripts, other sites and (over HTTPS) clear text.
fn cookie_attributes(m: &Manager) -> &'static str {
    if m.gate.secure_cookies {
        "HttpOnly; Secure; SameSite=Strict; Path=/"
    } else {
        "HttpOnly; SameSite=Strict; Path=/"
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// Who is calling, from the request's credentials; for a browser session, also the CSRF
/// token its changes must carry.
async fn caller(m: &Manager, headers: &HeaderMap) -> Result<(Principal, Option<String>)> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(secret::bearer);
    if let Some(token) = bearer {
        if m.gate
            .cluster_secret
            .as_deref()
            .is_some_and(|s| secret::same(token, s))
        {
            return Ok((system(), None));
        }
        return users::authenticate_token(m, token)
            .await?
            .map(|p| (p, None))
            .ok_or_else(|| {
                ApiError::unauthenticated(
                    "the token is unknown, revoked or expired: `ironhorn token create` makes a new one",
                )
            });
    }
    if let Some(cookie) = session_cookie(headers) {
        let session = users::authenticate_session(m, cookie)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("the session ended: sign in again"))?;
        return Ok((session.principal, Some(session.csrf)));
    }
    Err(ApiError::unauthenticated(
        "sign in: an API token in `Authorization: Bearer ...` (the CLI reads IRONHORN_TOKEN, IRONHORN_TOKEN_FILE, or the admin.token the server wrote in its data directory), or a session from POST /v1/login",
    ))
}

/// A browser's change must echo its session's CSRF token.
fn check_csrf(method: &Method, headers: &HeaderMap, csrf: Option<&str>) -> Result<()> {
    let Some(expected) = csrf else {
        return Ok(());
    };
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let echoed = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if secret::same(echoed, expected) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "the X-CSRF-Token header is missing or wrong: changes from a browser carry the token /v1/me gives",
        ))
    }
}

/// Whether `who` may make a call that needs `need`.
fn allowed(who: &Principal, need: Requirement, method: &Method, path: &str) -> Result<()> {
    let ok = match need {
        Requirement::Public => true,
        Requirement::Node => who.via == "node" || who.role == Role::Admin,
        Requirement::User(role) => who.role >= role,
    };
    if ok {
        return Ok(());
    }
    let needs = match need {
        Requirement::User(role) => format!("the {} role", role.name()),
        _ => "the cluster secret".to_string(),
    };
    Err(ApiError::forbidden(format!(
        "{} ({}) may not {method} {path}: that needs {needs}",
        who.user,
        who.role.name()
    )))
}

/// The gate: every request passes it before its handler; every change (allowed or not) goes
/// to the audit log.
pub(super) async fn gate(State(m): Shared, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let from = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "-".to_string(), |c| c.0.ip().to_string());
    let need = requirement(method.as_str(), &path);
    let (who, response) = if need == Requirement::Public {
        (None, next.run(req).await)
    } else if m.gate.open {
        req.extensions_mut().insert(system());
        (Some(system()), next.run(req).await)
    } else {
        match caller(&m, req.headers()).await {
            Err(e) => (None, e.into_response()),
            Ok((who, csrf)) => {
                let checked = check_csrf(&method, req.headers(), csrf.as_deref())
                    .and_then(|()| allowed(&who, need, &method, &path));
                match checked {
                    Err(e) => (Some(who), e.into_response()),
                    Ok(()) => {
                        req.extensions_mut().insert(who.clone());
                        (Some(who), next.run(req).await)
                    }
                }
            }
        }
    };
    let changes = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS)
        && response
            .extensions()
            .get::<audit::NothingChanged>()
            .is_none();
    if changes {
        // A sign-in says who it signed in.
        let who = who.or_else(|| response.extensions().get::<Principal>().cloned());
        let status = response.status().as_u16();
        let entry = AuditEntry {
            at: crate::clock::now_rfc3339_millis(),
            user: who.as_ref().map_or_else(|| "-".into(), |p| p.user.clone()),
            via: who.as_ref().map_or_else(|| "-".into(), |p| p.via.clone()),
            from,
            method: method.to_string(),
            path,
            status,
            result: audit::result_of(status).to_string(),
        };
        audit::record(&m, entry).await;
    }
    response
}

#[utoipa::path(get, path = "/v1/audit", tag = "auth", params(AuditQuery), responses((status = 200, description = "The newest entries of the audit log, newest first (admins only)", body = List<AuditEntry>), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "Not an admin", body = ErrorBody)))]
pub(super) async fn list_audit(
    State(m): Shared,
    Query(q): Query<AuditQuery>,
) -> Result<Json<List<AuditEntry>>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=audit::KEEP).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit: between 1 and {}, not {limit}",
            audit::KEEP
        )));
    }
    Ok(Json(List {
        data: audit::list(&m, limit).await?,
    }))
}

/// How many audit entries.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// The newest this many (default 100).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
}

#[utoipa::path(post, path = "/v1/login", tag = "auth", request_body = Login, responses((status = 200, description = "Signed in: the session cookie is set (HttpOnly, SameSite=Strict); changes carry csrfToken in X-CSRF-Token", body = Me), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "Wrong user name or password", body = ErrorBody), (status = 429, description = "Too many failed logins: wait", body = ErrorBody)))]
pub(super) async fn login(
    State(m): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(req): Json<Login>,
) -> Result<Response> {
    let session = users::login(
        &m,
        &m.gate.limiter,
        &req.user,
        &req.password,
        &peer.ip().to_string(),
    )
    .await?;
    tracing::info!(user = %session.principal.user, from = %peer.ip(), "signed in");
    let cookie = format!(
        "{SESSION_COOKIE}={}; {}; Max-Age={}",
        session.cookie,
        cookie_attributes(&m),
        users::SESSION_LIFETIME.as_secs()
    );
    let principal = session.principal.clone();
    let me = Me {
        principal: session.principal,
        csrf_token: session.csrf,
    };
    let mut response = ([(header::SET_COOKIE, cookie)], Json(me)).into_response();
    // For the audit log: who signed in.
    response.extensions_mut().insert(principal);
    Ok(response)
}

#[utoipa::path(post, path = "/v1/logout", tag = "auth", responses((status = 204, description = "The session is over: its cookie is worth nothing now"), (status = 401, description = "Not signed in", body = ErrorBody)))]
pub(super) async fn logout(State(m): Shared, headers: HeaderMap) -> Result<Response> {
    if let Some(cookie) = session_cookie(&headers) {
        users::logout(&m, cookie).await?;
    }
    let expired = format!("{SESSION_COOKIE}=; {}; Max-Age=0", cookie_attributes(&m));
    Ok(([(header::SET_COOKIE, expired)], StatusCode::NO_CONTENT).into_response())
}

#[utoipa::path(get, path = "/v1/me", tag = "auth", responses((status = 200, description = "Who is calling (with the session's CSRF token for a browser)", body = Me), (status = 401, description = "Not signed in", body = ErrorBody)))]
pub(super) async fn me(
    State(m): Shared,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
) -> Result<Json<Me>> {
    let csrf_token = match session_cookie(&headers) {
        Some(cookie) => users::authenticate_session(&m, cookie)
            .await?
            .map(|s| s.csrf)
            .unwrap_or_default(),
        None => String::new(),
    };
    Ok(Json(Me {
        principal: who,
        csrf_token,
    }))
}

#[utoipa::path(get, path = "/v1/users", tag = "auth", responses((status = 200, description = "Every user (admins only)", body = List<User>), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "Not an admin", body = ErrorBody)))]
pub(super) async fn list_users(State(m): Shared) -> Result<Json<List<User>>> {
    Ok(Json(List {
        data: users::list_users(&m).await?,
    }))
}

#[utoipa::path(post, path = "/v1/users", tag = "auth", request_body = CreateUser, responses((status = 201, description = "Created", body = User), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "Not an admin", body = ErrorBody), (status = 409, description = "Exists", body = ErrorBody)))]
pub(super) async fn create_user(
    State(m): Shared,
    Json(req): Json<CreateUser>,
) -> Result<(StatusCode, Json<User>)> {
    let user = users::create_user(&m, &req.name, req.role, req.password.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[utoipa::path(delete, path = "/v1/users/{name}", tag = "auth", params(("name" = String, Path, description = "User name")), responses((status = 204, description = "Deleted with its tokens and sessions"), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "Not an admin", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody), (status = 409, description = "The last admin, or changed meanwhile", body = ErrorBody)))]
pub(super) async fn delete_user(State(m): Shared, Path(name): Path<String>) -> Result<StatusCode> {
    users::delete_user(&m, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/tokens", tag = "auth", responses((status = 200, description = "The caller's API tokens (an admin's: everyone's)", body = List<TokenView>), (status = 401, description = "Not signed in", body = ErrorBody)))]
pub(super) async fn list_tokens(
    State(m): Shared,
    Extension(who): Extension<Principal>,
) -> Result<Json<List<TokenView>>> {
    let of = (who.role != Role::Admin).then_some(who.user.as_str());
    Ok(Json(List {
        data: users::list_tokens(&m, of).await?,
    }))
}

#[utoipa::path(post, path = "/v1/tokens", tag = "auth", request_body = CreateToken, responses((status = 201, description = "Created: the token is shown this once", body = IssuedToken), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "A token for another user needs an admin", body = ErrorBody), (status = 404, description = "No such user", body = ErrorBody)))]
pub(super) async fn create_token(
    State(m): Shared,
    Extension(who): Extension<Principal>,
    Json(body): Json<CreateToken>,
) -> Result<(StatusCode, Json<IssuedToken>)> {
    let user = body.user.clone().unwrap_or_else(|| who.user.clone());
    if user != who.user && who.role != Role::Admin {
        return Err(ApiError::forbidden(format!(
            "{} ({}) may make tokens for itself only",
            who.user,
            who.role.name()
        )));
    }
    let lifetime = body.expires_in_seconds.map(Duration::from_secs);
    let issued = users::issue_token(&m, &user, &body.description, lifetime).await?;
    tracing::info!(user = %user, token = %issued.view.id, by = %who.user, "API token created");
    Ok((StatusCode::CREATED, Json(issued)))
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "auth", params(("id" = String, Path, description = "Token id")), responses((status = 204, description = "Revoked"), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "Another user's token needs an admin", body = ErrorBody), (status = 404, description = "No such resource", body = ErrorBody)))]
pub(super) async fn revoke_token(
    State(m): Shared,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    if who.role != Role::Admin {
        let own = users::list_tokens(&m, Some(&who.user)).await?;
        if !own.iter().any(|t| t.id == id) {
            return Err(ApiError::not_found(format!(
                "{} has no token {id:?}; `ironhorn token ls` lists yours",
                who.user
            )));
        }
    }
    users::revoke_token(&m, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

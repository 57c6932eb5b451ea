//! Users, API tokens and browser sessions in the store (`users/`, `tokens/`, `sessions/`):
//! creating and listing them, turning a bearer token or a session cookie into the
//! [`Principal`] calling, logins (slowed per address and per user), logout, and the first
//! admin a new cluster gets. Passwords are kept as argon2id hashes, tokens and sessions as the
//! SHA-256 of their secret (`ironhorn_auth`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ironhorn_api::auth::{IssuedToken, Principal, Role, TokenView, User};
use ironhorn_auth::limit::LoginLimiter;
use ironhorn_auth::password;
use ironhorn_auth::secret::{self, Kind};
use ironhorn_control::validate::{check_name, MAX_NAME};
use ironhorn_store::{Expect, StoreError};
use serde::{Deserialize, Serialize};

use crate::state::{self, StateError};
use crate::Manager;

pub const USERS: &str = "users/";
pub const TOKENS: &str = "tokens/";
pub const SESSIONS: &str = "sessions/";

/// How long a browser session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The user a new cluster's first token belongs to.
pub const FIRST_ADMIN: &str = "admin";

/// Why a user, token or session call failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Invalid(String),
    #[error("user {0:?} exists already")]
    Exists(String),
    #[error("no user {0:?}; `ironhorn user ls` lists them")]
    NoUser(String),
    #[error("no token {0:?}; `ironhorn token ls` lists them")]
    NoToken(String),
    #[error("{0:?} is the last admin: make another admin first (`ironhorn user create NAME --role admin`), or nobody could manage users again")]
    LastAdmin(String),
    /// Wrong user or password: which of the two is not said.
    #[error("wrong user name or password")]
    BadLogin,
    #[error("too many failed logins from here or for this user; try again in {} s", .0.as_secs().max(1))]
    Throttled(Duration),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("no randomness from the system: {0}")]
    Random(String),
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        AuthError::State(StateError::from(e))
    }
}

type Result<T> = std::result::Result<T, AuthError>;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredUser {
    name: String,
    role: Role,
    created: String,
    /// argon2id PHC string; empty: this user signs in with tokens only.
    #[serde(default)]
    password_hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredToken {
    id: String,
    user: String,
    hash: String,
    #[serde(default)]
    description: String,
    created: String,
    /// Seconds since the Unix epoch; None: never.
    #[serde(default)]
    expires: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredSession {
    id: String,
    user: String,
    hash: String,
    csrf: String,
    expires: i64,
}

use crate::clock::{now_secs, rfc3339};

/// The longest a token may be made to last.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

fn random_error(e: impl std::fmt::Display) -> AuthError {
    AuthError::Random(e.to_string())
}

impl StoredUser {
    fn view(&self) -> User {
        User {
            name: self.name.clone(),
            role: self.role,
            created: self.created.clone(),
            has_password: !self.password_hash.is_empty(),
        }
    }
}

impl StoredToken {
    fn view(&self) -> TokenView {
        TokenView {
            id: self.id.clone(),
            user: self.user.clone(),
            description: self.description.clone(),
            created: self.created.clone(),
            expires: self.expires.map(rfc3339).unwrap_or_default(),
        }
    }
}

async fn user(m: &Manager, name: &str) -> Result<Option<StoredUser>> {
    Ok(
        state::get::<StoredUser>(m.store.as_ref(), &format!("{USERS}{name}"))
            .await?
            .map(|(u, _)| u),
    )
}

/// Creates a user; without a password it signs in with tokens only.
pub async fn create_user(
    m: &Manager,
    name: &str,
    role: Role,
    password: Option<&str>,
) -> Result<User> {
    check_name("user", name, MAX_NAME).map_err(|e| AuthError::Invalid(e.to_string()))?;
    let password_hash = match password {
        Some(p) => {
            let p = p.to_string();
            tokio::task::spawn_blocking(move || password::hash(&p))
                .await
                .map_err(|e| AuthError::Invalid(e.to_string()))?
                .map_err(|e| AuthError::Invalid(e.to_string()))?
        }
        None => String::new(),
    };
    let stored = StoredUser {
        name: name.to_string(),
        role,
        created: rfc3339(now_secs()),
        password_hash,
    };
    if state::create(m.store.as_ref(), &format!("{USERS}{name}"), &stored).await? {
        Ok(stored.view())
    } else {
        Err(AuthError::Exists(name.to_string()))
    }
}

pub async fn list_users(m: &Manager) -> Result<Vec<User>> {
    Ok(state::list::<StoredUser>(m.store.as_ref(), USERS)
        .await?
        .into_iter()
        .map(|(u, _)| u.view())
        .collect())
}

/// Deletes a user with its tokens and sessions; never the last admin.
pub async fn delete_user(m: &Manager, name: &str) -> Result<()> {
    let users = state::list::<StoredUser>(m.store.as_ref(), USERS).await?;
    let Some((user, revision)) = users.iter().find(|(u, _)| u.name == name) else {
        return Err(AuthError::NoUser(name.to_string()));
    };
    let admins = users.iter().filter(|(u, _)| u.role == Role::Admin).count();
    if user.role == Role::Admin && admins == 1 {
        return Err(AuthError::LastAdmin(name.to_string()));
    }
    // As read: a user changed meanwhile is not deleted on a stale view.
    m.store
        .delete(&format!("{USERS}{name}"), Expect::Revision(*revision))
        .await?;
    for (t, _) in state::list::<StoredToken>(m.store.as_ref(), TOKENS).await? {
        if t.user == name {
            m.store
                .delete(&format!("{TOKENS}{}", t.id), Expect::Any)
                .await?;
        }
    }
    for (s, _) in state::list::<StoredSession>(m.store.as_ref(), SESSIONS).await? {
        if s.user == name {
            m.store
                .delete(&format!("{SESSIONS}{}", s.id), Expect::Any)
                .await?;
        }
    }
    Ok(())
}

/// A new API token of `user`, valid for `lifetime` (None: until revoked).
pub async fn issue_token(
    m: &Manager,
    user_name: &str,
    description: &str,
    lifetime: Option<Duration>,
) -> Result<IssuedToken> {
    if lifetime.is_some_and(|l| l > MAX_TOKEN_LIFETIME) {
        return Err(AuthError::Invalid(format!(
            "expiresInSeconds: at most {} (ten years); leave it out for a token that lasts until revoked",
            MAX_TOKEN_LIFETIME.as_secs()
        )));
    }
    if user(m, user_name).await?.is_none() {
        return Err(AuthError::NoUser(user_name.to_string()));
    }
    let issued = secret::issue(Kind::Token).map_err(random_error)?;
    let now = now_secs();
    let stored = StoredToken {
        id: issued.id.clone(),
        user: user_name.to_string(),
        hash: issued.hash,
        description: description.to_string(),
        created: rfc3339(now),
        expires: lifetime
            .map(|l| now.saturating_add(i64::try_from(l.as_secs()).unwrap_or(i64::MAX))),
    };
    state::put(
        m.store.as_ref(),
        &format!("{TOKENS}{}", stored.id),
        &stored,
        Expect::Absent,
    )
    .await?;
    Ok(IssuedToken {
        view: stored.view(),
        token: issued.text,
    })
}

/// Tokens, of one user or of all.
pub async fn list_tokens(m: &Manager, of: Option<&str>) -> Result<Vec<TokenView>> {
    Ok(state::list::<StoredToken>(m.store.as_ref(), TOKENS)
        .await?
        .into_iter()
        .filter(|(t, _)| of.is_none_or(|u| t.user == u))
        .map(|(t, _)| t.view())
        .collect())
}

pub async fn revoke_token(m: &Manager, id: &str) -> Result<()> {
    match m
        .store
        .delete(&format!("{TOKENS}{id}"), Expect::Any)
        .await?
    {
        Some(_) => Ok(()),
        None => Err(AuthError::NoToken(id.to_string())),
    }
}

/// The principal a bearer token stands for; None when it is no valid token (malformed,
/// unknown, revoked, expired, wrong secret, or its user is gone).
pub async fn authenticate_token(m: &Manager, text: &str) -> Result<Option<Principal>> {
    let Some((id, secret_part)) = secret::parse(Kind::Token, text) else {
        return Ok(None);
    };
    let Some((token, _)) =
        state::get::<StoredToken>(m.store.as_ref(), &format!("{TOKENS}{id}")).await?
    else {
        return Ok(None);
    };
    if !secret::matches(secret_part, &token.hash) || token.expires.is_some_and(|e| e <= now_secs())
    {
        return Ok(None);
    }
    Ok(user(m, &token.user).await?.map(|u| Principal {
        user: u.name,
        role: u.role,
        via: format!("token:{id}"),
    }))
}

/// A signed-in browser: the cookie's text and the CSRF token its page must echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
    pub principal: Principal,
}

/// Signs `user_name` in from `address`; failures are counted per address and per user, and
/// slowed once there are too many.
pub async fn login(
    m: &Manager,
    limiter: &Mutex<LoginLimiter>,
    user_name: &str,
    password_text: &str,
    address: &str,
) -> Result<Session> {
    let keys = [format!("addr:{address}"), format!("user:{user_name}")];
    let now = Instant::now();
    {
        let limiter = limiter.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(wait) = keys.iter().filter_map(|k| limiter.wait(k, now)).max() {
            return Err(AuthError::Throttled(wait));
        }
    }
    let found = user(m, user_name).await?;
    // argon2 takes tens of milliseconds of CPU: off the async threads. An unknown user costs
    // the same work as a real check, so the time taken does not tell whether the user exists.
    let stored_hash = match &found {
        Some(u) if !u.password_hash.is_empty() => Some(u.password_hash.clone()),
        _ => None,
    };
    let attempt = password_text.to_string();
    let ok = tokio::task::spawn_blocking(move || match stored_hash {
        Some(hash) => password::verify(&attempt, &hash),
        None => {
            static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let dummy =
                DUMMY.get_or_init(|| password::hash("not anyone's password").unwrap_or_default());
            let _ = password::verify(&attempt, dummy);
            false
        }
    })
    .await
    .unwrap_or(false);
    {
        let mut limits = limiter.lock().unwrap_or_else(|e| e.into_inner());
        for k in &keys {
            if ok {
                limits.succeeded(k);
            } else {
                limits.failed(k, now);
            }
        }
    }
    let Some(u) = found.filter(|_| ok) else {
        return Err(AuthError::BadLogin);
    };
    let issued = secret::issue(Kind::Session).map_err(random_error)?;
    let csrf = secret::csrf_token().map_err(random_error)?;
    let stored = StoredSession {
        id: issued.id.clone(),
        user: u.name.clone(),
        hash: issued.hash,
        csrf: csrf.clone(),
        expires: now_secs()
            .saturating_add(i64::try_from(SESSION_LIFETIME.as_secs()).unwrap_or(i64::MAX)),
    };
    state::put(
        m.store.as_ref(),
        &format!("{SESSIONS}{}", stored.id),
        &stored,
        Expect::Absent,
    )
    .await?;
    Ok(Session {
        cookie: issued.text,
        csrf,
        principal: Principal {
            user: u.name,
            role: u.role,
            via: "session".into(),
        },
    })
}

/// The session a cookie stands for (with its CSRF token); None when it is no live session.
pub async fn authenticate_session(m: &Manager, cookie: &str) -> Result<Option<Session>> {
    let Some((id, secret_part)) = secret::parse(Kind::Session, cookie) else {
        return Ok(None);
    };
    let Some((s, _)) =
        state::get::<StoredSession>(m.store.as_ref(), &format!("{SESSIONS}{id}")).await?
    else {
        return Ok(None);
    };
    if !secret::matches(secret_part, &s.hash) || s.expires <= now_secs() {
        return Ok(None);
    }
    Ok(user(m, &s.user).await?.map(|u| Session {
        cookie: cookie.to_string(),
        csrf: s.csrf,
        principal: Principal {
            user: u.name,
            role: u.role,
            via: "session".into(),
        },
    }))
}

/// Ends a session: its cookie is worth nothing after.
pub async fn logout(m: &Manager, cookie: &str) -> Result<()> {
    if let Some((id, _)) = secret::parse(Kind::Session, cookie) {
        m.store
            .delete(&format!("{SESSIONS}{id}"), Expect::Any)
            .await?;
    }
    Ok(())
}

/// A new cluster's first admin: when there is no user yet, user `admin` (tokens only, no
/// password: never a default one) and a token for whoever started the server. None when
/// users exist.
pub async fn bootstrap_admin(m: &Manager) -> Result<Option<IssuedToken>> {
    if !list_users(m).await?.is_empty() {
        return Ok(None);
    }
    match create_user(m, FIRST_ADMIN, Role::Admin, None).await {
        Ok(_) | Err(AuthError::Exists(_)) => {}
        Err(e) => return Err(e),
    }
    issue_token(
        m,
        FIRST_ADMIN,
        "the first admin's, written by the server",
        None,
    )
    .await
    .map(Some)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use ironhorn_store::RedbStore;

    use super::*;

    fn manager() -> (Manager, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(&dir.path().join("state.redb")).unwrap());
        (Manager::new(store, None), dir)
    }

    #[tokio::test]
    async fn the_last_admin_is_never_deleted() {
        let (m, _dir) = manager();
        bootstrap_admin(&m).await.unwrap().unwrap();
        create_user(&m, "olga", Role::Operator, None).await.unwrap();
        let refused = delete_user(&m, FIRST_ADMIN).await.unwrap_err();
        assert!(matches!(refused, AuthError::LastAdmin(_)), "{refused}");
        assert!(refused.to_string().contains("make another admin first"));
        assert_eq!(list_users(&m).await.unwrap().len(), 2);
        // With a second admin, either may go; then the other is the last.
        create_user(&m, "ada", Role::Admin, None).await.unwrap();
        delete_user(&m, FIRST_ADMIN).await.unwrap();
        assert!(matches!(
            delete_user(&m, "ada").await,
            Err(AuthError::LastAdmin(_))
        ));
        delete_user(&m, "olga").await.unwrap();
        assert!(matches!(
            delete_user(&m, "olga").await,
            Err(AuthError::NoUser(_))
        ));
    }

    #[tokio::test]
    async fn the_first_admin_gets_a_token_once_and_tokens_authenticate_until_revoked() {
        let (m, _dir) = manager();
        let first = bootstrap_admin(&m).await.unwrap().unwrap();
        assert!(bootstrap_admin(&m).await.unwrap().is_none(), "only once");
        let who = authenticate_token(&m, &first.token).await.unwrap().unwrap();
        assert_eq!((who.user.as_str(), who.role), (FIRST_ADMIN, Role::Admin));
        assert_eq!(who.via, format!("token:{}", first.view.id));
        // No default password: the first admin cannot log in with any.
        let limiter = Mutex::new(LoginLimiter::default());
        assert!(matches!(
            login(&m, &limiter, FIRST_ADMIN, "admin", "127.0.0.1").await,
            Err(AuthError::BadLogin)
        ));

        create_user(&m, "vera", Role::Viewer, None).await.unwrap();
        let t = issue_token(&m, "vera", "ci", None).await.unwrap();
        assert_eq!(
            authenticate_token(&m, &t.token)
                .await
                .unwrap()
                .unwrap()
                .role,
            Role::Viewer
        );
        // Tampered, unknown or revoked tokens stand for nobody.
        let mut tampered = t.token.clone();
        tampered.pop();
        tampered.push(if t.token.ends_with('0') { '1' } else { '0' });
        assert!(authenticate_token(&m, &tampered).await.unwrap().is_none());
        assert!(authenticate_token(&m, "Bearer nonsense")
            .await
            .unwrap()
            .is_none());
        assert_eq!(list_tokens(&m, Some("vera")).await.unwrap().len(), 1);
        revoke_token(&m, &t.view.id).await.unwrap();
        assert!(authenticate_token(&m, &t.token).await.unwrap().is_none());
        assert!(matches!(
            revoke_token(&m, &t.view.id).await,
            Err(AuthError::NoToken(_))
        ));
        // A lifetime past any date is refused, not a panic.
        assert!(matches!(
            issue_token(&m, "vera", "", Some(Duration::from_secs(u64::MAX))).await,
            Err(AuthError::Invalid(_))
        ));
        // An expired token is refused.
        let short = issue_token(&m, "vera", "", Some(Duration::ZERO))
            .await
            .unwrap();
        assert!(authenticate_token(&m, &short.token)
            .await
            .unwrap()
            .is_none());
        // A deleted user's tokens go with it.
        let kept = issue_token(&m, "vera", "", None).await.unwrap();
        delete_user(&m, "vera").await.unwrap();
        assert!(authenticate_token(&m, &kept.token).await.unwrap().is_none());
        assert!(list_tokens(&m, Some("vera")).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn logins_make_sessions_that_logout_ends_and_guessing_is_slowed() {
        let (m, _dir) = manager();
        create_user(&m, "olga", Role::Operator, Some("a long passphrase"))
            .await
            .unwrap();
        assert!(matches!(
            create_user(&m, "olga", Role::Viewer, None).await,
            Err(AuthError::Exists(_))
        ));
        assert!(matches!(
            create_user(&m, "Bad Name", Role::Viewer, None).await,
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            create_user(&m, "weak", Role::Viewer, Some("short")).await,
            Err(AuthError::Invalid(_))
        ));
        let limiter = Mutex::new(LoginLimiter::default());
        let s = login(&m, &limiter, "olga", "a long passphrase", "10.0.0.1")
            .await
            .unwrap();
        assert_eq!(s.principal.role, Role::Operator);
        let back = authenticate_session(&m, &s.cookie).await.unwrap().unwrap();
        assert_eq!(back.csrf, s.csrf);
        // A token is not a session.
        assert!(authenticate_token(&m, &s.cookie).await.unwrap().is_none());
        logout(&m, &s.cookie).await.unwrap();
        assert!(
            authenticate_session(&m, &s.cookie).await.unwrap().is_none(),
            "a cookie is worthless after logout"
        );

        // Guessing: the free failures, then waits, for that user from any address.
        for _ in 0..ironhorn_auth::limit::FREE_FAILURES + 1 {
            assert!(matches!(
                login(&m, &limiter, "olga", "guess guess guess", "10.0.0.66").await,
                Err(AuthError::BadLogin)
            ));
        }
        assert!(matches!(
            login(&m, &limiter, "olga", "a long passphrase", "10.0.0.2").await,
            Err(AuthError::Throttled(_))
        ));
        // An unknown user fails the same way as a wrong password.
        assert!(matches!(
            login(&m, &limiter, "nobody", "a long passphrase", "10.0.0.3").await,
            Err(AuthError::BadLogin)
        ));
    }
}

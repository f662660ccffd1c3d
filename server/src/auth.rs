//! Who is asking: the operator's users, `POST /auth/token` (sign-in), and the bearer token check
//! every `/api/` request goes through.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::body::read_object;
use crate::error::{json_response, ApiError};
use crate::jwt::{self, Invalid};
use crate::{valid_name, AppState};

/// One hour.
pub const DEFAULT_TOKEN_TTL_SECS: i64 = 3600;
/// The users `--demo-users` adds: each one's password is its name. Never for a real deployment.
pub const DEMO_USERS: [(&str, &str); 2] = [("alice", "alice"), ("bob", "bob")];

/// The signing secret, the users who may sign in, and how long a token lives.
#[derive(Clone)]
pub struct AuthConfig {
    pub secret: Vec<u8>,
    /// `(name, password)` pairs the operator configured; kept in memory only.
    pub users: Vec<(String, String)>,
    pub token_ttl_secs: i64,
}

impl AuthConfig {
    /// A config without users (tokens can still come from anyone holding the secret). The secret
    /// must be at least 32 bytes.
    pub fn new(secret: Vec<u8>) -> Result<Self, String> {
        if secret.len() < jwt::MIN_SECRET_BYTES {
            return Err(format!("the JWT secret must be at least {} bytes", jwt::MIN_SECRET_BYTES));
        }
        Ok(Self { secret, users: Vec::new(), token_ttl_secs: DEFAULT_TOKEN_TTL_SECS })
    }

    pub fn with_demo_users(mut self) -> Self {
        for (name, password) in DEMO_USERS {
            self.users.push((name.to_owned(), password.to_owned()));
        }
        self
    }

    /// A signed token for `sub` that expires `ttl_secs` from now (a negative TTL is already expired).
    pub fn mint(&self, sub: &str, ttl_secs: i64) -> String {
        let now = unix_now();
        jwt::mint(&self.secret, sub, now, now.saturating_add(ttl_secs))
    }
}

/// Never prints the secret or a password.
impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.users.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("AuthConfig")
            .field("secret", &"<redacted>")
            .field("users", &names)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .finish()
    }
}

/// `alice:pw1,bob:pw2` (the `--users` flag and `TIDESYNC_USERS`). A password may contain `:`.
pub fn parse_users(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .filter(|entry| !entry.trim().is_empty())
        .map(|entry| match entry.trim().split_once(':') {
            Some((name, password)) if valid_name(name) && !password.is_empty() => {
                Ok((name.to_owned(), password.to_owned()))
            }
            _ => Err(format!("invalid user entry {entry:?}: expected name:password")),
        })
        .collect()
}

pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The signed-in user of a request, put there by the access guard for every `/api/` route.
#[derive(Debug, Clone)]
pub struct User(pub String);

pub fn unauthorized(message: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The user named by a valid `Authorization: Bearer <token>` (or, on a push channel, a token given
/// in the URL), or why there is none (for the 401).
pub fn authenticate(config: &AuthConfig, headers: &HeaderMap, in_url: Option<String>) -> Result<User, &'static str> {
    let token = match (headers.get(header::AUTHORIZATION), in_url) {
        (Some(value), _) => {
            let text = value.to_str().map_err(|_| Invalid::Malformed.message())?;
            match text.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim().to_owned(),
                _ => return Err("Authorization must be `Bearer <token>`"),
            }
        }
        (None, Some(token)) => token,
        (None, None) => return Err("missing bearer token"),
    };
    jwt::verify(&config.secret, &token, unix_now()).map(|claims| User(claims.sub)).map_err(Invalid::message)
}

/// Compares SHA-256 digests in constant time, so neither the content nor the length of the right
/// password shows in the answer's timing.
fn same_secret(given: &str, expected: &str) -> bool {
    Sha256::digest(given.as_bytes()).ct_eq(&Sha256::digest(expected.as_bytes())).into()
}

fn check_password(config: &AuthConfig, name: &str, password: &str) -> bool {
    // Every configured user is compared, so an unknown name takes as long as a known one.
    config.users.iter().fold(false, |found, (user, expected)| {
        let matches = same_secret(name, user) & same_secret(password, expected);
        found | matches
    })
}

fn string_field<'a>(body: &'a serde_json::Map<String, Value>, field: &str) -> Result<&'a str, ApiError> {
    body.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("{field} must be a non-empty string")))
}

fn token_body(config: &AuthConfig, user: &str, ttl_secs: i64) -> Value {
    json!({"token": config.mint(user, ttl_secs), "tokenType": "Bearer", "expiresIn": ttl_secs, "user": user})
}

/// `POST /auth/token` `{"username", "password"}` → `{"token", "tokenType", "expiresIn", "user"}`.
pub async fn sign_in(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let body = read_object(&headers, body).await?;
    let name = string_field(&body, "username")?;
    let password = string_field(&body, "password")?;
    if !check_password(&state.auth, name, password) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS", "wrong user name or password"));
    }
    Ok(json_response(StatusCode::OK, &token_body(&state.auth, name, state.auth.token_ttl_secs), None))
}

/// `POST /admin/tokens` `{"sub", "ttlSeconds"?}` (only with `--admin`): a token for any user name
/// and any lifetime, expired ones included, for tests.
pub async fn mint(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let body = read_object(&headers, body).await?;
    let sub = string_field(&body, "sub")?;
    if !valid_name(sub) {
        return Err(ApiError::bad_request("sub must be 1 to 200 characters"));
    }
    let ttl = match body.get("ttlSeconds") {
        None | Some(Value::Null) => state.auth.token_ttl_secs,
        Some(v) => v.as_i64().ok_or_else(|| ApiError::bad_request("ttlSeconds must be an integer"))?,
    };
    Ok(json_response(StatusCode::OK, &token_body(&state.auth, sub, ttl), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_parse_and_bad_entries_are_errors() {
        assert_eq!(
            parse_users("alice:pw,bob:a:b").unwrap(),
            vec![("alice".into(), "pw".into()), ("bob".into(), "a:b".into())]
        );
        assert!(parse_users("alice").is_err());
        assert!(parse_users("alice:").is_err());
        assert!(parse_users(":pw").is_err());
    }

    #[test]
    fn passwords_are_checked_per_user() {
        let config = AuthConfig::new(vec![7; 32]).unwrap().with_demo_users();
        assert!(check_password(&config, "alice", "alice"));
        assert!(!check_password(&config, "alice", "bob"));
        assert!(!check_password(&config, "carol", "carol"));
        assert!(AuthConfig::new(vec![7; 31]).is_err());
        assert!(!format!("{config:?}").contains("alice\", \"alice"));
    }
}

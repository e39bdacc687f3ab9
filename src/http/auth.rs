//! Optional bearer-token and basic auth, compared in constant time.
//!
//! Credentials are kept only as SHA-256 digests and the presented value is
//! hashed too, so the comparison takes the same time whatever the lengths,
//! and every configured credential is compared (no early exit).

use super::{error::ApiError, AppState};
use crate::settings::AuthSettings;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Checks the `Authorization` header against the configured credentials.
pub struct Authenticator {
    bearer: Vec<[u8; 32]>,
    basic: Vec<[u8; 32]>,
    protect_metrics: bool,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn any_equal(known: &[[u8; 32]], presented: &[u8; 32]) -> bool {
    known
        .iter()
        .fold(subtle::Choice::from(0), |acc, k| acc | k.ct_eq(presented))
        .into()
}

impl Authenticator {
    /// From `auth.*` (secret files already read).
    pub fn new(settings: &AuthSettings) -> Self {
        let bearer = settings
            .bearer_tokens
            .iter()
            .map(|t| digest(t.expose().as_bytes()))
            .collect();
        let basic = settings
            .basic_users
            .iter()
            .filter_map(|u| {
                let pw = u.password.as_ref()?;
                Some(digest(format!("{}:{}", u.username, pw.expose()).as_bytes()))
            })
            .collect();
        Self {
            bearer,
            basic,
            protect_metrics: settings.protect_metrics,
        }
    }

    /// True when no credential is configured: everything is open.
    pub fn is_open(&self) -> bool {
        self.bearer.is_empty() && self.basic.is_empty()
    }

    /// Does this `Authorization` header value carry valid credentials?
    pub fn check(&self, header: Option<&str>) -> bool {
        if self.is_open() {
            return true;
        }
        let Some(header) = header else {
            return false;
        };
        let (scheme, value) = header.trim().split_once(' ').unwrap_or((header, ""));
        let value = value.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            any_equal(&self.bearer, &digest(value.as_bytes()))
        } else if scheme.eq_ignore_ascii_case("basic") {
            match base64::engine::general_purpose::STANDARD.decode(value) {
                Ok(decoded) => any_equal(&self.basic, &digest(&decoded)),
                Err(_) => false,
            }
        } else {
            false
        }
    }

    fn refuse(&self) -> ApiError {
        ApiError::Unauthorized {
            basic: !self.basic.is_empty(),
        }
    }
}

/// Middleware for the API routes.
pub async fn require(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if state.auth.check(header) {
        return next.run(request).await;
    }
    if request.uri().path() == "/api/v1/alerts" {
        state.metrics.notification("unauthorized");
    }
    state.auth.refuse().into_response()
}

/// Middleware for `/metrics`: only when `auth.protect_metrics` is set.
pub async fn require_for_metrics(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if !state.auth.protect_metrics {
        return next.run(request).await;
    }
    require(State(state), request, next).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::BasicUser;
    use crate::secret::Secret;

    fn auth() -> Authenticator {
        Authenticator::new(&AuthSettings {
            bearer_tokens: vec![Secret::new("old-token"), Secret::new("new-token")],
            bearer_tokens_file: None,
            basic_users: vec![BasicUser {
                username: "alertmanager".into(),
                password: Some(Secret::new("hunter2")),
                password_file: None,
            }],
            protect_metrics: false,
        })
    }

    #[test]
    fn every_rotated_token_and_basic_user_is_accepted() {
        let a = auth();
        assert!(a.check(Some("Bearer old-token")));
        assert!(a.check(Some("bearer new-token")));
        // "alertmanager:hunter2"
        assert!(a.check(Some("Basic YWxlcnRtYW5hZ2VyOmh1bnRlcjI=")));
    }

    #[test]
    fn wrong_missing_or_malformed_credentials_are_refused() {
        let a = auth();
        for h in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer old-token-x"),
            Some("Token old-token"),
            Some("Basic !!!"),
            Some("Basic YWxlcnRtYW5hZ2VyOmh1bnRlcjM="),
        ] {
            assert!(!a.check(h), "{h:?} accepted");
        }
    }
}

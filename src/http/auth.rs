//! Optional bearer-token and basic auth, compared in constant time.
//!
//! Credentials are kept only as SHA-256 digests and the presented value is
//! hashed too, so the comparison takes the same time whatever the lengths,
//! and every configured credential is compared (no early exit).

use super::{error::ApiError, AppState};
use crate::settings::AuthSettings;
use axum::extract::Request;
use axum::http::header::AUTHORIZATION;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::future::Either;
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::future::Ready;
use std::task::{Context, Poll};
use subtle::ConstantTimeEq;
use tower::Layer;
use tower_service::Service;

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

/// Which routes an [`AuthLayer`] guards.
#[derive(Clone, Copy, Debug)]
pub enum Guard {
    /// The API: credentials whenever any are configured.
    Api,
    /// `/metrics`: credentials only with `auth.protect_metrics`.
    Metrics,
}

/// Refuses a request without valid credentials (401) before its handler runs.
///
/// A plain tower layer rather than `axum::middleware::from_fn`, which clones
/// and boxes the inner service and boxes a future on every request: on the
/// webhook path that was measurable CPU for a check of one header.
#[derive(Clone)]
pub struct AuthLayer {
    state: AppState,
    guard: Guard,
}

impl AuthLayer {
    pub fn new(state: AppState, guard: Guard) -> Self {
        Self { state, guard }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            state: self.state.clone(),
            guard: self.guard,
        }
    }
}

/// The service an [`AuthLayer`] wraps around a route.
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    state: AppState,
    guard: Guard,
}

impl<S> Service<Request> for Authenticated<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, Ready<Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let exempt = matches!(self.guard, Guard::Metrics) && !self.state.auth.protect_metrics;
        let header = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if exempt || self.state.auth.check(header) {
            return Either::Left(self.inner.call(request));
        }
        if request.uri().path() == "/api/v1/alerts" {
            self.state.metrics.notification("unauthorized");
        }
        Either::Right(std::future::ready(Ok(self
            .state
            .auth
            .refuse()
            .into_response())))
    }
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

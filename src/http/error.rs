//! The one HTTP error type. Each variant documents its status code; the body
//! is always `{"error": "..."}`.

use crate::ingest::IngestError;
use crate::store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Everything a handler can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request can never succeed as sent (malformed JSON, bad query).
    #[error("{0}")]
    BadRequest(String),
    /// 401: missing or wrong credentials.
    #[error("missing or invalid credentials")]
    Unauthorized { basic: bool },
    /// 404: no such resource.
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists, the method does not (the router adds `Allow`).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 408: the request body did not arrive within `server.body_read_timeout`;
    /// the connection is closed.
    #[error("{0}")]
    RequestTimeout(String),
    /// 413: body over `ingest.max_body_bytes`, or too many alerts.
    #[error("{0}")]
    TooLarge(String),
    /// 422: JSON, but not what the endpoint takes; names the field.
    #[error("{0}")]
    Unprocessable(String),
    /// 503: try again later (store down or inbox full); sets `Retry-After`.
    #[error("{message}")]
    Unavailable { message: String, retry_after: u64 },
    /// 500: a bug or an unexpected failure; logged, answered without details.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl ApiError {
    /// The status code of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let retry_after = match e {
            StoreError::InboxFull { .. } => 30,
            _ => 5,
        };
        ApiError::Unavailable {
            message: e.to_string(),
            retry_after,
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Malformed { .. } => ApiError::BadRequest(e.to_string()),
            IngestError::Schema(_) => ApiError::Unprocessable(e.to_string()),
            IngestError::TooManyAlerts { .. } => ApiError::TooLarge(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Unexpected(e) => {
                tracing::error!(error = format!("{e:#}"), "Request failed unexpectedly");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = (status, Json(json!({ "error": message }))).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Unavailable { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            ApiError::RequestTimeout(_) => {
                // The rest of the body may still come: this connection is done.
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            ApiError::Unauthorized { basic } => {
                headers.append(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"mlops-alert-router\""),
                );
                if *basic {
                    headers.append(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static(
                            "Basic realm=\"mlops-alert-router\", charset=\"UTF-8\"",
                        ),
                    );
                }
            }
            _ => {}
        }
        response
    }
}

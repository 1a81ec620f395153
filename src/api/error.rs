//! The API's error type: a code and a generic message for the client, the detail for
//! the log (with the request id); as a GraphQL error or, for the plain HTTP routes
//! (`/api/export`), a status with the same JSON shape.

use async_graphql::ErrorExtensions;
use axum::http::StatusCode;
use axum::response::Response;

use crate::storage;

/// Errors a resolver returns.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("authentication required")]
    Unauthenticated,
    #[error("not allowed")]
    Forbidden,
    /// The object does not exist in the caller's tenant (whether or not it exists
    /// elsewhere: the answer must not reveal that).
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    BadRequest(String),
    #[error("already exists")]
    Conflict,
    /// A quota of the tenant would be exceeded: names the limit and its value.
    #[error("quota exceeded: {limit} is {max}")]
    QuotaExceeded { limit: &'static str, max: u64 },
    /// Too many requests: try again after the hint.
    #[error("rate limited: retry in {retry_after_ms} ms")]
    RateLimited { retry_after_ms: u64 },
    #[error("service unavailable, try again")]
    Unavailable(String),
    /// A command reached its device, which refused it or did not answer; the message
    /// says which (our own words, never a driver's text).
    #[error("{0}")]
    Device(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "UNAUTHENTICATED",
            ApiError::Forbidden => "FORBIDDEN",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::BadRequest(_) | ApiError::Conflict => "BAD_USER_INPUT",
            ApiError::QuotaExceeded { .. } => "QUOTA_EXCEEDED",
            ApiError::RateLimited { .. } => "RATE_LIMITED",
            ApiError::Unavailable(_) => "UNAVAILABLE",
            ApiError::Device(_) => "DEVICE_ERROR",
            ApiError::Internal(_) => "INTERNAL",
        }
    }

    /// The HTTP status of this error when it refuses a whole request (not GraphQL,
    /// whose errors travel in a 200 response).
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict => StatusCode::CONFLICT,
            ApiError::QuotaExceeded { .. } | ApiError::RateLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Device(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// An HTTP response in the API's JSON error shape, with this error's status and
    /// code, logging the detail.
    pub fn into_http(self, request_id: &str) -> Response {
        if let Some(detail) = self.detail() {
            tracing::error!(request_id, code = self.code(), detail, "request failed");
        }
        super::http::graphql_error(self.status(), &self.to_string(), self.code())
    }

    /// The detail that goes to the log only.
    fn detail(&self) -> Option<&str> {
        match self {
            ApiError::Unavailable(d) | ApiError::Internal(d) => Some(d),
            _ => None,
        }
    }

    /// Converts into a GraphQL error with `extensions.code` and `extensions.requestId`
    /// (plus `retryAfterMs` or `limit`/`max` where they apply), logging the detail.
    pub fn into_graphql(self, request_id: &str) -> async_graphql::Error {
        if let Some(detail) = self.detail() {
            tracing::error!(request_id, code = self.code(), detail, "request failed");
        }
        let code = self.code();
        let rid = request_id.to_string();
        let extra = match &self {
            ApiError::RateLimited { retry_after_ms } => Some(("retryAfterMs", *retry_after_ms)),
            ApiError::QuotaExceeded { max, .. } => Some(("max", *max)),
            _ => None,
        };
        let limit = match &self {
            ApiError::QuotaExceeded { limit, .. } => Some(*limit),
            _ => None,
        };
        async_graphql::Error::new(self.to_string()).extend_with(move |_, e| {
            e.set("code", code);
            e.set("requestId", rid.clone());
            if let Some((k, v)) = extra {
                e.set(k, v);
            }
            if let Some(l) = limit {
                e.set("limit", l);
            }
        })
    }
}

impl From<storage::Error> for ApiError {
    fn from(e: storage::Error) -> Self {
        match e {
            storage::Error::Unavailable(d) => ApiError::Unavailable(d),
            storage::Error::NotFound(_) => ApiError::NotFound("object"),
            storage::Error::Conflict(_) => ApiError::Conflict,
            other => ApiError::Internal(other.to_string()),
        }
    }
}

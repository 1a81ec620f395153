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
    /// A configuration change breaks its rules: every problem with its path (in
    /// `extensions.errors`). QUOTA_EXCEEDED when every problem is a quota.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<crate::manage::FieldError>),
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
            ApiError::Invalid(errors) if errors.iter().all(|e| e.quota.is_some()) => {
                "QUOTA_EXCEEDED"
            }
            ApiError::Invalid(_) => "BAD_USER_INPUT",
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
            ApiError::BadRequest(_) | ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
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
        let quota = match &self {
            ApiError::Invalid(errors) if code == "QUOTA_EXCEEDED" => {
                errors.first().and_then(|e| e.quota)
            }
            _ => None,
        };
        let extra = match &self {
            ApiError::RateLimited { retry_after_ms } => Some(("retryAfterMs", *retry_after_ms)),
            ApiError::QuotaExceeded { max, .. } => Some(("max", *max)),
            _ => quota.map(|q| ("max", q.max)),
        };
        let limit = match &self {
            ApiError::QuotaExceeded { limit, .. } => Some(*limit),
            _ => quota.map(|q| q.limit),
        };
        let errors = match &self {
            ApiError::Invalid(errors) => serde_json::to_value(errors)
                .ok()
                .and_then(|v| async_graphql::Value::from_json(v).ok()),
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
            if let Some(errors) = &errors {
                e.set("errors", errors.clone());
            }
        })
    }
}

impl From<crate::manage::ManageError> for ApiError {
    fn from(e: crate::manage::ManageError) -> Self {
        use crate::manage::ManageError;
        match e {
            ManageError::Invalid(errors) => ApiError::Invalid(errors),
            ManageError::NotFound(what) => ApiError::NotFound(what),
            ManageError::Refused(why) => ApiError::BadRequest(why),
            ManageError::Store(storage::Error::Conflict(what)) => {
                ApiError::BadRequest(format!("the name is taken: {what}"))
            }
            ManageError::Store(e) => e.into(),
        }
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

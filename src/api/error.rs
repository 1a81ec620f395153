//! The API's error type: a code and a generic message for the client, the detail for
//! the log (with the request id).

use async_graphql::ErrorExtensions;

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
    #[error("service unavailable, try again")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "UNAUTHENTICATED",
            ApiError::Forbidden => "FORBIDDEN",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::BadRequest(_) => "BAD_REQUEST",
            ApiError::Conflict => "CONFLICT",
            ApiError::Unavailable(_) => "UNAVAILABLE",
            ApiError::Internal(_) => "INTERNAL",
        }
    }

    /// The detail that goes to the log only.
    fn detail(&self) -> Option<&str> {
        match self {
            ApiError::Unavailable(d) | ApiError::Internal(d) => Some(d),
            _ => None,
        }
    }

    /// Converts into a GraphQL error with `extensions.code`, logging the detail.
    pub fn into_graphql(self, request_id: &str) -> async_graphql::Error {
        if let Some(detail) = self.detail() {
            tracing::error!(request_id, code = self.code(), detail, "request failed");
        }
        let code = self.code();
        async_graphql::Error::new(self.to_string()).extend_with(|_, e| e.set("code", code))
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

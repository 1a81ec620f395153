//! Authentication: argon2id password hashes, HS256 JWT access tokens (issuer, audience,
//! expiry and algorithm checked), and the [`Session`] a verified token yields.
//! Refresh tokens and revocation live in [`super::tokens`] and [`super::gate`];
//! [`AuthKeys::verify`] is the first check every request passes through.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::AuthConfig;
use crate::domain::{Role, TenantId, User, UserId};

/// Shortest JWT secret accepted.
pub const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("token expired")]
    Expired,
    /// Valid signature, but the user, the tenant or the session no longer allows it.
    #[error("token revoked")]
    Revoked,
    #[error("invalid credentials")]
    BadCredentials,
    #[error("JWT secret must be at least {MIN_SECRET_LEN} characters")]
    WeakSecret,
    #[error("password hashing failed: {0}")]
    Hash(String),
}

impl AuthError {
    /// Low-cardinality label for `thermacore_auth_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::InvalidToken(_) => "invalid_token",
            AuthError::Expired => "expired",
            AuthError::Revoked => "revoked",
            AuthError::BadCredentials => "bad_credentials",
            AuthError::WeakSecret | AuthError::Hash(_) => "internal",
        }
    }
}

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Tenant id and name: the only source of a request's tenant.
    pub tid: i64,
    pub tname: String,
    pub usr: String,
    pub role: Role,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
    /// Issued at, in milliseconds (revocation compares at this precision).
    pub ims: i64,
    /// The refresh-token family (login session) this token belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<String>,
}

/// Who is calling, from a verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub user: UserId,
    pub tenant: TenantId,
    pub tenant_name: String,
    pub username: String,
    pub role: Role,
    /// Expiry (seconds since the epoch).
    pub expires_at: i64,
    /// Issued at (milliseconds since the epoch).
    pub issued_at_ms: i64,
    pub family: Option<String>,
}

/// Signing and verification keys with the validation rules.
pub struct AuthKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: u64,
    issuer: String,
    audience: String,
}

impl AuthKeys {
    pub fn new(secret: &str, config: &AuthConfig) -> Result<Self, AuthError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(AuthError::WeakSecret);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = 5;
        validation.validate_nbf = true;
        validation.set_issuer(&[config.issuer.as_str()]);
        validation.set_audience(&[config.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        Ok(AuthKeys {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            ttl_secs: config.access_token_ttl_secs,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
        })
    }

    /// Issues an access token of a login session (`family`); returns it with its
    /// lifetime in seconds.
    pub fn issue(
        &self,
        user: &User,
        tenant_name: &str,
        family: Option<&str>,
    ) -> Result<(String, u64), AuthError> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let now = now_ms / 1000;
        let claims = Claims {
            sub: user.id.to_string(),
            tid: user.tenant.0,
            tname: tenant_name.to_string(),
            usr: user.username.clone(),
            role: user.role,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            nbf: now,
            exp: now + self.ttl_secs as i64,
            jti: uuid::Uuid::new_v4().to_string(),
            ims: now_ms,
            fam: family.map(str::to_string),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))?;
        Ok((token, self.ttl_secs))
    }

    /// Verifies signature, algorithm, expiry, not-before, issuer and audience.
    pub fn verify(&self, token: &str) -> Result<Session, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::InvalidToken(e.to_string()),
            })?;
        let c = data.claims;
        let user = c
            .sub
            .parse::<UserId>()
            .map_err(|_| AuthError::InvalidToken("bad sub".into()))?;
        Ok(Session {
            user,
            tenant: TenantId(c.tid),
            tenant_name: c.tname,
            username: c.usr,
            role: c.role,
            expires_at: c.exp,
            issued_at_ms: c.ims,
            family: c.fam,
        })
    }

    /// Verifies an `Authorization` header value (`Bearer <token>`).
    pub fn verify_header(&self, value: Option<&str>) -> Result<Session, AuthError> {
        let value = value.ok_or(AuthError::Missing)?.trim();
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| AuthError::InvalidToken("expected `Bearer <token>`".into()))?;
        self.verify(token.trim())
    }
}

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Checks a password against a PHC hash; a malformed hash is a mismatch.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// How many password hashes run at once: half the cores, at least one.
pub fn hashing_slots() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// Runs `f` (an argon2id hash or verification: 19 MiB and tens of milliseconds of
/// CPU each) on the blocking pool, at most [`hashing_slots`] at a time. A login storm
/// (every frontend signing in again after a restart, or when tokens issued together
/// expire together) would otherwise hash on as many threads as there are logins: a
/// soak run with 100 operators grew the server from 0.5 to 2.3 GiB, and every other
/// request waited seconds for a core. Logins queue instead; the data path keeps the
/// other half of the machine.
pub async fn run_hashing<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let slots = SLOTS.get_or_init(|| tokio::sync::Semaphore::new(hashing_slots()));
    // The semaphore is never closed, so acquiring cannot fail.
    let _slot = slots.acquire().await.ok();
    tokio::task::spawn_blocking(f).await
}

/// A valid hash of a random password, verified against when the user does not exist,
/// so that a login's timing does not reveal which usernames exist.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&uuid::Uuid::new_v4().to_string()).unwrap_or_default())
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;

//! Login sessions: a short-lived JWT access token plus an opaque refresh token.
//!
//! Refresh tokens are 256 random bits, sent once and stored only as a SHA-256 hash.
//! Every use rotates the token within its family (one family per login); presenting a
//! token that was already used means it was copied, so the whole family is revoked,
//! access tokens included (through the [`Gate`](super::gate::Gate)).

use base64::Engine;
use sha2::{Digest, Sha256};

use super::auth::{AuthError, AuthKeys};
use crate::domain::{RefreshToken, Timestamp, User};
use crate::storage::{self, Store};

/// What a login, a refresh or a password change hands out.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: String,
    pub refresh_expires_in: u64,
}

/// Why a session could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] storage::Error),
}

/// The stored form of a refresh token.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn new_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// Issues an access token and a refresh token in `family` (a new family for a login).
pub async fn issue(
    store: &dyn Store,
    keys: &AuthKeys,
    user: &User,
    tenant_name: &str,
    family: Option<&str>,
    refresh_ttl_secs: u64,
) -> Result<Issued, IssueError> {
    let family = family.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
    let refresh_token = new_token();
    let now = Timestamp::now();
    store
        .insert_refresh_token(&RefreshToken {
            token_hash: hash_token(&refresh_token),
            family: family.clone(),
            user: user.id,
            tenant: user.tenant,
            issued_at: now,
            expires_at: Timestamp(now.0 + refresh_ttl_secs as i64 * 1_000_000),
        })
        .await?;
    let (access_token, expires_in) = keys.issue(user, tenant_name, Some(&family))?;
    Ok(Issued {
        access_token,
        expires_in,
        refresh_token,
        refresh_expires_in: refresh_ttl_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashes_fixed_length() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(hash_token(&a).len(), 64);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
    }
}

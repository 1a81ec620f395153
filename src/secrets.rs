//! Secrets at rest: the key from `THERMACORE_SECRET_KEY`, ChaCha20-Poly1305 sealing
//! (`enc:v1:<base64(nonce || ciphertext)>`), and the [`Secret`] / [`Sealed`] types
//! that keep plaintext out of logs and ciphertext out of the API.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// The environment variable the key comes from (named in every error about it).
pub const KEY_VAR: &str = "THERMACORE_SECRET_KEY";
const PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;

/// Why a key could not be used or a secret could not be sealed or opened. No variant
/// carries plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "THERMACORE_SECRET_KEY is not valid: {0}; it must be the base64 of exactly 32 random bytes (e.g. `openssl rand -base64 32`)"
    )]
    BadKey(String),
    #[error(
        "device `{device}` declares secrets but THERMACORE_SECRET_KEY is not set: set it to the base64 of 32 random bytes (e.g. `openssl rand -base64 32`)"
    )]
    MissingKey { device: String },
    #[error("sealed secret is malformed: {0}")]
    Malformed(&'static str),
    #[error("sealed secret cannot be opened: wrong THERMACORE_SECRET_KEY or corrupted data")]
    Open,
    #[error("a secret could not be sealed")]
    Seal,
    /// A device's stored secrets could not be opened at start-up.
    #[error("device `{device}`: {reason}")]
    Device {
        device: String,
        reason: Box<SecretError>,
    },
}

/// The key that seals device secrets. Never printed.
#[derive(Clone)]
pub struct SecretKey(Key);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

impl SecretKey {
    /// Parses the base64 of exactly 32 bytes (surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<Self, SecretError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|_| SecretError::BadKey("not valid base64".into()))?;
        let bytes: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
            SecretError::BadKey(format!(
                "it decodes to {} bytes, not {KEY_LEN}",
                bytes.len()
            ))
        })?;
        Ok(SecretKey(Key::from(bytes)))
    }

    /// The key of `config.secret_key`, if one is set.
    pub fn from_config(config: &Config) -> Result<Option<Self>, SecretError> {
        config
            .secret_key
            .as_deref()
            .map(Self::from_base64)
            .transpose()
    }

    /// Encrypts with a fresh random nonce.
    pub fn seal(&self, secret: &Secret) -> Result<Sealed, SecretError> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let ciphertext = ChaCha20Poly1305::new(&self.0)
            .encrypt(&Nonce::from(nonce), secret.expose().as_bytes())
            .map_err(|_| SecretError::Seal)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Ok(Sealed(format!("{PREFIX}{}", B64.encode(blob))))
    }

    /// Decrypts and authenticates; a wrong key or altered text is an error.
    pub fn open(&self, sealed: &Sealed) -> Result<Secret, SecretError> {
        let encoded = sealed
            .0
            .strip_prefix(PREFIX)
            .ok_or(SecretError::Malformed("missing enc:v1: prefix"))?;
        let blob = B64
            .decode(encoded)
            .map_err(|_| SecretError::Malformed("not valid base64"))?;
        if blob.len() < NONCE_LEN + 16 {
            return Err(SecretError::Malformed("too short"));
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| SecretError::Malformed("too short"))?;
        let plain = ChaCha20Poly1305::new(&self.0)
            .decrypt(&Nonce::from(nonce), ciphertext)
            .map_err(|_| SecretError::Open)?;
        String::from_utf8(plain)
            .map(Secret)
            .map_err(|_| SecretError::Malformed("plaintext is not UTF-8"))
    }
}

/// A plaintext secret (password, private key path). `Debug`, `Display` and
/// `Serialize` print `***`; [`Secret::expose`] is the only way to the text.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Self {
        Secret(text.into())
    }

    /// The plaintext, for the driver that needs it. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// A sealed secret as stored: `enc:v1:<base64(nonce || ciphertext)>`. Its `Debug`
/// prints `***` too; it never leaves the server through the API.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sealed(String);

impl Sealed {
    /// The stored text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sealed {
    type Error = SecretError;
    fn try_from(text: String) -> Result<Self, SecretError> {
        if !text.starts_with(PREFIX) {
            return Err(SecretError::Malformed("missing enc:v1: prefix"));
        }
        Ok(Sealed(text))
    }
}

impl From<Sealed> for String {
    fn from(s: Sealed) -> String {
        s.0
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_base64(&B64.encode([byte; 32])).expect("valid key")
    }

    #[test]
    fn round_trip() {
        let k = key(1);
        let sealed = k.seal(&Secret::new("hunter2")).expect("seal");
        assert!(sealed.as_str().starts_with("enc:v1:"));
        assert!(!sealed.as_str().contains("hunter2"));
        assert_eq!(k.open(&sealed).expect("open").expose(), "hunter2");
        // A fresh nonce each time.
        let again = k.seal(&Secret::new("hunter2")).expect("seal");
        assert_ne!(sealed, again);
    }

    #[test]
    fn wrong_key_fails() {
        let sealed = key(1).seal(&Secret::new("hunter2")).expect("seal");
        assert_eq!(key(2).open(&sealed), Err(SecretError::Open));
    }

    #[test]
    fn tampered_or_malformed_ciphertext_fails() {
        let k = key(1);
        let sealed = k.seal(&Secret::new("hunter2")).expect("seal");
        let mut blob = B64
            .decode(&sealed.as_str()[PREFIX.len()..])
            .expect("base64");
        let last = blob.len() - 1;
        blob[last] ^= 1;
        let tampered = Sealed(format!("{PREFIX}{}", B64.encode(&blob)));
        assert_eq!(k.open(&tampered), Err(SecretError::Open));
        for bad in ["enc:v1:", "enc:v1:!!!", "enc:v1:AAAA"] {
            assert!(matches!(
                k.open(&Sealed(bad.into())),
                Err(SecretError::Malformed(_))
            ));
        }
        assert!(Sealed::try_from("plaintext".to_string()).is_err());
    }

    #[test]
    fn bad_keys_are_refused_naming_the_variable() {
        for bad in ["", "not base64!", &B64.encode([0u8; 16])] {
            let e = SecretKey::from_base64(bad).expect_err("refused");
            assert!(e.to_string().contains(KEY_VAR), "{e}");
        }
    }

    #[test]
    fn debug_and_display_never_show_plaintext() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(serde_json::to_string(&s).expect("json"), "\"***\"");
        let sealed = key(1).seal(&s).expect("seal");
        assert_eq!(format!("{sealed:?}"), "***");
        assert_eq!(format!("{:?}", key(1)), "SecretKey(***)");
    }
}

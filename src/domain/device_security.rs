//! A device's link security, generic for every protocol: TLS files, credentials and
//! whether TLS is required. Secret fields are stored sealed ([`Sealed`]) and opened
//! only where a driver needs them ([`DeviceSecurity::open`]).

use serde::{Deserialize, Serialize};

use crate::secrets::{Sealed, Secret, SecretError, SecretKey};

/// Security settings as stored: secrets sealed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceSecurity {
    /// The driver must refuse a link without TLS.
    pub require_tls: bool,
    pub tls: Option<DeviceTls<Sealed>>,
    pub credentials: Option<DeviceCredentials<Sealed>>,
}

/// TLS files of a device link. `S` is [`Sealed`] at rest and [`Secret`] once opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceTls<S> {
    /// CA bundle that verifies the peer (PEM path).
    pub ca_file: Option<String>,
    /// Client certificate (PEM path).
    pub cert_file: Option<String>,
    /// Client private key (PEM path): secret.
    pub key_file: Option<S>,
    /// Password of an encrypted private key: secret.
    pub key_password: Option<S>,
}

/// Username and password of a device link; the password is secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceCredentials<S> {
    pub username: String,
    pub password: Option<S>,
}

/// Security settings with secrets in plaintext: as written in the config file
/// (`[tenants.devices.security]`) and as opened for a driver. `Debug` and `Serialize`
/// still print `***` for every secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenedSecurity {
    pub require_tls: bool,
    pub tls: Option<DeviceTls<Secret>>,
    pub credentials: Option<DeviceCredentials<Secret>>,
}

/// What a set secret shows wherever it leaves the server (the API, exports, audit
/// records): never the value, never the ciphertext. Given back on import or update,
/// it keeps the stored secret.
pub const SECRET_MASK: &str = "***";

impl DeviceSecurity {
    /// The settings with every set secret shown as [`SECRET_MASK`].
    pub fn masked(&self) -> OpenedSecurity {
        let (require_tls, tls, credentials) =
            match map_secrets(self.require_tls, &self.tls, &self.credentials, &|_| {
                Ok::<_, std::convert::Infallible>(Some(Secret::new(SECRET_MASK)))
            }) {
                Ok(m) => m,
                Err(never) => match never {},
            };
        OpenedSecurity {
            require_tls,
            tls,
            credentials,
        }
    }

    /// True if nothing is set (stored as NULL).
    pub fn is_default(&self) -> bool {
        *self == DeviceSecurity::default()
    }

    /// True if any secret field is set (a key is needed to store or open it).
    pub fn has_secrets(&self) -> bool {
        any_secret(&self.tls, &self.credentials)
    }

    /// Opens every secret with `key`.
    pub fn open(&self, key: &SecretKey) -> Result<OpenedSecurity, SecretError> {
        let (require_tls, tls, credentials) =
            map_secrets(self.require_tls, &self.tls, &self.credentials, &|s| {
                key.open(s).map(Some)
            })?;
        Ok(OpenedSecurity {
            require_tls,
            tls,
            credentials,
        })
    }

    /// Opens with `key` if there are secrets; without secrets no key is needed.
    /// `device` names the device in the error.
    pub fn open_for(
        &self,
        device: &str,
        key: Option<&SecretKey>,
    ) -> Result<OpenedSecurity, SecretError> {
        let wrap = |e: SecretError| SecretError::Device {
            device: device.to_string(),
            reason: Box::new(e),
        };
        match key {
            Some(key) => self.open(key).map_err(wrap),
            None if self.has_secrets() => Err(SecretError::MissingKey {
                device: device.to_string(),
            }),
            None => {
                let (require_tls, tls, credentials) =
                    without(self.require_tls, &self.tls, &self.credentials);
                Ok(OpenedSecurity {
                    require_tls,
                    tls,
                    credentials,
                })
            }
        }
    }
}

impl OpenedSecurity {
    /// True if nothing is set.
    pub fn is_default(&self) -> bool {
        *self == OpenedSecurity::default()
    }

    /// Seals every secret with `key` (what `apply_config` stores).
    pub fn seal(&self, key: &SecretKey) -> Result<DeviceSecurity, SecretError> {
        let (require_tls, tls, credentials) =
            map_secrets(self.require_tls, &self.tls, &self.credentials, &|s| {
                key.seal(s).map(Some)
            })?;
        Ok(DeviceSecurity {
            require_tls,
            tls,
            credentials,
        })
    }

    /// The settings with every secret field left out (for a device without secrets,
    /// when no key is configured).
    pub fn without_secrets(&self) -> DeviceSecurity {
        let (require_tls, tls, credentials) =
            without(self.require_tls, &self.tls, &self.credentials);
        DeviceSecurity {
            require_tls,
            tls,
            credentials,
        }
    }

    /// True if any secret field is set (a key is needed to store it).
    pub fn has_secrets(&self) -> bool {
        any_secret(&self.tls, &self.credentials)
    }
}

/// The settings of one form (sealed, opened) turned into the other, each secret
/// through `f`; `f` answering `None` leaves the field out.
type Mapped<T> = (bool, Option<DeviceTls<T>>, Option<DeviceCredentials<T>>);

fn map_secrets<S, T, E>(
    require_tls: bool,
    tls: &Option<DeviceTls<S>>,
    credentials: &Option<DeviceCredentials<S>>,
    f: &dyn Fn(&S) -> Result<Option<T>, E>,
) -> Result<Mapped<T>, E> {
    let field =
        |s: &Option<S>| -> Result<Option<T>, E> { Ok(s.as_ref().map(f).transpose()?.flatten()) };
    let tls = match tls {
        Some(t) => Some(DeviceTls {
            ca_file: t.ca_file.clone(),
            cert_file: t.cert_file.clone(),
            key_file: field(&t.key_file)?,
            key_password: field(&t.key_password)?,
        }),
        None => None,
    };
    let credentials = match credentials {
        Some(c) => Some(DeviceCredentials {
            username: c.username.clone(),
            password: field(&c.password)?,
        }),
        None => None,
    };
    Ok((require_tls, tls, credentials))
}

/// The settings with every secret left out.
fn without<S, T>(
    require_tls: bool,
    tls: &Option<DeviceTls<S>>,
    credentials: &Option<DeviceCredentials<S>>,
) -> Mapped<T> {
    match map_secrets(require_tls, tls, credentials, &|_| {
        Ok::<_, std::convert::Infallible>(None)
    }) {
        Ok(m) => m,
        Err(never) => match never {},
    }
}

fn any_secret<S>(tls: &Option<DeviceTls<S>>, credentials: &Option<DeviceCredentials<S>>) -> bool {
    tls.as_ref()
        .is_some_and(|t| t.key_file.is_some() || t.key_password.is_some())
        || credentials.as_ref().is_some_and(|c| c.password.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn key(byte: u8) -> SecretKey {
        let b64 = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
        SecretKey::from_base64(&b64).expect("key")
    }

    fn opened() -> OpenedSecurity {
        OpenedSecurity {
            require_tls: true,
            tls: Some(DeviceTls {
                ca_file: Some("ca.pem".into()),
                cert_file: None,
                key_file: Some(Secret::new("/keys/dev.key")),
                key_password: Some(Secret::new("kp")),
            }),
            credentials: Some(DeviceCredentials {
                username: "op".into(),
                password: Some(Secret::new("pw-plain")),
            }),
        }
    }

    #[test]
    fn seal_then_open_round_trips_and_debug_hides_everything() {
        let sealed = opened().seal(&key(1)).expect("seal");
        assert!(sealed.has_secrets());
        let json = serde_json::to_string(&sealed).expect("json");
        assert!(
            !json.contains("pw-plain") && !json.contains("dev.key"),
            "{json}"
        );
        let debug = format!("{sealed:?} {:?}", opened());
        assert!(
            !debug.contains("pw-plain") && !debug.contains("kp\""),
            "{debug}"
        );
        assert_eq!(sealed.open(&key(1)).expect("open"), opened());
        let spec = crate::domain::DeviceSpec {
            name: "d1".into(),
            unit: None,
            enabled: true,
            poll_ms: 1000,
            driver: crate::drivers::DriverConfig::Sim(Default::default()),
            security: sealed.clone(),
        };
        let debug = format!("{spec:?}");
        assert!(debug.contains("password: Some(***)"), "{debug}");
        assert!(
            !debug.contains("enc:v1") && !debug.contains("pw-plain"),
            "{debug}"
        );
        let e = sealed.open_for("d1", Some(&key(2))).expect_err("wrong key");
        assert!(e.to_string().contains("d1"), "{e}");
        let e = sealed.open_for("d1", None).expect_err("no key");
        assert!(e.to_string().contains("THERMACORE_SECRET_KEY"), "{e}");
    }
}

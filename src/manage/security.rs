//! A device's link security on its way to the store: secrets given in plaintext are
//! sealed with `THERMACORE_SECRET_KEY`; a secret given as `***`, or equal to the one
//! stored, keeps the stored seal (so an export imported again changes nothing).

use super::document::KEEP_SECRET;
use crate::config::draft::SecurityDraft;
use crate::domain::{DeviceCredentials, DeviceSecurity, DeviceTls};
use crate::secrets::{Sealed, Secret, SecretKey};

/// A device's security as it will be stored: given secrets sealed with `key` (or kept
/// sealed as stored when unchanged or given as `***`). Fails with the field at fault.
pub(super) fn resolve_security(
    given: &SecurityDraft,
    stored: Option<&DeviceSecurity>,
    key: Option<&SecretKey>,
) -> Result<DeviceSecurity, (&'static str, String)> {
    let o = match given {
        SecurityDraft::Stored(s) => return Ok(s.clone()),
        SecurityDraft::Given(o) => o,
    };
    let seal = |field: &'static str, v: &Option<Secret>, old: Option<&Sealed>| {
        let Some(v) = v else { return Ok(None) };
        if v.expose() == KEEP_SECRET {
            return match old {
                Some(old) => Ok(Some(old.clone())),
                None => Err((
                    field,
                    format!("`{KEEP_SECRET}` keeps the stored secret, but none is stored"),
                )),
            };
        }
        let key = key.ok_or((
            field,
            "device secrets are sealed with THERMACORE_SECRET_KEY, which is not set".to_string(),
        ))?;
        if let Some(old) = old {
            if key.open(old).is_ok_and(|o| o.expose() == v.expose()) {
                return Ok(Some(old.clone()));
            }
        }
        key.seal(v).map(Some).map_err(|e| (field, e.to_string()))
    };
    let old_tls = stored.and_then(|s| s.tls.as_ref());
    let old_credentials = stored.and_then(|s| s.credentials.as_ref());
    let tls = match &o.tls {
        Some(t) => Some(DeviceTls {
            ca_file: t.ca_file.clone(),
            cert_file: t.cert_file.clone(),
            key_file: seal(
                "security.tls.key_file",
                &t.key_file,
                old_tls.and_then(|o| o.key_file.as_ref()),
            )?,
            key_password: seal(
                "security.tls.key_password",
                &t.key_password,
                old_tls.and_then(|o| o.key_password.as_ref()),
            )?,
        }),
        None => None,
    };
    let credentials = match &o.credentials {
        Some(c) => Some(DeviceCredentials {
            username: c.username.clone(),
            password: seal(
                "security.credentials.password",
                &c.password,
                old_credentials.and_then(|o| o.password.as_ref()),
            )?,
        }),
        None => None,
    };
    Ok(DeviceSecurity {
        require_tls: o.require_tls,
        tls,
        credentials,
    })
}

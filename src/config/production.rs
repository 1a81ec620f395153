//! What a production deployment must not run with: checks on the configuration alone
//! (the store-based checks live with start-up). Each problem is one sentence saying
//! what to fix.

use super::model::Config;
use crate::secrets::{KEY_VAR, SecretKey};

/// Shortest JWT signing secret accepted in production, in bytes.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// The configuration's problems for a production start; empty when there are none.
pub fn production_problems(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    match &config.auth.jwt_secret {
        None => problems.push(format!(
            "THERMACORE_JWT_SECRET is not set: set it to a random secret of at least {MIN_JWT_SECRET_BYTES} bytes"
        )),
        Some(s) if s.len() < MIN_JWT_SECRET_BYTES => problems.push(format!(
            "THERMACORE_JWT_SECRET is {} bytes long: use a random secret of at least {MIN_JWT_SECRET_BYTES} bytes",
            s.len()
        )),
        Some(_) => {}
    }
    if config.server.cors_allowed_origins.iter().any(|o| o == "*") {
        problems.push(
            "server.cors_allowed_origins allows any origin (\"*\"): list the exact origins of your web clients"
                .to_string(),
        );
    }
    let key = SecretKey::from_config(config);
    for tenant in &config.tenants {
        for device in &tenant.devices {
            let name = format!("{}/{}", tenant.name.get_ref(), device.name.get_ref());
            if let crate::drivers::DriverConfig::Opcua(c) = &device.driver
                && c.trust_unknown_server
            {
                problems.push(format!(
                    "device `{name}` has trust_unknown_server = true, which accepts any OPC UA server certificate: set server_certificate (or move the server's certificate from {} to {}) and remove it",
                    c.pki_dir.join("rejected").display(),
                    c.pki_dir.join("trusted").display()
                ));
            }
            let security = &device.security;
            if security.require_tls && security.tls.is_none() {
                problems.push(format!(
                    "device `{name}` has require_tls = true but no [tenants.devices.security.tls] settings: add ca_file (and cert_file/key_file for client certificates) or set require_tls = false"
                ));
            }
            if security.has_secrets() {
                match &key {
                    Ok(Some(_)) => {}
                    Ok(None) => problems.push(format!(
                        "device `{name}` has secrets but {KEY_VAR} is not set: set it to the base64 of 32 random bytes (`openssl rand -base64 32`)"
                    )),
                    Err(e) => problems.push(format!("device `{name}` has secrets but {e}")),
                }
            }
        }
    }
    problems
}

/// Devices with `require_tls = true` and no TLS settings: a warning in development.
pub fn require_tls_without_settings(config: &Config) -> Vec<String> {
    config
        .tenants
        .iter()
        .flat_map(|t| {
            t.devices
                .iter()
                .filter(|d| d.security.require_tls && d.security.tls.is_none())
                .map(move |d| format!("{}/{}", t.name.get_ref(), d.name.get_ref()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn config(device_security: &str) -> Config {
        let text = format!(
            "[[tenants]]\nname = \"acme\"\n[[tenants.devices]]\nname = \"plc\"\ndriver = {{ protocol = \"sim\" }}\n{device_security}"
        );
        let mut c = parse_str(&text, "test.toml").expect("valid");
        c.auth.jwt_secret = Some("x".repeat(32));
        c.secret_key = Some(KEY.into());
        c
    }

    fn one(c: &Config, needle: &str) {
        let p = production_problems(c);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains(needle), "{p:?}");
    }

    #[test]
    fn a_sound_config_has_no_problems() {
        let c = config(
            "[tenants.devices.security]\nrequire_tls = true\ntls = { ca_file = \"ca.pem\" }\ncredentials = { username = \"u\", password = \"p\" }",
        );
        assert_eq!(production_problems(&c), Vec::<String>::new());
    }

    #[test]
    fn jwt_secret_missing_or_short() {
        let mut c = config("");
        c.auth.jwt_secret = None;
        one(&c, "THERMACORE_JWT_SECRET is not set");
        c.auth.jwt_secret = Some("short".into());
        one(&c, "5 bytes long");
    }

    #[test]
    fn cors_any_origin() {
        let mut c = config("");
        c.server.cors_allowed_origins = vec!["https://a.example".into(), "*".into()];
        one(&c, "cors_allowed_origins allows any origin");
    }

    #[test]
    fn require_tls_without_tls_settings() {
        let c = config("[tenants.devices.security]\nrequire_tls = true");
        one(&c, "device `acme/plc` has require_tls = true");
        assert_eq!(require_tls_without_settings(&c), vec!["acme/plc"]);
    }

    #[test]
    fn secrets_without_a_valid_key() {
        let mut c =
            config("[tenants.devices.security.credentials]\nusername = \"u\"\npassword = \"p\"");
        c.secret_key = None;
        one(&c, "THERMACORE_SECRET_KEY is not set");
        c.secret_key = Some("too-short".into());
        one(&c, "THERMACORE_SECRET_KEY is not valid");
        // Without secrets, no key is needed.
        let mut c = config("[tenants.devices.security.credentials]\nusername = \"u\"");
        c.secret_key = None;
        assert!(production_problems(&c).is_empty());
    }

    #[test]
    fn opcua_trusting_any_server() {
        let text = "[[tenants]]\nname = \"acme\"\n[[tenants.devices]]\nname = \"station\"\ndriver = { protocol = \"opcua\", endpoint = \"opc.tcp://127.0.0.1:4840/\", trust_unknown_server = true }";
        let mut c = parse_str(text, "test.toml").expect("valid");
        c.auth.jwt_secret = Some("x".repeat(32));
        one(&c, "device `acme/station` has trust_unknown_server = true");
        let text = text.replace(
            "trust_unknown_server = true",
            "server_certificate = \"server.der\"",
        );
        let mut c = parse_str(&text, "test.toml").expect("valid");
        c.auth.jwt_secret = Some("x".repeat(32));
        assert!(production_problems(&c).is_empty());
    }
}

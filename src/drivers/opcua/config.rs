//! Configuration of an OPC UA device (`protocol = "opcua"`): the endpoint, the secure
//! channel (policy and mode), the identity, the client's PKI, and session limits.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::address::{Deadband, Mode, OpcuaAddress};
use crate::domain::DataType;

/// The secure channel's security policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityPolicy {
    #[default]
    None,
    #[serde(rename = "basic256sha256")]
    Basic256Sha256,
    #[serde(rename = "aes128_sha256_rsaoaep")]
    Aes128Sha256RsaOaep,
    #[serde(rename = "aes256_sha256_rsapss")]
    Aes256Sha256RsaPss,
}

impl SecurityPolicy {
    pub fn to_opcua(self) -> opcua::crypto::SecurityPolicy {
        use opcua::crypto::SecurityPolicy as P;
        match self {
            SecurityPolicy::None => P::None,
            SecurityPolicy::Basic256Sha256 => P::Basic256Sha256,
            SecurityPolicy::Aes128Sha256RsaOaep => P::Aes128Sha256RsaOaep,
            SecurityPolicy::Aes256Sha256RsaPss => P::Aes256Sha256RsaPss,
        }
    }
}

/// The secure channel's message security mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityMode {
    #[default]
    None,
    Sign,
    SignAndEncrypt,
}

impl SecurityMode {
    pub fn to_opcua(self) -> opcua::types::MessageSecurityMode {
        use opcua::types::MessageSecurityMode as M;
        match self {
            SecurityMode::None => M::None,
            SecurityMode::Sign => M::Sign,
            SecurityMode::SignAndEncrypt => M::SignAndEncrypt,
        }
    }
}

/// Who the session runs as. Username and password come from the device's
/// `[security.credentials]`; the X.509 user certificate and key from its
/// `[security.tls]` `cert_file` / `key_file` (secrets stay sealed at rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Identity {
    /// Username and password when `[security.credentials]` is set, else anonymous.
    #[default]
    Auto,
    Anonymous,
    Username,
    X509,
}

/// `protocol = "opcua"`: one server endpoint and the session to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpcuaConfig {
    /// `opc.tcp://host:port/path`.
    pub endpoint: String,
    #[serde(default)]
    pub security_policy: SecurityPolicy,
    #[serde(default)]
    pub security_mode: SecurityMode,
    #[serde(default)]
    pub identity: Identity,
    /// The client's PKI: `own/cert.der` and `private/private.pem` (generated on first
    /// connect when missing), `trusted/` server certificates, `rejected/` the ones
    /// refused (move a file from `rejected/` to `trusted/` to trust that server).
    #[serde(default = "default_pki_dir")]
    pub pki_dir: PathBuf,
    /// The client's application certificate (DER) and key (PEM) instead of the
    /// generated ones in `pki_dir/own` and `pki_dir/private`.
    #[serde(default)]
    pub certificate: Option<PathBuf>,
    #[serde(default)]
    pub private_key: Option<PathBuf>,
    /// The server's certificate (DER), copied into `pki_dir/trusted` at connect.
    #[serde(default)]
    pub server_certificate: Option<PathBuf>,
    /// Accept any server certificate (development only: production refuses it).
    #[serde(default)]
    pub trust_unknown_server: bool,
    /// Application URI of the client (its certificate carries it).
    #[serde(default = "default_application_uri")]
    pub application_uri: String,
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u32,
    /// Timeout of one service call (read, write, browse, create items).
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// How long the first connect (endpoint discovery, channel, session) may take.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Reconnect backoff: from min, doubled per failure up to max.
    #[serde(default = "crate::drivers::defaults::reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    #[serde(default = "crate::drivers::defaults::reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// Session keep-alive (a read of the server state) period.
    #[serde(default = "default_keep_alive_ms")]
    pub keep_alive_ms: u64,
    /// Our own caps on one call, lowered further to what the server declares in
    /// its OperationLimits.
    #[serde(default = "default_max_per_call")]
    pub max_items_per_call: usize,
    #[serde(default = "default_max_per_call")]
    pub max_nodes_per_read: usize,
    /// Most monitored items per subscription (0: no cap of ours; a server's cap is
    /// found when it refuses more).
    #[serde(default)]
    pub max_items_per_subscription: usize,
    /// Default queue size of monitored items (a tag's `queue=` overrides it).
    #[serde(default = "default_queue_size")]
    pub queue_size: u32,
    /// Subscribe (report by exception) or poll every tag with bulk reads.
    #[serde(default = "yes")]
    pub subscribe: bool,
    /// How long a node the server does not know is skipped before it is tried again.
    #[serde(default = "default_bad_node_grace_ms")]
    pub bad_node_grace_ms: u64,
}

fn yes() -> bool {
    true
}
fn default_pki_dir() -> PathBuf {
    PathBuf::from("pki/opcua")
}
fn default_application_uri() -> String {
    "urn:thermacore:client".into()
}
fn default_session_timeout_ms() -> u32 {
    60_000
}
fn default_request_timeout_ms() -> u64 {
    10_000
}
fn default_connect_timeout_ms() -> u64 {
    10_000
}
fn default_keep_alive_ms() -> u64 {
    10_000
}
fn default_max_per_call() -> usize {
    1_000
}
fn default_queue_size() -> u32 {
    10
}
fn default_bad_node_grace_ms() -> u64 {
    300_000
}

impl OpcuaConfig {
    /// A config with every default, for `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        OpcuaConfig {
            endpoint: endpoint.into(),
            security_policy: SecurityPolicy::None,
            security_mode: SecurityMode::None,
            identity: Identity::Auto,
            pki_dir: default_pki_dir(),
            certificate: None,
            private_key: None,
            server_certificate: None,
            trust_unknown_server: false,
            application_uri: default_application_uri(),
            session_timeout_ms: default_session_timeout_ms(),
            request_timeout_ms: default_request_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            reconnect_min_ms: crate::drivers::defaults::reconnect_min_ms(),
            reconnect_max_ms: crate::drivers::defaults::reconnect_max_ms(),
            keep_alive_ms: default_keep_alive_ms(),
            max_items_per_call: default_max_per_call(),
            max_nodes_per_read: default_max_per_call(),
            max_items_per_subscription: 0,
            queue_size: default_queue_size(),
            subscribe: true,
            bad_node_grace_ms: default_bad_node_grace_ms(),
        }
    }

    /// Checks the settings on their own; the error names the key.
    pub fn check(&self) -> Result<(), String> {
        let rest = self.endpoint.strip_prefix("opc.tcp://").ok_or_else(|| {
            format!(
                "endpoint: `{}` is not an opc.tcp:// URL (opc.tcp://host:port/path)",
                self.endpoint
            )
        })?;
        if rest.split('/').next().is_none_or(str::is_empty) {
            return Err(format!("endpoint: `{}` has no host", self.endpoint));
        }
        let secure = self.security_policy != SecurityPolicy::None;
        if secure != (self.security_mode != SecurityMode::None) {
            return Err(
                "security_mode: `none` goes with security_policy `none` only, and a policy other than `none` needs `sign` or `sign_and_encrypt`"
                    .into(),
            );
        }
        if self.certificate.is_some() != self.private_key.is_some() {
            return Err(
                "certificate, private_key: give both (or neither, to use pki_dir/own)".into(),
            );
        }
        if self.session_timeout_ms < 1_000 {
            return Err("session_timeout_ms: must be at least 1000".into());
        }
        if self.request_timeout_ms == 0 || self.connect_timeout_ms == 0 || self.keep_alive_ms == 0 {
            return Err(
                "request_timeout_ms, connect_timeout_ms, keep_alive_ms: must be > 0".into(),
            );
        }
        if self.reconnect_min_ms == 0 || self.reconnect_max_ms < self.reconnect_min_ms {
            return Err("reconnect_min_ms: must be > 0 and <= reconnect_max_ms".into());
        }
        if self.max_items_per_call == 0 || self.max_nodes_per_read == 0 {
            return Err("max_items_per_call, max_nodes_per_read: must be > 0".into());
        }
        if self.queue_size == 0 {
            return Err("queue_size: must be > 0".into());
        }
        if self.bad_node_grace_ms == 0 {
            return Err("bad_node_grace_ms: must be > 0".into());
        }
        Ok(())
    }

    /// Checks a tag's address against this device (config validation).
    pub fn check_tag(
        &self,
        address: &str,
        _data_type: DataType,
        _writable: bool,
    ) -> Result<(), String> {
        // Every data type reads and writes; whether a node is writable and of which
        // type the server says at run time (a refused write is a clear error).
        let a = OpcuaAddress::parse(address)?;
        let polled = !self.subscribe || a.options.mode == Mode::Poll;
        if polled && matches!(a.options.deadband, Some(Deadband::Percent(_))) {
            return Err(
                "deadband=N%: a percent deadband is applied by the server to a subscription; a polled tag takes an absolute deadband (the tag's `deadband`)"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<OpcuaConfig, String> {
        let text = format!("endpoint = \"opc.tcp://127.0.0.1:4840/\"\n{extra}");
        let c: OpcuaConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        c.check().map(|()| c)
    }

    #[test]
    fn defaults_and_checks() {
        let c = config("").expect("defaults");
        assert_eq!(c, OpcuaConfig::new("opc.tcp://127.0.0.1:4840/"));
        assert_eq!(c.bad_node_grace_ms, 300_000);
        let c = config(
            "security_policy = \"aes256_sha256_rsapss\"\nsecurity_mode = \"sign_and_encrypt\"",
        )
        .expect("secure");
        assert_eq!(
            c.security_policy.to_opcua(),
            opcua::crypto::SecurityPolicy::Aes256Sha256RsaPss
        );
        for (extra, key) in [
            ("security_policy = \"basic256sha256\"", "security_mode"),
            ("security_mode = \"sign\"", "security_mode"),
            ("certificate = \"c.der\"", "certificate"),
            ("session_timeout_ms = 10", "session_timeout_ms"),
            ("reconnect_min_ms = 0", "reconnect_min_ms"),
            ("max_items_per_call = 0", "max_items_per_call"),
            ("queue_size = 0", "queue_size"),
        ] {
            let e = config(extra).expect_err(extra);
            assert!(e.starts_with(key), "{extra}: {e}");
        }
        let e = toml::from_str::<OpcuaConfig>("endpoint = \"x\"\nsecurity_policy = \"basic128\"")
            .expect_err("unknown policy");
        assert!(e.to_string().contains("basic256sha256"), "{e}");
        let mut c = OpcuaConfig::new("http://x");
        assert!(c.check().expect_err("scheme").starts_with("endpoint"));
        c.endpoint = "opc.tcp:///path".into();
        assert!(c.check().expect_err("host").contains("no host"));
    }
}

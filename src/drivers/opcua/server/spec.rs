//! What a server is started from: the spec, its limits and its variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use opcua::crypto::SecurityPolicy;
use opcua::types::{MessageSecurityMode, Variant};

use super::{ServerError, nodes};

/// Everything a server is started from.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// Where to listen; port 0 picks a free port (see [`RunningServer::local_addr`]).
    pub listen: SocketAddr,
    pub application_name: String,
    /// Also the first alternative name of the server's certificate.
    pub application_uri: String,
    /// The namespace of the variables, e.g. `urn:thermacore:demo:pump-station`.
    pub namespace_uri: String,
    /// The server's certificate store: `own/cert.der` and `private/private.pem` (made
    /// on first start), `trusted/` and `rejected/` for client certificates.
    pub pki_dir: PathBuf,
    /// Offer the anonymous identity.
    pub anonymous: bool,
    /// Username/password identities.
    pub users: Vec<(String, String)>,
    /// DER user certificates accepted for the X.509 identity.
    pub x509_users: Vec<PathBuf>,
    /// The security endpoints; empty means None/None only.
    pub endpoints: Vec<(SecurityPolicy, MessageSecurityMode)>,
    /// Trust every client application certificate; when false a client's certificate
    /// must be in `pki_dir/trusted` (see [`trust_certificate`]).
    pub trust_client_certs: bool,
    pub limits: ServerLimits,
    pub variables: Vec<VariableSpec>,
}

impl ServerSpec {
    /// A spec on `listen` for the variables of `namespace_uri`: anonymous only, None/None
    /// only, client certificates not trusted, library limits, no variables.
    pub fn new(listen: SocketAddr, namespace_uri: &str, pki_dir: impl Into<PathBuf>) -> Self {
        ServerSpec {
            listen,
            application_name: "ThermaCore OPC UA server".into(),
            application_uri: "urn:thermacore:opcua-server".into(),
            namespace_uri: namespace_uri.into(),
            pki_dir: pki_dir.into(),
            anonymous: true,
            users: Vec::new(),
            x509_users: Vec::new(),
            endpoints: Vec::new(),
            trust_client_certs: false,
            limits: ServerLimits::default(),
            variables: Vec::new(),
        }
    }
}

/// Operation limits; 0 leaves the library's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerLimits {
    pub max_nodes_per_read: usize,
    pub max_nodes_per_write: usize,
    pub max_nodes_per_browse: usize,
    pub max_monitored_items_per_call: usize,
    pub max_monitored_items_per_sub: usize,
    pub max_subscriptions_per_session: usize,
    /// Refuse every subscription (BadTooManySubscriptions), as a server without the
    /// subscription service set would: clients must poll.
    pub refuse_subscriptions: bool,
}

/// One scalar variable.
#[derive(Debug, Clone, PartialEq)]
pub struct VariableSpec {
    /// An Object folder under Objects (made once, by name; its NodeId is
    /// `ns=<index>;s=<folder>`); `None` puts the variable directly under Objects.
    pub folder: Option<String>,
    /// The string identifier: the NodeId is `ns=<namespace index>;s=<id>`.
    pub id: String,
    /// Browse name and display name (the id when empty).
    pub name: String,
    /// The initial value; its type is the node's DataType (Boolean, SByte..UInt64,
    /// Float, Double, String, DateTime), and writes of any other type are refused.
    pub value: Variant,
    /// CurrentRead | CurrentWrite (access level and user access level) when true.
    pub writable: bool,
    /// Adds the EURange property (low, high), which percent deadbands need.
    pub eu_range: Option<(f64, f64)>,
}

impl VariableSpec {
    /// A read-only variable `id` under Objects, named after its id.
    pub fn new(id: &str, value: impl Into<Variant>) -> Self {
        VariableSpec {
            folder: None,
            id: id.into(),
            name: id.into(),
            value: value.into(),
            writable: false,
            eu_range: None,
        }
    }

    pub fn in_folder(mut self, folder: &str) -> Self {
        self.folder = Some(folder.into());
        self
    }

    pub fn named(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    pub fn writable(mut self) -> Self {
        self.writable = true;
        self
    }

    pub fn eu_range(mut self, low: f64, high: f64) -> Self {
        self.eu_range = Some((low, high));
        self
    }
}

/// Every variable valid, no identifier twice (nor a folder's name).
pub(super) fn check_variables(vars: &[VariableSpec]) -> Result<(), ServerError> {
    let folders: std::collections::HashSet<&str> =
        vars.iter().filter_map(|v| v.folder.as_deref()).collect();
    let mut ids = std::collections::HashSet::new();
    for v in vars {
        let fail = |reason: String| ServerError::Variable {
            id: v.id.clone(),
            reason,
        };
        nodes::check(v).map_err(fail)?;
        if !ids.insert(v.id.as_str()) {
            return Err(fail("the identifier is used twice".into()));
        }
        if folders.contains(v.id.as_str()) {
            return Err(fail("a folder has this name".into()));
        }
    }
    Ok(())
}

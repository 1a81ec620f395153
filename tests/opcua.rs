//! The OPC UA driver end to end: async-opcua servers on ephemeral ports (the
//! embedded [`thermacore::drivers::opcua::server`]) playing PLCs, and the real
//! ThermaCore server in front, seen through GraphQL. Fixtures here; tests in
//! `tests/opcua/`.

#[path = "opcua/browse.rs"]
mod browse;
mod common;
#[path = "opcua/faults.rs"]
mod faults;
#[path = "opcua/security.rs"]
mod security;
#[path = "opcua/subscriptions.rs"]
mod subscriptions;
#[path = "opcua/writes.rs"]
mod writes;

use common::opcua::{self as peer, NAMESPACE, TestServer};
pub use common::site::{Site, WAIT, error_code, quality, start, start_with, tag, value};
use tempfile::TempDir;

/// A tag on a standard variable of the test server, by namespace URI.
pub fn node_tag(name: &str, id: &str, data_type: &str, extra: &str) -> String {
    tag(name, &format!("nsu={NAMESPACE};s={id}"), data_type, extra)
}

/// An OPC UA device on `server`; `driver` adds `, key = value` settings to the
/// driver table. The client PKI trusts the server's certificate.
pub fn device(
    name: &str,
    server: &TestServer,
    pki: &TempDir,
    driver: &str,
    tags: &[String],
) -> String {
    device_at(name, &server.endpoint_url(), pki, driver, tags)
}

pub fn device_at(
    name: &str,
    endpoint: &str,
    pki: &TempDir,
    driver: &str,
    tags: &[String],
) -> String {
    format!(
        "[[tenants.devices]]\nname = \"{name}\"\npoll_ms = 100\ndriver = {{ protocol = \"opcua\", endpoint = \"{endpoint}\", pki_dir = \"{}\", application_uri = \"{}\", reconnect_min_ms = 100, reconnect_max_ms = 400, connect_timeout_ms = 5000{driver} }}\n{}",
        pki.path().display(),
        peer::CLIENT_URI,
        tags.concat()
    )
}

/// A client PKI with the shared client keypair, trusting `server`.
pub fn trusting(server: &TestServer) -> TempDir {
    peer::client_pki(Some(server))
}

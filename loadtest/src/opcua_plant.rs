//! ThermaCore in the `opcua` scenario: the plant (one OPC UA device per device of the
//! child's servers, one f64 tag per variable, the writable variable as tag `w`),
//! started by [`crate::plant_server::Server`].

use std::fmt::Write as _;

use crate::modbus::StoreMode;
use crate::opcua_server::{ITEMS_PER_SUBSCRIPTION, Layout, Servers, item_id, writable_id};
use crate::plant_server::{Server, TENANT};

fn plant(
    layout: &Layout,
    servers: &Servers,
    publish_ms: u64,
    store: StoreMode,
    pki: &str,
) -> String {
    let mut s = String::with_capacity(layout.items * 90);
    s.push_str("[quotas]\nmax_devices = 0\nmax_tags = 0\nmin_poll_ms = 0\n");
    s.push_str("[api]\nuser_requests_per_sec = 10000\n");
    if store == StoreMode::None {
        s.push_str("[historian]\nbatch_size = 1\nmax_buffered_samples = 1\n");
    }
    let _ = writeln!(s, "[[tenants]]\nname = \"{TENANT}\"");
    let ns = servers.ns;
    for d in 0..layout.devices {
        let port = servers.ports[layout.server_of(d)];
        // `poll_ms` is the sampling and publishing interval of the subscriptions.
        let _ = writeln!(
            s,
            "[[tenants.devices]]\nname = \"ua-{d}\"\npoll_ms = {publish_ms}\ndriver = {{ protocol = \"opcua\", endpoint = \"opc.tcp://127.0.0.1:{port}/\", security_policy = \"none\", security_mode = \"none\", pki_dir = \"{pki}\", trust_unknown_server = true, max_items_per_subscription = {ITEMS_PER_SUBSCRIPTION} }}"
        );
        for k in 0..layout.items_of(d) {
            let _ = writeln!(
                s,
                "[[tenants.devices.tags]]\nname = \"v{k}\"\naddress = \"ns={ns};s={}\"\ndata_type = \"f64\"",
                item_id(d, k)
            );
        }
        let _ = writeln!(
            s,
            "[[tenants.devices.tags]]\nname = \"w\"\naddress = \"ns={ns};s={}\"\ndata_type = \"f64\"\nwritable = true",
            writable_id(d)
        );
    }
    s
}

/// Starts the server on the plant and checks its tags: every value and one writable
/// `w` per device.
pub async fn start(
    layout: &Layout,
    servers: &Servers,
    publish_ms: u64,
    store: StoreMode,
) -> anyhow::Result<Server> {
    let server = Server::start("opcua bench plant", layout.devices, |dir| {
        let pki = dir.join("pki");
        plant(
            layout,
            servers,
            publish_ms,
            store,
            &pki.display().to_string(),
        )
    })
    .await?;
    anyhow::ensure!(
        server.values.len() == layout.items && server.writable("w").len() == layout.devices,
        "{} value and {} writable tags for {} items on {} devices",
        server.values.len(),
        server.writable("w").len(),
        layout.items,
        layout.devices
    );
    Ok(server)
}

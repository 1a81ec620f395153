//! DNP3 over TLS: a device with its certificate, key and CA reads from an outstation
//! that checks masters against its CA; a master certificate from another CA is
//! turned away.

use rcgen::ExtendedKeyUsagePurpose;
use serde_json::json;
use thermacore::drivers::dnp3::outstation::OutstationTls;

use super::{device, feeder_points, outstation_with, tag, value};
use crate::common::pki::{KEY, authority, issue, security};
use crate::common::server::eventually;

#[tokio::test]
async fn a_device_reads_over_tls_and_a_foreign_master_is_refused() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (ca, ca_file) = authority(d, "grid");
    let (server_cert, server_key) = issue(
        d,
        &ca,
        "rtu",
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = issue(
        d,
        &ca,
        "master",
        &["thermacore"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let (rogue_ca, _) = authority(d, "rogue");
    let (rogue_cert, rogue_key) = issue(
        d,
        &rogue_ca,
        "rogue",
        &["thermacore"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let o = outstation_with(feeder_points(), |s| {
        s.tls = Some(OutstationTls {
            ca: ca_file.clone(),
            cert: server_cert.clone(),
            key: server_key.clone(),
        })
    })
    .await;
    let secure = [
        security(&ca_file, &client_cert, &client_key),
        tag("voltage", "ai:0", "f64", ""),
    ];
    let foreign = [
        security(&ca_file, &rogue_cert, &rogue_key),
        tag("rogue-voltage", "ai:0", "f64", ""),
    ];
    let site = crate::common::site::start_with(
        "dnp3-tls",
        &[
            device("secure", &o.endpoint(), "", &secure),
            device("foreign", &o.endpoint(), "", &foreign),
        ],
        |c| c.secret_key = Some(KEY.to_string()),
    )
    .await;
    site.wait_state("secure", "ONLINE").await;
    eventually(super::WAIT, "the value arrives over TLS", || async {
        value(&site.latest().await, "voltage") == json!(230.5)
    })
    .await;
    // The outstation refuses the foreign certificate: never answered, never ONLINE.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_ne!(site.state("foreign").await, "ONLINE");
    let l = site.latest().await;
    assert!(l["rogue-voltage"].is_null(), "{l:?}");
}

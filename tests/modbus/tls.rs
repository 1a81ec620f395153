//! Modbus/TCP Security: a device with client certificate, key and CA reads over TLS
//! from a rodbus TLS server that checks clients against its CA; a client certificate
//! from another CA, or a server certificate without the expected name, is turned away.

use rcgen::ExtendedKeyUsagePurpose;
use rodbus::server::{
    AddressFilter, CertificateMode, MinTlsVersion, RequestHandler, ServerHandlerMap,
    TlsServerConfig,
};
use rodbus::{DecodeLevel, UnitId};
use serde_json::json;
use thermacore::drivers::modbus::plc::Bank;
use tokio::net::TcpListener;

use super::{device, start_with, tag};
use crate::common::pki::{KEY, authority, issue, security};

#[tokio::test]
async fn a_device_reads_over_modbus_tcp_security_and_a_foreign_client_is_refused() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (ca, ca_file) = authority(d, "plant");
    let (server_cert, server_key) = issue(
        d,
        &ca,
        "server",
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = issue(
        d,
        &ca,
        "client",
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

    let mut bank = Bank::filled(4);
    bank.holding_registers.insert(0, 1234);
    bank.coils.insert(1, true);
    let mut map = ServerHandlerMap::new();
    map.add(UnitId::new(1), bank.wrap());
    let tls = TlsServerConfig::new(
        &ca_file,
        &server_cert,
        &server_key,
        None,
        MinTlsVersion::V1_2,
        CertificateMode::AuthorityBased,
    )
    .expect("server TLS config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (_server, task) = rodbus::server::create_tls_server_task(
        8,
        listener,
        map,
        tls,
        AddressFilter::Any,
        DecodeLevel::nothing(),
    );
    tokio::spawn(task.run());

    let driver = ", reconnect_min_ms = 50, reconnect_max_ms = 200";
    let secure = [
        security(&ca_file, &client_cert, &client_key),
        tag("level", "hr:0", "u16", ""),
        tag("pump", "coil:1", "bool", ""),
    ];
    let foreign = [
        security(&ca_file, &rogue_cert, &rogue_key),
        tag("rogue-level", "hr:0", "u16", ""),
    ];
    let misnamed = [
        security(&ca_file, &client_cert, &client_key),
        tag("misnamed-level", "hr:0", "u16", ""),
    ];
    let named = format!("{driver}, tls_server_name = \"plc.example\"");
    let site = start_with(
        "mb-tls",
        &[
            device("secure", port, driver, &secure),
            device("foreign", port, driver, &foreign),
            device("misnamed", port, &named, &misnamed),
        ],
        |c| c.secret_key = Some(KEY.to_string()),
    )
    .await;
    site.wait_good(&[("level", json!(1234)), ("pump", json!(true))])
        .await;
    site.wait_state("secure", "ONLINE").await;
    // A client certificate the server does not trust, and a server certificate
    // without the name the device expects: no link, never a value (a tag has none
    // before its first reading).
    site.wait_state("foreign", "OFFLINE").await;
    site.wait_state("misnamed", "OFFLINE").await;
    let latest = site.latest().await;
    for t in ["rogue-level", "misnamed-level"] {
        assert!(
            latest[t].is_null() || latest[t]["quality"] == "BAD",
            "{t}: {}",
            latest[t]
        );
    }
}

//! Identities and secure channels: the server's keypair on first start, username
//! sessions, certificates trusted (or not) on both sides, X.509 users, and the demo
//! station's secure endpoint.

use super::*;

#[tokio::test]
async fn a_first_start_makes_a_keypair_that_fits_loopback_clients() {
    let pki = tempfile::tempdir().expect("temp dir");
    let mut spec = ServerSpec::new(([127, 0, 0, 1], 0).into(), peer::NAMESPACE, pki.path());
    spec.endpoints = vec![(
        SecurityPolicy::Basic256Sha256,
        MessageSecurityMode::SignAndEncrypt,
    )];
    spec.trust_client_certs = true;
    spec.variables = vec![VariableSpec::new("X", 1.0f64)];
    let started = Instant::now();
    let server = RunningServer::start(spec.clone())
        .await
        .expect("server starts");
    eprintln!("server start with key generation: {:?}", started.elapsed());
    let cert = opcua::crypto::CertificateStore::read_cert(&server.certificate_path())
        .expect("the server certificate");
    for host in ["127.0.0.1", "localhost"] {
        cert.is_hostname_valid(host).expect(host);
    }
    cert.is_application_uri_valid(&spec.application_uri)
        .expect("the application URI");
    let session = peer::connect(
        &server,
        SecurityPolicy::Basic256Sha256,
        MessageSecurityMode::SignAndEncrypt,
        peer::anonymous(),
    )
    .await
    .expect("a secure session with the new certificate");
    assert_eq!(
        read(&session, &server, &["X"]).await[0].value,
        Some(Variant::Double(1.0))
    );
    drop(session);
    server.stop().await;
    // The second start keeps the keypair.
    let before = std::fs::read(pki.path().join("own/cert.der")).expect("cert");
    let started = Instant::now();
    let server = RunningServer::start(spec)
        .await
        .expect("server starts again");
    eprintln!(
        "server start with the keypair on disk: {:?}",
        started.elapsed()
    );
    let after = std::fs::read(server.certificate_path()).expect("cert");
    assert_eq!(before, after);
}

#[tokio::test]
async fn username_sessions_need_the_right_password() {
    let server = peer::test_server(|s| s.anonymous = false).await;
    for (policy, mode) in [
        NONE,
        (
            SecurityPolicy::Basic256Sha256,
            MessageSecurityMode::SignAndEncrypt,
        ),
    ] {
        let session = peer::connect(&server, policy, mode, peer::user(peer::PASSWORD))
            .await
            .unwrap_or_else(|s| panic!("{policy} {mode:?}: {s}"));
        assert_eq!(
            read(&session, &server, &["Bool"]).await[0].status(),
            StatusCode::Good
        );
    }
    let wrong = peer::connect(&server, NONE.0, NONE.1, peer::user("wrong")).await;
    assert!(wrong.is_err(), "a wrong password is refused");
    let anonymous = peer::connect(&server, NONE.0, NONE.1, peer::anonymous()).await;
    assert!(anonymous.is_err(), "anonymous is not offered");
}

#[tokio::test]
async fn secure_channels_need_trusted_certificates_on_both_sides() {
    let server = peer::test_server(|s| s.trust_client_certs = false).await;
    let (policy, mode) = (
        SecurityPolicy::Basic256Sha256,
        MessageSecurityMode::SignAndEncrypt,
    );
    let refused = peer::connect(&server, policy, mode, peer::anonymous()).await;
    assert!(
        refused.is_err(),
        "an untrusted client certificate is refused"
    );
    let rejected = server
        .trusted_dir()
        .with_file_name("rejected")
        .join(peer::store_name(&peer::material().client_cert));
    assert!(rejected.exists(), "the store files it under rejected/");
    // Trusting it is enough, while the server runs (the rejected copy must go).
    std::fs::remove_file(&rejected).expect("unreject");
    server
        .trust_client_certificate(&peer::material().client_cert)
        .expect("trust the client");
    for (policy, mode) in peer::all_endpoints().into_iter().skip(1) {
        let session = peer::connect(&server, policy, mode, peer::anonymous())
            .await
            .unwrap_or_else(|s| panic!("{policy} {mode:?}: {s}"));
        assert_eq!(
            read(&session, &server, &["Int64"]).await[0].status(),
            StatusCode::Good
        );
    }
    let x509 = peer::connect(&server, policy, mode, peer::x509_user())
        .await
        .expect("an X.509 user session");
    assert_eq!(
        read(&x509, &server, &["String"]).await[0].status(),
        StatusCode::Good
    );
    // A client that does not trust the server's certificate gives up.
    let untrusting = peer::connect_with(
        &server,
        peer::client_pki(None),
        policy,
        mode,
        peer::anonymous(),
    )
    .await;
    assert!(
        untrusting.is_err(),
        "the client checks the server certificate"
    );
}

#[tokio::test]
async fn the_demo_station_serves_its_pump_station_securely() {
    use thermacore::demo::opcua as station;
    let data_dir = tempfile::tempdir().expect("temp dir");
    let demo = station::start(data_dir.path()).await.expect("demo station");
    let server = &demo.server;
    assert_eq!(
        server.certificate_path(),
        station::server_certificate_path(data_dir.path())
    );
    let plain = peer::connect(server, NONE.0, NONE.1, peer::anonymous()).await;
    assert!(plain.is_err(), "only the secure endpoint is offered");
    let session = peer::connect(
        server,
        SecurityPolicy::Basic256Sha256,
        MessageSecurityMode::SignAndEncrypt,
        peer::anonymous(),
    )
    .await
    .expect("a secure session");
    let ids = [
        station::FLOW,
        station::PRESSURE,
        station::LEVEL,
        station::PUMP_RUNNING,
        station::SETPOINT,
        station::STARTS,
    ];
    let first = read(&session, server, &ids).await;
    assert!(first.iter().all(|dv| dv.status() == StatusCode::Good));
    let written = session
        .write(&[write_value(server, station::SETPOINT, Variant::Double(3.5))])
        .await
        .expect("write");
    assert_eq!(written, vec![StatusCode::Good]);
    eventually(Duration::from_secs(5), "the level moves on", || {
        let (session, server) = (&session, server);
        let before = first[2].source_timestamp;
        async move {
            let now = &read(session, server, &[station::LEVEL, station::SETPOINT]).await;
            now[0].source_timestamp > before && now[1].value == Some(Variant::Double(3.5))
        }
    })
    .await;
    demo.stop().await;
}

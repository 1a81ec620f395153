//! Sessions: anonymous, username and X.509 identities; Sign and SignAndEncrypt with
//! every security policy; an untrusted server refused (its certificate left in
//! `rejected/`); wrong credentials and a missing endpoint as clear device errors.

use opcua::crypto::SecurityPolicy;
use opcua::types::MessageSecurityMode;

use super::{WAIT, device, node_tag, quality, start_with, trusting, value};
use crate::common::opcua::{self as peer, PASSWORD, USER};
use crate::common::server::eventually;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn credentials(user: &str, password: &str) -> String {
    format!(
        "[tenants.devices.security]\ncredentials = {{ username = \"{user}\", password = \"{password}\" }}\n"
    )
}

#[tokio::test]
async fn every_policy_and_identity_connects_and_reads() {
    let server = peer::test_server(|_| {}).await;
    let secure = |p: &str, m: &str| format!(", security_policy = \"{p}\", security_mode = \"{m}\"");
    let cases = [
        ("anonymous", String::new(), String::new()),
        ("username", String::new(), credentials(USER, PASSWORD)),
        (
            "x509-user",
            format!(
                "{}, identity = \"x509\"",
                secure("basic256sha256", "sign_and_encrypt")
            ),
            format!(
                "[tenants.devices.security]\ntls = {{ cert_file = \"{}\", key_file = \"{}\" }}\n",
                peer::material().user_cert.display(),
                peer::material().user_key.display()
            ),
        ),
        ("b256-sign", secure("basic256sha256", "sign"), String::new()),
        (
            "b256-encrypt",
            secure("basic256sha256", "sign_and_encrypt"),
            credentials(USER, PASSWORD),
        ),
        (
            "aes128",
            secure("aes128_sha256_rsaoaep", "sign_and_encrypt"),
            String::new(),
        ),
        (
            "aes256",
            secure("aes256_sha256_rsapss", "sign_and_encrypt"),
            String::new(),
        ),
    ];
    let pkis: Vec<_> = cases.iter().map(|_| trusting(&server)).collect();
    let devices: Vec<String> = cases
        .iter()
        .zip(&pkis)
        .map(|((name, driver, security), pki)| {
            let tags = [
                node_tag(&format!("{name}.v"), "Int32", "i32", ""),
                security.clone(),
            ];
            device(name, &server, pki, driver, &tags)
        })
        .collect();
    let site = start_with("ua-security", &devices, |c| c.secret_key = Some(KEY.into())).await;
    for (name, _, _) in &cases {
        site.wait_state(name, "ONLINE").await;
    }
    eventually(WAIT, "every session reads the value", || async {
        let l = site.latest().await;
        cases
            .iter()
            .all(|(name, _, _)| value(&l, &format!("{name}.v")) == serde_json::json!(-320_000))
    })
    .await;
}

#[tokio::test]
async fn untrusted_servers_wrong_passwords_and_missing_endpoints_are_clear_errors() {
    let server = peer::test_server(|s| {
        // This server offers no Aes256 endpoint.
        s.endpoints = vec![
            (SecurityPolicy::None, MessageSecurityMode::None),
            (
                SecurityPolicy::Basic256Sha256,
                MessageSecurityMode::SignAndEncrypt,
            ),
        ];
    })
    .await;
    let untrusted_pki = peer::client_pki(None);
    let trusted_pki = trusting(&server);
    let other_pki = trusting(&server);
    let encrypt = ", security_policy = \"basic256sha256\", security_mode = \"sign_and_encrypt\"";
    let devices = [
        device(
            "untrusted",
            &server,
            &untrusted_pki,
            encrypt,
            &[node_tag("u", "Int32", "i32", "")],
        ),
        device(
            "wrong-password",
            &server,
            &trusted_pki,
            "",
            &[node_tag("w", "Int32", "i32", ""), credentials(USER, "nope")],
        ),
        device(
            "no-endpoint",
            &server,
            &other_pki,
            ", security_policy = \"aes256_sha256_rsapss\", security_mode = \"sign\"",
            &[node_tag("n", "Int32", "i32", "")],
        ),
    ];
    let site = start_with("ua-refused", &devices, |c| c.secret_key = Some(KEY.into())).await;
    for (dev, needle) in [
        ("untrusted", "not trusted"),
        ("wrong-password", "refused the identity"),
        ("no-endpoint", "offers no endpoint"),
    ] {
        site.wait_state(dev, "OFFLINE").await;
        eventually(WAIT, &format!("{dev} says why"), || async {
            site.last_error(dev).await.contains(needle)
        })
        .await;
    }
    assert!(
        site.last_error("no-endpoint")
            .await
            .contains("Basic256Sha256"),
        "the error lists what the server offers: {}",
        site.last_error("no-endpoint").await
    );
    // The untrusted server's certificate waits in rejected/ for an administrator.
    let rejected = untrusted_pki
        .path()
        .join("rejected")
        .join(peer::store_name(&server.certificate_path()));
    assert!(rejected.exists(), "{} missing", rejected.display());
    let l = site.latest().await;
    for t in ["u", "w", "n"] {
        assert_ne!(quality(&l, t).0, "GOOD", "{t}: {l:?}");
    }
    // Trusting it (as an administrator would) lets the device connect at its next try.
    std::fs::rename(
        &rejected,
        untrusted_pki
            .path()
            .join("trusted")
            .join(peer::store_name(&server.certificate_path())),
    )
    .expect("move the certificate to trusted/");
    site.wait_state("untrusted", "ONLINE").await;
}

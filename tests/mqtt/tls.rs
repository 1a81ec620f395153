//! Secured broker links: TLS verified against the device's CA (with a server name other
//! than the host), username and password, and the refusals — an unknown CA, a wrong
//! password, a missing client certificate — leaving the device OFFLINE, never
//! crashing. Client certificates are checked against a private Mosquitto when the
//! suite runs with Mosquitto (rumqttd checks no client certificates).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rcgen::ExtendedKeyUsagePurpose;
use serde_json::json;
use thermacore::drivers::mqtt::broker::{BrokerLimits, BrokerSecurity, EmbeddedBroker};

use super::{Site, WAIT, device_at, quality, start_with, tag, value};
use crate::common::pki::{authority, issue, write};

/// The device secrets (key file, password) are sealed with this key.
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn security(tls: &str, credentials: Option<(&str, &str)>) -> String {
    let creds = credentials
        .map(|(u, p)| format!("credentials = {{ username = \"{u}\", password = \"{p}\" }}\n"))
        .unwrap_or_default();
    format!("[tenants.devices.security]\nrequire_tls = true\ntls = {{ {tls} }}\n{creds}")
}

/// Writes `v` (whose command topic is the topic it reads) until the value comes back:
/// published over the secured link, acknowledged by the broker, and received.
async fn echo(site: &Site, v: f64) {
    let start = std::time::Instant::now();
    loop {
        let r = site.write_as(&site.admin, "v", json!(v)).await;
        assert!(r.get("errors").is_none(), "{r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        if value(&site.latest().await, "v") == json!(v) {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "no value back over the secured link"
        );
    }
}

#[tokio::test]
async fn tls_with_a_server_name_and_a_password_and_the_refusals() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (ca, ca_file) = authority(d, "plant");
    // The certificate names broker.plant.test, not the address the device dials.
    let (cert, key) = issue(
        d,
        &ca,
        "broker",
        &["broker.plant.test"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (_, rogue_ca) = authority(d, "rogue");
    let broker = EmbeddedBroker::start_secured(
        "127.0.0.1:0".parse().expect("addr"),
        BrokerLimits::default(),
        BrokerSecurity {
            tls: Some((cert.display().to_string(), key.display().to_string())),
            users: HashMap::from([("plant".to_string(), "s3cret".to_string())]),
        },
    )
    .expect("TLS broker");
    let port = broker.port();
    let topic = "secure/v";
    let named = ", tls_server_name = \"broker.plant.test\"";
    let ca = format!("ca_file = \"{}\"", ca_file.display());
    let secure = [
        security(&ca, Some(("plant", "s3cret"))),
        // Commands go to the topic the tag reads: a round trip over the TLS link.
        tag(
            "v",
            &format!("topic={topic};value=/value;command={topic}"),
            "f64",
            "writable = true",
        ),
    ];
    let wrong_password = [
        security(&ca, Some(("plant", "guess"))),
        tag("pw", &format!("topic={topic};value=/v"), "f64", ""),
    ];
    let unknown_ca = [
        security(
            &format!("ca_file = \"{}\"", rogue_ca.display()),
            Some(("plant", "s3cret")),
        ),
        tag("rogue", &format!("topic={topic};value=/v"), "f64", ""),
    ];
    let misnamed = [
        security(&ca, Some(("plant", "s3cret"))),
        tag("misnamed", &format!("topic={topic};value=/v"), "f64", ""),
    ];
    let site = start_with(
        "mqtt-tls",
        &[
            device_at("secure", "127.0.0.1", port, named, &secure),
            device_at("wrong-password", "127.0.0.1", port, named, &wrong_password),
            device_at("unknown-ca", "127.0.0.1", port, named, &unknown_ca),
            // Verified against the host it dials (127.0.0.1), which the certificate does not name.
            device_at("misnamed", "127.0.0.1", port, "", &misnamed),
        ],
        |c| c.secret_key = Some(KEY.to_string()),
    )
    .await;
    site.wait_state("secure", "ONLINE").await;
    // Published over TLS with the password, acknowledged, and received back.
    echo(&site, 7.5).await;
    for dev in ["wrong-password", "unknown-ca", "misnamed"] {
        site.wait_state(dev, "OFFLINE").await;
    }
    let l = site.latest().await;
    for t in ["pw", "rogue", "misnamed"] {
        assert!(l[t].is_null() || quality(&l, t).0 == "BAD", "{t}: {}", l[t]);
    }
}

/// A private Mosquitto on a free port with TLS that requires client certificates.
struct TlsMosquitto {
    port: u16,
    child: std::process::Child,
}

impl Drop for TlsMosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn client_certificates_against_mosquitto() {
    let mosquitto = Path::new("/usr/sbin/mosquitto");
    if !mosquitto.exists() {
        eprintln!(
            "SKIPPED: client certificates are checked against a private Mosquitto; /usr/sbin/mosquitto is not installed (`apt-get install mosquitto`; .ci/run has it)"
        );
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (ca, ca_file) = authority(d, "plant");
    let (cert, key) = issue(
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let conf = write(
        d,
        "mosquitto.conf",
        &format!(
            "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
            ca_file.display(),
            cert.display(),
            key.display()
        ),
    );
    let child = std::process::Command::new(mosquitto)
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mosquitto starts");
    let broker = TlsMosquitto { port, child };
    let deadline = std::time::Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", broker.port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "mosquitto did not listen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let topic = "certs/v";
    let with_cert = [
        security(
            &format!(
                "ca_file = \"{}\", cert_file = \"{}\", key_file = \"{}\"",
                ca_file.display(),
                client_cert.display(),
                client_key.display()
            ),
            None,
        ),
        tag(
            "v",
            &format!("topic={topic};value=/value;command={topic}"),
            "f64",
            "writable = true",
        ),
    ];
    let without_cert = [
        security(&format!("ca_file = \"{}\"", ca_file.display()), None),
        tag("nocert", &format!("topic={topic};value=/value"), "f64", ""),
    ];
    let site = start_with(
        "mqtt-certs",
        &[
            device_at("with-cert", "127.0.0.1", broker.port, "", &with_cert),
            device_at("without-cert", "127.0.0.1", broker.port, "", &without_cert),
        ],
        |c| c.secret_key = Some(KEY.to_string()),
    )
    .await;
    site.wait_state("with-cert", "ONLINE").await;
    echo(&site, 3.5).await;
    site.wait_state("without-cert", "OFFLINE").await;
}

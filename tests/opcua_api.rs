//! OPC UA browsing and import through the API, the paths that need no OPC UA server:
//! permissions, devices of another protocol or tenant, bounded input, a device that is
//! not connected, and the audit record. A real server on an ephemeral port, SQLite.

mod common;

use common::opcua_queries::{IMPORT, browse, device_id, import};
use common::server::{self, TestServer};
use serde_json::{Value, json};
use thermacore::domain::Role;

/// `press` is an OPC UA device whose endpoint nothing listens on (never connected);
/// `boiler` a simulated one.
fn plant(pki: &std::path::Path) -> String {
    format!(
        r#"
[[tenants]]
name = "acme"
[[tenants.devices]]
name = "boiler"
poll_ms = 50
driver = {{ protocol = "sim" }}
[[tenants.devices.tags]]
name = "temp"
address = "sine"

[[tenants.devices]]
name = "press"
poll_ms = 1000
driver = {{ protocol = "opcua", endpoint = "opc.tcp://127.0.0.1:1", pki_dir = "{}", connect_timeout_ms = 500, reconnect_min_ms = 5000 }}

[[tenants]]
name = "globex"
[[tenants.devices]]
name = "other-press"
poll_ms = 1000
driver = {{ protocol = "opcua", endpoint = "opc.tcp://127.0.0.1:1", pki_dir = "{}", connect_timeout_ms = 500, reconnect_min_ms = 5000 }}
"#,
        pki.join("acme").display(),
        pki.join("globex").display()
    )
}

async fn acme() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = [
        ("acme", "admin", Role::Admin),
        ("acme", "operator", Role::Operator),
        ("acme", "viewer", Role::Viewer),
        ("globex", "admin", Role::Admin),
    ];
    let plant = plant(&dir.path().join("pki"));
    let s = server::start(server::config(&plant, dir.path()), &users).await;
    s.wait_ready().await;
    (s, dir)
}

fn code(r: &Value) -> &str {
    r["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("<none>")
}

fn message(r: &Value) -> &str {
    r["errors"][0]["message"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn browsing_and_importing_need_the_configure_permission() {
    let (s, _d) = acme().await;
    let admin = s.login("acme", "admin").await;
    let press = device_id(&s, &admin, "press").await;
    for user in ["viewer", "operator"] {
        let token = s.login("acme", user).await;
        let r = browse(&s, &token, &press, None).await;
        assert_eq!(code(&r), "FORBIDDEN", "{user}: {r}");
        assert!(r["data"].is_null(), "{r}");
        let r = import(&s, &token, &press, &["ns=2;s=A"]).await;
        assert_eq!(code(&r), "FORBIDDEN", "{user}: {r}");
        assert!(r["data"].is_null(), "{r}");
    }
    // An administrator gets past the permission (to the device, which is offline).
    let r = browse(&s, &admin, &press, None).await;
    assert_eq!(code(&r), "DEVICE_ERROR", "{r}");
}

#[tokio::test]
async fn a_device_of_another_protocol_is_bad_user_input() {
    let (s, _d) = acme().await;
    let admin = s.login("acme", "admin").await;
    let boiler = device_id(&s, &admin, "boiler").await;
    let r = browse(&s, &admin, &boiler, None).await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
    assert_eq!(
        message(&r),
        "device boiler is a sim device: browsing is an OPC UA feature"
    );
    let r = import(&s, &admin, &boiler, &["ns=2;s=A"]).await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
    assert_eq!(
        message(&r),
        "device boiler is a sim device: importing tags is an OPC UA feature"
    );
}

#[tokio::test]
async fn unknown_and_foreign_devices_are_not_found() {
    let (s, _d) = acme().await;
    let admin = s.login("acme", "admin").await;
    let globex = s.login("globex", "admin").await;
    let theirs = device_id(&s, &globex, "other-press").await;
    for device in ["999999", "not-an-id", theirs.as_str()] {
        let r = browse(&s, &admin, device, None).await;
        assert_eq!(code(&r), "NOT_FOUND", "{device}: {r}");
        assert_eq!(message(&r), "device not found", "{r}");
        let r = import(&s, &admin, device, &["ns=2;s=A"]).await;
        assert_eq!(code(&r), "NOT_FOUND", "{device}: {r}");
        assert_eq!(message(&r), "device not found", "{r}");
    }
}

#[tokio::test]
async fn node_ids_are_bounded_and_the_refusal_audited() {
    let (s, _d) = acme().await;
    let admin = s.login("acme", "admin").await;
    let press = device_id(&s, &admin, "press").await;
    let many: Vec<String> = (0..1001).map(|i| format!("ns=2;i={i}")).collect();
    let r = s
        .gql(Some(&admin), IMPORT, json!({"d": press, "n": many}))
        .await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
    assert!(message(&r).contains("at most 1000 node ids"), "{r}");
    let long = format!("ns=2;s={}", "x".repeat(5000));
    let r = import(&s, &admin, &press, &[long.as_str()]).await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
    let r = browse(&s, &admin, &press, Some(long.as_str())).await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
    let r = browse(&s, &admin, &press, Some("ns=two;s=A")).await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
    assert!(message(&r).starts_with("nodeId: "), "{r}");

    let log = s
        .data(
            &admin,
            "{auditLog(first: 50, filter: {action: \"Mutation.importOpcUaTags\"}){records{outcome reason resourceId resourceType}}}",
            json!({}),
        )
        .await;
    let records = log["auditLog"]["records"].as_array().expect("records");
    assert_eq!(records.len(), 2, "{log}");
    for r in records {
        assert_eq!(r["outcome"], "FAILED", "{r}");
        assert_eq!(r["reason"], "BAD_USER_INPUT", "{r}");
        assert_eq!(r["resourceId"], press.as_str(), "{r}");
        assert_eq!(r["resourceType"], "device", "{r}");
    }
}

#[tokio::test]
async fn a_device_that_is_not_connected_is_a_device_error() {
    let (s, _d) = acme().await;
    let admin = s.login("acme", "admin").await;
    let press = device_id(&s, &admin, "press").await;
    let r = browse(&s, &admin, &press, None).await;
    assert_eq!(code(&r), "DEVICE_ERROR", "{r}");
    assert_eq!(message(&r), "the device is not connected", "{r}");
    let r = browse(&s, &admin, &press, Some("nsu=urn:plant;s=Line1")).await;
    assert_eq!(code(&r), "DEVICE_ERROR", "{r}");
    let r = import(&s, &admin, &press, &["ns=2;s=A"]).await;
    assert_eq!(code(&r), "DEVICE_ERROR", "{r}");
    assert_eq!(message(&r), "the device is not connected", "{r}");
    // Nothing to import asks nothing of the device.
    let r = import(&s, &admin, &press, &[]).await;
    assert_eq!(
        r["data"]["importOpcUaTags"],
        json!({"created": [], "existing": [], "errors": []}),
        "{r}"
    );
}

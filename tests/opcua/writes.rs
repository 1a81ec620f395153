//! Writes: every writable type lands in the node as the node's own data type; a
//! value that does not fit the node, a read-only node and a wrong-typed value are
//! clear errors, not silent casts.

use opcua::types::Variant;
use serde_json::json;

use super::{device, error_code, node_tag, start, trusting};
use crate::common::opcua as peer;
use crate::common::server::eventually;

#[tokio::test]
async fn every_type_is_written_as_the_nodes_type() {
    let server = peer::test_server(|_| {}).await;
    let pki = trusting(&server);
    let cases = [
        ("Bool", "bool", json!(false), Variant::Boolean(false)),
        ("Byte", "u16", json!(17), Variant::Byte(17)),
        ("UInt16", "u16", json!(1234), Variant::UInt16(1234)),
        ("Int32", "i32", json!(-5), Variant::Int32(-5)),
        (
            "Int64",
            "i64",
            json!(9000000000i64),
            Variant::Int64(9_000_000_000),
        ),
        ("Float", "f32", json!(2.5), Variant::Float(2.5)),
        ("Double", "f64", json!(12.5), Variant::Double(12.5)),
        ("String", "string", json!("bye"), Variant::from("bye")),
    ];
    let mut tags: Vec<String> = cases
        .iter()
        .map(|(id, t, _, _)| node_tag(id, id, t, "writable = true"))
        .collect();
    tags.push(node_tag("read-only", "SByte", "i16", "writable = true"));
    tags.push(node_tag(
        "scaled",
        "Int32",
        "f64",
        "writable = true\nscale = 0.1",
    ));
    let site = start("ua-writes", &[device("plc", &server, &pki, "", &tags)]).await;
    site.wait_state("plc", "ONLINE").await;
    for (id, _, v, expect) in &cases {
        let r = site.write_as(&site.admin, id, v.clone()).await;
        assert!(r.get("errors").is_none(), "{id}: {r}");
        assert_eq!(
            server.value(id).and_then(|dv| dv.value),
            Some(expect.clone()),
            "{id} holds what was written"
        );
    }
    // Scaling is undone for the device: 2.5 at scale 0.1 is 25 in the node.
    let r = site.write_as(&site.admin, "scaled", json!(2.5)).await;
    assert!(r.get("errors").is_none(), "{r}");
    assert_eq!(
        server.value("Int32").and_then(|dv| dv.value),
        Some(Variant::Int32(25))
    );
    // The written value comes back through the subscription.
    eventually(super::WAIT, "the write is seen", || async {
        super::value(&site.latest().await, "Double") == json!(12.5)
    })
    .await;

    // Does not fit the node (a Byte), although it fits the tag (u16): refused.
    let r = site.write_as(&site.admin, "Byte", json!(300)).await;
    assert_eq!(error_code(&r), "BAD_USER_INPUT", "{r}");
    assert!(r.to_string().contains("out of range"), "{r}");
    assert_eq!(
        server.value("Byte").and_then(|dv| dv.value),
        Some(Variant::Byte(17))
    );
    // Not a whole number for an integer node.
    let r = site.write_as(&site.admin, "Int32", json!(1.5)).await;
    assert_eq!(error_code(&r), "BAD_USER_INPUT", "{r}");
    // Text into a number.
    let r = site.write_as(&site.admin, "Double", json!("high")).await;
    assert_eq!(error_code(&r), "BAD_USER_INPUT", "{r}");
    // The server refuses writes to a read-only node, and says so.
    let r = site.write_as(&site.admin, "read-only", json!(3)).await;
    assert_eq!(error_code(&r), "BAD_USER_INPUT", "{r}");
    assert!(r.to_string().contains("not writable"), "{r}");
    assert_eq!(
        server.value("SByte").and_then(|dv| dv.value),
        Some(Variant::SByte(-8))
    );
}

//! Browsing a real server's address space and importing tags from it: the Objects
//! folder, a folder's variables with their types and access, an import that creates
//! typed tags whose values then flow (and writes land), idempotent re-imports, and
//! nodes that cannot be imported listed with the reason.

use opcua::types::Variant;
use serde_json::{Value, json};

use super::{WAIT, device, node_tag, start, trusting, value};
use crate::common::opcua::{self as peer, FOLDER, NAMESPACE};
use crate::common::opcua_queries::{browse, device_id, import};
use crate::common::server::eventually;

fn nodes(r: &Value) -> Vec<Value> {
    r["data"]["browseOpcUa"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{r}"))
}

fn find<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|n| n["displayName"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list:?}"))
}

#[tokio::test]
async fn an_admin_browses_the_server_and_imports_tags() {
    let server = peer::test_server(|_| {}).await;
    let pki = trusting(&server);
    // The device starts with one configured tag; the rest comes from the import.
    let tags = [node_tag("configured", "Int32", "i32", "")];
    let site = start("ua-browse", &[device("plc", &server, &pki, "", &tags)]).await;
    site.wait_state("plc", "ONLINE").await;
    let d = device_id(&site.s, &site.admin, "plc").await;

    let root = nodes(&browse(&site.s, &site.admin, &d, None).await);
    let folder = find(&root, FOLDER);
    assert_eq!(folder["nodeClass"], "Object");
    assert_eq!(folder["hasChildren"], true);
    assert_eq!(folder["nodeId"], format!("nsu={NAMESPACE};s={FOLDER}"));
    assert!(
        root.iter().any(|n| n["displayName"] == "Server"),
        "{root:?}"
    );

    let children = nodes(&browse(&site.s, &site.admin, &d, folder["nodeId"].as_str()).await);
    let double = find(&children, "Double");
    assert_eq!(
        (
            &double["nodeClass"],
            &double["dataType"],
            &double["tagType"],
            &double["readable"],
            &double["writable"]
        ),
        (
            &json!("Variable"),
            &json!("Double"),
            &json!("f64"),
            &json!(true),
            &json!(true)
        ),
        "{double}"
    );
    let sbyte = find(&children, "SByte");
    assert_eq!(
        (&sbyte["tagType"], &sbyte["writable"]),
        (&json!("i16"), &json!(false))
    );
    assert_eq!(find(&children, "Bool")["tagType"], "bool");
    assert_eq!(find(&children, "String")["tagType"], "string");

    let wanted: Vec<&str> = ["Double", "SByte", "Bool"]
        .iter()
        .map(|n| find(&children, n)["nodeId"].as_str().expect("nodeId"))
        .collect();
    let mut asked = wanted.clone();
    // Not importable: a folder, and a node the server does not have.
    let missing = format!("nsu={NAMESPACE};s=Nowhere");
    asked.push(folder["nodeId"].as_str().expect("folder id"));
    asked.push(&missing);
    let r = import(&site.s, &site.admin, &d, &asked).await;
    let out = &r["data"]["importOpcUaTags"];
    let created = out["created"].as_array().unwrap_or_else(|| panic!("{r}"));
    assert_eq!(created.len(), 3, "{r}");
    let double_tag = created
        .iter()
        .find(|t| t["name"] == "Double")
        .expect("Double created");
    assert_eq!(
        (&double_tag["dataType"], &double_tag["writable"]),
        (&json!("f64"), &json!(true))
    );
    let errors = out["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{r}");
    assert!(
        errors.iter().any(|e| e["message"]
            .as_str()
            .unwrap_or("")
            .contains("not a variable")),
        "{r}"
    );
    assert!(errors.iter().any(|e| e["nodeId"] == missing), "{r}");

    // The imported tags read at once, and follow the server.
    eventually(WAIT, "imported tags read", || async {
        let l = site.latest().await;
        value(&l, "Double") == json!(42.25)
            && value(&l, "SByte") == json!(-8)
            && value(&l, "Bool") == json!(true)
    })
    .await;
    server.set_value("Double", Variant::Double(3.5));
    eventually(WAIT, "an imported tag follows the server", || async {
        value(&site.latest().await, "Double") == json!(3.5)
    })
    .await;
    let w = site.write_as(&site.admin, "Double", json!(8.25)).await;
    assert!(w.get("errors").is_none(), "{w}");
    assert_eq!(
        server.value("Double").and_then(|dv| dv.value),
        Some(Variant::Double(8.25))
    );

    // Importing again creates nothing and says what exists.
    let again = import(&site.s, &site.admin, &d, &wanted).await;
    let out = &again["data"]["importOpcUaTags"];
    assert_eq!(out["created"].as_array().map(Vec::len), Some(0), "{again}");
    assert_eq!(out["existing"].as_array().map(Vec::len), Some(3), "{again}");
    assert_eq!(
        site.ids().await.len(),
        4,
        "one configured and three imported tags"
    );
}

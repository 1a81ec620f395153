//! GraphQL documents of OPC UA browsing and import, shared by the API tests and the
//! tests against a real OPC UA server.

use serde_json::{Value, json};

use super::server::TestServer;

/// `$d`: the device id; `$n`: the node whose children to list (null: Objects).
pub const BROWSE: &str = "query($d:ID!,$n:String){browseOpcUa(deviceId:$d,nodeId:$n){nodeId browseName displayName nodeClass dataType tagType readable writable hasChildren}}";

/// `$d`: the device id; `$n`: the node ids to import.
pub const IMPORT: &str = "mutation($d:ID!,$n:[String!]!){importOpcUaTags(deviceId:$d,nodeIds:$n){created{id name address dataType writable} existing{id name address dataType writable} errors{nodeId message}}}";

/// The id of the device `name` of the caller's tenant.
pub async fn device_id(s: &TestServer, token: &str, name: &str) -> String {
    let d = s.data(token, "{devices{id name}}", json!({})).await;
    d["devices"]
        .as_array()
        .and_then(|list| list.iter().find(|x| x["name"] == name))
        .and_then(|x| x["id"].as_str())
        .unwrap_or_else(|| panic!("no device {name} in {d}"))
        .to_string()
}

/// The whole response of `browseOpcUa` (errors included).
pub async fn browse(s: &TestServer, token: &str, device: &str, node: Option<&str>) -> Value {
    s.gql(Some(token), BROWSE, json!({"d": device, "n": node}))
        .await
}

/// The whole response of `importOpcUaTags` (errors included).
pub async fn import(s: &TestServer, token: &str, device: &str, nodes: &[&str]) -> Value {
    s.gql(Some(token), IMPORT, json!({"d": device, "n": nodes}))
        .await
}

//! Security and tenancy, end to end over HTTP and WebSocket, in three parts: the
//! schema walks (permissions, audit coverage, the cross-tenant matrix), sessions
//! (tokens, brute force, WebSocket closes), and tenancy (quotas, limits, tenant
//! administration, production mode, retention). The fixtures are here.

mod common;
#[path = "security/schema_walk.rs"]
mod schema_walk;
#[path = "security/sessions.rs"]
mod sessions;
#[path = "security/tenancy.rs"]
mod tenancy;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::server::{self, PASSWORD, TestServer, WsClient, eventually};
use serde_json::{Value, json};
use thermacore::api::permissions::{Access, FIELDS, Permission, permissions, rule_of};
use thermacore::config::Config;
use thermacore::domain::Role;

const PLANT: &str = r#"
[[tenants]]
name = "alpha"
[[tenants.units]]
name = "a-unit"
[[tenants.devices]]
name = "a-plc"
unit = "a-unit"
poll_ms = 50
driver = { protocol = "sim", seed = 1 }
[[tenants.devices.tags]]
name = "a-temp"
address = "sine:period=10,amplitude=1,offset=20"
alarms = [{ name = "a-hot", type = "high", setpoint = 100 }]

[[tenants]]
name = "beta"
[[tenants.devices]]
name = "b-plc"
poll_ms = 50
driver = { protocol = "sim", seed = 2 }
[[tenants.devices.tags]]
name = "b-temp"
address = "sine:period=10,amplitude=1,offset=20"

[[tenants]]
name = "system"
"#;

const USERS: &[(&str, &str, Role)] = &[
    ("alpha", "admin", Role::Admin),
    ("alpha", "operator", Role::Operator),
    ("alpha", "viewer", Role::Viewer),
    ("beta", "admin", Role::Admin),
    ("system", "platform", Role::Admin),
];

async fn start_with(f: impl FnOnce(&mut Config)) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = server::config(PLANT, dir.path());
    f(&mut c);
    let s = server::start(c, USERS).await;
    s.wait_ready().await;
    (s, dir)
}

async fn start() -> (TestServer, tempfile::TempDir) {
    start_with(|_| {}).await
}

/// The error code of a subscription message (an `error` message, or a `next` whose
/// payload carries errors).
fn ws_code(m: &Value) -> String {
    let e = if m["payload"].is_array() {
        &m["payload"][0]
    } else {
        &m["payload"]["errors"][0]
    };
    e["extensions"]["code"].as_str().unwrap_or("").to_string()
}

/// The `id` of the element of `list` whose `key` is `value`.
fn id_where(list: &Value, key: &str, value: &str) -> String {
    list.as_array()
        .and_then(|items| items.iter().find(|x| x[key] == value))
        .and_then(|x| x["id"].as_str())
        .unwrap_or_else(|| panic!("no element with {key} = {value} in {list}"))
        .to_string()
}

fn code(r: &Value) -> String {
    r["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

async fn post_with_id(s: &TestServer, token: Option<&str>, query: &str, rid: &str) -> Value {
    let mut req = reqwest::Client::new()
        .post(s.url("/graphql"))
        .header("x-request-id", rid)
        .json(&json!({"query": query}));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("post").json().await.expect("json")
}

const LOGIN: &str = "mutation($t:String!,$u:String!,$p:String!){login(tenant:$t,username:$u,password:$p){accessToken refreshToken}}";
const REFRESH: &str = "mutation($r:String!){refresh(refreshToken:$r){accessToken refreshToken}}";

async fn login_pair(s: &TestServer, tenant: &str, user: &str, password: &str) -> (String, String) {
    let r = s
        .gql(None, LOGIN, json!({"t": tenant, "u": user, "p": password}))
        .await;
    let l = &r["data"]["login"];
    (
        l["accessToken"]
            .as_str()
            .unwrap_or_else(|| panic!("login: {r}"))
            .to_string(),
        l["refreshToken"]
            .as_str()
            .unwrap_or_else(|| panic!("login: {r}"))
            .to_string(),
    )
}

//! Security and tenancy, end to end over HTTP and WebSocket: the schema-wide permission
//! walk, the cross-tenant matrix, audit coverage, tokens, brute force, limits, quotas,
//! tenant administration and production mode.

mod common;

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
[[tenants.devices]]
name = "a-plc"
poll_ms = 50
driver = { protocol = "sim", seed = 1 }
[[tenants.devices.tags]]
name = "a-temp"
address = "sine:period=10,amplitude=1,offset=20"

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

const INTROSPECT: &str = r#"{
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types {
      name kind
      enumValues { name }
      fields { name args { name type { ...T } } type { ...T } }
      inputFields { name type { ...T } }
    }
  }
}
fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name } } } }"#;

/// A root field with what it takes and returns.
#[derive(Debug, Clone)]
struct RootField {
    parent: String,
    name: String,
    args: Vec<(String, Value)>,
    returns_object: bool,
}

struct SchemaInfo {
    fields: Vec<RootField>,
    types: HashMap<String, Value>,
}

fn named(t: &Value) -> (&str, &str) {
    let mut t = t;
    while t["ofType"].is_object() {
        t = &t["ofType"];
    }
    (
        t["kind"].as_str().unwrap_or(""),
        t["name"].as_str().unwrap_or(""),
    )
}

impl SchemaInfo {
    async fn read(s: &TestServer, token: &str) -> SchemaInfo {
        let d = s.data(token, INTROSPECT, json!({})).await;
        let types: HashMap<String, Value> = d["__schema"]["types"]
            .as_array()
            .expect("types")
            .iter()
            .map(|t| (t["name"].as_str().unwrap_or("").to_string(), t.clone()))
            .collect();
        let mut fields = Vec::new();
        for root in ["queryType", "mutationType", "subscriptionType"] {
            let parent = d["__schema"][root]["name"]
                .as_str()
                .expect("root")
                .to_string();
            for f in types[&parent]["fields"].as_array().expect("fields") {
                let (kind, _) = named(&f["type"]);
                fields.push(RootField {
                    parent: parent.clone(),
                    name: f["name"].as_str().expect("name").to_string(),
                    args: f["args"]
                        .as_array()
                        .expect("args")
                        .iter()
                        .map(|a| {
                            (
                                a["name"].as_str().unwrap_or("").to_string(),
                                a["type"].clone(),
                            )
                        })
                        .collect(),
                    returns_object: kind == "OBJECT",
                });
            }
        }
        SchemaInfo { fields, types }
    }

    /// A GraphQL literal of type `t` (only required arguments get one).
    fn dummy(&self, t: &Value) -> String {
        match t["kind"].as_str() {
            Some("NON_NULL") => self.dummy(&t["ofType"]),
            Some("LIST") => format!("[{}]", self.dummy(&t["ofType"])),
            Some("ENUM") => {
                let name = t["name"].as_str().unwrap_or("");
                self.types[name]["enumValues"][0]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            }
            Some("INPUT_OBJECT") => {
                let name = t["name"].as_str().unwrap_or("");
                let required: Vec<String> = self.types[name]["inputFields"]
                    .as_array()
                    .map(|fs| {
                        fs.iter()
                            .filter(|f| f["type"]["kind"] == "NON_NULL")
                            .map(|f| {
                                format!(
                                    "{}: {}",
                                    f["name"].as_str().unwrap_or(""),
                                    self.dummy(&f["type"])
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                format!("{{{}}}", required.join(", "))
            }
            _ => match t["name"].as_str() {
                Some("ID") => "\"999999\"".into(),
                Some("Int") => "1".into(),
                Some("Float") => "1.0".into(),
                Some("Boolean") => "false".into(),
                Some("DateTime") => "\"2020-01-01T00:00:00Z\"".into(),
                _ => "\"x\"".into(),
            },
        }
    }

    /// The operation calling `f` with dummy required arguments and, where given,
    /// `overrides` (GraphQL literals by argument name).
    fn operation(&self, f: &RootField, overrides: &BTreeMap<&str, String>) -> String {
        let args: Vec<String> = f
            .args
            .iter()
            .filter_map(|(name, t)| match overrides.get(name.as_str()) {
                Some(v) => Some(format!("{name}: {v}")),
                None if t["kind"] == "NON_NULL" => Some(format!("{name}: {}", self.dummy(t))),
                None => None,
            })
            .collect();
        let args = if args.is_empty() {
            String::new()
        } else {
            format!("({})", args.join(", "))
        };
        let selection = if f.returns_object {
            " { __typename }"
        } else {
            ""
        };
        let keyword = match f.parent.as_str() {
            "MutationRoot" => "mutation",
            "SubscriptionRoot" => "subscription",
            _ => "query",
        };
        format!("{keyword} {{ {}{args}{selection} }}", f.name)
    }
}

/// The schema's root type names are QueryRoot/…; the rules speak of Query/….
fn rule_parent(parent: &str) -> &str {
    parent.strip_suffix("Root").unwrap_or(parent)
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

#[tokio::test]
async fn every_root_field_has_a_rule_and_refuses_callers_without_it() {
    let (s, _dir) = start_with(|c| c.auth.login_failures_per_minute = 100).await;
    let platform = s.login("system", "platform").await;
    let schema = SchemaInfo::read(&s, &platform).await;

    // 1. Every field of the schema has a rule, and every rule names a real field.
    let mut in_schema = Vec::new();
    for f in &schema.fields {
        let key = format!("{}.{}", rule_parent(&f.parent), f.name);
        assert!(
            rule_of(rule_parent(&f.parent), &f.name).is_some(),
            "{key} has no access rule in api::permissions::FIELDS"
        );
        in_schema.push(key);
    }
    for r in FIELDS {
        assert!(
            in_schema.iter().any(|k| k == r.field),
            "rule for unknown field {}",
            r.field
        );
    }

    // 2. Each role gets FORBIDDEN on exactly the fields it lacks the permission of, and
    //    a caller without a token UNAUTHENTICATED on every non-public field.
    let tokens = [
        (Role::Viewer, s.login("alpha", "viewer").await),
        (Role::Operator, s.login("alpha", "operator").await),
        (Role::Admin, s.login("alpha", "admin").await),
    ];
    let mut checked = 0;
    for f in schema
        .fields
        .iter()
        .filter(|f| f.parent != "SubscriptionRoot")
    {
        let rule = rule_of(rule_parent(&f.parent), &f.name).expect("rule");
        if rule.access == Access::Public {
            continue; // login, refresh, logout carry their own credential
        }
        let op = schema.operation(f, &BTreeMap::new());
        for (role, token) in &tokens {
            let r = s.gql(Some(token), &op, json!({})).await;
            let allowed = match rule.access {
                Access::Public | Access::Authenticated => true,
                Access::Requires(p) => permissions(*role, false).contains(&p),
            };
            let c = code(&r);
            if allowed {
                assert!(
                    c != "FORBIDDEN" && c != "UNAUTHENTICATED",
                    "{role:?} must be allowed {}: {r}",
                    rule.field
                );
            } else {
                assert_eq!(c, "FORBIDDEN", "{role:?} on {}: {r}", rule.field);
                assert!(r["data"].is_null() || r["data"][&f.name].is_null(), "{r}");
            }
            checked += 1;
        }
        let anonymous = s.gql(None, &op, json!({})).await;
        if rule.access != Access::Public {
            assert_eq!(
                code(&anonymous),
                "UNAUTHENTICATED",
                "{}: {anonymous}",
                rule.field
            );
        }
    }
    assert!(checked >= 3 * 20, "only {checked} checks ran");

    // 3. Subscriptions: the rule applies when the stream starts.
    let ids = s.tag_ids(&tokens[0].1).await;
    let (mut ws, ack) = WsClient::connect(s.addr, &tokens[0].1).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    ws.subscribe(
        "1",
        "subscription($t:[ID!]){tagValues(tagIds:$t){tagId}}",
        json!({"t": [ids["a-temp"]]}),
    )
    .await;
    let first = ws.next(Duration::from_secs(5)).await;
    assert_eq!(first["type"], "next", "{first}");
}

#[tokio::test]
async fn every_mutation_leaves_exactly_one_audit_record() {
    let (s, _dir) = start().await;
    let platform = s.login("system", "platform").await;
    let viewer = s.login("alpha", "viewer").await;
    let schema = SchemaInfo::read(&s, &platform).await;
    let mutations: Vec<&RootField> = schema
        .fields
        .iter()
        .filter(|f| f.parent == "MutationRoot")
        .collect();
    assert!(mutations.len() >= 12);
    // The viewer calls every mutation (most are denied, some fail, some succeed).
    for f in &mutations {
        let op = schema.operation(f, &BTreeMap::new());
        post_with_id(&s, Some(&viewer), &op, &format!("audit-{}", f.name)).await;
    }
    // A successful one with secrets in its input.
    let admin = s.login("alpha", "admin").await;
    let created = s
        .gql(
            Some(&admin),
            r#"mutation { createUser(username: "newbie", password: "a-long-secret-pw", role: VIEWER) { id } }"#,
            json!({}),
        )
        .await;
    assert!(created["errors"].is_null(), "{created}");

    let page = s
        .data(
            &platform,
            "{auditLog(first: 500, allTenants: true){records{action outcome reason requestId summary username tenant resourceId}}}",
            json!({}),
        )
        .await;
    let records = page["auditLog"]["records"]
        .as_array()
        .expect("records")
        .clone();
    for f in &mutations {
        let rid = format!("audit-{}", f.name);
        let mine: Vec<&Value> = records.iter().filter(|r| r["requestId"] == rid).collect();
        assert_eq!(
            mine.len(),
            1,
            "{} left {} records: {mine:?}",
            f.name,
            mine.len()
        );
        assert_eq!(mine[0]["action"], format!("Mutation.{}", f.name));
    }
    // Denied for lack of permission, with the reason.
    let denied = records
        .iter()
        .find(|r| r["requestId"] == "audit-createTenant")
        .expect("createTenant record");
    assert_eq!(denied["outcome"], "DENIED", "{denied}");
    assert_eq!(denied["username"], "viewer");
    assert_eq!(denied["tenant"], "alpha");
    // Secrets never reach the log.
    for r in &records {
        let text = r.to_string();
        assert!(!text.contains("a-long-secret-pw"), "{text}");
    }
    let create = records
        .iter()
        .find(|r| r["action"] == "Mutation.createUser" && r["outcome"] == "SUCCESS")
        .expect("createUser success");
    assert!(
        create["summary"].as_str().unwrap_or("").contains("***"),
        "{create}"
    );
    assert!(create["resourceId"].is_string(), "{create}");
    // Only platform admins read across tenants; a tenant admin sees only its own.
    let own = s
        .data(
            &admin,
            "{auditLog(first: 500, allTenants: true){records{tenant}}}",
            json!({}),
        )
        .await;
    for r in own["auditLog"]["records"].as_array().expect("records") {
        assert_eq!(r["tenant"], "alpha", "{r}");
    }
}

#[tokio::test]
async fn ids_of_another_tenant_are_not_found() {
    let (s, _dir) = start().await;
    let platform = s.login("system", "platform").await;
    let alpha = s.login("alpha", "admin").await;
    let beta = s.login("beta", "admin").await;
    let schema = SchemaInfo::read(&s, &platform).await;

    // Alpha's objects, by kind.
    let d = s
        .data(
            &alpha,
            "{devices{id} tags{id} users{id username} tenantUsage{tenant}}",
            json!({}),
        )
        .await;
    let device = d["devices"][0]["id"].as_str().expect("device").to_string();
    let tag = d["tags"][0]["id"].as_str().expect("tag").to_string();
    let user = id_where(&d["users"], "username", "viewer");
    let tenants = s.data(&platform, "{tenants{id name}}", json!({})).await;
    let alpha_tenant = id_where(&tenants["tenants"], "name", "alpha");

    // Which kind of object each id argument names. A new field taking an id fails
    // this test until it is added here.
    let kinds: HashMap<&str, (&str, &str)> = HashMap::from([
        ("Query.device", ("id", "device")),
        ("Query.tags", ("deviceId", "device")),
        ("Query.latest", ("tagIds", "tags")),
        ("Query.history", ("tagIds", "tags")),
        ("Query.tenantUsage", ("tenantId", "tenant")),
        ("Mutation.updateUser", ("id", "user")),
        ("Mutation.resetPassword", ("id", "user")),
        ("Mutation.deleteUser", ("id", "user")),
        ("Mutation.setTenantDisabled", ("id", "tenant")),
        ("Mutation.setTenantQuotas", ("id", "tenant")),
        ("Mutation.deleteTenant", ("id", "tenant")),
        ("Subscription.tagValues", ("tagIds", "tags")),
    ]);
    let literal = |kind: &str| match kind {
        "device" => format!("\"{device}\""),
        "tags" => format!("[\"{tag}\"]"),
        "user" => format!("\"{user}\""),
        _ => format!("\"{alpha_tenant}\""),
    };
    for f in &schema.fields {
        let key = format!("{}.{}", rule_parent(&f.parent), f.name);
        let takes_id = f.args.iter().any(|(_, t)| named(t).1 == "ID");
        let Some((arg, kind)) = kinds.get(key.as_str()) else {
            assert!(
                !takes_id,
                "{key} takes an id: add it to the cross-tenant matrix"
            );
            continue;
        };
        let mut args = BTreeMap::new();
        args.insert(*arg, literal(kind));
        if key == "Subscription.tagValues" {
            let (mut ws, ack) = WsClient::connect(s.addr, &beta).await;
            assert_eq!(ack["type"], "connection_ack");
            ws.subscribe(
                "1",
                &format!("subscription {{ tagValues(tagIds: [\"{tag}\"]) {{ tagId }} }}"),
                json!({}),
            )
            .await;
            let m = ws.next(Duration::from_secs(5)).await;
            assert_eq!(ws_code(&m), "NOT_FOUND", "{m}");
            assert!(m["payload"]["data"].is_null(), "{m}");
            continue;
        }
        let op = schema.operation(f, &args);
        let r = s.gql(Some(&beta), &op, json!({})).await;
        let rule = rule_of(rule_parent(&f.parent), &f.name).expect("rule");
        if rule.access == Access::Requires(Permission::ManageTenants) {
            // Platform-only: refused the same way whether or not the id exists.
            let other = s
                .gql(
                    Some(&beta),
                    &schema.operation(f, &BTreeMap::from([(*arg, "\"424242\"".to_string())])),
                    json!({}),
                )
                .await;
            assert_eq!(code(&r), "FORBIDDEN", "{key}: {r}");
            assert_eq!(code(&other), "FORBIDDEN", "{key}: {other}");
            continue;
        }
        assert_eq!(code(&r), "NOT_FOUND", "{key} with alpha's {kind}: {r}");
        assert!(
            r["data"].is_null() || r["data"][&f.name].is_null(),
            "{key} leaked: {r}"
        );
    }
    // Alpha's objects are untouched.
    let after = s.data(&alpha, "{users{username}}", json!({})).await;
    assert!(
        after["users"]
            .as_array()
            .expect("users")
            .iter()
            .any(|u| u["username"] == "viewer")
    );
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

#[tokio::test]
async fn refresh_tokens_rotate_and_a_replay_revokes_the_session() {
    let (s, _dir) = start().await;
    let (access, refresh) = login_pair(&s, "alpha", "operator", PASSWORD).await;
    // Rotation: the new pair works, the old refresh token is spent.
    let r = s.gql(None, REFRESH, json!({"r": refresh})).await;
    let access2 = r["data"]["refresh"]["accessToken"]
        .as_str()
        .expect("access")
        .to_string();
    let refresh2 = r["data"]["refresh"]["refreshToken"]
        .as_str()
        .expect("refresh")
        .to_string();
    assert_ne!(refresh2, refresh);
    s.data(&access2, "{me{username}}", json!({})).await;
    // Replaying the spent token: refused, and the whole session is revoked.
    let replay = s.gql(None, REFRESH, json!({"r": refresh})).await;
    assert_eq!(code(&replay), "UNAUTHENTICATED", "{replay}");
    for t in [&access, &access2] {
        let r = s.gql(Some(t), "{me{username}}", json!({})).await;
        assert_eq!(code(&r), "UNAUTHENTICATED", "{r}");
    }
    let r = s.gql(None, REFRESH, json!({"r": refresh2})).await;
    assert_eq!(
        code(&r),
        "UNAUTHENTICATED",
        "the newest token of the family is revoked too: {r}"
    );
    // Another login of the same user is a separate session and unaffected.
    let (other, other_refresh) = login_pair(&s, "alpha", "operator", PASSWORD).await;
    s.data(&other, "{me{username}}", json!({})).await;
    // Logout ends that session.
    let out = s
        .data(
            &other,
            "mutation($r:String!){logout(refreshToken:$r)}",
            json!({"r": other_refresh}),
        )
        .await;
    assert_eq!(out["logout"], true);
    let r = s.gql(Some(&other), "{me{username}}", json!({})).await;
    assert_eq!(code(&r), "UNAUTHENTICATED", "{r}");
    // The audit log has the replay.
    let admin = s.login("alpha", "admin").await;
    let log = s
        .data(
            &admin,
            r#"{auditLog(filter:{action:"Mutation.refresh", outcome: DENIED}){records{reason}}}"#,
            json!({}),
        )
        .await;
    let reasons = log["auditLog"]["records"].to_string();
    assert!(reasons.contains("refresh_token_reuse"), "{reasons}");
}

#[tokio::test]
async fn disabled_deleted_and_demoted_users_lose_their_tokens_at_once() {
    let (s, _dir) = start().await;
    let admin = s.login("alpha", "admin").await;
    let viewer = s.login("alpha", "viewer").await;
    let operator = s.login("alpha", "operator").await;
    let users = s.data(&admin, "{users{id username}}", json!({})).await;
    let id_of = |name: &str| {
        users["users"]
            .as_array()
            .expect("users")
            .iter()
            .find(|u| u["username"] == name)
            .and_then(|u| u["id"].as_str())
            .expect("id")
            .to_string()
    };
    // Disable: the very next request is refused.
    s.data(
        &admin,
        "mutation($id:ID!){updateUser(id:$id, disabled:true){disabled}}",
        json!({"id": id_of("viewer")}),
    )
    .await;
    let r = s.gql(Some(&viewer), "{me{username}}", json!({})).await;
    assert_eq!(code(&r), "UNAUTHENTICATED", "{r}");
    let r = s
        .gql(
            None,
            LOGIN,
            json!({"t": "alpha", "u": "viewer", "p": PASSWORD}),
        )
        .await;
    assert_eq!(code(&r), "UNAUTHENTICATED", "{r}");
    // Demote: the old token (with the old role) stops; a new login has the new role.
    s.data(
        &admin,
        "mutation($id:ID!){updateUser(id:$id, role:VIEWER){role}}",
        json!({"id": id_of("operator")}),
    )
    .await;
    let r = s.gql(Some(&operator), "{me{role}}", json!({})).await;
    assert_eq!(code(&r), "UNAUTHENTICATED", "{r}");
    let fresh = s.login("alpha", "operator").await;
    assert_eq!(
        s.data(&fresh, "{me{role}}", json!({})).await["me"]["role"],
        "VIEWER"
    );
    // Delete: the token stops.
    s.data(
        &admin,
        "mutation($id:ID!){deleteUser(id:$id)}",
        json!({"id": id_of("operator")}),
    )
    .await;
    let r = s.gql(Some(&fresh), "{me{role}}", json!({})).await;
    assert_eq!(code(&r), "UNAUTHENTICATED", "{r}");
    // An admin cannot lock themselves out.
    let me = s.data(&admin, "{me{id}}", json!({})).await;
    let r = s
        .gql(
            Some(&admin),
            "mutation($id:ID!){deleteUser(id:$id)}",
            json!({"id": me["me"]["id"]}),
        )
        .await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
}

#[tokio::test]
async fn changing_the_password_ends_every_other_session() {
    let (s, _dir) = start().await;
    let (a, _) = login_pair(&s, "alpha", "viewer", PASSWORD).await;
    let (b, b_refresh) = login_pair(&s, "alpha", "viewer", PASSWORD).await;
    let short = s
        .gql(Some(&a), "mutation{changePassword(currentPassword:\"correct horse battery\", newPassword:\"short\"){accessToken}}", json!({}))
        .await;
    assert_eq!(code(&short), "BAD_USER_INPUT", "{short}");
    let wrong = s
        .gql(Some(&a), "mutation{changePassword(currentPassword:\"nope\", newPassword:\"a brand new password\"){accessToken}}", json!({}))
        .await;
    assert_eq!(code(&wrong), "BAD_USER_INPUT", "{wrong}");
    let ok = s
        .data(&a, "mutation($c:String!){changePassword(currentPassword:$c, newPassword:\"a brand new password\"){accessToken}}", json!({"c": PASSWORD}))
        .await;
    let new_token = ok["changePassword"]["accessToken"].as_str().expect("token");
    s.data(new_token, "{me{username}}", json!({})).await;
    for t in [&a, &b] {
        assert_eq!(
            code(&s.gql(Some(t), "{me{username}}", json!({})).await),
            "UNAUTHENTICATED"
        );
    }
    assert_eq!(
        code(&s.gql(None, REFRESH, json!({"r": b_refresh})).await),
        "UNAUTHENTICATED"
    );
    login_pair(&s, "alpha", "viewer", "a brand new password").await;
}

#[tokio::test]
async fn bad_tokens_are_refused_and_tampered_ones_audited() {
    use base64::Engine;
    let (s, _dir) = start().await;
    let viewer = s.login("alpha", "viewer").await;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = viewer.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&b64.decode(parts[1]).expect("b64")).expect("json");
    // Tampered: role raised, signature kept.
    claims["role"] = json!("admin");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    // alg none.
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(claims.to_string())
    );
    // Signed with the right secret, but expired, not yet valid, for another audience,
    // or with another algorithm than the pinned HS256.
    let now = chrono::Utc::now().timestamp();
    let forge = |alg: jsonwebtoken::Algorithm, change: &dyn Fn(&mut Value)| {
        let mut c =
            serde_json::from_slice::<Value>(&b64.decode(parts[1]).expect("b64")).expect("json");
        change(&mut c);
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(alg),
            &c,
            &jsonwebtoken::EncodingKey::from_secret(server::SECRET.as_bytes()),
        )
        .expect("encode")
    };
    use jsonwebtoken::Algorithm::{HS256, HS512};
    let expired = forge(HS256, &|c| {
        c["exp"] = json!(now - 60);
        c["nbf"] = json!(now - 120);
    });
    let early = forge(HS256, &|c| c["nbf"] = json!(now + 60));
    let audience = forge(HS256, &|c| c["aud"] = json!("elsewhere"));
    let hs512 = forge(HS512, &|_| {});
    let r = s.gql(Some(&expired), "{devices{id}}", json!({})).await;
    assert_eq!(code(&r), "UNAUTHENTICATED", "expired: {r}");
    for (what, token) in [
        ("tampered", tampered.as_str()),
        ("alg none", none.as_str()),
        ("garbage", "abc.def.ghi"),
        ("not yet valid", early.as_str()),
        ("wrong audience", audience.as_str()),
        ("HS512", hs512.as_str()),
    ] {
        let r = post_with_id(&s, Some(token), "{devices{id}}", &format!("bad-{what}")).await;
        assert_eq!(code(&r), "UNAUTHENTICATED", "{what}: {r}");
        assert!(r["data"].is_null() || r["data"]["devices"].is_null(), "{r}");
        let msg = r["errors"][0]["message"].as_str().unwrap_or("");
        assert_eq!(msg, "authentication required", "no detail leaks: {r}");
        assert_eq!(
            r["errors"][0]["extensions"]["requestId"],
            format!("bad-{what}")
        );
    }
    let platform = s.login("system", "platform").await;
    let log = s
        .data(&platform, r#"{auditLog(first: 100, allTenants: true, filter:{outcome: DENIED}){records{requestId reason action}}}"#, json!({}))
        .await;
    let text = log.to_string();
    for what in [
        "tampered",
        "alg none",
        "not yet valid",
        "wrong audience",
        "HS512",
    ] {
        assert!(text.contains(&format!("bad-{what}")), "{what}: {text}");
    }
}

#[tokio::test]
async fn repeated_failed_logins_lock_the_account_out_with_growing_delays() {
    let (s, _dir) = start_with(|c| {
        c.auth.lockout_initial_ms = 1_500;
        c.auth.lockout_max_secs = 60;
        c.api.anonymous_requests_per_sec = 1_000;
    })
    .await;
    let mut codes = Vec::new();
    let mut retry = None;
    for _ in 0..50 {
        let r = s
            .gql(
                None,
                LOGIN,
                json!({"t": "alpha", "u": "admin", "p": "wrong"}),
            )
            .await;
        let c = code(&r);
        if c == "RATE_LIMITED" {
            retry = r["errors"][0]["extensions"]["retryAfterMs"].as_u64();
        }
        codes.push(c);
    }
    assert!(
        codes[..5].iter().all(|c| c == "UNAUTHENTICATED"),
        "{codes:?}"
    );
    assert!(codes[5..].iter().all(|c| c == "RATE_LIMITED"), "{codes:?}");
    let retry = retry.expect("a retry hint");
    assert!(retry > 0 && retry <= 1_500, "{retry}");
    // Even the right password is refused while locked.
    let r = s
        .gql(
            None,
            LOGIN,
            json!({"t": "alpha", "u": "admin", "p": PASSWORD}),
        )
        .await;
    assert_eq!(code(&r), "RATE_LIMITED", "{r}");
    assert!(s.metric_sum("thermacore_login_lockouts_total", "").await >= 1.0);
    assert!(
        s.metric_sum("thermacore_rate_limited_total", "limit=\"login\"")
            .await
            >= 45.0
    );
    // After the lockout, the right password works; the lockout is in the audit log.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let admin = s.login("alpha", "admin").await;
    let log = s
        .data(
            &admin,
            r#"{auditLog(first: 100, filter:{action:"Mutation.login"}){records{outcome reason}}}"#,
            json!({}),
        )
        .await;
    let text = log.to_string();
    assert!(text.contains("lockout_started"), "{text}");
    assert!(text.contains("locked_out"), "{text}");
}

#[tokio::test]
async fn query_shape_limits_refuse_abuse() {
    let (s, _dir) = start().await;
    let viewer = s.login("alpha", "viewer").await;
    // Depth 50 (introspection types nest without end).
    let deep = format!(
        "{{__schema{{types{{fields{{type{{{}name{}}}}}}}}}}}",
        "ofType{".repeat(46),
        "}".repeat(46)
    );
    let r = s.gql(Some(&viewer), &deep, json!({})).await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("deep"),
        "{r}"
    );
    assert!(r["data"].is_null(), "{r}");
    // 1,000 aliases.
    let aliases: String = (0..1000).map(|i| format!("a{i}: me {{ id }} ")).collect();
    let r = s
        .gql(Some(&viewer), &format!("{{{aliases}}}"), json!({}))
        .await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("aliases"),
        "{r}"
    );
}

#[tokio::test]
async fn introspection_is_off_in_production_unless_enabled() {
    let (s, _dir) = start_with(|c| c.mode = thermacore::config::RunMode::Production).await;
    let viewer = s.login("alpha", "viewer").await;
    let r = s
        .gql(Some(&viewer), "{__schema{queryType{name}}}", json!({}))
        .await;
    assert!(r["data"]["__schema"].is_null(), "{r}");
    assert_eq!(s.get("/graphql").await.status(), 404);
    s.data(&viewer, "{me{username}}", json!({})).await;
}

#[tokio::test]
async fn quotas_limit_subscriptions_and_request_rates() {
    let (s, _dir) = start_with(|c| c.quotas.max_subscriptions_per_user = 1).await;
    let viewer = s.login("alpha", "viewer").await;
    let ids = s.tag_ids(&viewer).await;
    let sub = "subscription($t:[ID!]){tagValues(tagIds:$t){tagId}}";
    let (mut ws, _) = WsClient::connect(s.addr, &viewer).await;
    ws.subscribe("1", sub, json!({"t": [ids["a-temp"]]})).await;
    assert_eq!(ws.next(Duration::from_secs(5)).await["type"], "next");
    ws.subscribe("2", sub, json!({"t": [ids["a-temp"]]})).await;
    let refused = loop {
        let m = ws.next(Duration::from_secs(5)).await;
        if m["id"] == "2" {
            break m;
        }
    };
    assert_eq!(ws_code(&refused), "QUOTA_EXCEEDED", "{refused}");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["limit"],
        "max_subscriptions_per_user"
    );
    // Usage shows the open subscription.
    let usage = s
        .data(
            &viewer,
            "{tenantUsage{devices tags subscriptions quotas{maxSubscriptionsPerUser}}}",
            json!({}),
        )
        .await;
    assert_eq!(usage["tenantUsage"]["subscriptions"], 1, "{usage}");
    assert_eq!(usage["tenantUsage"]["devices"], 1);
    // Closing the first frees the slot.
    ws.send(json!({"id": "1", "type": "complete"})).await;
    eventually(Duration::from_secs(5), "slot freed", || async {
        s.data(&viewer, "{tenantUsage{subscriptions}}", json!({}))
            .await["tenantUsage"]["subscriptions"]
            == 0
    })
    .await;
    // The tenant's request rate: a burst past 5/s is refused with a hint.
    let platform = s.login("system", "platform").await;
    let tenants = s.data(&platform, "{tenants{id name}}", json!({})).await;
    let alpha = id_where(&tenants["tenants"], "name", "alpha");
    s.data(
        &platform,
        "mutation($id:ID!){setTenantQuotas(id:$id, quotas:{maxRequestsPerSec: 5}){id}}",
        json!({"id": alpha}),
    )
    .await;
    let mut limited = None;
    for _ in 0..30 {
        let r = s.gql(Some(&viewer), "{me{username}}", json!({})).await;
        if code(&r) == "RATE_LIMITED" {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("rate limited within 30 requests");
    assert!(
        r["errors"][0]["extensions"]["retryAfterMs"]
            .as_u64()
            .is_some(),
        "{r}"
    );
    assert!(
        s.metric_sum("thermacore_rate_limited_total", "limit=\"tenant\"")
            .await
            >= 1.0
    );
    assert!(
        s.metric_sum("thermacore_tenant_quota", "limit=\"max_requests_per_sec\"")
            .await
            >= 5.0
    );
}

#[tokio::test]
async fn a_configuration_beyond_its_quotas_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plant = format!("{PLANT}\n").replace(
        "name = \"alpha\"\n",
        "name = \"alpha\"\nquotas = { max_devices = 1, min_poll_ms = 100 }\n",
    );
    let c = server::config(&plant, dir.path());
    let store = thermacore::storage::connect(&c.storage.url, 2)
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    let err = thermacore::app::apply_config(store.as_ref(), &c)
        .await
        .expect_err("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("QUOTA_EXCEEDED") && msg.contains("min_poll_ms") && msg.contains("a-plc"),
        "{msg}"
    );
    // The server refuses to start with it, saying why.
    let s = server::start_unprepared(c).await;
    let ended = tokio::time::timeout(Duration::from_secs(20), s.handle.expect("handle"))
        .await
        .expect("stops")
        .expect("task");
    let msg = ended.expect_err("start refused").to_string();
    assert!(msg.contains("QUOTA_EXCEEDED"), "{msg}");
}

#[tokio::test]
async fn platform_admins_create_disable_and_delete_tenants() {
    let (s, _dir) = start().await;
    let platform = s.login("system", "platform").await;
    let r = s
        .data(
            &platform,
            r#"mutation { createTenant(name: "gamma", adminUsername: "boss", adminPassword: "gamma-admin-password", quotas: {maxDevices: 3}) { id name quotas { maxDevices maxTags } } }"#,
            json!({}),
        )
        .await;
    let id = r["createTenant"]["id"].as_str().expect("id").to_string();
    assert_eq!(r["createTenant"]["quotas"]["maxDevices"], 3);
    let (boss, _) = login_pair(&s, "gamma", "boss", "gamma-admin-password").await;
    assert_eq!(
        s.data(&boss, "{devices{id}}", json!({})).await["devices"],
        json!([])
    );
    assert_eq!(
        s.data(&boss, "{tenantUsage{tenant quotas{maxDevices}}}", json!({}))
            .await["tenantUsage"]["quotas"]["maxDevices"],
        3
    );
    // Duplicate name.
    let dup = s
        .gql(Some(&platform), r#"mutation { createTenant(name: "gamma", adminUsername: "x", adminPassword: "another-password-1") { id } }"#, json!({}))
        .await;
    assert_eq!(code(&dup), "BAD_USER_INPUT", "{dup}");
    // Disable: the tenant's tokens and logins stop.
    s.data(
        &platform,
        "mutation($id:ID!){setTenantDisabled(id:$id, disabled:true){disabled}}",
        json!({"id": id}),
    )
    .await;
    assert_eq!(
        code(&s.gql(Some(&boss), "{devices{id}}", json!({})).await),
        "UNAUTHENTICATED"
    );
    let r = s
        .gql(
            None,
            LOGIN,
            json!({"t": "gamma", "u": "boss", "p": "gamma-admin-password"}),
        )
        .await;
    assert_eq!(code(&r), "UNAUTHENTICATED", "{r}");
    s.data(
        &platform,
        "mutation($id:ID!){setTenantDisabled(id:$id, disabled:false){disabled}}",
        json!({"id": id}),
    )
    .await;
    let (boss, _) = login_pair(&s, "gamma", "boss", "gamma-admin-password").await;
    s.data(&boss, "{devices{id}}", json!({})).await;
    // Quotas change.
    let q = s.data(&platform, "mutation($id:ID!){setTenantQuotas(id:$id, quotas:{maxTags: 7}){quotas{maxDevices maxTags}}}", json!({"id": id})).await;
    assert_eq!(
        q["setTenantQuotas"]["quotas"],
        json!({"maxDevices": 3, "maxTags": 7})
    );
    // The platform tenant is protected.
    let sys = s.data(&platform, "{tenants{id name}}", json!({})).await;
    let sys_id = id_where(&sys["tenants"], "name", "system");
    let r = s
        .gql(
            Some(&platform),
            "mutation($id:ID!){deleteTenant(id:$id)}",
            json!({"id": sys_id}),
        )
        .await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
    // Delete.
    assert_eq!(
        s.data(
            &platform,
            "mutation($id:ID!){deleteTenant(id:$id)}",
            json!({"id": id})
        )
        .await["deleteTenant"],
        true
    );
    assert_eq!(
        code(&s.gql(Some(&boss), "{devices{id}}", json!({})).await),
        "UNAUTHENTICATED"
    );
    let names = s
        .data(&platform, "{tenants{name}}", json!({}))
        .await
        .to_string();
    assert!(!names.contains("gamma"), "{names}");
    // Tenant admins cannot do any of it.
    let alpha = s.login("alpha", "admin").await;
    let r = s.gql(Some(&alpha), "{tenants{name}}", json!({})).await;
    assert_eq!(code(&r), "FORBIDDEN");
}

#[tokio::test]
async fn a_websocket_closes_with_4403_when_its_token_expires_or_is_revoked() {
    let (s, _dir) = start_with(|c| c.auth.access_token_ttl_secs = 2).await;
    let viewer = s.login("alpha", "viewer").await;
    let ids = s.tag_ids(&viewer).await;
    let (mut ws, ack) = WsClient::connect(s.addr, &viewer).await;
    assert_eq!(ack["type"], "connection_ack");
    ws.subscribe(
        "1",
        "subscription($t:[ID!]){tagValues(tagIds:$t){tagId}}",
        json!({"t": [ids["a-temp"]]}),
    )
    .await;
    let closed = loop {
        let m = ws.next(Duration::from_secs(6)).await;
        if m["type"] == "closed" || m["type"] == "timeout" {
            break m;
        }
    };
    assert_eq!(closed["code"], 4403, "{closed}");

    // Revocation: disabling the user closes their socket within about a second.
    let (s2, _dir2) = start().await;
    let admin = s2.login("alpha", "admin").await;
    let op = s2.login("alpha", "operator").await;
    let ids = s2.tag_ids(&op).await;
    let (mut ws, _) = WsClient::connect(s2.addr, &op).await;
    ws.subscribe(
        "1",
        "subscription($t:[ID!]){tagValues(tagIds:$t){tagId}}",
        json!({"t": [ids["a-temp"]]}),
    )
    .await;
    assert_eq!(ws.next(Duration::from_secs(5)).await["type"], "next");
    let users = s2.data(&admin, "{users{id username}}", json!({})).await;
    let id = id_where(&users["users"], "username", "operator");
    s2.data(
        &admin,
        "mutation($id:ID!){updateUser(id:$id, disabled:true){id}}",
        json!({"id": id}),
    )
    .await;
    let closed = loop {
        let m = ws.next(Duration::from_secs(5)).await;
        if m["type"] == "closed" || m["type"] == "timeout" {
            break m;
        }
    };
    assert_eq!(closed["code"], 4403, "{closed}");
}

#[tokio::test]
async fn production_mode_refuses_demo_credentials_and_weak_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = server::config(PLANT, dir.path());
    c.mode = thermacore::config::RunMode::Production;
    let store = thermacore::storage::connect(&c.storage.url, 2)
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    thermacore::demo::seed_users(store.as_ref(), "alpha", Some("demo-password-1"))
        .await
        .expect("seed");
    let s = server::start_unprepared(c.clone()).await;
    let ended = tokio::time::timeout(Duration::from_secs(20), s.handle.expect("handle"))
        .await
        .expect("stops")
        .expect("task");
    let msg = ended.expect_err("refused").to_string();
    assert!(
        msg.contains("development credentials") && msg.contains("alpha/admin"),
        "{msg}"
    );
    // An 8-byte secret.
    let mut weak = c;
    weak.auth.jwt_secret = Some("12345678".into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let err = thermacore::app::run(weak, listener, async {})
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("32"), "{err}");
}

#[tokio::test]
async fn history_older_than_the_retention_is_deleted() {
    use thermacore::domain::{Quality, Sample, TagId, Timestamp, Value as V};
    use thermacore::storage::StoredSample;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = server::config(PLANT, dir.path());
    c.quotas.history_retention_days = 30;
    let store = thermacore::storage::connect(&c.storage.url, 2)
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    thermacore::app::apply_config(store.as_ref(), &c)
        .await
        .expect("apply");
    let alpha = store
        .tenant_by_name("alpha")
        .await
        .expect("q")
        .expect("alpha");
    let day = 86_400_000_000i64;
    let now = Timestamp::now().0;
    let sample = |age_days: i64| StoredSample {
        tenant: alpha.id,
        sample: Sample {
            tag: TagId(999_999),
            value: V::F64(1.0),
            quality: Quality::Good,
            source_time: Timestamp(now - age_days * day),
            server_time: Timestamp(now - age_days * day),
        },
    };
    store
        .insert_samples(&[sample(40), sample(31), sample(29), sample(1)])
        .await
        .expect("insert");
    let s = server::start_unprepared(c).await;
    s.wait_ready().await;
    eventually(Duration::from_secs(10), "old samples deleted", || async {
        store
            .history(
                alpha.id,
                &[TagId(999_999)],
                Timestamp(0),
                Timestamp(now - 30 * day),
                10,
            )
            .await
            .map(|h| h.is_empty())
            .unwrap_or(false)
    })
    .await;
    let kept = store
        .history(
            alpha.id,
            &[TagId(999_999)],
            Timestamp(now - 30 * day),
            Timestamp(now),
            10,
        )
        .await
        .expect("history");
    assert_eq!(kept.len(), 2, "{kept:?}");
    s.stop().await.expect("stops");
}

#[tokio::test]
async fn a_connection_holds_at_most_its_subscriptions() {
    let (s, _dir) = start_with(|c| c.api.max_subscriptions_per_connection = 2).await;
    let viewer = s.login("alpha", "viewer").await;
    let ids = s.tag_ids(&viewer).await;
    let (mut ws, _) = WsClient::connect(s.addr, &viewer).await;
    let sub = "subscription($t:[ID!]){tagValues(tagIds:$t){tagId}}";
    for id in ["1", "2", "3"] {
        ws.subscribe(id, sub, json!({"t": [ids["a-temp"]]})).await;
    }
    // Streams start in no set order: exactly one of the three is refused.
    let mut first: HashMap<String, Value> = HashMap::new();
    while first.len() < 3 {
        let m = ws.next(Duration::from_secs(5)).await;
        assert_ne!(m["type"], "timeout", "{first:?}");
        if let Some(id) = m["id"].as_str() {
            first.entry(id.to_string()).or_insert(m);
        }
    }
    let refused: Vec<&Value> = first
        .values()
        .filter(|m| ws_code(m) == "QUOTA_EXCEEDED")
        .collect();
    assert_eq!(refused.len(), 1, "{first:?}");
    assert_eq!(
        refused[0]["payload"]["errors"][0]["extensions"]["limit"],
        "max_subscriptions_per_connection"
    );
    // A second connection of the same user has its own allowance.
    let (mut other, _) = WsClient::connect(s.addr, &viewer).await;
    other
        .subscribe("1", sub, json!({"t": [ids["a-temp"]]}))
        .await;
    assert_eq!(other.next(Duration::from_secs(5)).await["type"], "next");
}

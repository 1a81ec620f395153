//! The schema walks: every root field's rule, audit coverage, the cross-tenant matrix.

use super::*;

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

#[tokio::test]
async fn every_root_field_has_a_rule_and_refuses_callers_without_it() {
    // A request per field and caller, without a token too: more than the default rate
    // limits allow (those are tested on their own).
    let (s, _dir) = start_with(|c| {
        c.auth.login_failures_per_minute = 100;
        c.api.anonymous_requests_per_sec = 10_000;
        c.api.user_requests_per_sec = 10_000;
    })
    .await;
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
            "{devices{id} tags{id} users{id username} tenantUsage{tenant} units{id} \
             alarms(state: [NORMAL]){alarms{id}}}",
            json!({}),
        )
        .await;
    let device = d["devices"][0]["id"].as_str().expect("device").to_string();
    let tag = d["tags"][0]["id"].as_str().expect("tag").to_string();
    let user = id_where(&d["users"], "username", "viewer");
    let unit = d["units"][0]["id"].as_str().expect("unit").to_string();
    let alarm = d["alarms"]["alarms"][0]["id"]
        .as_str()
        .expect("alarm")
        .to_string();
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
        ("Query.browseOpcUa", ("deviceId", "device")),
        ("Mutation.updateUser", ("id", "user")),
        ("Mutation.resetPassword", ("id", "user")),
        ("Mutation.deleteUser", ("id", "user")),
        ("Mutation.setTenantDisabled", ("id", "tenant")),
        ("Mutation.setTenantQuotas", ("id", "tenant")),
        ("Mutation.deleteTenant", ("id", "tenant")),
        ("Mutation.writeTag", ("tagId", "tag")),
        ("Mutation.importOpcUaTags", ("deviceId", "device")),
        ("Subscription.tagValues", ("tagIds", "tags")),
        ("Subscription.deviceStatus", ("deviceId", "device")),
        ("Query.alarms", ("deviceId", "device")),
        ("Query.alarmHistory", ("alarmId", "alarm")),
        ("Query.anomalies", ("tagIds", "tags")),
        ("Query.statistics", ("tagIds", "tags")),
        ("Query.correlation", ("tagIds", "tags")),
        ("Query.alarmAnalytics", ("unitId", "unit")),
        ("Query.unitKpis", ("unitId", "unit")),
        ("Mutation.acknowledgeAlarm", ("id", "alarm")),
        ("Mutation.acknowledgeAlarms", ("ids", "alarms")),
        ("Mutation.shelveAlarm", ("id", "alarm")),
        ("Mutation.unshelveAlarm", ("id", "alarm")),
        ("Subscription.alarmEvents", ("unitId", "unit")),
        ("Query.devices", ("after", "device")),
        ("Mutation.updateUnit", ("id", "unit")),
        ("Mutation.deleteUnit", ("id", "unit")),
        ("Mutation.updateDevice", ("id", "device")),
        ("Mutation.deleteDevice", ("id", "device")),
        ("Mutation.setDeviceEnabled", ("id", "device")),
        ("Mutation.updateTag", ("id", "tag")),
        ("Mutation.deleteTag", ("id", "tag")),
    ]);
    let literal = |kind: &str| match kind {
        "device" => format!("\"{device}\""),
        "tag" => format!("\"{tag}\""),
        "tags" => format!("[\"{tag}\"]"),
        "user" => format!("\"{user}\""),
        "alarm" => format!("\"{alarm}\""),
        "alarms" => format!("[\"{alarm}\"]"),
        "unit" => format!("\"{unit}\""),
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
        if let Some(sub) = key.strip_prefix("Subscription.") {
            let (mut ws, ack) = WsClient::connect(s.addr, &beta).await;
            assert_eq!(ack["type"], "connection_ack");
            let selection = match sub {
                "tagValues" => "tagId",
                "alarmEvents" => "alarmId",
                _ => "deviceId",
            };
            ws.subscribe(
                "1",
                &format!(
                    "subscription {{ {sub}({arg}: {}) {{ {selection} }} }}",
                    literal(kind)
                ),
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

//! Tenancy and limits: query shape, introspection, quotas, tenant administration,
//! production mode, retention.

use super::*;

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

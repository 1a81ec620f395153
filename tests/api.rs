//! The GraphQL API end to end: a real server on an ephemeral port, SQLite, sim devices.

mod common;

use std::time::Duration;

use common::server::{self, TestServer, WsClient, eventually};
use serde_json::{Value, json};
use thermacore::domain::Role;

const PLANT: &str = r#"
[[tenants]]
name = "acme"
[[tenants.units]]
name = "plant"
location = { lat = 45.0, lon = 7.6 }
[[tenants.devices]]
name = "boiler"
unit = "plant"
poll_ms = 50
driver = { protocol = "sim" }
[[tenants.devices.tags]]
name = "temp"
address = "sine:period=10,amplitude=5,offset=70"
eng_unit = "°C"
[[tenants.devices.tags]]
name = "on"
address = "square:period=2"
data_type = "bool"
[[tenants.devices.tags]]
name = "starts"
address = "counter"
data_type = "i64"

[[tenants]]
name = "globex"
[[tenants.devices]]
name = "other"
poll_ms = 50
driver = { protocol = "sim" }
[[tenants.devices.tags]]
name = "secret-temp"
address = "sine"
"#;

async fn acme() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = [
        ("acme", "admin", Role::Admin),
        ("acme", "viewer", Role::Viewer),
        ("globex", "admin", Role::Admin),
    ];
    let s = server::start(server::config(PLANT, dir.path()), &users).await;
    s.wait_ready().await;
    (s, dir)
}

fn code(r: &Value) -> &str {
    r["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("<none>")
}

#[tokio::test]
async fn login_failures_are_uniform_and_tokens_are_checked() {
    let (s, _d) = acme().await;
    let q = "mutation($t:String!,$u:String!,$p:String!){login(tenant:$t,username:$u,password:$p){accessToken}}";
    for (t, u, p) in [
        ("acme", "admin", "wrong"),
        ("acme", "nobody", "x"),
        ("nowhere", "admin", server::PASSWORD),
    ] {
        let r = s.gql(None, q, json!({"t": t, "u": u, "p": p})).await;
        assert_eq!(code(&r), "UNAUTHENTICATED", "{r}");
        assert_eq!(r["errors"][0]["message"], "authentication required", "{r}");
    }
    let r = s.gql(None, "{me{username}}", json!({})).await;
    assert_eq!(code(&r), "UNAUTHENTICATED");
    let token = s.login("acme", "viewer").await;
    let tampered = format!("{}x", token);
    let r = s.gql(Some(&tampered), "{me{username}}", json!({})).await;
    assert_eq!(code(&r), "UNAUTHENTICATED");
    assert!(r["data"].is_null(), "{r}");
    let me = s
        .data(&token, "{me{username role tenant}}", json!({}))
        .await;
    assert_eq!(
        me["me"],
        json!({"username": "viewer", "role": "VIEWER", "tenant": "acme"})
    );
}

#[tokio::test]
async fn roles_are_enforced() {
    let (s, _d) = acme().await;
    let viewer = s.login("acme", "viewer").await;
    let r = s.gql(Some(&viewer), "{system{version}}", json!({})).await;
    assert_eq!(code(&r), "FORBIDDEN", "{r}");
    let admin = s.login("acme", "admin").await;
    let d = s.data(&admin, "{system{version store actors{total tenants devices} restarts historian{written dropped}}}", json!({})).await;
    assert_eq!(d["system"]["store"], "sqlite");
    assert_eq!(d["system"]["actors"]["tenants"], 2);
    assert_eq!(d["system"]["actors"]["devices"], 2);
}

#[tokio::test]
async fn another_tenants_ids_are_not_found() {
    let (s, _d) = acme().await;
    let acme_admin = s.login("acme", "admin").await;
    let globex = s.login("globex", "admin").await;
    let acme_tags = s.tag_ids(&acme_admin).await;
    let temp = acme_tags["temp"].clone();
    eventually(Duration::from_secs(5), "acme temp has a value", || async {
        s.data(
            &acme_admin,
            "query($i:[ID!]!){latest(tagIds:$i){value}}",
            json!({"i": [temp]}),
        )
        .await["latest"]
            .as_array()
            .is_some_and(|a| a.len() == 1)
    })
    .await;
    let devices = s.data(&acme_admin, "{devices{id}}", json!({})).await;
    let acme_device = devices["devices"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let now = chrono::Utc::now();
    let probes = [
        (
            "query($i:[ID!]!){latest(tagIds:$i){value}}",
            json!({"i": [temp]}),
        ),
        (
            "query($i:[ID!]!,$f:DateTime!,$t:DateTime!){history(tagIds:$i,from:$f,to:$t){tagId samples{value}}}",
            json!({"i": [temp], "f": (now - chrono::Duration::hours(1)).to_rfc3339(), "t": now.to_rfc3339()}),
        ),
        (
            "query($d:ID!){device(id:$d){name}}",
            json!({"d": acme_device}),
        ),
        (
            "query($d:ID!){tags(deviceId:$d){name}}",
            json!({"d": acme_device}),
        ),
    ];
    for (q, v) in probes {
        let r = s.gql(Some(&globex), q, v.clone()).await;
        assert_eq!(code(&r), "NOT_FOUND", "{q}: {r}");
        assert!(
            r["data"].is_null() || !r.to_string().contains("70"),
            "leaked data: {r}"
        );
    }
    let mut ws = WsClient::connect(s.addr, &globex).await.0;
    ws.subscribe(
        "1",
        "subscription($i:[ID!]){tagValues(tagIds:$i){value}}",
        json!({"i": [temp]}),
    )
    .await;
    let m = ws.next(Duration::from_secs(5)).await;
    // graphql-transport-ws: a resolver error arrives as `next` with errors (or `error`)
    let code = if m["type"] == "error" {
        &m["payload"][0]
    } else {
        &m["payload"]["errors"][0]
    };
    assert_eq!(code["extensions"]["code"], "NOT_FOUND", "{m}");
    assert!(m["payload"]["data"].is_null(), "{m}");
    // globex sees only its own world
    let t = s.data(&globex, "{tags{name} units{name}}", json!({})).await;
    assert_eq!(t, json!({"tags": [{"name": "secret-temp"}], "units": []}));
}

#[tokio::test]
async fn latest_history_and_buckets() {
    let (s, _d) = acme().await;
    let token = s.login("acme", "viewer").await;
    let tags = s.tag_ids(&token).await;
    let ids = json!([tags["temp"], tags["on"], tags["starts"]]);
    eventually(Duration::from_secs(5), "three latest values", || async {
        s.data(
            &token,
            "query($i:[ID!]!){latest(tagIds:$i){tagId}}",
            json!({"i": ids}),
        )
        .await["latest"]
            .as_array()
            .is_some_and(|a| a.len() == 3)
    })
    .await;
    let d = s.data(&token, "query($i:[ID!]!){latest(tagIds:$i){tagId value quality qualityReason sourceTime serverTime}}", json!({"i": ids})).await;
    let l = &d["latest"];
    assert!(l[0]["value"].is_f64(), "{l}");
    assert!(l[1]["value"].is_boolean(), "{l}");
    assert!(l[2]["value"].is_i64(), "{l}");
    assert_eq!(l[0]["quality"], "GOOD");
    assert!(l[0]["qualityReason"].is_null());

    let from = chrono::Utc::now() - chrono::Duration::minutes(5);
    let hq = "query($i:[ID!]!,$f:DateTime!,$t:DateTime!,$b:Int){history(tagIds:$i,from:$f,to:$t,bucketSeconds:$b){tagId samples{value quality} buckets{start avg min max count first last bad}}}";
    eventually(Duration::from_secs(10), "history rows stored", || async {
        let to = chrono::Utc::now() + chrono::Duration::minutes(1);
        let d = s
            .data(
                &token,
                hq,
                json!({"i": [tags["temp"]], "f": from.to_rfc3339(), "t": to.to_rfc3339()}),
            )
            .await;
        d["history"][0]["samples"]
            .as_array()
            .is_some_and(|a| a.len() >= 5)
    })
    .await;
    let to = chrono::Utc::now() + chrono::Duration::minutes(1);
    let d = s.data(&token, hq, json!({"i": [tags["temp"], tags["on"]], "f": from.to_rfc3339(), "t": to.to_rfc3339(), "b": 3600})).await;
    let b = &d["history"][0]["buckets"];
    assert!(!b.as_array().expect("buckets").is_empty(), "{d}");
    let (min, max, avg) = (
        b[0]["min"].as_f64().unwrap_or(0.0),
        b[0]["max"].as_f64().unwrap_or(0.0),
        b[0]["avg"].as_f64().unwrap_or(0.0),
    );
    assert!(
        (65.0..=75.0).contains(&min) && (65.0..=75.0).contains(&max) && min <= avg && avg <= max,
        "{b}"
    );
    assert_eq!(d["history"][1]["tagId"], tags["on"]);
    assert_eq!(b[0]["bad"], 0, "{b}");
    assert!(b[0]["first"].is_f64() && b[0]["last"].is_f64(), "{b}");
    // The server started long after `from`: the stretch before its first sample is a
    // gap of the raw history, and so is the minute to come.
    let gq = "query($i:[ID!]!,$f:DateTime!,$t:DateTime!,$g:Int!){history(tagIds:$i,from:$f,to:$t,gapSeconds:$g){samples{sourceTime} gaps{from to}}}";
    let vars =
        |g: i64| json!({"i": [tags["temp"]], "f": from.to_rfc3339(), "t": to.to_rfc3339(), "g": g});
    let d = s.data(&token, gq, vars(60)).await;
    let h = &d["history"][0];
    let gaps = h["gaps"].as_array().expect("gaps");
    let first_sample = h["samples"][0]["sourceTime"].as_str().expect("sample");
    let parse = |v: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or(""))
            .expect("time")
            .timestamp_micros()
    };
    assert_eq!(parse(&gaps[0]["from"]), from.timestamp_micros(), "{h}");
    assert_eq!(parse(&gaps[0]["to"]), parse(&json!(first_sample)), "{h}");
    assert_eq!(
        parse(&gaps[gaps.len() - 1]["to"]),
        to.timestamp_micros(),
        "{h}"
    );
    let r = s.gql(Some(&token), gq, vars(0)).await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
    // bad ranges are refused with a code
    let r = s
        .gql(
            Some(&token),
            hq,
            json!({"i": [tags["temp"]], "f": to.to_rfc3339(), "t": from.to_rfc3339()}),
        )
        .await;
    assert_eq!(code(&r), "BAD_USER_INPUT");
    let r = s
        .gql(
            Some(&token),
            hq,
            json!({"i": [tags["temp"]], "f": from.to_rfc3339(), "t": to.to_rfc3339(), "b": 0}),
        )
        .await;
    assert_eq!(code(&r), "BAD_USER_INPUT");
}

#[tokio::test]
async fn viewer_receives_live_values_over_graphql_ws() {
    let (s, _d) = acme().await;
    let token = s.login("acme", "viewer").await;
    let tags = s.tag_ids(&token).await;
    let (mut ws, ack) = WsClient::connect(s.addr, &token).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    ws.subscribe(
        "1",
        "subscription($i:[ID!]){tagValues(tagIds:$i){tagId value quality serverTime}}",
        json!({"i": [tags["temp"]]}),
    )
    .await;
    let mut seen = 0;
    while seen < 3 {
        let m = ws.next(Duration::from_secs(1)).await;
        assert_eq!(m["type"], "next", "a value within a second: {m}");
        assert_eq!(m["payload"]["data"]["tagValues"]["tagId"], tags["temp"]);
        seen += 1;
    }
    // a device subscription gets every tag of the device
    let devices = s.data(&token, "{devices{id}}", json!({})).await;
    ws.subscribe(
        "2",
        "subscription($d:ID){tagValues(deviceId:$d){tagId}}",
        json!({"d": devices["devices"][0]["id"]}),
    )
    .await;
    let mut tags_seen = std::collections::HashSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while tags_seen.len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "all three tags of the device within 5 s, saw {tags_seen:?}"
        );
        let m = ws.next(Duration::from_secs(1)).await;
        if m["id"] == "2" {
            tags_seen.insert(m["payload"]["data"]["tagValues"]["tagId"].to_string());
        }
    }
}

#[tokio::test]
async fn websocket_refuses_a_bad_token() {
    let (s, _d) = acme().await;
    let (mut ws, first) = WsClient::connect(s.addr, "not-a-token").await;
    assert_eq!(first["type"], "closed", "{first}");
    assert_eq!(first["code"], 4403, "{first}");
    let _ = ws.next(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn request_ids_health_metrics_and_limits() {
    let (s, _d) = acme().await;
    let r = s.get("/healthz").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()
            .get("x-request-id")
            .is_some_and(|v| v.len() >= 32)
    );
    let r = reqwest::Client::new()
        .get(s.url("/readyz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .expect("get");
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    assert_eq!(r.status(), 200);
    let m = s.metrics().await;
    for name in [
        "thermacore_samples_ingested_total",
        "thermacore_device_polls_total",
        "thermacore_historian_written_samples_total",
        "thermacore_cache_entries",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics");
    }
    // depth limit and malformed queries come back with a code, not a crash
    let token = s.login("acme", "viewer").await;
    let deep = "{units{devices{tags{latest{tagId}}}}}";
    assert!(
        s.gql(Some(&token), deep, json!({}))
            .await
            .get("errors")
            .is_none()
    );
    let nested = "{__schema{types{fields{type{ofType{ofType{ofType{ofType{ofType{ofType{ofType{ofType{ofType{name}}}}}}}}}}}}}}";
    let r = s.gql(Some(&token), nested, json!({})).await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
    let r = s.gql(Some(&token), "{ units { ", json!({})).await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
    let r = s
        .gql(
            Some(&token),
            "query($i:[ID!]!){latest(tagIds:$i){value}}",
            json!({"i": ["not-a-number"]}),
        )
        .await;
    assert_eq!(code(&r), "NOT_FOUND", "{r}");
    // GraphiQL on GET
    let page = s.get("/graphql").await.text().await.expect("html");
    assert!(page.contains("graphiql"), "GraphiQL page");
}

#[test]
fn schema_file_matches_the_code() {
    let file = include_str!("../schema/schema.graphql");
    let code = thermacore::api::graphql::sdl();
    assert!(
        file == code,
        "schema/schema.graphql is out of date: run `cargo run -- schema > schema/schema.graphql`"
    );
}

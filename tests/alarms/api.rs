//! Alarms through the GraphQL API of a real server: rules from the config file on sim
//! devices, the alarm list, acknowledge / shelve / unshelve with their refusals, the
//! history, `alarmEvents`, and the counts in `system` and the metrics.

use std::time::Duration;

use serde_json::{Value, json};
use thermacore::domain::Role;

use crate::common::server::{self, TestServer, WsClient};

const PLANT: &str = r#"
[[tenants]]
name = "acme"
[[tenants.units]]
name = "plant"
[[tenants.devices]]
name = "pump"
unit = "plant"
poll_ms = 50
driver = { protocol = "sim" }
[[tenants.devices.tags]]
name = "fault"
address = "square:period=1"
data_type = "bool"
alarms = [
  { name = "pump-fault", type = "digital", state = true, severity = "critical", message = "{tag} tripped" },
  { name = "spare", type = "digital", enabled = false },
]
[[tenants.devices.tags]]
name = "temp"
address = "sine:period=600,amplitude=1,offset=20"
alarms = [{ name = "never", type = "high", setpoint = 1000, severity = "low" }]

[[tenants]]
name = "globex"
[[tenants.devices]]
name = "other"
poll_ms = 50
driver = { protocol = "sim" }
[[tenants.devices.tags]]
name = "fault"
address = "square:period=1"
data_type = "bool"
alarms = [{ name = "their-fault", type = "digital" }]
"#;

const ALARM: &str =
    "id ruleName kind severity state active message ackedBy reason shelvedUntil tagName unitId";

async fn plant() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = [
        ("acme", "olga", Role::Operator),
        ("acme", "vic", Role::Viewer),
        ("globex", "admin", Role::Admin),
    ];
    let s = server::start(server::config(PLANT, dir.path()), &users).await;
    s.wait_ready().await;
    (s, dir)
}

fn code(r: &Value) -> &str {
    r["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
}

/// Every alarm of the caller's tenant (all states), by rule name.
async fn alarms(s: &TestServer, token: &str) -> std::collections::HashMap<String, Value> {
    let states = "[NORMAL UNACKED ACKED RTN_UNACKED SHELVED SUPPRESSED]";
    let d = s
        .data(
            token,
            &format!("{{alarms(state:{states}){{alarms{{{ALARM}}}}}}}"),
            json!({}),
        )
        .await;
    d["alarms"]["alarms"]
        .as_array()
        .expect("alarms")
        .iter()
        .map(|a| (a["ruleName"].as_str().unwrap_or("").to_string(), a.clone()))
        .collect()
}

const ACK: &str = "mutation($id:ID!,$c:String){acknowledgeAlarm(id:$id,comment:$c){state ackedBy}}";

#[tokio::test]
async fn the_alarm_list_lives_and_operators_handle_it() {
    let (s, _dir) = plant().await;
    let olga = s.login("acme", "olga").await;
    let vic = s.login("acme", "vic").await;
    let globex = s.login("globex", "admin").await;

    let listed = alarms(&s, &olga).await;
    assert_eq!(listed.len(), 3, "acme's rules only: {listed:?}");
    let spare = &listed["spare"];
    assert_eq!(spare["state"], "SUPPRESSED");
    assert_eq!(spare["reason"], "rule disabled");
    assert_eq!(listed["never"]["state"], "NORMAL");
    assert_eq!(listed["pump-fault"]["unitId"], listed["never"]["unitId"]);
    let fault = listed["pump-fault"]["id"].as_str().expect("id").to_string();
    let theirs = alarms(&s, &globex).await["their-fault"]["id"]
        .as_str()
        .expect("id")
        .to_string();

    let (mut ws, _) = WsClient::connect(s.addr, &olga).await;
    ws.subscribe(
        "1",
        "subscription{alarmEvents(minSeverity:HIGH){alarmId severity from to message active}}",
        json!({}),
    )
    .await;

    // The square wave trips the fault every second: an operator acknowledges it
    // while it waits (UNACKED → ACKED or RTN_UNACKED → NORMAL).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let acknowledged = loop {
        let r = s
            .gql(Some(&olga), ACK, json!({"id": fault, "c": "seen"}))
            .await;
        if r.get("errors").is_none() {
            break r["data"]["acknowledgeAlarm"].clone();
        }
        assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
        assert!(
            std::time::Instant::now() < deadline,
            "no acknowledgement: {r}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    let acked = acknowledged;
    assert!(
        ["ACKED", "NORMAL"].contains(&acked["state"].as_str().unwrap_or("")),
        "{acked}"
    );

    // The live stream carries the critical fault's transitions (and not the low one).
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let m = ws.next(Duration::from_secs(5)).await;
        assert_eq!(m["type"], "next", "{m}");
        let e = m["payload"]["data"]["alarmEvents"].clone();
        assert_eq!(e["alarmId"], fault.as_str(), "{e}");
        assert_eq!(e["severity"], "CRITICAL");
        seen.push(e);
    }
    assert!(
        seen.iter()
            .any(|e| e["to"] == "UNACKED" && e["message"] == "fault tripped"),
        "{seen:?}"
    );

    // Refusals that change nothing.
    let r = s.gql(Some(&vic), ACK, json!({"id": fault})).await;
    assert_eq!(code(&r), "FORBIDDEN", "a viewer cannot acknowledge: {r}");
    let r = s.gql(Some(&olga), ACK, json!({"id": theirs})).await;
    assert_eq!(code(&r), "NOT_FOUND", "another tenant's alarm: {r}");
    let r = s
        .gql(Some(&olga), ACK, json!({"id": listed["never"]["id"]}))
        .await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "nothing to acknowledge: {r}");
    let r = s
        .gql(
            Some(&olga),
            "mutation($ids:[ID!]!){acknowledgeAlarms(ids:$ids){acknowledged{id} skipped{id}}}",
            json!({"ids": [fault, theirs]}),
        )
        .await;
    assert_eq!(code(&r), "NOT_FOUND", "one foreign id refuses the lot: {r}");
    let shelve = "mutation($id:ID!,$u:DateTime!,$r:String!){shelveAlarm(id:$id,until:$u,reason:$r){state reason shelvedUntil}}";
    let at = |d: chrono::Duration| (chrono::Utc::now() + d).to_rfc3339();
    let soon = at(chrono::Duration::hours(1));
    let refused = [
        (
            at(chrono::Duration::minutes(-1)),
            "x",
            "shelving into the past",
        ),
        (
            at(chrono::Duration::days(31)),
            "x",
            "shelving beyond 30 days",
        ),
        (soon.clone(), " ", "a shelving needs a reason"),
    ];
    for (until, reason, what) in refused {
        let vars = json!({"id": fault, "u": until, "r": reason});
        let r = s.gql(Some(&olga), shelve, vars).await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "{what}: {r}");
    }

    // Shelved: out of the default list, back after unshelving.
    let d = s
        .data(
            &olga,
            shelve,
            json!({"id": fault, "u": soon, "r": "pump on maintenance"}),
        )
        .await;
    assert_eq!(d["shelveAlarm"]["state"], "SHELVED");
    assert_eq!(d["shelveAlarm"]["reason"], "pump on maintenance");
    let d = s
        .data(&olga, "{alarms{alarms{ruleName state}}}", json!({}))
        .await;
    let names: Vec<&str> = d["alarms"]["alarms"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|a| a["ruleName"].as_str())
        .collect();
    assert!(
        names.contains(&"pump-fault") && names.contains(&"spare"),
        "shelved and suppressed are listed: {names:?}"
    );
    assert!(!names.contains(&"never"), "NORMAL is not: {names:?}");
    let d = s
        .data(
            &olga,
            "mutation($id:ID!){unshelveAlarm(id:$id){state}}",
            json!({"id": fault}),
        )
        .await;
    assert_ne!(d["unshelveAlarm"]["state"], "SHELVED");
    let r = s
        .gql(
            Some(&olga),
            "mutation($id:ID!){unshelveAlarm(id:$id){state}}",
            json!({"id": fault}),
        )
        .await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "not shelved: {r}");

    // The history has who and why.
    let d = s
        .data(
            &olga,
            "query($id:ID){alarmHistory(alarmId:$id,first:500){events{from to user comment reason} hasNextPage}}",
            json!({"id": fault}),
        )
        .await;
    let events = d["alarmHistory"]["events"]
        .as_array()
        .expect("events")
        .clone();
    assert!(
        events
            .iter()
            .any(|e| e["user"] == "olga" && e["comment"] == "seen"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e["to"] == "SHELVED"
            && e["reason"] == "pump on maintenance"
            && e["user"] == "olga"),
        "{events:?}"
    );
    let other = s
        .gql(
            Some(&globex),
            "query($id:ID){alarmHistory(alarmId:$id){events{to}}}",
            json!({"id": fault}),
        )
        .await;
    assert_eq!(
        code(&other),
        "NOT_FOUND",
        "another tenant's history: {other}"
    );
    let all = s
        .data(
            &globex,
            "{alarmHistory(first:500){events{alarmId}}}",
            json!({}),
        )
        .await;
    assert!(
        all["alarmHistory"]["events"]
            .as_array()
            .expect("events")
            .iter()
            .all(|e| e["alarmId"] == theirs.as_str()),
        "only globex's own: {all}"
    );

    // Counts in `system` (admins) and in the metrics.
    let d = s
        .data(
            &globex,
            "{system{alarms{severity annunciated suppressed}}}",
            json!({}),
        )
        .await;
    assert_eq!(d["system"]["alarms"].as_array().map(Vec::len), Some(5));
    let text = s.metrics().await;
    assert!(
        text.contains(r#"thermacore_alarms{tenant="acme",severity="medium",state="suppressed"} 1"#),
        "{}",
        text.lines()
            .filter(|l| l.starts_with("thermacore_alarm"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        server::metric_sum(
            &text,
            "thermacore_alarm_transitions_total",
            r#"tenant="acme""#
        ) >= 3.0
    );
    s.stop().await.expect("clean stop");
}

#[tokio::test]
async fn active_alarms_survive_a_server_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = server::config(PLANT, dir.path());
    let users = [("acme", "olga", Role::Operator)];
    let s = server::start(config.clone(), &users).await;
    s.wait_ready().await;
    let olga = s.login("acme", "olga").await;
    let fault = alarms(&s, &olga).await["pump-fault"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let shelve =
        "mutation($id:ID!,$u:DateTime!,$r:String!){shelveAlarm(id:$id,until:$u,reason:$r){state}}";
    let until = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    s.data(
        &olga,
        shelve,
        json!({"id": fault, "u": until, "r": "overnight"}),
    )
    .await;
    s.stop().await.expect("stop");

    let s = server::start_unprepared(config).await;
    s.wait_ready().await;
    let olga = s.login("acme", "olga").await;
    let after = alarms(&s, &olga).await;
    assert_eq!(after["pump-fault"]["id"], fault.as_str(), "same alarm");
    assert_eq!(
        after["pump-fault"]["state"], "SHELVED",
        "restored: {}",
        after["pump-fault"]
    );
    assert_eq!(after["pump-fault"]["reason"], "overnight");
    assert_eq!(after["spare"]["state"], "SUPPRESSED");
    s.stop().await.expect("stop");
}

const NOISY: &str = r#"
[[tenants]]
name = "acme"
[[tenants.devices]]
name = "meter"
poll_ms = 20
driver = { protocol = "sim" }
[[tenants.devices.tags]]
name = "flow"
address = "walk:step=1,min=0,max=100"
alarms = [{ name = "odd-flow", type = "anomaly", method = "iqr", window = 4, threshold = 0.5 }]

[[tenants]]
name = "globex"
[[tenants.devices]]
name = "other"
driver = { protocol = "sim" }
[[tenants.devices.tags]]
name = "flow"
address = "walk:step=1,min=0,max=100"
"#;

const ANOMALIES: &str = "query($t:[ID!]!,$f:DateTime!,$to:DateTime!,$c:Float,$n:Int=100,$a:String)\
    {anomalies(tagIds:$t,from:$f,to:$to,minConfidence:$c,first:$n,after:$a)\
    {anomalies{id tagId alarmId at method value score confidence expected lower upper}\
    endCursor hasNextPage}}";

#[tokio::test]
async fn anomalies_are_queried_by_tag_and_time_in_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = [
        ("acme", "vic", Role::Viewer),
        ("globex", "admin", Role::Admin),
    ];
    let s = server::start(server::config(NOISY, dir.path()), &users).await;
    s.wait_ready().await;
    let vic = s.login("acme", "vic").await;
    let globex = s.login("globex", "admin").await;
    let tags = s.data(&vic, "{tags{id name}}", json!({})).await;
    let flow = tags["tags"][0]["id"].as_str().expect("tag").to_string();
    let theirs = s.data(&globex, "{tags{id}}", json!({})).await["tags"][0]["id"]
        .as_str()
        .expect("their tag")
        .to_string();
    let odd = alarms(&s, &vic).await["odd-flow"].clone();
    assert_eq!(odd["kind"], "anomaly");
    let (from, to) = (
        (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339(),
        (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
    );
    let vars = |extra: Value| {
        let mut v = json!({"t": [flow], "f": from, "to": to});
        if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
            v.extend(extra);
        }
        v
    };

    // A random walk keeps leaving its last four values' quartiles.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let all = loop {
        let d = s.data(&vic, ANOMALIES, vars(json!({}))).await;
        let list = d["anomalies"]["anomalies"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if list.len() >= 3 {
            break list;
        }
        assert!(std::time::Instant::now() < deadline, "no detections: {d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for a in &all {
        assert_eq!(a["method"], "IQR", "{a}");
        assert_eq!(a["tagId"], flow.as_str());
        assert_eq!(a["alarmId"], odd["id"]);
        let (v, lo, hi) = (
            a["value"].as_f64(),
            a["lower"].as_f64(),
            a["upper"].as_f64(),
        );
        assert!(v < lo || v > hi, "outside the band: {a}");
        assert!(a["score"].as_f64() > Some(0.5), "{a}");
    }
    let times: Vec<&str> = all.iter().filter_map(|a| a["at"].as_str()).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );

    // Pages do not overlap and follow on.
    let one = s.data(&vic, ANOMALIES, vars(json!({"n": 1}))).await["anomalies"].clone();
    assert_eq!(one["hasNextPage"], true);
    let next = s
        .data(
            &vic,
            ANOMALIES,
            vars(json!({"n": 1, "a": one["endCursor"]})),
        )
        .await["anomalies"]
        .clone();
    let (a, b) = (&one["anomalies"][0], &next["anomalies"][0]);
    assert_ne!(a["id"], b["id"]);
    assert!(a["at"].as_str() >= b["at"].as_str());
    let sure = s.data(&vic, ANOMALIES, vars(json!({"c": 0.5}))).await;
    for a in sure["anomalies"]["anomalies"].as_array().expect("list") {
        assert!(a["confidence"].as_f64() >= Some(0.5), "{a}");
    }

    // Bad input is refused and names what is wrong.
    for (extra, why) in [
        (json!({"f": to, "to": from}), "`from` must be before `to`"),
        (json!({"c": 2.0}), "minConfidence"),
        (json!({"a": "page-two"}), "cursor"),
        (json!({"n": 0}), "first"),
    ] {
        let r = s.gql(Some(&vic), ANOMALIES, vars(extra.clone())).await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "{extra}: {r}");
        assert!(r.to_string().contains(why), "{extra}: {r}");
    }
    let r = s
        .gql(Some(&vic), ANOMALIES, vars(json!({"t": [flow, theirs]})))
        .await;
    assert_eq!(code(&r), "NOT_FOUND", "another tenant's tag: {r}");
    s.stop().await.expect("clean stop");
}

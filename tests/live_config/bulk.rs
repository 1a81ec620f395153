//! `importConfig` and `exportConfig`: round trips in TOML and JSON, MERGE and REPLACE,
//! dry runs, a document with bad entries (nothing applied, every error with its
//! path), and a thousand devices in one import.

use std::time::{Duration, Instant};

use super::common::server::eventually;
use super::*;

const IMPORT: &str = "mutation($d: String!, $m: ImportMode!, $dry: Boolean!) { importConfig(document: $d, mode: $m, dryRun: $dry) { applied created updated deleted changes { kind op id name before after } } }";

/// A plant of several protocols, alarms and a secret (the devices need not answer).
const DOC: &str = r#"
[[units]]
name = "pump-station"
location = { lat = 45.07, lon = 7.69 }
description = "north"

[[devices]]
name = "gen"
unit = "pump-station"
poll_ms = 50
driver = { protocol = "sim", generated_tags = 3 }

[[devices.tags]]
name = "level"
unit = "pump-station"
address = "sine:period=30,amplitude=2,offset=5"
eng_unit = "m"
deadband = 0.1
alarms = [
  { name = "high", type = "high", setpoint = 6.5, deadband = 0.2, severity = "high", on_delay_ms = 500 },
  { name = "link", type = "comm_loss" },
]

[[devices]]
name = "plc"
poll_ms = 1000
enabled = false
driver = { protocol = "modbus", host = "127.0.0.1", port = 1, unit_id = 3, poll_groups = [{ name = "slow", period_ms = 5000 }] }

[[devices.tags]]
name = "flow"
address = "ir:10;order=CDAB;group=slow"
data_type = "f32"
scale = 0.1

[[devices]]
name = "gateway"
poll_ms = 5000
enabled = false
driver = { protocol = "mqtt", host = "127.0.0.1", port = 1, topics = ["site/#"] }

[devices.security]
credentials = { username = "scada", password = "pw-very-secret" }

[[devices.tags]]
name = "temp"
address = "topic=site/t;value=/v"
"#;

async fn import(s: &TestServer, token: &str, doc: &str, mode: &str, dry: bool) -> Value {
    s.gql(
        Some(token),
        IMPORT,
        json!({"d": doc, "m": mode, "dry": dry}),
    )
    .await
}

async fn export(s: &TestServer, token: &str, format: &str) -> String {
    let d = s
        .data(
            token,
            &format!("{{ exportConfig(format: {format}) }}"),
            json!({}),
        )
        .await;
    d["exportConfig"].as_str().expect("document").to_string()
}

async fn device_names(s: &TestServer, token: &str) -> Vec<String> {
    let d = s.data(token, "{devices{name}}", json!({})).await;
    d["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| d["name"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn export_import_replace_export_is_identical_in_toml_and_json() {
    let (s, _dir) = start().await;
    let token = s.login("acme", "admin").await;
    let r = import(&s, &token, DOC, "MERGE", false).await;
    let report = &r["data"]["importConfig"];
    assert_eq!(report["applied"], true, "{r}");
    // A unit, 3 devices, 3 declared and 3 generated tags, 2 rules.
    assert_eq!(report["created"], 12, "{r}");
    assert_eq!(report["deleted"], 0);
    assert!(
        !r.to_string().contains("pw-very-secret"),
        "a secret in the answer"
    );
    eventually(Duration::from_secs(10), "gen polls", || async {
        let d = s
            .data(&token, "{deviceCount(filter: {status: ONLINE})}", json!({}))
            .await;
        d["deviceCount"] == 2
    })
    .await;

    let first = export(&s, &token, "TOML").await;
    assert!(first.contains("name = \"acme\""), "{first}");
    assert!(first.contains("password = \"***\""), "{first}");
    assert!(!first.contains("pw-very-secret"));
    assert!(
        !first.contains("gen-0000"),
        "generated tags are the driver's: {first}"
    );
    let again = import(&s, &token, &first, "REPLACE", false).await;
    let report = &again["data"]["importConfig"];
    assert_eq!(
        (
            report["created"].as_u64(),
            report["updated"].as_u64(),
            report["deleted"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "an export imported again changes nothing: {again}"
    );
    assert_eq!(export(&s, &token, "TOML").await, first);

    let json_doc = export(&s, &token, "JSON").await;
    let parsed: Value = serde_json::from_str(&json_doc).expect("json");
    assert_eq!(parsed["devices"][2]["name"], "plc");
    assert_eq!(parsed["devices"][2]["driver"]["protocol"], "modbus");
    let again = import(&s, &token, &json_doc, "REPLACE", false).await;
    assert_eq!(
        again["data"]["importConfig"]["changes"],
        json!([]),
        "{again}"
    );
    assert_eq!(export(&s, &token, "JSON").await, json_doc);
    assert_eq!(export(&s, &token, "TOML").await, first);

    // The stored secret still opens to what was given: the device's security shows it set.
    let d = s
        .data(
            &token,
            "{devices{name security{credentials{username password}}}}",
            json!({}),
        )
        .await;
    let gateway = d["devices"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["name"] == "gateway"))
        .expect("gateway");
    assert_eq!(gateway["security"]["credentials"]["password"], "***");
}

#[tokio::test]
async fn merge_keeps_replace_deletes_and_a_dry_run_writes_nothing() {
    let (s, _dir) = start().await;
    let token = s.login("acme", "admin").await;
    import(&s, &token, DOC, "MERGE", false).await;
    assert_eq!(
        device_names(&s, &token).await,
        ["steady", "gen", "plc", "gateway"]
    );

    // MERGE: the document's objects are created or changed, the rest stays.
    let change = "[[devices]]\nname = \"gen\"\npoll_ms = 100\ndriver = { protocol = \"sim\" }\n\n[[devices]]\nname = \"extra\"\ndriver = { protocol = \"sim\" }\n";
    let dry = import(&s, &token, change, "MERGE", true).await;
    let report = &dry["data"]["importConfig"];
    assert_eq!(report["applied"], false, "{dry}");
    // gen changes (and loses its 3 generated tags), extra is new.
    assert_eq!(
        (
            report["created"].as_u64(),
            report["updated"].as_u64(),
            report["deleted"].as_u64()
        ),
        (Some(1), Some(1), Some(3)),
        "{dry}"
    );
    assert_eq!(
        device_names(&s, &token).await,
        ["steady", "gen", "plc", "gateway"]
    );
    let done = import(&s, &token, change, "MERGE", false).await;
    assert_eq!(done["data"]["importConfig"]["applied"], true, "{done}");
    assert_eq!(
        device_names(&s, &token).await,
        ["steady", "gen", "plc", "gateway", "extra"]
    );
    // gen kept its declared tag and its alarms (MERGE deletes nothing declared).
    let tags = s.tag_ids(&token).await;
    assert!(tags.contains_key("level"));

    // REPLACE: what the document does not declare goes.
    let only = "[[units]]\nname = \"boiler-house\"\n\n[[devices]]\nname = \"steady\"\nunit = \"boiler-house\"\npoll_ms = 20\ndriver = { protocol = \"sim\" }\n\n[[devices.tags]]\nname = \"count\"\naddress = \"counter\"\ndata_type = \"i64\"\n";
    let r = import(&s, &token, only, "REPLACE", false).await;
    let report = &r["data"]["importConfig"];
    assert_eq!(report["created"], 0, "{r}");
    assert_eq!(report["updated"], 0, "{r}");
    let deleted: Vec<&str> = report["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["op"] == "DELETE" && c["kind"] == "device")
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(deleted, ["gen", "plc", "gateway", "extra"], "{r}");
    assert_eq!(device_names(&s, &token).await, ["steady"]);
    let units = s.data(&token, "{units{name}}", json!({})).await;
    assert_eq!(units["units"], json!([{"name": "boiler-house"}]));
}

#[tokio::test]
async fn a_document_with_bad_entries_applies_nothing_and_lists_every_error() {
    let (s, _dir) = start().await;
    let token = s.login("acme", "admin").await;
    let before = export(&s, &token, "TOML").await;
    let bad = r#"
[[devices]]
name = "fine"
driver = { protocol = "sim" }

[[devices]]
name = "bad-address"
driver = { protocol = "modbus", host = "127.0.0.1", port = 1 }
[[devices.tags]]
name = "t"
address = "hr:70000"
data_type = "u16"

[[devices]]
name = "too-fast"
poll_ms = 5
unit = "nowhere"
driver = { protocol = "sim" }
[[devices.tags]]
name = "x"
address = "counter"
[[devices.tags]]
name = "x"
address = "sine"
alarms = [{ name = "h", type = "high" }]

[[devices]]
name = "fine"
driver = { protocol = "sim" }
"#;
    for mode in ["MERGE", "REPLACE"] {
        let r = import(&s, &token, bad, mode, false).await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
        assert_eq!(
            paths(&r),
            [
                "devices[1].tags[0].address",
                "devices[2].unit",
                "devices[2].poll_ms",
                "devices[2].tags[1].name",
                "devices[2].tags[1].alarms[0]",
                "devices[3].name",
            ],
            "{r}"
        );
        let message = r["errors"][0]["message"].as_str().unwrap_or("");
        assert!(
            message.contains("setpoint") && message.contains("min_poll_ms"),
            "{message}"
        );
    }
    assert_eq!(export(&s, &token, "TOML").await, before, "nothing applied");
    // Unreadable documents say where.
    let r = import(
        &s,
        &token,
        "[[devices]]\nname = \"x\"\npol_ms = 5\n",
        "MERGE",
        false,
    )
    .await;
    assert_eq!(code(&r), "BAD_USER_INPUT");
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("pol_ms"),
        "{r}"
    );
    let r = import(
        &s,
        &token,
        r#"{"devices": [{"name": "x", "poll_ms": "fast", "driver": {"protocol": "sim"}}]}"#,
        "MERGE",
        false,
    )
    .await;
    assert_eq!(paths(&r), ["devices[0].poll_ms"], "{r}");
    // Another tenant's document, and what belongs to the file or the platform.
    let r = import(
        &s,
        &token,
        "name = \"globex\"\nquotas = { max_devices = 1 }\n",
        "MERGE",
        false,
    )
    .await;
    assert_eq!(paths(&r), ["name", "quotas"], "{r}");
    assert_eq!(export(&s, &token, "TOML").await, before, "nothing applied");
}

#[tokio::test]
async fn a_thousand_devices_in_one_import_all_run() {
    let (s, _dir) = start_with(|c| c.server.max_body_bytes = 4 * 1024 * 1024).await;
    let token = s.login("acme", "admin").await;
    let mut doc = String::new();
    for i in 0..1000 {
        doc.push_str(&format!(
            "[[devices]]\nname = \"bulk-{i:04}\"\npoll_ms = 1000\ndriver = {{ protocol = \"sim\" }}\n[[devices.tags]]\nname = \"v\"\naddress = \"counter\"\ndata_type = \"i64\"\n\n"
        ));
    }
    let started = Instant::now();
    let r = import(&s, &token, &doc, "MERGE", false).await;
    let took = started.elapsed();
    assert_eq!(
        r["data"]["importConfig"]["created"], 2000,
        "{}",
        r["errors"]
    );
    eventually(Duration::from_secs(60), "1000 devices online", || async {
        let d = s
            .data(
                &token,
                "{deviceCount(filter: {status: ONLINE, search: \"bulk-\"})}",
                json!({}),
            )
            .await;
        d["deviceCount"] == 1000
    })
    .await;
    // The timing is the benchmark's to measure (thermacore-loadtest import); here it is
    // only shown.
    eprintln!("import of 1000 devices answered in {took:?} (debug build)");
    // Paging through them.
    let mut after: Option<String> = None;
    let mut seen = 0;
    loop {
        let d = s
            .data(
                &token,
                "query($a: ID) { devices(filter: {search: \"BULK\"}, first: 300, after: $a) { id name tagCounts { total good } status { state } } }",
                json!({"a": after}),
            )
            .await;
        let page = d["devices"].as_array().expect("page").clone();
        if page.is_empty() {
            break;
        }
        for dev in &page {
            assert_eq!(dev["tagCounts"]["total"], 1, "{dev}");
        }
        seen += page.len();
        after = page
            .last()
            .and_then(|d| d["id"].as_str())
            .map(str::to_string);
    }
    assert_eq!(seen, 1000);
}

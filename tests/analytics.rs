//! The analytics queries end to end: `statistics`, `correlation`, `alarmAnalytics` and
//! `unitKpis` through a real server over SQLite, on history and alarm transitions
//! written to its store, checked against values worked out from that data; and
//! their refusals.

mod common;

use common::server::{self, TestServer};
use serde_json::{Value as Json, json};
use thermacore::alarms::{
    AlarmEvent, AlarmState, Condition, LimitKind, RuleKind, RuleSpec, Severity, StoredAlarm,
};
use thermacore::domain::{Quality, QualityReason, Role, RuleId, Sample, TagId, Timestamp, Value};
use thermacore::storage::{Store, StoredSample};

const PLANT: &str = r#"
[[tenants]]
name = "acme"
[[tenants.units]]
name = "plant"
[[tenants.units]]
name = "yard"
[[tenants.devices]]
name = "line"
unit = "plant"
enabled = false
poll_ms = 1000
driver = { protocol = "sim" }
[[tenants.devices.tags]]
name = "flow"
address = "sine"
[[tenants.devices.tags]]
name = "pressure"
address = "sine"
[[tenants.devices]]
name = "pump"
unit = "plant"
enabled = false
poll_ms = 1000
driver = { protocol = "sim" }
[[tenants.devices.tags]]
name = "speed"
address = "sine"
[[tenants.devices]]
name = "gate"
unit = "yard"
enabled = false
driver = { protocol = "sim" }
[[tenants.devices.tags]]
name = "position"
address = "sine"

[[tenants]]
name = "globex"
[[tenants.units]]
name = "secret"
"#;

const SEC: i64 = 1_000_000;
const HOUR: i64 = 3600 * SEC;

fn code(r: &Json) -> &str {
    r["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("<none>")
}

fn at(from: i64, k: i64) -> Timestamp {
    Timestamp(from + k * SEC)
}

fn sample(tag: TagId, t: Timestamp, v: f64, quality: Quality) -> Sample {
    Sample {
        tag,
        value: Value::F64(v),
        quality,
        source_time: t,
        server_time: t,
    }
}

/// flow: 10 + k/1000 every second, BAD every 100th; pressure: 2·flow + 1 with the
/// same BAD samples and nothing from 960 s to 1619 s (minutes 16 to 26); speed: good until 1799 s, lost
/// to communication at 1800 s, good again from 2400 s.
fn history(from: i64, flow: TagId, pressure: TagId, speed: TagId) -> Vec<Sample> {
    let mut out = Vec::new();
    for k in 0..3600 {
        let t = at(from, k);
        let v = 10.0 + k as f64 / 1000.0;
        let q = if k % 100 == 0 {
            Quality::Bad(QualityReason::DeviceError)
        } else {
            Quality::Good
        };
        out.push(sample(flow, t, if q.is_good() { v } else { 1e6 }, q));
        if !(960..1620).contains(&k) {
            out.push(sample(
                pressure,
                t,
                if q.is_good() { 2.0 * v + 1.0 } else { -1e6 },
                q,
            ));
        }
        match k {
            0..1800 | 2400.. => out.push(sample(speed, t, 50.0, Quality::Good)),
            1800 => out.push(sample(speed, t, 0.0, Quality::Bad(QualityReason::CommLost))),
            _ => {}
        }
    }
    out
}

fn rule(name: &str, severity: Severity) -> RuleSpec {
    RuleSpec {
        name: name.into(),
        kind: RuleKind::Limit {
            limit: LimitKind::High,
            setpoint: 10.0,
            deadband: 0.5,
        },
        severity,
        message: None,
        enabled: true,
        on_delay_ms: 0,
        off_delay_ms: 0,
    }
}

fn transition(
    rule: RuleId,
    tag: TagId,
    severity: Severity,
    t: Timestamp,
    active: bool,
) -> AlarmEvent {
    AlarmEvent {
        rule,
        tag,
        severity,
        from: if active {
            AlarmState::Normal
        } else {
            AlarmState::Unacked
        },
        alarm: StoredAlarm {
            state: if active {
                AlarmState::Unacked
            } else {
                AlarmState::RtnUnacked
            },
            condition: if active {
                Condition::Active
            } else {
                Condition::Clear
            },
            since: t,
            active_since: Some(t),
            value: Some(11.0),
            message: "high".into(),
            acked_by: None,
        },
        user: None,
        comment: None,
    }
}

struct Plant {
    s: TestServer,
    _dir: tempfile::TempDir,
    token: String,
    other: String,
    from: i64,
    tags: std::collections::HashMap<String, TagId>,
    units: std::collections::HashMap<String, String>,
}

async fn plant() -> Plant {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = server::config(PLANT, dir.path());
    let users = [
        ("acme", "viewer", Role::Viewer),
        ("globex", "admin", Role::Admin),
    ];
    let s = server::start(config.clone(), &users).await;
    s.wait_ready().await;
    let token = s.login("acme", "viewer").await;
    let other = s.login("globex", "admin").await;
    let store: std::sync::Arc<dyn Store> = thermacore::storage::connect(&config.storage.url, 1)
        .await
        .expect("store");
    let acme = store
        .tenant_by_name("acme")
        .await
        .expect("tenant")
        .expect("acme")
        .id;
    let tags: std::collections::HashMap<String, TagId> = store
        .tags(acme, None)
        .await
        .expect("tags")
        .into_iter()
        .map(|t| (t.spec.name, t.id))
        .collect();
    // Two hours ago, on the hour: a range wholly in the past.
    let from = (Timestamp::now().0 - 2 * HOUR).div_euclid(HOUR) * HOUR;
    let samples: Vec<StoredSample> = history(from, tags["flow"], tags["pressure"], tags["speed"])
        .into_iter()
        .map(|sample| StoredSample {
            tenant: acme,
            sample,
        })
        .collect();
    store.insert_samples(&samples).await.expect("insert");
    // flow-high chatters four times within 40 s at 100 s; speed-comm has been active
    // since 26 hours before the end of the range.
    let flow_high = store
        .upsert_alarm_rule(acme, tags["flow"], &rule("flow-high", Severity::High))
        .await
        .expect("rule");
    let speed = store
        .upsert_alarm_rule(acme, tags["speed"], &rule("speed-comm", Severity::Critical))
        .await
        .expect("rule");
    let mut events = vec![transition(
        speed.id,
        tags["speed"],
        Severity::Critical,
        Timestamp(from + HOUR - 26 * HOUR),
        true,
    )];
    for i in 0..4 {
        let t = at(from, 100 + i * 10);
        events.push(transition(
            flow_high.id,
            tags["flow"],
            Severity::High,
            t,
            true,
        ));
        events.push(transition(
            flow_high.id,
            tags["flow"],
            Severity::High,
            Timestamp(t.0 + 5 * SEC),
            false,
        ));
    }
    store
        .record_alarms(acme, &events, &[])
        .await
        .expect("record");
    let d = s.data(&token, "{units{id name}}", json!({})).await;
    let units = d["units"]
        .as_array()
        .expect("units")
        .iter()
        .map(|u| {
            (
                u["name"].as_str().unwrap_or("").to_string(),
                u["id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    Plant {
        s,
        _dir: dir,
        token,
        other,
        from,
        tags,
        units,
    }
}

fn time(t: i64) -> String {
    Timestamp(t).to_datetime().to_rfc3339()
}

fn close(v: &Json, want: f64, tol: f64) -> bool {
    v.as_f64().is_some_and(|v| (v - want).abs() <= tol)
}

#[tokio::test]
async fn statistics_correlation_alarm_analytics_and_unit_kpis_match_the_data() {
    let p = plant().await;
    let (s, token) = (&p.s, p.token.as_str());
    let (f, t) = (time(p.from), time(p.from + HOUR));
    let ids = json!([p.tags["flow"].to_string(), p.tags["pressure"].to_string()]);

    let q = "query($i:[ID!]!,$f:DateTime!,$t:DateTime!,$p:Float){statistics(tagIds:$i,from:$f,to:$t,expectedPeriodSeconds:$p){tagId count good bad numeric min max mean stddev p50 p95 p99 slopePerHour quality{score goodShare expectedPeriodSeconds gaps missingSeconds coverage staleSeconds commLostSeconds}}}";
    let d = s
        .data(token, q, json!({"i": ids, "f": f, "t": t, "p": 1.0}))
        .await;
    let flow = &d["statistics"][0];
    // The numbers, worked out from the good flow values.
    let mut good: Vec<f64> = (0..3600)
        .filter(|k| k % 100 != 0)
        .map(|k| 10.0 + k as f64 / 1000.0)
        .collect();
    let n = good.len() as f64;
    let mean = good.iter().sum::<f64>() / n;
    let sd = (good.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    good.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        let h = (good.len() - 1) as f64 * q;
        let lo = h.floor() as usize;
        good[lo] + (h - lo as f64) * (good[(lo + 1).min(good.len() - 1)] - good[lo])
    };
    assert_eq!(flow["tagId"], p.tags["flow"].to_string());
    assert_eq!(
        (flow["count"].as_u64(), flow["bad"].as_u64()),
        (Some(3600), Some(36))
    );
    assert_eq!(flow["numeric"], 3564);
    assert!(close(&flow["mean"], mean, 1e-9), "{flow}");
    assert!(close(&flow["stddev"], sd, 1e-9), "{flow}");
    assert!(close(&flow["min"], 10.001, 1e-12) && close(&flow["max"], 13.599, 1e-12));
    for (k, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
        assert!(close(&flow[k], pct(q), 1e-9), "{k}: {flow}");
    }
    // 0.001 per second is 3.6 per hour.
    assert!(close(&flow["slopePerHour"], 3.6, 1e-6), "{flow}");
    let fq = &flow["quality"];
    assert!(close(&fq["goodShare"], 0.99, 1e-12), "{fq}");
    assert_eq!(fq["gaps"], 0);
    assert!(close(&fq["score"], 0.99, 1e-12), "{fq}");
    // pressure: one gap of 661 s between 959 s and 1620 s, 660 s of it missing and
    // 656 s of it stale (the tag's limit is 5 s).
    let pq = &d["statistics"][1]["quality"];
    assert_eq!(pq["gaps"], 1, "{pq}");
    assert!(close(&pq["missingSeconds"], 660.0, 1e-9), "{pq}");
    assert!(close(&pq["coverage"], 1.0 - 660.0 / 3600.0, 1e-12), "{pq}");
    assert!(close(&pq["staleSeconds"], 656.0, 1e-9), "{pq}");
    // 2,940 samples, 29 of them BAD (the gap holds 7 of flow's 36).
    let want = (2911.0 / 2940.0) * (1.0 - 660.0 / 3600.0) * (1.0 - 656.0 / 3600.0);
    assert!(close(&pq["score"], want, 1e-12), "{pq}");
    // Without a period, the median interval (1 s) is taken.
    let d = s.data(token, q, json!({"i": ids, "f": f, "t": t})).await;
    assert_eq!(d["statistics"][1]["quality"]["expectedPeriodSeconds"], 1.0);

    // pressure = 2·flow + 1 wherever both have a value: r = 1, over the minutes both
    // have (60 less the 11 of the gap).
    let cq = "query($i:[ID!]!,$f:DateTime!,$t:DateTime!,$b:Int){correlation(tagIds:$i,from:$f,to:$t,bucketSeconds:$b){tagIds coefficients commonBuckets}}";
    let three = json!([
        p.tags["flow"].to_string(),
        p.tags["pressure"].to_string(),
        p.tags["speed"].to_string()
    ]);
    let d = s
        .data(token, cq, json!({"i": three, "f": f, "t": t, "b": 60}))
        .await;
    let c = &d["correlation"];
    assert!(close(&c["coefficients"][0][1], 1.0, 1e-9), "{c}");
    assert_eq!(c["coefficients"][1][0], c["coefficients"][0][1]);
    assert_eq!(c["commonBuckets"][0][1], 49, "{c}");
    assert!(c["coefficients"][0][2].is_null(), "speed is constant: {c}");

    // Alarm analytics: four activations of flow-high within a minute (chattering),
    // speed-comm standing for 26 hours, something active all the hour.
    let aq = "query($f:DateTime!,$t:DateTime!,$u:ID){alarmAnalytics(from:$f,to:$t,unitId:$u){activations perTenMinutes peakTenMinutes floodIntervals bySeverity{severity count} top{alarmId tagId activations mostInAMinute} chattering{tagId mostInAMinute} standing{tagId activeSeconds} timeInAlarmSeconds}}";
    let d = s.data(token, aq, json!({"f": f, "t": t})).await;
    let a = &d["alarmAnalytics"];
    assert_eq!(a["activations"], 4, "{a}");
    assert!(close(&a["perTenMinutes"], 4.0 / 6.0, 1e-12), "{a}");
    assert_eq!(a["peakTenMinutes"], 4);
    assert_eq!(a["floodIntervals"], 0);
    assert_eq!(
        a["bySeverity"][0],
        json!({"severity": "CRITICAL", "count": 0})
    );
    assert_eq!(a["bySeverity"][1], json!({"severity": "HIGH", "count": 4}));
    assert_eq!(a["top"][0]["tagId"], p.tags["flow"].to_string());
    assert_eq!(a["chattering"][0]["mostInAMinute"], 4);
    assert_eq!(a["standing"][0]["tagId"], p.tags["speed"].to_string());
    assert!(
        close(&a["standing"][0]["activeSeconds"], 26.0 * 3600.0, 1e-6),
        "{a}"
    );
    assert!(close(&a["timeInAlarmSeconds"], 3600.0, 1e-9), "{a}");
    let yard = s
        .data(token, aq, json!({"f": f, "t": t, "u": p.units["yard"]}))
        .await;
    assert_eq!(yard["alarmAnalytics"]["activations"], 0);
    assert_eq!(yard["alarmAnalytics"]["timeInAlarmSeconds"], 0.0);

    // The plant's KPIs: line's tags (flow always fresh, pressure 656 s stale) and
    // pump's speed (600 s lost to communication).
    let kq = "query($u:ID!,$f:DateTime!,$t:DateTime!){unitKpis(unitId:$u,from:$f,to:$t){availability devices{deviceId availability commLostSeconds staleSeconds} alarmActivations alarmsBySeverity{severity count} timeInAlarmSeconds timeInAlarmShare}}";
    let d = s
        .data(token, kq, json!({"u": p.units["plant"], "f": f, "t": t}))
        .await;
    let k = &d["unitKpis"];
    let devices = k["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 2, "{k}");
    let line = 1.0 - 656.0 / 3600.0 / 2.0;
    let pump = 1.0 - 600.0 / 3600.0;
    let mut avail: Vec<f64> = devices
        .iter()
        .filter_map(|d| d["availability"].as_f64())
        .collect();
    avail.sort_by(f64::total_cmp);
    assert!(
        (avail[0] - pump).abs() < 1e-9 && (avail[1] - line).abs() < 1e-9,
        "{k}"
    );
    assert!(close(&k["availability"], (line + pump) / 2.0, 1e-9), "{k}");
    assert_eq!(k["alarmActivations"], 4);
    assert!(close(&k["timeInAlarmShare"], 1.0, 1e-12), "{k}");
}

#[tokio::test]
async fn analytics_refuse_bad_input_and_other_tenants() {
    let p = plant().await;
    let (s, token) = (&p.s, p.token.as_str());
    let (f, t) = (time(p.from), time(p.from + HOUR));
    let flow = p.tags["flow"].to_string();
    let sq = "query($i:[ID!]!,$f:DateTime!,$t:DateTime!,$p:Float){statistics(tagIds:$i,from:$f,to:$t,expectedPeriodSeconds:$p){count}}";
    let cq = "query($i:[ID!]!,$f:DateTime!,$t:DateTime!,$b:Int){correlation(tagIds:$i,from:$f,to:$t,bucketSeconds:$b){tagIds}}";
    let kq =
        "query($u:ID!,$f:DateTime!,$t:DateTime!){unitKpis(unitId:$u,from:$f,to:$t){availability}}";
    let aq = "query($f:DateTime!,$t:DateTime!,$u:ID){alarmAnalytics(from:$f,to:$t,unitId:$u){activations}}";
    let ten_years = ("2016-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    let two = json!([flow, p.tags["pressure"].to_string()]);
    let cases = [
        (
            sq,
            json!({"i": [flow], "f": ten_years.0, "t": ten_years.1}),
            "BAD_USER_INPUT",
        ),
        (sq, json!({"i": [flow], "f": t, "t": f}), "BAD_USER_INPUT"),
        (
            sq,
            json!({"i": [flow], "f": f, "t": t, "p": -1.0}),
            "BAD_USER_INPUT",
        ),
        (sq, json!({"i": ["999999"], "f": f, "t": t}), "NOT_FOUND"),
        (cq, json!({"i": [flow], "f": f, "t": t}), "BAD_USER_INPUT"),
        (
            cq,
            json!({"i": two, "f": f, "t": t, "b": 0}),
            "BAD_USER_INPUT",
        ),
        (
            cq,
            json!({"i": two, "f": ten_years.0, "t": ten_years.1, "b": 1}),
            "BAD_USER_INPUT",
        ),
        (kq, json!({"u": "999999", "f": f, "t": t}), "NOT_FOUND"),
        (
            kq,
            json!({"u": p.units["plant"], "f": ten_years.0, "t": ten_years.1}),
            "BAD_USER_INPUT",
        ),
        (aq, json!({"f": t, "t": f}), "BAD_USER_INPUT"),
        (aq, json!({"f": f, "t": t, "u": "abc"}), "NOT_FOUND"),
    ];
    for (q, vars, want) in cases {
        let r = s.gql(Some(token), q, vars.clone()).await;
        assert_eq!(code(&r), want, "{vars}: {r}");
        assert!(r["data"].is_null(), "{r}");
    }
    // globex learns nothing of acme's tags and units.
    for (q, vars) in [
        (sq, json!({"i": [flow], "f": f, "t": t})),
        (kq, json!({"u": p.units["plant"], "f": f, "t": t})),
        (aq, json!({"f": f, "t": t, "u": p.units["plant"]})),
    ] {
        let r = s.gql(Some(&p.other), q, vars).await;
        assert_eq!(code(&r), "NOT_FOUND", "{r}");
    }
    // and its own alarm analytics are empty
    let r = s.data(&p.other, aq, json!({"f": f, "t": t})).await;
    assert_eq!(r["alarmAnalytics"]["activations"], 0);
}

//! Reading: the integrity poll at connect reads every point type, events arrive
//! unsolicited (or by class polls) in order with the outstation's timestamps, and
//! DNP3 flags become qualities.

use serde_json::json;
use thermacore::drivers::dnp3::PointKind;
use thermacore::drivers::dnp3::outstation::PointSpec;

use super::{ONLINE, device, feeder, outstation, quality, start, tag, value};
use crate::common::server::eventually;

fn sorted_values(h: &serde_json::Value) -> Vec<f64> {
    h["history"][0]["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .filter_map(|s| s["value"].as_f64())
        .collect()
}

#[tokio::test]
async fn integrity_poll_reads_every_point_type() {
    let (_o, site) = feeder("dnp3-integrity", "").await;
    site.wait_state("rtu", "ONLINE").await;
    eventually(super::WAIT, "every tag has its first value", || async {
        site.latest().await.values().all(|l| !l.is_null())
    })
    .await;
    let l = site.latest().await;
    assert_eq!(value(&l, "alarm"), json!(true));
    assert_eq!(value(&l, "breaker"), json!("on"));
    assert_eq!(value(&l, "breaker-code"), json!(2));
    assert_eq!(value(&l, "voltage"), json!(230.5));
    // Sent as a 32-bit integer (g30v1), scaled into the tag's engineering units.
    assert_eq!(value(&l, "current"), json!(12.0));
    assert_eq!(value(&l, "energy"), json!(42));
    assert_eq!(value(&l, "energy-frozen"), json!(40));
    assert_eq!(value(&l, "switch"), json!(false));
    assert_eq!(value(&l, "setpoint"), json!(11.0));
    for name in l.keys() {
        assert_eq!(quality(&l, name).0, "GOOD", "{name}");
    }
    assert!(
        site.s
            .metric_sum(
                "thermacore_dnp3_polls_total",
                "class=\"integrity\",outcome=\"ok\""
            )
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn unsolicited_events_arrive_in_order_with_device_time() {
    let (o, site) = feeder("dnp3-unsol", "").await;
    site.wait_state("rtu", "ONLINE").await;
    eventually(super::WAIT, "first voltage", || async {
        value(&site.latest().await, "voltage") == json!(230.5)
    })
    .await;
    let before = chrono::Utc::now();
    // Five changes beyond the deadband in quick succession, one inside it. (A few ms
    // apart: DNP3 times have millisecond resolution, and the history orders by time.)
    for v in [231.0, 232.0, 233.0, 234.0, 235.0, 235.2] {
        o.update(PointKind::AnalogInput, 0, v, ONLINE);
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    eventually(super::WAIT, "the last change arrives", || async {
        value(&site.latest().await, "voltage") == json!(235.0)
    })
    .await;
    let l = site.latest().await;
    let source: chrono::DateTime<chrono::Utc> = l["voltage"]["sourceTime"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("source time");
    assert!(
        source >= before - chrono::Duration::seconds(1) && source <= chrono::Utc::now(),
        "the event carries the outstation's time: {source}"
    );
    // Every event is kept, in the order the outstation recorded them.
    let id = site.id("voltage").await;
    let q = "query($i:[ID!]!,$f:DateTime!,$t:DateTime!){history(tagIds:$i,from:$f,to:$t){samples{value}}}";
    let vars = json!({"i": [id], "f": "2000-01-01T00:00:00Z", "t": "2100-01-01T00:00:00Z"});
    let mut got = Vec::new();
    for _ in 0..100 {
        let h = site.s.data(&site.admin, q, vars.clone()).await;
        got = sorted_values(&h);
        if got.ends_with(&[231.0, 232.0, 233.0, 234.0, 235.0]) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        got.ends_with(&[231.0, 232.0, 233.0, 234.0, 235.0]),
        "history: {got:?}"
    );
    assert!(
        site.s
            .metric_sum("thermacore_dnp3_unsolicited_fragments_total", "")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn class_polls_read_events_without_unsolicited() {
    let o = outstation(super::feeder_points()).await;
    let driver =
        ", unsolicited = false, class1_poll_ms = 200, class2_poll_ms = 200, class3_poll_ms = 200";
    let tags = [
        tag("voltage", "ai:0", "f64", ""),
        tag("energy", "counter:0", "u32", ""),
    ];
    let site = start("dnp3-class", &[device("rtu", &o.endpoint(), driver, &tags)]).await;
    site.wait_state("rtu", "ONLINE").await;
    o.update(PointKind::AnalogInput, 0, 240.0, ONLINE);
    o.update(PointKind::Counter, 0, 50.0, ONLINE);
    eventually(super::WAIT, "class polls bring the events", || async {
        let l = site.latest().await;
        value(&l, "voltage") == json!(240.0) && value(&l, "energy") == json!(50)
    })
    .await;
    for class in ["class1", "class3"] {
        let ok = format!("class=\"{class}\",outcome=\"ok\"");
        assert!(
            site.s.metric_sum("thermacore_dnp3_polls_total", &ok).await >= 1.0,
            "{class} polled"
        );
    }
}

#[tokio::test]
async fn flags_become_qualities() {
    let (o, site) = feeder("dnp3-flags", "").await;
    site.wait_state("rtu", "ONLINE").await;
    eventually(super::WAIT, "first values", || async {
        !site.latest().await["voltage"].is_null()
    })
    .await;
    // COMM_LOST, LOCAL_FORCED, CHATTER_FILTER, OVER_RANGE, and ONLINE cleared.
    o.update(PointKind::AnalogInput, 0, 250.0, ONLINE | 0x04);
    o.update(PointKind::AnalogOutput, 0, 12.0, ONLINE | 0x10);
    o.update(PointKind::BinaryInput, 0, 0.0, ONLINE | 0x20);
    o.update(PointKind::AnalogInput, 1, 1300.0, ONLINE | 0x20);
    o.update(PointKind::Counter, 0, 43.0, 0x00);
    let expect = [
        ("voltage", "BAD", "comm_lost"),
        ("setpoint", "UNCERTAIN", "forced"),
        ("alarm", "UNCERTAIN", "chatter_filter"),
        ("current", "BAD", "out_of_range"),
        ("energy", "BAD", "out_of_service"),
    ];
    eventually(super::WAIT, "the flags arrive as qualities", || async {
        let l = site.latest().await;
        expect
            .iter()
            .all(|(t, q, r)| quality(&l, t) == (q.to_string(), r.to_string()))
    })
    .await;
    // The value is still the device's.
    assert_eq!(value(&site.latest().await, "setpoint"), json!(12.0));
    // A device with Bad points still answers: it stays ONLINE.
    assert_eq!(site.state("rtu").await, "ONLINE");
}

#[tokio::test]
async fn time_sync_answers_need_time_only_when_configured() {
    let asks = || {
        super::outstation_with(
            vec![PointSpec::new(PointKind::AnalogInput, 0, 1, 1.0)],
            |s| s.need_time = true,
        )
    };
    let (lan, non_lan, none) = (asks().await, asks().await, asks().await);
    let tags = |name: &str| [tag(&format!("v-{name}"), "ai:0", "f64", "")];
    let site = start(
        "dnp3-time",
        &[
            device(
                "lan",
                &lan.endpoint(),
                ", time_sync = \"lan\"",
                &tags("lan"),
            ),
            device(
                "non-lan",
                &non_lan.endpoint(),
                ", time_sync = \"non_lan\"",
                &tags("non-lan"),
            ),
            device(
                "none",
                &none.endpoint(),
                ", time_sync = \"none\"",
                &tags("none"),
            ),
        ],
    )
    .await;
    for (name, o) in [("lan", &lan), ("non-lan", &non_lan)] {
        eventually(super::WAIT, &format!("{name} writes the time"), || async {
            !o.time_writes().is_empty()
        })
        .await;
        // Loopback: the time written is the master's clock, which is the outstation's.
        let w = o.time_writes()[0];
        let off = w.written_ms.abs_diff(w.received_ms);
        assert!(off < 1000, "{name}: time written {off} ms off");
    }
    site.wait_state("none", "ONLINE").await;
    // NEED_TIME is on every response of `none`; a later event's response comes after
    // the one a time sync would have followed.
    none.update(PointKind::AnalogInput, 0, 2.0, ONLINE);
    eventually(super::WAIT, "the event after NEED_TIME", || async {
        value(&site.latest().await, "v-none") == json!(2.0)
    })
    .await;
    assert_eq!(none.time_writes(), [], "time_sync = none wrote the time");
    assert!(
        site.s
            .metric_sum("thermacore_dnp3_iin_total", "bit=\"need_time\"")
            .await
            >= 1.0
    );
}

//! JSON and plain payloads: pointers, timestamps, qualities, wildcards, templates, and
//! every kind of bad input (counted by reason, tags Bad where mapped, nothing lost).

use serde_json::json;

use super::{PublishUntil, Site, WAIT, device, quality, start, tag, value};
use crate::common::mqtt::{self as broker, Peer};
use crate::common::server::eventually;

#[tokio::test]
async fn pointers_timestamps_qualities_wildcards_and_plain_payloads() {
    let b = broker::broker();
    let p = broker::prefix("json");
    let tags = [
        tag(
            "supply",
            &format!("topic={p}/boiler;value=/supply"),
            "f64",
            "",
        ),
        tag(
            "nested",
            &format!("topic={p}/boiler;value=/loop/temps/1"),
            "i32",
            "",
        ),
        tag(
            "running",
            &format!("topic={p}/boiler;value=/pump/on"),
            "bool",
            "",
        ),
        tag(
            "mode",
            &format!("topic={p}/boiler;value=/mode"),
            "string",
            "",
        ),
        tag(
            "scaled",
            &format!("topic={p}/boiler;value=/raw"),
            "u16",
            "scale = 0.1",
        ),
        tag(
            "rfc_time",
            &format!("topic={p}/other;value=/v;time=/at"),
            "f64",
            "",
        ),
        tag("level", &format!("topic={p}/plain/level"), "f64", ""),
        tag("state", &format!("topic={p}/plain/state"), "string", ""),
        tag("any_flow", &format!("topic={p}/+/flow;value=/v"), "f64", ""),
    ];
    let site = start(
        "mqtt-json",
        &[device(
            "gw",
            &b,
            &format!(", topics = [\"{p}/#\"], time = \"/ts\", quality = \"/q\""),
            &tags,
        )],
    )
    .await;
    site.wait_state("gw", "ONLINE").await;
    let peer = Peer::connect(&b.host, b.port).await;
    let doc = json!({
        "ts": 1_700_000_000_000u64, "q": "good", "supply": 71.5, "raw": 215,
        "loop": {"temps": [1, -7]}, "pump": {"on": true}, "mode": "auto"
    });
    site.publish_until(
        &peer,
        &format!("{p}/boiler"),
        doc.to_string().as_bytes(),
        "boiler values",
        |l| value(l, "supply") == json!(71.5),
    )
    .await;
    let l = site.latest().await;
    assert_eq!(value(&l, "nested"), json!(-7));
    assert_eq!(value(&l, "running"), json!(true));
    assert_eq!(value(&l, "mode"), json!("auto"));
    assert_eq!(value(&l, "scaled"), json!(21.5));
    // The device's time pointer: epoch milliseconds.
    assert_eq!(
        l["supply"]["sourceTime"],
        json!("2023-11-14T22:13:20+00:00")
    );
    assert_eq!(quality(&l, "supply").0, "GOOD");

    // A tag's own time pointer, RFC 3339 with an offset; a quality of bad.
    let other = json!({"v": 3.25, "at": "2024-01-02T03:04:05.250+01:00", "q": "bad"});
    site.publish_until(
        &peer,
        &format!("{p}/other"),
        other.to_string().as_bytes(),
        "rfc time",
        |l| value(l, "rfc_time") == json!(3.25),
    )
    .await;
    let l = site.latest().await;
    assert_eq!(
        l["rfc_time"]["sourceTime"],
        json!("2024-01-02T02:04:05.250+00:00")
    );
    assert_eq!(
        quality(&l, "rfc_time"),
        ("BAD".into(), "device_flag".into())
    );

    // Plain payloads: a number with whitespace, and text.
    site.publish_until(
        &peer,
        &format!("{p}/plain/level"),
        b" 4.5\n",
        "plain level",
        |l| value(l, "level") == json!(4.5),
    )
    .await;
    site.publish_until(
        &peer,
        &format!("{p}/plain/state"),
        b"running",
        "plain text",
        |l| value(l, "state") == json!("running"),
    )
    .await;
    // A wildcard tag takes the value of every matching topic.
    site.publish_until(
        &peer,
        &format!("{p}/a/flow"),
        br#"{"v": 1.0}"#,
        "flow a",
        |l| value(l, "any_flow") == json!(1.0),
    )
    .await;
    site.publish_until(
        &peer,
        &format!("{p}/b/flow"),
        br#"{"v": 2.0}"#,
        "flow b",
        |l| value(l, "any_flow") == json!(2.0),
    )
    .await;
}

#[tokio::test]
async fn templates_create_one_tag_per_topic_segment_within_the_limit() {
    let b = broker::broker();
    let p = broker::prefix("templates");
    let driver = format!(
        ", templates = [{{ topic = \"{p}/site/{{unit}}/temperature\", name = \"{{unit}}.temperature\", data_type = \"f64\", eng_unit = \"°C\" }}, {{ topic = \"{p}/site/{{unit}}/status\", name = \"{{unit}}.status\", value = \"/state\", data_type = \"string\" }}], max_discovered_tags = 3"
    );
    let site = start("mqtt-templates", &[device("sites", &b, &driver, &[])]).await;
    site.wait_state("sites", "ONLINE").await;
    let peer = Peer::connect(&b.host, b.port).await;
    site.publish_until(
        &peer,
        &format!("{p}/site/north/temperature"),
        b"18.5",
        "north",
        |l| value(l, "north.temperature") == json!(18.5),
    )
    .await;
    // Subscribed now: one message creates the tag and is its first value (kept while
    // the tag is being created).
    peer.publish(&format!("{p}/site/south/temperature"), b"21".to_vec())
        .await;
    eventually(WAIT, "south from its first message", || async {
        value(&site.latest().await, "south.temperature") == json!(21.0)
    })
    .await;
    site.publish_until(
        &peer,
        &format!("{p}/site/north/status"),
        br#"{"state": "ok"}"#,
        "status",
        |l| value(l, "north.status") == json!("ok"),
    )
    .await;
    // The fourth would exceed max_discovered_tags: not created, and nothing breaks.
    for _ in 0..5 {
        peer.publish(&format!("{p}/site/east/temperature"), b"9".to_vec())
            .await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let ids = site.ids().await;
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(!ids.contains_key("east.temperature"));
    // The created tags keep their unit and are in the store (ids stable).
    let d = site
        .s
        .data(&site.admin, "{tags{name engUnit address}}", json!({}))
        .await;
    let north = d["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .find(|t| t["name"] == "north.temperature")
        .cloned()
        .expect("north tag");
    assert_eq!(north["engUnit"], "°C");
    assert_eq!(
        north["address"],
        format!("topic={p}/site/north/temperature")
    );
    // A value for a created tag arrives after creation, too.
    site.publish_until(
        &peer,
        &format!("{p}/site/north/temperature"),
        b"19.25",
        "north again",
        |l| value(l, "north.temperature") == json!(19.25),
    )
    .await;
}

async fn parse_failures(site: &Site, reason: &str) -> f64 {
    site.s
        .metric_sum(
            "thermacore_mqtt_parse_failures_total",
            &format!("reason=\"{reason}\""),
        )
        .await
}

#[tokio::test]
async fn bad_input_is_counted_by_reason_and_marks_mapped_tags_bad() {
    let b = broker::broker();
    let p = broker::prefix("bad");
    let tags = [
        tag("t", &format!("topic={p}/dev;value=/t"), "f64", ""),
        tag("small", &format!("topic={p}/dev;value=/s"), "i16", ""),
        tag("plain", &format!("topic={p}/plain"), "f64", ""),
    ];
    let site = start(
        "mqtt-bad",
        &[device(
            "dev",
            &b,
            &format!(", topics = [\"{p}/#\"], max_payload_bytes = 1024"),
            &tags,
        )],
    )
    .await;
    site.wait_state("dev", "ONLINE").await;
    let peer = Peer::connect(&b.host, b.port).await;
    let topic = format!("{p}/dev");
    site.publish_until(
        &peer,
        &topic,
        br#"{"t": 1.5, "s": 3}"#,
        "first values",
        |l| value(l, "t") == json!(1.5) && value(l, "small") == json!(3),
    )
    .await;

    // Malformed JSON: both tags of the topic Bad/bad_response, value kept.
    let before = parse_failures(&site, "malformed_json").await;
    peer.publish(&topic, b"{\"t\": 1.5,".to_vec()).await;
    eventually(WAIT, "malformed JSON marks the tags bad", || async {
        quality(&site.latest().await, "t") == ("BAD".into(), "bad_response".into())
    })
    .await;
    assert_eq!(
        value(&site.latest().await, "t"),
        json!(1.5),
        "the last value is kept"
    );
    assert!(parse_failures(&site, "malformed_json").await > before);

    // A value of the wrong type (or out of the tag's range) marks that tag only.
    site.publish_until(
        &peer,
        &topic,
        br#"{"t": 2.5, "s": 70000}"#,
        "wrong type",
        |l| {
            value(l, "t") == json!(2.5)
                && quality(l, "small") == ("BAD".into(), "type_mismatch".into())
        },
    )
    .await;
    site.publish_until(
        &peer,
        &topic,
        br#"{"t": "warm", "s": 4}"#,
        "text for a number",
        |l| {
            value(l, "small") == json!(4)
                && quality(l, "t") == ("BAD".into(), "type_mismatch".into())
        },
    )
    .await;
    assert!(parse_failures(&site, "wrong_type").await >= 2.0);

    // A field left out is no loss (gateways publish what changed).
    site.publish_until(&peer, &topic, br#"{"t": 3.5}"#, "partial update", |l| {
        value(l, "t") == json!(3.5) && quality(l, "small").0 == "GOOD"
    })
    .await;

    // Over the size limit: refused, counted, tags Bad.
    let big = format!("{{\"t\": 9.0, \"pad\": \"{}\"}}", "x".repeat(2000));
    let before = parse_failures(&site, "too_large").await;
    peer.publish(&topic, big.into_bytes()).await;
    eventually(WAIT, "a payload over the limit is counted", || async {
        parse_failures(&site, "too_large").await > before
    })
    .await;
    let l = site.latest().await;
    assert_eq!(value(&l, "t"), json!(3.5));
    assert_eq!(quality(&l, "t"), ("BAD".into(), "bad_response".into()));

    // Not UTF-8 on a plain topic; a topic that matches no tag.
    let before = parse_failures(&site, "not_utf8").await;
    peer.publish(&format!("{p}/plain"), vec![0xff, 0xfe, 0x00])
        .await;
    eventually(WAIT, "not UTF-8 counted", || async {
        parse_failures(&site, "not_utf8").await > before
    })
    .await;
    let before = parse_failures(&site, "unmatched_topic").await;
    peer.publish(&format!("{p}/nobody/listens"), b"1".to_vec())
        .await;
    eventually(WAIT, "unmatched topic counted", || async {
        parse_failures(&site, "unmatched_topic").await > before
    })
    .await;
    // Still alive and taking values.
    site.publish_until(&peer, &topic, br#"{"t": 4.5, "s": 5}"#, "recovered", |l| {
        value(l, "t") == json!(4.5) && quality(l, "t").0 == "GOOD"
    })
    .await;
    assert_eq!(site.state("dev").await, "ONLINE");
}

#[tokio::test]
async fn messages_are_counted_once_per_message_by_tenant_and_outcome() {
    let b = broker::broker();
    let p = broker::prefix("count");
    let tags = [tag("v", &format!("topic={p}/v;value=/v"), "f64", "")];
    let site = start("mqtt-count", &[device("counter", &b, "", &tags)]).await;
    site.wait_state("counter", "ONLINE").await;
    let peer = Peer::connect(&b.host, b.port).await;
    site.publish_until(
        &peer,
        &format!("{p}/v"),
        br#"{"v": 0}"#,
        "subscribed",
        |l| value(l, "v") == json!(0.0),
    )
    .await;
    let labels = "tenant=\"mqtt-count\",outcome=\"ok\"";
    let before = site
        .s
        .metric_sum("thermacore_mqtt_messages_total", labels)
        .await;
    for i in 1..=25 {
        peer.publish(&format!("{p}/v"), format!("{{\"v\": {i}}}").into_bytes())
            .await;
    }
    eventually(WAIT, "the last message arrives", || async {
        value(&site.latest().await, "v") == json!(25.0)
    })
    .await;
    let after = site
        .s
        .metric_sum("thermacore_mqtt_messages_total", labels)
        .await;
    assert_eq!(after - before, 25.0, "each message counted exactly once");
}

async fn count(s: &Site, tenant: &str) -> f64 {
    s.s.metric_sum(
        "thermacore_mqtt_messages_total",
        &format!("tenant=\"{tenant}\",outcome=\"ok\""),
    )
    .await
}

#[tokio::test]
async fn a_shared_subscription_splits_a_topic_between_two_servers() {
    let b = broker::broker();
    let p = broker::prefix("share");
    let group = format!("g{}", uuid::Uuid::new_v4().simple());
    let driver = format!(", share_group = \"{group}\", qos = 1");
    let tags = [tag("v", &format!("topic={p}/v;value=/v"), "f64", "")];
    let one = start("mqtt-share-1", &[device("node", &b, &driver, &tags)]).await;
    let two = start("mqtt-share-2", &[device("node", &b, &driver, &tags)]).await;
    one.wait_state("node", "ONLINE").await;
    two.wait_state("node", "ONLINE").await;
    let peer = Peer::connect(&b.host, b.port).await;
    // Both subscriptions are in place once each server has received something.
    let start_ = std::time::Instant::now();
    let mut i = 0;
    loop {
        i += 1;
        peer.publish(&format!("{p}/v"), format!("{{\"v\": {i}}}").into_bytes())
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let (a, b_) = (one.latest().await, two.latest().await);
        if !value(&a, "v").is_null() && !value(&b_, "v").is_null() {
            break;
        }
        assert!(start_.elapsed() < WAIT, "both shared subscribers receive");
    }
    let (a0, b0) = (
        count(&one, "mqtt-share-1").await,
        count(&two, "mqtt-share-2").await,
    );
    for n in 0..40 {
        peer.publish(
            &format!("{p}/v"),
            format!("{{\"v\": {}}}", 1000 + n).into_bytes(),
        )
        .await;
    }
    eventually(WAIT, "all 40 delivered once between the two", || async {
        let a = count(&one, "mqtt-share-1").await - a0;
        let b = count(&two, "mqtt-share-2").await - b0;
        a + b >= 40.0
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let a = count(&one, "mqtt-share-1").await - a0;
    let b = count(&two, "mqtt-share-2").await - b0;
    assert_eq!(
        a + b,
        40.0,
        "each message to one member of the group only ({a} + {b})"
    );
    assert!(a > 0.0 && b > 0.0, "both members take a share ({a} + {b})");
}

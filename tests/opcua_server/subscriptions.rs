//! Subscriptions: values and statuses set on the server reach monitored items, also a
//! change right after another (which async-opcua holds back), and a removed node.

use tokio::sync::mpsc::UnboundedReceiver;

use super::*;

/// A subscription (publishing every 100 ms) with one monitored item on `id`; returns
/// its notifications.
async fn monitor(
    session: &ClientSession,
    server: &RunningServer,
    id: &str,
    sampling_interval: f64,
    filter: ExtensionObject,
) -> UnboundedReceiver<DataValue> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let sub = session
        .create_subscription(
            Duration::from_millis(100),
            100,
            20,
            0,
            0,
            true,
            DataChangeCallback::new(move |dv, _item| {
                let _ = tx.send(dv);
            }),
        )
        .await
        .expect("subscription");
    let item = MonitoredItemCreateRequest {
        item_to_monitor: read_id(server.node_id(id), AttributeId::Value),
        monitoring_mode: MonitoringMode::Reporting,
        requested_parameters: MonitoringParameters {
            sampling_interval,
            queue_size: 10,
            discard_oldest: true,
            filter,
            ..Default::default()
        },
    };
    let created = session
        .create_monitored_items(sub, TimestampsToReturn::Both, vec![item])
        .await
        .expect("monitored item");
    assert_eq!(created[0].result.status_code, StatusCode::Good);
    rx
}

async fn next(rx: &mut UnboundedReceiver<DataValue>) -> DataValue {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a notification in time")
        .expect("the subscription is alive")
}

#[tokio::test]
async fn subscriptions_hear_set_value_and_set_status() {
    let server = peer::test_server(|_| {}).await;
    let session = anonymous(&server).await;
    // Without a filter async-opcua reports value changes only, not a status change
    // alone (the spec's default trigger is StatusValue): ask for it.
    let status_value = ExtensionObject::from_message(DataChangeFilter {
        trigger: DataChangeTrigger::StatusValue,
        deadband_type: DeadbandType::None as u32,
        deadband_value: 0.0,
    });
    let mut rx = monitor(&session, &server, "Double", 100.0, status_value).await;
    assert_eq!(next(&mut rx).await.value, Some(Variant::Double(42.25)));
    server.set_value("Double", Variant::Double(55.5));
    assert_eq!(next(&mut rx).await.value, Some(Variant::Double(55.5)));
    server.set_status("Double", StatusCode::BadSensorFailure);
    let bad = next(&mut rx).await;
    assert_eq!(bad.status(), StatusCode::BadSensorFailure);
    assert_eq!(bad.value, Some(Variant::Double(55.5)), "the value stays");
    server.set_values(&[
        ("Double", Variant::Double(1.0)),
        ("Int32", Variant::Int32(7)),
    ]);
    let good = next(&mut rx).await;
    assert_eq!(
        (good.status(), good.value),
        (StatusCode::Good, Some(Variant::Double(1.0)))
    );
    // The last value of a burst arrives, however quiet the node is afterwards.
    for v in [2.0, 3.0, 4.0] {
        server.set_value("Double", Variant::Double(v));
    }
    while next(&mut rx).await.value != Some(Variant::Double(4.0)) {}
}

/// async-opcua holds back a change that comes within a sampling interval of the last
/// one and, left alone, sends it only with the node's next change; the server's nudges
/// let it out (here a second after the first, with a 1 s sampling interval).
#[tokio::test]
async fn a_change_right_after_another_still_arrives() {
    let server = peer::test_server(|_| {}).await;
    let session = anonymous(&server).await;
    let mut rx = monitor(&session, &server, "Double", 1000.0, ExtensionObject::null()).await;
    server.set_value("Double", Variant::Double(1.0));
    server.set_value("Double", Variant::Double(2.0));
    while next(&mut rx).await.value != Some(Variant::Double(2.0)) {}
}

#[tokio::test]
async fn a_removed_variable_is_reported_to_its_monitored_items() {
    let server = peer::test_server(|_| {}).await;
    let session = anonymous(&server).await;
    let mut rx = monitor(&session, &server, "UInt16", 100.0, ExtensionObject::null()).await;
    assert_eq!(next(&mut rx).await.value, Some(Variant::UInt16(16_000)));
    server.remove_variable("UInt16");
    assert_eq!(next(&mut rx).await.status(), StatusCode::BadNodeIdUnknown);
}

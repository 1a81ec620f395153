//! The embedded OPC UA server seen from the async-opcua client: reads of every data
//! type, identities, secure channels with trusted certificates, subscriptions, writes
//! (and the type check a PLC makes), removed nodes, a restart on the same port, and the
//! operation limits. Shared fixtures are here; identities and security are in
//! `tests/opcua_server/security.rs`, subscriptions in `tests/opcua_server/subscriptions.rs`.

mod common;
#[path = "opcua_server/security.rs"]
mod security;
#[path = "opcua_server/subscriptions.rs"]
mod subscriptions;

use std::time::{Duration, Instant};

use common::opcua::{self as peer, ClientSession, TestServer};
use common::server::eventually;
use opcua::client::DataChangeCallback;
use opcua::crypto::SecurityPolicy;
use opcua::types::{
    AttributeId, DataChangeFilter, DataChangeTrigger, DataValue, DeadbandType, ExtensionObject,
    MessageSecurityMode, MonitoredItemCreateRequest, MonitoringMode, MonitoringParameters, NodeId,
    ReadValueId, StatusCode, TimestampsToReturn, Variant, WriteValue,
};
use thermacore::drivers::opcua::server::{RunningServer, ServerSpec, VariableSpec, data_type_of};

const NONE: (SecurityPolicy, MessageSecurityMode) =
    (SecurityPolicy::None, MessageSecurityMode::None);

fn read_id(node_id: NodeId, attribute: AttributeId) -> ReadValueId {
    ReadValueId {
        node_id,
        attribute_id: attribute as u32,
        ..Default::default()
    }
}

async fn read(session: &ClientSession, server: &RunningServer, ids: &[&str]) -> Vec<DataValue> {
    let nodes: Vec<_> = ids
        .iter()
        .map(|id| read_id(server.node_id(id), AttributeId::Value))
        .collect();
    session
        .read(&nodes, TimestampsToReturn::Both, 0.0)
        .await
        .expect("read")
}

fn write_value(server: &RunningServer, id: &str, value: Variant) -> WriteValue {
    WriteValue {
        node_id: server.node_id(id),
        attribute_id: AttributeId::Value as u32,
        value: DataValue {
            value: Some(value),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn anonymous(server: &RunningServer) -> ClientSession {
    peer::connect(server, NONE.0, NONE.1, peer::anonymous())
        .await
        .expect("anonymous session")
}

#[tokio::test]
async fn anonymous_reads_every_data_type_with_its_data_type() {
    peer::material();
    let started = Instant::now();
    let server = peer::test_server(|_| {}).await;
    eprintln!("server start (shared keypair): {:?}", started.elapsed());
    let session = anonymous(&server).await;
    let vars = peer::standard_variables();
    let ids: Vec<&str> = vars.iter().map(|v| v.id.as_str()).collect();
    let values = read(&session, &server, &ids).await;
    for (v, dv) in vars.iter().zip(&values) {
        assert_eq!(dv.status(), StatusCode::Good, "{}", v.id);
        assert_eq!(dv.value.as_ref(), Some(&v.value), "{}", v.id);
        assert!(dv.source_timestamp.is_some() && dv.server_timestamp.is_some());
    }
    let types: Vec<_> = vars
        .iter()
        .map(|v| read_id(server.node_id(&v.id), AttributeId::DataType))
        .collect();
    let types = session
        .read(&types, TimestampsToReturn::Neither, 0.0)
        .await
        .expect("read data types");
    for (v, dv) in vars.iter().zip(types) {
        let expected = data_type_of(&v.value).map(|t| Variant::NodeId(Box::new(t.into())));
        assert_eq!(dv.value, expected, "{}", v.id);
    }
    // Namespace-qualified: the index the server reports is the one in the NodeIds.
    let ns = session
        .read(
            &[read_id(
                NodeId::new(0, 2255u32), // Server_NamespaceArray
                AttributeId::Value,
            )],
            TimestampsToReturn::Neither,
            0.0,
        )
        .await
        .expect("namespace array");
    let Some(Variant::Array(array)) = ns[0].value.clone() else {
        panic!("no namespace array: {:?}", ns[0]);
    };
    assert_eq!(
        array.values.get(usize::from(server.namespace_index())),
        Some(&Variant::from(peer::NAMESPACE))
    );
}

#[tokio::test]
async fn writes_land_and_a_wrong_type_is_refused() {
    let server = peer::test_server(|_| {}).await;
    let session = anonymous(&server).await;
    let mut writes = server.writes();
    let results = session
        .write(&[
            write_value(&server, "Double", Variant::Double(12.5)),
            write_value(&server, "Bool", Variant::Boolean(false)),
            write_value(&server, "String", Variant::from("bye")),
        ])
        .await
        .expect("write");
    assert_eq!(results, vec![StatusCode::Good; 3]);
    let landed = server.value("Double").expect("Double");
    assert_eq!(landed.value, Some(Variant::Double(12.5)));
    assert_eq!(landed.status(), StatusCode::Good);
    assert_eq!(
        writes.try_recv().expect("a write seen"),
        ("Double".to_string(), Variant::Double(12.5))
    );
    let refused = session
        .write(&[
            write_value(&server, "Double", Variant::Int32(5)),
            write_value(&server, "Double", Variant::Float(5.0)),
            write_value(&server, "Int32", Variant::Int64(5)),
            write_value(&server, "Double", Variant::Empty),
            write_value(&server, "UInt32", Variant::UInt32(1)),
            write_value(&server, "Nope", Variant::Double(1.0)),
        ])
        .await
        .expect("write");
    assert_eq!(
        refused,
        vec![
            StatusCode::BadTypeMismatch,
            StatusCode::BadTypeMismatch,
            StatusCode::BadTypeMismatch,
            StatusCode::BadTypeMismatch,
            StatusCode::BadUserAccessDenied,
            StatusCode::BadNodeIdUnknown,
        ]
    );
    assert_eq!(
        read(&session, &server, &["Double", "Int32", "UInt32"])
            .await
            .into_iter()
            .map(|dv| dv.value)
            .collect::<Vec<_>>(),
        vec![
            Some(Variant::Double(12.5)),
            Some(Variant::Int32(-320_000)),
            Some(Variant::UInt32(3_200_000))
        ],
        "refused writes leave the values alone"
    );
}

#[tokio::test]
async fn removed_variables_are_unknown_and_added_ones_readable() {
    let server = peer::test_server(|_| {}).await;
    let session = anonymous(&server).await;
    server.remove_variable("Int16");
    let dv = &read(&session, &server, &["Int16"]).await[0];
    assert_eq!(dv.status(), StatusCode::BadNodeIdUnknown);
    server.set_value("Int16", Variant::Int16(1)); // harmless
    server.add_variables(vec![
        VariableSpec::new("Late", Variant::UInt16(9)).in_folder("More"),
    ]);
    let dv = &read(&session, &server, &["Late"]).await[0];
    assert_eq!(dv.value, Some(Variant::UInt16(9)));
}

#[tokio::test]
async fn a_stopped_server_starts_again_on_the_same_port() {
    let server = peer::test_server(|_| {}).await;
    let addr = server.local_addr();
    {
        let session = anonymous(&server).await;
        assert_eq!(
            read(&session, &server, &["Byte"]).await[0].value,
            Some(Variant::Byte(200))
        );
        server.set_value("Byte", Variant::Byte(1));
        let stopped = server.stop().await;
        eventually(
            Duration::from_secs(10),
            "the session sees the server go",
            || {
                let ended = session.event_loop.is_finished();
                async move { ended }
            },
        )
        .await;
        let server: TestServer = stopped.start().await.expect("starts on the same port");
        assert_eq!(server.local_addr(), addr);
        let session = anonymous(&server).await;
        let dv = &read(&session, &server, &["Byte"]).await[0];
        assert_eq!(dv.value, Some(Variant::Byte(200)), "initial values again");
        let server = server.restart().await;
        assert_eq!(server.local_addr(), addr);
        let session = anonymous(&server).await;
        assert_eq!(
            read(&session, &server, &["Bool"]).await[0].status(),
            StatusCode::Good
        );
    }
}

#[tokio::test]
async fn low_operation_limits_are_enforced() {
    let server = peer::test_server(|s: &mut ServerSpec| {
        s.limits.max_nodes_per_read = 5;
        s.limits.max_nodes_per_write = 2;
        s.limits.max_monitored_items_per_sub = 3;
    })
    .await;
    let session = anonymous(&server).await;
    let ids = ["Bool", "SByte", "Byte", "Int16", "UInt16", "Int32"];
    let nodes: Vec<_> = ids
        .iter()
        .map(|id| read_id(server.node_id(id), AttributeId::Value))
        .collect();
    let five = session
        .read(&nodes[..5], TimestampsToReturn::Both, 0.0)
        .await
        .expect("5 nodes");
    assert_eq!(five.len(), 5);
    let six = session.read(&nodes, TimestampsToReturn::Both, 0.0).await;
    assert_eq!(
        six.map(|_| ()).map_err(|e| e.status()),
        Err(StatusCode::BadTooManyOperations)
    );
    let three_writes: Vec<_> = ["Double", "Bool", "Float"]
        .iter()
        .map(|id| {
            write_value(
                &server,
                id,
                server.value(id).and_then(|d| d.value).unwrap_or_default(),
            )
        })
        .collect();
    let w = session.write(&three_writes).await;
    assert_eq!(
        w.map(|_| ()).map_err(|e| e.status()),
        Err(StatusCode::BadTooManyOperations)
    );

    let sub = session
        .create_subscription(
            Duration::from_millis(100),
            100,
            20,
            0,
            0,
            true,
            DataChangeCallback::new(|_, _| {}),
        )
        .await
        .expect("subscription");
    let item = |id: &str| MonitoredItemCreateRequest {
        item_to_monitor: read_id(server.node_id(id), AttributeId::Value),
        monitoring_mode: MonitoringMode::Reporting,
        requested_parameters: MonitoringParameters {
            sampling_interval: 100.0,
            queue_size: 1,
            ..Default::default()
        },
    };
    let three = session
        .create_monitored_items(
            sub,
            TimestampsToReturn::Both,
            ids[..3].iter().map(|i| item(i)).collect(),
        )
        .await
        .expect("3 items");
    assert!(
        three
            .iter()
            .all(|r| r.result.status_code == StatusCode::Good)
    );
    let fourth = session
        .create_monitored_items(sub, TimestampsToReturn::Both, vec![item(ids[3])])
        .await;
    assert_eq!(
        fourth.map(|_| ()).map_err(|e| e.status()),
        Err(StatusCode::BadTooManyMonitoredItems)
    );
}

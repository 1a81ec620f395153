//! The tenant actor's side of a change, driven directly: a device whose read plan its
//! driver refuses is reported as not applied and shows why, never runs an old plan;
//! the other devices of the change are applied.

use std::sync::Arc;
use std::time::Duration;

use ractor::Actor;
use ractor::rpc::CallResult;
use thermacore::actors::historian::HistorianHandle;
use thermacore::actors::supervision::RestartPolicy;
use thermacore::actors::tenant::{DeviceWorld, TenantActor, TenantArgs, TenantMsg, Touched};
use thermacore::actors::{Runtime, TenantShared};
use thermacore::config::{CacheConfig, HistorianConfig, SupervisionConfig};
use thermacore::domain::{
    DataType, Device, DeviceId, DeviceSpec, Tag, TagId, TagSpec, Tenant, TenantId,
};
use thermacore::drivers::DriverConfig;

fn sim(id: i64, tenant: TenantId, address: &str) -> Arc<DeviceWorld> {
    Arc::new(DeviceWorld {
        device: Device {
            id: DeviceId(id),
            tenant,
            spec: DeviceSpec {
                name: format!("d{id}"),
                unit: None,
                enabled: true,
                poll_ms: 20,
                driver: DriverConfig::Sim(Default::default()),
                security: Default::default(),
            },
        },
        tags: vec![Tag {
            id: TagId(id * 10),
            tenant,
            device: DeviceId(id),
            spec: TagSpec {
                name: "t".into(),
                unit: None,
                address: address.into(),
                data_type: DataType::I64,
                scale: 1.0,
                offset: 0.0,
                eng_unit: None,
                deadband: 0.0,
                writable: false,
            },
        }],
    })
}

#[tokio::test]
async fn a_device_the_driver_refuses_is_reported_and_shows_the_error() {
    let store = thermacore::storage::connect("sqlite::memory:", 1)
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    let tenant = Tenant {
        id: TenantId(1),
        name: "t".into(),
    };
    let shared = Arc::new(TenantShared::new(tenant.clone()));
    let historian = Arc::new(HistorianHandle::new(HistorianConfig::default()));
    let args = TenantArgs {
        shared: shared.clone(),
        devices: vec![sim(1, tenant.id, "counter")],
        historian: historian.clone(),
        runtime: Arc::new(Runtime::new(historian)),
        store,
        policy: RestartPolicy::from(&SupervisionConfig::default()),
        cache: CacheConfig::default(),
        name_prefix: "reconfigure-test".into(),
    };
    let (actor, handle) = Actor::spawn(None, TenantActor, args).await.expect("tenant");
    // Device 2's tag has an address the sim driver refuses: the checks of an API change
    // would not let it through, the actor must still not pretend it runs.
    let devices = vec![sim(1, tenant.id, "counter"), sim(2, tenant.id, "noise")];
    let report = actor
        .call(
            |reply| TenantMsg::Reconfigure {
                devices,
                touched: Touched::default(),
                reply,
            },
            Some(Duration::from_secs(30)),
        )
        .await
        .expect("call");
    let CallResult::Success(report) = report else {
        panic!("no answer: {report:?}");
    };
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].0, DeviceId(2));
    assert!(report.failed[0].1.contains("read plan"), "{report:?}");
    let status = shared.status.get(&DeviceId(2)).expect("status").clone();
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("noise")),
        "{status:?}"
    );
    assert!(status.groups.is_empty(), "no plan to run: {status:?}");
    // Device 1 was not touched: it kept polling all along.
    let polls = shared
        .status
        .get(&DeviceId(1))
        .map(|s| s.polls)
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let later = shared
        .status
        .get(&DeviceId(1))
        .map(|s| s.polls)
        .unwrap_or(0);
    assert!(later > polls, "{polls} → {later}");
    actor.stop(None);
    let _ = handle.await;
}

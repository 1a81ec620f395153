//! Tags created at run time, through the real catalog on SQLite: imports (idempotent,
//! name clashes, the quota, an earlier life of the actor) and announcements, with a
//! driver that answers imports from a table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::actors::TenantShared;
use crate::actors::device::deadband::Deadbands;
use crate::actors::historian::HistorianHandle;
use crate::actors::tenant::DeviceWorld;
use crate::config::{CacheConfig, HistorianConfig};
use crate::domain::{DataType, DeviceSpec, Quotas};
use crate::drivers::{
    Driver, DriverConfig, DriverSink, Error, PlanSummary, ReadReport, sim::SimConfig,
};
use crate::storage::{self, Store};

/// Answers imports from `nodes` (node → name, address `node`); records what it maps.
struct TableDriver {
    nodes: HashMap<String, String>,
    mapped: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Driver for TableDriver {
    fn plan(&mut self, _tags: &[Tag], _period: u64) -> Result<PlanSummary, Error> {
        Ok(PlanSummary::default())
    }

    fn add_tags(&mut self, tags: &[Tag]) -> Result<(), Error> {
        let mut mapped = self.mapped.lock().expect("lock");
        mapped.extend(tags.iter().map(|t| t.spec.name.clone()));
        Ok(())
    }

    async fn connect(&mut self, _sink: DriverSink) -> Result<(), Error> {
        Ok(())
    }

    async fn read(
        &mut self,
        _: usize,
        _: Timestamp,
        _: &mut Vec<Sample>,
    ) -> Result<ReadReport, Error> {
        Ok(ReadReport::default())
    }

    async fn write(&mut self, tag: &Tag, _value: &Value) -> Result<WriteReport, Error> {
        Err(Error::NotWritable(tag.spec.name.clone()))
    }

    async fn disconnect(&mut self) {}

    async fn import(&mut self, nodes: &[String]) -> Result<Vec<ImportedNode>, Error> {
        Ok(nodes
            .iter()
            .map(|n| match self.nodes.get(n) {
                Some(name) => Ok(TagSpec {
                    name: name.clone(),
                    unit: None,
                    address: n.clone(),
                    data_type: DataType::F64,
                    scale: 1.0,
                    offset: 0.0,
                    eng_unit: None,
                    deadband: 0.0,
                    writable: false,
                }),
                None => Err(format!("{n}: no such node")),
            })
            .collect())
    }
}

/// A device with one configured tag (`configured`, address `ns=2;s=Configured`) in a
/// fresh SQLite store, the tenant limited to `max_tags`.
struct Plant {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    world: Arc<DeviceWorld>,
    shared: Arc<TenantShared>,
    catalog: Arc<TagCatalog>,
}

impl Plant {
    async fn new(max_tags: u32) -> Plant {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite:{}", dir.path().join("t.db").display());
        let store = storage::connect(&url, 2).await.expect("store");
        store.migrate().await.expect("migrate");
        let tenant = store.upsert_tenant("t").await.expect("tenant");
        let spec = DeviceSpec {
            name: "plc".into(),
            unit: None,
            enabled: true,
            poll_ms: 1_000,
            driver: DriverConfig::Sim(SimConfig::default()),
            security: Default::default(),
        };
        let device = store.upsert_device(tenant.id, &spec).await.expect("device");
        let mut configured = spec_of("configured", "ns=2;s=Configured");
        configured.writable = true;
        let configured = store
            .upsert_tag(tenant.id, device.id, &configured)
            .await
            .expect("tag");
        let shared = Arc::new(TenantShared::new(tenant));
        shared.tag_devices.insert(configured.id, device.id);
        let quotas = Quotas {
            max_tags,
            ..Quotas::default()
        };
        Plant {
            catalog: Arc::new(TagCatalog::new(store.clone(), quotas)),
            world: Arc::new(DeviceWorld {
                device,
                tags: vec![configured],
            }),
            store,
            shared,
            _dir: dir,
        }
    }

    /// A new life of the device's actor, its driver knowing `nodes` (node, name).
    fn actor(&self, nodes: &[(&str, &str)]) -> (DeviceState, Arc<Mutex<Vec<String>>>) {
        let mapped = Arc::new(Mutex::new(Vec::new()));
        let driver = TableDriver {
            nodes: nodes
                .iter()
                .map(|(n, name)| (n.to_string(), name.to_string()))
                .collect(),
            mapped: mapped.clone(),
        };
        let cache = CacheConfig::default();
        let st = DeviceState {
            deadband: Deadbands::new(&self.world.tags, |_| 1_000, &cache),
            world: self.world.clone(),
            driver: Box::new(driver),
            shared: self.shared.clone(),
            historian: Arc::new(HistorianHandle::new(HistorianConfig::default())),
            planned: true,
            connected: true,
            run: 0,
            groups: Vec::new(),
            reconnect_backoff: Duration::ZERO,
            announced: Vec::new(),
            by_exception: false,
            catalog: Some(self.catalog.clone()),
            cache,
        };
        (st, mapped)
    }

    async fn stored(&self) -> Vec<Tag> {
        self.store
            .tags(self.shared.tenant.id, Some(self.world.device.id))
            .await
            .expect("tags")
    }
}

fn spec_of(name: &str, address: &str) -> TagSpec {
    TagSpec {
        name: name.into(),
        unit: None,
        address: address.into(),
        data_type: DataType::F64,
        scale: 1.0,
        offset: 0.0,
        eng_unit: None,
        deadband: 0.0,
        writable: false,
    }
}

fn nodes(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| n.to_string()).collect()
}

fn names(tags: &[Tag]) -> Vec<&str> {
    tags.iter().map(|t| t.spec.name.as_str()).collect()
}

const NODES: &[(&str, &str)] = &[
    ("ns=2;s=A", "a"),
    ("ns=2;s=B", "b"),
    ("ns=2;s=C", "c"),
    ("ns=2;s=Elsewhere", "configured"),
    ("ns=2;s=Configured", "configured"),
];

#[tokio::test]
async fn importing_a_node_again_returns_its_tag_and_creates_nothing() {
    let plant = Plant::new(0).await;
    let (mut st, mapped) = plant.actor(NODES);
    let first = DeviceActor::import(&mut st, nodes(&["ns=2;s=A", "ns=2;s=B"]))
        .await
        .expect("import");
    assert_eq!(names(&first.created), ["a", "b"]);
    assert!(
        first.existing.is_empty() && first.errors.is_empty(),
        "{first:?}"
    );
    for t in &first.created {
        assert_eq!(
            plant.shared.tag_devices.get(&t.id).map(|d| *d),
            Some(st.id())
        );
        assert!(st.tag(t.id).is_some());
    }
    assert_eq!(*mapped.lock().expect("lock"), ["a", "b"]);

    let again = DeviceActor::import(&mut st, nodes(&["ns=2;s=A", "ns=2;s=Configured"]))
        .await
        .expect("import");
    assert!(again.created.is_empty(), "{again:?}");
    assert!(again.errors.is_empty(), "{again:?}");
    assert_eq!(names(&again.existing), ["a", "configured"]);
    assert_eq!(again.existing[0].id, first.created[0].id);
    // The configured tag is untouched (still writable, as configured).
    assert!(again.existing[1].spec.writable);
    assert_eq!(plant.stored().await.len(), 3);
    assert_eq!(st.announced.len(), 2);
    assert_eq!(
        mapped.lock().expect("lock").len(),
        2,
        "nothing mapped twice"
    );
}

#[tokio::test]
async fn a_name_another_address_holds_is_refused_and_that_tag_kept() {
    let plant = Plant::new(0).await;
    let (mut st, _) = plant.actor(NODES);
    let out = DeviceActor::import(&mut st, nodes(&["ns=2;s=Elsewhere"]))
        .await
        .expect("import");
    assert!(out.created.is_empty() && out.existing.is_empty(), "{out:?}");
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].node, "ns=2;s=Elsewhere");
    assert!(
        out.errors[0].message.contains("another address"),
        "{:?}",
        out.errors[0]
    );
    let stored = plant.stored().await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].spec.address, "ns=2;s=Configured");
}

#[tokio::test]
async fn a_node_twice_in_one_call_is_imported_once() {
    let plant = Plant::new(0).await;
    let (mut st, _) = plant.actor(NODES);
    let out = DeviceActor::import(&mut st, nodes(&["ns=2;s=A", "ns=2;s=A"]))
        .await
        .expect("import");
    assert_eq!(names(&out.created), ["a"]);
    assert!(out.errors.is_empty() && out.existing.is_empty(), "{out:?}");
    assert_eq!(plant.stored().await.len(), 2);
}

#[tokio::test]
async fn the_quota_refuses_the_nodes_beyond_it_in_order() {
    // One configured tag, room for one more.
    let plant = Plant::new(2).await;
    let (mut st, _) = plant.actor(NODES);
    let asked = nodes(&["ns=2;s=A", "ns=2;s=Unknown", "ns=2;s=B", "ns=2;s=C"]);
    let out = DeviceActor::import(&mut st, asked).await.expect("import");
    assert_eq!(names(&out.created), ["a"]);
    let errors: Vec<&str> = out.errors.iter().map(|e| e.node.as_str()).collect();
    assert_eq!(errors, ["ns=2;s=Unknown", "ns=2;s=B", "ns=2;s=C"]);
    assert!(out.errors[0].message.contains("no such node"), "{out:?}");
    for e in &out.errors[1..] {
        assert!(e.message.contains("max_tags quota (2)"), "{e:?}");
    }
    assert_eq!(plant.stored().await.len(), 2);
    // At the quota, importing an imported node still answers its tag.
    let again = DeviceActor::import(&mut st, nodes(&["ns=2;s=A"]))
        .await
        .expect("import");
    assert_eq!(names(&again.existing), ["a"]);
    assert!(again.errors.is_empty(), "{again:?}");
}

#[tokio::test]
async fn tags_imported_by_an_earlier_life_are_mapped_again() {
    let plant = Plant::new(0).await;
    let (mut first, _) = plant.actor(NODES);
    let created = DeviceActor::import(&mut first, nodes(&["ns=2;s=A"]))
        .await
        .expect("import")
        .created;
    drop(first);
    let (mut second, mapped) = plant.actor(NODES);
    let out = DeviceActor::import(&mut second, nodes(&["ns=2;s=A"]))
        .await
        .expect("import");
    assert_eq!(out.existing, created);
    assert_eq!(*mapped.lock().expect("lock"), ["a"]);
    assert!(second.tag(created[0].id).is_some());
}

#[tokio::test]
async fn announced_tags_go_the_same_way() {
    let plant = Plant::new(0).await;
    let (mut st, mapped) = plant.actor(&[]);
    DeviceActor::announced(&mut st, vec![spec_of("north", "topic=site/north")]).await;
    assert_eq!(names(&st.announced), ["north"]);
    assert_eq!(*mapped.lock().expect("lock"), ["north"]);
    assert_eq!(plant.stored().await.len(), 2);
    assert!(plant.shared.tag_devices.get(&st.announced[0].id).is_some());
}

#[tokio::test]
async fn without_a_catalog_imports_are_refused() {
    let plant = Plant::new(0).await;
    let (mut st, _) = plant.actor(NODES);
    st.catalog = None;
    let e = DeviceActor::import(&mut st, nodes(&["ns=2;s=A"])).await;
    assert!(matches!(e, Err(drivers::Error::Unsupported(_))), "{e:?}");
}

//! Conformance: a batch of configuration writes (`apply_world`) is one transaction,
//! resolves references to objects it writes itself, stays within its tenant, and never
//! gives a new object the id of a deleted one.

use thermacore::alarms::{LimitKind, RuleKind, RuleSpec, Severity};
use thermacore::domain::{DataType, DeviceSpec, TagSpec, UnitId, UnitSpec};
use thermacore::drivers::DriverConfig;
use thermacore::manage::Stored;
use thermacore::storage::{
    DeviceWrite, Error, Ref, RuleWrite, Store, TagWrite, UnitWrite, WorldChanges,
};

use super::world::World;

/// Applies a batch, and checks that the world read back is the one the live
/// configuration works out without reading it (`Stored::apply`).
async fn apply(
    store: &dyn Store,
    t: thermacore::domain::TenantId,
    batch: &WorldChanges,
) -> thermacore::storage::WrittenIds {
    let mut expected = Stored::load(store, t).await.expect("before");
    let written = store.apply_world(t, batch).await.expect("batch");
    expected.apply(t, batch, &written);
    let after = Stored::load(store, t).await.expect("after");
    assert_eq!(
        after, expected,
        "the world worked out differs from the one stored"
    );
    written
}

fn unit(name: &str) -> UnitSpec {
    UnitSpec {
        name: name.into(),
        location: None,
        description: Some("a unit".into()),
    }
}

fn device(name: &str, poll_ms: u64) -> DeviceSpec {
    DeviceSpec {
        name: name.into(),
        unit: None,
        enabled: true,
        poll_ms,
        driver: DriverConfig::Sim(Default::default()),
        security: Default::default(),
    }
}

fn tag(name: &str) -> TagSpec {
    TagSpec {
        name: name.into(),
        unit: None,
        address: "counter".into(),
        data_type: DataType::I64,
        scale: 1.0,
        offset: 0.0,
        eng_unit: Some("pcs".into()),
        deadband: 0.0,
        writable: false,
    }
}

fn rule(name: &str, setpoint: f64) -> RuleSpec {
    RuleSpec {
        name: name.into(),
        kind: RuleKind::Limit {
            limit: LimitKind::High,
            setpoint,
            deadband: 0.5,
        },
        severity: Severity::High,
        message: None,
        enabled: true,
        on_delay_ms: 0,
        off_delay_ms: 0,
    }
}

pub async fn changes(store: &dyn Store, w: &World) {
    let t = store.upsert_tenant("changes").await.expect("tenant").id;
    // One batch: a unit, a device in it, two tags on the device (one in the unit), a
    // rule on a tag: each referring to what the batch writes before it.
    let batch = WorldChanges {
        units: vec![UnitWrite {
            id: None,
            spec: unit("station"),
        }],
        devices: vec![DeviceWrite {
            id: None,
            unit: Some(Ref::Written(0)),
            spec: device("pump", 500),
        }],
        tags: vec![
            TagWrite {
                id: None,
                device: Ref::Written(0),
                unit: Some(Ref::Written(0)),
                spec: tag("flow"),
            },
            TagWrite {
                id: None,
                device: Ref::Written(0),
                unit: None,
                spec: tag("level"),
            },
        ],
        rules: vec![RuleWrite {
            id: None,
            tag: Ref::Written(0),
            spec: rule("hot", 80.0),
        }],
        ..WorldChanges::default()
    };
    let ids = apply(store, t, &batch).await;
    let (u, d) = (ids.units[0], ids.devices[0]);
    let stored_device = store.device(t, d).await.expect("read").expect("device");
    assert_eq!(stored_device.spec.unit, Some(u));
    assert_eq!(stored_device.spec.poll_ms, 500);
    let tags = store.tags(t, Some(d)).await.expect("tags");
    assert_eq!(tags.iter().map(|t| t.id).collect::<Vec<_>>(), ids.tags);
    assert_eq!(tags[0].spec.unit, Some(u));
    let rules = store.alarm_rules(t).await.expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!((rules[0].id, rules[0].tag), (ids.rules[0], ids.tags[0]));

    // Updates by id: a rename keeps the id.
    let batch = WorldChanges {
        devices: vec![DeviceWrite {
            id: Some(d),
            unit: None,
            spec: device("pump-renamed", 250),
        }],
        tags: vec![TagWrite {
            id: Some(ids.tags[1]),
            device: Ref::Stored(d),
            unit: Some(Ref::Stored(u)),
            spec: tag("level-2"),
        }],
        rules: vec![RuleWrite {
            id: Some(ids.rules[0]),
            tag: Ref::Stored(ids.tags[0]),
            spec: rule("hot", 90.0),
        }],
        ..WorldChanges::default()
    };
    apply(store, t, &batch).await;
    let renamed = store.device(t, d).await.expect("read").expect("device");
    assert_eq!(
        (renamed.spec.name.as_str(), renamed.spec.unit),
        ("pump-renamed", None)
    );
    let level = store.tags(t, Some(d)).await.expect("tags");
    assert_eq!(level[1].spec.name, "level-2");
    assert_eq!(level[1].spec.unit, Some(u));
    let rules = store.alarm_rules(t).await.expect("rules");
    assert_eq!(rules[0].spec, rule("hot", 90.0));

    // All or nothing: a name taken at the end undoes the whole batch.
    let batch = WorldChanges {
        units: vec![UnitWrite {
            id: None,
            spec: unit("station-2"),
        }],
        devices: vec![
            DeviceWrite {
                id: None,
                unit: None,
                spec: device("new-one", 1000),
            },
            DeviceWrite {
                id: None,
                unit: None,
                spec: device("pump-renamed", 1000),
            },
        ],
        ..WorldChanges::default()
    };
    let r = store.apply_world(t, &batch).await;
    assert!(matches!(r, Err(Error::Conflict(_))), "{r:?}");
    assert_eq!(store.units(t).await.expect("units").len(), 1);
    assert_eq!(store.devices(t).await.expect("devices").len(), 1);

    // Another tenant's objects are out of reach, by any id.
    let b_device = w.b_tag.device;
    for batch in [
        WorldChanges {
            delete_tags: vec![w.b_tag.id],
            ..WorldChanges::default()
        },
        WorldChanges {
            delete_devices: vec![b_device],
            ..WorldChanges::default()
        },
        WorldChanges {
            devices: vec![DeviceWrite {
                id: Some(b_device),
                unit: None,
                spec: device("stolen", 10),
            }],
            ..WorldChanges::default()
        },
        WorldChanges {
            tags: vec![TagWrite {
                id: None,
                device: Ref::Stored(b_device),
                unit: None,
                spec: tag("x"),
            }],
            ..WorldChanges::default()
        },
        WorldChanges {
            tags: vec![TagWrite {
                id: None,
                device: Ref::Stored(d),
                unit: Some(Ref::Stored(UnitId(i64::MAX))),
                spec: tag("y"),
            }],
            ..WorldChanges::default()
        },
    ] {
        let r = store.apply_world(t, &batch).await;
        assert!(matches!(r, Err(Error::NotFound(_))), "{batch:?}: {r:?}");
    }
    let b_tags = store.tags(w.b.id, None).await.expect("b's tags");
    assert!(
        b_tags.iter().any(|g| g.id == w.b_tag.id),
        "b's tag still there"
    );

    // Deleting a unit detaches what was in it; deleting a device deletes its tags and
    // their rules.
    let newest_tag = *ids.tags.iter().max().expect("tags");
    let newest_rule = ids.rules[0];
    let delete_unit = WorldChanges {
        delete_units: vec![u],
        ..WorldChanges::default()
    };
    apply(store, t, &delete_unit).await;
    let detached = store.tags(t, Some(d)).await.expect("tags");
    assert!(
        detached.iter().all(|g| g.spec.unit.is_none()),
        "{detached:?}"
    );
    let delete_device = WorldChanges {
        delete_devices: vec![d],
        ..WorldChanges::default()
    };
    apply(store, t, &delete_device).await;
    let r = store.apply_world(t, &delete_device).await;
    assert!(matches!(r, Err(Error::NotFound(_))), "deleted twice: {r:?}");
    assert!(store.devices(t).await.expect("devices").is_empty());
    assert!(store.tags(t, None).await.expect("tags").is_empty());
    assert!(store.alarm_rules(t).await.expect("rules").is_empty());

    // The next objects get new ids, never the deleted ones (SQLite would reuse the
    // largest id of a table once its row is gone).
    let again = WorldChanges {
        units: vec![UnitWrite {
            id: None,
            spec: unit("station"),
        }],
        devices: vec![DeviceWrite {
            id: None,
            unit: None,
            spec: device("pump", 500),
        }],
        tags: vec![TagWrite {
            id: None,
            device: Ref::Written(0),
            unit: None,
            spec: tag("flow"),
        }],
        rules: vec![RuleWrite {
            id: None,
            tag: Ref::Written(0),
            spec: rule("hot", 80.0),
        }],
        ..WorldChanges::default()
    };
    let fresh = apply(store, t, &again).await;
    assert!(fresh.units[0] > u && fresh.devices[0] > d, "{fresh:?}");
    assert!(
        fresh.tags[0] > newest_tag && fresh.rules[0] > newest_rule,
        "{fresh:?}"
    );
    // The upserts of the config file and the catalog keep to it too.
    let spec = tag("announced");
    let upserted = store
        .upsert_tag(t, fresh.devices[0], &spec)
        .await
        .expect("upsert");
    assert!(upserted.id > fresh.tags[0]);
}

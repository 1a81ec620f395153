//! Conformance, part one: tenants, users, units, devices and tags, upserted twice and
//! checked for tenant isolation.

use thermacore::domain::{
    DataType, Device, DeviceCredentials, DeviceSpec, Location, OpenedSecurity, Role, Tag, TagSpec,
    Tenant, TenantId, UnitId, UnitSpec, UserId,
};
use thermacore::drivers::DriverConfig;
use thermacore::drivers::sim::SimConfig;
use thermacore::secrets::{Secret, SecretKey};
use thermacore::storage::{Error, Store};

/// What the world part sets up for the history part.
pub struct World {
    pub a: Tenant,
    pub b: Tenant,
    /// Tenant A's tags of each kind: f64, i64, bool, string.
    pub tags: [Tag; 4],
    pub b_tag: Tag,
}

fn device_spec(name: &str, unit: Option<UnitId>) -> DeviceSpec {
    DeviceSpec {
        name: name.to_string(),
        unit,
        enabled: true,
        poll_ms: 1000,
        driver: DriverConfig::Sim(SimConfig {
            seed: 7,
            generated_tags: 3,
            ..SimConfig::default()
        }),
        security: Default::default(),
    }
}

fn tag_spec(name: &str, data_type: DataType) -> TagSpec {
    TagSpec {
        name: name.to_string(),
        unit: None,
        address: "sine:period=60".to_string(),
        data_type,
        scale: 1.0,
        offset: 0.0,
        eng_unit: None,
        deadband: 0.0,
        writable: false,
    }
}

fn not_found<T: std::fmt::Debug>(r: Result<T, Error>, what: &str) {
    assert!(matches!(r, Err(Error::NotFound(_))), "{what}: {r:?}");
}

pub async fn world(store: &dyn Store) -> World {
    let a = store.upsert_tenant("acme").await.expect("tenant a");
    assert_eq!(store.upsert_tenant("acme").await.expect("again"), a);
    let b = store.upsert_tenant("globex").await.expect("tenant b");
    assert_ne!(a.id, b.id);
    assert_eq!(
        store.tenant_by_name("acme").await.expect("by name"),
        Some(a.clone())
    );
    assert_eq!(store.tenant_by_name("nope").await.expect("by name"), None);
    assert_eq!(
        store.tenants().await.expect("tenants"),
        vec![a.clone(), b.clone()]
    );

    // Units: upsert by name updates in place.
    let mut unit_spec = UnitSpec {
        name: "boiler-house".to_string(),
        location: Some(Location::new(45.07, 7.68).expect("location")),
        description: Some("main plant".to_string()),
    };
    let unit = store.upsert_unit(a.id, &unit_spec).await.expect("unit");
    unit_spec.location = None;
    unit_spec.description = None;
    let unit2 = store
        .upsert_unit(a.id, &unit_spec)
        .await
        .expect("unit again");
    assert_eq!((unit2.id, unit2.tenant), (unit.id, a.id));
    assert_eq!(store.units(a.id).await.expect("units"), vec![unit2.clone()]);
    assert!(store.units(b.id).await.expect("units of b").is_empty());
    not_found(
        store.upsert_unit(TenantId(987_654), &unit_spec).await,
        "unit of no tenant",
    );

    // Devices: same, and B can neither see A's device nor attach one to A's unit.
    let mut spec = device_spec("plc-1", Some(unit.id));
    let device = store.upsert_device(a.id, &spec).await.expect("device");
    spec.enabled = false;
    spec.poll_ms = 250;
    // Security settings round-trip, secrets sealed.
    let key = SecretKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("key");
    spec.security = OpenedSecurity {
        require_tls: true,
        tls: None,
        credentials: Some(DeviceCredentials {
            username: "op".into(),
            password: Some(Secret::new("pw")),
        }),
    }
    .seal(&key)
    .expect("seal");
    let device2 = store
        .upsert_device(a.id, &spec)
        .await
        .expect("device again");
    assert_eq!(device2.id, device.id);
    let expected = Device {
        id: device.id,
        tenant: a.id,
        spec: spec.clone(),
    };
    assert_eq!(
        store.device(a.id, device.id).await.expect("device"),
        Some(expected.clone())
    );
    assert_eq!(store.devices(a.id).await.expect("devices"), vec![expected]);
    assert_eq!(
        store.device(b.id, device.id).await.expect("device of b"),
        None
    );
    assert!(store.devices(b.id).await.expect("devices of b").is_empty());
    not_found(
        store
            .upsert_device(b.id, &device_spec("x", Some(unit.id)))
            .await,
        "A's unit",
    );
    let b_device = store
        .upsert_device(b.id, &device_spec("plc-1", None))
        .await
        .expect("b");
    assert_ne!(b_device.id, device.id);

    // Tags: upsert by (device, name); only onto the tenant's own devices and units.
    let mut temp = tag_spec("temp", DataType::F64);
    temp.unit = Some(unit.id);
    let tag = store.upsert_tag(a.id, device.id, &temp).await.expect("tag");
    temp.scale = 1.5;
    temp.offset = -2.0;
    temp.eng_unit = Some("°C".to_string());
    temp.deadband = 0.1;
    temp.writable = true;
    temp.address = "ramp:period=120,min=0,max=100".to_string();
    let tag2 = store
        .upsert_tag(a.id, device.id, &temp)
        .await
        .expect("tag again");
    assert_eq!(tag2.id, tag.id);
    assert_eq!((tag2.tenant, tag2.device), (a.id, device.id));
    not_found(
        store.upsert_tag(b.id, device.id, &temp).await,
        "B onto A's device",
    );
    not_found(
        store.upsert_tag(a.id, b_device.id, &temp).await,
        "A onto B's device",
    );
    not_found(
        store.upsert_tag(b.id, b_device.id, &temp).await,
        "B with A's unit",
    );
    let tags = [
        tag2,
        store
            .upsert_tag(a.id, device.id, &tag_spec("count", DataType::I64))
            .await
            .expect("i64"),
        store
            .upsert_tag(a.id, device.id, &tag_spec("run", DataType::Bool))
            .await
            .expect("bool"),
        store
            .upsert_tag(a.id, device.id, &tag_spec("mode", DataType::String))
            .await
            .expect("s"),
    ];
    assert_eq!(store.tags(a.id, None).await.expect("tags"), tags.to_vec());
    assert_eq!(
        store
            .tags(a.id, Some(device.id))
            .await
            .expect("tags of device"),
        tags.to_vec()
    );
    assert!(
        store
            .tags(a.id, Some(b_device.id))
            .await
            .expect("B's device")
            .is_empty()
    );
    assert!(
        store
            .tags(b.id, Some(device.id))
            .await
            .expect("A's device")
            .is_empty()
    );
    let b_tag = store
        .upsert_tag(b.id, b_device.id, &tag_spec("temp", DataType::F64))
        .await
        .expect("b tag");
    assert_eq!(
        store.tags(b.id, None).await.expect("b tags"),
        vec![b_tag.clone()]
    );
    World { a, b, tags, b_tag }
}

pub async fn users(store: &dyn Store, w: &World) {
    let alice = store
        .create_user(w.a.id, "alice", "h1", Role::Admin)
        .await
        .expect("alice");
    assert_eq!(
        (alice.tenant, alice.role, alice.disabled),
        (w.a.id, Role::Admin, false)
    );
    assert_eq!(alice.password_hash, "h1");
    let again = store.create_user(w.a.id, "alice", "h2", Role::Viewer).await;
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
    let b_alice = store
        .create_user(w.b.id, "alice", "hb", Role::Operator)
        .await
        .expect("b");
    assert_ne!(b_alice.id, alice.id);
    not_found(
        store
            .create_user(TenantId(987_654), "x", "h", Role::Viewer)
            .await,
        "no tenant",
    );

    assert_eq!(
        store.user_by_name(w.a.id, "alice").await.expect("by name"),
        Some(alice.clone())
    );
    assert_eq!(
        store.user_by_id(w.a.id, alice.id).await.expect("by id"),
        Some(alice.clone())
    );
    assert_eq!(
        store
            .user_by_id(w.b.id, alice.id)
            .await
            .expect("other tenant"),
        None
    );
    assert_eq!(
        store.user_by_name(w.b.id, "alice").await.expect("b"),
        Some(b_alice.clone())
    );
    assert_eq!(
        store.user_by_name(w.a.id, "bob").await.expect("missing"),
        None
    );
    assert_eq!(
        store
            .user_by_id(w.a.id, UserId(987_654))
            .await
            .expect("missing"),
        None
    );

    let reset = store
        .set_user_password(w.a.id, "alice", "h3", Role::Viewer)
        .await
        .expect("set");
    assert_eq!(
        (reset.id, reset.password_hash.as_str(), reset.role),
        (alice.id, "h3", Role::Viewer)
    );
    assert_eq!(
        store.user_by_id(w.a.id, alice.id).await.expect("reread"),
        Some(reset)
    );
    not_found(
        store
            .set_user_password(w.a.id, "bob", "h", Role::Admin)
            .await,
        "bob",
    );
    let b_again = store
        .user_by_id(w.b.id, b_alice.id)
        .await
        .expect("b untouched");
    assert_eq!(b_again, Some(b_alice));
}

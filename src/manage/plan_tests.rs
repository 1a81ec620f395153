use super::*;
use crate::alarms::{Rule, RuleSpec};
use crate::config::draft::SecurityDraft;
use crate::config::parse_str;
use crate::domain::DeviceCredentials;
use crate::domain::{
    Device, DeviceId, Location, OpenedSecurity, RuleId, Tag, TagId, TagSpec, TenantId, Unit,
    UnitSpec,
};
use crate::drivers::DriverConfig;
use crate::manage::{Drafted, KEEP_SECRET};
use crate::secrets::Secret;
use crate::storage::Ref;
use serde_json::json;

const T: TenantId = TenantId(1);

fn key() -> SecretKey {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    SecretKey::from_base64(&b64).expect("key")
}

fn rule(name: &str, setpoint: f64) -> RuleSpec {
    let text = format!(
        "[[tenants]]\nname = \"x\"\n[[tenants.devices]]\nname = \"d\"\ndriver = {{ protocol = \"sim\" }}\n\
         [[tenants.devices.tags]]\nname = \"t\"\naddress = \"counter\"\n\
         alarms = [{{ name = \"{name}\", type = \"high\", setpoint = {setpoint} }}]\n"
    );
    let c = parse_str(&text, "t").expect("rule");
    c.tenants[0].devices[0].tags[0].alarms[0]
        .to_spec()
        .expect("spec")
}

/// A unit, a sim device in it with two tags (one with a rule), and a second device.
fn stored() -> Stored {
    let unit = Unit {
        id: UnitId(1),
        tenant: T,
        spec: UnitSpec {
            name: "boiler".into(),
            location: Some(Location { lat: 1.0, lon: 2.0 }),
            description: None,
        },
    };
    let device = |id: i64, name: &str, unit: Option<UnitId>| Device {
        id: DeviceId(id),
        tenant: T,
        spec: crate::domain::DeviceSpec {
            name: name.into(),
            unit,
            enabled: true,
            poll_ms: 1000,
            driver: DriverConfig::Sim(Default::default()),
            security: Default::default(),
        },
    };
    let tag = |id: i64, device: i64, name: &str| Tag {
        id: TagId(id),
        tenant: T,
        device: DeviceId(device),
        spec: TagSpec {
            name: name.into(),
            unit: None,
            address: "counter".into(),
            data_type: crate::domain::DataType::I64,
            scale: 1.0,
            offset: 0.0,
            eng_unit: None,
            deadband: 0.0,
            writable: false,
        },
    };
    Stored {
        units: vec![unit],
        devices: vec![device(10, "b1", Some(UnitId(1))), device(11, "b2", None)],
        tags: vec![tag(100, 10, "t1"), tag(101, 10, "t2"), tag(102, 11, "t3")],
        rules: vec![Rule {
            id: RuleId(1000),
            tenant: T,
            tag: TagId(100),
            spec: rule("hot", 80.0),
        }],
    }
}

#[test]
fn the_stored_world_as_wanted_changes_nothing() {
    let s = stored();
    let p = plan(&s, &s.draft(), None).expect("plan");
    assert!(p.changes.is_empty(), "{:?}", p.changes);
    assert!(p.report.is_empty());
    assert_eq!(p.touched, Touched::default());
}

#[test]
fn everything_new_is_created_with_references_to_earlier_writes() {
    let s = stored();
    let mut d = s.draft();
    d.units.iter_mut().for_each(|u| u.id = None);
    for device in &mut d.devices {
        device.id = None;
        for t in &mut device.tags {
            t.id = None;
            t.alarms.iter_mut().for_each(|r| r.id = None);
        }
    }
    let p = plan(&Stored::default(), &d, None).expect("plan");
    assert_eq!(p.changes.units.len(), 1);
    assert_eq!(p.changes.devices.len(), 2);
    assert_eq!(p.changes.devices[0].unit, Some(Ref::Written(0)));
    assert_eq!(p.changes.tags[2].device, Ref::Written(1));
    assert_eq!(p.changes.rules.len(), 1);
    assert_eq!(p.changes.rules[0].tag, Ref::Written(0));
    let written = WrittenIds {
        units: vec![UnitId(5)],
        devices: vec![DeviceId(6), DeviceId(7)],
        tags: vec![TagId(8), TagId(9), TagId(10)],
        rules: vec![RuleId(11)],
    };
    let report = p.finish(&written);
    assert_eq!(report.len(), 7);
    assert!(report.iter().all(|c| c.op == Op::Create && c.id.is_some()));
    assert_eq!(report[1].name, "b1");
    assert_eq!(report[1].id.as_deref(), Some("6"));
    let names: Vec<&str> = report.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["boiler", "b1", "b1/t1", "b1/t1/hot", "b1/t2", "b2", "b2/t3"]
    );
    assert_eq!(report[3].id.as_deref(), Some("11"));
}

#[test]
fn a_rename_by_id_is_an_update_and_a_rename_by_name_is_a_replacement() {
    let s = stored();
    let mut d = s.draft();
    d.devices[0].name = "boiler-1".into();
    let p = plan(&s, &d, None).expect("plan");
    assert_eq!(p.changes.devices.len(), 1);
    assert_eq!(p.changes.devices[0].id, Some(DeviceId(10)));
    assert!(p.changes.delete_devices.is_empty());
    assert!(p.touched.devices.contains(&DeviceId(10)));
    // Without ids (an imported document), the other name is another device.
    let mut d = s.draft();
    d.devices[0].id = None;
    d.devices[0].name = "boiler-1".into();
    for t in &mut d.devices[0].tags {
        t.id = None;
    }
    let p = plan(&s, &d, None).expect("plan");
    assert_eq!(p.changes.delete_devices, vec![DeviceId(10)]);
    assert_eq!(p.changes.devices.len(), 1);
    assert_eq!(p.changes.devices[0].id, None);
    assert!(p.touched.removed_tags.contains(&TagId(100)));
}

#[test]
fn tag_and_rule_changes_touch_their_device_and_the_alarms() {
    let s = stored();
    let mut d = s.draft();
    d.devices[0].tags.remove(1); // t2
    d.devices[0].tags[0].alarms[0].spec = rule("hot", 90.0);
    d.devices[0].tags[0].spec.scale = 2.0;
    let p = plan(&s, &d, None).expect("plan");
    assert_eq!(p.changes.delete_tags, vec![TagId(101)]);
    assert_eq!(p.changes.tags.len(), 1);
    assert_eq!(p.changes.tags[0].id, Some(TagId(100)));
    assert_eq!(p.changes.rules.len(), 1);
    assert_eq!(p.changes.rules[0].id, Some(RuleId(1000)));
    assert_eq!(p.touched.tags_of, [DeviceId(10)].into());
    assert!(p.touched.devices.is_empty());
    assert_eq!(p.touched.removed_tags, vec![TagId(101)]);
    assert!(p.touched.alarms);
    let update = p
        .report
        .iter()
        .find(|c| c.kind == Kind::AlarmRule)
        .expect("rule change");
    assert_eq!(
        update.before.as_ref().map(|b| b["setpoint"].clone()),
        Some(json!(80.0))
    );
    assert_eq!(
        update.after.as_ref().map(|a| a["setpoint"].clone()),
        Some(json!(90.0))
    );
}

#[test]
fn deleting_a_unit_detaches_its_devices() {
    let s = stored();
    let mut d = s.draft();
    d.units.clear();
    d.devices[0].unit = None;
    let p = plan(&s, &d, None).expect("plan");
    assert_eq!(p.changes.delete_units, vec![UnitId(1)]);
    assert_eq!(p.changes.devices.len(), 1);
    assert_eq!(p.changes.devices[0].unit, None);
}

#[test]
fn secrets_are_sealed_kept_or_refused() {
    let k = key();
    let mut s = stored();
    let given = |password: &str| {
        SecurityDraft::Given(OpenedSecurity {
            credentials: Some(DeviceCredentials {
                username: "op".into(),
                password: Some(Secret::new(password)),
            }),
            ..OpenedSecurity::default()
        })
    };
    let mut d = s.draft();
    d.devices[1].security = given("pw-1");
    // No key: refused, naming the field.
    let problems = plan(&s, &d, None).expect_err("no key");
    assert_eq!(
        problems[0].path(),
        "devices[1].security.credentials.password"
    );
    let p = plan(&s, &d, Some(&k)).expect("sealed");
    let sealed = p.changes.devices[0].spec.security.clone();
    assert!(sealed.has_secrets());
    assert!(!format!("{:?}", p.report).contains("pw-1"));
    // Stored sealed: `***` and the same plaintext both keep it, unchanged.
    s.devices[1].spec.security = sealed.clone();
    for same in [KEEP_SECRET, "pw-1"] {
        let mut d = s.draft();
        d.devices[1].security = given(same);
        let p = plan(&s, &d, Some(&k)).expect("kept");
        assert!(p.changes.is_empty(), "{same}: {:?}", p.changes);
    }
    // `***` with nothing stored is refused.
    let mut d = s.draft();
    d.devices[0].security = given(KEEP_SECRET);
    let problems = plan(&s, &d, Some(&k)).expect_err("nothing to keep");
    assert!(
        problems[0].message.contains("none is stored"),
        "{problems:?}"
    );
}

#[test]
fn generated_tags_follow_the_driver() {
    let s = stored();
    let mut d = s.draft();
    d.devices[1].driver = DriverConfig::Sim(crate::drivers::sim::SimConfig {
        generated_tags: 2,
        ..Default::default()
    });
    let p = plan(&s, &d, None).expect("plan");
    let names: Vec<&str> = p
        .changes
        .tags
        .iter()
        .map(|t| t.spec.name.as_str())
        .collect();
    assert_eq!(names, ["gen-0000", "gen-0001"]);
    assert!(p.touched.devices.contains(&DeviceId(11)));
}

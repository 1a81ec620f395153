use super::*;
use crate::config::parse_str;
use crate::domain::Quotas;

const PLANT: &str = r#"
[[tenants]]
name = "acme"
[[tenants.units]]
name = "boiler"
[[tenants.devices]]
name = "b1"
unit = "boiler"
poll_ms = 100
driver = { protocol = "sim" }
[[tenants.devices.tags]]
name = "t"
address = "sine:period=60"
alarms = [{ name = "hot", type = "high", setpoint = 80 }]
"#;

fn draft() -> Draft {
    let c = parse_str(PLANT, "t.toml").expect("plant");
    let t = &c.tenants[0];
    let (d, problems) = Draft::from_config(&t.units, &t.devices);
    assert!(problems.is_empty(), "{problems:?}");
    d
}

#[test]
fn a_valid_draft_has_no_problems() {
    assert!(check(&draft(), Some(&Quotas::default())).is_empty());
}

#[test]
fn every_problem_is_listed_with_its_path() {
    let mut d = draft();
    d.devices[0].unit = Some("nowhere".into());
    d.devices[0].tags[0].spec.address = "noise".into();
    d.devices[0].tags[0].spec.scale = 0.0;
    let mut twin = d.devices[0].clone();
    twin.tags[0].alarms[0].spec.name = " spaced".into();
    d.devices.push(twin);
    let paths: Vec<String> = check(&d, None).iter().map(Problem::path).collect();
    assert_eq!(
        paths,
        [
            "devices[0].unit",
            "devices[0].tags[0].address",
            "devices[0].tags[0].scale",
            "devices[1].name",
            "devices[1].unit",
            "devices[1].tags[0].address",
            "devices[1].tags[0].scale",
            "devices[1].tags[0].alarms[0]",
        ]
    );
}

#[test]
fn quotas_are_problems_that_carry_their_limit() {
    let quotas = Quotas {
        min_poll_ms: 500,
        max_tags: 0,
        max_devices: 1,
        ..Quotas::default()
    };
    let mut d = draft();
    d.devices.push(DeviceDraft {
        name: "b2".into(),
        poll_ms: 1000,
        ..d.devices[0].clone()
    });
    let problems = check(&d, Some(&quotas));
    let found: Vec<(String, Option<&str>)> = problems
        .iter()
        .map(|p| (p.path(), p.quota.map(|q| q.limit)))
        .collect();
    assert_eq!(
        found,
        [
            ("devices[0].poll_ms".to_string(), Some("min_poll_ms")),
            ("devices".to_string(), Some("max_devices")),
        ]
    );
    assert!(
        problems[0].message.contains("min_poll_ms is 500"),
        "{}",
        problems[0]
    );
}

#[test]
fn names_are_checked() {
    assert!(check_name("pump-1", "device").is_ok());
    for bad in ["", "  ", " pump", "pump\n1", &"x".repeat(MAX_NAME + 1)] {
        assert!(check_name(bad, "device").is_err(), "{bad:?}");
    }
}

#[test]
fn a_generated_tag_name_cannot_be_declared() {
    let text = PLANT.replace(
        "driver = { protocol = \"sim\" }",
        "driver = { protocol = \"sim\", generated_tags = 2 }",
    );
    let c = parse_str(&text, "t.toml");
    // The sim names its generated tags `gen-0` …; declare one of them.
    let c = c.expect("plant with generated tags");
    let t = &c.tenants[0];
    let (mut d, _) = Draft::from_config(&t.units, &t.devices);
    let generated = d.devices[0].driver.generated_tags();
    assert_eq!(generated.len(), 2);
    d.devices[0].tags[0].spec.name = generated[0].name.clone();
    let problems = check(&d, None);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].message.contains("driver makes a tag"),
        "{}",
        problems[0]
    );
}

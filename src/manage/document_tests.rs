use super::*;
use crate::config::draft::check;

const DOC: &str = r#"
name = "acme"

[[units]]
name = "boiler"
location = { lat = 45.1, lon = 7.6 }

[[devices]]
name = "b1"
unit = "boiler"
poll_ms = 500
driver = { protocol = "sim", generated_tags = 1 }

[devices.security]
credentials = { username = "op", password = "***" }

[[devices.tags]]
name = "supply"
address = "sine:period=60"
eng_unit = "°C"
alarms = [{ name = "hot", type = "high", setpoint = 80, deadband = 1 }, { name = "link", type = "comm_loss" }]
"#;

#[test]
fn a_document_reads_into_a_valid_draft() {
    let doc = parse(DOC, Format::Toml).expect("doc");
    let (draft, problems) = doc.draft("acme");
    assert!(problems.is_empty(), "{problems:?}");
    assert!(check(&draft, None).is_empty());
    assert_eq!(draft.devices[0].tags[0].alarms.len(), 2);
    assert_eq!(draft.devices[0].unit.as_deref(), Some("boiler"));
}

#[test]
fn toml_and_json_documents_are_the_same_document() {
    let doc = parse(DOC, Format::Toml).expect("toml");
    let json = doc.render(Format::Json).expect("json");
    assert_eq!(Format::detect(&json), Format::Json);
    let again = parse(&json, Format::Json).expect("json reads");
    assert_eq!(again.render(Format::Toml), doc.render(Format::Toml));
}

#[test]
fn unreadable_documents_name_the_key_at_fault() {
    let e = parse(
        &DOC.replace("poll_ms = 500", "poll_ms = \"fast\""),
        Format::Toml,
    )
    .expect_err("type");
    assert_eq!(e.path, "devices[0].poll_ms");
    let e = parse(&DOC.replace("poll_ms = 500", "pol_ms = 500"), Format::Toml)
        .expect_err("unknown key");
    assert!(e.message.contains("pol_ms"), "{e}");
    let e = parse(
        r#"{"devices": [{"name": "x", "unit": null}]}"#,
        Format::Json,
    )
    .expect_err("null");
    assert_eq!(e.path, "devices[0].unit");
    let e = parse(
        r#"{"devices": [{"name": "x", "poll_ms": -1, "driver": {"protocol": "sim"}}]}"#,
        Format::Json,
    )
    .expect_err("negative");
    assert_eq!(e.path, "devices[0].poll_ms");
    assert!(parse("{not json", Format::Json).is_err());
}

#[test]
fn what_belongs_to_the_file_or_the_platform_is_refused() {
    let text = format!("manage = \"replace\"\nquotas = {{ max_devices = 5 }}\n{DOC}");
    let doc = parse(&text, Format::Toml).expect("doc");
    let (_, problems) = doc.draft("globex");
    let paths: Vec<String> = problems.iter().map(|p| p.path()).collect();
    assert_eq!(paths, ["name", "manage", "quotas"]);
}

#[test]
fn rules_read_from_json_keep_their_keys() {
    let rules: Vec<crate::config::AlarmConfig> = from_json(&serde_json::json!([
        {"name": "hot", "type": "high", "setpoint": 80}
    ]))
    .expect("rules");
    assert_eq!(rules[0].to_spec().expect("spec").kind.name(), "high");
    let e = from_json::<Vec<crate::config::AlarmConfig>>(&serde_json::json!([
        {"name": "hot", "type": "high", "setpoint": "x"}
    ]))
    .expect_err("type");
    assert_eq!(e.path, "[0].setpoint");
}

use super::*;
use crate::config::HistorianConfig;

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:9000"

[[tenants]]
name = "acme"

[[tenants.units]]
name = "boiler-house"
location = { lat = 45.07, lon = 7.69 }

[[tenants.devices]]
name = "sim-1"
unit = "boiler-house"
poll_ms = 500
driver = { protocol = "sim", seed = 3 }

[[tenants.devices.tags]]
name = "temp"
address = "sine:period=60,amplitude=5,offset=70"
eng_unit = "°C"
"#;

fn err(text: &str) -> String {
    parse_str(text, "test.toml")
        .expect_err("must be refused")
        .to_string()
}

#[test]
fn good_config_parses_with_defaults() {
    let c = parse_str(GOOD, "test.toml").expect("valid");
    assert_eq!(c.server.listen.port(), 9000);
    assert_eq!(c.tenants[0].devices[0].poll_ms, 500);
    assert_eq!(c.tenants[0].devices[0].tags[0].scale, 1.0);
    assert_eq!(
        c.historian.batch_size,
        HistorianConfig::default().batch_size
    );
}

#[test]
fn unknown_key_is_named_with_its_position() {
    let e = err("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n");
    assert!(e.contains("lisen"), "{e}");
    assert!(e.contains("line 3"), "{e}");
    assert!(e.starts_with("test.toml"), "{e}");
}

#[test]
fn bad_type_is_named_with_its_position() {
    let e = err("[historian]\nbatch_size = \"many\"\n");
    assert!(e.contains("line 2"), "{e}");
    assert!(e.contains("batch_size"), "{e}");
}

#[test]
fn latitude_out_of_range_is_refused() {
    let e = err(&GOOD.replace("lat = 45.07", "lat = 91"));
    assert!(e.contains("lat must be within -90..=90, got 91"), "{e}");
    assert!(e.contains("line 10"), "{e}");
}

#[test]
fn duplicate_tag_names_in_one_device_are_refused() {
    let text =
        format!("{GOOD}\n[[tenants.devices.tags]]\nname = \"temp\"\naddress = \"counter\"\n");
    let e = err(&text);
    assert!(e.contains("tenants[0].devices[0].tags[1].name"), "{e}");
    assert!(e.contains("duplicate tag name `temp`"), "{e}");
    assert!(e.contains("line 24"), "{e}");
}

#[test]
fn unknown_unit_reference_and_bad_address_are_refused() {
    let e = err(&GOOD.replace("unit = \"boiler-house\"", "unit = \"nowhere\""));
    assert!(e.contains("tenants[0].devices[0].unit"), "{e}");
    assert!(e.contains("no unit named `nowhere`"), "{e}");
    let e = err(&GOOD.replace("sine:period=60", "noise:period=60"));
    assert!(e.contains("tenants[0].devices[0].tags[0].address"), "{e}");
    assert!(e.contains("unknown signal `noise`"), "{e}");
}

#[test]
fn unknown_driver_key_is_refused() {
    let e = err(&GOOD.replace("seed = 3", "sede = 3"));
    assert!(e.contains("sede"), "{e}");
}

#[test]
fn environment_overrides_keep_types_and_name_the_variable() {
    let env = vec![
        (
            "THERMACORE_STORAGE__URL".to_string(),
            "postgres://db/x".to_string(),
        ),
        (
            "THERMACORE_HISTORIAN__BATCH_SIZE".to_string(),
            "123".to_string(),
        ),
        ("THERMACORE_JWT_SECRET".to_string(), "s3cret".to_string()),
        ("UNRELATED".to_string(), "1".to_string()),
    ];
    let c = parse_with_env(GOOD, "t", env).expect("valid");
    assert_eq!(c.storage.url, "postgres://db/x");
    assert_eq!(c.historian.batch_size, 123);
    assert_eq!(c.auth.jwt_secret.as_deref(), Some("s3cret"));
    assert_eq!(c.tenants.len(), 1);

    let env = vec![(
        "THERMACORE_HISTORIAN__BATCH_SIZ".to_string(),
        "1".to_string(),
    )];
    let e = parse_with_env(GOOD, "t", env)
        .expect_err("unknown key")
        .to_string();
    assert!(
        e.contains("THERMACORE_HISTORIAN__BATCH_SIZ") && e.contains("batch_siz"),
        "{e}"
    );
}

#[test]
fn settings_rules_name_the_key() {
    let e = err("[historian]\nbatch_size = 0\n");
    assert!(e.contains("historian.batch_size"), "{e}");
    let e = err("[storage]\nurl = \"mysql://x\"\n");
    assert!(e.contains("storage.url"), "{e}");
}

#[test]
fn sqlite_paths_are_resolved_next_to_the_config() {
    let dir = Path::new("/etc/tc");
    assert_eq!(
        resolve_sqlite_path("sqlite:data.db", dir),
        "sqlite:/etc/tc/data.db"
    );
    assert_eq!(
        resolve_sqlite_path("sqlite:///abs.db", dir),
        "sqlite:///abs.db"
    );
    assert_eq!(
        resolve_sqlite_path("sqlite::memory:", dir),
        "sqlite::memory:"
    );
    assert_eq!(resolve_sqlite_path("postgres://x", dir), "postgres://x");
}

#[test]
fn the_example_config_is_valid() {
    let text = include_str!("../../thermacore.example.toml");
    let c = parse_str(text, "thermacore.example.toml").expect("example config must be valid");
    assert!(!c.tenants.is_empty());
}

#[test]
fn the_example_documents_every_key() {
    let example: toml::Table =
        toml::from_str(include_str!("../../thermacore.example.toml")).expect("example parses");
    let defaults = toml::Table::try_from(Config::default()).expect("defaults serialize");
    for (section, value) in &defaults {
        let Some(keys) = value.as_table() else {
            continue;
        };
        let documented = example
            .get(section)
            .and_then(|v| v.as_table())
            .unwrap_or_else(|| panic!("[{section}] missing from thermacore.example.toml"));
        for key in keys.keys() {
            assert!(
                documented.contains_key(key),
                "{section}.{key} missing from thermacore.example.toml"
            );
        }
    }
}

#[test]
fn device_security_parses_and_errors_never_quote_a_secret() {
    let text = format!(
        "{GOOD}[tenants.devices.security]\nrequire_tls = true\ntls = {{ ca_file = \"ca.pem\", key_file = \"k.pem\" }}\ncredentials = {{ username = \"u\", password = \"pw-xyzzy\" }}\n"
    );
    let c = parse_str(&text, "test.toml").expect("valid");
    let security = &c.tenants[0].devices[0].security;
    assert!(security.require_tls && security.has_secrets());
    assert!(!format!("{c:?}").contains("pw-xyzzy"));

    let bad = text.replace("password = ", "bogus = 1, password = ");
    let e = err(&bad);
    assert!(e.contains("bogus") && e.contains("line"), "{e}");
    assert!(!e.contains("pw-xyzzy"), "{e}");
}

#[test]
fn server_settings_are_checked() {
    let e = err("[server]\ncors_allowed_origins = [\"ops.example/\"]");
    assert!(e.contains("server.cors_allowed_origins"), "{e}");
    let c = parse_str(
        "[server]\ncors_allowed_origins = [\"https://ops.example:8443\", \"*\"]\ntls = { cert_file = \"c.pem\", key_file = \"k.pem\" }",
        "test.toml",
    )
    .expect("valid");
    assert_eq!(c.server.cors_allowed_origins.len(), 2);
    assert_eq!(c.server.max_body_bytes, 1_048_576);
    assert_eq!(c.server.request_timeout_secs, 30);
    assert!(err("[server]\nmax_body_bytes = 0").contains("server.max_body_bytes"));
    assert!(err("[server]\nrequest_timeout_secs = 0").contains("server.request_timeout_secs"));
}

#[cfg(feature = "modbus")]
#[test]
fn modbus_devices_are_checked_with_the_key_at_fault() {
    let device = |driver: &str, tag: &str| {
        format!(
            "[[tenants]]\nname = \"acme\"\n[[tenants.devices]]\nname = \"plc\"\ndriver = {{ protocol = \"modbus\", {driver} }}\n[[tenants.devices.tags]]\nname = \"t\"\n{tag}\n"
        )
    };
    let ok = device(
        "host = \"10.0.0.5\", unit_id = 255, poll_groups = [{ name = \"slow\", period_ms = 5000 }]",
        "address = \"40101;group=slow\"\ndata_type = \"u16\"\nwritable = true",
    );
    let c = parse_str(&ok, "test.toml").expect("valid");
    assert_eq!(c.tenants[0].devices[0].driver.protocol(), "modbus");
    let cases = [
        (
            device(
                "host = \"h\", max_registers = 200",
                "address = \"hr:0\"\ndata_type = \"u16\"",
            ),
            "tenants[0].devices[0].driver",
            "max_registers 200",
        ),
        (
            device(
                "host = \"h\", speed = 9",
                "address = \"hr:0\"\ndata_type = \"u16\"",
            ),
            "speed",
            "line 5",
        ),
        (
            device("port = 502", "address = \"hr:0\"\ndata_type = \"u16\""),
            "host",
            "line 5",
        ),
        (
            device("host = \"h\"", "address = \"hr:0.3\"\ndata_type = \"u16\""),
            "tenants[0].devices[0].tags[0].address",
            "only for bool",
        ),
        (
            device(
                "host = \"h\"",
                "address = \"hr:0;group=fast\"\ndata_type = \"u16\"",
            ),
            "tenants[0].devices[0].tags[0].address",
            "no poll group `fast`",
        ),
        (
            device(
                "host = \"h\"",
                "address = \"30001\"\ndata_type = \"u16\"\nwritable = true",
            ),
            "tenants[0].devices[0].tags[0].address",
            "read-only",
        ),
    ];
    for (text, key, why) in cases {
        let e = err(&text);
        assert!(e.contains(key) && e.contains(why), "{key} / {why}: {e}");
    }
}

#[cfg(feature = "dnp3")]
#[test]
fn dnp3_devices_are_checked_with_the_key_at_fault() {
    let device = |driver: &str, tag: &str| {
        format!(
            "[[tenants]]\nname = \"acme\"\n[[tenants.devices]]\nname = \"rtu\"\ndriver = {{ protocol = \"dnp3\", {driver} }}\n[[tenants.devices.tags]]\nname = \"t\"\n{tag}\n"
        )
    };
    let ok = device(
        "endpoint = \"10.0.0.5:20000\", class1_poll_ms = 1000",
        "address = \"bo:3|op=pulse;on_ms=500;critical\"\ndata_type = \"bool\"\nwritable = true",
    );
    let c = parse_str(&ok, "test.toml").expect("valid");
    assert_eq!(c.tenants[0].devices[0].driver.protocol(), "dnp3");
    let cases = [
        (
            device(
                "endpoint = \"10.0.0.5\"",
                "address = \"ai:0\"\ndata_type = \"f64\"",
            ),
            "tenants[0].devices[0].driver",
            "not host:port",
        ),
        (
            device(
                "endpoint = \"h:1\", outstation_address = 1",
                "address = \"ai:0\"\ndata_type = \"f64\"",
            ),
            "tenants[0].devices[0].driver",
            "must differ",
        ),
        (
            device(
                "endpoint = \"h:1\"",
                "address = \"ai:0\"\ndata_type = \"bool\"",
            ),
            "tenants[0].devices[0].tags[0].address",
            "not bool",
        ),
        (
            device(
                "endpoint = \"h:1\"",
                "address = \"bi:0\"\ndata_type = \"bool\"\nwritable = true",
            ),
            "tenants[0].devices[0].tags[0].address",
            "cannot be commanded",
        ),
        (
            device(
                "endpoint = \"h:1\"",
                "address = \"ao:0|cmd=x\"\ndata_type = \"f64\"",
            ),
            "tenants[0].devices[0].tags[0].address",
            "expected i16",
        ),
    ];
    for (text, key, why) in cases {
        let e = parse_str(&text, "test.toml").expect_err(&text).to_string();
        assert!(e.contains(key) && e.contains(why), "{e}");
    }
}

fn with_alarms(alarms: &str) -> String {
    format!("{GOOD}alarms = [{alarms}]\n")
}

#[test]
fn alarm_rules_parse_into_their_kinds() {
    let c = parse_str(
        &with_alarms(
            r#"{ name = "hot", type = "high", setpoint = 80, deadband = 2, on_delay_ms = 500, severity = "critical" },
               { name = "link", type = "comm_loss" },
               { name = "fast", type = "rate_of_change", max_per_second = 3 },
               { name = "old", type = "stale", after_ms = 60000, enabled = false },
               { name = "odd", type = "anomaly", method = "iqr" },
               { name = "off", type = "anomaly", method = "moving_average", window = 30, threshold = 5 }"#,
        ),
        "test.toml",
    )
    .expect("valid rules");
    let specs: Vec<_> = c.tenants[0].devices[0].tags[0]
        .alarms
        .iter()
        .map(|a| a.to_spec().expect("converts"))
        .collect();
    assert_eq!(specs[0].kind.name(), "high");
    assert_eq!(specs[0].severity, crate::alarms::Severity::Critical);
    assert_eq!(specs[0].on_delay_ms, 500);
    assert_eq!(specs[1].kind.name(), "comm_loss");
    assert_eq!(specs[1].severity, crate::alarms::Severity::Medium);
    assert_eq!(specs[2].kind.name(), "rate_of_change");
    assert!(!specs[3].enabled);
    use crate::alarms::{DetectorSpec, Method, RuleKind};
    let detector = |method, window, threshold| {
        RuleKind::Anomaly(DetectorSpec {
            method,
            window,
            threshold,
        })
    };
    assert_eq!(
        specs[4].kind,
        detector(Method::Iqr, 60, 1.5),
        "the defaults"
    );
    assert_eq!(specs[5].kind, detector(Method::MovingAverage, 30, 5.0));
}

#[test]
fn bad_alarm_rules_are_refused_with_their_key() {
    let cases = [
        (
            r#"{ name = "l", type = "low", setpoint = 90 }, { name = "h", type = "high", setpoint = 80 }"#,
            "must be below the high limit",
        ),
        (
            r#"{ name = "h", type = "high", setpoint = 80, on_delay_ms = -5 }"#,
            "on_delay_ms: a delay cannot be negative",
        ),
        (
            r#"{ name = "s", type = "stale", after_ms = 0 }"#,
            "after_ms",
        ),
        (
            r#"{ name = "x", type = "hihg", setpoint = 1 }"#,
            "unknown alarm type `hihg`",
        ),
        (
            r#"{ name = "x", type = "high" }"#,
            "setpoint: a `high` alarm needs one",
        ),
        (
            r#"{ name = "x", type = "digital", setpoint = 1 }"#,
            "setpoint: does not apply to a `digital` alarm",
        ),
        (
            r#"{ name = "x", type = "high", setpoint = 1 }, { name = "x", type = "low", setpoint = 0 }"#,
            "duplicate rule name",
        ),
        (
            r#"{ name = "x", type = "comm_loss", severity = "urgent" }"#,
            "urgent",
        ),
        (
            r#"{ name = "a", type = "anomaly", method = "zscore", window = 0 }"#,
            "window: must be 4 to 10000 samples, not 0",
        ),
        (
            r#"{ name = "a", type = "anomaly", method = "zscore", window = -3 }"#,
            "window: must be 4 to 10000 samples",
        ),
        (
            r#"{ name = "a", type = "anomaly", method = "iqr", threshold = 0 }"#,
            "threshold: must be a finite number > 0",
        ),
        (
            r#"{ name = "a", type = "anomaly", method = "moving_average" }"#,
            "threshold: an `anomaly` alarm needs one",
        ),
        (
            r#"{ name = "a", type = "anomaly" }"#,
            "method: an `anomaly` alarm needs one",
        ),
        (
            r#"{ name = "a", type = "anomaly", method = "median" }"#,
            "unknown variant `median`",
        ),
        (
            r#"{ name = "a", type = "high", setpoint = 1, window = 10 }"#,
            "window: does not apply to a `high` alarm",
        ),
    ];
    for (alarms, expected) in cases {
        let e = err(&with_alarms(alarms));
        assert!(e.contains(expected), "{alarms}: {e}");
        assert!(
            e.contains("tags[0].alarms") || e.contains("urgent") || e.contains("median"),
            "{alarms}: {e}"
        );
    }
}

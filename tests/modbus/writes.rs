//! Writes: the function codes used (FC5/FC6, FC15/FC16 with `write_multiple`), the
//! read-back of `;confirm` tags, a register the device refuses, who may write, and
//! read-only tables refused by the config.

use serde_json::json;
use thermacore::drivers::modbus::plc::Bank;

use super::{Plc, Site, device, error_code, start, tag};

const FUNCTIONS: [&str; 4] = [
    "write_single_coil",
    "write_single_register",
    "write_multiple_coils",
    "write_multiple_registers",
];

/// `thermacore_modbus_requests_total` of each write function.
async fn write_counts(site: &Site) -> [f64; 4] {
    let text = site.s.metrics().await;
    FUNCTIONS.map(|f| {
        super::common::server::metric_sum(
            &text,
            "thermacore_modbus_requests_total",
            &format!("function=\"{f}\""),
        )
    })
}

/// Writes `value` to `tag` and asserts that exactly one request of `function` went out.
async fn write_with(site: &Site, tag: &str, value: serde_json::Value, function: &str) {
    let before = write_counts(site).await;
    site.write(tag, value).await;
    let after = write_counts(site).await;
    let delta: Vec<(&str, f64)> = FUNCTIONS
        .iter()
        .zip(after.iter().zip(before))
        .map(|(f, (a, b))| (*f, a - b))
        .collect();
    let want: Vec<(&str, f64)> = FUNCTIONS
        .iter()
        .map(|f| (*f, if *f == function { 1.0 } else { 0.0 }))
        .collect();
    assert_eq!(delta, want, "write of {tag}");
}

#[tokio::test]
async fn single_functions_by_default_and_multiple_ones_when_configured() {
    let _writes = super::WRITES.lock().await;
    let single = Plc::start(Bank::filled(10)).await;
    let multi = Plc::start(Bank::filled(10)).await;
    let tags = |p: &str| {
        vec![
            tag(&format!("{p}-coil"), "coil:0", "bool", "writable = true"),
            tag(&format!("{p}-u16"), "hr:1", "u16", "writable = true"),
            tag(&format!("{p}-u32"), "hr:2", "u32", "writable = true"),
        ]
    };
    let site = start(
        "mb-functions",
        &[
            device("single", single.port, "", &tags("s")),
            device("multi", multi.port, ", write_multiple = true", &tags("m")),
        ],
    )
    .await;
    site.wait_state("single", "ONLINE").await;
    site.wait_state("multi", "ONLINE").await;

    write_with(&site, "s-coil", json!(true), "write_single_coil").await;
    write_with(&site, "s-u16", json!(500), "write_single_register").await;
    // Two registers need FC16 whatever the setting.
    write_with(&site, "s-u32", json!(70_000), "write_multiple_registers").await;
    write_with(&site, "m-coil", json!(true), "write_multiple_coils").await;
    write_with(&site, "m-u16", json!(501), "write_multiple_registers").await;
    write_with(&site, "m-u32", json!(70_001), "write_multiple_registers").await;

    let s = single.bank.lock().clone();
    assert_eq!(
        (s.coils[&0], s.holding(1, 3)),
        (true, Some(vec![500, 1, 4464]))
    );
    let m = multi.bank.lock().clone();
    assert_eq!(
        (m.coils[&0], m.holding(1, 3)),
        (true, Some(vec![501, 1, 4465]))
    );
    site.wait_good(&[
        ("s-coil", json!(true)),
        ("s-u16", json!(500)),
        ("m-u32", json!(70_001)),
    ])
    .await;
}

#[tokio::test]
async fn confirmed_writes_refusals_and_permissions() {
    let _writes = super::WRITES.lock().await;
    let mut bank = Bank::filled(20);
    bank.read_only.insert(12);
    bank.holding_registers.insert(11, 0b1000_0001);
    let plc = Plc::start(bank).await;
    let tags = [
        tag("setpoint", "hr:10;confirm", "u16", "writable = true"),
        tag("flag", "hr:11.2;confirm", "bool", "writable = true"),
        tag("locked", "hr:12", "u16", "writable = true"),
        tag("fixed", "hr:13", "u16", ""),
        tag("plain", "hr:14", "u16", "writable = true"),
    ];
    let site = start("mb-confirm", &[device("plc", plc.port, "", &tags)]).await;
    site.wait_state("plc", "ONLINE").await;

    let r = site.write("setpoint", json!(42)).await;
    assert_eq!(
        (&r["value"], &r["confirmed"]),
        (&json!(42), &json!(42)),
        "{r}"
    );
    assert!(r["acknowledgedAt"].is_string(), "{r}");
    let r = site.write("flag", json!(true)).await;
    assert_eq!(r["confirmed"], json!(true), "{r}");
    assert_eq!(plc.bank.lock().holding_registers[&11], 0b1000_0101);
    let r = site.write("plain", json!(9)).await;
    assert_eq!(r["confirmed"], json!(null), "no read-back asked: {r}");

    // The device refuses the register: DEVICE_ERROR naming the exception.
    let failed = "outcome=\"failed\"";
    let before = site
        .s
        .metric_sum("thermacore_device_writes_total", failed)
        .await;
    let r = site.write_as(&site.admin, "locked", json!(5)).await;
    assert_eq!(error_code(&r), "DEVICE_ERROR", "{r}");
    let message = r["errors"][0]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("illegal data value") && message.contains("exception 3"),
        "{message}"
    );
    assert_eq!(plc.bank.lock().holding_registers[&12], 12, "unchanged");
    let after = site
        .s
        .metric_sum("thermacore_device_writes_total", failed)
        .await;
    assert_eq!(after - before, 1.0);

    // A tag not declared writable, and a viewer: refused before the device.
    let writes = plc.bank.lock().writes;
    let r = site.write_as(&site.admin, "fixed", json!(1)).await;
    assert_eq!(error_code(&r), "BAD_USER_INPUT", "{r}");
    let viewer = site.s.login(&site.tenant, "viewer").await;
    let r = site.write_as(&viewer, "plain", json!(1)).await;
    assert_eq!(error_code(&r), "FORBIDDEN", "{r}");
    assert_eq!(plc.bank.lock().writes, writes, "nothing written");
    let operator = site.s.login(&site.tenant, "operator").await;
    let r = site.write_as(&operator, "plain", json!(3)).await;
    assert!(r.get("errors").is_none(), "an operator may write: {r}");
    assert_eq!(plc.bank.lock().holding_registers[&14], 3);
}

#[test]
fn input_registers_and_discrete_inputs_cannot_be_declared_writable() {
    for (address, data_type) in [("ir:5", "u16"), ("di:2", "bool"), ("30001.1", "bool")] {
        let plant = |writable: &str| {
            let tags = [
                tag("ok", "hr:0", "u16", "writable = true"),
                tag("ro", address, data_type, writable),
            ];
            format!(
                "[[tenants]]\nname = \"acme\"\n{}",
                device("plc", 502, "", &tags)
            )
        };
        let e = thermacore::config::parse_str(&plant("writable = true"), "plant")
            .expect_err(address)
            .to_string();
        assert!(
            e.contains("tenants[0].devices[0].tags[1].address") && e.contains("read-only"),
            "{address}: {e}"
        );
        // The same tag, not writable, is fine.
        thermacore::config::parse_str(&plant(""), "plant")
            .unwrap_or_else(|e| panic!("{address}: {e}"));
    }
}

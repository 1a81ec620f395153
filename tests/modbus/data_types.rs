//! Every data type in every word order: read from registers set in the bank, written
//! through `writeTag` and found in the bank and read back; bits of coils, inputs and
//! registers; scaling both ways; out-of-range writes refused before the device.

use serde_json::{Value, json};
use thermacore::drivers::modbus::plc::Bank;

use super::{Plc, device, error_code, registers, start, tag};

const ORDERS: [&str; 4] = ["ABCD", "CDAB", "BADC", "DCBA"];

/// One numeric or string tag: its type, a value to read and a value to write, each
/// with its big-endian bytes.
struct Case {
    data_type: &'static str,
    /// `;len=N` for strings.
    len: &'static str,
    read: (Value, Vec<u8>),
    write: (Value, Vec<u8>),
}

/// ASCII padded with NULs to `n` bytes.
fn text(s: &str, n: usize) -> Vec<u8> {
    let mut b = s.as_bytes().to_vec();
    b.resize(n, 0);
    b
}

/// The cases of word order `o`; values differ per order so that a tag reading another
/// tag's registers shows.
fn cases(o: usize) -> Vec<Case> {
    let n = o as i64;
    let u16r = 0x1234 + o as u16;
    let u16w = 0xA1B2 + o as u16;
    let i16r = -12_345 - o as i16;
    let i16w = 23_456 + o as i16;
    let u32r = 0x89AB_CDEF + o as u32;
    let u32w = 0x0102_0304 + o as u32;
    let i32r = -123_456_789 - o as i32;
    let i32w = 987_654_321 + o as i32;
    let u64r = 0x0123_4567_89AB_CDEF + o as u64;
    let u64w = 0x0A0B_0C0D_0E0F_1011 + o as u64;
    let i64r = -1_234_567_890_123_456_789 - n;
    let i64w = 9_007_199_254_740_993 + n; // above 2^53: no trip through f64
    let f32r = -1234.5f32 - o as f32;
    let f32w = 98.25f32 + o as f32;
    let f64r = std::f64::consts::PI + n as f64;
    let f64w = std::f64::consts::E * (n + 1) as f64;
    let sr = format!("PUMP-{o}");
    let sw = format!("VLV{o}");
    vec![
        Case {
            data_type: "u16",
            len: "",
            read: (json!(u16r), u16r.to_be_bytes().to_vec()),
            write: (json!(u16w), u16w.to_be_bytes().to_vec()),
        },
        Case {
            data_type: "i16",
            len: "",
            read: (json!(i16r), i16r.to_be_bytes().to_vec()),
            write: (json!(i16w), i16w.to_be_bytes().to_vec()),
        },
        Case {
            data_type: "u32",
            len: "",
            read: (json!(u32r), u32r.to_be_bytes().to_vec()),
            write: (json!(u32w), u32w.to_be_bytes().to_vec()),
        },
        Case {
            data_type: "i32",
            len: "",
            read: (json!(i32r), i32r.to_be_bytes().to_vec()),
            write: (json!(i32w), i32w.to_be_bytes().to_vec()),
        },
        Case {
            data_type: "u64",
            len: "",
            read: (json!(u64r), u64r.to_be_bytes().to_vec()),
            write: (json!(u64w), u64w.to_be_bytes().to_vec()),
        },
        Case {
            data_type: "i64",
            len: "",
            read: (json!(i64r), i64r.to_be_bytes().to_vec()),
            write: (json!(i64w), i64w.to_be_bytes().to_vec()),
        },
        Case {
            data_type: "f32",
            len: "",
            read: (json!(f64::from(f32r)), f32r.to_be_bytes().to_vec()),
            write: (json!(f64::from(f32w)), f32w.to_be_bytes().to_vec()),
        },
        Case {
            data_type: "f64",
            len: "",
            read: (json!(f64r), f64r.to_be_bytes().to_vec()),
            write: (json!(f64w), f64w.to_be_bytes().to_vec()),
        },
        Case {
            data_type: "string",
            len: ";len=4",
            read: (json!(sr), text(&sr, 8)),
            write: (json!(sw), text(&sw, 8)),
        },
    ]
}

/// Where case `i` of order `o` lives: blocks of 5 registers, 50 per order.
fn start_of(o: usize, i: usize) -> u16 {
    (o * 50 + i * 5) as u16
}

fn name(o: usize, c: &Case) -> String {
    format!("{}-{}", c.data_type, ORDERS[o])
}

#[tokio::test]
async fn every_type_in_every_word_order_reads_and_writes_the_registers_it_should() {
    let _writes = super::WRITES.lock().await;
    let mut bank = Bank::filled(400);
    let mut tags = Vec::new();
    for (o, order) in ORDERS.iter().enumerate() {
        for (i, c) in cases(o).iter().enumerate() {
            let at = start_of(o, i);
            bank.set_holding(at, &registers(&c.read.1, order));
            let address = format!("hr:{at};order={order}{}", c.len);
            tags.push(tag(&name(o, c), &address, c.data_type, "writable = true"));
        }
    }
    // Bits: a coil, a discrete input, bits of a holding and of an input register.
    bank.coils.insert(300, true);
    bank.discrete_inputs.insert(301, true);
    bank.holding_registers.insert(302, 0x8108);
    bank.input_registers.insert(303, 0x0020);
    // Engineering scaling: tenths of a degree, and a scale with an offset.
    bank.holding_registers.insert(310, 215);
    bank.holding_registers.insert(311, 20);
    bank.holding_registers.insert(320, 7);
    tags.extend([
        tag("coil", "coil:300", "bool", "writable = true"),
        tag("input", "di:301", "bool", ""),
        tag("hr-bit3", "hr:302.3", "bool", "writable = true"),
        tag("hr-bit0", "hr:302.0", "bool", "writable = true"),
        tag("ir-bit5", "ir:303.5", "bool", ""),
        tag("ir-bit6", "30304.6", "bool", ""),
        tag("tenths", "hr:310", "u16", "scale = 0.1\nwritable = true"),
        tag(
            "offset",
            "40312",
            "i16",
            "scale = 0.5\noffset = -50.0\nwritable = true",
        ),
        tag("plain", "hr:320", "u16", "writable = true"),
    ]);
    let plc = Plc::start(bank).await;
    let site = start("mb-types", &[device("plc", plc.port, "", &tags)]).await;

    let mut expect: Vec<(String, Value)> = Vec::new();
    for o in 0..ORDERS.len() {
        for c in cases(o) {
            expect.push((name(o, &c), c.read.0.clone()));
        }
    }
    for (n, v) in [
        ("coil", json!(true)),
        ("input", json!(true)),
        ("hr-bit3", json!(true)),
        ("hr-bit0", json!(false)),
        ("ir-bit5", json!(true)),
        ("ir-bit6", json!(false)),
        ("tenths", json!(21.5)),
        ("offset", json!(-40.0)),
        ("plain", json!(7)),
    ] {
        expect.push((n.to_string(), v));
    }
    let refs: Vec<(&str, Value)> = expect
        .iter()
        .map(|(n, v)| (n.as_str(), v.clone()))
        .collect();
    site.wait_good(&refs).await;

    // Writes: every register value lands in the bank in the tag's order.
    for (o, order) in ORDERS.iter().enumerate() {
        for (i, c) in cases(o).iter().enumerate() {
            let r = site.write(&name(o, c), c.write.0.clone()).await;
            assert_eq!(r["value"], c.write.0, "{r}");
            assert_eq!(r["confirmed"], Value::Null, "no `confirm`: {r}");
            let want = registers(&c.write.1, order);
            let got = plc.bank.lock().holding(start_of(o, i), want.len() as u16);
            assert_eq!(got, Some(want), "{} in the bank", name(o, c));
        }
    }
    site.write("coil", json!(false)).await;
    assert!(!plc.bank.lock().coils[&300], "coil cleared");
    site.write("hr-bit3", json!(false)).await;
    assert_eq!(
        plc.bank.lock().holding_registers[&302],
        0x8100,
        "other bits kept"
    );
    site.write("hr-bit0", json!(true)).await;
    assert_eq!(
        plc.bank.lock().holding_registers[&302],
        0x8101,
        "other bits kept"
    );
    site.write("tenths", json!(22.5)).await;
    assert_eq!(
        plc.bank.lock().holding_registers[&310],
        225,
        "22.5 stored as 225"
    );
    site.write("offset", json!(-30.0)).await;
    assert_eq!(
        plc.bank.lock().holding_registers[&311],
        40,
        "(-30 + 50) / 0.5"
    );

    let mut expect: Vec<(String, Value)> = Vec::new();
    for o in 0..ORDERS.len() {
        for c in cases(o) {
            expect.push((name(o, &c), c.write.0.clone()));
        }
    }
    for (n, v) in [
        ("coil", json!(false)),
        ("hr-bit3", json!(false)),
        ("hr-bit0", json!(true)),
        ("tenths", json!(22.5)),
        ("offset", json!(-30.0)),
    ] {
        expect.push((n.to_string(), v));
    }
    let refs: Vec<(&str, Value)> = expect
        .iter()
        .map(|(n, v)| (n.as_str(), v.clone()))
        .collect();
    site.wait_good(&refs).await;

    // Out of range, or of the wrong kind: refused as bad input, nothing sent.
    let writes = plc.bank.lock().writes;
    for (t, v) in [
        ("plain", json!(70000)),
        ("plain", json!(-1)),
        ("plain", json!(1.5)),
        ("tenths", json!(7000)), // 70000 raw
        ("i16-ABCD", json!(40000)),
        ("string-ABCD", json!("NINE-CHAR")),
        ("coil", json!("on")),
    ] {
        let r = site.write_as(&site.admin, t, v.clone()).await;
        assert_eq!(error_code(&r), "BAD_USER_INPUT", "{t} = {v}: {r}");
    }
    assert_eq!(plc.bank.lock().writes, writes, "nothing written");
    assert_eq!(plc.bank.lock().holding_registers[&320], 7);
    site.wait_good(&[("plain", json!(7))]).await;
}

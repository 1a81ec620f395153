//! Values to and from Modbus registers: every data type in every word order, engineering
//! scaling (`value = raw * scale + offset`) and its inverse for writes, with range checks.

use super::address::{Address, WordOrder};
use crate::domain::{DataType, Value};
pub use crate::drivers::scaling::scale;
use crate::drivers::scaling::{integer, number, unscale};

/// Puts registers into big-endian (ABCD) order, or back: both swaps are involutions.
fn reorder(regs: &[u16], order: WordOrder) -> Vec<u16> {
    let mut out: Vec<u16> = regs.to_vec();
    if order.swaps_words() {
        out.reverse();
    }
    if order.swaps_bytes() {
        for r in &mut out {
            *r = r.swap_bytes();
        }
    }
    out
}

/// The big-endian number in `regs` (at most four) laid out in `order`.
fn ordered_u64(regs: &[u16], order: WordOrder) -> u64 {
    let n = regs.len();
    (0..n).fold(0u64, |acc, i| {
        let r = regs[if order.swaps_words() { n - 1 - i } else { i }];
        let r = if order.swaps_bytes() {
            r.swap_bytes()
        } else {
            r
        };
        (acc << 16) | u64::from(r)
    })
}

fn from_u64(v: u64, n: usize) -> Vec<u16> {
    (0..n).rev().map(|i| (v >> (16 * i)) as u16).collect()
}

/// The raw value of a register-table tag from its registers (exactly `addr.count`).
pub fn decode_registers(addr: &Address, regs: &[u16]) -> Result<Value, String> {
    if regs.len() != usize::from(addr.count) {
        return Err(format!(
            "expected {} registers, got {}",
            addr.count,
            regs.len()
        ));
    }
    if let Some(bit) = addr.bit {
        return Ok(Value::Bool(regs[0] & (1 << bit) != 0));
    }
    // The hot path of every poll: no allocation for numbers.
    let raw = ordered_u64(regs, addr.order);
    Ok(match addr.data_type {
        DataType::U16 => Value::I64(i64::from(raw as u16)),
        DataType::I16 => Value::I64(i64::from(raw as u16 as i16)),
        DataType::U32 => Value::I64(i64::from(raw as u32)),
        DataType::I32 => Value::I64(i64::from(raw as u32 as i32)),
        DataType::F32 => Value::F64(crate::drivers::scaling::widen_f32(f32::from_bits(
            raw as u32,
        ))),
        DataType::I64 => Value::I64(raw as i64),
        DataType::U64 => match i64::try_from(raw) {
            Ok(v) => Value::I64(v),
            // Beyond i64: served as a float (precision beyond 2^53 is lost).
            Err(_) => Value::F64(raw as f64),
        },
        DataType::F64 => Value::F64(f64::from_bits(raw)),
        DataType::String => {
            let be = reorder(regs, addr.order);
            let bytes: Vec<u8> = be.iter().flat_map(|r| r.to_be_bytes()).collect();
            let text: String = bytes
                .iter()
                .take_while(|b| **b != 0)
                .map(|b| if b.is_ascii() { char::from(*b) } else { '?' })
                .collect();
            Value::Str(text.trim_end().into())
        }
        DataType::Bool => return Err("a bool on a register needs a bit".into()),
    })
}

/// The registers to write for `value` (an engineering value; inverse scaling applied).
/// Range-checked against the data type.
pub fn encode_registers(
    addr: &Address,
    value: &Value,
    scale: f64,
    offset: f64,
) -> Result<Vec<u16>, String> {
    let n = usize::from(addr.count);
    let be: Vec<u16> = match addr.data_type {
        DataType::String => {
            let Value::Str(s) = value else {
                return Err("a string tag takes a string".into());
            };
            if !s.is_ascii() {
                return Err("only ASCII characters fit a Modbus string".into());
            }
            if s.len() > n * 2 {
                return Err(format!("`{s}` is longer than {} characters", n * 2));
            }
            let mut bytes = s.as_bytes().to_vec();
            bytes.resize(n * 2, 0);
            bytes
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect()
        }
        DataType::Bool => return Err("write a bit through its coil or register bit".into()),
        t => {
            let int = |lo: i128, hi: i128| integer(value, scale, offset, lo, hi, t);
            let bits: u64 = match t {
                DataType::U16 => int(0, 65_535)? as u64,
                DataType::I16 => int(-32_768, 32_767)? as i16 as u16 as u64,
                DataType::U32 => int(0, 4_294_967_295)? as u64,
                DataType::I32 => int(-2_147_483_648, 2_147_483_647)? as i32 as u32 as u64,
                DataType::U64 => int(0, i128::from(u64::MAX))? as u64,
                DataType::I64 => int(i128::from(i64::MIN), i128::from(i64::MAX))? as i64 as u64,
                DataType::F32 => {
                    let x = unscale(number(value)?, scale, offset);
                    if !x.is_finite() || x.abs() > f64::from(f32::MAX) {
                        return Err(format!("{x} does not fit f32"));
                    }
                    u64::from((x as f32).to_bits())
                }
                DataType::F64 => {
                    let x = unscale(number(value)?, scale, offset);
                    if !x.is_finite() {
                        return Err(format!("{x} is not a finite number"));
                    }
                    x.to_bits()
                }
                DataType::Bool | DataType::String => {
                    return Err(format!("{t} is not a numeric register type"));
                }
            };
            from_u64(bits, n)
        }
    };
    Ok(reorder(&be, addr.order))
}

/// A register with one bit set or cleared (read-modify-write of a bit tag).
pub fn with_bit(register: u16, bit: u8, on: bool) -> u16 {
    if on {
        register | (1 << bit)
    } else {
        register & !(1 << bit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(a: &str, t: DataType) -> Address {
        Address::parse(a, t).unwrap_or_else(|e| panic!("{a}: {e}"))
    }

    const ORDERS: [&str; 4] = ["ABCD", "CDAB", "BADC", "DCBA"];

    #[test]
    fn every_numeric_type_round_trips_in_every_order() {
        let cases: [(DataType, Value); 9] = [
            (DataType::U16, Value::I64(65_535)),
            (DataType::I16, Value::I64(-12_345)),
            (DataType::U32, Value::I64(4_000_000_000)),
            (DataType::I32, Value::I64(-2_000_000_000)),
            (DataType::U64, Value::I64(9_000_000_000_000_000_000)),
            (DataType::I64, Value::I64(-9_000_000_000_000_000_000)),
            (DataType::I64, Value::I64(9_007_199_254_740_993)), // 2^53 + 1: no f64 rounding
            (DataType::F32, Value::F64(-1234.5)),
            (DataType::F64, Value::F64(std::f64::consts::PI)),
        ];
        for order in ORDERS {
            for (t, v) in &cases {
                let a = addr(&format!("hr:0;order={order}"), *t);
                let regs = encode_registers(&a, v, 1.0, 0.0).expect("encode");
                assert_eq!(regs.len(), usize::from(a.count));
                assert_eq!(
                    decode_registers(&a, &regs).expect("decode"),
                    *v,
                    "{t} {order}"
                );
            }
        }
    }

    #[test]
    fn word_orders_lay_out_registers_as_named() {
        // 0x11223344 as u32.
        let v = Value::I64(0x1122_3344);
        let expect = [
            ("ABCD", [0x1122, 0x3344]),
            ("CDAB", [0x3344, 0x1122]),
            ("BADC", [0x2211, 0x4433]),
            ("DCBA", [0x4433, 0x2211]),
        ];
        for (order, regs) in expect {
            let a = addr(&format!("hr:0;order={order}"), DataType::U32);
            assert_eq!(
                encode_registers(&a, &v, 1.0, 0.0).expect("enc"),
                regs,
                "{order}"
            );
        }
        // A well-known CDAB float: 123.456f32 = 0x42F6E979.
        let a = addr("hr:0;order=CDAB", DataType::F32);
        let got = decode_registers(&a, &[0xE979, 0x42F6]).expect("dec");
        assert_eq!(got, Value::F64(123.456));
    }

    #[test]
    fn strings_bits_and_scaling() {
        let s = addr("hr:0;len=4", DataType::String);
        let regs = encode_registers(&s, &Value::Str("PUMP-7".into()), 1.0, 0.0).expect("enc");
        assert_eq!(regs, [0x5055, 0x4D50, 0x2D37, 0x0000]);
        assert_eq!(
            decode_registers(&s, &regs).expect("dec"),
            Value::Str("PUMP-7".into())
        );
        assert!(encode_registers(&s, &Value::Str("123456789".into()), 1.0, 0.0).is_err());
        let b = addr("hr:0.3", DataType::Bool);
        assert_eq!(
            decode_registers(&b, &[0b1000]).expect("dec"),
            Value::Bool(true)
        );
        assert_eq!(
            decode_registers(&b, &[0b0111]).expect("dec"),
            Value::Bool(false)
        );
        assert_eq!(with_bit(0b0001, 3, true), 0b1001);
        assert_eq!(with_bit(0b1001, 0, false), 0b1000);
        // A u16 in tenths of a degree: 215 → 21.5 °C, and 21.5 written as 215.
        let t = addr("ir:0", DataType::U16);
        let raw = decode_registers(&t, &[215]).expect("dec");
        assert_eq!(scale(raw, 0.1, 0.0), Value::F64(21.5));
        assert_eq!(
            encode_registers(&t, &Value::F64(21.5), 0.1, 0.0).expect("enc"),
            [215]
        );
        assert_eq!(
            encode_registers(&t, &Value::F64(-40.0), 0.5, -50.0).expect("enc"),
            [20]
        );
    }

    #[test]
    fn writes_out_of_range_or_of_the_wrong_kind_are_refused() {
        let cases = [
            ("hr:0", DataType::U16, Value::I64(65_536), "out of range"),
            ("hr:0", DataType::U16, Value::I64(-1), "out of range"),
            ("hr:0", DataType::I16, Value::I64(40_000), "out of range"),
            ("hr:0", DataType::U16, Value::F64(1.5), "whole number"),
            (
                "hr:0",
                DataType::I32,
                Value::Str("x".into()),
                "not a number",
            ),
            ("hr:0", DataType::F32, Value::F64(1e300), "does not fit f32"),
            ("hr:0", DataType::F64, Value::F64(f64::NAN), "finite"),
            (
                "hr:0;len=2",
                DataType::String,
                Value::I64(1),
                "takes a string",
            ),
            (
                "hr:0;len=2",
                DataType::String,
                Value::Str("é".into()),
                "ASCII",
            ),
        ];
        for (a, t, v, why) in cases {
            let e = encode_registers(&addr(a, t), &v, 1.0, 0.0).expect_err(a);
            assert!(e.contains(why), "{a} {t} {v:?}: {e}");
        }
        let e = decode_registers(&addr("hr:0", DataType::U32), &[1]).expect_err("short");
        assert!(e.contains("expected 2"), "{e}");
    }
}

//! Modbus tag addresses.
//!
//! The canonical form names the table and the 0-based address (the number on the
//! wire): `hr:100`, `ir:5`, `coil:12`, `di:3`. The classic 1-based notation is
//! accepted too and converted: `40101` (or `400101`) is `hr:100`, `30006` is `ir:5`,
//! `10004` is `di:3`, `00013` is `coil:12`. Options follow after `;`:
//!
//! - `.N` after a register address: one bit (0–15) of that register, for `bool` tags;
//! - `order=ABCD|CDAB|BADC|DCBA`: byte and word order of multi-register values
//!   (ABCD, big-endian, is the default; CDAB swaps the words, BADC the bytes in each
//!   word, DCBA both);
//! - `len=N`: the number of registers of a `string` tag (two ASCII characters each);
//! - `group=NAME`: the poll group the tag is read in (declared in the device's
//!   `poll_groups`; without it the tag is read at the device's `poll_ms`);
//! - `confirm`: after a write, read the value back and fail the command when the device
//!   holds something else.
//!
//! The tag's `data_type` says how many registers a value takes: 1 for `u16`/`i16`, 2
//! for `u32`/`i32`/`f32`, 4 for `u64`/`i64`/`f64`.

use std::fmt;

use crate::domain::DataType;

/// The four Modbus tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Coil,
    DiscreteInput,
    InputRegister,
    HoldingRegister,
}

impl Table {
    pub fn prefix(self) -> &'static str {
        match self {
            Table::Coil => "coil",
            Table::DiscreteInput => "di",
            Table::InputRegister => "ir",
            Table::HoldingRegister => "hr",
        }
    }

    /// The leading digit of the 1-based notation.
    fn digit(self) -> u32 {
        match self {
            Table::Coil => 0,
            Table::DiscreteInput => 1,
            Table::InputRegister => 3,
            Table::HoldingRegister => 4,
        }
    }

    /// Bits (coils, discrete inputs) or 16-bit registers.
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::DiscreteInput)
    }

    /// Whether a client may write this table.
    pub fn is_writable(self) -> bool {
        matches!(self, Table::Coil | Table::HoldingRegister)
    }
}

/// Byte and word order of a value spread over several registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WordOrder {
    /// Big-endian: the first register holds the most significant word.
    #[default]
    Abcd,
    /// Words swapped (little-endian word order), bytes big-endian.
    Cdab,
    /// Bytes swapped within each word, words big-endian.
    Badc,
    /// Both swapped: little-endian.
    Dcba,
}

impl WordOrder {
    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "ABCD" => Some(WordOrder::Abcd),
            "CDAB" => Some(WordOrder::Cdab),
            "BADC" => Some(WordOrder::Badc),
            "DCBA" => Some(WordOrder::Dcba),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WordOrder::Abcd => "ABCD",
            WordOrder::Cdab => "CDAB",
            WordOrder::Badc => "BADC",
            WordOrder::Dcba => "DCBA",
        }
    }

    pub(crate) fn swaps_words(self) -> bool {
        matches!(self, WordOrder::Cdab | WordOrder::Dcba)
    }

    pub(crate) fn swaps_bytes(self) -> bool {
        matches!(self, WordOrder::Badc | WordOrder::Dcba)
    }
}

/// A parsed, validated Modbus address of one tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    pub table: Table,
    /// 0-based address of the first coil or register.
    pub start: u16,
    /// The bit of a register, for a `bool` tag on a register table.
    pub bit: Option<u8>,
    pub order: WordOrder,
    /// Coils/inputs or registers the value occupies.
    pub count: u16,
    pub data_type: DataType,
}

/// Registers a value of this type takes (`string` takes `len`).
fn registers(data_type: DataType) -> Option<u16> {
    match data_type {
        DataType::U16 | DataType::I16 => Some(1),
        DataType::U32 | DataType::I32 | DataType::F32 => Some(2),
        DataType::U64 | DataType::I64 | DataType::F64 => Some(4),
        DataType::Bool | DataType::String => None,
    }
}

fn split_table(s: &str) -> Result<(Table, &str), String> {
    if let Some((prefix, rest)) = s.split_once(':') {
        let table = match prefix.trim().to_ascii_lowercase().as_str() {
            "coil" | "co" => Table::Coil,
            "di" | "discrete" | "input" => Table::DiscreteInput,
            "ir" => Table::InputRegister,
            "hr" | "holding" => Table::HoldingRegister,
            other => {
                return Err(format!(
                    "unknown table `{other}` (use coil, di, ir or hr, or 1-based 0xxxx/1xxxx/3xxxx/4xxxx)"
                ));
            }
        };
        return Ok((table, rest.trim()));
    }
    Err(String::new())
}

/// The bit of `hr:10.3`: 0–15.
fn parse_bit(b: &str) -> Result<u8, String> {
    b.trim()
        .parse::<u8>()
        .ok()
        .filter(|b| *b < 16)
        .ok_or_else(|| format!("bit `{b}` must be within 0..=15"))
}

/// Splits `100.3` into the number and the optional bit.
fn split_bit(s: &str) -> (&str, Option<&str>) {
    match s.split_once('.') {
        Some((n, b)) => (n, Some(b)),
        None => (s, None),
    }
}

/// `40101` / `400101` style: table digit, then the 1-based address.
fn one_based(s: &str) -> Result<(Table, u16), String> {
    let digits = s.trim();
    if !(5..=6).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{digits}` is neither `table:address` (e.g. hr:100) nor the 1-based 5- or 6-digit form (e.g. 40101)"
        ));
    }
    let table = match &digits[..1] {
        "0" => Table::Coil,
        "1" => Table::DiscreteInput,
        "3" => Table::InputRegister,
        "4" => Table::HoldingRegister,
        d => {
            return Err(format!(
                "`{digits}`: leading digit {d} names no table (0, 1, 3 or 4)"
            ));
        }
    };
    let n: u32 = digits[1..]
        .parse()
        .map_err(|_| format!("`{digits}`: not a number"))?;
    if n == 0 || n > 65_536 {
        return Err(format!(
            "`{digits}`: the 1-based address must be within 1..=65536"
        ));
    }
    Ok((table, (n - 1) as u16))
}

/// What a tag's address says beyond where the value lives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TagOptions {
    /// The poll group (`group=NAME`); `None` is the device's default group.
    pub group: Option<String>,
    /// Read back after a write (`confirm`).
    pub confirm: bool,
}

impl Address {
    /// Parses `address` for a tag of `data_type`.
    pub fn parse(address: &str, data_type: DataType) -> Result<Self, String> {
        Self::parse_tag(address, data_type).map(|(a, _)| a)
    }

    /// Parses `address` with its tag options (`group=`, `confirm`).
    pub fn parse_tag(address: &str, data_type: DataType) -> Result<(Self, TagOptions), String> {
        let mut options = TagOptions::default();
        let mut parts = address.split(';');
        let head = parts.next().unwrap_or_default().trim();
        let (table, start, bit) = match split_table(head) {
            Ok((table, rest)) => {
                let (num, bit) = split_bit(rest);
                let start: u16 = num
                    .trim()
                    .parse()
                    .map_err(|_| format!("`{num}` is not a 0-based address within 0..=65535"))?;
                let bit = bit.map(parse_bit).transpose()?;
                (table, start, bit)
            }
            Err(e) if !e.is_empty() => return Err(e),
            Err(_) => {
                let (num, bit) = split_bit(head);
                let (table, start) = one_based(num)?;
                let bit = bit.map(parse_bit).transpose()?;
                (table, start, bit)
            }
        };
        let mut order = WordOrder::default();
        let mut len = None;
        for opt in parts {
            let opt = opt.trim();
            if opt.is_empty() {
                continue;
            }
            if opt == "confirm" {
                options.confirm = true;
                continue;
            }
            let (k, v) = opt
                .split_once('=')
                .ok_or_else(|| format!("option `{opt}` must be key=value"))?;
            match k.trim() {
                "order" => {
                    order = WordOrder::parse(v.trim()).ok_or_else(|| {
                        format!("order `{}` must be ABCD, CDAB, BADC or DCBA", v.trim())
                    })?
                }
                "len" => {
                    let n: u16 = v
                        .trim()
                        .parse()
                        .ok()
                        .filter(|n| (1..=125).contains(n))
                        .ok_or_else(|| {
                            format!("len `{}` must be within 1..=125 registers", v.trim())
                        })?;
                    len = Some(n);
                }
                "group" => {
                    let g = v.trim();
                    if g.is_empty() {
                        return Err("group needs a name: group=NAME".into());
                    }
                    options.group = Some(g.to_string());
                }
                "confirm" => {
                    options.confirm = match v.trim() {
                        "true" => true,
                        "false" => false,
                        other => return Err(format!("confirm `{other}` must be true or false")),
                    }
                }
                other => {
                    return Err(format!(
                        "unknown option `{other}` (order, len, group, confirm)"
                    ));
                }
            }
        }
        let count = match (table.is_bits(), data_type, bit) {
            (true, DataType::Bool, None) => 1,
            (true, DataType::Bool, Some(_)) => {
                return Err("a bit number only applies to a register".into());
            }
            (true, other, _) => {
                return Err(format!(
                    "{} holds single bits: the data type must be bool, not {other}",
                    table.prefix()
                ));
            }
            (false, DataType::Bool, Some(_)) => 1,
            (false, DataType::Bool, None) => {
                return Err(
                    "a bool on a register needs the bit: e.g. hr:10.3 for bit 3 of register 10"
                        .into(),
                );
            }
            (false, _, Some(_)) => return Err("a bit number is only for bool tags".into()),
            (false, DataType::String, None) => {
                len.ok_or("a string tag needs `;len=N` (registers, two characters each)")?
            }
            (false, t, None) => registers(t).unwrap_or(1),
        };
        if len.is_some() && data_type != DataType::String {
            return Err("`len` is only for string tags".into());
        }
        if u32::from(start) + u32::from(count) > 65_536 {
            return Err(format!(
                "{} registers from {start} run past the end of the table",
                count
            ));
        }
        Ok((
            Address {
                table,
                start,
                bit,
                order,
                count,
                data_type,
            },
            options,
        ))
    }

    /// One past the last coil or register.
    pub fn end(&self) -> u32 {
        u32::from(self.start) + u32::from(self.count)
    }

    /// The 1-based notation of the start (`40101`), shown beside the canonical form.
    pub fn one_based(&self) -> String {
        let n = u32::from(self.start) + 1;
        if n <= 9_999 {
            format!("{}{n:04}", self.table.digit())
        } else {
            format!("{}{n:05}", self.table.digit())
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.table.prefix(), self.start)?;
        if let Some(b) = self.bit {
            write!(f, ".{b}")?;
        }
        if self.order != WordOrder::Abcd {
            write!(f, ";order={}", self.order.as_str())?;
        }
        if self.data_type == DataType::String {
            write!(f, ";len={}", self.count)?;
        }
        write!(f, " ({})", self.one_based())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &str, t: DataType) -> Address {
        Address::parse(a, t).unwrap_or_else(|e| panic!("{a}: {e}"))
    }

    #[test]
    fn canonical_and_one_based_forms_agree() {
        assert_eq!(p("hr:100", DataType::U16), p("40101", DataType::U16));
        assert_eq!(p("hr:100", DataType::U16), p("400101", DataType::U16));
        assert_eq!(p("ir:5", DataType::I16), p("30006", DataType::I16));
        assert_eq!(p("di:3", DataType::Bool), p("10004", DataType::Bool));
        assert_eq!(p("coil:12", DataType::Bool), p("00013", DataType::Bool));
        assert_eq!(p("hr:65535", DataType::U16), p("465536", DataType::U16));
        let a = p("hr:100", DataType::F32);
        assert_eq!(
            (a.table, a.start, a.count),
            (Table::HoldingRegister, 100, 2)
        );
        assert_eq!(a.to_string(), "hr:100 (40101)");
        assert_eq!(p("ir:20000", DataType::U16).one_based(), "320001");
    }

    #[test]
    fn types_decide_the_register_count() {
        for (t, n) in [
            (DataType::U16, 1),
            (DataType::I16, 1),
            (DataType::U32, 2),
            (DataType::I32, 2),
            (DataType::F32, 2),
            (DataType::U64, 4),
            (DataType::I64, 4),
            (DataType::F64, 4),
        ] {
            assert_eq!(p("hr:0", t).count, n, "{t}");
        }
        let s = p("hr:10;len=8", DataType::String);
        assert_eq!(s.count, 8);
        assert_eq!(s.to_string(), "hr:10;len=8 (40011)");
        let b = p("ir:7.15", DataType::Bool);
        assert_eq!((b.bit, b.count), (Some(15), 1));
        assert_eq!(b.to_string(), "ir:7.15 (30008)");
        let (_, opts) = Address::parse_tag("hr:4;group=slow;confirm", DataType::U16).expect("opts");
        assert_eq!(
            opts,
            TagOptions {
                group: Some("slow".into()),
                confirm: true
            }
        );
        let o = p("hr:4; order=cdab", DataType::F32);
        assert_eq!(o.order, WordOrder::Cdab);
        assert_eq!(o.to_string(), "hr:4;order=CDAB (40005)");
        assert_eq!(p("40011.2", DataType::Bool).bit, Some(2));
    }

    #[test]
    fn bad_addresses_say_why() {
        let cases = [
            ("xx:1", DataType::U16, "unknown table"),
            ("hr:-1", DataType::U16, "0-based address"),
            ("hr:70000", DataType::U16, "0-based address"),
            ("coil:1", DataType::U16, "must be bool"),
            ("coil:1.2", DataType::Bool, "only applies to a register"),
            ("hr:1", DataType::Bool, "needs the bit"),
            ("hr:1.16", DataType::Bool, "0..=15"),
            ("hr:1.2", DataType::U16, "only for bool"),
            ("hr:1", DataType::String, "len=N"),
            ("hr:1;len=0", DataType::String, "1..=125"),
            ("hr:1;len=2", DataType::U16, "only for string"),
            ("hr:1;order=XYZW", DataType::F32, "ABCD"),
            ("hr:1;speed=9", DataType::U16, "unknown option"),
            ("hr:1;group=", DataType::U16, "needs a name"),
            ("hr:1;confirm=maybe", DataType::U16, "true or false"),
            ("hr:65534", DataType::F64, "past the end"),
            ("20001", DataType::U16, "leading digit 2"),
            ("40000", DataType::U16, "1..=65536"),
            ("4001", DataType::U16, "1-based"),
            ("", DataType::U16, "neither"),
        ];
        for (a, t, why) in cases {
            let e = Address::parse(a, t).expect_err(a);
            assert!(e.contains(why), "{a}: {e}");
        }
    }
}

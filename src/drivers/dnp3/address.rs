//! Point addresses of DNP3 tags: the point type and index, then options after `|`
//! for outputs (`bo:3|op=pulse;on_ms=500;critical`).

use std::fmt;

use crate::domain::DataType;

/// The DNP3 point types a tag can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PointKind {
    /// Binary input (groups 1 and 2).
    BinaryInput,
    /// Double-bit binary input (groups 3 and 4): 0 intermediate, 1 off, 2 on,
    /// 3 indeterminate.
    DoubleBit,
    /// Analog input (groups 30 and 32).
    AnalogInput,
    /// Counter (groups 20 and 22).
    Counter,
    /// Frozen counter (groups 21 and 23).
    FrozenCounter,
    /// Binary output status (groups 10 and 11), commanded by CROB (group 12).
    BinaryOutput,
    /// Analog output status (groups 40 and 42), commanded by group 41.
    AnalogOutput,
}

impl PointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PointKind::BinaryInput => "bi",
            PointKind::DoubleBit => "dbbi",
            PointKind::AnalogInput => "ai",
            PointKind::Counter => "counter",
            PointKind::FrozenCounter => "frozen_counter",
            PointKind::BinaryOutput => "bo",
            PointKind::AnalogOutput => "ao",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "bi" => PointKind::BinaryInput,
            "dbbi" => PointKind::DoubleBit,
            "ai" => PointKind::AnalogInput,
            "counter" => PointKind::Counter,
            "frozen_counter" => PointKind::FrozenCounter,
            "bo" => PointKind::BinaryOutput,
            "ao" => PointKind::AnalogOutput,
            _ => return None,
        })
    }

    fn accepts(self, t: DataType) -> bool {
        use DataType::*;
        match self {
            PointKind::BinaryInput | PointKind::BinaryOutput => matches!(t, Bool),
            PointKind::DoubleBit => matches!(t, I16 | U16 | I32 | U32 | I64 | U64 | String),
            PointKind::Counter | PointKind::FrozenCounter => {
                matches!(t, U32 | I64 | U64 | F32 | F64)
            }
            PointKind::AnalogInput | PointKind::AnalogOutput => t != Bool && t != String,
        }
    }

    fn types(self) -> &'static str {
        match self {
            PointKind::BinaryInput | PointKind::BinaryOutput => "bool",
            PointKind::DoubleBit => "an integer type (the state code 0-3) or string",
            PointKind::Counter | PointKind::FrozenCounter => "u32, i64, u64, f32 or f64",
            PointKind::AnalogInput | PointKind::AnalogOutput => "a numeric type",
        }
    }
}

/// What a write to a binary output sends (group 12 variation 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// true: LATCH_ON, false: LATCH_OFF.
    Latch,
    /// true: PULSE_ON for `on_ms` (then off for `off_ms`), `count` times; false: PULSE_OFF.
    Pulse,
    /// Paired outputs (breakers): true: CLOSE, false: TRIP, each as PULSE_ON.
    TripClose,
}

/// The encoding of an analog output command (group 41).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnalogCmd {
    /// Variation 1.
    I32,
    /// Variation 2.
    I16,
    /// Variation 3.
    F32,
    /// Variation 4.
    F64,
}

/// How a command is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandMode {
    /// SELECT, then OPERATE with the same request: the outstation checks both match.
    SelectBeforeOperate,
    DirectOperate,
}

/// A tag's point, parsed from its address.
#[derive(Debug, Clone, PartialEq)]
pub struct PointAddress {
    pub kind: PointKind,
    pub index: u16,
    pub op: BinaryOp,
    pub on_ms: u32,
    pub off_ms: u32,
    pub count: u8,
    pub analog_cmd: AnalogCmd,
    pub mode: CommandMode,
    /// The output is critical: select-before-operate unless `mode=` says otherwise.
    pub critical: bool,
}

impl PointAddress {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (point, options) = match s.split_once('|') {
            Some((p, o)) => (p.trim(), Some(o)),
            None => (s.trim(), None),
        };
        let Some((kind, index)) = point.split_once(':') else {
            return Err(format!(
                "`{point}` is not TYPE:INDEX (bi, dbbi, ai, counter, frozen_counter, bo, ao)"
            ));
        };
        let kind = PointKind::parse(kind.trim()).ok_or_else(|| {
            format!(
                "unknown point type `{kind}` (expected bi, dbbi, ai, counter, frozen_counter, bo or ao)"
            )
        })?;
        let index = index
            .trim()
            .parse::<u16>()
            .map_err(|_| format!("point index `{index}` is not 0-65535"))?;
        let mut a = PointAddress {
            kind,
            index,
            op: BinaryOp::Latch,
            on_ms: 1_000,
            off_ms: 0,
            count: 1,
            analog_cmd: AnalogCmd::F32,
            mode: CommandMode::DirectOperate,
            critical: false,
        };
        let mut mode = None;
        for opt in options.into_iter().flat_map(|o| o.split(';')) {
            let opt = opt.trim();
            if opt.is_empty() {
                continue;
            }
            let (key, value) = opt.split_once('=').unwrap_or((opt, ""));
            let output = matches!(kind, PointKind::BinaryOutput | PointKind::AnalogOutput);
            let binary = kind == PointKind::BinaryOutput;
            let number = |v: &str| {
                v.parse::<u32>()
                    .map_err(|_| format!("{key}=`{v}` is not a whole number"))
            };
            match (key, value) {
                ("critical", "") if output => a.critical = true,
                ("mode", "sbo") if output => mode = Some(CommandMode::SelectBeforeOperate),
                ("mode", "direct") if output => mode = Some(CommandMode::DirectOperate),
                ("op", "latch") if binary => a.op = BinaryOp::Latch,
                ("op", "pulse") if binary => a.op = BinaryOp::Pulse,
                ("op", "trip_close") if binary => a.op = BinaryOp::TripClose,
                ("on_ms", v) if binary => a.on_ms = number(v)?,
                ("off_ms", v) if binary => a.off_ms = number(v)?,
                ("count", v) if binary => {
                    a.count = u8::try_from(number(v)?)
                        .ok()
                        .filter(|c| *c > 0)
                        .ok_or_else(|| format!("count=`{v}` is not 1-255"))?
                }
                ("cmd", v) if kind == PointKind::AnalogOutput => {
                    a.analog_cmd = match v {
                        "i32" => AnalogCmd::I32,
                        "i16" => AnalogCmd::I16,
                        "f32" => AnalogCmd::F32,
                        "f64" => AnalogCmd::F64,
                        _ => return Err(format!("cmd=`{v}`: expected i16, i32, f32 or f64")),
                    }
                }
                _ if !output => {
                    return Err(format!(
                        "option `{opt}`: {} points take no options (only outputs, bo and ao, do)",
                        kind.as_str()
                    ));
                }
                _ => {
                    return Err(format!(
                        "unknown option `{opt}` for {} (expected {})",
                        kind.as_str(),
                        if binary {
                            "op=latch|pulse|trip_close, on_ms=, off_ms=, count=, mode=sbo|direct, critical"
                        } else {
                            "cmd=i16|i32|f32|f64, mode=sbo|direct, critical"
                        }
                    ));
                }
            }
        }
        a.mode = mode.unwrap_or(if a.critical {
            CommandMode::SelectBeforeOperate
        } else {
            CommandMode::DirectOperate
        });
        Ok(a)
    }

    /// Checks that a tag of `data_type` can read (and, if `writable`, command) the point.
    pub fn check(&self, data_type: DataType, writable: bool) -> Result<(), String> {
        if !self.kind.accepts(data_type) {
            return Err(format!(
                "a {} point reads into {}, not {data_type}",
                self.kind.as_str(),
                self.kind.types()
            ));
        }
        if writable && !matches!(self.kind, PointKind::BinaryOutput | PointKind::AnalogOutput) {
            return Err(format!(
                "a {} point cannot be commanded: only bo (CROB) and ao (analog output) points are writable",
                self.kind.as_str()
            ));
        }
        Ok(())
    }
}

impl fmt::Display for PointAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.index)?;
        let mode = match self.mode {
            CommandMode::SelectBeforeOperate => "sbo",
            CommandMode::DirectOperate => "direct",
        };
        match self.kind {
            PointKind::BinaryOutput => {
                let op = match self.op {
                    BinaryOp::Latch => "latch",
                    BinaryOp::Pulse => "pulse",
                    BinaryOp::TripClose => "trip_close",
                };
                write!(f, " ({op}, {mode})")
            }
            PointKind::AnalogOutput => write!(f, " ({:?}, {mode})", self.analog_cmd),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_and_output_options_parse() {
        let a = PointAddress::parse("ai:7").expect("parses");
        assert_eq!((a.kind, a.index), (PointKind::AnalogInput, 7));
        let b = PointAddress::parse("bo:3|op=pulse;on_ms=250;off_ms=100;count=2").expect("parses");
        assert_eq!(
            (b.op, b.on_ms, b.off_ms, b.count),
            (BinaryOp::Pulse, 250, 100, 2)
        );
        assert_eq!(b.mode, CommandMode::DirectOperate);
        let c = PointAddress::parse("bo:0|op=trip_close;critical").expect("parses");
        assert_eq!(
            c.mode,
            CommandMode::SelectBeforeOperate,
            "critical outputs default to SBO"
        );
        let d = PointAddress::parse("ao:1|cmd=i16;critical;mode=direct").expect("parses");
        assert_eq!(
            (d.analog_cmd, d.mode),
            (AnalogCmd::I16, CommandMode::DirectOperate)
        );
        assert_eq!(d.to_string(), "ao:1 (I16, direct)");
    }

    #[test]
    fn bad_addresses_say_why() {
        for (a, why) in [
            ("ai", "TYPE:INDEX"),
            ("xx:1", "unknown point type"),
            ("ai:70000", "not 0-65535"),
            ("ai:1|critical", "take no options"),
            ("bo:1|op=toggle", "unknown option"),
            ("bo:1|count=0", "1-255"),
            ("ao:1|cmd=f16", "expected i16"),
            ("bo:1|on_ms=x", "whole number"),
        ] {
            let e = PointAddress::parse(a).expect_err(a);
            assert!(e.contains(why), "{a}: {e}");
        }
    }

    #[test]
    fn types_and_writability_are_checked() {
        let bi = PointAddress::parse("bi:1").expect("parses");
        assert!(bi.check(DataType::Bool, false).is_ok());
        assert!(bi.check(DataType::F64, false).unwrap_err().contains("bool"));
        assert!(
            bi.check(DataType::Bool, true)
                .unwrap_err()
                .contains("cannot be commanded")
        );
        let ao = PointAddress::parse("ao:1").expect("parses");
        assert!(ao.check(DataType::F32, true).is_ok());
        let dbbi = PointAddress::parse("dbbi:0").expect("parses");
        assert!(dbbi.check(DataType::String, false).is_ok());
        assert!(dbbi.check(DataType::Bool, false).is_err());
    }
}

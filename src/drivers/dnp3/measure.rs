//! DNP3 measurements into ThermaCore values: the value checked against the tag's type
//! and scaled, the point's flags into a Quality, the device's time into source time.

use dnp3::app::measurement::{DoubleBit, Flags, Time};

use super::address::PointKind;
use crate::domain::{DataType, Quality, QualityReason, Timestamp, Value};
use crate::drivers::scaling;

/// A measurement of one point, as the master decoded it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Raw {
    Bool(bool),
    DoubleBit(DoubleBit),
    Analog(f64),
    Counter(u32),
}

/// The name a double-bit state reads as in a string tag.
pub fn double_bit_name(d: DoubleBit) -> &'static str {
    match d {
        DoubleBit::Intermediate => "intermediate",
        DoubleBit::DeterminedOff => "off",
        DoubleBit::DeterminedOn => "on",
        DoubleBit::Indeterminate => "indeterminate",
    }
}

fn double_bit_code(d: DoubleBit) -> i64 {
    match d {
        DoubleBit::Intermediate => 0,
        DoubleBit::DeterminedOff => 1,
        DoubleBit::DeterminedOn => 2,
        DoubleBit::Indeterminate => 3,
    }
}

/// The tag's engineering value of a raw measurement, or why it does not fit.
pub fn value(raw: Raw, t: DataType, scale: f64, offset: f64) -> Result<Value, String> {
    let v = match raw {
        Raw::Bool(b) => Value::Bool(b),
        Raw::DoubleBit(d) if t == DataType::String => {
            return Ok(Value::Str(double_bit_name(d).into()));
        }
        Raw::DoubleBit(d) => Value::I64(double_bit_code(d)),
        Raw::Analog(f) => Value::F64(f),
        Raw::Counter(c) => Value::I64(i64::from(c)),
    };
    scaling::from_raw(v, t, scale, offset)
}

/// The quality the point's flags give. Loss of the value (offline, communication
/// lost, not updated since a restart, over range) is Bad; a value that is there but
/// not what the process does (forced, chatter filtered, reference error, counter
/// discontinuity) is Uncertain.
pub fn quality(kind: PointKind, flags: Flags) -> Quality {
    if flags.is_set(Flags::COMM_LOST) {
        return Quality::Bad(QualityReason::CommLost);
    }
    if flags.is_set(Flags::RESTART) {
        return Quality::Bad(QualityReason::DeviceRestarting);
    }
    if !flags.is_set(Flags::ONLINE) {
        return Quality::Bad(QualityReason::OutOfService);
    }
    let analog = matches!(kind, PointKind::AnalogInput | PointKind::AnalogOutput);
    let binary = matches!(
        kind,
        PointKind::BinaryInput | PointKind::DoubleBit | PointKind::BinaryOutput
    );
    let counter = matches!(kind, PointKind::Counter | PointKind::FrozenCounter);
    // Bit 5 is OVER_RANGE for analogs, CHATTER_FILTER for binaries, ROLLOVER (obsolete,
    // ignored) for counters; bit 6 REFERENCE_ERR for analogs, DISCONTINUITY for counters.
    if analog && flags.is_set(Flags::OVER_RANGE) {
        return Quality::Bad(QualityReason::OutOfRange);
    }
    if flags.is_set(Flags::REMOTE_FORCED) || flags.is_set(Flags::LOCAL_FORCED) {
        return Quality::Uncertain(QualityReason::Forced);
    }
    if binary && flags.is_set(Flags::CHATTER_FILTER) {
        return Quality::Uncertain(QualityReason::ChatterFilter);
    }
    if analog && flags.is_set(Flags::REFERENCE_ERR) {
        return Quality::Uncertain(QualityReason::ReferenceError);
    }
    if counter && flags.is_set(Flags::DISCONTINUITY) {
        return Quality::Uncertain(QualityReason::DeviceFlag);
    }
    Quality::Good
}

/// The source time of a measurement: the device's time when it sent one (events,
/// mostly), else when the master received it. A time the device marks as not
/// synchronised leaves a Good value Uncertain (`clock_unsynchronized`).
pub fn time(time: Option<Time>, received: Timestamp, quality: Quality) -> (Timestamp, Quality) {
    match time {
        Some(Time::Synchronized(t)) => (micros(t.raw_value()), quality),
        Some(Time::Unsynchronized(t)) => {
            let q = if quality.is_good() {
                Quality::Uncertain(QualityReason::ClockUnsynchronized)
            } else {
                quality
            };
            (micros(t.raw_value()), q)
        }
        None => (received, quality),
    }
}

fn micros(ms: u64) -> Timestamp {
    Timestamp(
        i64::try_from(ms)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map_to_quality_by_point_type() {
        let online = Flags::ONLINE;
        let with = |f: Flags| Flags::new(online.value | f.value);
        assert_eq!(quality(PointKind::AnalogInput, online), Quality::Good);
        assert_eq!(
            quality(PointKind::AnalogInput, Flags::new(0)),
            Quality::Bad(QualityReason::OutOfService)
        );
        assert_eq!(
            quality(PointKind::BinaryInput, with(Flags::COMM_LOST)),
            Quality::Bad(QualityReason::CommLost)
        );
        assert_eq!(
            quality(PointKind::Counter, Flags::RESTART),
            Quality::Bad(QualityReason::DeviceRestarting)
        );
        // Bit 5: over range for analogs, chatter filter for binaries, nothing for counters.
        assert_eq!(
            quality(PointKind::AnalogInput, with(Flags::OVER_RANGE)),
            Quality::Bad(QualityReason::OutOfRange)
        );
        assert_eq!(
            quality(PointKind::BinaryInput, with(Flags::CHATTER_FILTER)),
            Quality::Uncertain(QualityReason::ChatterFilter)
        );
        assert_eq!(
            quality(PointKind::Counter, with(Flags::ROLL_OVER)),
            Quality::Good
        );
        assert_eq!(
            quality(PointKind::AnalogOutput, with(Flags::REFERENCE_ERR)),
            Quality::Uncertain(QualityReason::ReferenceError)
        );
        assert_eq!(
            quality(PointKind::DoubleBit, with(Flags::LOCAL_FORCED)),
            Quality::Uncertain(QualityReason::Forced)
        );
        assert_eq!(
            quality(PointKind::BinaryOutput, with(Flags::REMOTE_FORCED)),
            Quality::Uncertain(QualityReason::Forced)
        );
    }

    #[test]
    fn values_fit_the_tag_type() {
        assert_eq!(
            value(Raw::Bool(true), DataType::Bool, 1.0, 0.0),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            value(
                Raw::DoubleBit(DoubleBit::DeterminedOn),
                DataType::String,
                1.0,
                0.0
            ),
            Ok(Value::Str("on".into()))
        );
        assert_eq!(
            value(
                Raw::DoubleBit(DoubleBit::Indeterminate),
                DataType::U16,
                1.0,
                0.0
            ),
            Ok(Value::I64(3))
        );
        assert_eq!(
            value(Raw::Analog(2.5), DataType::F64, 2.0, 1.0),
            Ok(Value::F64(6.0))
        );
        assert!(value(Raw::Analog(2.5), DataType::I32, 1.0, 0.0).is_err());
        assert_eq!(
            value(Raw::Counter(7), DataType::U32, 1.0, 0.0),
            Ok(Value::I64(7))
        );
    }

    #[test]
    fn device_time_is_source_time_and_unsynchronised_time_is_uncertain() {
        let now = Timestamp(5);
        let t = dnp3::app::Timestamp::new(1_700_000_000_123);
        assert_eq!(
            time(Some(Time::Synchronized(t)), now, Quality::Good),
            (Timestamp(1_700_000_000_123_000), Quality::Good)
        );
        assert_eq!(
            time(Some(Time::Unsynchronized(t)), now, Quality::Good).1,
            Quality::Uncertain(QualityReason::ClockUnsynchronized)
        );
        let bad = Quality::Bad(QualityReason::CommLost);
        assert_eq!(time(Some(Time::Unsynchronized(t)), now, bad).1, bad);
        assert_eq!(time(None, now, Quality::Good), (now, Quality::Good));
    }
}

//! Commands: a write to a binary output becomes a CROB (group 12 variation 1), to an
//! analog output an analog output block (group 41) in the tag's encoding; the
//! outstation's answer comes back as the write's result.

use dnp3::app::control::{
    CommandStatus, ControlCode, Group12Var1, Group41Var1, Group41Var2, Group41Var3, Group41Var4,
    OpType, TripCloseCode,
};
use dnp3::master::{
    CommandBuilder, CommandError, CommandHeaders, CommandResponseError, CommandSupport, TaskError,
};

use super::address::{AnalogCmd, BinaryOp, PointAddress, PointKind};
use crate::domain::{Tag, Value};
use crate::drivers::{Error, scaling};

/// The request for writing `value` (engineering units) to `tag`'s output point.
pub fn headers(tag: &Tag, a: &PointAddress, value: &Value) -> Result<CommandHeaders, Error> {
    let bad = |reason: String| Error::BadValue {
        tag: tag.spec.name.clone(),
        value: value.to_string(),
        reason,
    };
    let raw =
        scaling::to_raw(value, tag.spec.data_type, tag.spec.scale, tag.spec.offset).map_err(bad)?;
    match a.kind {
        PointKind::BinaryOutput => {
            let Value::Bool(on) = raw else {
                return Err(bad("a binary output takes true or false".into()));
            };
            let code = match (a.op, on) {
                (BinaryOp::Latch, true) => ControlCode::from_op_type(OpType::LatchOn),
                (BinaryOp::Latch, false) => ControlCode::from_op_type(OpType::LatchOff),
                (BinaryOp::Pulse, true) => ControlCode::from_op_type(OpType::PulseOn),
                (BinaryOp::Pulse, false) => ControlCode::from_op_type(OpType::PulseOff),
                (BinaryOp::TripClose, true) => {
                    ControlCode::from_tcc_and_op_type(TripCloseCode::Close, OpType::PulseOn)
                }
                (BinaryOp::TripClose, false) => {
                    ControlCode::from_tcc_and_op_type(TripCloseCode::Trip, OpType::PulseOn)
                }
            };
            let crob = Group12Var1 {
                code,
                count: a.count,
                on_time: a.on_ms,
                off_time: a.off_ms,
                status: CommandStatus::Success,
            };
            Ok(CommandBuilder::single_header_u16(crob, a.index))
        }
        PointKind::AnalogOutput => {
            let x = scaling::number(&raw).map_err(bad)?;
            let whole = |lo: f64, hi: f64, bits: u8| {
                if x.fract() != 0.0 {
                    return Err(bad(format!(
                        "the output takes {bits}-bit integers (cmd=i{bits}) and {x} is not a whole number"
                    )));
                }
                if x < lo || x > hi {
                    return Err(bad(format!(
                        "{x} is out of range for a {bits}-bit analog output ({lo}..={hi})"
                    )));
                }
                Ok(x)
            };
            let status = CommandStatus::Success;
            Ok(match a.analog_cmd {
                AnalogCmd::I16 => {
                    let value = whole(f64::from(i16::MIN), f64::from(i16::MAX), 16)? as i16;
                    CommandBuilder::single_header_u16(Group41Var2 { value, status }, a.index)
                }
                AnalogCmd::I32 => {
                    let value = whole(f64::from(i32::MIN), f64::from(i32::MAX), 32)? as i32;
                    CommandBuilder::single_header_u16(Group41Var1 { value, status }, a.index)
                }
                AnalogCmd::F32 => {
                    if !x.is_finite() || x.abs() > f64::from(f32::MAX) {
                        return Err(bad(format!("{x} does not fit a 32-bit float output")));
                    }
                    let value = x as f32;
                    CommandBuilder::single_header_u16(Group41Var3 { value, status }, a.index)
                }
                AnalogCmd::F64 => {
                    if !x.is_finite() {
                        return Err(bad(format!("{x} is not a finite number")));
                    }
                    CommandBuilder::single_header_u16(Group41Var4 { value: x, status }, a.index)
                }
            })
        }
        _ => Err(Error::NotWritable(tag.spec.name.clone())),
    }
}

/// The outstation's command status as written in the standard (`NOT_SUPPORTED`).
pub fn status_name(s: CommandStatus) -> String {
    let name = match s {
        CommandStatus::Success => "SUCCESS",
        CommandStatus::Timeout => "TIMEOUT",
        CommandStatus::NoSelect => "NO_SELECT",
        CommandStatus::FormatError => "FORMAT_ERROR",
        CommandStatus::NotSupported => "NOT_SUPPORTED",
        CommandStatus::AlreadyActive => "ALREADY_ACTIVE",
        CommandStatus::HardwareError => "HARDWARE_ERROR",
        CommandStatus::Local => "LOCAL",
        CommandStatus::TooManyOps => "TOO_MANY_OPS",
        CommandStatus::NotAuthorized => "NOT_AUTHORIZED",
        CommandStatus::AutomationInhibit => "AUTOMATION_INHIBIT",
        CommandStatus::ProcessingLimited => "PROCESSING_LIMITED",
        CommandStatus::OutOfRange => "OUT_OF_RANGE",
        CommandStatus::DownstreamLocal => "DOWNSTREAM_LOCAL",
        CommandStatus::AlreadyComplete => "ALREADY_COMPLETE",
        CommandStatus::Blocked => "BLOCKED",
        CommandStatus::Canceled => "CANCELED",
        CommandStatus::BlockedOtherMaster => "BLOCKED_OTHER_MASTER",
        CommandStatus::DownstreamFail => "DOWNSTREAM_FAIL",
        CommandStatus::NonParticipating => "NON_PARTICIPATING",
        CommandStatus::Unknown(code) => return format!("status {code}"),
    };
    name.into()
}

/// What a failed command tells the caller, and its outcome label for metrics.
pub fn error(e: CommandError, timeout_ms: u64) -> (Error, String) {
    match e {
        CommandError::Response(CommandResponseError::BadStatus(s)) => {
            let name = status_name(s);
            let hint = match s {
                CommandStatus::NotSupported => {
                    " (no such output, or the operation is not supported there)"
                }
                CommandStatus::Local => " (the output is in local control)",
                CommandStatus::NoSelect => " (the select was lost or timed out before the operate)",
                CommandStatus::OutOfRange => " (the value is outside what the output accepts)",
                _ => "",
            };
            (
                Error::Refused(format!("the outstation answered {name}{hint}")),
                name.to_lowercase(),
            )
        }
        CommandError::Response(other) => (
            Error::Protocol(format!(
                "the outstation's answer does not match the command: {other:?}"
            )),
            "mismatch".into(),
        ),
        CommandError::Task(t) => task_error(t, timeout_ms),
    }
}

/// The request failed on something the outstation sent (it is there and answering),
/// not on the link or on our side.
pub fn outstation_answered(t: &TaskError) -> bool {
    matches!(
        t,
        TaskError::RejectedByIin2(_)
            | TaskError::MalformedResponse(_)
            | TaskError::UnexpectedResponseHeaders
            | TaskError::NonFinWithoutCon
            | TaskError::NeverReceivedFir
            | TaskError::UnexpectedFir
            | TaskError::MultiFragmentResponse
    )
}

/// A failed request as a driver error, and its outcome label.
pub fn task_error(t: TaskError, timeout_ms: u64) -> (Error, String) {
    match t {
        TaskError::ResponseTimeout => (Error::Timeout(timeout_ms), "timeout".into()),
        TaskError::NoConnection | TaskError::Disabled | TaskError::Shutdown => (
            Error::Disconnected("the DNP3 link to the outstation is down".into()),
            "offline".into(),
        ),
        TaskError::RejectedByIin2(iin) => (
            Error::Refused(format!(
                "the outstation rejected the request: {}",
                iin2_text(iin)
            )),
            "rejected".into(),
        ),
        other => (
            Error::Protocol(format!("DNP3 request failed: {other}")),
            "error".into(),
        ),
    }
}

/// The IIN2 bits that reject a request, in words.
fn iin2_text(iin: dnp3::app::Iin) -> String {
    let i = iin.iin2;
    let bits = [
        (
            i.get_no_func_code_support(),
            "NO_FUNC_CODE_SUPPORT (the function is not supported)",
        ),
        (
            i.get_object_unknown(),
            "OBJECT_UNKNOWN (the point or object is not there)",
        ),
        (
            i.get_parameter_error(),
            "PARAMETER_ERROR (no such point, or the operation is not supported there)",
        ),
        (i.get_already_executing(), "ALREADY_EXECUTING"),
        (i.get_event_buffer_overflow(), "EVENT_BUFFER_OVERFLOW"),
        (i.get_config_corrupt(), "CONFIG_CORRUPT"),
    ];
    let named: Vec<&str> = bits
        .iter()
        .filter(|(set, _)| *set)
        .map(|(_, n)| *n)
        .collect();
    if named.is_empty() {
        format!("IIN2 {:#04x}", i.value)
    } else {
        named.join(", ")
    }
}

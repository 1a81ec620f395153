//! How the Modbus driver treats a failed request: the link or the device as a whole,
//! or a refusal of this request (its tags go Bad, the range may be split, the address
//! may be parked).

use rodbus::{ExceptionCode, RequestError};

use super::pool;
use crate::domain::QualityReason;
use crate::drivers::Error;

/// How a failed request is handled.
pub(super) enum Fault {
    /// The link or the device as a whole: the poll fails.
    Link(Error),
    /// The device refused this request: its tags go Bad with `reason`.
    Refused {
        reason: QualityReason,
        /// Split a multi-tag request and try the halves (a hole or a size limit).
        split: bool,
        /// Count towards the bad-address cache.
        cache: bool,
    },
}

/// `illegal data value (exception 3)`: our words for a Modbus exception.
pub(super) fn exception_text(x: ExceptionCode) -> String {
    let name = pool::error_code(&RequestError::Exception(x)).replace('_', " ");
    format!("{name} (exception {})", u8::from(x))
}

pub(super) fn classify(e: &RequestError, label: &str, timeout_ms: u64) -> Fault {
    use ExceptionCode as X;
    let refused = |reason, split, cache| Fault::Refused {
        reason,
        split,
        cache,
    };
    match e {
        RequestError::ResponseTimeout => Fault::Link(Error::Timeout(timeout_ms)),
        RequestError::Io(kind) => Fault::Link(Error::Disconnected(format!("{label}: {kind}"))),
        RequestError::NoConnection | RequestError::Shutdown => {
            Fault::Link(Error::Disconnected(format!("{label}: {e}")))
        }
        RequestError::Exception(x) => match x {
            X::IllegalDataAddress => refused(QualityReason::IllegalAddress, true, true),
            X::IllegalDataValue => refused(QualityReason::IllegalValue, true, true),
            X::IllegalFunction => refused(QualityReason::IllegalFunction, true, true),
            X::ServerDeviceFailure | X::MemoryParityError => {
                refused(QualityReason::DeviceFailure, false, false)
            }
            X::Acknowledge | X::ServerDeviceBusy => {
                refused(QualityReason::DeviceBusy, false, false)
            }
            X::GatewayPathUnavailable | X::GatewayTargetDeviceFailedToRespond => {
                refused(QualityReason::GatewayError, false, false)
            }
            X::Unknown(_) => refused(QualityReason::DeviceError, false, false),
        },
        // A short or malformed answer: often a device that serves fewer registers than
        // asked. Smaller requests may succeed.
        RequestError::BadFrame(_) | RequestError::BadResponse(_) => {
            refused(QualityReason::BadResponse, true, true)
        }
        RequestError::BadRequest(_) | RequestError::Internal(_) => {
            refused(QualityReason::ConfigError, false, false)
        }
    }
}

//! Resolvers' requests to device actors: the caller's device and its running actor,
//! one call bounded by `api.command_timeout_ms`, and what the caller is told of a
//! driver's error (our own words; the driver's detail goes to the log).

use std::time::Duration;

use async_graphql::{Context, ID};
use ractor::rpc::CallResult;
use ractor::{ActorRef, RpcReplyPort};

use super::{ApiError, api, fail, session};
use crate::actors::TenantShared;
use crate::actors::device::DeviceMsg;
use crate::domain::{Device, DeviceId};
use crate::drivers;

/// What the caller is told of a failed device request: the refusals of bad input as
/// BAD_USER_INPUT, what the device did as DEVICE_ERROR.
pub(crate) fn api_error(e: drivers::Error) -> ApiError {
    use drivers::Error as E;
    match e {
        E::BadValue { .. } | E::NotWritable(_) | E::Unsupported(_) => {
            ApiError::BadRequest(e.to_string())
        }
        E::Refused(_) | E::NotConfirmed { .. } => ApiError::Device(e.to_string()),
        E::Timeout(ms) => ApiError::Device(format!("the device did not answer within {ms} ms")),
        E::Disconnected(detail) => {
            tracing::info!(%detail, "device request refused: device not connected");
            ApiError::Device("the device is not connected".into())
        }
        E::Protocol(detail) => {
            tracing::warn!(%detail, "device request: unusable answer");
            ApiError::Device("the device answered something unusable".into())
        }
        E::Config(_) | E::Address { .. } => ApiError::Internal(e.to_string()),
    }
}

/// [`api_error`] for requests naming a node of the device's address space (browse):
/// a node the driver cannot resolve is the caller's input, BAD_USER_INPUT.
pub(crate) fn node_error(e: drivers::Error) -> ApiError {
    match e {
        drivers::Error::Config(reason) => ApiError::BadRequest(reason),
        other => api_error(other),
    }
}

/// The caller's device `id`: NOT_FOUND when it is not one of the caller's tenant's,
/// as in every device lookup.
pub(crate) async fn own_device(ctx: &Context<'_>, id: &ID) -> async_graphql::Result<Device> {
    let s = session(ctx)?;
    let id: DeviceId = id
        .parse()
        .map_err(|_| fail(ctx, ApiError::NotFound("device")))?;
    api(ctx)
        .store
        .device(s.tenant, id)
        .await
        .map_err(|e| fail(ctx, e))?
        .ok_or_else(|| fail(ctx, ApiError::NotFound("device")))
}

/// The running actor of `device`; DEVICE_ERROR when it is disabled or restarting.
pub(crate) fn running(
    ctx: &Context<'_>,
    t: &TenantShared,
    device: DeviceId,
) -> async_graphql::Result<ActorRef<DeviceMsg>> {
    t.devices
        .get(&device)
        .and_then(|slot| slot.get())
        .ok_or_else(|| {
            fail(
                ctx,
                ApiError::Device("the device is not running (disabled or restarting)".into()),
            )
        })
}

/// Sends the request `msg` builds to a device actor and waits for the answer, at most
/// `api.command_timeout_ms`; `map` says what the caller is told of a driver's error.
pub(crate) async fn call<T, F>(
    ctx: &Context<'_>,
    actor: &ActorRef<DeviceMsg>,
    msg: F,
    map: fn(drivers::Error) -> ApiError,
) -> async_graphql::Result<T>
where
    T: Send + 'static,
    F: FnOnce(RpcReplyPort<Result<T, drivers::Error>>) -> DeviceMsg,
{
    let timeout = Duration::from_millis(api(ctx).config.api.command_timeout_ms);
    match actor.call(msg, Some(timeout)).await {
        Ok(CallResult::Success(Ok(answer))) => Ok(answer),
        Ok(CallResult::Success(Err(e))) => Err(fail(ctx, map(e))),
        Ok(CallResult::Timeout) => Err(fail(
            ctx,
            ApiError::Device(format!(
                "no answer from the device within {} ms",
                timeout.as_millis()
            )),
        )),
        Ok(CallResult::SenderError) | Err(_) => Err(fail(
            ctx,
            ApiError::Device("the device stopped before answering".into()),
        )),
    }
}

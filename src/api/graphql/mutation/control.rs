//! Commands: `writeTag` routes a value through the tag's device actor to the device and
//! reports what the device did. Every call is audited (by the audit extension) with the
//! tag and the value.

use async_graphql::{Context, ID, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};

use crate::actors::device::DeviceMsg;
use crate::api::audit::note;
use crate::api::graphql::devices::{api_error, call, running};
use crate::api::graphql::{ApiError, fail, tenant};
use crate::api::permissions::FieldAccess;
use crate::domain::{TagId, Value};

#[derive(Default)]
pub struct ControlMutations;

/// What a write did.
#[derive(SimpleObject)]
pub struct WriteResult {
    pub tag_id: ID,
    /// The value written, in engineering units.
    pub value: Json<serde_json::Value>,
    /// The value read back from the device, for tags that ask for confirmation
    /// (`confirm` in a Modbus address); null otherwise.
    pub confirmed: Option<Json<serde_json::Value>>,
    /// When the device acknowledged the write.
    pub acknowledged_at: DateTime<Utc>,
}

/// A command's value from JSON: a number (whole numbers stay integers), a boolean or a
/// string.
fn value_of(json: &serde_json::Value) -> Result<Value, String> {
    match json {
        serde_json::Value::Bool(b) => Ok(Value::Bool(*b)),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Value::I64(i)),
            (None, Some(f)) if n.is_f64() => Ok(Value::F64(f)),
            _ => Err(format!("{n} is out of range")),
        },
        serde_json::Value::String(s) => Ok(Value::Str(s.as_str().into())),
        _ => Err("the value must be a number, a boolean or a string".into()),
    }
}

#[Object(guard = "FieldAccess(\"Mutation\")")]
impl ControlMutations {
    /// Writes `value` (engineering units: scaling is undone for the device) to a writable
    /// tag. The command goes through the tag's device actor, in order with its polls;
    /// the answer comes when the device acknowledged it (and, for tags that ask for
    /// confirmation, when the read-back matched). Refused values are BAD_USER_INPUT;
    /// a device that refuses, does not answer or is not connected is DEVICE_ERROR.
    async fn write_tag(
        &self,
        ctx: &Context<'_>,
        tag_id: ID,
        value: Json<serde_json::Value>,
    ) -> async_graphql::Result<WriteResult> {
        let t = tenant(ctx)?;
        let tag: TagId = tag_id
            .parse()
            .map_err(|_| fail(ctx, ApiError::NotFound("tag")))?;
        let Some(device) = t.tag_devices.get(&tag).map(|d| *d) else {
            return Err(fail(ctx, ApiError::NotFound("tag")));
        };
        note(ctx, |n| n.resource_id = Some(tag.to_string()));
        let v = value_of(&value.0).map_err(|e| fail(ctx, ApiError::BadRequest(e)))?;
        let actor = running(ctx, &t, device)?;
        let report = call(
            ctx,
            &actor,
            |reply| DeviceMsg::Write {
                tag,
                value: v.clone(),
                reply,
            },
            api_error,
        )
        .await?;
        Ok(WriteResult {
            tag_id,
            value: Json(v.to_json()),
            confirmed: report.confirmed.map(|c| Json(c.to_json())),
            acknowledged_at: Utc::now(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_values_keep_their_kind() {
        assert_eq!(value_of(&serde_json::json!(3)), Ok(Value::I64(3)));
        assert_eq!(value_of(&serde_json::json!(-2.5)), Ok(Value::F64(-2.5)));
        assert_eq!(value_of(&serde_json::json!(true)), Ok(Value::Bool(true)));
        assert_eq!(
            value_of(&serde_json::json!("auto")),
            Ok(Value::Str("auto".into()))
        );
        assert!(value_of(&serde_json::json!(null)).is_err());
        assert!(value_of(&serde_json::json!([1])).is_err());
        assert!(value_of(&serde_json::json!(18446744073709551615u64)).is_err());
    }
}

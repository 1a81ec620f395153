//! OPC UA browsing and import (`browseOpcUa`, `importOpcUaTags`): the caller's OPC UA
//! device, bounded input, one request to its device actor.

use std::sync::Arc;

use async_graphql::{Context, ID};
use ractor::ActorRef;

use super::devices::{api_error, call, node_error, own_device, running};
use super::types::{OpcUaImport, OpcUaNode};
use super::{ApiError, fail, tenant};
use crate::actors::TenantShared;
use crate::actors::device::{DeviceMsg, ImportOutcome};
use crate::api::audit::note;
use crate::drivers::opcua::OpcuaAddress;

/// Most node ids one `importOpcUaTags` call takes.
pub const MAX_IMPORT_NODES: usize = 1_000;
/// Longest node id taken (bytes).
pub const MAX_NODE_ID_BYTES: usize = 4_096;

/// The caller's OPC UA device `id` and its running actor. `feature` names what was
/// asked, for the error a device of another protocol gets (BAD_USER_INPUT).
async fn opcua_device(
    ctx: &Context<'_>,
    id: &ID,
    feature: &str,
) -> async_graphql::Result<(Arc<TenantShared>, ActorRef<DeviceMsg>)> {
    let t = tenant(ctx)?;
    let device = own_device(ctx, id).await?;
    let protocol = device.protocol();
    if protocol != "opcua" {
        return Err(fail(
            ctx,
            ApiError::BadRequest(format!(
                "device {} is a {protocol} device: {feature} is an OPC UA feature",
                device.spec.name
            )),
        ));
    }
    let actor = running(ctx, &t, device.id)?;
    Ok((t, actor))
}

fn check_node_id(ctx: &Context<'_>, node: &str) -> async_graphql::Result<()> {
    if node.is_empty() || node.len() > MAX_NODE_ID_BYTES {
        return Err(fail(
            ctx,
            ApiError::BadRequest(format!("a node id has 1 to {MAX_NODE_ID_BYTES} bytes")),
        ));
    }
    Ok(())
}

/// The children of `node` (`None`: the Objects folder) of an OPC UA device.
pub(crate) async fn browse(
    ctx: &Context<'_>,
    device_id: &ID,
    node: Option<String>,
) -> async_graphql::Result<Vec<OpcUaNode>> {
    if let Some(n) = &node {
        check_node_id(ctx, n)?;
        OpcuaAddress::parse(n)
            .map_err(|e| fail(ctx, ApiError::BadRequest(format!("nodeId: {e}"))))?;
    }
    let (_, actor) = opcua_device(ctx, device_id, "browsing").await?;
    let nodes = call(
        ctx,
        &actor,
        |reply| DeviceMsg::Browse { node, reply },
        node_error,
    )
    .await?;
    Ok(nodes.into_iter().map(OpcUaNode::from).collect())
}

/// Creates tags for `nodes` of an OPC UA device; nodes imported before give their
/// tags. The audit record names the device and counts the outcome.
pub(crate) async fn import(
    ctx: &Context<'_>,
    device_id: &ID,
    nodes: Vec<String>,
) -> async_graphql::Result<OpcUaImport> {
    note(ctx, |n| n.resource_id = Some(device_id.to_string()));
    if nodes.len() > MAX_IMPORT_NODES {
        return Err(fail(
            ctx,
            ApiError::BadRequest(format!(
                "at most {MAX_IMPORT_NODES} node ids per call ({} given): import in parts",
                nodes.len()
            )),
        ));
    }
    for n in &nodes {
        check_node_id(ctx, n)?;
    }
    let (_, actor) = opcua_device(ctx, device_id, "importing tags").await?;
    let outcome = if nodes.is_empty() {
        ImportOutcome::default()
    } else {
        call(
            ctx,
            &actor,
            |reply| DeviceMsg::Import { nodes, reply },
            api_error,
        )
        .await?
    };
    note(ctx, |n| {
        n.reason = Some(format!(
            "created:{},existing:{},failed:{}",
            outcome.created.len(),
            outcome.existing.len(),
            outcome.errors.len()
        ));
    });
    Ok(outcome.into())
}

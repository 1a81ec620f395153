//! `importOpcUaTags`: tags created from nodes of an OPC UA device's address space.
//! Audited (by the audit extension) with the device and the outcome's counts.

use async_graphql::{Context, ID, Object};

use crate::api::graphql::opcua;
use crate::api::graphql::types::OpcUaImport;
use crate::api::permissions::FieldAccess;

#[derive(Default)]
pub struct OpcUaMutations;

#[Object(guard = "FieldAccess(\"Mutation\")")]
impl OpcUaMutations {
    /// Creates a tag for each of `nodeIds` (at most 1000; node ids as `browseOpcUa`
    /// gives them) on an OPC UA device: named by the node's display name, typed by its
    /// data type, writable when the server lets us write it, and stored within the
    /// tenant's `max_tags`. A node imported before gives its tag in `existing` (nothing
    /// is created twice, so importing again is safe); a node that cannot be imported
    /// (not a variable, no matching data type, its name taken by another tag, beyond
    /// the quota) is in `errors`. A device of another protocol is BAD_USER_INPUT; a
    /// device that is not connected is DEVICE_ERROR.
    async fn import_opc_ua_tags(
        &self,
        ctx: &Context<'_>,
        device_id: ID,
        node_ids: Vec<String>,
    ) -> async_graphql::Result<OpcUaImport> {
        opcua::import(ctx, &device_id, node_ids).await
    }
}

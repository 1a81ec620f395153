//! GraphQL types of OPC UA browsing and import: the nodes of a server's address space,
//! and what an import created.

use async_graphql::SimpleObject;

use super::Tag;
use crate::actors::device::{ImportOutcome, NodeError};
use crate::drivers::BrowsedNode;

/// A node of an OPC UA server's address space.
#[derive(SimpleObject)]
pub struct OpcUaNode {
    /// The node in address form (`nsu=<namespace URI>;s=…`, or `i=…` in namespace 0):
    /// usable as a tag address, as `browseOpcUa(nodeId)` and in `importOpcUaTags`.
    pub node_id: String,
    pub browse_name: String,
    pub display_name: String,
    /// Object, Variable, Method, ObjectType, VariableType, ReferenceType, DataType or
    /// View.
    pub node_class: String,
    /// The node's data type as the server names it (variables only).
    pub data_type: Option<String>,
    /// The tag data type that reads the node without loss, as `Tag.dataType` spells it
    /// (`f64`, `i32`, `bool` …); null when there is none (the node cannot be imported).
    pub tag_type: Option<String>,
    pub readable: bool,
    pub writable: bool,
    /// The node has children to browse.
    pub has_children: bool,
}

impl From<BrowsedNode> for OpcUaNode {
    fn from(n: BrowsedNode) -> Self {
        OpcUaNode {
            node_id: n.node_id,
            browse_name: n.browse_name,
            display_name: n.display_name,
            node_class: n.node_class,
            data_type: n.data_type,
            tag_type: n.tag_type.map(|t| t.to_string()),
            readable: n.readable,
            writable: n.writable,
            has_children: n.has_children,
        }
    }
}

/// What `importOpcUaTags` did, node by node.
#[derive(SimpleObject)]
pub struct OpcUaImport {
    /// Tags created by this call, in the order of their nodes.
    pub created: Vec<Tag>,
    /// Nodes imported before (a tag of the same name and address is on the device):
    /// their tags, unchanged. Importing a node again creates nothing.
    pub existing: Vec<Tag>,
    /// Nodes not imported, in the order given, with why.
    pub errors: Vec<OpcUaImportError>,
}

/// A node that was not imported.
#[derive(SimpleObject)]
pub struct OpcUaImportError {
    pub node_id: String,
    pub message: String,
}

impl From<ImportOutcome> for OpcUaImport {
    fn from(o: ImportOutcome) -> Self {
        OpcUaImport {
            created: o.created.into_iter().map(Tag::from).collect(),
            existing: o.existing.into_iter().map(Tag::from).collect(),
            errors: o.errors.into_iter().map(OpcUaImportError::from).collect(),
        }
    }
}

impl From<NodeError> for OpcUaImportError {
    fn from(e: NodeError) -> Self {
        OpcUaImportError {
            node_id: e.node,
            message: e.message,
        }
    }
}

//! Browsing a server's address space (so an admin can discover tags) and turning
//! nodes into tag specs (import).

use opcua::types::{
    AttributeId, BrowseDescription, BrowseDirection, BrowseResultMask, ByteString, DataValue,
    NodeClass, NodeId, ObjectId, ReferenceDescription, ReferenceTypeId, StatusCode, Variant,
};

use opcua::nodes::AccessLevel;

use super::address::OpcuaAddress;
use super::conn::{Ctx, count_error, lock};
use super::value;
use crate::domain::TagSpec;
use crate::drivers::{BrowsedNode, Error, ImportedNode};

/// Most references one browse returns (more come through continuation points).
const REFERENCES_PER_NODE: u32 = 1_000;
/// Most children one browse lists: an address space folder larger than this is
/// cut, and says so in the log.
const MAX_CHILDREN: usize = 10_000;

fn service(e: opcua::types::Error, what: &'static str) -> Error {
    count_error(what, e.status());
    Error::Protocol(format!("{what}: {e}"))
}

impl Ctx {
    /// `node` in address form: by namespace URI, so that it survives index moves.
    pub fn address_of(&self, node: &NodeId) -> String {
        let ns = lock(&self.namespaces);
        let id = node.identifier.to_string();
        match (node.namespace, ns.get(node.namespace as usize)) {
            (0, _) => id,
            (_, Some(uri)) if !uri.is_empty() => {
                format!("nsu={};{id}", uri.replace('%', "%25").replace(';', "%3b"))
            }
            (i, _) => format!("ns={i};{id}"),
        }
    }

    /// A node from its address form.
    pub fn node_of(&self, address: &str) -> Result<NodeId, Error> {
        let a = OpcuaAddress::parse(address).map_err(Error::Config)?;
        a.resolve(&lock(&self.namespaces)).map_err(Error::Config)
    }

    async fn references(
        &self,
        nodes: &[NodeId],
        max: u32,
    ) -> Result<Vec<Vec<ReferenceDescription>>, Error> {
        let mut out = Vec::with_capacity(nodes.len());
        let per = lock(&self.limits).per_browse.max(1);
        for chunk in nodes.chunks(per) {
            let descriptions: Vec<BrowseDescription> = chunk
                .iter()
                .map(|n| BrowseDescription {
                    node_id: n.clone(),
                    browse_direction: BrowseDirection::Forward,
                    reference_type_id: ReferenceTypeId::HierarchicalReferences.into(),
                    include_subtypes: true,
                    node_class_mask: 0,
                    result_mask: BrowseResultMask::All as u32,
                })
                .collect();
            let results = self
                .session
                .browse(&descriptions, max, None)
                .await
                .map_err(|e| service(e, "browse"))?;
            for r in results {
                if !r.status_code.is_good() {
                    count_error("browse", r.status_code);
                    out.push(Vec::new());
                    continue;
                }
                let mut refs = r.references.unwrap_or_default();
                let mut cp: ByteString = r.continuation_point;
                // Only the listing browse follows continuation points.
                while max == REFERENCES_PER_NODE && !cp.is_null() && refs.len() < MAX_CHILDREN {
                    let next = self
                        .session
                        .browse_next(false, std::slice::from_ref(&cp))
                        .await
                        .map_err(|e| service(e, "browse_next"))?;
                    let Some(n) = next.into_iter().next() else {
                        break;
                    };
                    refs.extend(n.references.unwrap_or_default());
                    cp = n.continuation_point;
                }
                if !cp.is_null() {
                    let _ = self.session.browse_next(true, &[cp]).await;
                }
                out.push(refs);
            }
        }
        Ok(out)
    }

    /// The children of `node` (`None`: the Objects folder).
    pub async fn browse(&self, node: Option<&str>) -> Result<Vec<BrowsedNode>, Error> {
        let parent = match node {
            None => NodeId::from(ObjectId::ObjectsFolder),
            Some(a) => self.node_of(a)?,
        };
        let refs = self
            .references(std::slice::from_ref(&parent), REFERENCES_PER_NODE)
            .await?
            .into_iter()
            .next()
            .unwrap_or_default();
        if refs.len() >= MAX_CHILDREN {
            tracing::warn!(device = %self.sink.device, node = %parent, "browse cut at {MAX_CHILDREN} children");
        }
        let children: Vec<NodeId> = refs.iter().map(|r| r.node_id.node_id.clone()).collect();
        let grandchildren = self.references(&children, 1).await?;
        let variables: Vec<NodeId> = refs
            .iter()
            .filter(|r| r.node_class == NodeClass::Variable)
            .map(|r| r.node_id.node_id.clone())
            .collect();
        let types = self
            .read_attribute(&variables, AttributeId::DataType)
            .await?;
        let access = self
            .read_attribute(&variables, AttributeId::UserAccessLevel)
            .await?;
        let mut var = variables.iter().zip(types.iter().zip(access.iter()));
        let mut out = Vec::with_capacity(refs.len());
        for (r, below) in refs.iter().zip(grandchildren.iter()) {
            let id = &r.node_id.node_id;
            let (data_type, tag_type, readable, writable) = if r.node_class == NodeClass::Variable {
                match var.next() {
                    Some((_, (t, a))) => {
                        let (name, tag_type) = type_of(t);
                        let (read, write) = access_of(a);
                        (name, tag_type, read, write)
                    }
                    None => (None, None, false, false),
                }
            } else {
                (None, None, false, false)
            };
            out.push(BrowsedNode {
                node_id: self.address_of(id),
                browse_name: r.browse_name.name.as_ref().to_string(),
                display_name: r.display_name.text.as_ref().to_string(),
                node_class: format!("{:?}", r.node_class),
                data_type,
                tag_type,
                readable,
                writable,
                has_children: !below.is_empty(),
            });
        }
        Ok(out)
    }

    /// Tag specs for `addresses`: the node's display name, the data type that reads
    /// it, writable when the server lets us write it.
    pub async fn import(&self, addresses: &[String]) -> Result<Vec<ImportedNode>, Error> {
        let mut nodes = Vec::with_capacity(addresses.len());
        let mut results: Vec<Option<ImportedNode>> = Vec::with_capacity(addresses.len());
        for a in addresses {
            match self.node_of(a) {
                Ok(n) => {
                    nodes.push(n);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e.to_string()))),
            }
        }
        let names = self
            .read_attribute(&nodes, AttributeId::DisplayName)
            .await?;
        let classes = self.read_attribute(&nodes, AttributeId::NodeClass).await?;
        let types = self.read_attribute(&nodes, AttributeId::DataType).await?;
        let access = self
            .read_attribute(&nodes, AttributeId::UserAccessLevel)
            .await?;
        for (i, slot) in results.iter_mut().filter(|r| r.is_none()).enumerate() {
            let node = &nodes[i];
            let status = names[i].status.unwrap_or(StatusCode::Good);
            let spec = if !status.is_good() {
                Err(format!("{}: {status}", self.address_of(node)))
            } else if !matches!(classes[i].value, Some(Variant::Int32(c)) if c == NodeClass::Variable as i32)
            {
                Err(format!("{} is not a variable", self.address_of(node)))
            } else {
                let name = match &names[i].value {
                    Some(Variant::LocalizedText(t)) => t.text.as_ref().to_string(),
                    _ => node.identifier.to_string(),
                };
                let (type_name, tag_type) = type_of(&types[i]);
                let (_, writable) = access_of(&access[i]);
                match tag_type {
                    Some(data_type) => Ok(TagSpec {
                        name,
                        unit: None,
                        address: self.address_of(node),
                        data_type,
                        scale: 1.0,
                        offset: 0.0,
                        eng_unit: None,
                        deadband: 0.0,
                        writable,
                    }),
                    None => Err(format!(
                        "{}: data type {} has no ThermaCore mapping",
                        self.address_of(node),
                        type_name.unwrap_or_else(|| "unknown".into())
                    )),
                }
            };
            *slot = Some(spec);
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err("not read".into())))
            .collect())
    }
}

/// The server's name of a DataType attribute value, and the tag type reading it.
fn type_of(dv: &DataValue) -> (Option<String>, Option<crate::domain::DataType>) {
    match &dv.value {
        Some(Variant::NodeId(id)) => {
            let name = id
                .as_data_type_id()
                .map_or_else(|_| id.to_string(), |t| format!("{t:?}"));
            let tag = value::scalar_type(id).and_then(value::data_type_for);
            (Some(name), tag)
        }
        _ => (None, None),
    }
}

/// Readable and writable for us, from a UserAccessLevel value.
fn access_of(dv: &DataValue) -> (bool, bool) {
    match &dv.value {
        Some(Variant::Byte(b)) => {
            let a = AccessLevel::from_bits_truncate(*b);
            (
                a.contains(AccessLevel::CURRENT_READ),
                a.contains(AccessLevel::CURRENT_WRITE),
            )
        }
        _ => (false, false),
    }
}

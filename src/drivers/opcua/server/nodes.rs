//! The embedded server's node manager: the variables of one namespace in an in-memory
//! address space, with strict writes (a value of another type than the node's DataType
//! is refused with `BadTypeMismatch`, as a PLC does; the library alone would store it)
//! and value updates pushed to subscriptions under one lock per batch.
//!
//! async-opcua 0.19 holds back a change that comes less than a sampling interval after
//! the previous one, to send it one interval later, but only sends it when the node
//! changes again: the last change of a burst can stay unsent for good. [`nudge`]
//! works around it by notifying quiet nodes again a few times after their last change
//! (a repeat of the current value is no change for the monitored item, but it lets the
//! held-back value out once it is due).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use opcua::server::SubscriptionCache;
use opcua::server::address_space::{
    AccessLevel, AddressSpace, NodeType, ObjectBuilder, VariableBuilder, write_node_value,
};
use opcua::server::diagnostics::NamespaceMetadata;
use opcua::server::node_manager::memory::{InMemoryNodeManager, InMemoryNodeManagerImpl};
use opcua::server::node_manager::{RequestContext, ServerContext, WriteNode};
use opcua::sync::RwLock;
use opcua::types::{
    AttributeId, DataEncoding, DataTypeId, DataValue, DateTime, Identifier, NodeId, NumericRange,
    ObjectId, QualifiedName, Range, StatusCode, TimestampsToReturn, VariableTypeId, Variant,
};
use tokio::sync::broadcast;

use super::VariableSpec;

/// The node manager type as the server holds it.
pub(super) type DeviceNodeManager = InMemoryNodeManager<DeviceNodes>;

/// Capacity of the write-observer channel: a test reads it promptly; a slow reader lags
/// (and sees `RecvError::Lagged`) instead of slowing the server down.
const WRITES_CAPACITY: usize = 1024;

/// Browse name suffix of the EURange property's node id (`s=<id>.EURange`).
const EU_RANGE: &str = "EURange";

/// How long after its last change a node is notified again (see the module docs):
/// enough for sampling intervals up to 5 s, at most a few times per change.
const NUDGES: [Duration; 5] = [
    Duration::from_millis(150),
    Duration::from_millis(600),
    Duration::from_millis(1100),
    Duration::from_millis(2100),
    Duration::from_millis(5100),
];

/// The custom part of the node manager: the namespace it owns and the write observers.
pub(super) struct DeviceNodes {
    namespace: NamespaceMetadata,
    /// Every value a client wrote successfully, as (string id, value).
    writes: broadcast::Sender<(String, Variant)>,
    /// Nodes changed lately: when, and how many nudges they had since.
    recent: Mutex<HashMap<NodeId, (Instant, usize)>>,
}

impl DeviceNodes {
    pub(super) fn new(namespace_uri: &str, namespace_index: u16) -> Self {
        let (writes, _) = broadcast::channel(WRITES_CAPACITY);
        DeviceNodes {
            namespace: NamespaceMetadata {
                namespace_uri: namespace_uri.to_string(),
                namespace_index,
                is_namespace_subset: Some(false),
                ..Default::default()
            },
            writes,
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Notes that `ids` changed now.
    fn touch(&self, ids: impl Iterator<Item = NodeId>) {
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.extend(ids.map(|id| (id, (now, 0))));
    }

    pub(super) fn namespace_index(&self) -> u16 {
        self.namespace.namespace_index
    }

    pub(super) fn subscribe_writes(&self) -> broadcast::Receiver<(String, Variant)> {
        self.writes.subscribe()
    }

    /// One write: the library's access checks, then our strict type check, then the
    /// value lands in the node and monitored items hear of it.
    fn write_one(&self, context: &RequestContext, space: &mut AddressSpace, write: &mut WriteNode) {
        let type_tree = context.type_tree.read();
        let node = match space.validate_node_write(context, write.value(), &*type_tree) {
            Ok(node) => node,
            Err(status) => return write.set_status(status),
        };
        let expected = match &*node {
            NodeType::Variable(variable) => variable.data_type(),
            _ => return write.set_status(StatusCode::BadNotWritable),
        };
        if write.value().attribute_id != AttributeId::Value {
            return write.set_status(StatusCode::BadNotWritable);
        }
        if write.value().index_range.has_range() {
            return write.set_status(StatusCode::BadWriteNotSupported);
        }
        let Some(value) = write.value().value.value.clone() else {
            return write.set_status(StatusCode::BadTypeMismatch);
        };
        if data_type_of(&value).map(NodeId::from).as_ref() != Some(&expected) {
            return write.set_status(StatusCode::BadTypeMismatch);
        }
        if let Err(status) = write_node_value(node, write.value()) {
            return write.set_status(status);
        }
        write.set_status(StatusCode::Good);
        let node_id = node.as_node().node_id().clone();
        if let Some(dv) = node.as_mut_node().get_attribute(
            TimestampsToReturn::Both,
            AttributeId::Value,
            &NumericRange::None,
            &DataEncoding::Binary,
        ) {
            context
                .subscriptions
                .notify_data_change([(dv, &node_id, AttributeId::Value)].into_iter());
        }
        if let Identifier::String(id) = &node_id.identifier {
            // Nobody listening is the normal case outside tests.
            let _ = self.writes.send((id.as_ref().to_string(), value));
        }
        self.touch(std::iter::once(node_id));
    }
}

#[async_trait]
impl InMemoryNodeManagerImpl for DeviceNodes {
    async fn init(&self, _address_space: &mut AddressSpace, _context: ServerContext) {}

    fn name(&self) -> &str {
        "thermacore-device"
    }

    fn namespaces(&self) -> Vec<NamespaceMetadata> {
        vec![self.namespace.clone()]
    }

    async fn write(
        &self,
        context: &RequestContext,
        address_space: &RwLock<AddressSpace>,
        nodes_to_write: &mut [&mut WriteNode],
    ) -> Result<(), StatusCode> {
        let mut space = address_space.write();
        for write in nodes_to_write {
            self.write_one(context, &mut space, write);
        }
        Ok(())
    }
}

/// The OPC UA DataType of a scalar value; `None` for the types the server does not offer.
pub fn data_type_of(value: &Variant) -> Option<DataTypeId> {
    Some(match value {
        Variant::Boolean(_) => DataTypeId::Boolean,
        Variant::SByte(_) => DataTypeId::SByte,
        Variant::Byte(_) => DataTypeId::Byte,
        Variant::Int16(_) => DataTypeId::Int16,
        Variant::UInt16(_) => DataTypeId::UInt16,
        Variant::Int32(_) => DataTypeId::Int32,
        Variant::UInt32(_) => DataTypeId::UInt32,
        Variant::Int64(_) => DataTypeId::Int64,
        Variant::UInt64(_) => DataTypeId::UInt64,
        Variant::Float(_) => DataTypeId::Float,
        Variant::Double(_) => DataTypeId::Double,
        Variant::String(_) => DataTypeId::String,
        Variant::DateTime(_) => DataTypeId::DateTime,
        _ => return None,
    })
}

/// Why a variable cannot be added.
pub(super) fn check(spec: &VariableSpec) -> Result<(), String> {
    if spec.id.is_empty() {
        return Err("empty identifier".into());
    }
    if spec.folder.as_deref() == Some("") {
        return Err("empty folder name".into());
    }
    if data_type_of(&spec.value).is_none() {
        return Err(format!(
            "unsupported value type {:?} (Boolean, SByte..UInt64, Float, Double, String, DateTime)",
            spec.value.type_id()
        ));
    }
    Ok(())
}

/// Adds `spec` (and its folder, the first time) to the address space.
pub(super) fn insert(space: &mut AddressSpace, ns: u16, spec: &VariableSpec) -> Result<(), String> {
    check(spec)?;
    let data_type = data_type_of(&spec.value).ok_or("unsupported value type")?;
    let node_id = NodeId::new(ns, spec.id.clone());
    if space.node_exists(&node_id) {
        return Err("a node with this identifier exists".into());
    }
    let parent: NodeId = match &spec.folder {
        Some(folder) => {
            let folder_id = NodeId::new(ns, folder.clone());
            if !space.node_exists(&folder_id) {
                ObjectBuilder::new(
                    &folder_id,
                    QualifiedName::new(ns, folder.as_str()),
                    folder.as_str(),
                )
                .is_folder()
                .organized_by(ObjectId::ObjectsFolder)
                .insert(space);
            }
            folder_id
        }
        None => ObjectId::ObjectsFolder.into(),
    };
    let name = if spec.name.is_empty() {
        &spec.id
    } else {
        &spec.name
    };
    let access = if spec.writable {
        AccessLevel::CURRENT_READ | AccessLevel::CURRENT_WRITE
    } else {
        AccessLevel::CURRENT_READ
    };
    VariableBuilder::new(
        &node_id,
        QualifiedName::new(ns, name.as_str()),
        name.as_str(),
    )
    .data_type(data_type)
    .value_rank(-1)
    .value(spec.value.clone())
    .access_level(access)
    .user_access_level(access)
    .has_type_definition(VariableTypeId::BaseDataVariableType)
    .organized_by(parent)
    .insert(space);
    if let Some((low, high)) = spec.eu_range {
        let range_id = NodeId::new(ns, format!("{}.{EU_RANGE}", spec.id));
        VariableBuilder::new(&range_id, EU_RANGE, EU_RANGE)
            .data_type(DataTypeId::Range)
            .value_rank(-1)
            .value(Range { low, high })
            .access_level(AccessLevel::CURRENT_READ)
            .user_access_level(AccessLevel::CURRENT_READ)
            .has_type_definition(VariableTypeId::PropertyType)
            .property_of(node_id)
            .insert(space);
    }
    Ok(())
}

/// Removes the variable `id` and its EURange property, and tells its monitored items
/// `BadNodeIdUnknown`; false when there was no such variable.
pub(super) fn remove(
    manager: &DeviceNodeManager,
    subscriptions: &SubscriptionCache,
    id: &str,
) -> bool {
    let ns = manager.inner().namespace_index();
    let node_id = NodeId::new(ns, id.to_string());
    {
        let mut space = manager.address_space().write();
        space.delete(&NodeId::new(ns, format!("{id}.{EU_RANGE}")), true);
        if space.delete(&node_id, true).is_none() {
            return false;
        }
    }
    manager
        .inner()
        .recent
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&node_id);
    let gone = DataValue {
        status: Some(StatusCode::BadNodeIdUnknown),
        server_timestamp: Some(DateTime::now()),
        ..DataValue::null()
    };
    subscriptions.notify_data_change([(gone, &node_id, AttributeId::Value)].into_iter());
    true
}

/// What an update does to a variable's DataValue.
pub(super) enum Update<'a> {
    /// A new value, Good, timestamped now.
    Value(&'a Variant),
    /// The same value with another status, timestamped now.
    Status(StatusCode),
}

/// Applies `updates` under one write lock and notifies the monitored items of the
/// nodes that changed; unknown identifiers are skipped (and returned, for a log line).
pub(super) fn update<'a>(
    manager: &DeviceNodeManager,
    subscriptions: &SubscriptionCache,
    updates: impl Iterator<Item = (&'a str, Update<'a>)>,
) -> Vec<&'a str> {
    let ns = manager.inner().namespace_index();
    let now = DateTime::now();
    let mut space = manager.address_space().write();
    let mut changed = Vec::new();
    let mut unknown = Vec::new();
    for (id, update) in updates {
        let Some(NodeType::Variable(variable)) = space.find_mut((ns, id)) else {
            unknown.push(id);
            continue;
        };
        let mut dv = DataValue {
            server_timestamp: Some(now),
            source_timestamp: Some(now),
            ..DataValue::null()
        };
        match update {
            Update::Value(v) => {
                dv.value = Some(v.clone());
                dv.status = Some(StatusCode::Good);
            }
            Update::Status(status) => {
                dv.value = variable
                    .value(
                        TimestampsToReturn::Neither,
                        &NumericRange::None,
                        &DataEncoding::Binary,
                        0.0,
                    )
                    .value;
                dv.status = Some(status);
            }
        }
        variable.set_data_value(dv);
        changed.push(NodeId::new(ns, id.to_string()));
    }
    notify(&space, subscriptions, &changed);
    drop(space);
    manager.inner().touch(changed.into_iter());
    unknown
}

/// Tells the monitored items of `ids` (if any) their nodes' current values.
fn notify(space: &AddressSpace, subscriptions: &SubscriptionCache, ids: &[NodeId]) {
    subscriptions.maybe_notify(
        ids.iter().map(|id| (id, AttributeId::Value)),
        |node_id, attribute_id, index_range, encoding| {
            space.find(node_id)?.as_node().get_attribute(
                TimestampsToReturn::Both,
                attribute_id,
                index_range,
                encoding,
            )
        },
    );
}

/// Notifies again the nodes whose last change is [`NUDGES`] old, and forgets the
/// nodes past the last nudge. Call it every 100 ms or so.
pub(super) fn nudge(manager: &DeviceNodeManager, subscriptions: &SubscriptionCache) {
    let now = Instant::now();
    let due: Vec<NodeId> = {
        let mut recent = manager
            .inner()
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut due = Vec::new();
        recent.retain(|id, (since, nudged)| {
            if now.duration_since(*since) >= NUDGES[*nudged] {
                due.push(id.clone());
                *nudged += 1;
            }
            *nudged < NUDGES.len()
        });
        due
    };
    if !due.is_empty() {
        notify(&manager.address_space().read(), subscriptions, &due);
    }
}

/// The current DataValue of `id` (both timestamps).
pub(super) fn read(manager: &DeviceNodeManager, id: &str) -> Option<DataValue> {
    let ns = manager.inner().namespace_index();
    let space = manager.address_space().read();
    match space.find((ns, id))? {
        NodeType::Variable(v) => Some(v.value(
            TimestampsToReturn::Both,
            &NumericRange::None,
            &DataEncoding::Binary,
            0.0,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_offered_type_has_its_data_type() {
        let values = [
            (Variant::Boolean(true), DataTypeId::Boolean),
            (Variant::SByte(-1), DataTypeId::SByte),
            (Variant::UInt64(1), DataTypeId::UInt64),
            (Variant::Float(1.0), DataTypeId::Float),
            (Variant::from("x"), DataTypeId::String),
            (Variant::from(DateTime::now()), DataTypeId::DateTime),
        ];
        for (v, t) in values {
            assert_eq!(data_type_of(&v), Some(t), "{v:?}");
        }
        assert_eq!(data_type_of(&Variant::Empty), None);
        assert_eq!(data_type_of(&Variant::from(vec![1i32, 2])), None);
    }

    #[test]
    fn variables_need_an_id_and_a_supported_type() {
        let ok = VariableSpec::new("A", Variant::Double(1.0));
        assert!(check(&ok).is_ok());
        assert!(check(&VariableSpec::new("", Variant::Double(1.0))).is_err());
        assert!(check(&VariableSpec::new("B", Variant::Empty)).is_err());
        assert!(check(&ok.clone().in_folder("")).is_err());
    }
}

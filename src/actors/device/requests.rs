//! What reaches a device actor from outside its schedule: commands (writes), browsing
//! the device's address space, and tags created at run time (announced by the device,
//! or imported from its address space), stored through the catalog and handed to the
//! driver by one function.

use std::time::Instant;

use super::{DeviceActor, DeviceState};
use crate::actors::cache::TagRegistration;
use crate::actors::catalog::{CatalogError, TagCatalog};
use crate::domain::{Quality, Sample, Tag, TagId, TagSpec, Timestamp, Value};
use crate::drivers::{self, BrowsedNode, ImportedNode, WriteReport};
use crate::telemetry::names;

/// What importing nodes of a device's address space did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportOutcome {
    /// Tags this import created, in the order of their nodes.
    pub created: Vec<Tag>,
    /// Nodes imported before (a tag of the same name and address is on the device):
    /// their tags as they are. Importing a node again changes nothing.
    pub existing: Vec<Tag>,
    /// Nodes not imported, in the order asked, with why.
    pub errors: Vec<NodeError>,
}

/// A node that was not imported.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeError {
    /// The node as it was asked for.
    pub node: String,
    pub message: String,
}

/// Tags created at run time.
struct Created {
    /// The tags stored, in the order of their specs (a prefix of them).
    tags: Vec<Tag>,
    /// Why the specs after `tags` were not stored (the quota, the store).
    refused: Option<CatalogError>,
    /// The driver refused to map the stored tags: they are stored but not read.
    unmapped: Option<drivers::Error>,
}

/// Imported nodes sorted against the tags already on the device.
#[derive(Default)]
struct Sorted {
    /// Nodes to create tags for: (index of the node, node, spec).
    new: Vec<(usize, String, TagSpec)>,
    existing: Vec<Tag>,
    errors: Vec<(usize, NodeError)>,
}

/// Sorts the driver's answer for `nodes` against the device's `stored` tags: a spec
/// whose name is taken by a tag of the same address is that tag (imported before); a
/// name taken by another address is refused rather than moving that tag (the catalog
/// upserts by name). Two nodes of one call with one name: the first wins.
fn sort(nodes: Vec<String>, imported: Vec<ImportedNode>, stored: &[Tag]) -> Sorted {
    let mut out = Sorted::default();
    for (i, (node, result)) in nodes.into_iter().zip(imported).enumerate() {
        let spec = match result {
            Ok(spec) => spec,
            Err(message) => {
                out.errors.push((i, NodeError { node, message }));
                continue;
            }
        };
        let taken = stored.iter().find(|t| t.spec.name == spec.name);
        let pending = out.new.iter().find(|(_, _, s)| s.name == spec.name);
        let clash = match (taken, pending) {
            (Some(t), _) if t.spec.address == spec.address => {
                if !out.existing.iter().any(|e| e.id == t.id) {
                    out.existing.push(t.clone());
                }
                None
            }
            (Some(t), _) => Some(format!(
                "tag `{}` of this device has another address (`{}`)",
                t.spec.name, t.spec.address
            )),
            // The same node twice in one call: imported once.
            (None, Some((_, _, s))) if s.address == spec.address => None,
            (None, Some(_)) => Some(format!(
                "another node of this import is also named `{}`",
                spec.name
            )),
            (None, None) => {
                out.new.push((i, node, spec));
                continue;
            }
        };
        if let Some(message) = clash {
            out.errors.push((i, NodeError { node, message }));
        }
    }
    out
}

/// The outcome of an import whose device's tags could not be read: every node fails.
fn unread_store(nodes: Vec<String>, imported: Vec<ImportedNode>) -> ImportOutcome {
    let errors = nodes
        .into_iter()
        .zip(imported)
        .map(|(node, result)| NodeError {
            node,
            message: result
                .err()
                .unwrap_or_else(|| "not imported: the device's tags could not be read".into()),
        })
        .collect();
    ImportOutcome {
        errors,
        ..ImportOutcome::default()
    }
}

impl DeviceActor {
    /// Stores `specs` as tags of this device through the catalog (within the tenant's
    /// `max_tags`) and maps the ones stored: announced and imported tags alike.
    async fn create_tags(
        st: &mut DeviceState,
        catalog: &TagCatalog,
        specs: Vec<TagSpec>,
    ) -> Created {
        let (tags, refused) = catalog.create(&st.shared, st.id(), specs).await;
        let unmapped = if tags.is_empty() {
            None
        } else {
            Self::map_tags(st, &tags).err()
        };
        Created {
            tags,
            refused,
            unmapped,
        }
    }

    /// Hands stored tags to the driver, then registers them: their staleness in the
    /// cache, their device for commands, and this actor's own list.
    fn map_tags(st: &mut DeviceState, tags: &[Tag]) -> Result<(), drivers::Error> {
        st.driver.add_tags(tags)?;
        let stale = if st.by_exception {
            i64::MAX
        } else {
            st.cache.stale_after_us(st.world.device.spec.poll_ms)
        };
        let regs = tags
            .iter()
            .map(|t| TagRegistration {
                tag: t.id,
                stale_after_us: stale,
            })
            .collect();
        st.shared.cache.register(regs);
        for t in tags {
            st.shared.tag_devices.insert(t.id, st.id());
        }
        st.announced.extend_from_slice(tags);
        Ok(())
    }

    /// Creates the tags the device announced and hands them to the driver.
    pub(super) async fn announced(st: &mut DeviceState, specs: Vec<TagSpec>) {
        let device = st.world.device.spec.name.clone();
        let Some(catalog) = st.catalog.clone() else {
            tracing::debug!(%device, tags = specs.len(), "announced tags ignored: no catalog");
            return;
        };
        let created = Self::create_tags(st, &catalog, specs).await;
        if let Some(e) = created.refused {
            tracing::warn!(%device, error = %e, "announced tags not created");
        }
        if let Some(e) = created.unmapped {
            tracing::warn!(%device, error = %e, "announced tags not mapped");
            return;
        }
        if created.tags.is_empty() {
            return;
        }
        metrics::counter!(names::MQTT_DISCOVERED_TAGS).increment(created.tags.len() as u64);
        tracing::info!(%device, tags = created.tags.len(), "tags created from the device's announcements");
    }

    /// The children of `node` in the device's address space (`None`: its root).
    pub(super) async fn browse(
        st: &mut DeviceState,
        node: Option<String>,
    ) -> Result<Vec<BrowsedNode>, drivers::Error> {
        st.driver.browse(node.as_deref()).await
    }

    /// Imports `nodes` of the device's address space as tags: the driver tells what
    /// each node is; new ones are created like announced tags, ones imported before
    /// are returned as they are, and every other node says why it was not imported.
    pub(super) async fn import(
        st: &mut DeviceState,
        nodes: Vec<String>,
    ) -> Result<ImportOutcome, drivers::Error> {
        let device = st.world.device.spec.name.clone();
        let Some(catalog) = st.catalog.clone() else {
            return Err(drivers::Error::Unsupported(
                "this server creates no tags at run time".into(),
            ));
        };
        let imported = st.driver.import(&nodes).await?;
        if imported.len() != nodes.len() {
            return Err(drivers::Error::Protocol(format!(
                "import gave {} results for {} nodes",
                imported.len(),
                nodes.len()
            )));
        }
        let stored = match catalog.tags_of(&st.shared, st.id()).await {
            Ok(tags) => tags,
            Err(e) => {
                // Without the device's tags a name clash would go unseen (and the
                // catalog would move that tag): import nothing.
                tracing::warn!(%device, error = %e, "import: the device's tags could not be read");
                return Ok(unread_store(nodes, imported));
            }
        };
        let sorted = sort(nodes, imported, &stored);
        let mut errors = sorted.errors;
        // Imported by an earlier life of this actor: map them again.
        let not_mapped: Vec<Tag> = sorted
            .existing
            .iter()
            .filter(|t| st.tag(t.id).is_none())
            .cloned()
            .collect();
        if !not_mapped.is_empty() {
            if let Err(e) = Self::map_tags(st, &not_mapped) {
                tracing::warn!(%device, error = %e, "imported tags not mapped");
            }
        }
        let (new, specs): (Vec<(usize, String)>, Vec<TagSpec>) = sorted
            .new
            .into_iter()
            .map(|(i, node, spec)| ((i, node), spec))
            .unzip();
        let created = Self::create_tags(st, &catalog, specs).await;
        let mut new = new.into_iter();
        let stored_new: Vec<(usize, String)> = new.by_ref().take(created.tags.len()).collect();
        let mut out = ImportOutcome {
            existing: sorted.existing,
            ..ImportOutcome::default()
        };
        match created.unmapped {
            None => out.created = created.tags,
            Some(e) => {
                tracing::warn!(%device, error = %e, "imported tags stored but not mapped");
                for (i, node) in stored_new {
                    let message = "stored, but the driver cannot read it".to_string();
                    errors.push((i, NodeError { node, message }));
                }
            }
        }
        let refused = match &created.refused {
            Some(CatalogError::Quota { max, .. }) => {
                format!("not created: the tenant's max_tags quota ({max}) is reached")
            }
            Some(CatalogError::Store(e)) => {
                tracing::warn!(%device, error = %e, "imported tags not stored");
                "not created: the tag could not be stored".to_string()
            }
            None => "not created".to_string(),
        };
        for (i, node) in new {
            let message = refused.clone();
            errors.push((i, NodeError { node, message }));
        }
        errors.sort_by_key(|(i, _)| *i);
        out.errors = errors.into_iter().map(|(_, e)| e).collect();
        tracing::info!(%device, created = out.created.len(), existing = out.existing.len(),
            failed = out.errors.len(), "tags imported from the device's address space");
        Ok(out)
    }

    pub(super) async fn write(
        st: &mut DeviceState,
        tag: TagId,
        value: Value,
    ) -> Result<WriteReport, drivers::Error> {
        let Some(t) = st.tag(tag).cloned() else {
            return Err(drivers::Error::Config(format!(
                "tag {tag} is not on this device"
            )));
        };
        if !st.connected {
            return Err(drivers::Error::Disconnected("device not connected".into()));
        }
        let protocol = st.world.device.protocol();
        let started = Instant::now();
        let result = st.driver.write(&t, &value).await;
        metrics::histogram!(names::DEVICE_WRITE_SECONDS, "protocol" => protocol)
            .record(started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(_) => "ok",
            Err(drivers::Error::BadValue { .. } | drivers::Error::NotWritable(_)) => "refused",
            Err(drivers::Error::Disconnected(_) | drivers::Error::Timeout(_)) => "unreachable",
            Err(_) => "failed",
        };
        metrics::counter!(names::DEVICE_WRITES, "protocol" => protocol, "outcome" => outcome)
            .increment(1);
        if let Ok(WriteReport { confirmed: Some(v) }) = &result {
            let now = Timestamp::now();
            st.emit(vec![Sample {
                tag,
                value: v.clone(),
                quality: Quality::Good,
                source_time: now,
                server_time: now,
            }]);
        }
        result
    }
}

#[cfg(test)]
#[path = "requests_tests.rs"]
mod tests;

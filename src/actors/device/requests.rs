//! What reaches a device actor from outside its schedule: commands (writes) and the
//! tags its device announced (created through the catalog, handed to the driver).

use std::time::Instant;

use super::{DeviceActor, DeviceState};
use crate::actors::cache::TagRegistration;
use crate::domain::{Quality, Sample, TagId, TagSpec, Timestamp, Value};
use crate::drivers::{self, WriteReport};
use crate::telemetry::names;

impl DeviceActor {
    /// Creates the tags the device announced and hands them to the driver.
    pub(super) async fn announced(st: &mut DeviceState, specs: Vec<TagSpec>) {
        let device = st.world.device.spec.name.clone();
        let Some(catalog) = st.catalog.clone() else {
            tracing::debug!(%device, tags = specs.len(), "announced tags ignored: no catalog");
            return;
        };
        let (created, error) = catalog.create(&st.shared, st.id(), specs).await;
        if let Some(e) = error {
            tracing::warn!(%device, error = %e, "announced tags not created");
        }
        if created.is_empty() {
            return;
        }
        if let Err(e) = st.driver.add_tags(&created) {
            tracing::warn!(%device, error = %e, "announced tags not mapped");
            return;
        }
        let stale = if st.by_exception {
            i64::MAX
        } else {
            st.cache.stale_after_us(st.world.device.spec.poll_ms)
        };
        let regs = created
            .iter()
            .map(|t| TagRegistration {
                tag: t.id,
                stale_after_us: stale,
            })
            .collect();
        st.shared.cache.register(regs);
        for t in &created {
            st.shared.tag_devices.insert(t.id, st.id());
        }
        metrics::counter!(names::MQTT_DISCOVERED_TAGS).increment(created.len() as u64);
        tracing::info!(%device, tags = created.len(), "tags created from the device's announcements");
        st.announced.extend(created);
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

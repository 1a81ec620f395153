//! Synthetic tenants of sim devices, built without a store (in-memory scenarios).

use std::sync::Arc;

use thermacore::actors::{DeviceWorld, TenantShared};
use thermacore::domain::{
    DataType, Device, DeviceId, DeviceSpec, Tag, TagId, TagSpec, Tenant, TenantId,
};
use thermacore::drivers::DriverConfig;
use thermacore::drivers::sim::SimConfig;

/// `devices` sim devices of `tags` sine tags each, polling every `poll_ms`.
pub fn sim_tenant(
    name: &str,
    devices: usize,
    tags: usize,
    poll_ms: u64,
) -> (Arc<TenantShared>, Vec<Arc<DeviceWorld>>) {
    let tenant = Tenant {
        id: TenantId(1),
        name: name.to_string(),
    };
    let mut next_tag = 1i64;
    let worlds = (0..devices)
        .map(|d| {
            let device = Device {
                id: DeviceId(d as i64 + 1),
                tenant: tenant.id,
                spec: DeviceSpec {
                    name: format!("sim-{d}"),
                    unit: None,
                    enabled: true,
                    poll_ms,
                    driver: DriverConfig::Sim(SimConfig {
                        seed: d as u64 + 1,
                        ..SimConfig::default()
                    }),
                    security: Default::default(),
                },
            };
            let tags = (0..tags)
                .map(|t| {
                    next_tag += 1;
                    Tag {
                        id: TagId(next_tag),
                        tenant: tenant.id,
                        device: device.id,
                        spec: TagSpec {
                            name: format!("t{t}"),
                            unit: None,
                            address: format!("sine:period={},amplitude=10,offset=50", 30 + t % 90),
                            data_type: DataType::F64,
                            scale: 1.0,
                            offset: 0.0,
                            eng_unit: None,
                            deadband: 0.0,
                            writable: false,
                        },
                    }
                })
                .collect();
            Arc::new(DeviceWorld { device, tags })
        })
        .collect();
    (Arc::new(TenantShared::new(tenant)), worlds)
}

/// Resident set size of this process, in KiB (Linux).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

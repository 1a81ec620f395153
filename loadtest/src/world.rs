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
    rss_kib_of("self")
}

/// Resident set size of process `pid` (`"self"` or a number), in KiB (Linux).
pub fn rss_kib_of(pid: &str) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// The largest resident set size of this process so far, in KiB (Linux).
pub fn peak_rss_kib() -> u64 {
    status_kib("self", "VmHWM:")
}

/// A `… kB` field of `/proc/{pid}/status`.
pub fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Clock ticks per second of `/proc/*/stat` (USER_HZ: 100 on Linux).
pub const TICKS_PER_SEC: f64 = 100.0;

/// The command name and user + system CPU ticks of one `/proc/…/stat` file.
fn stat_ticks(path: &str) -> Option<(String, u64)> {
    let s = std::fs::read_to_string(path).ok()?;
    let (head, rest) = s.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
    // After the command: state is field 3, utime 14 and stime 15.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((comm, ticks))
}

/// User + system CPU ticks of process `pid` (`"self"` or a number) so far.
pub fn cpu_ticks(pid: &str) -> u64 {
    stat_ticks(&format!("/proc/{pid}/stat")).map_or(0, |(_, t)| t)
}

/// CPU ticks of this process's threads, summed by thread name (tokio workers, the
/// SQLite workers, …), to see where the time goes.
pub fn thread_ticks() -> std::collections::BTreeMap<String, u64> {
    let mut by_name = std::collections::BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            let path = format!("{}/stat", e.path().display());
            if let Some((comm, t)) = stat_ticks(&path) {
                *by_name.entry(comm).or_insert(0) += t;
            }
        }
    }
    by_name
}

/// CPU ticks the whole machine spent busy (all processes, every state but idle and
/// iowait), from `/proc/stat`: what other programs took during a run.
pub fn machine_busy_ticks() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    let Some(line) = s.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is within user).
    f.iter().take(8).sum::<u64>() - f.get(3).copied().unwrap_or(0) - f.get(4).copied().unwrap_or(0)
}

/// An empty in-memory store for in-process tenants that keep no history: their alert
/// stream reads its rules (none) and would record transitions there.
pub async fn rule_store() -> anyhow::Result<Arc<dyn thermacore::storage::Store>> {
    let store = thermacore::storage::connect("sqlite::memory:", 1).await?;
    store.migrate().await?;
    Ok(store)
}

//! The OPC UA servers of the `opcua` scenario, run in a child process of this binary
//! (`opcua-servers`) so that their CPU is measured apart from ThermaCore's: `servers`
//! embedded async-opcua servers (None/None, anonymous) holding `items` Double variables
//! spread over `devices` (device `d` in folder `dev{d}`, its variables `d{d}_{k}`, and
//! one writable `d{d}_w`; device `d` lives on server `d % servers`).
//!
//! Every variable gets a new value once a second, in `slices` equal batches spread
//! over the second (10: a tenth of them every 100 ms), each batch under one lock with
//! its source timestamp set to when it was applied. The child prints `ready NS PORT…`
//! (the namespace index of the variables and one port per server) once every server
//! listens, then updates until its stdin closes; each `stats` line it reads is answered
//! with `stats UPDATES SLICES SLICE_US_SUM SLICE_US_MAX`: the values set so far, the
//! batches, the time spent applying them, and the longest batch since the last `stats`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::child::{ChildPeer, SliceCounters, answer_stats};
use opcua::types::Variant;
use thermacore::drivers::opcua::server::{
    RunningServer, ServerLimits, ServerSpec, Updater, VariableSpec,
};

/// The variables' namespace.
pub const NAMESPACE: &str = "urn:thermacore:loadtest";

/// The most sessions an async-opcua server takes (its `MAX_SESSIONS`).
pub const MAX_SESSIONS_PER_SERVER: usize = 20;

/// Monitored items per subscription: async-opcua's default cap, left as it is (the
/// driver spreads a device's items over subscriptions of this size).
pub const ITEMS_PER_SUBSCRIPTION: usize = 1000;

/// How the items are laid out: flags of the scenario and of its child.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Layout {
    /// Double variables in all, spread over the devices; each changes once a second.
    #[arg(long, default_value_t = 100_000)]
    pub items: usize,
    #[arg(long, default_value_t = 10)]
    pub devices: usize,
    /// OPC UA servers the devices are spread over (at most 20 sessions each).
    #[arg(long, default_value_t = 1)]
    pub servers: usize,
    /// Update batches per second and server (10: a tenth of the values every 100 ms).
    #[arg(long, default_value_t = 10)]
    pub slices: usize,
}

impl Layout {
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.devices > 0 && self.servers > 0 && self.slices > 0,
            "--devices, --servers and --slices must be > 0"
        );
        anyhow::ensure!(
            self.items >= self.devices,
            "--items must be at least --devices"
        );
        anyhow::ensure!(
            self.servers <= self.devices,
            "--servers {} is more than --devices {}",
            self.servers,
            self.devices
        );
        anyhow::ensure!(
            self.devices.div_ceil(self.servers) <= MAX_SESSIONS_PER_SERVER,
            "an async-opcua server takes at most {MAX_SESSIONS_PER_SERVER} sessions: use --servers {} or more",
            self.devices.div_ceil(MAX_SESSIONS_PER_SERVER)
        );
        Ok(())
    }

    /// The value variables of device `d` (the first `items % devices` devices have one
    /// more).
    pub fn items_of(&self, d: usize) -> usize {
        self.items / self.devices + usize::from(d < self.items % self.devices)
    }

    pub fn server_of(&self, d: usize) -> usize {
        d % self.servers
    }
}

/// The identifier of value variable `k` of device `d`.
pub fn item_id(d: usize, k: usize) -> String {
    format!("d{d}_{k}")
}

/// The identifier of device `d`'s writable variable.
pub fn writable_id(d: usize) -> String {
    format!("d{d}_w")
}

/// Updates `ids` in `slices` batches a second, forever; `phase` delays the first batch
/// (servers interleave their batches).
async fn pump(
    updater: Updater,
    ids: Vec<String>,
    slices: usize,
    phase: Duration,
    c: Arc<SliceCounters>,
) {
    let period = Duration::from_secs(1) / slices as u32;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let n = ids.len();
    for round in 0u64.. {
        // A new value every round (the item reports changes only).
        let base = (round % 1000) as f64;
        for s in 0..slices {
            tick.tick().await;
            let (from, to) = (s * n / slices, (s + 1) * n / slices);
            let batch: Vec<(&str, Variant)> = ids[from..to]
                .iter()
                .enumerate()
                .map(|(i, id)| (id.as_str(), Variant::Double(base + (i % 100) as f64 * 0.01)))
                .collect();
            let t0 = Instant::now();
            updater.set_values(&batch);
            c.record(batch.len(), t0.elapsed().as_micros() as u64);
        }
    }
}

/// The spec of server `s`: its devices' variables, room for all their items.
fn spec(layout: &Layout, s: usize, pki: &std::path::Path) -> (ServerSpec, Vec<String>) {
    let mut spec = ServerSpec::new(([127, 0, 0, 1], 0).into(), NAMESPACE, pki);
    spec.application_name = "ThermaCore loadtest server".into();
    spec.application_uri = "urn:thermacore:loadtest:server".into();
    spec.trust_client_certs = true;
    let mut ids = Vec::new();
    let mut items = 0;
    for d in (0..layout.devices).filter(|d| layout.server_of(*d) == s) {
        let folder = format!("dev{d}");
        for k in 0..layout.items_of(d) {
            let id = item_id(d, k);
            spec.variables
                .push(VariableSpec::new(&id, Variant::Double(0.0)).in_folder(&folder));
            ids.push(id);
        }
        spec.variables.push(
            VariableSpec::new(&writable_id(d), Variant::Double(0.0))
                .in_folder(&folder)
                .writable(),
        );
        items = items.max(layout.items_of(d) + 1);
    }
    spec.limits = ServerLimits {
        // A session holds its device's items in subscriptions of the default size.
        max_subscriptions_per_session: items.div_ceil(ITEMS_PER_SUBSCRIPTION) + 1,
        ..ServerLimits::default()
    };
    (spec, ids)
}

/// The child process.
pub async fn serve(layout: Layout) -> anyhow::Result<()> {
    layout.check()?;
    let pki = tempfile::tempdir()?;
    let counters = Arc::new(SliceCounters::default());
    let mut servers = Vec::with_capacity(layout.servers);
    let mut ports = Vec::with_capacity(layout.servers);
    let mut ns = None;
    for s in 0..layout.servers {
        let (spec, ids) = spec(&layout, s, pki.path());
        let server = RunningServer::start(spec).await?;
        anyhow::ensure!(
            ns.is_none_or(|n| n == server.namespace_index()),
            "the servers' namespace indexes differ"
        );
        ns = Some(server.namespace_index());
        ports.push(server.local_addr().port().to_string());
        let phase = Duration::from_secs(1) / (layout.slices * layout.servers) as u32 * s as u32;
        tokio::spawn(pump(
            server.updater(),
            ids,
            layout.slices,
            phase,
            counters.clone(),
        ));
        servers.push(server);
    }
    println!("ready {} {}", ns.unwrap_or(0), ports.join(" "));
    answer_stats(&counters).await?;
    for s in servers {
        s.stop().await;
    }
    Ok(())
}

/// The running child.
pub struct Servers {
    /// The child (its pid, `slice_stats`, `stop`).
    pub peer: ChildPeer,
    /// The namespace index of the variables.
    pub ns: u16,
    pub ports: Vec<u16>,
}

impl Servers {
    /// Starts the child (this same binary, `opcua-servers`) and waits until every
    /// server listens; values change from then on.
    pub async fn spawn(layout: &Layout) -> anyhow::Result<Servers> {
        let args = [
            "opcua-servers".to_string(),
            "--items".into(),
            layout.items.to_string(),
            "--devices".into(),
            layout.devices.to_string(),
            "--servers".into(),
            layout.servers.to_string(),
            "--slices".into(),
            layout.slices.to_string(),
        ];
        let (peer, line) = ChildPeer::spawn("OPC UA servers", &args).await?;
        let mut f = line
            .strip_prefix("ready ")
            .ok_or_else(|| anyhow::anyhow!("OPC UA servers did not start: {line:?}"))?
            .split_whitespace()
            .map(str::parse::<u16>);
        let ns = f
            .next()
            .ok_or_else(|| anyhow::anyhow!("no namespace in {line:?}"))??;
        let ports = f.collect::<Result<Vec<u16>, _>>()?;
        anyhow::ensure!(
            ports.len() == layout.servers,
            "OPC UA servers answered {line:?}"
        );
        Ok(Servers { peer, ns, ports })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_spread_over_devices_and_servers() {
        let l = Layout {
            items: 103,
            devices: 10,
            servers: 3,
            slices: 10,
        };
        l.check().expect("a valid layout");
        assert_eq!((0..10).map(|d| l.items_of(d)).sum::<usize>(), 103);
        assert_eq!((l.items_of(0), l.items_of(3)), (11, 10));
        assert_eq!(l.server_of(4), 1);
        let (spec, ids) = spec(&l, 1, std::path::Path::new("/tmp/x"));
        // Devices 1, 4 and 7: 11 + 10 + 10 values and a writable variable each.
        assert_eq!(ids.len(), 31);
        assert_eq!(spec.variables.len(), 34);
        assert!(
            Layout {
                devices: 21,
                servers: 1,
                ..l
            }
            .check()
            .is_err()
        );
    }
}

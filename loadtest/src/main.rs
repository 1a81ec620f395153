//! `thermacore-loadtest`: benchmarks of the ThermaCore data path and of the API's
//! security path. Each scenario
//! prints one line of figures; run several times and quote medians.

mod auth;
mod idle;
mod inmem;
mod modbus;
mod modbus_client;
mod modbus_sim;
mod persisted;
mod prom;
mod world;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "ThermaCore data-path benchmarks")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Sim devices at full speed through device actors, cache, alert stream and live hub.
    Inmem {
        #[arg(long, default_value_t = 4)]
        devices: usize,
        #[arg(long, default_value_t = 1000)]
        tags: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Live subscribers sharing all tags between them.
        #[arg(long, default_value_t = 1)]
        subscribers: usize,
    },
    /// Sustained ingest into a store, then every row counted.
    Persisted {
        /// `sqlite:PATH` or `postgres://…`; default a temporary SQLite file.
        #[arg(long)]
        store: Option<String>,
        #[arg(long, default_value_t = 30)]
        devices: usize,
        #[arg(long, default_value_t = 1000)]
        tags: usize,
        #[arg(long, default_value_t = 100)]
        poll_ms: u64,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        #[arg(long, default_value_t = 20_000)]
        batch_size: usize,
    },
    /// Many idle sim devices: start-up time and memory per device actor.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        devices: usize,
    },
    /// Simulated Modbus TCP devices (a child process) polled by a real server started
    /// in-process, with operator writes through the API: rates, poll lag, CPU,
    /// memory and the writeTag round trip.
    Modbus {
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        /// Holding registers per device, one u16 tag each, read in one request.
        #[arg(long, default_value_t = 100)]
        registers: u16,
        #[arg(long, default_value_t = 100)]
        poll_ms: u64,
        /// Length of the measured window, after the warm-up.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Seconds between all devices online and the measured window.
        #[arg(long, default_value_t = 5)]
        warmup: u64,
        /// Simulated servers the devices are spread over as unit ids (gateways);
        /// 0 = one server per device.
        #[arg(long, default_value_t = 0)]
        servers: usize,
        /// Sequential writeTag requests per second during the window.
        #[arg(long, default_value_t = 20.0)]
        writes_per_sec: f64,
        /// Requests in flight to the host (`max_concurrent_per_host`); 0 = the number
        /// of devices (no limit in practice).
        #[arg(long, default_value_t = 0)]
        host_limit: u16,
        /// What the historian does with the samples (see `modbus::StoreMode`).
        #[arg(long, value_enum, default_value_t = modbus::StoreMode::None)]
        store: modbus::StoreMode,
    },
    /// The devices of the `modbus` scenario (started by it as a child process).
    #[command(hide = true)]
    ModbusDevices {
        #[arg(long)]
        devices: usize,
        #[arg(long)]
        registers: u16,
        #[arg(long)]
        servers: usize,
    },
    /// The security path of one API request: JWT verification, revocation gate, rate
    /// limiters.
    Auth {
        #[arg(long, default_value_t = 1_000_000)]
        iterations: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        match cli.scenario {
            Scenario::Inmem {
                devices,
                tags,
                seconds,
                subscribers,
            } => inmem::run(devices, tags, seconds, subscribers).await,
            Scenario::Persisted {
                store,
                devices,
                tags,
                poll_ms,
                seconds,
                batch_size,
            } => {
                let dir = tempfile::tempdir()?;
                let url = store
                    .unwrap_or_else(|| format!("sqlite:{}", dir.path().join("bench.db").display()));
                persisted::run(persisted::Params {
                    url,
                    devices,
                    tags,
                    poll_ms,
                    seconds,
                    batch_size,
                })
                .await
            }
            Scenario::Idle { devices } => idle::run(devices).await,
            Scenario::Modbus {
                devices,
                registers,
                poll_ms,
                seconds,
                warmup,
                servers,
                writes_per_sec,
                host_limit,
                store,
            } => {
                modbus::run(modbus::Params {
                    devices,
                    registers,
                    poll_ms,
                    seconds,
                    warmup,
                    servers,
                    writes_per_sec,
                    host_limit,
                    store,
                })
                .await
            }
            Scenario::ModbusDevices {
                devices,
                registers,
                servers,
            } => modbus_sim::serve(devices, registers, servers).await,
            Scenario::Auth { iterations } => auth::run(iterations).await,
        }
    })
}

//! `thermacore-loadtest`: benchmarks of the ThermaCore data path and of the API's
//! security path. Each scenario
//! prints one line of figures; run several times and quote medians.

mod alarms;
mod auth;
mod dnp3;
mod dnp3_outstations;
mod history;
mod idle;
mod import;
mod inmem;
mod modbus;
mod modbus_client;
mod modbus_sim;
mod mqtt;
mod mqtt_broker;
mod mqtt_server;
mod opcua;
mod opcua_plant;
mod opcua_server;
mod persisted;
mod plant_server;

use clap::{Parser, Subcommand};
use thermacore_loadtest::{child, mqtt_pub, prom, world};

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
    /// `history` buckets and `statistics` over a day of many tags, from the rollups (PostgreSQL) and
    /// from the samples.
    History {
        /// `postgres://…` or `sqlite:PATH`.
        #[arg(long)]
        store: String,
        #[arg(long, default_value_t = 1000)]
        tags: usize,
        /// Seconds between two samples of a tag.
        #[arg(long, default_value_t = 10)]
        step_secs: i64,
        /// Timed queries per bucket width.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Bucket widths to time, in seconds (30 is grouped from the raw samples
        /// and takes long on PostgreSQL).
        #[arg(long, value_delimiter = ',', default_values_t = [60, 3600])]
        widths: Vec<i64>,
    },
    /// Live configuration at scale: one importConfig of a plant of sim devices through
    /// a real server (dry run, import, all online, export, re-import, single updates).
    Import {
        /// `postgres://…`; default a temporary SQLite file per run.
        #[arg(long)]
        store: Option<String>,
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        #[arg(long, default_value_t = 10)]
        tags: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
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
    /// Gateways publishing JSON on loopback → a broker → a real server (in-process,
    /// SQLite, historian on) → cache and historian; first the broker's own ceiling
    /// with a counting subscriber, then ThermaCore: rates, CPU of ThermaCore, broker
    /// and publishers, memory, lag, and which of them limits.
    Mqtt {
        #[arg(long, default_value_t = 100)]
        devices: usize,
        /// Values per message (one f64 tag each).
        #[arg(long, default_value_t = 50)]
        tags: usize,
        /// Messages per second per gateway.
        #[arg(long, default_value_t = 40.0)]
        rate: f64,
        /// Several rates, one run of each phase per rate (e.g. `10,20,40,80`);
        /// replaces `--rate`.
        #[arg(long, value_delimiter = ',')]
        sweep: Vec<f64>,
        /// QoS of the publishes and of the subscriptions.
        #[arg(long, default_value_t = 0)]
        qos: u8,
        /// Length of each measured window, after the warm-up.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Seconds between the publishers starting and each measured window.
        #[arg(long, default_value_t = 3)]
        warmup: u64,
        /// Gateways per publisher connection.
        #[arg(long, default_value_t = 10)]
        per_client: usize,
        /// Broker connections of ThermaCore the devices are spread over (by
        /// `client_id`); 1: all share one, as devices with the same settings do.
        #[arg(long, default_value_t = 1)]
        connections: usize,
        /// `host:port` of a running broker (e.g. Mosquitto) instead of the embedded
        /// rumqttd in a child process.
        #[arg(long)]
        broker: Option<String>,
        /// Process id of the external broker, to measure its CPU.
        #[arg(long)]
        broker_pid: Option<u32>,
        #[arg(long, value_enum, default_value_t = mqtt::Phases::Both)]
        phases: mqtt::Phases,
        /// The ceiling's subscriber takes one `PREFIX/#` instead of ThermaCore's
        /// per-gateway filters.
        #[arg(long)]
        ceiling_wildcard: bool,
        /// What the historian does with the samples (see `modbus::StoreMode`).
        #[arg(long, value_enum, default_value_t = modbus::StoreMode::Sqlite)]
        store: modbus::StoreMode,
    },
    /// The broker of the `mqtt` scenario (started by it as a child process).
    #[command(hide = true)]
    MqttBroker,
    /// The gateways of the `mqtt` scenario (started by it as a child process).
    #[command(hide = true)]
    MqttPublishers {
        #[arg(long)]
        host: String,
        #[arg(long)]
        port: u16,
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        devices: usize,
        #[arg(long)]
        tags: usize,
        #[arg(long)]
        rate: f64,
        #[arg(long)]
        qos: u8,
        #[arg(long)]
        per_client: usize,
    },
    /// Embedded OPC UA servers (a child process) whose variables all change once a
    /// second, monitored by a real server started in-process (one session per
    /// device), with operator writes through the API: rates, CPU of both processes,
    /// memory, latency from source time to the cache, and the writeTag round trip.
    Opcua {
        #[command(flatten)]
        layout: opcua_server::Layout,
        /// Sampling and publishing interval of the subscriptions (the devices' poll_ms).
        #[arg(long, default_value_t = 500)]
        publish_ms: u64,
        /// Length of the measured window, after the warm-up.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Seconds between every item monitored and the measured window.
        #[arg(long, default_value_t = 10)]
        warmup: u64,
        /// Sequential writeTag requests per second during the window.
        #[arg(long, default_value_t = 10.0)]
        writes_per_sec: f64,
        /// What the historian does with the samples (see `modbus::StoreMode`).
        #[arg(long, value_enum, default_value_t = modbus::StoreMode::None)]
        store: modbus::StoreMode,
    },
    /// The servers of the `opcua` scenario (started by it as a child process).
    #[command(hide = true)]
    OpcuaServers {
        #[command(flatten)]
        layout: opcua_server::Layout,
    },
    /// DNP3 outstations (a child process) whose analog inputs change at a share per
    /// second, reported unsolicited to a real server started in-process (one master
    /// channel per outstation), with direct and SBO commands through the API: rates,
    /// CPU of both processes, memory, event-to-cache latency and the command round
    /// trips. Its figures are not for publication (the dnp3 crate's licence).
    Dnp3 {
        #[command(flatten)]
        layout: dnp3_outstations::Layout,
        /// Length of the measured window, after the warm-up.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Seconds between the integrity polls done and the measured window.
        #[arg(long, default_value_t = 10)]
        warmup: u64,
        /// Sequential writeTag requests per second of each operator (one sends
        /// direct operates, one select-before-operate).
        #[arg(long, default_value_t = 10.0)]
        writes_per_sec: f64,
        /// What the historian does with the samples (see `modbus::StoreMode`).
        #[arg(long, value_enum, default_value_t = modbus::StoreMode::None)]
        store: modbus::StoreMode,
    },
    /// The outstations of the `dnp3` scenario (started by it as a child process).
    #[command(hide = true)]
    Dnp3Outstations {
        #[command(flatten)]
        layout: dnp3_outstations::Layout,
    },
    /// Alarm rule evaluation: the engine alone, then the alert-stream actor with its
    /// store.
    Alarms {
        #[arg(long, default_value_t = 10_000)]
        tags: usize,
        #[arg(long, default_value_t = 10)]
        rules_per_tag: usize,
        /// Makes each tag's last rule a z-score anomaly detector (window 60).
        #[arg(long)]
        anomaly: bool,
        /// Samples per batch.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Swing of the signal around 50: 10 crosses limits (an alarm flood), 5 none.
        #[arg(long, default_value_t = 10.0)]
        amplitude: f64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
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
            Scenario::Alarms {
                tags,
                rules_per_tag,
                anomaly,
                batch,
                amplitude,
                seconds,
            } => {
                alarms::run(alarms::Run {
                    tags,
                    rules: rules_per_tag,
                    anomaly,
                    per_batch: batch,
                    amplitude,
                    seconds,
                })
                .await
            }
            Scenario::History {
                store,
                tags,
                step_secs,
                runs,
                widths,
            } => history::run(&store, tags, step_secs, runs, &widths).await,
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
            Scenario::Import {
                store,
                devices,
                tags,
                runs,
            } => import::run(store, devices, tags, runs).await,
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
            Scenario::Mqtt {
                devices,
                tags,
                rate,
                sweep,
                qos,
                seconds,
                warmup,
                per_client,
                connections,
                broker,
                broker_pid,
                phases,
                ceiling_wildcard,
                store,
            } => {
                mqtt::run(mqtt::Params {
                    devices,
                    tags,
                    rates: if sweep.is_empty() { vec![rate] } else { sweep },
                    qos,
                    seconds,
                    warmup,
                    per_client,
                    connections,
                    broker,
                    broker_pid,
                    phases,
                    ceiling_wildcard,
                    store,
                })
                .await
            }
            Scenario::MqttBroker => mqtt_broker::serve().await,
            Scenario::MqttPublishers {
                host,
                port,
                prefix,
                devices,
                tags,
                rate,
                qos,
                per_client,
            } => {
                mqtt_pub::serve(mqtt_pub::Load {
                    host,
                    port,
                    prefix,
                    devices,
                    tags,
                    rate,
                    qos,
                    per_client,
                })
                .await
            }
            Scenario::Opcua {
                layout,
                publish_ms,
                seconds,
                warmup,
                writes_per_sec,
                store,
            } => {
                opcua::run(opcua::Params {
                    layout,
                    publish_ms,
                    seconds,
                    warmup,
                    writes_per_sec,
                    store,
                })
                .await
            }
            Scenario::OpcuaServers { layout } => opcua_server::serve(layout).await,
            Scenario::Dnp3 {
                layout,
                seconds,
                warmup,
                writes_per_sec,
                store,
            } => {
                dnp3::run(dnp3::Params {
                    layout,
                    seconds,
                    warmup,
                    writes_per_sec,
                    store,
                })
                .await
            }
            Scenario::Dnp3Outstations { layout } => dnp3_outstations::serve(layout).await,
            Scenario::Auth { iterations } => auth::run(iterations).await,
        }
    })
}

//! `thermacore-loadtest`: benchmarks of the ThermaCore data path and of the API's
//! security path. Each scenario
//! prints one line of figures; run several times and quote medians.

mod auth;
mod idle;
mod inmem;
mod persisted;
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
            Scenario::Auth { iterations } => auth::run(iterations).await,
        }
    })
}

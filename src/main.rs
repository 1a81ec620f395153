//! The `thermacore` command: parses flags and hands over to the library.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use thermacore::config::{Config, LogFormat, load_file};
use thermacore::drivers::mqtt::broker::EmbeddedBroker;
use thermacore::{app, demo, storage, telemetry};

#[derive(Parser)]
#[command(
    name = "thermacore",
    version,
    about = "SCADA control server: devices in, live values, history and alarms out through GraphQL"
)]
struct Cli {
    /// Log format: text or json (overrides server.log_format).
    #[arg(long, global = true, value_parser = parse_format)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server with a configuration file.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a self-contained demo: SQLite, simulated devices, users admin/operator/viewer.
    Demo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Where the demo keeps its SQLite database.
        #[arg(long, default_value = "thermacore-demo-data")]
        data_dir: PathBuf,
    },
    /// Apply the database migrations and the configured world, then exit.
    Migrate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Print the catalogue of metrics (Markdown table, as in grafana/README.md).
    Metrics,
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Validate a configuration file and exit.
    CheckConfig { file: PathBuf },
    /// Run the embedded MQTT broker until killed (for tests and load tests).
    #[command(hide = true)]
    Broker {
        /// Address to listen on; port 0 picks a free loopback port.
        #[arg(long, default_value = "127.0.0.1:1883")]
        listen: std::net::SocketAddr,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user (or, with --update, reset an existing user's password and role).
    /// The password is read from THERMACORE_USER_PASSWORD, else from standard input.
    Add {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        username: String,
        /// admin, operator or viewer.
        #[arg(long)]
        role: thermacore::domain::Role,
        #[arg(long)]
        update: bool,
    },
}

fn parse_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected text or json".into()),
    }
}

fn main() -> anyhow::Result<()> {
    // rodbus, dnp3 and sqlx bring rustls with ring: make it the process-wide provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    // A panic inside an actor is a supervision event, not a crash: log it as one line
    // (the supervisor logs the restart) instead of a backtrace on stderr.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(%location, "panic: {message}");
    }));
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async_main(cli))
}

async fn async_main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => {
            let config = load(&config)?;
            telemetry::init_tracing(cli.log_format.unwrap_or(config.server.log_format));
            serve(config).await
        }
        Command::Demo { listen, data_dir } => {
            telemetry::init_tracing(cli.log_format.unwrap_or(LogFormat::Text));
            run_demo(listen, &data_dir).await
        }
        Command::Migrate { config } => {
            let config = load(&config)?;
            telemetry::init_tracing(cli.log_format.unwrap_or(config.server.log_format));
            let store = open_store(&config).await?;
            app::apply_config(store.as_ref(), &config)
                .await
                .context("applying the configured world")?;
            println!(
                "migrations applied to {} store; configured world applied",
                store.backend()
            );
            Ok(())
        }
        Command::Metrics => {
            print!("{}", thermacore::telemetry::catalogue_markdown());
            Ok(())
        }
        Command::Schema => {
            print!("{}", thermacore::api::graphql::sdl());
            Ok(())
        }
        Command::User {
            command:
                UserCommand::Add {
                    config,
                    tenant,
                    username,
                    role,
                    update,
                },
        } => {
            let config = load(&config)?;
            let password = read_password(config.auth.min_password_len)?;
            let store = open_store(&config).await?;
            let t = store
                .tenant_by_name(&tenant)
                .await?
                .with_context(|| format!("no tenant named `{tenant}`"))?;
            let hash = thermacore::api::auth::hash_password(&password)?;
            let user = if update {
                store
                    .set_user_password(t.id, &username, &hash, role)
                    .await?
            } else {
                store
                    .create_user(t.id, &username, &hash, role)
                    .await
                    .map_err(|e| match e {
                        storage::Error::Conflict(_) => anyhow::anyhow!(
                            "user `{username}` already exists in `{tenant}` (use --update to reset)"
                        ),
                        other => other.into(),
                    })?
            };
            // The CLI acts outside the API: its changes are audited too.
            let record = thermacore::domain::AuditRecord {
                id: 0,
                at: thermacore::domain::Timestamp::now(),
                tenant: Some(t.id),
                tenant_name: Some(t.name.clone()),
                user: None,
                username: Some(format!("cli:{}", whoami())),
                action: if update { "cli.userUpdate" } else { "cli.userAdd" }.into(),
                resource_type: "user".into(),
                resource_id: Some(user.id.to_string()),
                outcome: thermacore::domain::AuditOutcome::Success,
                reason: None,
                request_id: None,
                client_addr: None,
                summary: serde_json::json!({"username": username, "role": role.as_str(), "password": "***"})
                    .to_string(),
                changes: None,
            };
            store
                .append_audit(&record)
                .await
                .context("writing the audit record")?;
            println!(
                "user `{}` ({}) ready in tenant `{tenant}`",
                user.username, user.role
            );
            Ok(())
        }
        Command::Broker { listen } => {
            telemetry::init_tracing(cli.log_format.unwrap_or(LogFormat::Text));
            run_broker(listen).await
        }
        Command::CheckConfig { file } => {
            let config = load(&file)?;
            let devices: usize = config.tenants.iter().map(|t| t.devices.len()).sum();
            println!(
                "{}: valid ({} tenants, {devices} devices)",
                file.display(),
                config.tenants.len()
            );
            Ok(())
        }
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    // The error names the file, the key and the position; print it as it is.
    load_file(path).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn open_store(config: &Config) -> anyhow::Result<std::sync::Arc<dyn storage::Store>> {
    let store = storage::connect_config(&config.storage).await?;
    store
        .migrate()
        .await
        .with_context(|| format!("migrating {}", config.storage.url))?;
    Ok(store)
}

/// The operating-system user running the CLI, for its audit records.
fn whoami() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

fn read_password(min: usize) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("THERMACORE_USER_PASSWORD") {
        return Ok(p);
    }
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading the password from standard input")?;
    let p = s.trim_end_matches(['\r', '\n']).to_string();
    if p.chars().count() < min {
        bail!(
            "password must be at least {min} characters (from THERMACORE_USER_PASSWORD or standard input)"
        );
    }
    Ok(p)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    app::run(config, listener, shutdown_signal()).await?;
    Ok(())
}

async fn run_demo(listen: std::net::SocketAddr, data_dir: &Path) -> anyhow::Result<()> {
    if std::env::var("THERMACORE_ENV").is_ok_and(|v| v.trim().eq_ignore_ascii_case("production")) {
        bail!(
            "the demo creates development credentials and does not run in production mode (unset THERMACORE_ENV)"
        );
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    #[cfg(feature = "modbus")]
    let (plc_port, _plc) = demo::plc::start()
        .await
        .context("starting the demo's Modbus PLC on a loopback port")?;
    #[cfg(not(feature = "modbus"))]
    let plc_port = 0;
    let broker = tokio::task::spawn_blocking(|| EmbeddedBroker::start(([127, 0, 0, 1], 0).into()))
        .await
        .context("starting the demo's MQTT broker")?
        .context("starting the demo's MQTT broker on a loopback port")?;
    let mqtt_port = broker.port();
    let _publishers = demo::mqtt::start_publishers("127.0.0.1", mqtt_port)
        .await
        .context("starting the demo's MQTT publishers")?;
    let station = demo::opcua::start(data_dir)
        .await
        .context("starting the demo's OPC UA server on a loopback port")?;
    let opcua_endpoint = station.server.endpoint_url();
    #[cfg(feature = "dnp3")]
    let feeder = demo::dnp3::start()
        .await
        .context("starting the demo's DNP3 outstation on a loopback port")?;
    let peers = demo::Peers {
        plc_port,
        mqtt_port,
        opcua_endpoint: opcua_endpoint.clone(),
        #[cfg(feature = "dnp3")]
        dnp3_endpoint: feeder.outstation.endpoint(),
        #[cfg(not(feature = "dnp3"))]
        dnp3_endpoint: String::new(),
    };
    let mut config = demo::demo_config(data_dir, &peers);
    config.server.listen = listen;
    config.auth.jwt_secret = Some(
        std::env::var("THERMACORE_JWT_SECRET")
            .unwrap_or_else(|_| format!("{}{}", demo::random_password(), demo::random_password())),
    );
    let store = open_store(&config).await?;
    app::apply_config(store.as_ref(), &config).await?;
    let fixed = std::env::var("THERMACORE_DEMO_PASSWORD").ok();
    let users = demo::seed_users(store.as_ref(), "demo", fixed.as_deref()).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen} (use --listen to pick another address)"))?;
    let addr = listener.local_addr()?;
    println!("\nThermaCore demo");
    println!("  GraphiQL:   http://{addr}/graphql");
    println!("  WebSocket:  ws://{addr}/graphql/ws   (graphql-transport-ws)");
    println!("  Metrics:    http://{addr}/metrics");
    println!("  Database:   {}", config.storage.url);
    #[cfg(feature = "modbus")]
    println!("  Modbus PLC: 127.0.0.1:{plc_port} (unit 1; device station-plc)");
    println!(
        "  MQTT:       127.0.0.1:{mqtt_port} (embedded broker; devices boiler-gateway, pump1-edge)"
    );
    println!(
        "  OPC UA:     {opcua_endpoint} (pump station, Basic256Sha256 SignAndEncrypt; certificate {})",
        station.server.certificate_path().display()
    );
    #[cfg(feature = "dnp3")]
    println!(
        "  DNP3:       {} (feeder RTU, outstation 1024, master 1; device feeder-7)",
        feeder.outstation.endpoint()
    );
    for (tenant, user, password) in &users {
        let shown = if fixed.is_some() {
            "(THERMACORE_DEMO_PASSWORD)"
        } else {
            password.as_str()
        };
        println!("  User:       tenant {tenant:<7} {user:<9} password {shown}");
    }
    println!();
    app::run(config, listener, shutdown_signal()).await?;
    station.stop().await;
    Ok(())
}

/// Runs the embedded MQTT broker until the process is killed or interrupted (rumqttd
/// has no graceful shutdown: the process exit ends it).
async fn run_broker(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    let broker = tokio::task::spawn_blocking(move || EmbeddedBroker::start(listen))
        .await
        .context("starting the broker")?
        .with_context(|| format!("starting the MQTT broker on {listen}"))?;
    println!("broker listening on {}", broker.addr());
    std::io::stdout()
        .flush()
        .context("writing to standard output")?;
    shutdown_signal().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

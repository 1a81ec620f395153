//! Wiring: connects the store (retrying until it answers), applies the configured
//! world, starts the actor tree and serves the API until `shutdown` resolves.

mod apply;
mod upkeep;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use ractor::{Actor, ActorRef};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::actors::catalog::TagCatalog;
use crate::actors::historian::HistorianHandle;
use crate::actors::{RootActor, RootArgs, RootMsg, Runtime};
use crate::api::auth::{AuthError, AuthKeys};
use crate::api::gate::Gate;
use crate::api::graphql::{ApiContext, build_schema};
use crate::api::http::{self, TlsError};
use crate::api::limits::Limits;
use crate::api::{AppState, Core, router};
use crate::config::{Config, RunMode, production_problems, require_tls_without_settings};
use crate::secrets::{SecretError, SecretKey};
use crate::storage::{self, Store};
use crate::telemetry::{metrics_handle, names};

pub use apply::{ApplyError, apply_config, check_stored_secrets, load_world, secret_key};

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(
        "THERMACORE_JWT_SECRET is not set: the server needs a signing secret of at least 32 characters"
    )]
    MissingSecret,
    #[error("auth: {0}")]
    Auth(#[from] AuthError),
    #[error("store: {0}")]
    Store(#[from] storage::Error),
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
    #[error("actor tree: {0}")]
    Actors(String),
    #[error("configuration: {0}")]
    Apply(#[from] ApplyError),
    #[error("https: {0}")]
    Tls(#[from] TlsError),
    #[error("device secrets: {0}")]
    Secret(#[from] SecretError),
    #[error("refusing to start in production mode:{}", .0.iter().map(|p| format!("\n  - {p}")).collect::<String>())]
    Production(Vec<String>),
}

/// What stops the server from the inside.
#[derive(Debug, Clone)]
enum Fatal {
    Actors(String),
    Secret(SecretError),
    /// A production check that needs the store (development credentials).
    Production(Vec<String>),
}

impl From<Fatal> for AppError {
    fn from(f: Fatal) -> Self {
        match f {
            Fatal::Actors(e) => AppError::Actors(e),
            Fatal::Secret(e) => AppError::Secret(e),
            Fatal::Production(p) => AppError::Production(p),
        }
    }
}

static INSTANCE: AtomicU64 = AtomicU64::new(0);

/// Runs the server on `listener` until `shutdown` resolves (or the actor tree gives up).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    if config.mode == RunMode::Production {
        let problems = production_problems(&config);
        if !problems.is_empty() {
            return Err(AppError::Production(problems));
        }
    }
    for device in require_tls_without_settings(&config) {
        tracing::warn!(
            device,
            "require_tls = true but no TLS settings: refused in production"
        );
    }
    let secret = config
        .auth
        .jwt_secret
        .clone()
        .ok_or(AppError::MissingSecret)?;
    let auth = Arc::new(AuthKeys::new(&secret, &config.auth)?);
    let secret_key = secret_key(&config)?.map(Arc::new);
    // The recorder first: loading the certificate publishes its expiry.
    let metrics = metrics_handle();
    let tls = config.server.tls.as_ref().map(http::load_tls).transpose()?;
    let config = Arc::new(config);
    let state = AppState {
        core: Arc::new(ArcSwapOption::empty()),
        metrics,
    };
    let store = storage::connect_config(&config.storage).await?;
    let (fatal_tx, mut fatal_rx) = watch::channel(None::<Fatal>);
    let (root_tx, root_rx) = watch::channel(None::<ActorRef<RootMsg>>);
    tracing::info!(addr = %listener.local_addr()?, store = store.backend(), https = tls.is_some(), "listening");

    let starter = tokio::spawn(start_core(
        config.clone(),
        store.clone(),
        auth,
        secret_key,
        state.clone(),
        fatal_tx,
        root_tx,
    ));
    let maintenance = tokio::spawn(upkeep::maintain(
        store.clone(),
        config.storage.maintenance_interval_secs,
    ));

    let fatal_seen = fatal_rx.clone();
    let stop = async move {
        tokio::select! {
            _ = shutdown => {},
            _ = fatal_rx.wait_for(|f| f.is_some()) => {},
        }
    };
    let app = router(state.clone(), &config.server, tls.is_some());
    http::serve(listener, app, tls, stop).await?;
    starter.abort();
    maintenance.abort();
    state.core.store(None);
    let root = root_rx.borrow().clone();
    if let Some(root) = root {
        // Stops the tree; the historian's post_stop writes what it still holds.
        let limit = Duration::from_secs(config.historian.shutdown_flush_secs + 30);
        let _ = root
            .stop_and_wait(Some("shutdown".into()), Some(limit))
            .await;
    }
    let fatal = fatal_seen.borrow().clone();
    match fatal {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Reaches the store (retrying with backoff), migrates, applies the config, starts
/// the actor tree and publishes the core; then watches the root.
async fn start_core(
    config: Arc<Config>,
    store: Arc<dyn Store>,
    auth: Arc<AuthKeys>,
    secret_key: Option<Arc<SecretKey>>,
    state: AppState,
    fatal: watch::Sender<Option<Fatal>>,
    root_out: watch::Sender<Option<ActorRef<RootMsg>>>,
) {
    let mut wait = Duration::from_millis(config.storage.retry_initial_ms);
    let max = Duration::from_millis(config.storage.retry_max_ms);
    let access_ttl = Duration::from_secs(config.auth.access_token_ttl_secs);
    let (worlds, gate) = loop {
        let attempt = async {
            store.ping().await?;
            store.migrate().await?;
            apply_config(store.as_ref(), &config).await?;
            let gate = Gate::load(store.clone(), config.quotas, access_ttl).await?;
            Ok::<_, ApplyError>((load_world(store.as_ref()).await?, gate))
        };
        match attempt.await {
            Ok(w) => break w,
            Err(e) if e.is_transient() => {
                metrics::gauge!(names::STORE_UP).set(0.0);
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "store not ready; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(max);
            }
            Err(ApplyError::Secret(e)) => {
                tracing::error!(error = %e, "device secrets cannot be used; shutting down");
                let _ = fatal.send(Some(Fatal::Secret(e)));
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                let _ = fatal.send(Some(Fatal::Actors(format!("configuration: {e}"))));
                return;
            }
        }
    };
    metrics::gauge!(names::STORE_UP).set(1.0);
    if config.mode == RunMode::Production {
        match store.dev_credentials().await {
            Ok(users) if users.is_empty() => {}
            Ok(users) => {
                let list: Vec<String> = users.iter().map(|(t, u)| format!("{t}/{u}")).collect();
                let problem = format!(
                    "development credentials exist ({}): delete them or reset their passwords with `thermacore user add --update`",
                    list.join(", ")
                );
                tracing::error!("refusing to start in production mode: {problem}");
                let _ = fatal.send(Some(Fatal::Production(vec![problem])));
                return;
            }
            Err(e) => {
                let _ = fatal.send(Some(Fatal::Production(vec![format!(
                    "cannot check for development credentials: {e}"
                )])));
                return;
            }
        }
    }
    let historian = Arc::new(HistorianHandle::new(config.historian.clone()));
    let runtime = Arc::new(
        Runtime::new(historian)
            .with_secret_key(secret_key)
            .with_catalog(TagCatalog::new(store.clone(), config.quotas)),
    );
    let prefix = format!("tc{}", INSTANCE.fetch_add(1, Ordering::Relaxed));
    let tenants = worlds.len();
    let args = RootArgs {
        runtime: runtime.clone(),
        store: store.clone(),
        tenants: worlds,
        policy: (&config.supervision).into(),
        cache: config.cache.clone(),
        name_prefix: prefix.clone(),
        shutdown_flush_secs: config.historian.shutdown_flush_secs,
    };
    let (root, handle) = match Actor::spawn(Some(format!("{prefix}/root")), RootActor, args).await {
        Ok(r) => r,
        Err(e) => {
            let _ = fatal.send(Some(Fatal::Actors(format!("root failed to start: {e}"))));
            return;
        }
    };
    let _ = root_out.send(Some(root.clone()));
    runtime.root.set(Some(root.clone()));
    let limits = Arc::new(Limits::new(&config.api, &config.auth));
    let api = Arc::new(ApiContext {
        store: store.clone(),
        runtime,
        auth,
        config: config.clone(),
        gate: gate.clone(),
        limits: limits.clone(),
    });
    state.core.store(Some(Arc::new(Core {
        schema: build_schema(api.clone()),
        api,
    })));
    tracing::info!(tenants, "actor tree up; ready");
    tokio::select! {
        _ = handle => {},
        _ = upkeep::keep_security(gate.clone(), limits, config.auth.revocation_sync_secs) => {},
        _ = upkeep::retention(store, gate, config.audit.retention_days, config.storage.maintenance_interval_secs) => {},
    }
    if !fatal.is_closed() {
        tracing::error!("the root supervisor stopped: restart intensity exceeded; shutting down");
        let _ = fatal.send(Some(Fatal::Actors("root supervisor gave up".into())));
    }
}

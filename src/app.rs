//! Wiring: connects the store (retrying until it answers), applies the configured
//! world, starts the actor tree and serves the API until `shutdown` resolves.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use ractor::{Actor, ActorRef};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::actors::historian::HistorianHandle;
use crate::actors::{
    DeviceWorld, RootActor, RootArgs, RootMsg, Runtime, TenantShared, TenantWorld,
};
use crate::api::auth::{AuthError, AuthKeys};
use crate::api::graphql::{ApiContext, build_schema};
use crate::api::http::{self, TlsError};
use crate::api::{AppState, Core, router};
use crate::config::{Config, RunMode, production_problems, require_tls_without_settings};
use crate::domain::{DeviceSpec, TagSpec, Timestamp, UnitSpec};
use crate::secrets::{SecretError, SecretKey};
use crate::storage::{self, Store};
use crate::telemetry::{metrics_handle, names};

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
}

impl From<Fatal> for AppError {
    fn from(f: Fatal) -> Self {
        match f {
            Fatal::Actors(e) => AppError::Actors(e),
            Fatal::Secret(e) => AppError::Secret(e),
        }
    }
}

static INSTANCE: AtomicU64 = AtomicU64::new(0);

/// The key of `THERMACORE_SECRET_KEY`, checked: a malformed key, or a device that
/// declares secrets while no key is set, is an error naming the device.
pub fn secret_key(config: &Config) -> Result<Option<SecretKey>, SecretError> {
    let key = SecretKey::from_config(config)?;
    if key.is_none() {
        for t in &config.tenants {
            if let Some(d) = t.devices.iter().find(|d| d.security.has_secrets()) {
                return Err(SecretError::MissingKey {
                    device: format!("{}/{}", t.name.get_ref(), d.name.get_ref()),
                });
            }
        }
    }
    Ok(key)
}

/// Fails if a device's stored secrets do not open with `key` (a changed or missing
/// `THERMACORE_SECRET_KEY`), before anything is overwritten.
pub async fn check_stored_secrets(
    store: &dyn Store,
    key: Option<&SecretKey>,
) -> Result<(), AppError> {
    for tenant in store.tenants().await? {
        for d in store.devices(tenant.id).await? {
            let name = format!("{}/{}", tenant.name, d.spec.name);
            d.spec.security.open_for(&name, key)?;
        }
    }
    Ok(())
}

/// Creates or updates the configured tenants, units, devices and tags in the store
/// (by name; nothing is deleted). Device secrets are sealed with
/// `THERMACORE_SECRET_KEY`; secrets already stored must open with it.
pub async fn apply_config(store: &dyn Store, config: &Config) -> Result<(), AppError> {
    let key = secret_key(config)?;
    check_stored_secrets(store, key.as_ref()).await?;
    for t in &config.tenants {
        let tenant = store.upsert_tenant(t.name.get_ref()).await?;
        let mut units = HashMap::new();
        for u in &t.units {
            let spec = UnitSpec {
                name: u.name.get_ref().clone(),
                location: u.location,
                description: u.description.clone(),
            };
            let unit = store.upsert_unit(tenant.id, &spec).await?;
            units.insert(spec.name, unit.id);
        }
        let unit_of = |name: &Option<toml::Spanned<String>>| {
            name.as_ref().and_then(|n| units.get(n.get_ref()).copied())
        };
        for d in &t.devices {
            let security = match &key {
                Some(key) => d.security.seal(key)?,
                // secret_key() made sure there is nothing to seal.
                None => d.security.without_secrets(),
            };
            let spec = DeviceSpec {
                name: d.name.get_ref().clone(),
                unit: unit_of(&d.unit),
                enabled: d.enabled,
                poll_ms: d.poll_ms,
                driver: d.driver.clone(),
                security,
            };
            let device = store.upsert_device(tenant.id, &spec).await?;
            let declared = d.tags.iter().map(|g| TagSpec {
                name: g.name.get_ref().clone(),
                unit: unit_of(&g.unit),
                address: g.address.get_ref().clone(),
                data_type: g.data_type,
                scale: g.scale,
                offset: g.offset,
                eng_unit: g.eng_unit.clone(),
                deadband: g.deadband,
                writable: g.writable,
            });
            for tag in declared.chain(d.driver.generated_tags()) {
                store.upsert_tag(tenant.id, device.id, &tag).await?;
            }
        }
    }
    Ok(())
}

/// Loads every tenant with its devices and tags.
pub async fn load_world(store: &dyn Store) -> Result<Vec<TenantWorld>, storage::Error> {
    let mut worlds = Vec::new();
    for tenant in store.tenants().await? {
        let devices = store.devices(tenant.id).await?;
        let mut tags_by_device: HashMap<_, Vec<_>> = HashMap::new();
        for tag in store.tags(tenant.id, None).await? {
            tags_by_device.entry(tag.device).or_default().push(tag);
        }
        let devices = devices
            .into_iter()
            .map(|device| {
                Arc::new(DeviceWorld {
                    tags: tags_by_device.remove(&device.id).unwrap_or_default(),
                    device,
                })
            })
            .collect();
        worlds.push(TenantWorld {
            shared: Arc::new(TenantShared::new(tenant)),
            devices,
        });
    }
    Ok(worlds)
}

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
    let tls = config.server.tls.as_ref().map(http::load_tls).transpose()?;
    let config = Arc::new(config);
    let state = AppState {
        core: Arc::new(ArcSwapOption::empty()),
        metrics: metrics_handle(),
    };
    let store = storage::connect(&config.storage.url, config.storage.max_connections).await?;
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
    let maintenance = tokio::spawn(maintain(
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
    let worlds = loop {
        let attempt = async {
            store.ping().await?;
            store.migrate().await?;
            apply_config(store.as_ref(), &config).await?;
            Ok::<_, AppError>(load_world(store.as_ref()).await?)
        };
        match attempt.await {
            Ok(w) => break w,
            Err(AppError::Secret(e)) => {
                tracing::error!(error = %e, "device secrets cannot be used; shutting down");
                let _ = fatal.send(Some(Fatal::Secret(e)));
                return;
            }
            Err(e) => {
                metrics::gauge!(names::STORE_UP).set(0.0);
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "store not ready; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(max);
            }
        }
    };
    metrics::gauge!(names::STORE_UP).set(1.0);
    let historian = Arc::new(HistorianHandle::new(config.historian.clone()));
    let runtime = Arc::new(Runtime::new(historian).with_secret_key(secret_key));
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
    let api = Arc::new(ApiContext {
        store,
        runtime,
        auth,
        config,
    });
    state.core.store(Some(Arc::new(Core {
        schema: build_schema(api.clone()),
        api,
    })));
    tracing::info!(tenants, "actor tree up; ready");
    let _ = handle.await;
    if !fatal.is_closed() {
        tracing::error!("the root supervisor stopped: restart intensity exceeded; shutting down");
        let _ = fatal.send(Some(Fatal::Actors("root supervisor gave up".into())));
    }
}

async fn maintain(store: Arc<dyn Store>, every_secs: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(every_secs.max(60)));
    loop {
        tick.tick().await;
        if let Err(e) = store.maintain(Timestamp::now()).await {
            tracing::warn!(error = %e, "store maintenance failed");
        }
    }
}

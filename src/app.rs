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
use crate::actors::{RootActor, RootArgs, RootMsg, Runtime, TenantWorld};
use crate::api::auth::{AuthError, AuthKeys};
use crate::api::gate::Gate;
use crate::api::graphql::{ApiContext, build_schema};
use crate::api::http::{self, TlsError};
use crate::api::limits::Limits;
use crate::api::{AppState, Core, router};
use crate::config::{Config, RunMode, production_problems, require_tls_without_settings};
use crate::domain::{DeviceSpec, QuotaOverrides, QuotaViolation, TagSpec, Timestamp, UnitSpec};
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

/// Why the configured world could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Store(#[from] storage::Error),
    /// Device secrets cannot be sealed or opened (missing or changed key).
    #[error("device secrets: {0}")]
    Secret(#[from] SecretError),
    /// The configuration declares more than the tenant's quotas allow.
    #[error("tenant `{tenant}`: QUOTA_EXCEEDED: {violation}{what}")]
    Quota {
        tenant: String,
        violation: QuotaViolation,
        what: String,
    },
}

impl ApplyError {
    /// Whether trying again later can help (the store was unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, ApplyError::Store(storage::Error::Unavailable(_)))
    }
}

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
) -> Result<(), ApplyError> {
    for tenant in store.tenants().await? {
        for d in store.devices(tenant.id).await? {
            let name = format!("{}/{}", tenant.name, d.spec.name);
            d.spec.security.open_for(&name, key)?;
        }
    }
    Ok(())
}

/// Creates or updates the configured tenants (with their quotas), units, devices and
/// tags in the store, by name; nothing is deleted. Refuses, before writing any device,
/// a tenant whose declared devices, tags or poll periods exceed its quotas. Device
/// secrets are sealed with `THERMACORE_SECRET_KEY`; secrets already stored must open
/// with it.
pub async fn apply_config(store: &dyn Store, config: &Config) -> Result<(), ApplyError> {
    let key = secret_key(config)?;
    check_stored_secrets(store, key.as_ref()).await?;
    for t in &config.tenants {
        let tenant = store.upsert_tenant(t.name.get_ref()).await?;
        let mut overrides = store
            .tenant_record(tenant.id)
            .await?
            .map(|r| r.quotas)
            .unwrap_or_default();
        if t.quotas != QuotaOverrides::default() {
            // Declared quotas win over ones set through the API.
            overrides.merge(&t.quotas);
            store.set_tenant_quotas(tenant.id, &overrides).await?;
        }
        check_quotas(store, t, tenant.id, &overrides.over(&config.quotas)).await?;
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

/// Refuses a tenant section that would exceed the tenant's quotas.
async fn check_quotas(
    store: &dyn Store,
    t: &crate::config::TenantConfig,
    tenant: crate::domain::TenantId,
    quotas: &crate::domain::Quotas,
) -> Result<(), ApplyError> {
    let quota = |violation: QuotaViolation, what: String| ApplyError::Quota {
        tenant: t.name.get_ref().clone(),
        violation,
        what,
    };
    for d in &t.devices {
        quotas
            .check_poll(d.poll_ms)
            .map_err(|v| quota(v, format!(" (device `{}`)", d.name.get_ref())))?;
    }
    let devices = store.devices(tenant).await?;
    let device_names: HashMap<_, _> = devices
        .iter()
        .map(|d| (d.id, d.spec.name.as_str()))
        .collect();
    let mut all_devices: std::collections::HashSet<&str> = device_names.values().copied().collect();
    let existing_tags = store.tags(tenant, None).await?;
    let mut all_tags: std::collections::HashSet<(String, String)> = existing_tags
        .iter()
        .filter_map(|g| {
            device_names
                .get(&g.device)
                .map(|d| (d.to_string(), g.spec.name.clone()))
        })
        .collect();
    for d in &t.devices {
        all_devices.insert(d.name.get_ref());
        let declared = d.tags.iter().map(|g| g.name.get_ref().clone());
        let generated = d.driver.generated_tags().into_iter().map(|g| g.name);
        for name in declared.chain(generated) {
            all_tags.insert((d.name.get_ref().clone(), name));
        }
    }
    quotas
        .check_counts(all_devices.len() as u64, all_tags.len() as u64)
        .map_err(|v| quota(v, String::new()))
}

/// Loads every enabled tenant with its devices and tags (a disabled tenant's actors
/// do not run).
pub async fn load_world(store: &dyn Store) -> Result<Vec<TenantWorld>, storage::Error> {
    let mut worlds = Vec::new();
    for record in store.tenant_records().await? {
        if !record.disabled {
            worlds.push(TenantWorld::load(store, record.tenant).await?);
        }
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
                let msg = format!(
                    "production mode: development credentials exist ({}); delete them or reset their passwords with `thermacore user add --update`",
                    list.join(", ")
                );
                tracing::error!("{msg}");
                let _ = fatal.send(Some(Fatal::Actors(msg)));
                return;
            }
            Err(e) => {
                let _ = fatal.send(Some(Fatal::Actors(format!(
                    "production mode: cannot check for development credentials: {e}"
                ))));
                return;
            }
        }
    }
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
        _ = keep_security(gate.clone(), limits, config.auth.revocation_sync_secs) => {},
        _ = retention(store, gate, config.audit.retention_days, config.storage.maintenance_interval_secs) => {},
    }
    if !fatal.is_closed() {
        tracing::error!("the root supervisor stopped: restart intensity exceeded; shutting down");
        let _ = fatal.send(Some(Fatal::Actors("root supervisor gave up".into())));
    }
}

/// Re-reads the gate's view (changes made by other processes) and forgets idle
/// rate-limit keys.
async fn keep_security(gate: Arc<Gate>, limits: Arc<Limits>, every_secs: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(every_secs.max(1)));
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = gate.sync().await {
            tracing::warn!(error = %e, "could not refresh users and sessions from the store");
        }
        limits.upkeep();
    }
}

/// Deletes what retention says is too old: each tenant's history after its
/// `history_retention_days`, audit records after `[audit] retention_days`, refresh
/// tokens a day after they expired. Runs at start and every maintenance interval.
async fn retention(store: Arc<dyn Store>, gate: Arc<Gate>, audit_days: u32, every_secs: u64) {
    const DAY_US: i64 = 86_400_000_000;
    let mut tick = tokio::time::interval(Duration::from_secs(every_secs.max(60)));
    loop {
        tick.tick().await;
        let now = Timestamp::now();
        for t in gate.tenants() {
            let days = t.quotas.history_retention_days;
            if days == 0 {
                continue;
            }
            let before = Timestamp(now.0 - i64::from(days) * DAY_US);
            match store
                .delete_history_before(t.record.tenant.id, before)
                .await
            {
                Ok(n) => {
                    metrics::counter!(names::RETENTION_DELETED, "table" => "samples").increment(n);
                    if n > 0 {
                        tracing::info!(tenant = %t.record.tenant.name, deleted = n, days, "history retention");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, tenant = %t.record.tenant.name, "history retention failed")
                }
            }
        }
        if audit_days > 0 {
            let before = Timestamp(now.0 - i64::from(audit_days) * DAY_US);
            match store.purge_audit(before).await {
                Ok(n) => {
                    metrics::counter!(names::RETENTION_DELETED, "table" => "audit_log").increment(n)
                }
                Err(e) => tracing::warn!(error = %e, "audit retention failed"),
            }
        }
        match store.purge_refresh_tokens(Timestamp(now.0 - DAY_US)).await {
            Ok(n) => metrics::counter!(names::RETENTION_DELETED, "table" => "refresh_tokens")
                .increment(n),
            Err(e) => tracing::warn!(error = %e, "refresh token purge failed"),
        }
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

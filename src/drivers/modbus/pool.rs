//! Channels shared by every device behind one server or gateway: devices with the same
//! host, port and link settings (different unit ids) use one rodbus channel. A
//! per-host semaphore bounds the requests in flight to one host over all its
//! channels; a channel idle for `idle_close_secs` is closed and opened again by the
//! next request. The channel's own task reconnects with rodbus's retry strategy; its
//! state changes are published to the devices as [`LinkEvent`]s and counted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use rodbus::client::{
    Channel, ClientState, HostAddr, Listener, RequestParam, WriteMultiple, doubling_retry_strategy,
};
use rodbus::{AddressRange, ClientOptions, Indexed, MaybeAsync, RequestError};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::drivers::{Error, LinkEvent};
use crate::telemetry::names;

/// What makes two devices share a channel: the same endpoint and link settings.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ChannelKey {
    pub host: String,
    pub port: u16,
    /// Server name and TLS file paths, when the link is Modbus/TCP Security.
    pub tls: Option<[String; 4]>,
    pub reconnect_ms: (u64, u64),
    pub reconnect_after_timeouts: u32,
    /// Set for a device that wants a connection of its own: unique per device.
    pub owner: Option<u64>,
}

/// A new unique [`ChannelKey::owner`].
pub fn unique_owner() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// How the pool opens a channel that does not exist yet.
pub struct ChannelSettings {
    pub max_concurrent_per_host: u16,
    pub idle_close: Duration,
    pub tls: Option<rodbus::client::TlsClientConfig>,
}

/// One request; the function code follows from the variant.
pub enum Request {
    ReadCoils(AddressRange),
    ReadDiscreteInputs(AddressRange),
    ReadHoldingRegisters(AddressRange),
    ReadInputRegisters(AddressRange),
    WriteSingleCoil(u16, bool),
    WriteSingleRegister(u16, u16),
    WriteMultipleCoils(u16, Vec<bool>),
    WriteMultipleRegisters(u16, Vec<u16>),
}

impl Request {
    /// The metric label of the function.
    pub fn function(&self) -> &'static str {
        match self {
            Request::ReadCoils(_) => "read_coils",
            Request::ReadDiscreteInputs(_) => "read_discrete_inputs",
            Request::ReadHoldingRegisters(_) => "read_holding_registers",
            Request::ReadInputRegisters(_) => "read_input_registers",
            Request::WriteSingleCoil(..) => "write_single_coil",
            Request::WriteSingleRegister(..) => "write_single_register",
            Request::WriteMultipleCoils(..) => "write_multiple_coils",
            Request::WriteMultipleRegisters(..) => "write_multiple_registers",
        }
    }
}

/// What a request answered.
#[derive(Debug, PartialEq)]
pub enum Response {
    Bits(Vec<bool>),
    Registers(Vec<u16>),
    Written,
}

/// The metric label of a failed request: the exception, or what went wrong.
pub fn error_code(e: &RequestError) -> &'static str {
    use rodbus::ExceptionCode as X;
    match e {
        RequestError::Exception(x) => match x {
            X::IllegalFunction => "illegal_function",
            X::IllegalDataAddress => "illegal_data_address",
            X::IllegalDataValue => "illegal_data_value",
            X::ServerDeviceFailure => "server_device_failure",
            X::Acknowledge => "acknowledge",
            X::ServerDeviceBusy => "server_device_busy",
            X::MemoryParityError => "memory_parity_error",
            X::GatewayPathUnavailable => "gateway_path_unavailable",
            X::GatewayTargetDeviceFailedToRespond => "gateway_target_failed_to_respond",
            X::Unknown(_) => "unknown_exception",
        },
        RequestError::ResponseTimeout => "timeout",
        RequestError::Io(_) => "io",
        RequestError::NoConnection => "no_connection",
        RequestError::BadFrame(_) | RequestError::BadResponse(_) => "bad_response",
        RequestError::BadRequest(_) => "bad_request",
        RequestError::Internal(_) => "internal",
        RequestError::Shutdown => "shutdown",
    }
}

type Watcher = Arc<dyn Fn(LinkEvent) + Send + Sync>;

/// Publishes the channel's state to the pool's watch and to the devices.
struct StateListener {
    state: watch::Sender<ClientState>,
    watchers: Arc<Mutex<Vec<(u64, Watcher)>>>,
    label: String,
}

fn event_of(state: ClientState) -> Option<LinkEvent> {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    match state {
        ClientState::Connecting => Some(LinkEvent::Connecting),
        ClientState::Connected => Some(LinkEvent::Connected),
        ClientState::WaitAfterFailedConnect(d) => {
            Some(LinkEvent::ConnectFailed { retry_in_ms: ms(d) })
        }
        ClientState::WaitAfterDisconnect(d) => Some(LinkEvent::Disconnected { retry_in_ms: ms(d) }),
        // Disabled is the idle close (or the start); Shutdown the end: not link failures.
        ClientState::Disabled | ClientState::Shutdown => None,
    }
}

fn event_label(e: &LinkEvent) -> &'static str {
    match e {
        LinkEvent::Connecting => "connecting",
        LinkEvent::Connected => "connected",
        LinkEvent::ConnectFailed { .. } => "connect_failed",
        LinkEvent::Disconnected { .. } => "disconnected",
        // rodbus channels report only the four above.
        LinkEvent::Answered => "answered",
        LinkEvent::Silent { .. } => "silent",
        LinkEvent::Trouble { .. } => "trouble",
    }
}

impl Listener<ClientState> for StateListener {
    fn update(&mut self, value: ClientState) -> MaybeAsync<()> {
        self.state.send_replace(value);
        if let Some(event) = event_of(value) {
            metrics::counter!(names::MODBUS_LINK_EVENTS, "event" => event_label(&event))
                .increment(1);
            tracing::debug!(channel = %self.label, state = ?value, "modbus channel state");
            let watchers: Vec<Watcher> = match self.watchers.lock() {
                Ok(w) => w.iter().map(|(_, f)| f.clone()).collect(),
                Err(p) => p.into_inner().iter().map(|(_, f)| f.clone()).collect(),
            };
            for w in watchers {
                w(event.clone());
            }
        }
        MaybeAsync::ready(())
    }
}

/// A channel and what the pool knows of it.
pub struct SharedChannel {
    /// `host:port`, for logs and errors.
    pub label: String,
    channel: Channel,
    state: watch::Receiver<ClientState>,
    watchers: Arc<Mutex<Vec<(u64, Watcher)>>>,
    next_watcher: AtomicU64,
    host_limit: Arc<Semaphore>,
    /// Whether the channel is enabled; held while enabling or disabling so that an idle
    /// close and a new request cannot overtake each other.
    enabled: tokio::sync::Mutex<bool>,
    in_flight: AtomicU32,
    /// Milliseconds since `epoch` of the last request.
    last_used_ms: AtomicU64,
    epoch: Instant,
}

static CHANNELS: LazyLock<Mutex<HashMap<ChannelKey, Weak<SharedChannel>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
static HOSTS: LazyLock<Mutex<HashMap<String, Weak<Semaphore>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Channels open in this process (for the metrics).
pub fn open_channels() -> usize {
    lock(&CHANNELS)
        .values()
        .filter(|w| w.strong_count() > 0)
        .count()
}

fn host_limit(host: &str, permits: u16) -> Arc<Semaphore> {
    let mut hosts = lock(&HOSTS);
    hosts.retain(|_, w| w.strong_count() > 0);
    if let Some(s) = hosts.get(host).and_then(Weak::upgrade) {
        return s;
    }
    let s = Arc::new(Semaphore::new(usize::from(permits.max(1))));
    hosts.insert(host.to_string(), Arc::downgrade(&s));
    s
}

/// The channel for `key`, shared with every other device using it, or a new one.
/// Must be called within the tokio runtime (it spawns the channel's task).
pub fn acquire(key: ChannelKey, settings: ChannelSettings) -> Arc<SharedChannel> {
    let mut channels = lock(&CHANNELS);
    channels.retain(|_, w| w.strong_count() > 0);
    if let Some(c) = channels.get(&key).and_then(Weak::upgrade) {
        return c;
    }
    let label = format!("{}:{}", key.host, key.port);
    let host = match key.host.parse::<IpAddr>() {
        Ok(ip) => HostAddr::ip(ip, key.port),
        Err(_) => HostAddr::dns(key.host.clone(), key.port),
    };
    let (tx, rx) = watch::channel(ClientState::Disabled);
    let watchers = Arc::new(Mutex::new(Vec::new()));
    let listener = Box::new(StateListener {
        state: tx,
        watchers: watchers.clone(),
        label: label.clone(),
    });
    let retry = doubling_retry_strategy(
        Duration::from_millis(key.reconnect_ms.0),
        Duration::from_millis(key.reconnect_ms.1),
    );
    let options = ClientOptions::default()
        .channel_logging(rodbus::ChannelLoggingMode::StateChanges)
        .max_queued_requests(64)
        .max_response_timeouts(std::num::NonZeroUsize::new(
            key.reconnect_after_timeouts as usize,
        ));
    let (channel, task) = match settings.tls {
        Some(tls) => rodbus::client::create_tls_client_task_with_options(
            host,
            retry,
            tls,
            Some(listener),
            options,
        ),
        None => rodbus::client::create_tcp_client_task_with_options(
            host,
            retry,
            Some(listener),
            options,
        ),
    };
    tokio::spawn(task.run());
    let shared = Arc::new(SharedChannel {
        label,
        channel,
        state: rx,
        watchers,
        next_watcher: AtomicU64::new(0),
        host_limit: host_limit(&key.host, settings.max_concurrent_per_host),
        enabled: tokio::sync::Mutex::new(false),
        in_flight: AtomicU32::new(0),
        last_used_ms: AtomicU64::new(0),
        epoch: Instant::now(),
    });
    if !settings.idle_close.is_zero() {
        tokio::spawn(close_when_idle(
            Arc::downgrade(&shared),
            settings.idle_close,
        ));
    }
    channels.insert(key, Arc::downgrade(&shared));
    shared
}

/// Disables the channel whenever it carried no request for `idle`; ends with it.
async fn close_when_idle(channel: Weak<SharedChannel>, idle: Duration) {
    let tick = (idle / 4).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(tick).await;
        let Some(c) = channel.upgrade() else { return };
        let mut enabled = c.enabled.lock().await;
        let quiet = c.epoch.elapsed().saturating_sub(Duration::from_millis(
            c.last_used_ms.load(Ordering::Relaxed),
        ));
        if *enabled && c.in_flight.load(Ordering::Relaxed) == 0 && quiet >= idle {
            *enabled = false;
            tracing::debug!(channel = %c.label, idle_secs = idle.as_secs(), "closing idle modbus channel");
            if c.channel.disable().await.is_err() {
                return;
            }
        }
    }
}

impl SharedChannel {
    /// Registers a device's link watcher; it hears the current state at once when the
    /// channel is already connected.
    pub fn watch(&self, f: Watcher) -> u64 {
        let id = self.next_watcher.fetch_add(1, Ordering::Relaxed);
        if *self.state.borrow() == ClientState::Connected {
            f(LinkEvent::Connected);
        }
        lock(&self.watchers).push((id, f));
        id
    }

    pub fn unwatch(&self, id: u64) {
        lock(&self.watchers).retain(|(i, _)| *i != id);
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_used_ms.store(ms, Ordering::Relaxed);
    }

    /// Enables the channel if it is not (first use, or closed while idle) and waits up to
    /// `wait` for the connection. Fails at once while the channel waits to retry a
    /// failed connect: the device is unreachable, and rodbus retries on its own.
    pub async fn ready(&self, wait: Duration) -> Result<(), Error> {
        self.touch();
        {
            let mut enabled = self.enabled.lock().await;
            if !*enabled {
                *enabled = true;
                self.channel.enable().await.map_err(|_| {
                    Error::Disconnected(format!("{}: channel shut down", self.label))
                })?;
            }
        }
        let mut rx = self.state.clone();
        let deadline = Instant::now() + wait;
        loop {
            let state = *rx.borrow_and_update();
            match state {
                ClientState::Connected => return Ok(()),
                ClientState::WaitAfterFailedConnect(d) => {
                    return Err(Error::Disconnected(format!(
                        "{}: connect failed, retrying in {} ms",
                        self.label,
                        d.as_millis()
                    )));
                }
                ClientState::Shutdown => {
                    return Err(Error::Disconnected(format!(
                        "{}: channel shut down",
                        self.label
                    )));
                }
                ClientState::Disabled
                | ClientState::Connecting
                | ClientState::WaitAfterDisconnect(_) => {}
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(Error::Disconnected(format!(
                        "{}: channel task ended",
                        self.label
                    )));
                }
                Err(_) => {
                    return Err(Error::Disconnected(format!(
                        "{}: not connected within {} ms ({state:?})",
                        self.label,
                        wait.as_millis()
                    )));
                }
            }
        }
    }

    /// Sends one request to `unit`, within the host's concurrency limit, and counts it.
    pub async fn call(
        &self,
        unit: u8,
        timeout: Duration,
        request: Request,
    ) -> Result<Response, RequestError> {
        let function = request.function();
        let _permit = self
            .host_limit
            .acquire()
            .await
            .map_err(|_| RequestError::Shutdown)?;
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        let started = std::time::Instant::now();
        let param = RequestParam::new(rodbus::UnitId::new(unit), timeout);
        let ch = &self.channel;
        let result = match request {
            Request::ReadCoils(r) => ch
                .read_coils(param, r)
                .await
                .map(|v| Response::Bits(v.into_iter().map(|i| i.value).collect())),
            Request::ReadDiscreteInputs(r) => ch
                .read_discrete_inputs(param, r)
                .await
                .map(|v| Response::Bits(v.into_iter().map(|i| i.value).collect())),
            Request::ReadHoldingRegisters(r) => ch
                .read_holding_registers(param, r)
                .await
                .map(|v| Response::Registers(v.into_iter().map(|i| i.value).collect())),
            Request::ReadInputRegisters(r) => ch
                .read_input_registers(param, r)
                .await
                .map(|v| Response::Registers(v.into_iter().map(|i| i.value).collect())),
            Request::WriteSingleCoil(a, v) => ch
                .write_single_coil(param, Indexed::new(a, v))
                .await
                .map(|_| Response::Written),
            Request::WriteSingleRegister(a, v) => ch
                .write_single_register(param, Indexed::new(a, v))
                .await
                .map(|_| Response::Written),
            Request::WriteMultipleCoils(a, v) => match WriteMultiple::from(a, v) {
                Ok(w) => ch
                    .write_multiple_coils(param, w)
                    .await
                    .map(|_| Response::Written),
                Err(e) => Err(RequestError::BadRequest(e)),
            },
            Request::WriteMultipleRegisters(a, v) => match WriteMultiple::from(a, v) {
                Ok(w) => ch
                    .write_multiple_registers(param, w)
                    .await
                    .map(|_| Response::Written),
                Err(e) => Err(RequestError::BadRequest(e)),
            },
        };
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.touch();
        metrics::counter!(names::MODBUS_REQUESTS, "function" => function).increment(1);
        metrics::histogram!(names::MODBUS_REQUEST_SECONDS, "function" => function)
            .record(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            metrics::counter!(names::MODBUS_ERRORS, "function" => function, "code" => error_code(e))
                .increment(1);
        }
        result
    }
}

impl Drop for SharedChannel {
    fn drop(&mut self) {
        self.channel.shutdown();
    }
}

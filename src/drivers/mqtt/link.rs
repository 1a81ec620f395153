//! Broker connections: one rumqttc event loop per broker and settings, shared by the
//! devices that use it. The link resubscribes every device's filters after each
//! (re)connect, reconnects with backoff and jitter, routes incoming messages to the
//! devices whose filters match, and confirms QoS 1 commands by their PUBACK.
//!
//! Safety of commands: a command not acknowledged when the connection drops is
//! reported failed and dropped, never republished later by the session resuming: an
//! operator told "failed" must not see the valve move minutes afterwards.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock, Weak};
use std::time::Duration;

use rand::Rng;
use rumqttc::{
    AsyncClient, Event, EventLoop, Incoming, MqttOptions, Outgoing, QoS, SubscribeFilter,
};
use tokio::sync::{oneshot, watch};

use super::topic;
use crate::drivers::{Error, LinkEvent};
use crate::telemetry::names;

/// Largest packet the link accepts; devices refuse smaller ones by their own limit.
/// rumqttc drops the connection on a larger packet.
const MAX_PACKET: usize = 16 * 1024 * 1024;
/// Requests (publishes, subscribes) queued towards the event loop.
const REQUEST_CAPACITY: usize = 1024;

/// What makes two devices share a connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LinkKey {
    pub host: String,
    pub port: u16,
    pub client_id: Option<String>,
    pub username: Option<String>,
    /// A digest of the password (not the password), so that different credentials
    /// never share a connection.
    pub password_digest: Option<[u8; 32]>,
    pub tls: Option<Vec<String>>,
    pub keep_alive_secs: u64,
    pub clean_session: bool,
    pub connect_timeout_ms: u64,
    pub reconnect: (u64, u64),
    /// Set for `own_connection`: a key no other device has.
    pub own: Option<u64>,
    /// Only devices of one scope (a tenant of a running server) share.
    pub scope: u64,
}

/// How to open a link.
pub struct LinkSettings {
    pub key: LinkKey,
    pub password: Option<String>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// One subscription of a device: what is sent (maybe `$share/…`) and what matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub subscribe: String,
    pub pattern: String,
    pub qos: QoS,
}

pub type OnMessage = Box<dyn Fn(&str, &[u8], &AsyncClient) + Send + Sync>;
pub type OnLink = Box<dyn Fn(LinkEvent) + Send + Sync>;

/// A device's part of a link.
pub struct Route {
    pub filters: Vec<Filter>,
    pub on_message: OnMessage,
    pub on_link: OnLink,
}

type Waiter = oneshot::Sender<Result<(), Error>>;

#[derive(Default)]
struct Commands {
    connected: bool,
    /// Waiters of QoS 1 publishes not yet given a packet id, in request order.
    queued: VecDeque<Waiter>,
    /// Waiters by packet id, until the PUBACK.
    inflight: HashMap<u16, Waiter>,
}

impl Commands {
    fn fail_all(&mut self, why: &str) {
        for w in self
            .queued
            .drain(..)
            .chain(self.inflight.drain().map(|(_, w)| w))
        {
            let _ = w.send(Err(Error::Disconnected(why.to_string())));
        }
    }
}

struct Shared {
    routes: RwLock<Vec<(u64, Arc<Route>)>>,
    commands: Mutex<Commands>,
    name: String,
}

/// A running connection. Dropped with its last route: the event loop stops.
pub struct Link {
    client: AsyncClient,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    key: LinkKey,
}

static LINKS: LazyLock<Mutex<HashMap<LinkKey, Weak<Link>>>> = LazyLock::new(Default::default);
static NEXT: AtomicU64 = AtomicU64::new(1);

/// Unique per process; used for `own_connection` keys and default client ids.
pub fn next_id() -> u64 {
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A device attached to a link; dropping it unsubscribes the device's filters (those
/// no other device needs) and closes the link with the last device.
pub struct Attachment {
    link: Arc<Link>,
    id: u64,
}

impl Attachment {
    /// Publishes with QoS 1 and waits for the broker's PUBACK.
    pub async fn publish_confirmed(
        &self,
        topic: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<(), Error> {
        let rx = {
            let mut c = lock(&self.link.shared.commands);
            if !c.connected {
                metrics::counter!(names::MQTT_COMMANDS, "outcome" => "disconnected").increment(1);
                return Err(Error::Disconnected("the broker is not connected".into()));
            }
            let (tx, rx) = oneshot::channel();
            c.queued.push_back(tx);
            if let Err(e) = self
                .link
                .client
                .try_publish(topic, QoS::AtLeastOnce, false, payload)
            {
                c.queued.pop_back();
                return Err(Error::Disconnected(format!(
                    "cannot queue the publish: {e}"
                )));
            }
            rx
        };
        let outcome = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Error::Disconnected("the connection closed".into())),
            Err(_) => Err(Error::Timeout(timeout.as_millis() as u64)),
        };
        let label = match &outcome {
            Ok(()) => "acked",
            Err(Error::Timeout(_)) => "timeout",
            Err(_) => "disconnected",
        };
        metrics::counter!(names::MQTT_COMMANDS, "outcome" => label).increment(1);
        outcome
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let shared = &self.link.shared;
        let mut routes = shared
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(pos) = routes.iter().position(|(id, _)| *id == self.id) else {
            return;
        };
        let (_, route) = routes.remove(pos);
        let still: Vec<&str> = routes
            .iter()
            .flat_map(|(_, r)| r.filters.iter().map(|f| f.subscribe.as_str()))
            .collect();
        for f in &route.filters {
            if !still.contains(&f.subscribe.as_str()) {
                let _ = self.link.client.try_unsubscribe(f.subscribe.clone());
            }
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = self.client.try_disconnect();
        let mut links = lock(&LINKS);
        if links.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
            links.remove(&self.key);
        }
    }
}

/// Attaches a device's route to the link for `settings`, opening it if needed.
pub fn attach(settings: LinkSettings, route: Route) -> Attachment {
    let link = {
        let mut links = lock(&LINKS);
        match links.get(&settings.key).and_then(Weak::upgrade) {
            Some(l) => l,
            None => {
                let l = open(settings);
                links.insert(l.key.clone(), Arc::downgrade(&l));
                l
            }
        }
    };
    let id = next_id();
    let route = Arc::new(route);
    {
        let mut routes = link
            .shared
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        routes.push((id, route.clone()));
    }
    let connected = lock(&link.shared.commands).connected;
    if connected {
        subscribe(&link.client, route.filters.clone());
        (route.on_link)(LinkEvent::Connected);
    } else {
        (route.on_link)(LinkEvent::Connecting);
    }
    Attachment { link, id }
}

fn subscribe(client: &AsyncClient, filters: Vec<Filter>) {
    if filters.is_empty() {
        return;
    }
    let client = client.clone();
    let many: Vec<SubscribeFilter> = filters
        .into_iter()
        .map(|f| SubscribeFilter::new(f.subscribe, f.qos))
        .collect();
    // Not awaited in the event loop's task: the request queue may be full until the
    // loop runs again.
    tokio::spawn(async move {
        let _ = client.subscribe_many(many).await;
    });
}

fn open(settings: LinkSettings) -> Arc<Link> {
    let key = settings.key;
    let client_id = key
        .client_id
        .clone()
        .unwrap_or_else(|| format!("thermacore-{}-{}", std::process::id(), next_id()));
    let mut options = MqttOptions::new(client_id.clone(), key.host.clone(), key.port);
    options
        .set_keep_alive(Duration::from_secs(key.keep_alive_secs))
        .set_clean_session(key.clean_session)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_request_channel_capacity(REQUEST_CAPACITY)
        .set_inflight(100);
    if let Some(user) = &key.username {
        options.set_credentials(user.clone(), settings.password.clone().unwrap_or_default());
    }
    if let Some(tls) = settings.tls {
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls),
        ));
    }
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
    eventloop
        .network_options
        .set_connection_timeout(key.connect_timeout_ms.div_ceil(1000).max(1));
    // Commands go out at once, not after Nagle's delay.
    eventloop.network_options.set_tcp_nodelay(true);
    let shared = Arc::new(Shared {
        routes: RwLock::new(Vec::new()),
        commands: Mutex::new(Commands::default()),
        name: format!("{}:{} ({client_id})", key.host, key.port),
    });
    let (stop, stop_rx) = watch::channel(false);
    metrics::gauge!(names::MQTT_CONNECTIONS, "state" => "disconnected").increment(1.0);
    tokio::spawn(run(
        eventloop,
        client.clone(),
        shared.clone(),
        stop_rx,
        key.reconnect,
    ));
    Arc::new(Link {
        client,
        shared,
        stop,
        key,
    })
}

fn routes(shared: &Shared) -> Vec<Arc<Route>> {
    shared
        .routes
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|(_, r)| r.clone())
        .collect()
}

/// Sets the link's state (under the commands' lock, so that no command slips in
/// between) and moves the connection gauges; returns the state before.
fn set_connected(c: &mut Commands, up: bool) -> bool {
    let was = std::mem::replace(&mut c.connected, up);
    if was != up {
        let (from, to) = if up {
            ("disconnected", "connected")
        } else {
            ("connected", "disconnected")
        };
        metrics::gauge!(names::MQTT_CONNECTIONS, "state" => from).decrement(1.0);
        metrics::gauge!(names::MQTT_CONNECTIONS, "state" => to).increment(1.0);
    }
    was
}

fn jitter(d: Duration) -> Duration {
    let f = rand::rng().random_range(0.8..1.2);
    d.mul_f64(f)
}

async fn run(
    mut el: EventLoop,
    client: AsyncClient,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    (min_ms, max_ms): (u64, u64),
) {
    let min = Duration::from_millis(min_ms);
    let max = Duration::from_millis(max_ms);
    let mut backoff = min;
    let mut failures = 0u64;
    let bytes = metrics::counter!(names::MQTT_RECEIVED_BYTES);
    let unmatched = metrics::counter!(names::MQTT_MESSAGES, "outcome" => "unmatched");
    loop {
        let event = tokio::select! {
            e = el.poll() => e,
            _ = stop.changed() => break,
        };
        match event {
            Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                set_connected(&mut lock(&shared.commands), true);
                if failures > 0 {
                    tracing::info!(broker = %shared.name, "MQTT connection restored");
                }
                backoff = min;
                failures = 0;
                tracing::debug!(broker = %shared.name, session_present = ack.session_present, "MQTT connected");
                let routes = routes(&shared);
                let mut all: Vec<Filter> = Vec::new();
                for r in &routes {
                    for f in &r.filters {
                        if !all.iter().any(|a| a.subscribe == f.subscribe) {
                            all.push(f.clone());
                        }
                    }
                }
                subscribe(&client, all);
                for r in &routes {
                    (r.on_link)(LinkEvent::Connected);
                }
            }
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                bytes.increment(p.payload.len() as u64);
                let topic = p.topic.as_str();
                let mut delivered = false;
                let routes = shared
                    .routes
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for (_, r) in routes.iter() {
                    if r.filters.iter().any(|f| topic::matches(&f.pattern, topic)) {
                        (r.on_message)(topic, &p.payload, &client);
                        delivered = true;
                    }
                }
                drop(routes);
                if !delivered {
                    unmatched.increment(1);
                }
            }
            Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                for code in &ack.return_codes {
                    if matches!(code, rumqttc::SubscribeReasonCode::Failure) {
                        tracing::error!(broker = %shared.name, "the broker refused a subscription (not authorised, or a shared subscription it does not support)");
                    }
                }
            }
            Ok(Event::Incoming(Incoming::PubAck(ack))) => {
                if let Some(w) = lock(&shared.commands).inflight.remove(&ack.pkid) {
                    let _ = w.send(Ok(()));
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) if pkid != 0 => {
                let mut c = lock(&shared.commands);
                if let Some(w) = c.queued.pop_front() {
                    c.inflight.insert(pkid, w);
                }
            }
            Ok(_) => {}
            Err(e) => {
                let was = {
                    let mut c = lock(&shared.commands);
                    let was = set_connected(&mut c, false);
                    // Whatever was queued towards the broker is dropped (see the
                    // module's note on commands); subscriptions are sent again on the
                    // next ConnAck.
                    el.clean();
                    el.pending.clear();
                    c.fail_all("the connection to the broker was lost");
                    was
                };
                failures += 1;
                metrics::counter!(names::MQTT_RECONNECTS).increment(1);
                let wait = jitter(backoff);
                let retry_in_ms = wait.as_millis() as u64;
                if failures == 1 {
                    tracing::warn!(broker = %shared.name, error = %e, retry_in_ms, "MQTT connection failed; retrying with backoff");
                } else {
                    tracing::debug!(broker = %shared.name, error = %e, retry_in_ms, "MQTT connection failed");
                }
                let event = if was {
                    LinkEvent::Disconnected { retry_in_ms }
                } else {
                    LinkEvent::ConnectFailed { retry_in_ms }
                };
                for r in routes(&shared) {
                    (r.on_link)(event.clone());
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => break,
                }
                backoff = (backoff * 2).min(max);
                for r in routes(&shared) {
                    (r.on_link)(LinkEvent::Connecting);
                }
            }
        }
    }
    {
        let mut c = lock(&shared.commands);
        c.fail_all("the connection was closed");
        set_connected(&mut c, false);
    }
    metrics::gauge!(names::MQTT_CONNECTIONS, "state" => "disconnected").decrement(1.0);
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;

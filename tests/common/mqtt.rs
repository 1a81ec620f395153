//! MQTT fixtures: the broker the tests run against (rumqttd embedded on an ephemeral
//! port, or the real Mosquitto named by `THERMACORE_TEST_MQTT`), a broker in a child
//! process that can be killed and started again, and a plain rumqttc peer that plays
//! gateways and edge nodes and watches what is published.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, Publish, QoS};
use thermacore::drivers::mqtt::broker::EmbeddedBroker;
use tokio::sync::mpsc;

/// `host:port` of an external broker (Mosquitto in CI); unset: an embedded rumqttd.
pub const ENV: &str = "THERMACORE_TEST_MQTT";

pub struct TestBroker {
    pub host: String,
    pub port: u16,
    /// Which broker: `rumqttd` or `external` (for messages).
    pub kind: &'static str,
    _embedded: Option<EmbeddedBroker>,
}

/// The broker of this run. A topic prefix of its own keeps each test apart on a
/// shared broker.
pub fn broker() -> TestBroker {
    match std::env::var(ENV) {
        Ok(addr) if !addr.is_empty() => {
            let (host, port) = addr
                .rsplit_once(':')
                .unwrap_or_else(|| panic!("{ENV} must be host:port, not `{addr}`"));
            TestBroker {
                host: host.to_string(),
                port: port
                    .parse()
                    .unwrap_or_else(|_| panic!("{ENV}: bad port in `{addr}`")),
                kind: "external",
                _embedded: None,
            }
        }
        _ => {
            let b = EmbeddedBroker::start("127.0.0.1:0".parse().expect("addr"))
                .expect("embedded rumqttd starts");
            TestBroker {
                host: "127.0.0.1".into(),
                port: b.port(),
                kind: "rumqttd",
                _embedded: Some(b),
            }
        }
    }
}

/// A topic prefix no other test uses.
pub fn prefix(test: &str) -> String {
    format!("tc-test/{test}/{}", uuid::Uuid::new_v4().simple())
}

/// The longest a peer waits for one thing.
pub const PEER_WAIT: Duration = Duration::from_secs(15);

/// A broker in a child process, to kill and start again on the same port: Mosquitto
/// when the external broker is Mosquitto (and the binary is here), else ThermaCore's
/// own `thermacore broker` (rumqttd).
pub struct ChildBroker {
    pub port: u16,
    child: Option<Child>,
    mosquitto: bool,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl ChildBroker {
    /// The broker of the suite's kind (see above).
    pub fn start() -> ChildBroker {
        let mosquitto = std::env::var(ENV).is_ok_and(|v| !v.is_empty())
            && std::path::Path::new("/usr/sbin/mosquitto").exists();
        if mosquitto {
            let mut b = ChildBroker {
                port: free_port(),
                child: None,
                mosquitto,
            };
            b.restart();
            b
        } else {
            Self::thermacore()
        }
    }

    /// `thermacore broker` on a port it picks itself (and prints).
    pub fn thermacore() -> ChildBroker {
        let mut b = ChildBroker {
            port: 0,
            child: None,
            mosquitto: false,
        };
        b.restart();
        b
    }

    pub fn kind(&self) -> &'static str {
        if self.mosquitto {
            "mosquitto"
        } else {
            "rumqttd"
        }
    }

    /// Kills the broker and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker (again) on the same port and waits until it accepts.
    pub fn restart(&mut self) {
        self.kill();
        if self.mosquitto {
            let child = Command::new("/usr/sbin/mosquitto")
                .args(["-p", &self.port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("mosquitto starts");
            self.child = Some(child);
            let deadline = std::time::Instant::now() + PEER_WAIT;
            while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "mosquitto did not listen"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            return;
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_thermacore"))
            .args(["broker", "--listen", &format!("127.0.0.1:{}", self.port)])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("thermacore broker starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        // Printed once the broker answers MQTT.
        let line = lines
            .next()
            .expect("the broker printed a line before exiting")
            .expect("read the broker's stdout");
        let addr: std::net::SocketAddr = line
            .strip_prefix("broker listening on ")
            .unwrap_or_else(|| panic!("unexpected broker output: {line}"))
            .parse()
            .expect("an address");
        if self.port != 0 {
            assert_eq!(addr.port(), self.port, "restarted on its port");
        }
        self.port = addr.port();
        // Keep reading so that the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
    }
}

impl Drop for ChildBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a peer saw.
#[derive(Debug)]
pub enum Seen {
    /// Connected (ConnAck); its filters are subscribed again.
    Up,
    /// A subscription is in place (SubAck).
    Subscribed,
    /// Its connection failed.
    Down,
    Message(Publish),
}

/// A plain MQTT client: publishes, and collects what its subscriptions receive. Its
/// filters are subscribed again after every reconnect.
pub struct Peer {
    pub client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Seen>,
    filters: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Peer {
    /// Connects and returns once the broker accepted the connection.
    pub async fn connect(host: &str, port: u16) -> Peer {
        let id = format!("tc-peer-{}", uuid::Uuid::new_v4().simple());
        let mut o = MqttOptions::new(id, host, port);
        o.set_keep_alive(Duration::from_secs(10))
            .set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
        let (client, mut el) = AsyncClient::new(o, 100);
        let (tx, rx) = mpsc::unbounded_channel();
        let filters: Arc<Mutex<Vec<String>>> = Arc::default();
        let (sub, subscribed) = (client.clone(), filters.clone());
        let task = tokio::spawn(async move {
            loop {
                let seen = match el.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        let again = subscribed.lock().map(|f| f.clone()).unwrap_or_default();
                        for f in again {
                            let _ = sub.try_subscribe(f, QoS::AtLeastOnce);
                        }
                        Seen::Up
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => Seen::Subscribed,
                    Ok(Event::Incoming(Incoming::Publish(p))) => Seen::Message(p),
                    Ok(_) => continue,
                    Err(_) => {
                        let _ = tx.send(Seen::Down);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.send(seen).is_err() {
                    return;
                }
            }
        });
        let mut peer = Peer {
            client,
            rx,
            filters,
            task,
        };
        let deadline = tokio::time::Instant::now() + PEER_WAIT;
        while !matches!(peer.next("the connection", deadline).await, Seen::Up) {}
        peer
    }

    /// A peer on `127.0.0.1:port` subscribed to `filter`.
    pub async fn observe(port: u16, filter: &str) -> Peer {
        let mut peer = Peer::connect("127.0.0.1", port).await;
        peer.subscribe(filter).await;
        peer
    }

    async fn next(&mut self, what: &str, deadline: tokio::time::Instant) -> Seen {
        match tokio::time::timeout_at(deadline, self.rx.recv()).await {
            Ok(Some(seen)) => seen,
            Ok(None) => panic!("the peer stopped while waiting for: {what}"),
            Err(_) => panic!("timed out waiting for: {what}"),
        }
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .expect("publish queued");
    }

    /// Subscribes (now and after every reconnect) and waits for the SubAck.
    pub async fn subscribe(&mut self, filter: &str) {
        if let Ok(mut f) = self.filters.lock() {
            f.push(filter.to_string());
        }
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("subscribe queued");
        self.wait_subscribed().await;
    }

    /// Waits for a SubAck (after a subscribe, or a reconnect).
    pub async fn wait_subscribed(&mut self) {
        let deadline = tokio::time::Instant::now() + PEER_WAIT;
        while !matches!(self.next("the SubAck", deadline).await, Seen::Subscribed) {}
    }

    /// Waits for the connection to fail.
    pub async fn wait_down(&mut self) {
        let deadline = tokio::time::Instant::now() + PEER_WAIT;
        while !matches!(
            self.next("a connection failure", deadline).await,
            Seen::Down
        ) {}
    }

    /// The first message for which `f` gives Some, skipping the others.
    pub async fn wait_for<T>(&mut self, what: &str, mut f: impl FnMut(&Publish) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + PEER_WAIT;
        loop {
            if let Seen::Message(p) = self.next(what, deadline).await
                && let Some(v) = f(&p)
            {
                return v;
            }
        }
    }

    /// The next message whose topic is `topic`, within `timeout`.
    pub async fn next_on(&mut self, topic: &str, timeout: Duration) -> Vec<u8> {
        self.try_next_on(topic, timeout)
            .await
            .unwrap_or_else(|| panic!("no message on {topic} within {timeout:?}"))
    }

    /// The next message whose topic is `topic`, or None after `timeout`.
    pub async fn try_next_on(&mut self, topic: &str, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(Seen::Message(p))) if p.topic == topic => return Some(p.payload.to_vec()),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Drops what was received so far.
    pub fn drain(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }
}

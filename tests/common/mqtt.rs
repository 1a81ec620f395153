//! MQTT fixtures: the broker the tests run against (rumqttd embedded on an ephemeral
//! port, or the real Mosquitto named by `THERMACORE_TEST_MQTT`), a broker in a child
//! process that can be killed and started again, and a plain rumqttc peer that plays
//! gateways and edge nodes.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use thermacore::drivers::mqtt::broker::EmbeddedBroker;
use tokio::sync::{mpsc, watch};

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

/// A broker in a child process on a fixed port, to kill and start again: Mosquitto
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
    pub fn start() -> ChildBroker {
        let mosquitto = std::env::var(ENV).is_ok_and(|v| !v.is_empty())
            && std::path::Path::new("/usr/sbin/mosquitto").exists();
        let mut b = ChildBroker {
            port: free_port(),
            child: None,
            mosquitto,
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

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker (again) on the same port and waits until it accepts.
    pub fn restart(&mut self) {
        self.kill();
        let child = if self.mosquitto {
            Command::new("/usr/sbin/mosquitto")
                .args(["-p", &self.port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        } else {
            Command::new(env!("CARGO_BIN_EXE_thermacore"))
                .args(["broker", "--listen", &format!("127.0.0.1:{}", self.port)])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        }
        .expect("broker process starts");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "child broker did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain MQTT client: publishes, and collects what its subscriptions receive.
pub struct Peer {
    pub client: AsyncClient,
    rx: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    connected: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Peer {
    pub async fn connect(host: &str, port: u16) -> Peer {
        let id = format!("tc-peer-{}", uuid::Uuid::new_v4().simple());
        let mut o = MqttOptions::new(id, host, port);
        o.set_keep_alive(Duration::from_secs(10))
            .set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
        let (client, mut el) = AsyncClient::new(o, 100);
        let (tx, rx) = mpsc::unbounded_channel();
        let (ctx, connected) = watch::channel(0u64);
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        ctx.send_modify(|n| *n += 1);
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        let mut peer = Peer {
            client,
            rx,
            connected,
            task,
        };
        tokio::time::timeout(Duration::from_secs(10), peer.connected.wait_for(|n| *n > 0))
            .await
            .expect("peer connects within 10 s")
            .expect("peer task");
        peer
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .expect("publish queued");
    }

    pub async fn subscribe(&self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("subscribe queued");
        // Let the SUBACK come back before the test relies on it.
        tokio::time::sleep(Duration::from_millis(200)).await;
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
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some((t, p))) if t == topic => return Some(p),
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

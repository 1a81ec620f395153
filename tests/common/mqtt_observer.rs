//! MQTT test peers: an observer client that subscribes to a filter (again after every
//! reconnect) and reports what it sees, and the embedded broker as a child process
//! (`thermacore broker`) that a test can kill and start again on the same port.

use std::process::Stdio;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The longest any single wait of the MQTT tests takes.
pub const WAIT: Duration = Duration::from_secs(10);

/// What the observer saw.
#[derive(Debug)]
pub enum Seen {
    /// Connected (ConnAck).
    Up,
    /// Its subscription is in place (SubAck).
    Subscribed,
    /// Its connection failed.
    Down,
    Message(Publish),
}

/// A plain rumqttc client subscribed to one filter.
pub struct Observer {
    pub client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Seen>,
    task: JoinHandle<()>,
}

impl Observer {
    /// Connects to `127.0.0.1:port`, subscribes to `filter` with QoS 1 and returns once
    /// the subscription is acknowledged.
    pub async fn connect(port: u16, filter: &str) -> Observer {
        let id = format!("test-observer-{:08x}", rand::random::<u32>());
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(1024 * 1024, 1024 * 1024);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let sub = client.clone();
        let filter = filter.to_string();
        let task = tokio::spawn(async move {
            loop {
                let seen = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = sub.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                        Seen::Up
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => Seen::Subscribed,
                    Ok(Event::Incoming(Packet::Publish(p))) => Seen::Message(p),
                    Ok(_) => continue,
                    Err(_) => {
                        let _ = tx.send(Seen::Down);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                if tx.send(seen).is_err() {
                    return;
                }
            }
        });
        let mut o = Observer { client, rx, task };
        o.wait_subscribed().await;
        o
    }

    async fn next(&mut self, what: &str, deadline: tokio::time::Instant) -> Seen {
        match tokio::time::timeout_at(deadline, self.rx.recv()).await {
            Ok(Some(seen)) => seen,
            Ok(None) => panic!("the observer stopped while waiting for: {what}"),
            Err(_) => panic!("timed out after {WAIT:?} waiting for: {what}"),
        }
    }

    /// Waits for the subscription's SubAck (after a connect or a reconnect).
    pub async fn wait_subscribed(&mut self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !matches!(self.next("the SubAck", deadline).await, Seen::Subscribed) {}
    }

    /// Waits for the connection to fail.
    pub async fn wait_down(&mut self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !matches!(
            self.next("a connection failure", deadline).await,
            Seen::Down
        ) {}
    }

    /// The first message for which `f` gives Some, skipping the others.
    pub async fn wait_for<T>(&mut self, what: &str, mut f: impl FnMut(&Publish) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Seen::Message(p) = self.next(what, deadline).await
                && let Some(v) = f(&p)
            {
                return v;
            }
        }
    }

    /// Publishes with QoS 1.
    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .expect("queue a publish");
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `thermacore broker` running as a child process (killed when dropped).
pub struct BrokerProcess {
    child: Child,
    pub port: u16,
}

impl BrokerProcess {
    /// Starts the broker on `127.0.0.1:port` (0: a free port) and waits for its
    /// `broker listening on` line.
    pub async fn start(port: u16) -> BrokerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_thermacore"))
            .args(["broker", "--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn thermacore broker");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("the broker reports ready in time")
            .expect("read the broker's stdout")
            .expect("the broker printed a line before exiting");
        let addr: std::net::SocketAddr = line
            .strip_prefix("broker listening on ")
            .unwrap_or_else(|| panic!("unexpected broker output: {line}"))
            .parse()
            .expect("an address");
        // Keep reading so that the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        if port != 0 {
            assert_eq!(addr.port(), port);
        }
        BrokerProcess {
            child,
            port: addr.port(),
        }
    }

    /// Kills the broker and waits for it to exit (its port is free again).
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill the broker");
    }
}

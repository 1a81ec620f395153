//! The broker side of the `mqtt` scenario: ThermaCore's embedded rumqttd in a child
//! process of this binary (`mqtt-broker`), so that its CPU is measured apart from
//! ThermaCore's, or an external broker; and the plain subscriber of the ceiling phase,
//! which only counts what the broker delivers.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, SubscribeFilter};
use thermacore::drivers::mqtt::broker::{BrokerLimits, EmbeddedBroker};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::mqtt_pub::{client, now_ms, qos};

/// The child process: a rumqttd on a free loopback port; prints `ready PORT`, serves
/// until its stdin closes.
pub async fn serve() -> anyhow::Result<()> {
    let addr: SocketAddr = "127.0.0.1:0".parse()?;
    let broker = tokio::task::spawn_blocking(move || {
        EmbeddedBroker::start_with(addr, BrokerLimits::default())
    })
    .await??;
    println!("ready {}", broker.port());
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    Ok(())
}

/// The broker of a run.
pub struct Broker {
    pub host: String,
    pub port: u16,
    /// Whose CPU is the broker's (none: not measured).
    pub pid: Option<String>,
    pub kind: &'static str,
    child: Option<Child>,
}

impl Broker {
    /// The embedded rumqttd in a child process.
    pub async fn embedded() -> anyhow::Result<Broker> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("mqtt-broker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).await?;
        let port = line
            .trim()
            .strip_prefix("ready ")
            .ok_or_else(|| anyhow::anyhow!("the broker did not start: {line:?}"))?
            .parse()?;
        Ok(Broker {
            host: "127.0.0.1".into(),
            port,
            pid: child.id().map(|i| i.to_string()),
            kind: "rumqttd",
            child: Some(child),
        })
    }

    /// A broker already running at `host:port` (Mosquitto, …), its process `pid` if
    /// known.
    pub fn external(addr: &str, pid: Option<u32>) -> anyhow::Result<Broker> {
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| anyhow::anyhow!("--broker must be HOST:PORT, not {addr:?}"))?;
        Ok(Broker {
            host: host.to_string(),
            port: port.parse()?,
            pid: pid.map(|p| p.to_string()),
            kind: "external",
            child: None,
        })
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                child.kill().await?;
            }
        }
        Ok(())
    }
}

/// What the counting subscriber has received.
#[derive(Default)]
pub struct SinkCounters {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    /// Sum and largest of publish-to-receipt delays (from the payload's `ts`), in ms.
    pub lag_ms_sum: AtomicU64,
    pub lag_ms_max: AtomicU64,
    pub errors: AtomicU64,
    /// Set before the subscriber disconnects: its closing is no error.
    pub stopping: std::sync::atomic::AtomicBool,
}

/// The `ts` at the start of a publisher's payload (`{"ts":MS,…`).
fn ts_of(payload: &[u8]) -> Option<u64> {
    let rest = payload.strip_prefix(b"{\"ts\":")?;
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// A plain rumqttc subscriber that counts messages, bytes and delays.
pub struct Sink {
    pub counters: Arc<SinkCounters>,
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    /// Connects, subscribes to `filters` at QoS `q` and returns once the broker
    /// acknowledged the subscription.
    pub async fn start(broker: &Broker, filters: &[String], q: u8) -> anyhow::Result<Sink> {
        let id = format!("loadtest-sink-{}", std::process::id());
        let (client, mut el) = client(id, &broker.host, broker.port);
        let counters = Arc::new(SinkCounters::default());
        let (acked_tx, acked_rx) = tokio::sync::oneshot::channel::<()>();
        let c = counters.clone();
        let task = tokio::spawn(async move {
            let mut acked = Some(acked_tx);
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        c.messages.fetch_add(1, Ordering::Relaxed);
                        c.bytes.fetch_add(p.payload.len() as u64, Ordering::Relaxed);
                        if let Some(ts) = ts_of(&p.payload) {
                            let lag = now_ms().saturating_sub(ts);
                            c.lag_ms_sum.fetch_add(lag, Ordering::Relaxed);
                            c.lag_ms_max.fetch_max(lag, Ordering::Relaxed);
                        }
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        if let Some(tx) = acked.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(_) if c.stopping.load(Ordering::Relaxed) => return,
                    Err(e) => {
                        if c.errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("counting subscriber: {e}");
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        let many: Vec<SubscribeFilter> = filters
            .iter()
            .map(|f| SubscribeFilter::new(f.clone(), qos(q)))
            .collect();
        client.subscribe_many(many).await?;
        tokio::time::timeout(Duration::from_secs(30), acked_rx)
            .await
            .map_err(|_| anyhow::anyhow!("no SUBACK from the broker within 30 s"))??;
        Ok(Sink {
            counters,
            client,
            task,
        })
    }

    pub async fn stop(self) {
        self.counters.stopping.store(true, Ordering::Relaxed);
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_is_read_from_the_payload_head() {
        assert_eq!(
            ts_of(b"{\"ts\":1712345678901,\"t0\":1.5}"),
            Some(1_712_345_678_901)
        );
        assert_eq!(ts_of(b"{\"t0\":1}"), None);
        assert_eq!(ts_of(b"{\"ts\":12"), None);
    }
}

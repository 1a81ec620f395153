//! The gateways of the `mqtt` scenario, run in a child process of this binary
//! (`mqtt-publishers`) so that their CPU is measured apart from the broker's and
//! ThermaCore's: `devices` gateways, each publishing one JSON object of `tags` values
//! (and its time, `ts`, in milliseconds) to `PREFIX/gw-N/data` `rate` times a second,
//! spread over rumqttc connections of `per_client` gateways each.
//!
//! The child prints `ready` once every connection is up, then publishes until its
//! stdin closes; each `stats` line it reads is answered with
//! `stats PUBLISHED BYTES ERRORS`: the publishes the event loops wrote to the broker,
//! their payload bytes and the connection errors so far.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::child::ChildPeer;
use rumqttc::{AsyncClient, Event, EventLoop, Incoming, MqttOptions, Outgoing, QoS};
use tokio::io::{AsyncBufReadExt, BufReader};

/// How the publishers are set up (the child's flags).
#[derive(Debug, Clone)]
pub struct Load {
    pub host: String,
    pub port: u16,
    /// Topics are `PREFIX/gw-N/data`.
    pub prefix: String,
    pub devices: usize,
    pub tags: usize,
    /// Messages per second per gateway.
    pub rate: f64,
    pub qos: u8,
    /// Gateways sharing one connection.
    pub per_client: usize,
}

pub fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// The topic gateway `d` publishes to.
pub fn topic(prefix: &str, d: usize) -> String {
    format!("{prefix}/gw-{d}/data")
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A load-test connection: large packets and queues, a session that keeps nothing,
/// and no Nagle delay (which would add tens of ms to every figure of lag).
pub fn client(id: String, host: &str, port: u16) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(id, host, port);
    o.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_max_packet_size(1024 * 1024, 1024 * 1024)
        .set_request_channel_capacity(10_000)
        .set_inflight(1_000);
    let (client, mut el) = AsyncClient::new(o, 10_000);
    el.network_options.set_tcp_nodelay(true);
    (client, el)
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    /// Set before the connections are closed: their closing is no error.
    stopping: std::sync::atomic::AtomicBool,
}

/// One gateway's message `n`: `{"ts":MS,"t0":V,…}`.
pub fn payload(tags: usize, d: usize, n: u64) -> String {
    let mut s = String::with_capacity(24 + tags * 14);
    let _ = write!(s, "{{\"ts\":{}", now_ms());
    for i in 0..tags {
        let step = (n + (d * 31 + i * 7) as u64) % 400;
        let _ = write!(s, ",\"t{i}\":{:.2}", 40.0 + step as f64 * 0.05);
    }
    s.push('}');
    s
}

/// Drives one connection: counts what it writes, retries after errors.
async fn drive(mut el: EventLoop, counters: Arc<Counters>, up: tokio::sync::mpsc::Sender<()>) {
    let mut announced = false;
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) if !announced => {
                announced = true;
                let _ = up.send(()).await;
            }
            Ok(Event::Outgoing(Outgoing::Publish(_))) => {
                counters.published.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(_) if counters.stopping.load(Ordering::Relaxed) => return,
            Err(e) => {
                if counters.errors.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!("publisher connection error: {e}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// One gateway: a message every `1 / rate` seconds, its first at `offset`.
async fn gateway(client: AsyncClient, load: Arc<Load>, d: usize, counters: Arc<Counters>) {
    let period = Duration::from_secs_f64(1.0 / load.rate);
    let offset = period.mul_f64(d as f64 / load.devices as f64);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let topic = topic(&load.prefix, d);
    let qos = qos(load.qos);
    for n in 0u64.. {
        tick.tick().await;
        let body = payload(load.tags, d, n);
        let len = body.len() as u64;
        if client
            .publish(topic.as_str(), qos, false, body)
            .await
            .is_err()
        {
            return;
        }
        counters.bytes.fetch_add(len, Ordering::Relaxed);
    }
}

/// The child process.
pub async fn serve(load: Load) -> anyhow::Result<()> {
    anyhow::ensure!(load.devices > 0 && load.per_client > 0, "no gateways");
    anyhow::ensure!(load.rate > 0.0, "--rate must be > 0");
    let load = Arc::new(load);
    let counters = Arc::new(Counters::default());
    let clients = load.devices.div_ceil(load.per_client);
    let (up_tx, mut up_rx) = tokio::sync::mpsc::channel(clients);
    let mut handles = Vec::with_capacity(clients);
    for c in 0..clients {
        let id = format!("loadtest-pub-{}-{c}", std::process::id());
        let (client, el) = client(id, &load.host, load.port);
        tokio::spawn(drive(el, counters.clone(), up_tx.clone()));
        handles.push(client);
    }
    for _ in 0..clients {
        tokio::time::timeout(Duration::from_secs(30), up_rx.recv())
            .await
            .map_err(|_| anyhow::anyhow!("publishers not connected after 30 s"))?;
    }
    for d in 0..load.devices {
        let client = handles[d / load.per_client].clone();
        tokio::spawn(gateway(client, load.clone(), d, counters.clone()));
    }
    println!("ready");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        if line.trim() == "stats" {
            println!(
                "stats {} {} {}",
                counters.published.load(Ordering::Relaxed),
                counters.bytes.load(Ordering::Relaxed),
                counters.errors.load(Ordering::Relaxed)
            );
        }
    }
    counters.stopping.store(true, Ordering::Relaxed);
    for c in handles {
        let _ = c.try_disconnect();
    }
    Ok(())
}

/// What the publishers had done at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct PubStats {
    pub published: u64,
    pub bytes: u64,
    pub errors: u64,
}

/// The running child.
pub struct Publishers {
    peer: ChildPeer,
    pub pid: String,
}

impl Publishers {
    /// Starts the child (this same binary, `mqtt-publishers`) and waits until every
    /// connection is up; it publishes from then on.
    pub async fn spawn(load: &Load) -> anyhow::Result<Publishers> {
        let args = [
            "mqtt-publishers".to_string(),
            "--host".into(),
            load.host.clone(),
            "--port".into(),
            load.port.to_string(),
            "--prefix".into(),
            load.prefix.clone(),
            "--devices".into(),
            load.devices.to_string(),
            "--tags".into(),
            load.tags.to_string(),
            "--rate".into(),
            load.rate.to_string(),
            "--qos".into(),
            load.qos.to_string(),
            "--per-client".into(),
            load.per_client.to_string(),
        ];
        let (peer, line) = ChildPeer::spawn("publishers", &args).await?;
        anyhow::ensure!(line == "ready", "publishers did not start: {line:?}");
        let pid = peer.pid.clone();
        Ok(Publishers { peer, pid })
    }

    pub async fn stats(&mut self) -> anyhow::Result<PubStats> {
        match self.peer.stats().await?[..] {
            [published, bytes, errors] => Ok(PubStats {
                published,
                bytes,
                errors,
            }),
            ref other => anyhow::bail!("publishers answered {other:?}"),
        }
    }

    /// Closes the child's stdin (it disconnects and exits), or kills it after 10 s.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.peer.stop(Duration::from_secs(10)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_json_with_every_tag() {
        let p = payload(3, 1, 5);
        let v: serde_json::Value = serde_json::from_str(&p).expect("json");
        assert!(v["ts"].as_u64().is_some_and(|t| t > 1_600_000_000_000));
        for i in 0..3 {
            assert!(v[format!("t{i}")].as_f64().is_some(), "{p}");
        }
    }
}

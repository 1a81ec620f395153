//! `testDeviceConnection`: a candidate device configuration tried without saving
//! anything. The endpoint is reached over TCP first (reachable), then the device's own
//! driver opens its session as a running device would (connected, and with
//! credentials configured, authenticated), reads the given tags once (or, for a
//! protocol that pushes, waits for them) and closes again. It never shares a broker
//! session or client id with a running device.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::domain::{
    DataType, DeviceId, OpenedSecurity, Quality, Sample, Tag, TagId, TagSpec, TenantId, Timestamp,
};
use crate::drivers::{self, DriverConfig, DriverSink, LinkEvent};

/// The shortest and longest time a test may take.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);
/// The wait before a read is tried again on a link still opening.
const RETRY: Duration = Duration::from_millis(50);

/// What to try.
#[derive(Debug, Clone)]
pub struct Probe {
    pub driver: DriverConfig,
    pub security: OpenedSecurity,
    pub poll_ms: u64,
    /// (name, address, data type) of the tags to read.
    pub tags: Vec<(String, String, DataType)>,
    pub timeout: Duration,
}

/// One tag as the test read it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReading {
    pub tag: String,
    /// None: nothing arrived for it.
    pub sample: Option<Sample>,
}

/// What the test found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeReport {
    pub reachable: bool,
    pub connected: bool,
    pub authenticated: Option<bool>,
    pub latency: Option<Duration>,
    pub readings: Vec<ProbeReading>,
    pub error: Option<String>,
}

enum Event {
    Samples(Vec<Sample>),
    Link(LinkEvent),
}

/// Runs the test (see the module documentation) within `probe.timeout`.
pub async fn run(mut probe: Probe) -> ProbeReport {
    let started = Instant::now();
    let deadline = started + probe.timeout.clamp(MIN_TIMEOUT, MAX_TIMEOUT);
    let left = || deadline.saturating_duration_since(Instant::now());
    let mut report = ProbeReport::default();
    let credentials = probe.security.credentials.is_some()
        || matches!(&probe.driver, DriverConfig::Opcua(c) if c.identity == drivers::opcua::Identity::X509);

    if let Some(endpoint) = probe.driver.endpoint() {
        match tokio::time::timeout(left(), tokio::net::TcpStream::connect(endpoint.as_str())).await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                report.error = Some(format!("{endpoint} cannot be reached: {e}"));
                return report;
            }
            Err(_) => {
                report.error = Some(format!(
                    "{endpoint} did not accept a TCP connection in time"
                ));
                return report;
            }
        }
    }
    report.reachable = true;

    // A session of its own: never the client id of a running device.
    if let DriverConfig::Mqtt(c) = &mut probe.driver {
        c.client_id = c
            .client_id
            .take()
            .map(|id| format!("{id}-test-{:08x}", rand::random::<u32>()));
    }
    let tags: Vec<Tag> = probe
        .tags
        .iter()
        .enumerate()
        .map(|(i, (name, address, data_type))| Tag {
            id: TagId(-(i as i64) - 1),
            tenant: TenantId(0),
            device: DeviceId(0),
            spec: TagSpec {
                name: name.clone(),
                unit: None,
                address: address.clone(),
                data_type: *data_type,
                scale: 1.0,
                offset: 0.0,
                eng_unit: None,
                deadband: 0.0,
                writable: false,
            },
        })
        .collect();
    let mut driver = drivers::build(&probe.driver, probe.security.clone());
    let plan = match driver.plan(&tags, probe.poll_ms) {
        Ok(p) => p,
        Err(e) => {
            report.error = Some(format!("the tags cannot be read this way: {e}"));
            return report;
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let samples_tx = tx.clone();
    let sink = DriverSink {
        tenant: "connection-test".into(),
        device: "connection-test".into(),
        scope: rand::random(),
        samples: Arc::new(move |s| {
            let _ = samples_tx.send(Event::Samples(s));
        }),
        link: Arc::new(move |e| {
            let _ = tx.send(Event::Link(e));
        }),
        lost: Arc::new(|_, _| {}),
        discovered: Arc::new(|_| {}),
    };
    let mut received: HashMap<TagId, Sample> = HashMap::new();
    let opened = tokio::time::timeout(left(), driver.connect(sink)).await;
    match opened {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            report.error = Some(format!("the session did not open: {e}"));
            report.authenticated =
                (credentials && looks_like_auth(&e.to_string())).then_some(false);
            driver.disconnect().await;
            return report;
        }
        Err(_) => {
            report.error = Some("the session did not open in time".into());
            driver.disconnect().await;
            return report;
        }
    }
    let polled = !plan.groups.is_empty();
    if polled && !tags.is_empty() {
        // A polled protocol opens its session for the first request: read.
        for group in 0..plan.groups.len() {
            loop {
                let mut out = Vec::new();
                let read = driver.read(group, Timestamp::now(), &mut out);
                match tokio::time::timeout(left(), read).await {
                    Ok(Ok(_)) => {
                        if !report.connected {
                            report.connected = true;
                            report.latency = Some(started.elapsed());
                        }
                        received.extend(out.into_iter().map(|s| (s.tag, s)));
                    }
                    // The link is still being opened (rodbus answers "no connection"
                    // until it is): ask again while there is time.
                    Ok(Err(drivers::Error::Disconnected(_))) if left() > RETRY => {
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                    Ok(Err(e)) => report.error = Some(format!("the read failed: {e}")),
                    Err(_) => report.error = Some("the read did not answer in time".into()),
                }
                break;
            }
        }
    } else if driver.manages_link() {
        // The protocol crate keeps the link and says when it is up.
        let mut failures = 0u32;
        while !report.connected {
            match tokio::time::timeout(left(), rx.recv()).await {
                Ok(Some(Event::Link(LinkEvent::Connected | LinkEvent::Answered))) => {
                    report.connected = true;
                }
                Ok(Some(Event::Link(
                    LinkEvent::ConnectFailed { .. } | LinkEvent::Disconnected { .. },
                ))) => failures += 1,
                Ok(Some(Event::Link(LinkEvent::Silent { error }))) => {
                    report.error = Some(format!("the device does not answer: {error}"));
                }
                Ok(Some(Event::Samples(s))) => {
                    report.connected = true;
                    received.extend(s.into_iter().map(|s| (s.tag, s)));
                }
                Ok(Some(Event::Link(_))) => {}
                Ok(None) | Err(_) => break,
            }
        }
        if report.connected {
            report.latency = Some(started.elapsed());
        } else if report.error.is_none() {
            report.error = Some(match failures {
                0 if polled => {
                    "no tag to read: this protocol opens its session for a request, give a tag"
                        .into()
                }
                0 => "the session did not come up in time".into(),
                n => format!(
                    "the connection was refused or lost {n} time(s) (the server log says why)"
                ),
            });
        }
    } else {
        report.connected = true;
        report.latency = Some(started.elapsed());
    }
    if report.connected {
        report.authenticated = credentials.then_some(true);
        // Pushed values: wait for every tag (or the time).
        if !polled {
            while received.len() < tags.len() {
                match tokio::time::timeout(left(), rx.recv()).await {
                    Ok(Some(Event::Samples(s))) => {
                        received.extend(s.into_iter().map(|s| (s.tag, s)));
                    }
                    Ok(Some(Event::Link(_))) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
        let missing = tags
            .iter()
            .filter(|t| !received.contains_key(&t.id))
            .count();
        let bad = received
            .values()
            .filter(|s| matches!(s.quality, Quality::Bad(_)))
            .count();
        if report.error.is_none() && missing + bad > 0 {
            report.error = Some(format!(
                "{missing} tag(s) without a value in time, {bad} tag(s) read BAD"
            ));
        }
    }
    driver.disconnect().await;
    report.readings = readings(&tags, &received);
    report
}

fn readings(tags: &[Tag], received: &HashMap<TagId, Sample>) -> Vec<ProbeReading> {
    tags.iter()
        .map(|t| ProbeReading {
            tag: t.spec.name.clone(),
            sample: received.get(&t.id).cloned(),
        })
        .collect()
}

/// Whether a session error says the credentials were refused.
fn looks_like_auth(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    ["auth", "password", "identity", "access denied", "user"]
        .iter()
        .any(|w| e.contains(w))
}

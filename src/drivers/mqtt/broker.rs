//! An embedded MQTT broker (rumqttd) for the demo and the tests: MQTT 3.1.1 on one TCP
//! address, no TLS, limits sized for load tests, started and checked ready in one call.
//!
//! rumqttd's `Broker::start()` blocks for ever, makes its own threads and runtimes, gives
//! no readiness signal and has no graceful shutdown. So the broker runs on a std thread
//! of its own, [`EmbeddedBroker::start`] waits until an MQTT handshake succeeds, and the
//! broker lives until the process exits (dropping the handle does not stop it).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long [`EmbeddedBroker::start`] waits for the broker to accept MQTT connections.
pub const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the embedded broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("finding a free loopback port: {0}")]
    FreePort(#[source] std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the broker thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the broker on {addr} stopped: {reason}")]
    Exited { addr: SocketAddr, reason: String },
    #[error("the broker on {addr} did not accept MQTT connections within {waited:?}")]
    NotReady { addr: SocketAddr, waited: Duration },
}

/// The broker's limits. The defaults suit a load test of 10k+ messages/s from up to
/// 10,000 clients.
///
/// rumqttd keeps recent messages in memory per subscribed filter: each filter holds up
/// to `(segment_count + 1) × segment_size` bytes, and a subscriber that falls further
/// behind than that loses the oldest messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerLimits {
    /// Concurrent client connections (the router preallocates slots for them).
    pub max_connections: usize,
    /// Largest accepted PUBLISH payload, in bytes.
    pub max_payload_size: usize,
    /// Packets read from one connection before the router is handed the batch.
    pub max_inflight_count: usize,
    /// QoS 0 messages the router forwards to one subscriber per read.
    pub max_outgoing_packet_count: u64,
    /// Bytes of one in-memory log segment per filter.
    pub segment_size: usize,
    /// In-memory log segments kept per filter besides the active one.
    pub segment_count: usize,
    /// How long a new TCP connection may take to send its CONNECT.
    pub connection_timeout_ms: u16,
}

impl Default for BrokerLimits {
    fn default() -> Self {
        BrokerLimits {
            max_connections: 10_000,
            max_payload_size: 1024 * 1024,
            max_inflight_count: 500,
            max_outgoing_packet_count: 1_000,
            segment_size: 4 * 1024 * 1024,
            segment_count: 4,
            connection_timeout_ms: 60_000,
        }
    }
}

/// Who may connect: TLS with a server certificate (PEM files), and usernames with their
/// passwords (none: anyone). For the tests of the driver's secured links.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerSecurity {
    /// Server certificate chain and private key, PEM paths.
    pub tls: Option<(String, String)>,
    pub users: HashMap<String, String>,
}

/// A running rumqttd broker on a std thread.
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    /// The thread running `Broker::start()`; it only ends if the broker fails.
    thread: JoinHandle<()>,
}

impl EmbeddedBroker {
    /// Starts a broker on `addr` with the default limits (port 0: a free loopback port)
    /// and returns once it accepts MQTT connections.
    pub fn start(addr: SocketAddr) -> Result<EmbeddedBroker, BrokerError> {
        Self::start_with(addr, BrokerLimits::default())
    }

    /// [`start`](Self::start) with explicit limits. Blocks the calling thread for at
    /// most [`READY_TIMEOUT`] (usually a few milliseconds).
    pub fn start_with(
        addr: SocketAddr,
        limits: BrokerLimits,
    ) -> Result<EmbeddedBroker, BrokerError> {
        Self::start_secured(addr, limits, BrokerSecurity::default())
    }

    /// [`start_with`](Self::start_with) with TLS and/or password authentication.
    pub fn start_secured(
        addr: SocketAddr,
        limits: BrokerLimits,
        security: BrokerSecurity,
    ) -> Result<EmbeddedBroker, BrokerError> {
        if addr.port() != 0 {
            return Self::start_on(addr, limits, security);
        }
        // A free port is found by binding and releasing it: another process may take
        // it before the broker binds. Then another port is tried.
        let mut attempts = 0;
        loop {
            let free = free_loopback_port(addr.ip())?;
            match Self::start_on(free, limits.clone(), security.clone()) {
                Err(BrokerError::Bind { .. } | BrokerError::Exited { .. }) if attempts < 10 => {
                    attempts += 1;
                }
                other => return other,
            }
        }
    }

    fn start_on(
        addr: SocketAddr,
        limits: BrokerLimits,
        security: BrokerSecurity,
    ) -> Result<EmbeddedBroker, BrokerError> {
        // A broker behind TLS or passwords is only reached, not greeted: rumqttd closes
        // an anonymous CONNECT to a password-protected listener without a CONNACK.
        let tcp_only = security.tls.is_some() || !security.users.is_empty();
        check_bindable(addr)?;
        let config = rumqttd_config(addr, &limits, security);
        let (tx, rx) = mpsc::channel::<String>();
        let thread = std::thread::Builder::new()
            .name(format!("mqtt-broker-{}", addr.port()))
            .spawn(move || {
                let mut broker = rumqttd::Broker::new(config);
                // Returns only when its servers have stopped (a failed bind, for one).
                let reason = match broker.start() {
                    Ok(()) => "its listener stopped (see the rumqttd log)".to_string(),
                    Err(e) => e.to_string(),
                };
                let _ = tx.send(reason);
            })
            .map_err(BrokerError::Thread)?;
        let broker = EmbeddedBroker { addr, thread };
        broker.wait_ready(&rx, READY_TIMEOUT, tcp_only)?;
        tracing::info!(%addr, "embedded MQTT broker ready");
        Ok(broker)
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// False once the broker's thread has ended (its listener failed).
    pub fn is_running(&self) -> bool {
        !self.thread.is_finished()
    }

    /// Waits for a CONNACK (for a TLS listener, which this check does not speak, for
    /// the TCP listener).
    fn wait_ready(
        &self,
        exited: &mpsc::Receiver<String>,
        timeout: Duration,
        tcp_only: bool,
    ) -> Result<(), BrokerError> {
        let deadline = Instant::now() + timeout;
        let mut attempt = 0u32;
        loop {
            let stopped = |reason: String| BrokerError::Exited {
                addr: self.addr,
                reason,
            };
            if let Ok(reason) = exited.try_recv() {
                return Err(stopped(reason));
            }
            if self.thread.is_finished() {
                return Err(stopped("its thread panicked (see the log)".into()));
            }
            attempt += 1;
            let ready = if tcp_only {
                TcpStream::connect_timeout(&self.connect_addr(), Duration::from_millis(500))
                    .map(drop)
            } else {
                mqtt_handshake(self.connect_addr(), attempt)
            };
            if ready.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BrokerError::NotReady {
                    addr: self.addr,
                    waited: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Where to connect to reach a broker listening on an unspecified address.
    fn connect_addr(&self) -> SocketAddr {
        match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), self.addr.port())
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), self.addr.port())
            }
            _ => self.addr,
        }
    }
}

/// A free port on loopback (or on `ip` when it is a specific address): bound, read and
/// released, so another process could take it before the broker binds it.
fn free_loopback_port(ip: IpAddr) -> Result<SocketAddr, BrokerError> {
    let ip = if ip.is_unspecified() {
        Ipv4Addr::LOCALHOST.into()
    } else {
        ip
    };
    let listener = std::net::TcpListener::bind((ip, 0)).map_err(BrokerError::FreePort)?;
    listener.local_addr().map_err(BrokerError::FreePort)
}

/// Fails when something already listens on `addr`: the handshake would otherwise reach
/// that listener. SO_REUSEADDR as rumqttd (tokio) binds, so a port left in TIME_WAIT by
/// a killed broker is still usable.
fn check_bindable(addr: SocketAddr) -> Result<(), BrokerError> {
    let bind = |addr: SocketAddr| -> std::io::Result<()> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)
    };
    bind(addr).map_err(|source| BrokerError::Bind { addr, source })
}

fn rumqttd_config(
    addr: SocketAddr,
    limits: &BrokerLimits,
    security: BrokerSecurity,
) -> rumqttd::Config {
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: limits.connection_timeout_ms,
        max_payload_size: limits.max_payload_size,
        max_inflight_count: limits.max_inflight_count,
        auth: (!security.users.is_empty()).then_some(security.users),
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: format!("v4-{}", addr.port()),
        listen: addr,
        tls: security
            .tls
            .map(|(certpath, keypath)| rumqttd::TlsConfig::Rustls {
                capath: None,
                certpath,
                keypath,
            }),
        // rumqttd sleeps this long after every accept: 0 lets 10k clients in at once.
        next_connection_delay_ms: 0,
        connections,
    };
    rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: limits.max_connections,
            max_outgoing_packet_count: limits.max_outgoing_packet_count,
            max_segment_size: limits.segment_size.max(1024),
            max_segment_count: limits.segment_count.max(1),
            ..Default::default()
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        // No v5, websocket, cluster, bridge, console, prometheus or metrics.
        ..Default::default()
    }
}

/// One MQTT 3.1.1 CONNECT / CONNACK exchange: the broker's router is up,
/// not just its TCP listener.
fn mqtt_handshake(addr: SocketAddr, attempt: u32) -> std::io::Result<()> {
    let timeout = Duration::from_millis(500);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let client_id = format!("thermacore-ready-{}-{attempt}", std::process::id());
    let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x0a];
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    stream.write_all(&packet)?;
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack)?;
    // Any return code: a broker that wants a password refuses this CONNECT, and is up.
    if connack[..3] != [0x20, 0x02, 0x00] {
        return Err(std::io::Error::other(format!(
            "unexpected CONNACK {connack:02x?}"
        )));
    }
    // Closing without DISCONNECT: rumqttd logs a DISCONNECT as an error ("router-drop"),
    // a closed socket as "disconnected" at info.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_one_plain_v4_server_and_nothing_else() {
        let addr: SocketAddr = "127.0.0.1:18830".parse().expect("addr");
        let c = rumqttd_config(addr, &BrokerLimits::default(), BrokerSecurity::default());
        let v4 = c.v4.as_ref().expect("v4");
        assert_eq!(v4.len(), 1);
        let s = v4.values().next().expect("server");
        assert_eq!(s.listen, addr);
        assert!(s.tls.is_none());
        assert_eq!(s.connections.max_payload_size, 1024 * 1024);
        assert_eq!(c.router.max_connections, 10_000);
        assert!(c.v5.is_none() && c.ws.is_none());
        assert!(c.console.is_none() && c.prometheus.is_none() && c.metrics.is_none());
    }

    #[test]
    fn a_taken_port_is_refused() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        match EmbeddedBroker::start(addr) {
            Err(BrokerError::Bind { addr: a, .. }) => assert_eq!(a, addr),
            other => panic!("expected a bind error, got {other:?}"),
        }
    }
}

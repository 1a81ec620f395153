//! A loopback TCP forwarder that can be cut and restored, to make a database "go
//! away" under a running store and come back on the same address.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Forwards every connection accepted on [`addr`](TcpProxy::addr) to `upstream`.
pub struct TcpProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    /// The accept loop while the proxy is up; `None` while it is cut.
    acceptor: Mutex<Option<JoinHandle<()>>>,
    /// Live forwarded connections, killed by `cut`.
    connections: Arc<Mutex<JoinSet<()>>>,
}

impl TcpProxy {
    /// Binds `127.0.0.1:0` and starts forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)));
        let addr = listener.local_addr().expect("proxy address");
        let proxy = TcpProxy {
            addr,
            upstream,
            acceptor: Mutex::new(None),
            connections: Arc::new(Mutex::new(JoinSet::new())),
        };
        proxy.spawn_acceptor(listener);
        proxy
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting (the port is closed: new connections are refused) and kills
    /// every live forwarded connection.
    pub async fn cut(&self) {
        let acceptor = self.acceptor.lock().expect("proxy lock").take();
        if let Some(acceptor) = acceptor {
            acceptor.abort();
            // Resolves once the accept loop, and with it the listener, is dropped.
            let _ = acceptor.await;
        }
        let mut live = std::mem::take(&mut *self.connections.lock().expect("proxy lock"));
        live.shutdown().await;
    }

    /// Accepts again, on the same port.
    pub async fn restore(&self) {
        self.cut().await;
        self.spawn_acceptor(listen(self.addr));
    }

    fn spawn_acceptor(&self, listener: TcpListener) {
        let upstream = self.upstream;
        let connections = Arc::clone(&self.connections);
        let acceptor = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                let mut live = connections.lock().expect("proxy lock");
                // Reap finished forwarders so the set does not grow without bound.
                while live.try_join_next().is_some() {}
                live.spawn(forward(client, upstream));
            }
        });
        *self.acceptor.lock().expect("proxy lock") = Some(acceptor);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Ok(mut acceptor) = self.acceptor.lock()
            && let Some(acceptor) = acceptor.take()
        {
            acceptor.abort();
        }
        // The JoinSet aborts the live connections when the last reference goes.
    }
}

/// A listening socket with SO_REUSEADDR, so `restore` can rebind the port right after
/// `cut` closed connections on it.
fn listen(addr: SocketAddr) -> TcpListener {
    let socket = TcpSocket::new_v4().expect("proxy socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket.bind(addr).expect("bind proxy address");
    socket.listen(128).expect("listen")
}

async fn forward(mut client: TcpStream, upstream: SocketAddr) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

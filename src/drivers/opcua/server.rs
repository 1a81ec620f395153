//! An embedded OPC UA server (async-opcua) standing in for a field device: the demo's
//! pump station, and the peer of the OPC UA driver's integration and load tests. One
//! namespace of scalar variables in folders under Objects, identities (anonymous,
//! username/password, X.509), the security endpoints asked for, operation limits, and
//! calls to change values, statuses and the node set while clients are connected.

mod build;
mod nodes;
mod pki;
mod spec;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use opcua::server::{ServerHandle, SubscriptionCache};
use opcua::types::{DataValue, NodeId, StatusCode, Variant};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

pub use nodes::data_type_of;
pub use pki::{KeypairSpec, generate_keypair, trust_certificate};
pub use spec::{ServerLimits, ServerSpec, VariableSpec};

use nodes::{DeviceNodeManager, Update};

/// Period of the nudges that let held-back samples out (see `nodes`).
const NUDGE_EVERY: Duration = Duration::from_millis(100);
/// How long [`RunningServer::stop`] lets the connections close before it drops them.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Why a server does not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("PKI directory {}: {source}", path.display())]
    Pki {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate {}: {reason}", path.display())]
    Certificate { path: PathBuf, reason: String },
    #[error("variable `{id}`: {reason}")]
    Variable { id: String, reason: String },
    #[error("OPC UA server configuration: {0}")]
    Config(String),
}

/// Listens on `addr` with TCP_NODELAY, which accepted connections inherit (Linux): the
/// library leaves Nagle's algorithm on, and a small response (a Write's) that follows
/// one not yet acknowledged would wait for the client's delayed ACK.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted server takes its port back at once.
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// A running server. Dropping it cancels the server; [`RunningServer::stop`] also waits
/// until the port is free again.
pub struct RunningServer {
    addr: SocketAddr,
    pki_dir: PathBuf,
    handle: ServerHandle,
    nodes: Arc<DeviceNodeManager>,
    task: JoinHandle<Result<(), String>>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("addr", &self.addr)
            .field("pki_dir", &self.pki_dir)
            .finish_non_exhaustive()
    }
}

impl RunningServer {
    /// Prepares the PKI (making the server's keypair if it has none that fits), binds
    /// `spec.listen` and starts serving: clients can connect as soon as this returns.
    pub async fn start(spec: ServerSpec) -> Result<RunningServer, ServerError> {
        spec::check_variables(&spec.variables)?;
        let host = build::connect_ip(spec.listen.ip());
        let keypair = KeypairSpec {
            name: spec.application_name.clone(),
            application_uri: spec.application_uri.clone(),
            hosts: vec![host.to_string()],
        };
        pki::prepare(&spec.pki_dir, keypair, host).await?;
        let listener = bind(spec.listen).map_err(|source| ServerError::Bind {
            addr: spec.listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: spec.listen,
            source,
        })?;
        let addr = SocketAddr::new(host, addr.port());
        let (server, handle) = build::builder(&spec, addr)?
            .build()
            .map_err(ServerError::Config)?;
        let nodes = handle
            .node_managers()
            .get_of_type::<DeviceNodeManager>()
            .ok_or_else(|| ServerError::Config("the device node manager is missing".into()))?;
        let task = tokio::spawn(server.run_with(listener));
        let token = handle.token().clone();
        let (manager, subscriptions) = (nodes.clone(), handle.subscriptions().clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(NUDGE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tick.tick() => nodes::nudge(&manager, &subscriptions),
                }
            }
        });
        let running = RunningServer {
            addr,
            pki_dir: spec.pki_dir,
            handle,
            nodes,
            task,
        };
        tracing::info!(endpoint = %running.endpoint_url(), "OPC UA server listening");
        Ok(running)
    }

    /// The address clients connect to (the bound port; loopback for a wildcard listen).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `opc.tcp://127.0.0.1:PORT/`.
    pub fn endpoint_url(&self) -> String {
        format!("opc.tcp://{}/", self.addr)
    }

    pub fn namespace_index(&self) -> u16 {
        self.nodes.inner().namespace_index()
    }

    /// `ns=<namespace index>;s=<id>`.
    pub fn node_id(&self, id: &str) -> NodeId {
        NodeId::new(self.namespace_index(), id.to_string())
    }

    /// Sets a value (Good, source and server timestamps now) and notifies subscriptions.
    /// The value is stored as given: the type check is for clients' writes.
    pub fn set_value(&self, id: &str, value: Variant) {
        self.updater().set_value(id, value);
    }

    /// [`set_value`](Self::set_value) for a batch, under one lock.
    pub fn set_values(&self, values: &[(&str, Variant)]) {
        self.updater().set_values(values);
    }

    /// Keeps the value and gives it `status` (Bad…, Uncertain…), timestamped now.
    pub fn set_status(&self, id: &str, status: StatusCode) {
        self.updater().set_status(id, status);
    }

    /// The current value, status and timestamps of `id`; `None` when there is no such
    /// variable.
    pub fn value(&self, id: &str) -> Option<DataValue> {
        nodes::read(&self.nodes, id)
    }

    /// A handle that sets and reads values from other tasks (a simulation, a load
    /// generator) while the server is owned elsewhere.
    pub fn updater(&self) -> Updater {
        Updater {
            nodes: self.nodes.clone(),
            subscriptions: self.handle.subscriptions().clone(),
        }
    }

    /// Every value a client writes successfully, from now on, as (id, value).
    pub fn writes(&self) -> broadcast::Receiver<(String, Variant)> {
        self.nodes.inner().subscribe_writes()
    }

    /// Adds variables while running; one that cannot be added (a duplicate id, an
    /// unsupported type) is skipped with a warning.
    pub fn add_variables(&self, vars: Vec<VariableSpec>) {
        let ns = self.namespace_index();
        let mut space = self.nodes.address_space().write();
        for v in &vars {
            if let Err(reason) = nodes::insert(&mut space, ns, v) {
                tracing::warn!(id = %v.id, "OPC UA server: variable not added: {reason}");
            }
        }
    }

    /// Removes a variable: from now on reading it answers `BadNodeIdUnknown`, and its
    /// monitored items get one notification with that status.
    pub fn remove_variable(&self, id: &str) {
        if !nodes::remove(&self.nodes, self.handle.subscriptions(), id) {
            tracing::debug!(id, "OPC UA server: no such variable to remove");
        }
    }

    /// The server's own certificate (DER), for clients to trust.
    pub fn certificate_path(&self) -> PathBuf {
        self.pki_dir.join(pki::OWN_CERT)
    }

    /// The folder of trusted client certificates. A certificate is found there only
    /// under the store's name for it: use [`trust_client_certificate`](Self::trust_client_certificate).
    pub fn trusted_dir(&self) -> PathBuf {
        self.pki_dir.join(pki::TRUSTED)
    }

    /// Trusts a client's application certificate (DER) from now on.
    pub fn trust_client_certificate(&self, cert: &std::path::Path) -> Result<PathBuf, ServerError> {
        trust_certificate(&self.pki_dir, cert)
    }

    /// Cancels the server and waits until it has closed its connections and released
    /// its port (a new server may bind the same port right after).
    pub async fn stop(mut self) {
        self.handle.cancel();
        match tokio::time::timeout(STOP_GRACE, &mut self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!("OPC UA server ended with an error: {e}"),
            Ok(Err(e)) => tracing::warn!("OPC UA server task failed: {e}"),
            Err(_) => {
                tracing::warn!("OPC UA server did not stop in {STOP_GRACE:?}: dropping it");
                self.task.abort();
                // Aborted: the task's future (and its listener) is dropped.
                let _ = (&mut self.task).await;
            }
        }
    }
}

/// Sets and reads the values of a [`RunningServer`]; cheap to clone. It outlives a
/// stopped server harmlessly (its updates reach no client).
#[derive(Clone)]
pub struct Updater {
    nodes: Arc<DeviceNodeManager>,
    subscriptions: Arc<SubscriptionCache>,
}

impl std::fmt::Debug for Updater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updater").finish_non_exhaustive()
    }
}

impl Updater {
    /// See [`RunningServer::set_value`].
    pub fn set_value(&self, id: &str, value: Variant) {
        self.set_values(&[(id, value)]);
    }

    /// See [`RunningServer::set_values`].
    pub fn set_values(&self, values: &[(&str, Variant)]) {
        let updates = values.iter().map(|(id, v)| (*id, Update::Value(v)));
        report_unknown(nodes::update(&self.nodes, &self.subscriptions, updates));
    }

    /// See [`RunningServer::set_status`].
    pub fn set_status(&self, id: &str, status: StatusCode) {
        let updates = std::iter::once((id, Update::Status(status)));
        report_unknown(nodes::update(&self.nodes, &self.subscriptions, updates));
    }

    /// See [`RunningServer::value`].
    pub fn value(&self, id: &str) -> Option<DataValue> {
        nodes::read(&self.nodes, id)
    }
}

fn report_unknown(unknown: Vec<&str>) {
    if !unknown.is_empty() {
        tracing::debug!(?unknown, "OPC UA server: no such variables to update");
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.handle.cancel();
    }
}

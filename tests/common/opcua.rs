//! OPC UA test peers: the embedded server with a standard set of variables of every
//! data type on `127.0.0.1:0`, the client-side certificate material, and an
//! async-opcua client session for tests that talk to the server directly.
//!
//! RSA keys are slow to make in a debug build, so the server, client and X.509 user
//! keypairs are made once and kept under the temp directory (made in a scratch folder
//! and renamed into place, so concurrent test processes never see half a PKI); every
//! test copies them into its own fresh PKI folders.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opcua::client::{ClientBuilder, IdentityToken, Session};
use opcua::crypto::{CertificateStore, SecurityPolicy};
use opcua::types::{DateTime, MessageSecurityMode, StatusCode, Variant};
use tempfile::TempDir;
use thermacore::drivers::opcua::server::{
    KeypairSpec, RunningServer, ServerError, ServerSpec, VariableSpec, generate_keypair,
    trust_certificate,
};

/// The test server's namespace.
pub const NAMESPACE: &str = "urn:thermacore:test";
/// The folder of the standard variables.
pub const FOLDER: &str = "Device";
/// The application URI in the shared server certificate (a server with another URI
/// makes itself a new certificate, slowly).
pub const SERVER_URI: &str = "urn:thermacore:test:server";
pub const CLIENT_URI: &str = "urn:thermacore:test:client";
pub const USER: &str = "operator";
pub const PASSWORD: &str = "secret";
/// The id of the standard variable with an EURange (0..100).
pub const EU_RANGE_VARIABLE: &str = "Double";

/// Bumped when the layout or the names of the shared PKI change.
const PKI_VERSION: &str = "v1";

/// The standard variables, all in [`FOLDER`]: one per data type, some writable.
pub fn standard_variables() -> Vec<VariableSpec> {
    let v = |id: &str, value: Variant| VariableSpec::new(id, value).in_folder(FOLDER);
    let when = chrono::DateTime::parse_from_rfc3339("2024-03-01T12:00:00Z")
        .expect("a valid time")
        .with_timezone(&chrono::Utc);
    vec![
        v("Bool", Variant::Boolean(true)).writable(),
        v("SByte", Variant::SByte(-8)),
        v("Byte", Variant::Byte(200)).writable(),
        v("Int16", Variant::Int16(-1600)),
        v("UInt16", Variant::UInt16(16_000)).writable(),
        v("Int32", Variant::Int32(-320_000)).writable(),
        v("UInt32", Variant::UInt32(3_200_000)),
        v("Int64", Variant::Int64(-6_400_000_000)).writable(),
        v("UInt64", Variant::UInt64(6_400_000_000)),
        v("Float", Variant::Float(1.5)).writable(),
        v(EU_RANGE_VARIABLE, Variant::Double(42.25))
            .writable()
            .eu_range(0.0, 100.0),
        v("String", Variant::from("hello")).writable(),
        v("DateTime", Variant::from(DateTime::from(when))),
    ]
}

/// Every security endpoint of the test server.
pub fn all_endpoints() -> Vec<(SecurityPolicy, MessageSecurityMode)> {
    vec![
        (SecurityPolicy::None, MessageSecurityMode::None),
        (SecurityPolicy::Basic256Sha256, MessageSecurityMode::Sign),
        (
            SecurityPolicy::Basic256Sha256,
            MessageSecurityMode::SignAndEncrypt,
        ),
        (
            SecurityPolicy::Aes128Sha256RsaOaep,
            MessageSecurityMode::SignAndEncrypt,
        ),
        (
            SecurityPolicy::Aes256Sha256RsaPss,
            MessageSecurityMode::SignAndEncrypt,
        ),
    ]
}

/// The certificate material of the test PKI (shared, read-only: copy, don't modify).
#[derive(Debug, Clone)]
pub struct Material {
    /// The server's certificate (DER) and key; every test server starts with them.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client application certificate (DER, application URI [`CLIENT_URI`]) and key
    /// (PKCS#8 PEM).
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// An X.509 user identity certificate (DER) and key (PEM); the test server accepts it.
    pub user_cert: PathBuf,
    pub user_key: PathBuf,
}

/// The shared test PKI, made on first use.
pub fn material() -> &'static Material {
    static MATERIAL: OnceLock<Material> = OnceLock::new();
    MATERIAL.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("thermacore-opcua-test-pki-{PKI_VERSION}"));
        let m = material_in(&root);
        if !m.user_key.exists() {
            make_material(&root);
        }
        m
    })
}

fn material_in(root: &Path) -> Material {
    Material {
        server_cert: root.join("server/cert.der"),
        server_key: root.join("server/private.pem"),
        client_cert: root.join("client/cert.der"),
        client_key: root.join("client/private.pem"),
        user_cert: root.join("user/cert.der"),
        user_key: root.join("user/private.pem"),
    }
}

fn make_material(root: &Path) {
    let parent = root.parent().expect("the temp directory");
    let scratch = tempfile::Builder::new()
        .prefix("thermacore-opcua-pki-")
        .tempdir_in(parent)
        .expect("a scratch directory");
    let m = material_in(scratch.path());
    let pairs = [
        (
            "ThermaCore test server",
            SERVER_URI,
            &m.server_cert,
            &m.server_key,
        ),
        (
            "ThermaCore test client",
            CLIENT_URI,
            &m.client_cert,
            &m.client_key,
        ),
        (
            "operator",
            "urn:thermacore:test:user",
            &m.user_cert,
            &m.user_key,
        ),
    ];
    let started = std::time::Instant::now();
    for (name, uri, cert, key) in pairs {
        let spec = KeypairSpec {
            name: name.into(),
            application_uri: uri.into(),
            hosts: Vec::new(),
        };
        generate_keypair(&spec, cert, key).expect("a test keypair");
    }
    eprintln!("made the OPC UA test PKI in {:?}", started.elapsed());
    // Another test process may have won the race: then its PKI is as good as ours.
    let scratch = scratch.keep();
    if std::fs::rename(&scratch, root).is_err() {
        let _ = std::fs::remove_dir_all(&scratch);
        assert!(
            material_in(root).user_key.exists(),
            "no test PKI at {}",
            root.display()
        );
    }
}

/// A fresh PKI folder holding `cert` and `key` as its own keypair.
pub fn pki_with(cert: &Path, key: &Path) -> TempDir {
    let dir = tempfile::tempdir().expect("a temp PKI dir");
    for (from, to) in [(cert, "own/cert.der"), (key, "private/private.pem")] {
        let to = dir.path().join(to);
        std::fs::create_dir_all(to.parent().expect("a parent")).expect("PKI folders");
        std::fs::copy(from, &to).expect("copy a test certificate");
    }
    for sub in ["trusted", "rejected"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("PKI folders");
    }
    dir
}

/// A fresh client PKI (the shared client keypair), trusting `server`'s certificate
/// when given.
pub fn client_pki(server: Option<&RunningServer>) -> TempDir {
    let m = material();
    let dir = pki_with(&m.client_cert, &m.client_key);
    if let Some(server) = server {
        trust_certificate(dir.path(), &server.certificate_path()).expect("trust the server");
    }
    dir
}

/// The standard spec: [`standard_variables`] on `127.0.0.1:0`, anonymous plus
/// [`USER`]/[`PASSWORD`] plus the shared X.509 user, [`all_endpoints`], client
/// certificates trusted, library limits.
pub fn standard_spec(pki_dir: &Path) -> ServerSpec {
    let mut spec = ServerSpec::new(([127, 0, 0, 1], 0).into(), NAMESPACE, pki_dir);
    spec.application_name = "ThermaCore test server".into();
    spec.application_uri = SERVER_URI.into();
    spec.users = vec![(USER.into(), PASSWORD.into())];
    spec.x509_users = vec![material().user_cert.clone()];
    spec.endpoints = all_endpoints();
    spec.trust_client_certs = true;
    spec.variables = standard_variables();
    spec
}

/// A test server (see [`standard_spec`]) changed by `tweak`, with the shared keypair
/// in its own fresh PKI folder.
pub async fn test_server(tweak: impl FnOnce(&mut ServerSpec)) -> TestServer {
    let m = material();
    let pki = pki_with(&m.server_cert, &m.server_key);
    let mut spec = standard_spec(pki.path());
    tweak(&mut spec);
    StoppedServer { spec, pki }
        .start()
        .await
        .expect("the test OPC UA server starts")
}

/// A running test server and its PKI folder; derefs to the [`RunningServer`].
pub struct TestServer {
    server: RunningServer,
    spec: ServerSpec,
    pki: TempDir,
}

impl Deref for TestServer {
    type Target = RunningServer;

    fn deref(&self) -> &RunningServer {
        &self.server
    }
}

impl TestServer {
    /// The spec it runs with (its port made explicit).
    pub fn spec(&self) -> &ServerSpec {
        &self.spec
    }

    /// Stops it and keeps what it needs to start again on the same port.
    pub async fn stop(self) -> StoppedServer {
        let mut spec = self.spec;
        spec.listen = self.server.local_addr();
        self.server.stop().await;
        StoppedServer {
            spec,
            pki: self.pki,
        }
    }

    /// Stops it and starts it again on the same port with the same PKI; the variables
    /// are back at the spec's initial values.
    pub async fn restart(self) -> TestServer {
        self.stop()
            .await
            .start()
            .await
            .expect("the test OPC UA server starts again")
    }
}

/// A stopped test server.
pub struct StoppedServer {
    pub spec: ServerSpec,
    pki: TempDir,
}

impl StoppedServer {
    pub async fn start(self) -> Result<TestServer, ServerError> {
        let server = RunningServer::start(self.spec.clone()).await?;
        let mut spec = self.spec;
        spec.listen = server.local_addr();
        Ok(TestServer {
            server,
            spec,
            pki: self.pki,
        })
    }
}

/// A connected client session and what keeps it alive.
pub struct ClientSession {
    pub session: Arc<Session>,
    /// The session's event loop; it ends when the session is lost for good.
    pub event_loop: tokio::task::JoinHandle<StatusCode>,
    _pki: TempDir,
}

impl Deref for ClientSession {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.session
    }
}

impl Drop for ClientSession {
    fn drop(&mut self) {
        self.event_loop.abort();
    }
}

/// Connects to `server` at `policy`/`mode` as `identity` with the shared client
/// keypair, trusting the server's certificate (by file, not blindly). Fails with the
/// status of the first failed attempt: the client does not retry.
pub async fn connect(
    server: &RunningServer,
    policy: SecurityPolicy,
    mode: MessageSecurityMode,
    identity: IdentityToken,
) -> Result<ClientSession, StatusCode> {
    connect_with(server, client_pki(Some(server)), policy, mode, identity).await
}

/// [`connect`] with the client PKI `pki`.
pub async fn connect_with(
    server: &RunningServer,
    pki: TempDir,
    policy: SecurityPolicy,
    mode: MessageSecurityMode,
    identity: IdentityToken,
) -> Result<ClientSession, StatusCode> {
    let mut client = ClientBuilder::new()
        .application_name("ThermaCore test client")
        .application_uri(CLIENT_URI)
        .product_uri("urn:thermacore:test")
        .pki_dir(pki.path())
        .create_sample_keypair(false)
        .trust_server_certs(false)
        .session_retry_limit(0)
        .session_timeout(30_000)
        .client()
        .expect("a valid client config");
    let url = server.endpoint_url();
    let (session, event_loop) = client
        .connect_to_matching_endpoint((url.as_str(), policy.to_str(), mode), identity)
        .await
        .map_err(|e| e.status())?;
    let mut event_loop = event_loop.spawn();
    let connected = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::select! {
            ok = session.wait_for_connection() => if ok { Ok(()) } else { Err(StatusCode::BadNotConnected) },
            ended = &mut event_loop => Err(ended.unwrap_or(StatusCode::BadUnexpectedError)),
        }
    })
    .await
    .unwrap_or(Err(StatusCode::BadTimeout));
    match connected {
        Ok(()) => Ok(ClientSession {
            session,
            event_loop,
            _pki: pki,
        }),
        Err(status) => {
            event_loop.abort();
            Err(status)
        }
    }
}

/// The anonymous identity.
pub fn anonymous() -> IdentityToken {
    IdentityToken::Anonymous
}

/// [`USER`] with `password`.
pub fn user(password: &str) -> IdentityToken {
    IdentityToken::new_user_name(USER, password)
}

/// The shared X.509 user identity.
pub fn x509_user() -> IdentityToken {
    let m = material();
    IdentityToken::new_x509_path(&m.user_cert, &m.user_key).expect("the X.509 user keypair")
}

/// The store's file name for a certificate (`<CN> [<thumbprint>].der`).
pub fn store_name(cert: &Path) -> String {
    let x509 = CertificateStore::read_cert(cert).expect("a readable certificate");
    CertificateStore::cert_file_name(&x509)
}

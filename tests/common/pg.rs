//! Throw-away PostgreSQL databases for tests, enabled by `THERMACORE_TEST_POSTGRES`
//! (the URL of a database the test user may create databases from).

use std::net::SocketAddr;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};

/// The variable that enables the PostgreSQL tests.
pub const ENV: &str = "THERMACORE_TEST_POSTGRES";

/// The admin URL, or `None` (after saying why the test is skipped).
pub fn admin_url() -> Option<String> {
    match std::env::var(ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            println!(
                "skipped: set {ENV}=postgres://postgres@127.0.0.1:5432/test to run the \
                 PostgreSQL tests"
            );
            None
        }
    }
}

/// Drops the database when dropped (or through [`Guard::drop_database`]).
pub struct Guard {
    admin_url: String,
    name: String,
    armed: bool,
}

/// Creates an empty, uniquely named database and returns its URL, or `None` when
/// `THERMACORE_TEST_POSTGRES` is not set.
pub async fn fresh_database() -> Option<(String, Guard)> {
    let admin_url = admin_url()?;
    let name = format!("thermacore_t_{:016x}", rand::random::<u64>());
    let mut conn = PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {ENV}: {e}"));
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
    let _ = conn.close().await;
    let url = with_database(&admin_url, &name);
    Some((
        url,
        Guard {
            admin_url,
            name,
            armed: true,
        },
    ))
}

impl Guard {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database now (terminating its connections).
    pub async fn drop_database(mut self) {
        self.armed = false;
        drop_database(&self.admin_url, &self.name).await;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Drop cannot await: run the statement on a runtime of its own thread, which
        // also works from inside the test's runtime.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(drop_database(&admin_url, &name));
        });
        let _ = dropper.join();
    }
}

async fn drop_database(admin_url: &str, name: &str) {
    match PgConnection::connect(admin_url).await {
        Ok(mut conn) => {
            if let Err(e) = conn
                .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await
            {
                eprintln!("dropping test database {name}: {e}");
            }
            let _ = conn.close().await;
        }
        Err(e) => eprintln!("dropping test database {name}: {e}"),
    }
}

/// `url` with its database (path) replaced by `name`, query string kept.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{name}{query}", &base[..path_start])
}

/// `url` with its host and port replaced by `addr` (user, password, path kept).
pub fn with_host_port(url: &str, addr: SocketAddr) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[authority_start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| authority_start + i);
    let host_start = url[authority_start..authority_end]
        .rfind('@')
        .map_or(authority_start, |i| authority_start + i + 1);
    format!("{}{addr}{}", &url[..host_start], &url[authority_end..])
}

/// The server address a URL points at (for a proxy in front of it).
pub async fn server_addr(url: &str) -> SocketAddr {
    let options = PgConnectOptions::from_str(url).expect("valid postgres url");
    let target = format!("{}:{}", options.get_host(), options.get_port());
    tokio::net::lookup_host(&target)
        .await
        .expect("resolve postgres host")
        .find(SocketAddr::is_ipv4)
        .expect("an IPv4 address for the postgres host")
}

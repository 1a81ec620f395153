//! The server under load: a `thermacore` process the generator starts with the
//! scenario's plant (and stops, deleting what it stored), or one already running at
//! a URL. Either way the clients only see its API.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::client::{Gql, Login};
use super::plant;
use super::scenario::{Kind, Scenario};
use thermacore_loadtest::world;

pub struct Target {
    /// `http://host:port`.
    pub base: String,
    /// The users the clients sign in as, in turn.
    pub logins: Vec<Login>,
    /// The process to measure, when known.
    pub pid: Option<u32>,
    /// The broker of `mqtt-flood`.
    pub broker: Option<(String, u16)>,
    pub describe: Value,
    started: Option<Started>,
}

struct Started {
    server: Child,
    broker: Option<Child>,
    dir: tempfile::TempDir,
    /// A PostgreSQL store keeps the tenant after the run: it is deleted at the end.
    postgres: Option<(String, String)>,
}

const TENANT: &str = "load";
const ADMIN: &str = "load-admin";

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn binary(s: &Scenario) -> anyhow::Result<PathBuf> {
    let path = match &s.server.binary {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("thermacore"))
            .context("no directory of this binary")?,
    };
    if !path.is_file() {
        bail!(
            "no thermacore binary at {} (build it: `cargo build --release --workspace`, or set server.binary)",
            path.display()
        );
    }
    Ok(path)
}

fn password() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..24)
        .map(|_| rng.sample(rand::distr::Alphanumeric) as char)
        .collect()
}

/// Runs `thermacore ARGS` to the end; its stderr in the error.
async fn run(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut cmd = Command::new(bin);
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await?;
    if !out.status.success() {
        bail!(
            "`thermacore {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Starts the embedded broker (`thermacore broker`) and reads its address.
async fn start_broker(bin: &Path) -> anyhow::Result<(Child, (String, u16))> {
    let mut child = Command::new(bin)
        .args(["broker", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("broker: no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .context("the broker did not say where it listens within 20 s")??
        .unwrap_or_default();
    let addr: std::net::SocketAddr = line
        .strip_prefix("broker listening on ")
        .and_then(|a| a.trim().parse().ok())
        .with_context(|| format!("the broker said {line:?}"))?;
    Ok((child, (addr.ip().to_string(), addr.port())))
}

/// The `addr` of the server's `listening` log line (JSON logs).
fn listening_addr(log: &str) -> Option<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "listening")
        .and_then(|v| v["fields"]["addr"].as_str().map(str::to_string))
}

impl Target {
    pub async fn new(s: &Scenario, http: &reqwest::Client) -> anyhow::Result<Target> {
        match &s.server.url {
            Some(url) => Self::remote(s, url, http).await,
            None => Self::start(s, http).await,
        }
    }

    async fn remote(s: &Scenario, url: &str, http: &reqwest::Client) -> anyhow::Result<Target> {
        let password = std::env::var(&s.server.password_env).with_context(|| {
            format!(
                "server.url is set: put the password of {}/{} in {}",
                s.server.tenant, s.server.username, s.server.password_env
            )
        })?;
        let login = Login {
            tenant: s.server.tenant.clone(),
            username: s.server.username.clone(),
            password,
        };
        Gql::connect(http.clone(), url, login.clone())
            .await
            .map_err(anyhow::Error::msg)?;
        let broker = match s.scenario {
            Kind::MqttFlood => Some(parse_broker(&s.mqtt.broker)?),
            _ => None,
        };
        Ok(Target {
            base: url.trim_end_matches('/').to_string(),
            logins: vec![login],
            pid: s.server.pid,
            broker,
            describe: json!({"target": "url", "url": url, "pid": s.server.pid}),
            started: None,
        })
    }

    async fn start(s: &Scenario, http: &reqwest::Client) -> anyhow::Result<Target> {
        let bin = binary(s)?;
        let dir = tempfile::tempdir()?;
        let (tenant, store_url, postgres) = if s.server.store == "sqlite" {
            let db = dir.path().join("load.db");
            (TENANT.to_string(), format!("sqlite:{}", db.display()), None)
        } else {
            // A tenant of its own in a shared database, deleted at the end.
            let tenant = format!("load-{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
            let url = s.server.store.clone();
            (tenant.clone(), url.clone(), Some((url, tenant)))
        };
        let (broker_child, broker) = match (s.scenario, s.mqtt.broker.as_str()) {
            (Kind::MqttFlood, "embedded") => {
                let (c, addr) = start_broker(&bin).await?;
                (Some(c), Some(addr))
            }
            (Kind::MqttFlood, other) => (None, Some(parse_broker(other)?)),
            _ => (None, None),
        };
        let cfg = dir.path().join("thermacore.toml");
        let text = plant::config(
            s,
            &tenant,
            &store_url,
            broker.as_ref().map(|(h, p)| (h.as_str(), *p)),
        )
        .map_err(anyhow::Error::msg)?;
        std::fs::write(&cfg, text)?;
        let cfg_s = cfg.display().to_string();

        let t0 = Instant::now();
        run(&bin, &["migrate", "--config", &cfg_s], &[]).await?;
        let admin_pw = password();
        run(
            &bin,
            &[
                "user",
                "add",
                "--config",
                &cfg_s,
                "--tenant",
                &tenant,
                "--username",
                ADMIN,
                "--role",
                "admin",
            ],
            &[("THERMACORE_USER_PASSWORD", &admin_pw)],
        )
        .await?;
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path)?;
        let server = Command::new(&bin)
            .args(["--log-format", "json", "serve", "--config", &cfg_s])
            .env("THERMACORE_JWT_SECRET", password() + &password())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let pid = server.id();
        let mut started = Started {
            server,
            broker: broker_child,
            dir,
            postgres,
        };
        let base = match Self::wait_ready(&mut started, &log_path, http).await {
            Ok(b) => b,
            Err(e) => {
                let tail = log_tail(&log_path);
                stop(started).await;
                return Err(e.context(format!("server log:\n{tail}")));
            }
        };
        let start_secs = t0.elapsed().as_secs_f64();
        let admin = Login {
            tenant: tenant.clone(),
            username: ADMIN.into(),
            password: admin_pw,
        };
        let logins = match create_users(http, &base, admin, s.load.users).await {
            Ok(l) => l,
            Err(e) => {
                stop(started).await;
                return Err(e);
            }
        };
        Ok(Target {
            base,
            logins,
            pid,
            broker,
            describe: json!({
                "target": "started",
                "binary": bin.display().to_string(),
                "store": if s.server.store == "sqlite" { "sqlite" } else { "postgres" },
                "tenant": tenant,
                "start_secs": super::stats::round(start_secs, 2),
            }),
            started: Some(started),
        })
    }

    /// Waits for the `listening` line and `/readyz`; the server's address.
    async fn wait_ready(
        st: &mut Started,
        log: &Path,
        http: &reqwest::Client,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut base = None;
        while Instant::now() < deadline {
            if let Some(status) = st.server.try_wait()? {
                bail!("the server exited ({status}) before it was ready");
            }
            if base.is_none() {
                base = listening_addr(&std::fs::read_to_string(log).unwrap_or_default())
                    .map(|a| format!("http://{a}"));
            }
            if let Some(b) = &base {
                let ready = http.get(format!("{b}/readyz")).send().await;
                if ready.is_ok_and(|r| r.status().is_success()) {
                    return Ok(b.clone());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the server was not ready within 300 s")
    }

    /// Memory (KiB: resident, peak) and CPU ticks of the server, when measurable.
    pub fn usage(&self) -> Option<(u64, u64, u64)> {
        let pid = self.pid?.to_string();
        // A process that is gone has no status file: nothing to measure.
        std::fs::metadata(format!("/proc/{pid}/status")).ok()?;
        let kib = |field| world::status_kib(&pid, field);
        Some((kib("VmRSS:"), kib("VmHWM:"), world::cpu_ticks(&pid)))
    }

    /// Stops what the generator started and deletes what it stored.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        if let Some(st) = self.started.take() {
            let pg = st.postgres.clone();
            stop(st).await;
            if let Some((url, tenant)) = pg {
                let store = thermacore::storage::connect(&url, 1).await?;
                if let Some(t) = store.tenant_by_name(&tenant).await? {
                    store.delete_tenant(t.id).await?;
                }
            }
        }
        Ok(())
    }
}

/// SIGTERM (a graceful stop: the historian flushes), then SIGKILL after 30 s.
async fn stop(mut st: Started) {
    if let Some(pid) = st.server.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(30), st.server.wait())
            .await
            .is_err()
        {
            let _ = st.server.kill().await;
        }
    }
    if let Some(mut b) = st.broker.take() {
        let _ = b.kill().await;
    }
    drop(st.dir);
}

fn parse_broker(s: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .with_context(|| format!("mqtt.broker {s:?} is not host:port"))?;
    let port = port
        .parse()
        .with_context(|| format!("mqtt.broker {s:?}: bad port"))?;
    Ok((host.to_string(), port))
}

/// Creates `n` operators through the API (as the tenant's admin) and returns their
/// logins.
async fn create_users(
    http: &reqwest::Client,
    base: &str,
    admin: Login,
    n: usize,
) -> anyhow::Result<Vec<Login>> {
    let gql = Gql::connect(http.clone(), base, admin.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    let mut logins = Vec::with_capacity(n);
    for i in 0..n {
        let l = Login {
            tenant: admin.tenant.clone(),
            username: format!("load-op-{i:03}"),
            password: password(),
        };
        gql.run(
            "mutation($u:String!,$p:String!){createUser(username:$u,password:$p,role:OPERATOR){id}}",
            json!({"u": l.username, "p": l.password}),
        )
        .await
        .map_err(|k| anyhow::anyhow!("creating user {}: {k}", l.username))?;
        logins.push(l);
    }
    Ok(logins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line_gives_the_address() {
        let log = "{\"level\":\"INFO\",\"fields\":{\"message\":\"store ready\"}}\n\
                   {\"level\":\"INFO\",\"fields\":{\"message\":\"listening\",\"addr\":\"127.0.0.1:4242\",\"store\":\"sqlite\"}}\n";
        assert_eq!(listening_addr(log).as_deref(), Some("127.0.0.1:4242"));
        assert_eq!(listening_addr("not json\n"), None);
    }

    #[test]
    fn brokers_are_host_and_port() {
        assert_eq!(
            parse_broker("127.0.0.1:1883").expect("ok"),
            ("127.0.0.1".into(), 1883)
        );
        assert!(parse_broker("localhost").is_err());
        assert!(parse_broker("h:99999").is_err());
    }
}

//! Scenario files: what to run, against which server, with which plant and load.
//! Every key but `scenario` has a default; unknown keys are errors (a typo must not
//! silently run the default).

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{path}: {0}", path = .1.display())]
    Invalid(String, PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The plant's devices polled at their rate; the server's ingest measured.
    Ingest,
    /// MQTT gateways publishing through a broker into the server.
    MqttFlood,
    /// Many HTTP clients sending a mix of latest / history / devices queries.
    Queries,
    /// Many graphql-transport-ws clients; change-to-client latency.
    Subscribers,
    /// writeTag round trips while the plant is polled.
    Commands,
    /// A plant with operators' dashboards, alarms and commands.
    Mixed,
    /// `mixed` for hours: memory and latency drift.
    Soak,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ingest => "ingest",
            Kind::MqttFlood => "mqtt-flood",
            Kind::Queries => "queries",
            Kind::Subscribers => "subscribers",
            Kind::Commands => "commands",
            Kind::Mixed => "mixed",
            Kind::Soak => "soak",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub scenario: Kind,
    /// Length of the measured window, after the warm-up.
    #[serde(default = "d60")]
    pub duration_secs: u64,
    /// Load runs but is not measured: connections open, caches fill.
    #[serde(default = "d5")]
    pub warmup_secs: u64,
    /// Seconds per interval of the report (progress, drift); default 10, soak 60.
    pub interval_secs: Option<u64>,
    #[serde(default)]
    pub server: ServerSpec,
    #[serde(default)]
    pub plant: Plant,
    #[serde(default)]
    pub load: Load,
    #[serde(default)]
    pub mqtt: MqttSpec,
}

/// The server under load: started by the generator (default) or at `url`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSpec {
    /// A running server; without it the generator starts one.
    pub url: Option<String>,
    /// With `url`: the tenant and user to log in as; the password is read from the
    /// environment variable `password_env`. The user needs the operator role for
    /// commands and for acknowledging alarms.
    pub tenant: String,
    pub username: String,
    pub password_env: String,
    /// With `url`: the server's process id when it runs on this machine, to measure
    /// its CPU and memory.
    pub pid: Option<u32>,
    /// The `thermacore` binary to start; default: next to this one.
    pub binary: Option<PathBuf>,
    /// Store of a started server: `sqlite` (a temporary file) or `postgres://…`.
    pub store: String,
    /// Settings of a started server over the generated ones, as in its
    /// configuration file: `[server.settings.historian] batch_size = 2000`.
    pub settings: toml::Table,
}

impl Default for ServerSpec {
    fn default() -> Self {
        ServerSpec {
            url: None,
            tenant: "demo".into(),
            username: "operator".into(),
            password_env: "THERMACORE_LOAD_PASSWORD".into(),
            pid: None,
            binary: None,
            store: "sqlite".into(),
            settings: toml::Table::new(),
        }
    }
}

/// The plant a started server is given: `devices` sim devices of `tags_per_device`
/// tags (sine waves), one of them a writable setpoint when `writable`, with high /
/// low limit alarms on the first `alarm_tags` tags of each device.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Plant {
    pub devices: usize,
    pub tags_per_device: usize,
    pub poll_ms: u64,
    pub writable: bool,
    pub alarm_tags: usize,
    /// Period of the alarmed sine waves: each crosses its high and its low limit
    /// once per period.
    pub alarm_period_secs: u64,
}

impl Default for Plant {
    fn default() -> Self {
        Plant {
            devices: 100,
            tags_per_device: 10,
            poll_ms: 1000,
            writable: true,
            alarm_tags: 0,
            alarm_period_secs: 300,
        }
    }
}

/// What the clients do. Each scenario reads the keys it needs.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Load {
    /// `queries`: concurrent HTTP clients, each sending its next query when the last
    /// is answered (after `think_ms`).
    pub clients: usize,
    pub think_ms: u64,
    /// `queries`: weights of the query kinds.
    pub latest: u32,
    pub history: u32,
    pub devices: u32,
    /// Tags per latest / history query and per subscription.
    pub tags_per_query: usize,
    /// Range of a history query (1-minute buckets).
    pub history_minutes: u64,
    /// `subscribers` (and one per `ingest` / `mqtt-flood` run): WebSocket clients.
    pub subscribers: usize,
    /// `commands`, `mixed`, `soak`: writeTag requests per second in all, and how
    /// many operators send them.
    pub writes_per_sec: f64,
    pub writers: usize,
    /// `mixed`, `soak`: operators, each with a dashboard: a subscription to one
    /// device's tags and to alarm events, refreshed (latest, alarms, a trend) every
    /// `refresh_secs`; every tenth refresh also reads the devices' status.
    pub operators: usize,
    pub refresh_secs: u64,
    /// Users the clients are spread over (a started server creates them).
    pub users: usize,
    /// Timeout of one request.
    pub timeout_ms: u64,
}

impl Default for Load {
    fn default() -> Self {
        Load {
            clients: 20,
            think_ms: 0,
            latest: 6,
            history: 2,
            devices: 2,
            tags_per_query: 20,
            history_minutes: 60,
            subscribers: 100,
            writes_per_sec: 20.0,
            writers: 4,
            operators: 100,
            refresh_secs: 5,
            users: 10,
            timeout_ms: 10_000,
        }
    }
}

/// `mqtt-flood`: gateways publishing one JSON object of `values` numbers `rate`
/// times a second each.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSpec {
    /// `embedded` (the server's rumqttd, started as its own process) or `host:port`
    /// of a running broker.
    pub broker: String,
    pub gateways: usize,
    pub values: usize,
    pub rate: f64,
    pub qos: u8,
    /// Gateways sharing one MQTT connection of the generator.
    pub per_connection: usize,
    /// Gateway `N` publishes to `{prefix}/gw-N/data`.
    pub prefix: String,
}

impl Default for MqttSpec {
    fn default() -> Self {
        MqttSpec {
            broker: "embedded".into(),
            gateways: 100,
            values: 50,
            rate: 10.0,
            qos: 0,
            per_connection: 10,
            prefix: "tcload".into(),
        }
    }
}

fn d60() -> u64 {
    60
}
fn d5() -> u64 {
    5
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let s: Scenario = toml::from_str(&text).map_err(|e| ScenarioError::Parse {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        s.validate()
            .map_err(|m| ScenarioError::Invalid(m, path.to_path_buf()))?;
        Ok(s)
    }

    pub fn interval_secs(&self) -> u64 {
        self.interval_secs
            .unwrap_or(if self.scenario == Kind::Soak { 60 } else { 10 })
    }

    /// Checks what serde cannot: ranges and what each scenario needs.
    pub fn validate(&self) -> Result<(), String> {
        let (p, l, m) = (&self.plant, &self.load, &self.mqtt);
        let mut bad = Vec::new();
        if self.duration_secs == 0 {
            bad.push("duration_secs must be at least 1".to_string());
        }
        if self.interval_secs() == 0 {
            bad.push("interval_secs must be at least 1".into());
        }
        if self.server.url.is_none() {
            if p.devices == 0 && self.scenario != Kind::MqttFlood {
                bad.push("plant.devices must be at least 1".into());
            }
            if p.tags_per_device == 0 {
                bad.push("plant.tags_per_device must be at least 1".into());
            }
            if p.alarm_tags > p.tags_per_device {
                bad.push("plant.alarm_tags must not exceed plant.tags_per_device".into());
            }
            if p.alarm_tags > 0 && p.alarm_period_secs < 2 {
                bad.push("plant.alarm_period_secs must be at least 2".into());
            }
            if self.server.store != "sqlite" && !self.server.store.starts_with("postgres://") {
                bad.push(format!(
                    "server.store must be \"sqlite\" or a postgres:// URL, not {:?}",
                    self.server.store
                ));
            }
        } else if self.scenario == Kind::MqttFlood && m.broker == "embedded" {
            bad.push(
                "mqtt-flood against server.url needs mqtt.broker = \"host:port\" (the broker that server subscribes to)".into(),
            );
        }
        if l.users == 0 {
            bad.push("load.users must be at least 1".into());
        }
        if l.tags_per_query == 0 {
            bad.push("load.tags_per_query must be at least 1".into());
        }
        if l.timeout_ms == 0 {
            bad.push("load.timeout_ms must be at least 1".into());
        }
        match self.scenario {
            Kind::Queries => {
                if l.clients == 0 {
                    bad.push("queries needs load.clients of at least 1".into());
                }
                if l.latest + l.history + l.devices == 0 {
                    bad.push("queries needs a weight above 0 in load.latest, load.history or load.devices".into());
                }
            }
            Kind::Subscribers if l.subscribers == 0 => {
                bad.push("subscribers needs load.subscribers of at least 1".into())
            }
            Kind::Commands if l.writes_per_sec <= 0.0 || l.writers == 0 => bad.push(
                "commands needs load.writes_per_sec above 0 and load.writers of at least 1".into(),
            ),
            Kind::Mixed | Kind::Soak if l.operators == 0 || l.refresh_secs == 0 => {
                bad.push(format!(
                    "{} needs load.operators and load.refresh_secs of at least 1",
                    self.scenario.name()
                ))
            }
            Kind::MqttFlood => {
                if m.gateways == 0 || m.values == 0 || m.per_connection == 0 {
                    bad.push(
                        "mqtt.gateways, mqtt.values and mqtt.per_connection must be at least 1"
                            .into(),
                    );
                }
                if !(m.rate > 0.0 && m.rate.is_finite()) {
                    bad.push("mqtt.rate must be above 0".into());
                }
                if m.qos > 2 {
                    bad.push("mqtt.qos must be 0, 1 or 2".into());
                }
            }
            _ => {}
        }
        if !(l.writes_per_sec >= 0.0 && l.writes_per_sec.is_finite()) {
            bad.push("load.writes_per_sec must be 0 or more".into());
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, String> {
        let s: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        s.validate()?;
        Ok(s)
    }

    #[test]
    fn defaults_fill_everything_but_the_kind() {
        let s = parse("scenario = \"queries\"").expect("valid");
        assert_eq!(s.scenario, Kind::Queries);
        assert_eq!(s.duration_secs, 60);
        assert_eq!(s.interval_secs(), 10);
        assert_eq!(s.load.clients, 20);
        let soak = parse("scenario = \"soak\"\nduration_secs = 7200").expect("valid");
        assert_eq!(soak.interval_secs(), 60);
    }

    #[test]
    fn typos_and_bad_values_are_named() {
        let e = parse("scenario = \"queries\"\n[load]\nclient = 5").expect_err("typo");
        assert!(e.contains("unknown field `client`"), "{e}");
        let e = parse("scenario = \"flood\"").expect_err("kind");
        assert!(e.contains("unknown variant `flood`"), "{e}");
        let e = parse("scenario = \"queries\"\n[load]\nclients = 0").expect_err("zero");
        assert!(e.contains("load.clients"), "{e}");
        let e =
            parse("scenario = \"mqtt-flood\"\n[server]\nurl = \"http://x\"").expect_err("broker");
        assert!(e.contains("mqtt.broker"), "{e}");
        let e = parse("scenario = \"ingest\"\n[server]\nstore = \"mysql://x\"").expect_err("store");
        assert!(e.contains("server.store"), "{e}");
    }

    #[test]
    fn every_shipped_scenario_file_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("scenarios/") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
                seen.push(s.scenario);
            }
        }
        for kind in [
            Kind::Ingest,
            Kind::MqttFlood,
            Kind::Queries,
            Kind::Subscribers,
            Kind::Commands,
            Kind::Mixed,
            Kind::Soak,
        ] {
            assert!(seen.contains(&kind), "no scenario file for {}", kind.name());
        }
    }
}

//! The `modbus` scenario's view of the server: a GraphQL client (states, poll phases,
//! writes), scrapes of `/metrics` with the process counters, and the write load.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::world::{TICKS_PER_SEC, cpu_ticks, machine_busy_ticks, thread_ticks};

/// A server under test started in-process: its client (logged in), the sender that
/// stops it and its task.
pub struct Started {
    pub client: Client,
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<Result<(), thermacore::app::AppError>>,
}

/// Creates `user` (with `password` and `role`) in `tenant` of the config's store,
/// starts the real server on a loopback port, waits until it is ready (within
/// `ready_within`: applying a large plant takes a while), logs in, and waits until
/// `devices` devices are ONLINE (within `online_within`).
pub async fn start_server(
    config: thermacore::config::Config,
    (tenant, user, password, role): (&str, &str, &str, thermacore::domain::Role),
    devices: usize,
    ready_within: Duration,
    online_within: Duration,
) -> anyhow::Result<Started> {
    {
        let store = thermacore::storage::connect(&config.storage.url, 1).await?;
        store.migrate().await?;
        let t = store.upsert_tenant(tenant).await?;
        store
            .create_user(
                t.id,
                user,
                &thermacore::api::auth::hash_password(password)?,
                role,
            )
            .await?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut client = Client {
        http: reqwest::Client::builder().no_proxy().build()?,
        base: format!("http://{}", listener.local_addr()?),
        token: None,
    };
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(thermacore::app::run(config, listener, async move {
        let _ = stop_rx.await;
    }));
    let deadline = Instant::now() + ready_within;
    loop {
        let r = client
            .http
            .get(format!("{}/readyz", client.base))
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == 200) {
            break;
        }
        if task.is_finished() {
            anyhow::bail!("the server stopped: {:?}", task.await);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "server not ready after {ready_within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let login = client
        .gql(
            "mutation($t:String!,$u:String!,$p:String!){login(tenant:$t,username:$u,password:$p){accessToken}}",
            json!({"t": tenant, "u": user, "p": password}),
        )
        .await?;
    client.token = login["login"]["accessToken"].as_str().map(str::to_string);
    let deadline = Instant::now() + online_within;
    loop {
        let states = client.states().await?;
        if states.get("ONLINE").copied().unwrap_or(0) == devices {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "devices not all online after {online_within:?}: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(Started { client, stop, task })
}

/// A GraphQL client of the server under test.
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

impl Client {
    pub async fn gql(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .post(format!("{}/graphql", self.base))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let v: Value = req.send().await?.json().await?;
        match v.get("errors") {
            Some(e) => anyhow::bail!("{e}"),
            None => Ok(v["data"].clone()),
        }
    }

    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?)
    }

    /// Devices by state.
    pub async fn states(&self) -> anyhow::Result<BTreeMap<String, usize>> {
        let d = self.gql("{devices{status{state}}}", json!({})).await?;
        let mut by = BTreeMap::new();
        for dev in d["devices"].as_array().into_iter().flatten() {
            let s = dev["status"]["state"]
                .as_str()
                .unwrap_or("NONE")
                .to_string();
            *by.entry(s).or_insert(0) += 1;
        }
        Ok(by)
    }

    /// How the devices' polls spread over the poll period: the share of devices whose
    /// last poll started in the busiest tenth of it (0.1 when evenly spread, 1.0 when
    /// all poll at once), from each device's `lastPoll`.
    pub async fn busiest_tenth(&self, poll_ms: u64) -> anyhow::Result<f64> {
        let d = self.gql("{devices{status{lastPoll}}}", json!({})).await?;
        let mut bins = [0usize; 10];
        let mut n = 0;
        for dev in d["devices"].as_array().into_iter().flatten() {
            let Some(us) = dev["status"]["lastPoll"].as_str().and_then(micros_of_day) else {
                continue;
            };
            let phase = us % (poll_ms * 1000);
            bins[(phase * 10 / (poll_ms * 1000)) as usize] += 1;
            n += 1;
        }
        Ok(bins.iter().max().copied().unwrap_or(0) as f64 / n.max(1) as f64)
    }

    /// The largest age of the cached latest value of `tags`, in milliseconds: about a
    /// poll period while the cache keeps up with the devices, growing when its mailbox
    /// backs up.
    pub async fn cache_age_ms(&self, tags: &[String]) -> anyhow::Result<f64> {
        let d = self
            .gql(
                "query($t:[ID!]!){latest(tagIds:$t){serverTime}}",
                json!({ "t": tags }),
            )
            .await?;
        let day = 86_400_000_000u64;
        let now = micros_of_day_now();
        let age = d["latest"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["serverTime"].as_str().and_then(micros_of_day))
            .map(|t| (now + day - t) % day)
            .max()
            .unwrap_or(0);
        Ok(age as f64 / 1000.0)
    }
}

/// Stops a server [`start_server`] started and waits for it (at most `within`),
/// saying what went wrong.
pub async fn stop_server(
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), thermacore::app::AppError>>,
    within: Duration,
) {
    let _ = stop.send(());
    match tokio::time::timeout(within, task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => eprintln!("server stopped with: {e}"),
        Ok(Err(e)) => eprintln!("server task: {e}"),
        Err(_) => eprintln!("server did not stop within {} s", within.as_secs()),
    }
}

/// Microseconds since midnight (UTC) now, to compare with [`micros_of_day`].
pub fn micros_of_day_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
        % 86_400_000_000
}

/// Microseconds since midnight of an RFC 3339 time (`…T19:40:04.123456Z`).
pub fn micros_of_day(t: &str) -> Option<u64> {
    let time = t.split_once('T')?.1;
    let end = time.find(['Z', '+', '-']).unwrap_or(time.len());
    let (hms, frac) = time[..end].split_once('.').unwrap_or((&time[..end], ""));
    let mut parts = hms.split(':').map(|v| v.parse::<u64>().ok());
    let (h, m, sec) = (parts.next()??, parts.next()??, parts.next()??);
    let frac: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
    Some(((h * 60 + m) * 60 + sec) * 1_000_000 + frac.parse::<u64>().ok()?)
}

/// One scrape of the server and the process counters.
pub struct Snapshot {
    pub at: Instant,
    pub metrics: String,
    pub cpu: u64,
    pub sim_cpu: u64,
    pub machine: u64,
    pub threads: BTreeMap<String, u64>,
}

pub async fn snapshot(c: &Client, sim_pid: &str) -> anyhow::Result<Snapshot> {
    Ok(Snapshot {
        metrics: c.metrics().await?,
        at: Instant::now(),
        cpu: cpu_ticks("self"),
        sim_cpu: cpu_ticks(sim_pid),
        machine: machine_busy_ticks(),
        threads: thread_ticks(),
    })
}

/// Sequential `writeTag`s at `rate` per second to random devices until `until`:
/// the round trips in milliseconds and the failures.
pub async fn write_load(
    c: &Client,
    targets: &[String],
    rate: f64,
    until: Instant,
) -> (Vec<f64>, u64) {
    const WRITE: &str = "mutation($t:ID!,$v:JSON!){writeTag(tagId:$t,value:$v){tagId}}";
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // xorshift: a random device each time, reproducible enough for a benchmark.
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(std::process::id());
    let (mut took, mut errors) = (Vec::new(), 0u64);
    loop {
        tick.tick().await;
        if Instant::now() >= until {
            return (took, errors);
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let tag = &targets[(x % targets.len() as u64) as usize];
        let value = (x >> 32) % 1000;
        let t0 = Instant::now();
        let r = c.gql(WRITE, json!({"t": tag, "v": value})).await;
        took.push(t0.elapsed().as_secs_f64() * 1000.0);
        if let Err(e) = r {
            if errors == 0 {
                eprintln!("first failed write: {e}");
            }
            errors += 1;
        }
    }
}

pub fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// The window between two snapshots: rates of counters, quantiles of histograms and
/// CPU over it.
pub struct Window<'a> {
    pub s0: &'a Snapshot,
    pub s1: &'a Snapshot,
    pub seconds: f64,
}

impl<'a> Window<'a> {
    pub fn new(s0: &'a Snapshot, s1: &'a Snapshot) -> Self {
        let seconds = (s1.at - s0.at).as_secs_f64();
        Window { s0, s1, seconds }
    }

    /// How much counter `name` (series matching `labels`) grew.
    pub fn count(&self, name: &str, labels: &str) -> f64 {
        crate::prom::sum(&self.s1.metrics, name, labels)
            - crate::prom::sum(&self.s0.metrics, name, labels)
    }

    /// [`Window::count`] per second.
    pub fn rate(&self, name: &str, labels: &str) -> f64 {
        self.count(name, labels) / self.seconds
    }

    /// Quantile `q` of histogram `name` over the window, in ms (NaN: no observation).
    pub fn quantile_ms(&self, name: &str, labels: &str, q: f64) -> f64 {
        let b0 = crate::prom::buckets(&self.s0.metrics, name, labels);
        let b1 = crate::prom::buckets(&self.s1.metrics, name, labels);
        crate::prom::quantile(&b0, &b1, q).map_or(f64::NAN, |s| s * 1000.0)
    }

    /// A gauge at the end of the window.
    pub fn gauge(&self, name: &str) -> f64 {
        crate::prom::sum(&self.s1.metrics, name, "")
    }

    /// Cores used by this process, by the child and by the whole machine.
    pub fn cores(&self) -> (f64, f64, f64) {
        let c = |a: u64, b: u64| b.saturating_sub(a) as f64 / TICKS_PER_SEC / self.seconds;
        let (s0, s1) = (self.s0, self.s1);
        (
            c(s0.cpu, s1.cpu),
            c(s0.sim_cpu, s1.sim_cpu),
            c(s0.machine, s1.machine),
        )
    }
}

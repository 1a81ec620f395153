//! The clients of the scenarios, each a task that runs until the stop signal: query
//! clients, subscribers, operators sending commands, operators' dashboards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::client::{Event, Gql, Subscription, TOKEN_EXPIRED, age};
use super::scenario::Load;
use super::stats::Recorder;

/// A tag as the clients know it.
#[derive(Debug, Clone)]
pub struct TagInfo {
    pub id: String,
    pub device: String,
    pub writable: bool,
}

/// What every client task gets.
#[derive(Clone)]
pub struct Ctx {
    pub rec: Arc<Recorder>,
    pub stop: watch::Receiver<bool>,
    pub load: Arc<Load>,
    pub tags: Arc<Vec<TagInfo>>,
}

impl Ctx {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps `d`, or less when the run stops; whether it stopped.
    async fn pause(&mut self, d: Duration) -> bool {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => self.stopped(),
            _ = stop.wait_for(|s| *s) => true,
        }
    }

    /// `n` consecutive tag ids from a random start.
    fn some_tags(&self, n: usize) -> Vec<String> {
        let all = &self.tags;
        let n = n.min(all.len());
        let start = rand::rng().random_range(0..=all.len() - n);
        all[start..start + n].iter().map(|t| t.id.clone()).collect()
    }
}

/// Reads every tag of the tenant (ids, devices, which are writable).
pub async fn discover(gql: &Gql) -> Result<Vec<TagInfo>, String> {
    let data = gql
        .run("{ tags { id deviceId writable } }", json!({}))
        .await?;
    let tags = data["tags"]
        .as_array()
        .ok_or("tags: not a list")?
        .iter()
        .filter_map(|t| {
            Some(TagInfo {
                id: t["id"].as_str()?.to_string(),
                device: t["deviceId"].as_str()?.to_string(),
                writable: t["writable"].as_bool()?,
            })
        })
        .collect();
    Ok(tags)
}

const LATEST: &str = "query($ids:[ID!]!){latest(tagIds:$ids){tagId value quality serverTime}}";
const HISTORY: &str = "query($ids:[ID!]!,$f:DateTime!,$t:DateTime!){history(tagIds:$ids,from:$f,to:$t,bucketSeconds:60){tagId buckets{start count avg min max} gaps{from to}}}";
const DEVICES: &str = "{devices{id name status{state polls restarts}}}";
const WRITE: &str =
    "mutation($id:ID!,$v:JSON!){writeTag(tagId:$id,value:$v){tagId acknowledgedAt}}";
const ALARMS: &str =
    "query($d:ID){alarms(deviceId:$d,first:50){alarms{id ruleName severity state} endCursor}}";
const ACK: &str =
    "mutation($ids:[ID!]!){acknowledgeAlarms(ids:$ids,comment:\"load\"){acknowledged{id}}}";

fn history_vars(ids: Vec<String>, minutes: u64) -> Value {
    let to = chrono::Utc::now();
    let from = to - chrono::Duration::minutes(minutes as i64);
    json!({"ids": ids, "f": from.to_rfc3339(), "t": to.to_rfc3339()})
}

/// `queries`: one HTTP client sending a weighted mix back to back.
pub async fn query_client(mut ctx: Ctx, gql: Gql) {
    let l = ctx.load.clone();
    let kinds = [
        ("latest", l.latest),
        ("history", l.history),
        ("devices", l.devices),
    ];
    while !ctx.stopped() {
        let kind = kinds
            .choose_weighted(&mut rand::rng(), |k| k.1)
            .map_or("latest", |k| k.0);
        match kind {
            "latest" => {
                let ids = ctx.some_tags(l.tags_per_query);
                gql.timed(&ctx.rec, "latest", LATEST, json!({"ids": ids}))
                    .await;
            }
            "history" => {
                let vars = history_vars(ctx.some_tags(l.tags_per_query), l.history_minutes);
                gql.timed(&ctx.rec, "history", HISTORY, vars).await;
            }
            _ => {
                gql.timed(&ctx.rec, "devices", DEVICES, json!({})).await;
            }
        }
        if l.think_ms > 0 && ctx.pause(Duration::from_millis(l.think_ms)).await {
            break;
        }
    }
}

/// Which time of a value its latency is measured from.
#[derive(Clone, Copy)]
pub enum From {
    /// When the server took the value in: change-to-client latency.
    ServerTime,
    /// When the source stamped it (the MQTT publisher): end-to-end latency.
    SourceTime,
}

/// A subscriber to `ids`: records the age of every value it receives as `op`
/// (the current values sent first are skipped).
pub async fn subscriber(ctx: Ctx, gql: Gql, ids: Vec<String>, op: &'static str, from: From) {
    let query = "subscription($ids:[ID!]){tagValues(tagIds:$ids){tagId value quality serverTime sourceTime}}";
    let field = match from {
        From::ServerTime => "serverTime",
        From::SourceTime => "sourceTime",
    };
    let skip = ids.len();
    let vars = json!({ "ids": ids });
    follow(ctx, gql, query, vars, op, skip, |d| {
        d["tagValues"][field].as_str().and_then(age)
    })
    .await
}

/// Follows one subscription until the run stops, reconnecting when it ends: the
/// first `skip` messages of each connection are not measured, the others are
/// recorded as `op` with the age `age_of` reads from them.
async fn follow(
    mut ctx: Ctx,
    gql: Gql,
    query: &str,
    vars: Value,
    op: &'static str,
    skip: usize,
    age_of: impl Fn(&Value) -> Option<Duration>,
) {
    let timeout = Duration::from_millis(ctx.load.timeout_ms);
    while !ctx.stopped() {
        let token = gql.token();
        let mut sub = match Subscription::open(&gql, &token, query, vars.clone(), timeout).await {
            Ok(s) => s,
            Err(k) => {
                ended(&ctx, &gql, &token, op, &k).await;
                if ctx.pause(Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        let mut initial = skip;
        let mut stop = ctx.stop.clone();
        loop {
            let ev = tokio::select! {
                ev = sub.next() => Some(ev),
                _ = stop.wait_for(|s| *s) => None,
            };
            let Some(ev) = ev else {
                sub.close().await;
                return;
            };
            match ev {
                Event::Data(_) if initial > 0 => initial -= 1,
                Event::Data(d) => match age_of(&d) {
                    Some(a) => ctx.rec.ok(op, a),
                    None => ctx.rec.err(op, "no_time"),
                },
                Event::Ended(k) => {
                    ended(&ctx, &gql, &token, op, &k).await;
                    break;
                }
            }
        }
    }
}

/// A subscription that ended (or did not open) with `kind`: an error, except for an
/// expired token; either way the next attempt signs in first when the server
/// refused the token.
async fn ended(ctx: &Ctx, gql: &Gql, token: &str, op: &'static str, kind: &str) {
    ctx.rec.add("ws_reconnects", 1);
    if kind != TOKEN_EXPIRED {
        ctx.rec.err(op, kind);
    }
    if kind == TOKEN_EXPIRED || kind == "ws_refused" || kind.starts_with("ws_closed_44") {
        match gql.renew(token).await {
            Ok(()) => ctx.rec.add("ws_token_renewals", 1),
            Err(_) => ctx.rec.err(op, "sign_in"),
        }
    }
}

/// An operator sending `writeTag` to random writable tags at `per_sec`.
pub async fn writer(ctx: Ctx, gql: Gql, per_sec: f64) {
    let writable: Vec<String> = ctx
        .tags
        .iter()
        .filter(|t| t.writable)
        .map(|t| t.id.clone())
        .collect();
    if writable.is_empty() {
        ctx.rec.err("writeTag", "no_writable_tag");
        return;
    }
    let period = Duration::from_secs_f64(1.0 / per_sec);
    let offset = period.mul_f64(rand::rng().random::<f64>());
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut stop = ctx.stop.clone();
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let (id, value) = {
            let mut rng = rand::rng();
            let id = writable.choose(&mut rng).cloned().unwrap_or_default();
            (id, (rng.random_range(400..600) as f64) / 10.0)
        };
        gql.timed(&ctx.rec, "writeTag", WRITE, json!({"id": id, "v": value}))
            .await;
    }
}

/// An operator's dashboard of `device`: its tags live, alarm events live, and every
/// `refresh_secs` the latest values, the device's alarms (acknowledging new ones),
/// a trend of four tags; every tenth refresh the status of all devices.
pub async fn operator(mut ctx: Ctx, gql: Gql, device: String) {
    let ids: Vec<String> = ctx
        .tags
        .iter()
        .filter(|t| t.device == device)
        .map(|t| t.id.clone())
        .collect();
    let live = tokio::spawn(subscriber(
        ctx.clone(),
        gql.clone(),
        ids.clone(),
        "dashboard.tagValues",
        From::ServerTime,
    ));
    let events = tokio::spawn(alarm_events(ctx.clone(), gql.clone()));
    let refresh = Duration::from_secs(ctx.load.refresh_secs);
    // Operators do not all refresh at the same instant.
    let stagger = refresh.mul_f64(rand::rng().random::<f64>());
    if ctx.pause(stagger).await {
        return join(live, events).await;
    }
    let trend: Vec<String> = ids.iter().take(4).cloned().collect();
    for n in 0u64.. {
        let t0 = Instant::now();
        gql.timed(&ctx.rec, "dashboard.latest", LATEST, json!({"ids": ids}))
            .await;
        if let Some(alarms) = gql
            .timed(&ctx.rec, "dashboard.alarms", ALARMS, json!({"d": device}))
            .await
        {
            let unacked: Vec<&str> = alarms["alarms"]["alarms"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["state"] == "UNACKED" || a["state"] == "RTN_UNACKED")
                .filter_map(|a| a["id"].as_str())
                .collect();
            if !unacked.is_empty() {
                gql.timed(&ctx.rec, "acknowledgeAlarms", ACK, json!({"ids": unacked}))
                    .await;
            }
        }
        gql.timed(
            &ctx.rec,
            "dashboard.trend",
            HISTORY,
            history_vars(trend.clone(), ctx.load.history_minutes),
        )
        .await;
        if n % 10 == 9 {
            gql.timed(&ctx.rec, "dashboard.devices", DEVICES, json!({}))
                .await;
        }
        if ctx.pause(refresh.saturating_sub(t0.elapsed())).await {
            break;
        }
    }
    join(live, events).await
}

async fn join(a: tokio::task::JoinHandle<()>, b: tokio::task::JoinHandle<()>) {
    let _ = a.await;
    let _ = b.await;
}

/// The tenant's alarm events, recorded by the age of their transition.
async fn alarm_events(ctx: Ctx, gql: Gql) {
    let query = "subscription{alarmEvents{alarmId to at}}";
    follow(ctx, gql, query, json!({}), "alarmEvents", 0, |d| {
        d["alarmEvents"]["at"].as_str().and_then(age)
    })
    .await
}

//! Live configuration at scale: a real server started in-process (`app::run`, a fresh
//! SQLite file per run, or a PostgreSQL URL) takes a plant of `--devices` sim devices
//! with `--tags` tags each through one `importConfig` over HTTP. Each run times the
//! dry run (parse, check, plan), the import itself (answered: stored in one
//! transaction and applied to the running tenant), until every device is ONLINE, the
//! export of the whole tenant, the import of that export with REPLACE (which finds
//! nothing to change), and single `updateDevice` mutations with the plant running.

use std::time::{Duration, Instant};

use serde_json::json;
use thermacore::config::parse_str;
use thermacore::domain::Role;

use crate::modbus_client::{Client, start_server, stop_server};

const TENANT: &str = "bench";
const ADMIN: &str = "admin";
const PASSWORD: &str = "import benchmark password";
const SECRET: &str = "a-benchmark-secret-of-enough-length!";
const IMPORT: &str = "mutation($d: String!, $m: ImportMode!, $dry: Boolean!) { importConfig(document: $d, mode: $m, dryRun: $dry) { applied created updated deleted } }";

/// The plant as a document: sim devices polled every second, tags of every signal.
fn document(devices: usize, tags: usize) -> String {
    const SIGNALS: [(&str, &str); 5] = [
        ("sine:period=60,amplitude=10,offset=50", "f64"),
        ("ramp:period=120,min=0,max=100", "f64"),
        ("walk:step=0.5,min=0,max=100", "f64"),
        ("square:period=30", "bool"),
        ("counter", "i64"),
    ];
    let mut doc = String::with_capacity(devices * (120 + tags * 80));
    for d in 0..devices {
        doc.push_str(&format!(
            "[[devices]]\nname = \"dev-{d:05}\"\npoll_ms = 1000\ndriver = {{ protocol = \"sim\", seed = {d} }}\n\n"
        ));
        for t in 0..tags {
            let (address, data_type) = SIGNALS[t % SIGNALS.len()];
            doc.push_str(&format!(
                "[[devices.tags]]\nname = \"t{t:03}\"\naddress = \"{address}\"\ndata_type = \"{data_type}\"\n\n"
            ));
        }
    }
    doc
}

async fn timed<T>(
    f: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, f64)> {
    let t0 = Instant::now();
    let v = f.await?;
    Ok((v, t0.elapsed().as_secs_f64() * 1000.0))
}

async fn online(c: &Client) -> anyhow::Result<u64> {
    let d = c
        .gql("{deviceCount(filter: {status: ONLINE})}", json!({}))
        .await?;
    Ok(d["deviceCount"].as_u64().unwrap_or(0))
}

/// One run's figures, in milliseconds.
struct Run {
    dry: f64,
    import: f64,
    online: f64,
    export: f64,
    reimport: f64,
    update_p50: f64,
}

async fn run_once(store: Option<&str>, devices: usize, tags: usize) -> anyhow::Result<Run> {
    forget_tenant(store).await?;
    let dir = tempfile::tempdir()?;
    let mut config = parse_str("", "import benchmark")?;
    config.storage.url = match store {
        Some(url) => url.to_string(),
        None => format!("sqlite:{}", dir.path().join("import.db").display()),
    };
    config.auth.jwt_secret = Some(SECRET.into());
    config.server.max_body_bytes = 256 * 1024 * 1024;
    config.server.request_timeout_secs = 600;
    config.api.user_requests_per_sec = 100_000;
    // The historian keeps nothing here: the figures are the configuration's.
    config.historian.batch_size = 1;
    config.historian.max_buffered_samples = 1;
    let started = start_server(
        config,
        (TENANT, ADMIN, PASSWORD, Role::Admin),
        0,
        Duration::from_secs(120),
        Duration::from_secs(5),
    )
    .await?;
    let c = &started.client;
    let doc = document(devices, tags);
    let vars = |mode: &str, dry: bool| json!({"d": doc, "m": mode, "dry": dry});

    let (report, dry) = timed(c.gql(IMPORT, vars("MERGE", true))).await?;
    anyhow::ensure!(
        report["importConfig"]["created"].as_u64() == Some((devices * (1 + tags)) as u64),
        "dry run: {report}"
    );
    let (report, import) = timed(c.gql(IMPORT, vars("MERGE", false))).await?;
    anyhow::ensure!(
        report["importConfig"]["applied"] == true,
        "import: {report}"
    );
    let t0 = Instant::now();
    while online(c).await? < devices as u64 {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(300),
            "devices not online after 300 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let online_ms = import + t0.elapsed().as_secs_f64() * 1000.0;
    let (exported, export) = timed(c.gql("{ exportConfig }", json!({}))).await?;
    let text = exported["exportConfig"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (report, reimport) =
        timed(c.gql(IMPORT, json!({"d": text, "m": "REPLACE", "dry": false}))).await?;
    let r = &report["importConfig"];
    anyhow::ensure!(
        r["created"] == 0 && r["updated"] == 0 && r["deleted"] == 0,
        "re-import changed something: {report}"
    );
    let ids = c.gql("{devices(first: 20){id}}", json!({})).await?;
    let mut updates = Vec::new();
    for (i, d) in ids["devices"].as_array().into_iter().flatten().enumerate() {
        let (_, ms) = timed(c.gql(
            "mutation($d: ID!, $p: Int!) { updateDevice(id: $d, input: { pollMs: $p }) { pollMs } }",
            json!({"d": d["id"], "p": 1000 + i}),
        ))
        .await?;
        updates.push(ms);
    }
    updates.sort_by(f64::total_cmp);
    let update_p50 = updates.get(updates.len() / 2).copied().unwrap_or(f64::NAN);
    stop_server(started.stop, started.task, Duration::from_secs(60)).await;
    forget_tenant(store).await?;
    Ok(Run {
        dry,
        import,
        online: online_ms,
        export,
        reimport,
        update_p50,
    })
}

/// On a shared database, removes the benchmark's tenant (before a run, after one).
async fn forget_tenant(store: Option<&str>) -> anyhow::Result<()> {
    if let Some(url) = store {
        let s = thermacore::storage::connect(url, 1).await?;
        s.migrate().await?;
        if let Some(t) = s.tenant_by_name(TENANT).await? {
            s.delete_tenant(t.id).await?;
        }
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub async fn run(
    store: Option<String>,
    devices: usize,
    tags: usize,
    runs: usize,
) -> anyhow::Result<()> {
    let mut all = Vec::new();
    for i in 0..runs.max(1) {
        let r = run_once(store.as_deref(), devices, tags).await?;
        println!(
            "import run={} devices={devices} tags/device={tags} dry_ms={:.0} import_ms={:.0} online_ms={:.0} export_ms={:.0} reimport_ms={:.0} update_p50_ms={:.1}",
            i + 1,
            r.dry,
            r.import,
            r.online,
            r.export,
            r.reimport,
            r.update_p50
        );
        all.push(r);
    }
    let m = |f: fn(&Run) -> f64| median(all.iter().map(f).collect());
    println!(
        "import median of {} devices={devices} tags/device={tags} store={} dry_ms={:.0} import_ms={:.0} online_ms={:.0} export_ms={:.0} reimport_ms={:.0} update_p50_ms={:.1}",
        all.len(),
        if store.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        m(|r| r.dry),
        m(|r| r.import),
        m(|r| r.online),
        m(|r| r.export),
        m(|r| r.reimport),
        m(|r| r.update_p50)
    );
    Ok(())
}

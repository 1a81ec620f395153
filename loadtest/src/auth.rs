//! The per-request cost of the security path every GraphQL request takes: verifying
//! the JWT (HS256, claims), the revocation gate (user, tenant, session), and the rate
//! limiters (user and tenant, governor). One thread, in-process, no HTTP.

use std::time::{Duration, Instant};

use thermacore::api::auth::{AuthKeys, hash_password};
use thermacore::api::gate::Gate;
use thermacore::api::limits::Limits;
use thermacore::config::{ApiConfig, AuthConfig};
use thermacore::domain::{Quotas, Role};
use thermacore::storage;

fn per_op(d: Duration, n: u64) -> f64 {
    d.as_nanos() as f64 / n as f64
}

pub async fn run(iterations: u64) -> anyhow::Result<()> {
    let store = storage::connect("sqlite::memory:", 1).await?;
    store.migrate().await?;
    let tenant = store.upsert_tenant("bench").await?;
    let user = store
        .create_user(
            tenant.id,
            "bench",
            &hash_password("bench password")?,
            Role::Operator,
        )
        .await?;
    let auth = AuthConfig::default();
    let keys = AuthKeys::new("a-benchmark-secret-of-enough-length!", &auth)?;
    let (token, _) = keys.issue(&user, &tenant.name, Some("family"))?;
    let header = format!("Bearer {token}");
    let gate = Gate::load(
        store.clone(),
        Quotas::default(),
        Duration::from_secs(auth.access_token_ttl_secs),
    )
    .await?;
    // Limits far above what one thread can reach: their bookkeeping is measured, not
    // their refusals.
    let api = ApiConfig {
        user_requests_per_sec: 1_000_000_000,
        ..ApiConfig::default()
    };
    let limits = Limits::new(&api, &auth);
    let tenant_rps = 1_000_000_000;

    let session = keys.verify_header(Some(&header))?;
    let t0 = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(keys.verify_header(Some(std::hint::black_box(&header)))?);
    }
    let verify = t0.elapsed();
    let t0 = Instant::now();
    for _ in 0..iterations {
        gate.check(std::hint::black_box(&session)).await?;
    }
    let gate_time = t0.elapsed();
    let t0 = Instant::now();
    for _ in 0..iterations {
        if limits
            .request(session.user, session.tenant, tenant_rps)
            .is_err()
        {
            anyhow::bail!("rate limited during the benchmark");
        }
    }
    let limit_time = t0.elapsed();
    let t0 = Instant::now();
    for _ in 0..iterations {
        let s = keys.verify_header(Some(std::hint::black_box(&header)))?;
        gate.check(&s).await?;
        if limits.request(s.user, s.tenant, tenant_rps).is_err() {
            anyhow::bail!("rate limited during the benchmark");
        }
    }
    let total = t0.elapsed();
    println!(
        "auth path, {iterations} requests on one thread: verify {:.0} ns, gate {:.0} ns, limits {:.0} ns; together {:.0} ns/request ({:.0} requests/s per core)",
        per_op(verify, iterations),
        per_op(gate_time, iterations),
        per_op(limit_time, iterations),
        per_op(total, iterations),
        iterations as f64 / total.as_secs_f64(),
    );
    Ok(())
}

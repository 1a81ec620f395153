//! Conformance, part three: tenant administration, users, refresh tokens, the audit log
//! and retention, on every backend.

use thermacore::domain::{
    AuditFilter, AuditOutcome, AuditRecord, Quality, QuotaOverrides, RefreshToken, RefreshUse,
    Role, Sample, TagId, TenantId, Timestamp, UserId, Value,
};
use thermacore::storage::{Error, Store, StoredSample, UserChange};

use super::world::World;

fn record(tenant: Option<TenantId>, action: &str, outcome: AuditOutcome, at: i64) -> AuditRecord {
    AuditRecord {
        id: 0,
        at: Timestamp(at),
        tenant,
        tenant_name: tenant.map(|t| format!("t{t}")),
        user: Some(UserId(1)),
        username: Some("ann".into()),
        action: action.into(),
        resource_type: "user".into(),
        resource_id: Some("7".into()),
        outcome,
        reason: (outcome != AuditOutcome::Success).then(|| "FORBIDDEN".into()),
        request_id: Some(format!("r-{at}")),
        client_addr: Some("127.0.0.1".into()),
        summary: r#"{"password":"***"}"#.into(),
        changes: (action == "Mutation.updateDevice")
            .then(|| r#"[{"kind":"device","op":"update"}]"#.into()),
    }
}

pub async fn security(store: &dyn Store, w: &World) {
    tenants(store, w).await;
    users(store, w).await;
    refresh_tokens(store, w).await;
    audit(store, w).await;
    retention(store, w).await;
}

async fn tenants(store: &dyn Store, w: &World) {
    let records = store.tenant_records().await.expect("records");
    let a = records.iter().find(|r| r.tenant.id == w.a.id).expect("a");
    assert!(!a.disabled);
    assert_eq!(a.quotas, QuotaOverrides::default());

    let q = QuotaOverrides {
        max_devices: Some(3),
        history_retention_days: Some(0),
        ..QuotaOverrides::default()
    };
    let c = store.create_tenant("carbon", &q).await.expect("create");
    assert_eq!(c.quotas, q);
    assert!(matches!(
        store.create_tenant("carbon", &q).await,
        Err(Error::Conflict(_))
    ));
    let d = store
        .set_tenant_disabled(c.tenant.id, true)
        .await
        .expect("disable")
        .expect("exists");
    assert!(d.disabled);
    let q2 = QuotaOverrides {
        max_tags: Some(9),
        ..q
    };
    let e = store
        .set_tenant_quotas(c.tenant.id, &q2)
        .await
        .expect("quotas")
        .expect("exists");
    assert_eq!((e.quotas, e.disabled), (q2, true));
    assert_eq!(
        store.tenant_record(c.tenant.id).await.expect("read"),
        Some(e)
    );
    assert!(
        store
            .set_tenant_disabled(TenantId(987_654), true)
            .await
            .expect("no error")
            .is_none()
    );
    let counts = store.tenant_counts(w.a.id).await.expect("counts");
    assert!(counts.devices >= 1 && counts.tags >= 4, "{counts:?}");

    // Deleting a tenant removes what it owns, history included, and keeps its audit.
    let user = store
        .create_user(c.tenant.id, "u", "h", Role::Admin)
        .await
        .expect("user");
    store
        .append_audit(&record(
            Some(c.tenant.id),
            "Mutation.x",
            AuditOutcome::Success,
            5,
        ))
        .await
        .expect("audit");
    store
        .insert_samples(&[StoredSample {
            tenant: c.tenant.id,
            sample: Sample {
                tag: TagId(1),
                value: Value::F64(1.0),
                quality: Quality::Good,
                source_time: Timestamp(10),
                server_time: Timestamp(10),
            },
        }])
        .await
        .expect("sample");
    assert!(store.delete_tenant(c.tenant.id).await.expect("delete"));
    assert!(!store.delete_tenant(c.tenant.id).await.expect("twice"));
    assert_eq!(store.count_samples(c.tenant.id).await.expect("count"), 0);
    assert!(
        store
            .user_by_id(c.tenant.id, user.id)
            .await
            .expect("q")
            .is_none()
    );
    let kept = store
        .audit_log(Some(c.tenant.id), &AuditFilter::default(), None, 10)
        .await
        .expect("audit");
    assert_eq!(kept.len(), 1, "audit outlives its tenant");
}

async fn users(store: &dyn Store, w: &World) {
    let u = store
        .create_user(w.a.id, "dora", "h1", Role::Operator)
        .await
        .expect("user");
    assert!(!u.dev_credential);
    assert_eq!(u.tokens_valid_after_ms, 0);
    store
        .mark_dev_credential(w.a.id, "dora")
        .await
        .expect("mark");
    let dev = store.dev_credentials().await.expect("dev");
    assert!(
        dev.contains(&(w.a.name.clone(), "dora".to_string())),
        "{dev:?}"
    );

    let changed = store
        .update_user(
            w.a.id,
            u.id,
            &UserChange {
                role: Some(Role::Viewer),
                disabled: Some(true),
                password_hash: Some("h2".into()),
                revoke_tokens_at_ms: Some(1_000),
            },
        )
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(
        (
            changed.role,
            changed.disabled,
            changed.password_hash.as_str()
        ),
        (Role::Viewer, true, "h2")
    );
    assert_eq!(changed.tokens_valid_after_ms, 1_000);
    assert!(
        !changed.dev_credential,
        "a new password is no longer the dev one"
    );
    // The revocation instant only moves forward; None fields stay.
    let again = store
        .update_user(
            w.a.id,
            u.id,
            &UserChange {
                revoke_tokens_at_ms: Some(500),
                ..UserChange::default()
            },
        )
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(
        (again.tokens_valid_after_ms, again.role, again.disabled),
        (1_000, Role::Viewer, true)
    );
    // Another tenant's user is not found.
    assert!(
        store
            .update_user(w.b.id, u.id, &UserChange::default())
            .await
            .expect("q")
            .is_none()
    );
    assert!(!store.delete_user(w.b.id, u.id).await.expect("q"));
    let states = store.user_states().await.expect("states");
    let s = states.iter().find(|s| s.user == u.id).expect("state");
    assert_eq!(
        (s.tenant, s.disabled, s.tokens_valid_after_ms),
        (w.a.id, true, 1_000)
    );
    assert!(
        store
            .users(w.a.id)
            .await
            .expect("users")
            .iter()
            .any(|x| x.id == u.id)
    );
    assert!(
        !store
            .users(w.b.id)
            .await
            .expect("users")
            .iter()
            .any(|x| x.id == u.id)
    );
    assert!(store.delete_user(w.a.id, u.id).await.expect("delete"));
}

async fn refresh_tokens(store: &dyn Store, w: &World) {
    let u = store
        .create_user(w.a.id, "rita", "h", Role::Viewer)
        .await
        .expect("user");
    let token = |hash: &str, family: &str, expires: i64| RefreshToken {
        token_hash: hash.into(),
        family: family.into(),
        user: u.id,
        tenant: w.a.id,
        issued_at: Timestamp(100),
        expires_at: Timestamp(expires),
    };
    store
        .insert_refresh_token(&token("h1", "f1", 1_000))
        .await
        .expect("insert");
    store
        .insert_refresh_token(&token("h2", "f1", 1_000))
        .await
        .expect("insert");
    store
        .insert_refresh_token(&token("h3", "f2", 150))
        .await
        .expect("insert");
    assert!(
        store
            .insert_refresh_token(&token("h1", "f9", 1))
            .await
            .is_err()
    );
    let now = Timestamp(200);
    assert_eq!(
        store.use_refresh_token("h1", now).await.expect("use"),
        RefreshUse::Fresh(token("h1", "f1", 1_000))
    );
    assert!(matches!(
        store.use_refresh_token("h1", now).await.expect("reuse"),
        RefreshUse::Reused(_)
    ));
    assert!(matches!(
        store.use_refresh_token("h3", now).await.expect("expired"),
        RefreshUse::Expired(_)
    ));
    assert_eq!(
        store.use_refresh_token("nope", now).await.expect("unknown"),
        RefreshUse::Unknown
    );
    assert_eq!(
        store
            .revoke_refresh_family("f1", Timestamp(300))
            .await
            .expect("revoke"),
        2
    );
    assert!(matches!(
        store.use_refresh_token("h2", now).await.expect("revoked"),
        RefreshUse::Reused(_)
    ));
    let fams = store
        .revoked_families(Timestamp(250))
        .await
        .expect("families");
    assert_eq!(fams, vec!["f1".to_string()]);
    assert!(
        store
            .revoked_families(Timestamp(301))
            .await
            .expect("families")
            .is_empty()
    );
    assert_eq!(
        store
            .revoke_user_refresh_tokens(u.id, Timestamp(400))
            .await
            .expect("revoke user"),
        1,
        "only f2's token was still unrevoked"
    );
    assert_eq!(
        store
            .purge_refresh_tokens(Timestamp(1_500))
            .await
            .expect("purge"),
        3
    );
    // Deleting the user removes their tokens.
    store
        .insert_refresh_token(&token("h4", "f3", 10_000))
        .await
        .expect("insert");
    assert!(store.delete_user(w.a.id, u.id).await.expect("delete"));
    assert_eq!(
        store.use_refresh_token("h4", now).await.expect("gone"),
        RefreshUse::Unknown
    );
}

async fn audit(store: &dyn Store, w: &World) {
    let base = 1_000_000;
    for i in 0..5 {
        let outcome = if i % 2 == 0 {
            AuditOutcome::Success
        } else {
            AuditOutcome::Denied
        };
        store
            .append_audit(&record(
                Some(w.a.id),
                "Mutation.createUser",
                outcome,
                base + i,
            ))
            .await
            .expect("append");
    }
    store
        .append_audit(&record(
            Some(w.b.id),
            "Mutation.login",
            AuditOutcome::Failed,
            base + 10,
        ))
        .await
        .expect("append");
    store
        .append_audit(&record(
            None,
            "Mutation.login",
            AuditOutcome::Denied,
            base + 11,
        ))
        .await
        .expect("append");
    // A configuration change keeps its objects before and after.
    let change = store
        .append_audit(&record(
            Some(w.b.id),
            "Mutation.updateDevice",
            AuditOutcome::Success,
            base + 12,
        ))
        .await
        .expect("append");
    let of_b = store
        .audit_log(Some(w.b.id), &AuditFilter::default(), None, 100)
        .await
        .expect("read b");
    let stored = of_b.iter().find(|r| r.id == change).expect("the change");
    assert_eq!(
        stored.changes.as_deref(),
        Some(r#"[{"kind":"device","op":"update"}]"#)
    );
    assert!(
        of_b.iter()
            .filter(|r| r.id != change)
            .all(|r| r.changes.is_none())
    );

    let all_a = store
        .audit_log(Some(w.a.id), &AuditFilter::default(), None, 100)
        .await
        .expect("read");
    let mine: Vec<_> = all_a.iter().filter(|r| r.at.0 >= base).collect();
    assert_eq!(mine.len(), 5, "tenant-scoped");
    assert!(all_a.windows(2).all(|p| p[0].id > p[1].id), "newest first");
    assert_eq!(mine[0].summary, r#"{"password":"***"}"#);
    assert_eq!(mine[0].client_addr.as_deref(), Some("127.0.0.1"));
    // Paging by cursor.
    let page1 = store
        .audit_log(Some(w.a.id), &AuditFilter::default(), None, 2)
        .await
        .expect("p1");
    let page2 = store
        .audit_log(Some(w.a.id), &AuditFilter::default(), Some(page1[1].id), 2)
        .await
        .expect("p2");
    assert!(page2[0].id < page1[1].id);
    // Filters.
    let denied = store
        .audit_log(
            Some(w.a.id),
            &AuditFilter {
                outcome: Some(AuditOutcome::Denied),
                action: Some("Mutation.createUser".into()),
                from: Some(Timestamp(base)),
                to: Some(Timestamp(base + 4)),
                ..AuditFilter::default()
            },
            None,
            100,
        )
        .await
        .expect("filtered");
    assert_eq!(
        denied.iter().map(|r| r.at.0 - base).collect::<Vec<_>>(),
        vec![3, 1]
    );
    // Every tenant, and records naming none, for platform administrators.
    let everything = store
        .audit_log(None, &AuditFilter::default(), None, 1000)
        .await
        .expect("all");
    assert!(everything.iter().any(|r| r.tenant.is_none()));
    assert!(everything.iter().any(|r| r.tenant == Some(w.b.id)));
    // Retention of the audit log is its own.
    let purged = store.purge_audit(Timestamp(base + 3)).await.expect("purge");
    assert!(purged >= 3, "{purged}");
}

async fn retention(store: &dyn Store, w: &World) {
    let sample = |tenant: TenantId, ts: i64| StoredSample {
        tenant,
        sample: Sample {
            tag: TagId(777_777),
            value: Value::F64(1.0),
            quality: Quality::Good,
            source_time: Timestamp(ts),
            server_time: Timestamp(ts),
        },
    };
    store
        .insert_samples(&[
            sample(w.a.id, 1_000),
            sample(w.a.id, 3_000),
            sample(w.b.id, 1_000),
        ])
        .await
        .expect("insert");
    let deleted = store
        .delete_history_before(w.a.id, Timestamp(2_000))
        .await
        .expect("retention");
    assert!(deleted >= 1, "{deleted}");
    let a = store
        .history(
            w.a.id,
            &[TagId(777_777)],
            Timestamp(0),
            Timestamp(5_000),
            10,
        )
        .await
        .expect("a");
    assert_eq!(a.len(), 1, "only the newer sample is kept: {a:?}");
    let b = store
        .history(
            w.b.id,
            &[TagId(777_777)],
            Timestamp(0),
            Timestamp(5_000),
            10,
        )
        .await
        .expect("b");
    assert_eq!(b.len(), 1, "another tenant's history is untouched");
}

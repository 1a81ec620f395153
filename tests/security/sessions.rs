//! Sessions: refresh rotation and replay, revocation, passwords, bad tokens, brute
//! force, WebSocket closes.

use super::*;

#[tokio::test]
async fn refresh_tokens_rotate_and_a_replay_revokes_the_session() {
    let (s, _dir) = start().await;
    let (access, refresh) = login_pair(&s, "alpha", "operator", PASSWORD).await;
    // Rotation: the new pair works, the old refresh token is spent.
    let r = s.gql(None, REFRESH, json!({"r": refresh})).await;
    let access2 = r["data"]["refresh"]["accessToken"]
        .as_str()
        .expect("access")
        .to_string();
    let refresh2 = r["data"]["refresh"]["refreshToken"]
        .as_str()
        .expect("refresh")
        .to_string();
    assert_ne!(refresh2, refresh);
    s.data(&access2, "{me{username}}", json!({})).await;
    // Replaying the spent token: refused, and the whole session is revoked.
    let replay = s.gql(None, REFRESH, json!({"r": refresh})).await;
    assert_eq!(code(&replay), "UNAUTHENTICATED", "{replay}");
    for t in [&access, &access2] {
        let r = s.gql(Some(t), "{me{username}}", json!({})).await;
        assert_eq!(code(&r), "UNAUTHENTICATED", "{r}");
    }
    let r = s.gql(None, REFRESH, json!({"r": refresh2})).await;
    assert_eq!(
        code(&r),
        "UNAUTHENTICATED",
        "the newest token of the family is revoked too: {r}"
    );
    // Another login of the same user is a separate session and unaffected.
    let (other, other_refresh) = login_pair(&s, "alpha", "operator", PASSWORD).await;
    s.data(&other, "{me{username}}", json!({})).await;
    // Logout ends that session.
    let out = s
        .data(
            &other,
            "mutation($r:String!){logout(refreshToken:$r)}",
            json!({"r": other_refresh}),
        )
        .await;
    assert_eq!(out["logout"], true);
    let r = s.gql(Some(&other), "{me{username}}", json!({})).await;
    assert_eq!(code(&r), "UNAUTHENTICATED", "{r}");
    // The audit log has the replay.
    let admin = s.login("alpha", "admin").await;
    let log = s
        .data(
            &admin,
            r#"{auditLog(filter:{action:"Mutation.refresh", outcome: DENIED}){records{reason}}}"#,
            json!({}),
        )
        .await;
    let reasons = log["auditLog"]["records"].to_string();
    assert!(reasons.contains("refresh_token_reuse"), "{reasons}");
}

#[tokio::test]
async fn disabled_deleted_and_demoted_users_lose_their_tokens_at_once() {
    let (s, _dir) = start().await;
    let admin = s.login("alpha", "admin").await;
    let viewer = s.login("alpha", "viewer").await;
    let operator = s.login("alpha", "operator").await;
    let users = s.data(&admin, "{users{id username}}", json!({})).await;
    let id_of = |name: &str| {
        users["users"]
            .as_array()
            .expect("users")
            .iter()
            .find(|u| u["username"] == name)
            .and_then(|u| u["id"].as_str())
            .expect("id")
            .to_string()
    };
    // Disable: the very next request is refused.
    s.data(
        &admin,
        "mutation($id:ID!){updateUser(id:$id, disabled:true){disabled}}",
        json!({"id": id_of("viewer")}),
    )
    .await;
    let r = s.gql(Some(&viewer), "{me{username}}", json!({})).await;
    assert_eq!(code(&r), "UNAUTHENTICATED", "{r}");
    let r = s
        .gql(
            None,
            LOGIN,
            json!({"t": "alpha", "u": "viewer", "p": PASSWORD}),
        )
        .await;
    assert_eq!(code(&r), "UNAUTHENTICATED", "{r}");
    // Demote: the old token (with the old role) stops; a new login has the new role.
    s.data(
        &admin,
        "mutation($id:ID!){updateUser(id:$id, role:VIEWER){role}}",
        json!({"id": id_of("operator")}),
    )
    .await;
    let r = s.gql(Some(&operator), "{me{role}}", json!({})).await;
    assert_eq!(code(&r), "UNAUTHENTICATED", "{r}");
    let fresh = s.login("alpha", "operator").await;
    assert_eq!(
        s.data(&fresh, "{me{role}}", json!({})).await["me"]["role"],
        "VIEWER"
    );
    // Delete: the token stops.
    s.data(
        &admin,
        "mutation($id:ID!){deleteUser(id:$id)}",
        json!({"id": id_of("operator")}),
    )
    .await;
    let r = s.gql(Some(&fresh), "{me{role}}", json!({})).await;
    assert_eq!(code(&r), "UNAUTHENTICATED", "{r}");
    // An admin cannot lock themselves out.
    let me = s.data(&admin, "{me{id}}", json!({})).await;
    let r = s
        .gql(
            Some(&admin),
            "mutation($id:ID!){deleteUser(id:$id)}",
            json!({"id": me["me"]["id"]}),
        )
        .await;
    assert_eq!(code(&r), "BAD_USER_INPUT", "{r}");
}

#[tokio::test]
async fn changing_the_password_ends_every_other_session() {
    let (s, _dir) = start().await;
    let (a, _) = login_pair(&s, "alpha", "viewer", PASSWORD).await;
    let (b, b_refresh) = login_pair(&s, "alpha", "viewer", PASSWORD).await;
    let short = s
        .gql(Some(&a), "mutation{changePassword(currentPassword:\"correct horse battery\", newPassword:\"short\"){accessToken}}", json!({}))
        .await;
    assert_eq!(code(&short), "BAD_USER_INPUT", "{short}");
    let wrong = s
        .gql(Some(&a), "mutation{changePassword(currentPassword:\"nope\", newPassword:\"a brand new password\"){accessToken}}", json!({}))
        .await;
    assert_eq!(code(&wrong), "BAD_USER_INPUT", "{wrong}");
    let ok = s
        .data(&a, "mutation($c:String!){changePassword(currentPassword:$c, newPassword:\"a brand new password\"){accessToken}}", json!({"c": PASSWORD}))
        .await;
    let new_token = ok["changePassword"]["accessToken"].as_str().expect("token");
    s.data(new_token, "{me{username}}", json!({})).await;
    for t in [&a, &b] {
        assert_eq!(
            code(&s.gql(Some(t), "{me{username}}", json!({})).await),
            "UNAUTHENTICATED"
        );
    }
    assert_eq!(
        code(&s.gql(None, REFRESH, json!({"r": b_refresh})).await),
        "UNAUTHENTICATED"
    );
    login_pair(&s, "alpha", "viewer", "a brand new password").await;
}

#[tokio::test]
async fn bad_tokens_are_refused_and_tampered_ones_audited() {
    use base64::Engine;
    let (s, _dir) = start().await;
    let viewer = s.login("alpha", "viewer").await;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = viewer.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&b64.decode(parts[1]).expect("b64")).expect("json");
    // Tampered: role raised, signature kept.
    claims["role"] = json!("admin");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    // alg none.
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(claims.to_string())
    );
    // Signed with the right secret, but expired, not yet valid, for another audience,
    // or with another algorithm than the pinned HS256.
    let now = chrono::Utc::now().timestamp();
    let forge = |alg: jsonwebtoken::Algorithm, change: &dyn Fn(&mut Value)| {
        let mut c =
            serde_json::from_slice::<Value>(&b64.decode(parts[1]).expect("b64")).expect("json");
        change(&mut c);
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(alg),
            &c,
            &jsonwebtoken::EncodingKey::from_secret(server::SECRET.as_bytes()),
        )
        .expect("encode")
    };
    use jsonwebtoken::Algorithm::{HS256, HS512};
    let expired = forge(HS256, &|c| {
        c["exp"] = json!(now - 60);
        c["nbf"] = json!(now - 120);
    });
    let early = forge(HS256, &|c| c["nbf"] = json!(now + 60));
    let audience = forge(HS256, &|c| c["aud"] = json!("elsewhere"));
    let hs512 = forge(HS512, &|_| {});
    let r = s.gql(Some(&expired), "{devices{id}}", json!({})).await;
    assert_eq!(code(&r), "UNAUTHENTICATED", "expired: {r}");
    for (what, token) in [
        ("tampered", tampered.as_str()),
        ("alg none", none.as_str()),
        ("garbage", "abc.def.ghi"),
        ("not yet valid", early.as_str()),
        ("wrong audience", audience.as_str()),
        ("HS512", hs512.as_str()),
    ] {
        let r = post_with_id(&s, Some(token), "{devices{id}}", &format!("bad-{what}")).await;
        assert_eq!(code(&r), "UNAUTHENTICATED", "{what}: {r}");
        assert!(r["data"].is_null() || r["data"]["devices"].is_null(), "{r}");
        let msg = r["errors"][0]["message"].as_str().unwrap_or("");
        assert_eq!(msg, "authentication required", "no detail leaks: {r}");
        assert_eq!(
            r["errors"][0]["extensions"]["requestId"],
            format!("bad-{what}")
        );
    }
    let platform = s.login("system", "platform").await;
    let log = s
        .data(&platform, r#"{auditLog(first: 100, allTenants: true, filter:{outcome: DENIED}){records{requestId reason action}}}"#, json!({}))
        .await;
    let text = log.to_string();
    for what in [
        "tampered",
        "alg none",
        "not yet valid",
        "wrong audience",
        "HS512",
    ] {
        assert!(text.contains(&format!("bad-{what}")), "{what}: {text}");
    }
}

#[tokio::test]
async fn repeated_failed_logins_lock_the_account_out_with_growing_delays() {
    let (s, _dir) = start_with(|c| {
        c.auth.lockout_initial_ms = 1_500;
        c.auth.lockout_max_secs = 60;
        c.api.anonymous_requests_per_sec = 1_000;
    })
    .await;
    let mut codes = Vec::new();
    let mut retry = None;
    for _ in 0..50 {
        let r = s
            .gql(
                None,
                LOGIN,
                json!({"t": "alpha", "u": "admin", "p": "wrong"}),
            )
            .await;
        let c = code(&r);
        if c == "RATE_LIMITED" {
            retry = r["errors"][0]["extensions"]["retryAfterMs"].as_u64();
        }
        codes.push(c);
    }
    assert!(
        codes[..5].iter().all(|c| c == "UNAUTHENTICATED"),
        "{codes:?}"
    );
    assert!(codes[5..].iter().all(|c| c == "RATE_LIMITED"), "{codes:?}");
    let retry = retry.expect("a retry hint");
    assert!(retry > 0 && retry <= 1_500, "{retry}");
    // Even the right password is refused while locked.
    let r = s
        .gql(
            None,
            LOGIN,
            json!({"t": "alpha", "u": "admin", "p": PASSWORD}),
        )
        .await;
    assert_eq!(code(&r), "RATE_LIMITED", "{r}");
    assert!(s.metric_sum("thermacore_login_lockouts_total", "").await >= 1.0);
    assert!(
        s.metric_sum("thermacore_rate_limited_total", "limit=\"login\"")
            .await
            >= 45.0
    );
    // After the lockout, the right password works; the lockout is in the audit log.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let admin = s.login("alpha", "admin").await;
    let log = s
        .data(
            &admin,
            r#"{auditLog(first: 100, filter:{action:"Mutation.login"}){records{outcome reason}}}"#,
            json!({}),
        )
        .await;
    let text = log.to_string();
    assert!(text.contains("lockout_started"), "{text}");
    assert!(text.contains("locked_out"), "{text}");
}

#[tokio::test]
async fn a_websocket_closes_with_4403_when_its_token_expires_or_is_revoked() {
    let (s, _dir) = start_with(|c| c.auth.access_token_ttl_secs = 2).await;
    let viewer = s.login("alpha", "viewer").await;
    let ids = s.tag_ids(&viewer).await;
    let (mut ws, ack) = WsClient::connect(s.addr, &viewer).await;
    assert_eq!(ack["type"], "connection_ack");
    ws.subscribe(
        "1",
        "subscription($t:[ID!]){tagValues(tagIds:$t){tagId}}",
        json!({"t": [ids["a-temp"]]}),
    )
    .await;
    let closed = loop {
        let m = ws.next(Duration::from_secs(6)).await;
        if m["type"] == "closed" || m["type"] == "timeout" {
            break m;
        }
    };
    assert_eq!(closed["code"], 4403, "{closed}");

    // Revocation: disabling the user closes their socket within about a second.
    let (s2, _dir2) = start().await;
    let admin = s2.login("alpha", "admin").await;
    let op = s2.login("alpha", "operator").await;
    let ids = s2.tag_ids(&op).await;
    let (mut ws, _) = WsClient::connect(s2.addr, &op).await;
    ws.subscribe(
        "1",
        "subscription($t:[ID!]){tagValues(tagIds:$t){tagId}}",
        json!({"t": [ids["a-temp"]]}),
    )
    .await;
    assert_eq!(ws.next(Duration::from_secs(5)).await["type"], "next");
    let users = s2.data(&admin, "{users{id username}}", json!({})).await;
    let id = id_where(&users["users"], "username", "operator");
    s2.data(
        &admin,
        "mutation($id:ID!){updateUser(id:$id, disabled:true){id}}",
        json!({"id": id}),
    )
    .await;
    let closed = loop {
        let m = ws.next(Duration::from_secs(5)).await;
        if m["type"] == "closed" || m["type"] == "timeout" {
            break m;
        }
    };
    assert_eq!(closed["code"], 4403, "{closed}");
}

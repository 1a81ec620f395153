use super::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn user() -> User {
    User {
        id: UserId(7),
        tenant: TenantId(3),
        username: "ann".into(),
        password_hash: String::new(),
        role: Role::Operator,
        disabled: false,
        tokens_valid_after_ms: 0,
        dev_credential: false,
    }
}

fn keys() -> AuthKeys {
    AuthKeys::new(SECRET, &AuthConfig::default()).expect("keys")
}

#[test]
fn tokens_round_trip_into_a_session() {
    let k = keys();
    let (token, ttl) = k.issue(&user(), "acme", None).expect("issue");
    assert_eq!(ttl, 900);
    let s = k
        .verify_header(Some(&format!("Bearer {token}")))
        .expect("verify");
    assert_eq!(
        (s.user, s.tenant, s.role),
        (UserId(7), TenantId(3), Role::Operator)
    );
    assert_eq!(s.tenant_name, "acme");
}

#[test]
fn tampered_foreign_expired_and_unsigned_tokens_are_refused() {
    let k = keys();
    let (token, _) = k.issue(&user(), "acme", None).expect("issue");
    // tampered payload
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    parts[1] = parts[1].chars().rev().collect();
    assert!(matches!(
        k.verify(&parts.join(".")),
        Err(AuthError::InvalidToken(_))
    ));
    // other secret
    let other =
        AuthKeys::new("another-secret-another-secret-xx", &AuthConfig::default()).expect("keys");
    assert!(other.verify(&token).is_err());
    // other audience
    let aud = AuthConfig {
        audience: "elsewhere".into(),
        ..AuthConfig::default()
    };
    assert!(
        AuthKeys::new(SECRET, &aud)
            .expect("keys")
            .verify(&token)
            .is_err()
    );
    // expired
    let short = AuthConfig {
        access_token_ttl_secs: 1,
        ..AuthConfig::default()
    };
    let kk = AuthKeys::new(SECRET, &short).expect("keys");
    assert!(kk.issue(&user(), "acme", None).is_ok());
    let now = chrono::Utc::now().timestamp();
    let expired = Claims {
        sub: "7".into(),
        tid: 3,
        tname: "acme".into(),
        usr: "ann".into(),
        role: Role::Admin,
        iss: "thermacore".into(),
        aud: "thermacore-api".into(),
        iat: now - 100,
        nbf: now - 100,
        exp: now - 60,
        jti: "x".into(),
        ims: (now - 100) * 1000,
        fam: None,
    };
    let claims_token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &expired,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("enc");
    assert_eq!(k.verify(&claims_token), Err(AuthError::Expired));
    // not yet valid (nbf a minute ahead, beyond the 5 s leeway)
    let early = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &Claims {
            nbf: now + 60,
            exp: now + 600,
            ..expired.clone()
        },
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("enc");
    assert!(matches!(k.verify(&early), Err(AuthError::InvalidToken(_))));
    // alg none
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64.encode(
        serde_json::to_vec(&Claims {
            exp: now + 600,
            nbf: now,
            ..expired.clone()
        })
        .expect("json"),
    );
    assert!(k.verify(&format!("{header}.{payload}.")).is_err());
    // HS512 signed with the right secret is still refused: the algorithm is pinned
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &Claims {
            exp: now + 600,
            ..expired
        },
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("enc");
    assert!(k.verify(&hs512).is_err());
    assert_eq!(k.verify_header(None), Err(AuthError::Missing));
    assert!(k.verify_header(Some("Basic abc")).is_err());
}

#[test]
fn weak_secrets_are_refused() {
    assert!(matches!(
        AuthKeys::new("short", &AuthConfig::default()),
        Err(AuthError::WeakSecret)
    ));
}

#[test]
fn passwords_hash_with_argon2id_and_verify() {
    let h = hash_password("correct horse").expect("hash");
    assert!(h.starts_with("$argon2id$"));
    assert!(verify_password("correct horse", &h));
    assert!(!verify_password("wrong", &h));
    assert!(!verify_password("correct horse", "not-a-hash"));
}

#[tokio::test]
async fn password_hashes_run_a_few_at_a_time() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let slots = hashing_slots();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..slots * 4 + 4)
        .map(|_| {
            let (running, most) = (running.clone(), most.clone());
            tokio::spawn(run_hashing(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(20));
                running.fetch_sub(1, Ordering::SeqCst);
            }))
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("blocking call");
    }
    let most = most.load(Ordering::SeqCst);
    assert!(
        (1..=slots).contains(&most),
        "{most} hashes at once, {slots} slots"
    );
}

//! Link sharing and refusals, without a broker.

use super::*;

fn key(scope: u64, own: Option<u64>) -> LinkKey {
    LinkKey {
        host: "127.0.0.1".into(),
        // Nothing listens on port 9: the link only ever tries to connect.
        port: 9,
        client_id: None,
        username: None,
        password_digest: None,
        tls: None,
        keep_alive_secs: 30,
        clean_session: true,
        connect_timeout_ms: 1000,
        reconnect: (1000, 1000),
        own,
        scope,
    }
}

fn route() -> Route {
    Route {
        filters: vec![Filter {
            subscribe: "a/#".into(),
            pattern: "a/#".into(),
            qos: QoS::AtLeastOnce,
        }],
        on_message: Box::new(|_, _, _| {}),
        on_link: Box::new(|_| {}),
    }
}

fn settings(key: LinkKey) -> LinkSettings {
    LinkSettings {
        key,
        password: None,
        tls: None,
    }
}

#[tokio::test]
async fn devices_share_a_link_within_a_scope_only() {
    let a = attach(settings(key(1, None)), route());
    let b = attach(settings(key(1, None)), route());
    let other_tenant = attach(settings(key(2, None)), route());
    let own = attach(settings(key(1, Some(next_id()))), route());
    assert!(
        Arc::ptr_eq(&a.link, &b.link),
        "same settings, same scope: shared"
    );
    assert!(
        !Arc::ptr_eq(&a.link, &other_tenant.link),
        "tenants never share"
    );
    assert!(!Arc::ptr_eq(&a.link, &own.link), "own_connection");
    assert_eq!(a.link.shared.routes.read().map(|r| r.len()).unwrap_or(0), 2);
    drop(b);
    assert_eq!(a.link.shared.routes.read().map(|r| r.len()).unwrap_or(0), 1);
    // The last device gone, the link is gone: a new attach opens another.
    let weak = Arc::downgrade(&a.link);
    drop(a);
    assert!(weak.upgrade().is_none());
}

#[tokio::test]
async fn a_command_while_disconnected_fails_at_once() {
    let a = attach(settings(key(3, None)), route());
    let r = a
        .publish_confirmed("a/cmd", b"1".to_vec(), Duration::from_secs(5))
        .await;
    assert!(matches!(r, Err(Error::Disconnected(_))), "{r:?}");
}

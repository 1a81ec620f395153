//! Channels and plans: unit ids behind one gateway share one connection (a silent one
//! goes offline alone), an idle channel closes and reopens unnoticed, and the read
//! planner's request counts show in the device status, per poll group.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use thermacore::drivers::modbus::plc::{self, Bank, BankHandle};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use std::time::Duration;

use super::common::server::{WsClient, eventually};
use super::{Plc, WAIT, device, start, tag};

/// A loopback TCP forwarder that counts the connections it accepted.
struct Counting {
    port: u16,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Counting {
    async fn start(upstream: SocketAddr) -> Counting {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Counting {
            port,
            accepted,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn two_unit_ids_behind_one_gateway_read_their_own_values_over_one_connection() {
    let mut one = Bank::filled(4);
    one.holding_registers.insert(0, 111);
    one.coils.insert(1, true);
    let mut two = Bank::filled(4);
    two.holding_registers.insert(0, 222);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream = listener.local_addr().expect("addr");
    let _gateway = plc::serve(
        listener,
        &[(1, BankHandle::new(one)), (2, BankHandle::new(two))],
    );
    let proxy = Counting::start(upstream).await;
    let tags = |p: &str| {
        vec![
            tag(&format!("{p}-hr"), "hr:0", "u16", ""),
            tag(&format!("{p}-coil"), "coil:1", "bool", ""),
        ]
    };
    let site = start(
        "mb-gateway",
        &[
            device("unit-1", proxy.port, ", unit_id = 1", &tags("u1")),
            device("unit-2", proxy.port, ", unit_id = 2", &tags("u2")),
        ],
    )
    .await;
    site.wait_good(&[
        ("u1-hr", json!(111)),
        ("u1-coil", json!(true)),
        ("u2-hr", json!(222)),
        ("u2-coil", json!(false)),
    ])
    .await;
    eventually(WAIT, "both devices polled ten times", || async {
        let st = site.status().await;
        ["unit-1", "unit-2"]
            .iter()
            .all(|d| st[*d]["polls"].as_u64().unwrap_or(0) >= 10)
    })
    .await;
    assert_eq!(proxy.accepted(), 1, "one shared channel, one connection");
    let text = site.s.metrics().await;
    for name in [
        "thermacore_modbus_channels",
        "thermacore_modbus_request_duration_seconds",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    site.s.stop().await.expect("stop");

    // Other link settings mean another channel: the count tells them apart.
    let site = start(
        "mb-gateway-2",
        &[
            device("unit-1", proxy.port, ", unit_id = 1", &tags("u1")),
            device(
                "unit-2",
                proxy.port,
                ", unit_id = 2, reconnect_min_ms = 250",
                &tags("u2"),
            ),
        ],
    )
    .await;
    site.wait_good(&[("u1-hr", json!(111)), ("u2-hr", json!(222))])
        .await;
    assert_eq!(proxy.accepted() - 1, 2, "two channels, two connections");
    site.s.stop().await.expect("stop");

    // A device that asks for a connection of its own gets one.
    let site = start(
        "mb-gateway-3",
        &[
            device("unit-1", proxy.port, ", unit_id = 1", &tags("u1")),
            device(
                "unit-2",
                proxy.port,
                ", unit_id = 2, own_connection = true",
                &tags("u2"),
            ),
        ],
    )
    .await;
    site.wait_good(&[("u1-hr", json!(111)), ("u2-hr", json!(222))])
        .await;
    assert_eq!(proxy.accepted() - 3, 2, "own_connection: two connections");
}

#[tokio::test]
async fn read_plans_show_their_request_counts_per_poll_group() {
    let plc = Plc::start(Bank::filled(200)).await;
    let hundred = |p: &str| -> Vec<String> {
        (0..100)
            .map(|i| tag(&format!("{p}{i}"), &format!("hr:{i}"), "u16", ""))
            .collect()
    };
    let groups = ", poll_groups = [{ name = \"slow\", period_ms = 5000 }]";
    let grouped = [
        tag("fast-a", "hr:0", "u16", ""),
        tag("fast-b", "hr:1", "u16", ""),
        tag("slow-a", "hr:10;group=slow", "u16", ""),
        tag("slow-b", "hr:50;group=slow", "u32", ""),
        tag("slow-c", "coil:3;group=slow", "bool", ""),
    ];
    let site = start(
        "mb-plans",
        &[
            device("wide", plc.port, "", &hundred("w")),
            device("narrow", plc.port, ", max_registers = 32", &hundred("n")),
            device("grouped", plc.port, groups, &grouped),
        ],
    )
    .await;
    let st = site.status().await;
    let plan = |d: &str| {
        (
            st[d]["requestsPerCycle"].clone(),
            st[d]["pollGroups"].clone(),
        )
    };
    assert_eq!(
        plan("wide"),
        (
            json!(1),
            json!([{"name": "default", "periodMs": 100, "requests": 1, "tags": 100}])
        ),
        "100 tags, 1 request instead of 100"
    );
    assert_eq!(
        plan("narrow"),
        (
            json!(4),
            json!([{"name": "default", "periodMs": 100, "requests": 4, "tags": 100}])
        ),
        "32 registers a request: 4 requests"
    );
    assert_eq!(
        plan("grouped"),
        (
            json!(4),
            json!([
                {"name": "default", "periodMs": 100, "requests": 1, "tags": 2},
                {"name": "slow", "periodMs": 5000, "requests": 3, "tags": 3}
            ])
        )
    );
    // The slow group reads too (its first cycle starts at once).
    site.wait_good(&[
        ("fast-b", json!(1)),
        ("slow-a", json!(10)),
        ("slow-b", json!(50 * 65536 + 51)),
        ("slow-c", json!(false)),
        ("w99", json!(99)),
        ("n99", json!(99)),
    ])
    .await;
    let labels = format!("tenant=\"{}\"", site.tenant);
    assert_eq!(
        site.s
            .metric_sum("thermacore_device_plan_requests", &labels)
            .await,
        9.0,
        "1 + 4 + 4 requests per cycle"
    );
}

#[tokio::test]
async fn a_unit_that_never_answers_goes_offline_alone_and_keeps_the_shared_link() {
    let mut one = Bank::filled(4);
    one.holding_registers.insert(0, 111);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream = listener.local_addr().expect("addr");
    // Unit 3 is not behind the gateway: its requests go unanswered.
    let _gateway = plc::serve(listener, &[(1, BankHandle::new(one))]);
    let proxy = Counting::start(upstream).await;
    let site = start(
        "mb-silent",
        &[
            device(
                "unit-1",
                proxy.port,
                ", unit_id = 1",
                &[tag("u1", "hr:0", "u16", "")],
            ),
            device(
                "unit-3",
                proxy.port,
                ", unit_id = 3",
                &[tag("u3", "hr:0", "u16", "")],
            ),
        ],
    )
    .await;
    let id = site.status().await["unit-3"]["id"].clone();
    let (mut ws, _) = WsClient::connect(site.s.addr, &site.admin).await;
    ws.subscribe(
        "1",
        "subscription($d:ID){deviceStatus(deviceId:$d){state lastError}}",
        json!({"d": id}),
    )
    .await;
    site.wait_good(&[("u1", json!(111))]).await;
    // More unanswered requests than `reconnect_after_timeouts` (3).
    eventually(WAIT, "unit-3 timed out four times", || async {
        site.status().await["unit-3"]["pollErrors"]
            .as_u64()
            .unwrap_or(0)
            >= 4
    })
    .await;
    let mut states = Vec::new();
    loop {
        let m = ws.next(Duration::from_millis(200)).await;
        if m["type"] != "next" {
            break;
        }
        states.push(m["payload"]["data"]["deviceStatus"].clone());
    }
    assert!(
        states.iter().all(|s| s["state"] != "ONLINE"),
        "a unit that never answered was shown ONLINE: {states:?}"
    );
    let st = site.status().await;
    assert_eq!(st["unit-3"]["state"], "OFFLINE", "{}", st["unit-3"]);
    let error = st["unit-3"]["lastError"].as_str().unwrap_or("");
    assert!(error.contains("timed out"), "{error}");
    assert_eq!(st["unit-1"]["state"], "ONLINE", "{}", st["unit-1"]);
    site.wait_good(&[("u1", json!(111))]).await;
    assert_eq!(
        proxy.accepted(),
        1,
        "the silent unit did not drop the shared link"
    );
}

#[tokio::test]
async fn an_idle_channel_is_closed_and_opened_again_without_the_device_going_offline() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream = listener.local_addr().expect("addr");
    let _plc = plc::serve(listener, &[(1, BankHandle::new(Bank::filled(4)))]);
    let proxy = Counting::start(upstream).await;
    // Only a slow group: the channel is idle for longer than idle_close_secs.
    let driver = ", idle_close_secs = 1, poll_groups = [{ name = \"slow\", period_ms = 2000 }]";
    let tags = [tag("slow", "hr:1;group=slow", "u16", "")];
    let site = start("mb-idle", &[device("plc", proxy.port, driver, &tags)]).await;
    site.wait_state("plc", "ONLINE").await;
    let id = site.status().await["plc"]["id"].clone();
    let (mut ws, _) = WsClient::connect(site.s.addr, &site.admin).await;
    ws.subscribe(
        "1",
        "subscription($d:ID){deviceStatus(deviceId:$d){state lastError}}",
        json!({"d": id}),
    )
    .await;
    eventually(WAIT, "two idle closes, each reopened by a poll", || async {
        proxy.accepted() >= 3
    })
    .await;
    site.wait_good(&[("slow", json!(1))]).await;
    let mut states = Vec::new();
    loop {
        let m = ws.next(Duration::from_millis(200)).await;
        if m["type"] != "next" {
            break;
        }
        states.push(m["payload"]["data"]["deviceStatus"]["state"].clone());
    }
    assert_eq!(states, [json!("ONLINE")], "an idle close is no loss");
}

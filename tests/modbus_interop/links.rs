//! Links that misbehave: connections the device closes, garbage in place of answers,
//! and a device that stops answering.

use std::sync::Arc;
use std::time::Duration;

use super::common::server::eventually;
use super::script::{self, Options, Reply, Req, ScriptServer, value};
use super::{Dev, WAIT, driver, regs, rig, watch};

#[tokio::test]
async fn connections_closed_by_the_device_are_reopened_and_values_stay_good() {
    let idle = ScriptServer::normal(Options {
        idle_close: Some(Duration::from_millis(300)),
        ..Options::default()
    })
    .await;
    let every_k = ScriptServer::normal(Options {
        close_after: Some(2),
        ..Options::default()
    })
    .await;
    let (a, b) = (regs("i", [0, 50, 100]), regs("k", [0, 50, 100]));
    let d = driver(500, ", max_gap = 0");
    let r = rig(
        "closes",
        &[
            Dev::new("idle", idle.port, &d, 1000, a.clone()),
            Dev::new("every-k", every_k.port, &d, 1000, b.clone()),
        ],
    )
    .await;
    eventually(WAIT, "all tags GOOD", || async {
        r.all_good(&a).await && r.all_good(&b).await
    })
    .await;
    let (states, bad) = watch(&r, "idle", || async {
        idle.stats.connections() >= 4 && every_k.stats.connections() >= 4
    })
    .await;
    let k_state = r.status("every-k").await;
    println!("idle device states: {states:?}; every-k now {k_state}");
    assert!(idle.stats.closes() >= 3 && every_k.stats.closes() >= 3);
    assert!(bad.is_empty(), "tags went BAD on a close: {bad:?}");
    // The link's own states: a close shows CONNECTING (the link is being opened
    // again), then the next poll ONLINE; never OFFLINE (the device never failed to
    // answer), DEGRADED (no tag failed) nor RESTARTING (nothing panicked).
    assert!(
        states
            .iter()
            .all(|s| ["ONLINE", "CONNECTING"].contains(&s.as_str())),
        "{states:?}"
    );
    assert!(r.all_good(&a).await && r.all_good(&b).await);
}

/// The frame of `pdu` answering `req`, with the given transaction and protocol ids
/// and MBAP length.
fn raw(req: &Req, tid: u16, protocol: u16, length: u16, pdu: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&tid.to_be_bytes());
    out.extend_from_slice(&protocol.to_be_bytes());
    out.extend_from_slice(&length.to_be_bytes());
    out.push(req.unit);
    out.extend_from_slice(pdu);
    out
}

#[tokio::test]
async fn garbage_answers_make_tags_bad_and_good_answers_bring_them_back() {
    let dev = ScriptServer::normal(Options::default()).await;
    let tags = regs("r", [7, 8]);
    let d = driver(300, ", reconnect_min_ms = 100");
    let r = rig(
        "garbage",
        &[Dev::new("dev", dev.port, &d, 100, tags.clone())],
    )
    .await;
    eventually(WAIT, "tags GOOD", || r.all_good(&tags)).await;
    // (what, framed: a well-framed answer with a bad PDU, the garbage itself)
    type Garbage = fn(&Req) -> Reply;
    let cases: [(&str, bool, Garbage); 7] = [
        ("wrong function code", true, |q| {
            Reply::Pdu(script::registers(4, &[value(q.start), value(q.start + 1)]))
        }),
        ("byte count larger than the data", true, |_| {
            Reply::Pdu(vec![3, 4, 0x03, 0xEB])
        }),
        ("odd byte count", true, |_| {
            Reply::Pdu(vec![3, 3, 0x03, 0xEB, 0x03])
        }),
        ("wrong transaction id", false, |q| {
            let pdu = script::normal(q);
            Reply::Bytes(raw(q, q.tid.wrapping_add(1), 0, pdu.len() as u16 + 1, &pdu))
        }),
        ("protocol id not 0", false, |q| {
            let pdu = script::normal(q);
            Reply::Bytes(raw(q, q.tid, 1, pdu.len() as u16 + 1, &pdu))
        }),
        ("MBAP length beyond the frame", false, |q| {
            let pdu = script::normal(q);
            Reply::Bytes(raw(q, q.tid, 0, pdu.len() as u16 + 10, &pdu))
        }),
        ("the connection closed instead of an answer", false, |_| {
            Reply::Close
        }),
    ];
    let mut seen = Vec::new();
    for (what, framed, garbage) in cases {
        dev.set(Arc::new(move |q: &Req| garbage(q)));
        eventually(WAIT, &format!("{what}: tags BAD"), || async {
            let now = r.tags().await;
            tags.iter()
                .all(|(n, _)| now.get(n).is_some_and(|l| l.quality == "BAD"))
        })
        .await;
        let now = r.tags().await;
        let st = r.status("dev").await;
        let reason = now["r7"].reason.clone().unwrap_or_default();
        assert!(
            ["bad_response", "comm_lost"].contains(&reason.as_str()),
            "{what}: {reason}"
        );
        seen.push(format!("{what}: {reason}, {}", st["state"]));
        // Longer than bad_address_after polls: a device answering only garbage is
        // failing as a whole; its addresses must not be parked for the grace period.
        let polls = r.polls("dev").await;
        eventually(WAIT, &format!("{what}: five more polls"), || async {
            r.polls("dev").await >= polls + 5
        })
        .await;
        let st = r.status("dev").await;
        assert_eq!(st["badAddresses"], 0, "{what}: {st}");
        dev.set(Arc::new(|_| Reply::Normal));
        eventually(WAIT, &format!("{what}: tags GOOD again"), || {
            r.all_good(&tags)
        })
        .await;
        if framed {
            // Framed garbage to every request: no split was kept, the plan is whole.
            let polls = r.polls("dev").await;
            eventually(WAIT, "two more polls", || async {
                r.polls("dev").await >= polls + 2
            })
            .await;
            let st = r.status("dev").await;
            assert_eq!(st["requestsPerCycle"], 1, "{what}: the plan is whole: {st}");
        }
    }
    println!("garbage outcomes: {seen:#?}");
    let st = r.status("dev").await;
    assert_eq!(st["restarts"], 0, "no panic, no actor restart: {st}");
    assert_eq!(st["state"], "ONLINE", "{st}");
}

#[tokio::test]
async fn a_silent_device_goes_offline_and_its_connection_is_reopened() {
    let dev = ScriptServer::normal(Options::default()).await;
    let tags = regs("r", [1]);
    let d = driver(
        200,
        ", reconnect_after_timeouts = 2, reconnect_min_ms = 100",
    );
    let r = rig(
        "silent",
        &[Dev::new("dev", dev.port, &d, 100, tags.clone())],
    )
    .await;
    eventually(WAIT, "tag GOOD", || r.all_good(&tags)).await;
    assert_eq!(dev.stats.connections(), 1);
    dev.set(Arc::new(|_| Reply::Silent));
    eventually(WAIT, "tag BAD comm_lost", || {
        r.reads("r1", "BAD", &["comm_lost"])
    })
    .await;
    eventually(WAIT, "device OFFLINE", || async {
        r.status("dev").await["state"] == "OFFLINE"
    })
    .await;
    eventually(WAIT, "a new connection after 2 timeouts", || async {
        dev.stats.connections() >= 2
    })
    .await;
    assert_eq!(
        dev.stats.closes(),
        0,
        "the client, not the server, reopened it"
    );
    dev.set(Arc::new(|_| Reply::Normal));
    eventually(WAIT, "tag GOOD again", || r.all_good(&tags)).await;
    eventually(WAIT, "device ONLINE again", || async {
        r.status("dev").await["state"] == "ONLINE"
    })
    .await;
}

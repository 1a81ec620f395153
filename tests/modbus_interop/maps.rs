//! Register maps that differ from what the driver asks for: short answers, a size
//! limit enforced by exception 3, holes answered with exception 2, unit ids 0 and 255.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::common::server::eventually;
use super::script::{Options, Reply, Req, ScriptServer, value};
use super::{Dev, WAIT, driver, regs, rig};

#[tokio::test]
async fn a_device_answering_fewer_registers_than_asked_is_read_in_smaller_requests() {
    // Caps every answer at 16 registers, silently, with a byte count true to what it sends.
    let dev = ScriptServer::start(
        Options::default(),
        Arc::new(|req: &Req| match req.function {
            3 if req.quantity > 16 => {
                Reply::Registers((req.start..req.start + 16).map(value).collect())
            }
            _ => Reply::Normal,
        }),
    )
    .await;
    let tags = regs("r", 0..40);
    let d = driver(500, "");
    let r = rig("short", &[Dev::new("dev", dev.port, &d, 100, tags.clone())]).await;
    eventually(WAIT, "all 40 registers GOOD with their values", || {
        r.all_good(&tags)
    })
    .await;
    assert_eq!(
        dev.stats.max_quantity(),
        40,
        "the first read asked for all 40"
    );
    eventually(WAIT, "device ONLINE", || async {
        r.status("dev").await["state"] == "ONLINE"
    })
    .await;
}

#[tokio::test]
async fn a_size_limit_enforced_by_exception_3_is_split_around_and_max_registers_avoids_it() {
    let limit = |req: &Req| {
        if matches!(req.function, 3 | 4) && req.quantity > 20 {
            Reply::Exception(3)
        } else {
            Reply::Normal
        }
    };
    let refusing = ScriptServer::start(Options::default(), Arc::new(limit)).await;
    let limited = ScriptServer::start(Options::default(), Arc::new(limit)).await;
    let (a, b) = (regs("a", 0..40), regs("b", 0..40));
    let (d1, d2) = (driver(500, ""), driver(500, ", max_registers = 20"));
    let r = rig(
        "limit",
        &[
            Dev::new("refusing", refusing.port, &d1, 100, a.clone()),
            Dev::new("limited", limited.port, &d2, 100, b.clone()),
        ],
    )
    .await;
    eventually(WAIT, "all tags of both devices GOOD", || async {
        r.all_good(&a).await && r.all_good(&b).await
    })
    .await;
    assert!(
        refusing.stats.exceptions() > 0,
        "the 40-register read was refused"
    );
    // Later polls use the refined plan: no more refusals.
    let seen = refusing.stats.exceptions();
    let asked = refusing.stats.requests();
    eventually(WAIT, "ten more requests", || async {
        refusing.stats.requests() >= asked + 10
    })
    .await;
    assert_eq!(refusing.stats.exceptions(), seen, "the split plan is kept");
    eventually(WAIT, "ten requests to the limited device", || async {
        limited.stats.requests() >= 10
    })
    .await;
    assert_eq!(
        limited.stats.exceptions(),
        0,
        "max_registers = 20 is respected"
    );
    assert!(limited.stats.max_quantity() <= 20);
    assert_eq!(r.status("limited").await["requestsPerCycle"], 2);
}

#[tokio::test]
async fn holes_in_the_map_fail_only_their_own_tag_which_goes_into_the_bad_address_cache() {
    let touched = Arc::new(AtomicUsize::new(0));
    let t = touched.clone();
    // Registers 0..10 and 20..30 exist; a read touching 10..20 is refused.
    let dev = ScriptServer::start(
        Options::default(),
        Arc::new(move |req: &Req| {
            let end = u32::from(req.start) + u32::from(req.quantity);
            if (u32::from(req.start)..end).any(|a| (10..20).contains(&a)) {
                t.fetch_add(1, Ordering::SeqCst);
                Reply::Exception(2)
            } else {
                Reply::Normal
            }
        }),
    )
    .await;
    let good: Vec<(String, u16)> = regs("g", (0..10).chain(20..30));
    let mut tags = good.clone();
    tags.push(("hole".into(), 15));
    let d = driver(500, ", bad_address_after = 3");
    let r = rig("holes", &[Dev::new("dev", dev.port, &d, 100, tags)]).await;
    eventually(WAIT, "tags around the hole GOOD", || r.all_good(&good)).await;
    eventually(WAIT, "the tag in the hole BAD illegal_address", || {
        r.reads("hole", "BAD", &["illegal_address"])
    })
    .await;
    eventually(WAIT, "one address in the bad-address cache", || async {
        r.status("dev").await["badAddresses"] == 1
    })
    .await;
    let status = r.status("dev").await;
    assert_eq!(status["state"], "DEGRADED", "{status}");
    // Parked: the polls no longer touch the hole, and its neighbours keep reading.
    let (before, asked) = (touched.load(Ordering::SeqCst), dev.stats.requests());
    eventually(WAIT, "ten more requests", || async {
        dev.stats.requests() >= asked + 10
    })
    .await;
    assert_eq!(
        touched.load(Ordering::SeqCst),
        before,
        "the hole is skipped"
    );
    assert!(r.all_good(&good).await);
    assert!(r.reads("hole", "BAD", &["illegal_address"]).await);
}

#[tokio::test]
async fn unit_ids_0_and_255_are_addressed_as_configured() {
    // One device ignores other unit ids, the other refuses them (gateway exception 11).
    let zero = ScriptServer::start(
        Options::default(),
        Arc::new(|req: &Req| match req.unit {
            0 => Reply::Normal,
            _ => Reply::Silent,
        }),
    )
    .await;
    let ff = ScriptServer::start(
        Options::default(),
        Arc::new(|req: &Req| match req.unit {
            255 => Reply::Normal,
            _ => Reply::Exception(11),
        }),
    )
    .await;
    let (a, b) = (regs("z", [3, 4]), regs("f", [3, 4]));
    let (d0, d255) = (
        ", unit_id = 0, timeout_ms = 500".to_string(),
        ", unit_id = 255, timeout_ms = 500".to_string(),
    );
    let r = rig(
        "units",
        &[
            Dev::new("zero", zero.port, &d0, 100, a.clone()),
            Dev::new("ff", ff.port, &d255, 100, b.clone()),
        ],
    )
    .await;
    eventually(WAIT, "both devices' tags GOOD", || async {
        r.all_good(&a).await && r.all_good(&b).await
    })
    .await;
    assert_eq!(zero.stats.units(), [0]);
    assert_eq!(ff.stats.units(), [255]);
    assert_eq!(ff.stats.exceptions(), 0);
    for d in ["zero", "ff"] {
        let st = r.status(d).await;
        assert_eq!(st["state"], "ONLINE", "{d}: {st}");
    }
}

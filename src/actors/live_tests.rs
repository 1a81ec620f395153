use super::*;
use crate::domain::{Quality, Sample, TenantId, Timestamp, Value};

fn batch(device: i64, tags: &[i64], v: i64) -> SampleBatch {
    SampleBatch {
        tenant: TenantId(1),
        device: DeviceId(device),
        samples: tags
            .iter()
            .map(|t| Sample {
                tag: TagId(*t),
                value: Value::I64(v),
                quality: Quality::Good,
                source_time: Timestamp(v),
                server_time: Timestamp(v),
            })
            .collect(),
    }
}

#[tokio::test]
async fn only_matching_samples_are_delivered() {
    let reg = Arc::new(LiveRegistry::new("t".into()));
    let by_tag = reg.subscribe(vec![TagId(1)], None, 16);
    let by_device = reg.subscribe(vec![], Some(DeviceId(2)), 16);
    reg.deliver(&batch(1, &[1, 3], 10));
    reg.deliver(&batch(2, &[4, 5], 11));
    let got: Vec<_> = by_tag
        .recv()
        .await
        .expect("values")
        .into_iter()
        .map(|l| l.tag)
        .collect();
    assert_eq!(got, vec![TagId(1)]);
    let got: Vec<_> = by_device
        .recv()
        .await
        .expect("values")
        .into_iter()
        .map(|l| l.tag)
        .collect();
    assert_eq!(got, vec![TagId(4), TagId(5)]);
}

#[tokio::test]
async fn a_slow_subscriber_is_conflated_to_latest_per_tag() {
    let reg = Arc::new(LiveRegistry::new("t".into()));
    let sub = reg.subscribe(vec![TagId(1), TagId(2)], None, 2);
    for v in 0..100 {
        reg.deliver(&batch(1, &[1, 2], v));
    }
    let got = sub.recv().await.expect("values");
    // the queue holds the first two values, then the latest per tag
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[0].value, Value::I64(0));
    let last_of = |t: i64| {
        got.iter()
            .rev()
            .find(|l| l.tag == TagId(t))
            .map(|l| l.value.clone())
    };
    assert_eq!(last_of(1), Some(Value::I64(99)));
    assert_eq!(last_of(2), Some(Value::I64(99)));
    assert_eq!(reg.delivered(), 200);
    assert_eq!(reg.conflated(), 200 - 2 - 2);
}

#[test]
fn ten_thousand_subscribe_cycles_leave_no_growth() {
    let reg = Arc::new(LiveRegistry::new("t".into()));
    let keep = reg.subscribe(vec![TagId(7)], None, 4);
    let before = reg.size();
    for i in 0..10_000i64 {
        let s = reg.subscribe(vec![TagId(i % 50), TagId(7)], Some(DeviceId(i % 3)), 4);
        reg.deliver(&batch(i % 3, &[i % 50], i));
        drop(s);
    }
    assert_eq!(reg.size(), before);
    assert_eq!(
        before,
        RegistrySize {
            subscribers: 1,
            tag_keys: 1,
            device_keys: 0
        }
    );
    drop(keep);
    assert_eq!(reg.size(), RegistrySize::default());
}

#[tokio::test]
async fn deleting_what_a_subscription_follows_ends_it_after_what_was_pending() {
    let reg = Arc::new(LiveRegistry::new("t".into()));
    let two_tags = reg.subscribe(vec![TagId(1), TagId(2)], None, 16);
    let one_tag = reg.subscribe(vec![TagId(1)], None, 16);
    let device = reg.subscribe(vec![TagId(2)], Some(DeviceId(7)), 16);
    reg.deliver(&batch(7, &[1, 2], 10));
    reg.remove(None, &[TagId(1)]);
    // Tag 1 is gone: the subscription to it alone ends once read; the other goes on.
    assert_eq!(one_tag.recv().await.expect("pending").len(), 1);
    assert!(one_tag.recv().await.is_none());
    assert!(!two_tags.is_closed());
    assert_eq!(two_tags.recv().await.expect("pending").len(), 2);
    reg.deliver(&batch(7, &[1, 2], 11));
    let got: Vec<_> = two_tags
        .recv()
        .await
        .expect("tag 2")
        .into_iter()
        .map(|l| l.tag)
        .collect();
    assert_eq!(got, vec![TagId(2)]);
    // The device goes: its follower ends, even though it also named tag 2.
    reg.remove(Some(DeviceId(7)), &[TagId(2)]);
    assert!(device.is_closed() && two_tags.is_closed());
    // Both batches reached it (tag 1 through the device): 4 values, then the end.
    assert_eq!(device.recv().await.expect("pending").len(), 4);
    assert!(device.recv().await.is_none());
    drop((two_tags, one_tag, device));
    assert_eq!(reg.size(), RegistrySize::default());
}

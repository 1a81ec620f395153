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
    let got: Vec<_> = by_tag.recv().await.into_iter().map(|l| l.tag).collect();
    assert_eq!(got, vec![TagId(1)]);
    let got: Vec<_> = by_device.recv().await.into_iter().map(|l| l.tag).collect();
    assert_eq!(got, vec![TagId(4), TagId(5)]);
}

#[tokio::test]
async fn a_slow_subscriber_is_conflated_to_latest_per_tag() {
    let reg = Arc::new(LiveRegistry::new("t".into()));
    let sub = reg.subscribe(vec![TagId(1), TagId(2)], None, 2);
    for v in 0..100 {
        reg.deliver(&batch(1, &[1, 2], v));
    }
    let got = sub.recv().await;
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

//! Bandwidth schedules: the measured upload rate follows the cap, and a replaced schedule takes
//! effect within a second.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{data, fast_options, local_spec};
use outpost_storage::{BandwidthSchedule, Share, SharePath, Throttle};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_run_within_five_percent_of_a_40_mbps_cap() {
    let root = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    let mut opts = fast_options(4 * 1024 * 1024);
    opts.throttle = Some(Arc::new(
        Throttle::new(BandwidthSchedule::fixed(Some(40))).unwrap(),
    ));
    let share = Share::open(local_spec("bw", root.path(), target.path(), 1 << 30), opts)
        .await
        .unwrap();
    let bytes = 20 * 1024 * 1024 + 1234;
    share
        .write(
            &SharePath::new("big.bin").unwrap(),
            Bytes::from(data(1, bytes)),
        )
        .await
        .unwrap();
    let start = Instant::now();
    let report = share.sync_once().await.unwrap();
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(report.uploaded, 1);
    let rate_mbps = bytes as f64 * 8.0 / elapsed / 1e6;
    println!("{bytes} bytes in {elapsed:.3} s = {rate_mbps:.2} Mbps");
    assert!(
        (38.0..=42.0).contains(&rate_mbps),
        "measured {rate_mbps:.2} Mbps against a 40 Mbps cap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_schedule_takes_effect_within_a_second() {
    let root = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    let share = Share::open(
        local_spec("bw", root.path(), target.path(), 1 << 30),
        fast_options(1024 * 1024),
    )
    .await
    .unwrap();
    // 1 Mbps: 8 MB would take a minute.
    share
        .set_schedule(BandwidthSchedule::fixed(Some(1)))
        .unwrap();
    share
        .write(
            &SharePath::new("f").unwrap(),
            Bytes::from(data(2, 8_000_000)),
        )
        .await
        .unwrap();
    let sync = {
        let share = share.clone();
        tokio::spawn(async move { share.sync_once().await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!sync.is_finished());
    assert_eq!(
        share.stats().unwrap().upload_limit_bytes_per_sec,
        Some(125_000)
    );
    let lifted = Instant::now();
    share.set_schedule(BandwidthSchedule::unlimited()).unwrap();
    let report = sync.await.unwrap().unwrap();
    assert_eq!(report.uploaded, 1);
    assert!(
        lifted.elapsed() < Duration::from_secs(1),
        "took {:?} after the cap was lifted",
        lifted.elapsed()
    );
}

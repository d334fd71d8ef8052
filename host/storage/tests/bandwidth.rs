//! Bandwidth schedules: the throttle reports the configured cap and uploads are held to it, and
//! a replaced schedule frees an upload already waiting on the old one.
//!
//! Nothing here asserts a rate or a latency (a busy machine changes both): the achieved rate
//! against the cap and the time an upload takes to notice a lifted cap are figures of
//! `benches/sync.rs` (`cargo bench -p outpost-storage --bench sync -- --quick`, "bandwidth").
//! The bounds below only go one way: a token bucket lets out at most its burst plus the rate
//! times the time elapsed, so an upload can be slower than the cap on a loaded box but never
//! much faster; and the deadline after lifting a cap is far longer than a working engine needs
//! and far shorter than the old cap would take.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{data, fast_options, local_spec};
use outpost_storage::{BandwidthSchedule, Share, SharePath, Throttle};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_40_mbps_cap_is_reported_and_no_upload_outruns_it() {
    let root = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    let part = 4 * 1024 * 1024;
    let mut opts = fast_options(part);
    opts.throttle = Some(Arc::new(
        Throttle::new(BandwidthSchedule::fixed(Some(40))).unwrap(),
    ));
    let share = Share::open(local_spec("bw", root.path(), target.path(), 1 << 30), opts)
        .await
        .unwrap();
    // 40 Mbps is 5 MB/s, in force now and reported as such.
    let rate = 5_000_000u64;
    assert_eq!(share.throttle().current_limit(), Some(rate));
    assert_eq!(
        share.stats().unwrap().upload_limit_bytes_per_sec,
        Some(rate)
    );

    let bytes = 8 * 1024 * 1024 + 1234;
    let content = data(1, bytes);
    share
        .write(
            &SharePath::new("big.bin").unwrap(),
            Bytes::from(content.clone()),
        )
        .await
        .unwrap();
    let start = Instant::now();
    let report = share.sync_once().await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!((report.uploaded, report.failed), (1, 0), "{report:?}");
    assert_eq!(
        share.stats().unwrap().parts_sent,
        bytes.div_ceil(part as usize) as u64
    );
    assert!(
        std::fs::read(target.path().join("big.bin")).unwrap() == content,
        "the target holds the file's bytes"
    );

    // The bucket starts empty and lets out at most a burst (50 ms worth) ahead of the rate, so
    // the upload needs at least (bytes - burst) / rate; without a cap the local target takes a
    // few milliseconds. Half that floor only fails when the cap was not applied at all.
    let burst = rate as f64 / 20.0;
    let floor = Duration::from_secs_f64((bytes as f64 - burst) / rate as f64);
    println!("{bytes} bytes in {elapsed:?} through a 40 Mbps cap (floor {floor:?})");
    assert!(
        elapsed >= floor / 2,
        "{bytes} bytes left in {elapsed:?}: more than twice the 40 Mbps cap, so no cap was \
         applied (the floor at the cap is {floor:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifting_the_cap_frees_an_upload_already_waiting_on_it() {
    let root = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    let share = Share::open(
        local_spec("bw", root.path(), target.path(), 1 << 30),
        fast_options(1024 * 1024),
    )
    .await
    .unwrap();
    // 1 Mbps: 16 MB would take over two minutes.
    share
        .set_schedule(BandwidthSchedule::fixed(Some(1)))
        .unwrap();
    assert_eq!(
        share.stats().unwrap().upload_limit_bytes_per_sec,
        Some(125_000)
    );
    share
        .write(
            &SharePath::new("f").unwrap(),
            Bytes::from(data(2, 16_000_000)),
        )
        .await
        .unwrap();
    let sync = {
        let share = share.clone();
        tokio::spawn(async move { share.sync_once().await })
    };
    // Under the cap it cannot be done yet: 0.5 s lets out at most 130 kB of 16 MB.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!sync.is_finished(), "16 MB left through a 1 Mbps cap");

    share.set_schedule(BandwidthSchedule::unlimited()).unwrap();
    assert_eq!(share.stats().unwrap().upload_limit_bytes_per_sec, None);
    assert_eq!(share.throttle().current_limit(), None);
    // Hang-only deadline: the lifted cap is picked up within 100 ms, while the old one would
    // hold the rest of the upload for two minutes.
    let lifted = Instant::now();
    let report = tokio::time::timeout(Duration::from_secs(60), sync)
        .await
        .expect("the upload still crawled at 1 Mbps a minute after the cap was lifted")
        .unwrap()
        .unwrap();
    println!(
        "upload finished {:?} after the cap was lifted",
        lifted.elapsed()
    );
    assert_eq!((report.uploaded, report.failed), (1, 0), "{report:?}");
    assert_eq!(
        std::fs::metadata(target.path().join("f")).unwrap().len(),
        16_000_000
    );
}

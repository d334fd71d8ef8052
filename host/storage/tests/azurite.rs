//! Round trips against a real Azurite (the Azure Blob emulator), started by the tests.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Azurite, azure_spec, data, fast_options, sha256_hex};
use outpost_storage::{Share, SharePath};

fn p(s: &str) -> SharePath {
    SharePath::new(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_round_trip_through_azure_blob_with_equal_digests() {
    let azurite = Azurite::start_in_memory();
    azurite.create_container("edge");
    common::round_trip(
        |root| azure_spec("cams", root, azurite.port, "edge", "site-1"),
        8 * 1024 * 1024,
        40 * 1024 * 1024,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_resume_after_azurite_is_stopped_mid_upload_and_restarted() {
    let mut azurite = Azurite::start();
    azurite.create_container("resume");
    let root = tempfile::tempdir().unwrap();
    let mut opts = fast_options(1024 * 1024);
    // Slow enough (40 Mbps) that the store goes away in the middle of the upload.
    opts.throttle = Some(std::sync::Arc::new(
        outpost_storage::Throttle::new(outpost_storage::BandwidthSchedule::fixed(Some(40)))
            .unwrap(),
    ));
    let share = Share::open(
        azure_spec("resume", root.path(), azurite.port, "resume", ""),
        opts,
    )
    .await
    .unwrap();
    let files: Vec<(SharePath, Vec<u8>)> = (0..3)
        .map(|i| {
            (
                p(&format!("f{i}.bin")),
                data(10 + i, 6 * 1024 * 1024 + 1234),
            )
        })
        .collect();
    for (path, content) in &files {
        share
            .write(path, Bytes::from(content.clone()))
            .await
            .unwrap();
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let runner = {
        let share = share.clone();
        tokio::spawn(async move { share.run(stop_rx).await })
    };
    // Let some parts complete, then take the store away.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while share.stats().unwrap().parts_sent < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "no progress before the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    azurite.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = share.stats().unwrap();
    assert!(
        during.files_synced < 3,
        "the outage came too late: {during:?}"
    );
    azurite.restart();

    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let s = share.stats().unwrap();
        if s.files_synced == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "uploads did not resume: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_tx.send(true).unwrap();
    runner.await.unwrap();

    for (path, content) in &files {
        share.evict(path).await.unwrap();
        let back = share.read(path).await.unwrap();
        assert_eq!(sha256_hex(&back), sha256_hex(content), "{path}");
    }
    assert!(share.uploads_in_progress().unwrap().is_empty());
    common::assert_no_completed_part_resent(&share.part_log().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_objects_round_trip_through_azure_blob() {
    let azurite = Azurite::start_in_memory();
    azurite.create_container("edge");
    let keys_dir = tempfile::tempdir().unwrap();
    let keys = std::sync::Arc::new(
        outpost_keys::DeviceKeyStore::open(keys_dir.path().join("k"), "azure-kek").unwrap(),
    );
    let part = 5 * 1024 * 1024;
    let open = |root: std::path::PathBuf| {
        let mut opts = fast_options(part);
        opts.encryption = Some(keys.clone());
        opts.read_back_verify = true;
        Share::open(azure_spec("cams", &root, azurite.port, "edge", "enc"), opts)
    };
    let root = tempfile::tempdir().unwrap();
    let share = open(root.path().to_path_buf()).await.unwrap();
    let small = data(11, 300_000);
    let large = data(12, 20 * 1024 * 1024 + 777);
    share
        .write(&p("small.bin"), Bytes::from(small.clone()))
        .await
        .unwrap();
    share
        .write(&p("large.bin"), Bytes::from(large.clone()))
        .await
        .unwrap();
    share.write(&p("empty"), Bytes::new()).await.unwrap();
    let report = share.sync_once().await.unwrap();
    assert_eq!((report.uploaded, report.failed), (3, 0), "{report:?}");
    for f in ["small.bin", "large.bin", "empty"] {
        assert!(share.entry(&p(f)).unwrap().unwrap().encrypted, "{f}");
    }
    share.evict(&p("large.bin")).await.unwrap();
    let range = share
        .read_range(&p("large.bin"), 5_000_000..11_000_000)
        .await
        .unwrap();
    assert_eq!(&range[..], &large[5_000_000..11_000_000]);
    assert_eq!(&share.read(&p("large.bin")).await.unwrap()[..], &large[..]);
    drop(share);

    // Another device on the same prefix finds the objects (single PUT marked by metadata,
    // multipart by its magic) and reads them back through the same key.
    let other_root = tempfile::tempdir().unwrap();
    let other = open(other_root.path().to_path_buf()).await.unwrap();
    let report = other.refresh().await.unwrap();
    assert_eq!(report.added, 3, "{report:?}");
    assert_eq!(&other.read(&p("small.bin")).await.unwrap()[..], &small[..]);
    assert_eq!(&other.read(&p("large.bin")).await.unwrap()[..], &large[..]);
    assert!(other.read(&p("empty")).await.unwrap().is_empty());
}

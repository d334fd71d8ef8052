//! Round trips against a real S3-compatible server (moto's, from PyPI), started by the tests:
//! the `s3://` target goes through the same sync engine as Azure Blob and local directories.

mod common;

use bytes::Bytes;
use common::{MotoS3, data, fast_options, s3_spec, sha256_hex};
use outpost_storage::{FileState, Share, SharePath};

fn p(s: &str) -> SharePath {
    SharePath::new(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_round_trip_through_s3_with_multipart_uploads_ranges_and_refresh() {
    let s3 = MotoS3::start();
    s3.create_bucket("edge");
    let root = tempfile::tempdir().unwrap();
    let share = Share::open(
        s3_spec("cams", root.path(), s3.port, "edge", "site-1"),
        fast_options(5 * 1024 * 1024),
    )
    .await
    .unwrap();

    let small = data(1, 300_000);
    let large = data(2, 12 * 1024 * 1024);
    share
        .write(&p("small.bin"), Bytes::from(small.clone()))
        .await
        .unwrap();
    share
        .write(&p("clips/large.bin"), Bytes::from(large.clone()))
        .await
        .unwrap();
    share.write(&p("empty"), Bytes::new()).await.unwrap();

    let report = share.sync_once().await.unwrap();
    assert_eq!(report.uploaded, 3, "{report:?}");
    let stats = share.stats().unwrap();
    assert_eq!(stats.parts_sent, 3, "12 MiB in 5 MiB parts is three parts");
    assert_eq!(stats.files_synced, 3);
    let e = share.entry(&p("clips/large.bin")).unwrap().unwrap();
    assert_eq!(e.sha256.as_deref(), Some(sha256_hex(&large).as_str()));
    assert!(share.uploads_in_progress().unwrap().is_empty());

    share.evict(&p("small.bin")).await.unwrap();
    share.evict(&p("clips/large.bin")).await.unwrap();
    assert_eq!(
        std::fs::metadata(root.path().join("clips/large.bin"))
            .unwrap()
            .len(),
        0
    );
    // A range of an evicted file comes by ranged GET and leaves it evicted.
    let range = share
        .read_range(&p("clips/large.bin"), 6_000_000..6_100_000)
        .await
        .unwrap();
    assert_eq!(&range[..], &large[6_000_000..6_100_000]);
    assert_eq!(
        share.entry(&p("clips/large.bin")).unwrap().unwrap().state,
        FileState::Evicted
    );
    // Whole recalls are checked against the journal's digest.
    assert_eq!(
        sha256_hex(&share.read(&p("clips/large.bin")).await.unwrap()),
        sha256_hex(&large)
    );
    assert_eq!(
        share.entry(&p("clips/large.bin")).unwrap().unwrap().state,
        FileState::Synced
    );

    // Another appliance on the same bucket and prefix sees the objects after a refresh.
    let root2 = tempfile::tempdir().unwrap();
    let other = Share::open(
        s3_spec("cams", root2.path(), s3.port, "edge", "site-1"),
        fast_options(5 * 1024 * 1024),
    )
    .await
    .unwrap();
    let refresh = other.refresh().await.unwrap();
    assert_eq!(refresh.added, 3, "{refresh:?}");
    assert_eq!(
        other.entry(&p("small.bin")).unwrap().unwrap().state,
        FileState::Evicted
    );
    assert_eq!(
        sha256_hex(&other.read(&p("small.bin")).await.unwrap()),
        sha256_hex(&small)
    );
    assert_eq!(
        sha256_hex(&other.read(&p("clips/large.bin")).await.unwrap()),
        sha256_hex(&large)
    );
    assert_eq!(other.read(&p("empty")).await.unwrap().len(), 0);
    assert_eq!(other.refresh().await.unwrap().added, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_an_error_naming_it_and_the_file_stays_local() {
    let s3 = MotoS3::start();
    let root = tempfile::tempdir().unwrap();
    let share = Share::open(
        s3_spec("cams", root.path(), s3.port, "no-such-bucket", ""),
        fast_options(5 * 1024 * 1024),
    )
    .await
    .unwrap();
    let body = data(3, 1000);
    share
        .write(&p("a.bin"), Bytes::from(body.clone()))
        .await
        .unwrap();
    let err = share.upload(&p("a.bin")).await.unwrap_err().to_string();
    assert!(
        err.contains("no-such-bucket") || err.contains("NoSuchBucket"),
        "{err}"
    );
    assert_ne!(
        share.entry(&p("a.bin")).unwrap().unwrap().state,
        FileState::Synced
    );
    assert_eq!(std::fs::read(root.path().join("a.bin")).unwrap(), body);
}

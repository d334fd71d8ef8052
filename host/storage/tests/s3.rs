//! Round trips against a real S3-compatible server (moto's, from PyPI), started by the tests:
//! the `s3://` target goes through the same sync engine as Azure Blob and local directories.

mod common;

use bytes::Bytes;
use common::{MotoS3, data, fast_options, s3_spec};
use outpost_storage::{FileState, Share, SharePath};

fn p(s: &str) -> SharePath {
    SharePath::new(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_round_trip_through_s3_with_multipart_uploads_ranges_and_refresh() {
    let s3 = MotoS3::start();
    s3.create_bucket("edge");
    common::round_trip(
        |root| s3_spec("cams", root, s3.port, "edge", "site-1"),
        5 * 1024 * 1024,
        12 * 1024 * 1024,
    )
    .await;
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

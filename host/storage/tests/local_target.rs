//! The engine against a local-directory (`file://`) target.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{data, fast_options, local_spec, sha256_hex};
use outpost_storage::{Action, FileState, Share, ShareKind, SharePath, ShareSpec, StorageError};

fn p(s: &str) -> SharePath {
    SharePath::new(s).unwrap()
}

struct Fixture {
    root: tempfile::TempDir,
    target: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            root: tempfile::tempdir().unwrap(),
            target: tempfile::tempdir().unwrap(),
        }
    }

    async fn open(&self, part_size: u64, quota: u64) -> Share {
        Share::open(
            local_spec("data", self.root.path(), self.target.path(), quota),
            fast_options(part_size),
        )
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn upload_evict_recall_and_refresh_round_trip_on_a_local_directory() {
    let fx = Fixture::new();
    let share = fx.open(8 * 1024 * 1024, 1 << 30).await;
    let large = data(7, 40 * 1024 * 1024);
    let small = data(8, 1000);
    std::fs::create_dir_all(fx.root.path().join("logs")).unwrap();
    std::fs::write(fx.root.path().join("logs/app.log"), &small).unwrap();
    share
        .write(&p("big.bin"), Bytes::from(large.clone()))
        .await
        .unwrap();

    let report = share.sync_once().await.unwrap();
    assert_eq!(
        (report.uploaded, report.scan.new_files),
        (2, 1),
        "{report:?}"
    );
    assert_eq!(share.stats().unwrap().parts_sent, 5, "40 MiB / 8 MiB parts");
    assert_eq!(
        sha256_hex(&std::fs::read(fx.target.path().join("big.bin")).unwrap()),
        sha256_hex(&large)
    );
    assert!(
        !fx.target
            .path()
            .join(".outpost-parts")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "staged parts are cleaned up"
    );

    share.evict(&p("big.bin")).await.unwrap();
    assert_eq!(
        std::fs::metadata(fx.root.path().join("big.bin"))
            .unwrap()
            .len(),
        0
    );
    let range = share.read_range(&p("big.bin"), 100..200).await.unwrap();
    assert_eq!(&range[..], &large[100..200]);
    assert_eq!(
        share.entry(&p("big.bin")).unwrap().unwrap().state,
        FileState::Evicted
    );
    assert_eq!(
        sha256_hex(&share.read(&p("big.bin")).await.unwrap()),
        sha256_hex(&large)
    );

    // Objects that appear remotely are picked up by a refresh as stubs.
    std::fs::create_dir_all(fx.target.path().join("incoming")).unwrap();
    let fresh = data(9, 5000);
    std::fs::write(fx.target.path().join("incoming/new.bin"), &fresh).unwrap();
    let r = share.refresh().await.unwrap();
    assert_eq!((r.added, r.known), (1, 2), "{r:?}");
    assert_eq!(
        share.entry(&p("incoming/new.bin")).unwrap().unwrap().state,
        FileState::Evicted
    );
    assert_eq!(
        share.read(&p("incoming/new.bin")).await.unwrap(),
        Bytes::from(fresh)
    );
    assert!(share.stats().unwrap().last_refresh_unix_ms.is_some());
}

#[tokio::test]
async fn a_recalled_file_whose_remote_copy_was_corrupted_is_refused() {
    let fx = Fixture::new();
    let share = fx.open(1024 * 1024, 1 << 30).await;
    share
        .write(&p("a.bin"), Bytes::from(data(1, 4096)))
        .await
        .unwrap();
    share.sync_once().await.unwrap();
    share.evict(&p("a.bin")).await.unwrap();
    let mut bad = data(1, 4096);
    bad[10] ^= 1;
    std::fs::write(fx.target.path().join("a.bin"), &bad).unwrap();
    let err = share.read(&p("a.bin")).await.unwrap_err();
    assert!(matches!(err, StorageError::DigestMismatch { .. }), "{err}");
    assert_eq!(
        share.entry(&p("a.bin")).unwrap().unwrap().state,
        FileState::Evicted
    );
    assert!(share.stats().unwrap().last_error.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_of_an_evicted_file_share_one_download() {
    let fx = Fixture::new();
    let share = fx.open(1024 * 1024, 1 << 30).await;
    let content = data(3, 3 * 1024 * 1024);
    share
        .write(&p("shared.bin"), Bytes::from(content.clone()))
        .await
        .unwrap();
    share.sync_once().await.unwrap();
    share.evict(&p("shared.bin")).await.unwrap();
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let share = share.clone();
            tokio::spawn(async move { share.read(&p("shared.bin")).await.unwrap() })
        })
        .collect();
    for r in readers {
        assert_eq!(sha256_hex(&r.await.unwrap()), sha256_hex(&content));
    }
    assert_eq!(share.stats().unwrap().downloads, 1);
}

#[tokio::test]
async fn unsafe_paths_are_refused_and_zero_byte_files_round_trip() {
    let fx = Fixture::new();
    let share = fx.open(1024 * 1024, 1 << 30).await;
    for bad in ["../escape", "/etc/passwd", "a/../../b", "a\0b", ""] {
        let err = SharePath::new(bad).unwrap_err();
        assert!(
            matches!(err, StorageError::InvalidPath { .. }),
            "{bad:?}: {err}"
        );
    }
    assert!(SharePath::from_bytes(b"caf\xe9.txt").is_err());
    let results = share
        .apply_actions(vec![
            Action::Evict("../../etc/passwd".into()),
            Action::Recall("/abs".into()),
            Action::Upload("x".repeat(2000)),
        ])
        .await;
    assert!(
        results
            .iter()
            .all(|(_, r)| matches!(r, Err(StorageError::InvalidPath { .. })))
    );

    share.write(&p("empty.txt"), Bytes::new()).await.unwrap();
    assert_eq!(share.sync_once().await.unwrap().uploaded, 1);
    assert_eq!(
        std::fs::metadata(fx.target.path().join("empty.txt"))
            .unwrap()
            .len(),
        0
    );
    share.evict(&p("empty.txt")).await.unwrap();
    assert_eq!(
        share.entry(&p("empty.txt")).unwrap().unwrap().state,
        FileState::Synced
    );
    assert_eq!(share.read(&p("empty.txt")).await.unwrap().len(), 0);
}

#[tokio::test]
async fn unsynced_and_pinned_files_are_never_evicted() {
    let fx = Fixture::new();
    let share = fx.open(1024 * 1024, 1 << 30).await;
    share
        .write(&p("new.bin"), Bytes::from(data(1, 100)))
        .await
        .unwrap();
    let err = share.evict(&p("new.bin")).await.unwrap_err();
    assert!(err.is_refusal(), "{err}");
    share.sync_once().await.unwrap();
    share.pin(&p("new.bin")).await.unwrap();
    assert!(share.evict(&p("new.bin")).await.unwrap_err().is_refusal());
    share.unpin(&p("new.bin")).await.unwrap();
    share.evict(&p("new.bin")).await.unwrap();
}

#[tokio::test]
async fn files_still_being_written_wait_for_the_settle_window() {
    let fx = Fixture::new();
    let mut opts = fast_options(1024 * 1024);
    opts.settle_window = Duration::from_millis(600);
    let share = Share::open(
        local_spec("data", fx.root.path(), fx.target.path(), 1 << 30),
        opts,
    )
    .await
    .unwrap();
    std::fs::write(fx.root.path().join("growing.log"), b"partial").unwrap();
    let r = share.sync_once().await.unwrap();
    assert_eq!((r.uploaded, r.deferred), (0, 1), "{r:?}");
    assert!(matches!(
        share.upload(&p("growing.log")).await,
        Err(StorageError::NotSettled(_))
    ));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(share.sync_once().await.unwrap().uploaded, 1);
}

#[tokio::test]
async fn reopening_reuploads_files_changed_while_down_and_keeps_stubs() {
    let fx = Fixture::new();
    {
        let share = fx.open(1024 * 1024, 1 << 30).await;
        share
            .write(&p("keep.bin"), Bytes::from(data(1, 2000)))
            .await
            .unwrap();
        share
            .write(&p("cold.bin"), Bytes::from(data(2, 2000)))
            .await
            .unwrap();
        share
            .write(&p("gone.bin"), Bytes::from(data(3, 2000)))
            .await
            .unwrap();
        share.sync_once().await.unwrap();
        share.evict(&p("cold.bin")).await.unwrap();
    }
    // While the engine is down: one file is changed, one synced file vanishes.
    std::fs::write(fx.root.path().join("keep.bin"), data(4, 3000)).unwrap();
    std::fs::remove_file(fx.root.path().join("gone.bin")).unwrap();
    let share = fx.open(1024 * 1024, 1 << 30).await;
    assert_eq!(
        share.entry(&p("keep.bin")).unwrap().unwrap().state,
        FileState::Local
    );
    assert_eq!(
        share.entry(&p("cold.bin")).unwrap().unwrap().state,
        FileState::Evicted
    );
    assert_eq!(
        share.entry(&p("gone.bin")).unwrap().unwrap().state,
        FileState::Evicted
    );
    assert_eq!(share.sync_once().await.unwrap().uploaded, 1);
    assert_eq!(
        std::fs::read(fx.target.path().join("keep.bin")).unwrap(),
        data(4, 3000)
    );
    assert_eq!(
        share.read(&p("cold.bin")).await.unwrap(),
        Bytes::from(data(2, 2000))
    );
    assert_eq!(
        share.read(&p("gone.bin")).await.unwrap(),
        Bytes::from(data(3, 2000))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_is_throttled_to_the_upload_rate_when_the_quota_is_full_of_unsynced_data() {
    let fx = Fixture::new();
    let share = fx.open(1024 * 1024, 300_000).await;
    share
        .write(&p("a"), Bytes::from(data(1, 200_000)))
        .await
        .unwrap();
    // 200 kB unsynced + 200 kB does not fit in 300 kB: the writer waits for the upload.
    let writer = {
        let share = share.clone();
        tokio::spawn(async move { share.write(&p("b"), Bytes::from(data(2, 200_000))).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!writer.is_finished());
    let stats = share.stats().unwrap();
    assert!(
        stats.write_throttle_alert && stats.write_throttle_events == 1,
        "{stats:?}"
    );
    share.sync_once().await.unwrap();
    writer.await.unwrap().unwrap();
    let stats = share.stats().unwrap();
    assert!(!stats.write_throttle_alert);
    assert!(
        stats.bytes_local <= 300_000,
        "synced data was evicted to make room: {stats:?}"
    );
    assert_eq!(
        share.entry(&p("a")).unwrap().unwrap().state,
        FileState::Evicted
    );
    assert!(matches!(
        share.reserve(400_000).await,
        Err(StorageError::QuotaTooSmall { .. })
    ));
}

#[tokio::test]
async fn an_edge_local_share_never_uploads_and_refuses_writes_past_its_quota() {
    let root = tempfile::tempdir().unwrap();
    let share = Share::open(
        ShareSpec {
            name: "local-only".into(),
            root: root.path().to_path_buf(),
            kind: ShareKind::EdgeLocal,
            target: String::new(),
            target_options: Default::default(),
            quota_bytes: 10_000,
        },
        fast_options(1024 * 1024),
    )
    .await
    .unwrap();
    share
        .write(&p("a"), Bytes::from(data(1, 8000)))
        .await
        .unwrap();
    assert_eq!(share.sync_once().await.unwrap().uploaded, 0);
    assert!(matches!(
        share.write(&p("b"), Bytes::from(data(1, 8000))).await,
        Err(StorageError::QuotaExceeded { .. })
    ));
    assert!(matches!(
        share.evict(&p("a")).await,
        Err(StorageError::EdgeLocal { .. })
    ));
    let stats = share.stats().unwrap();
    assert_eq!((stats.files_local, stats.upload_queue_len), (1, 0));
}

#[tokio::test]
async fn tiering_input_lists_the_coldest_files_first_and_stats_serialize() {
    let fx = Fixture::new();
    let share = fx.open(1024 * 1024, 1_000_000).await;
    share
        .write(&p("old"), Bytes::from(data(1, 10)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    share
        .write(&p("new"), Bytes::from(data(2, 20)))
        .await
        .unwrap();
    share.sync_once().await.unwrap();
    share.pin(&p("new")).await.unwrap();
    let input = share.tiering_input(10).unwrap();
    assert_eq!(input.volume.capacity_bytes, 1_000_000);
    assert_eq!(input.volume.used_bytes, 30);
    assert_eq!(input.files[0].path, "old");
    assert!(input.files[1].pinned);
    assert_eq!(input.files[1].state, FileState::Synced);
    assert_eq!(share.tiering_input(1).unwrap().files.len(), 1);
    let json = serde_json::to_value(share.stats().unwrap()).unwrap();
    assert_eq!(json["files_synced"], 2);
    let actions: Vec<Action> =
        serde_json::from_str(r#"[{"action":"evict","path":"old"}]"#).unwrap();
    let applied = share.apply_actions(actions).await;
    assert!(applied[0].1.is_ok());
    assert_eq!(share.throttle().current_limit(), None);
}

#[tokio::test]
async fn a_second_engine_on_the_same_share_is_refused() {
    let fx = Fixture::new();
    let _first = fx.open(1024 * 1024, 1 << 30).await;
    let second = Share::open(
        local_spec("data", fx.root.path(), fx.target.path(), 1 << 30),
        fast_options(1024 * 1024),
    )
    .await;
    assert!(
        matches!(second, Err(StorageError::Journal(_))),
        "{second:?}"
    );
}

/// The SHA-256 of a file, read in 8 MiB pieces.
fn file_digest(path: &std::path::Path) -> String {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 8 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex::encode(hasher.finalize())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_two_gib_uploads_in_parts_evicts_and_recalls_with_its_digest_intact() {
    use std::io::Write;
    const MIB: u64 = 1 << 20;
    // 2 GiB and one odd piece: the last part is short and no size lines up with a boundary.
    const LEN: u64 = 2048 * MIB + 12_345;
    let fx = Fixture::new();
    let share = fx.open(64 * MIB, 4 << 30).await;
    let local = fx.root.path().join("video/night.mkv");
    std::fs::create_dir_all(local.parent().unwrap()).unwrap();
    {
        // Written the way a camera recorder writes: a piece at a time, never whole in memory.
        let base = data(11, MIB as usize);
        let mut f = std::io::BufWriter::new(std::fs::File::create(&local).unwrap());
        let mut left = LEN;
        let mut i = 0u64;
        while left > 0 {
            let mut piece = base.clone();
            piece[..8].copy_from_slice(&i.to_le_bytes());
            let n = left.min(MIB) as usize;
            f.write_all(&piece[..n]).unwrap();
            left -= n as u64;
            i += 1;
        }
        f.flush().unwrap();
    }
    let digest = file_digest(&local);

    let report = share.sync_once().await.unwrap();
    assert_eq!(report.uploaded, 1, "{report:?}");
    assert_eq!(
        share.stats().unwrap().parts_sent,
        33,
        "2 GiB + a bit in 64 MiB parts"
    );
    let remote = fx.target.path().join("video/night.mkv");
    assert_eq!(std::fs::metadata(&remote).unwrap().len(), LEN);
    assert_eq!(file_digest(&remote), digest);
    let entry = share.entry(&p("video/night.mkv")).unwrap().unwrap();
    assert_eq!((entry.state, entry.size), (FileState::Synced, LEN));

    share.evict(&p("video/night.mkv")).await.unwrap();
    assert_eq!(std::fs::metadata(&local).unwrap().len(), 0, "a stub");
    // A range at the very end comes from the remote without a recall.
    let tail = share
        .read_range(&p("video/night.mkv"), LEN - 100..LEN)
        .await
        .unwrap();
    let last_piece = (LEN - 1) / MIB;
    let mut expected = data(11, MIB as usize);
    expected[..8].copy_from_slice(&last_piece.to_le_bytes());
    let offset = (LEN - 100 - last_piece * MIB) as usize;
    assert_eq!(&tail[..], &expected[offset..offset + 100]);
    assert!(share.recall(&p("video/night.mkv")).await.unwrap());
    assert_eq!(std::fs::metadata(&local).unwrap().len(), LEN);
    assert_eq!(file_digest(&local), digest);
}

/// Waits until `path` is `state` in the journal, for at most `limit`; returns the time taken.
async fn wait_for_state(
    share: &Share,
    path: &str,
    state: FileState,
    limit: Duration,
) -> Option<Duration> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if share.entry(&p(path)).unwrap().map(|e| e.state) == Some(state) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test]
async fn files_placed_in_a_watched_share_upload_on_the_event_not_on_a_poll() {
    let fx = Fixture::new();
    let mut opts = fast_options(1024 * 1024);
    // Polls and rescans so rare that only the directory watch can explain a prompt upload.
    opts.scan_interval = Duration::from_secs(120);
    opts.rescan_interval = Duration::from_secs(120);
    opts.settle_window = Duration::from_millis(300);
    let share = Share::open(
        local_spec("data", fx.root.path(), fx.target.path(), 1 << 30),
        opts,
    )
    .await
    .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let engine = tokio::spawn({
        let share = share.clone();
        async move { share.run(stop_rx).await }
    });
    // Let the first pass finish and the engine go to sleep.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A file written by another program, in a directory created after the watch began.
    std::fs::create_dir_all(fx.root.path().join("cam/2026")).unwrap();
    let body = data(7, 200_000);
    std::fs::write(fx.root.path().join("cam/2026/clip.bin"), &body).unwrap();
    let took = wait_for_state(
        &share,
        "cam/2026/clip.bin",
        FileState::Synced,
        Duration::from_secs(10),
    )
    .await
    .expect("the new file was not uploaded within 10 s");
    // Settle window (300 ms) plus a pass, far from the 120 s poll.
    assert!(
        took >= Duration::from_millis(250),
        "uploaded before it settled: {took:?}"
    );
    let remote = std::fs::read(fx.target.path().join("cam/2026/clip.bin")).unwrap();
    assert_eq!(sha256_hex(&remote), sha256_hex(&body));

    // Overwriting it is an event too: the new content is uploaded.
    let body2 = data(8, 90_000);
    std::fs::write(fx.root.path().join("cam/2026/clip.bin"), &body2).unwrap();
    let start = std::time::Instant::now();
    loop {
        let remote = std::fs::read(fx.target.path().join("cam/2026/clip.bin")).unwrap();
        if sha256_hex(&remote) == sha256_hex(&body2) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the overwrite was not uploaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), engine)
        .await
        .expect("the engine stops on shutdown")
        .unwrap();
}

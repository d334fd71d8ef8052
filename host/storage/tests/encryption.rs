//! Client-side encryption of a cloud-tiered share's objects, on a local-directory target so the
//! raw objects can be inspected.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use common::{data, fast_options, local_spec, sha256_hex};
use outpost_keys::{DeviceKeyStore, KeyProvider};
use outpost_storage::{FileState, Share, SharePath, StorageError};

const MIB: usize = 1024 * 1024;
const PART: u64 = 5 * 1024 * 1024;
const MARKER: &[u8] = b"OUTPOST-PLAINTEXT-MARKER";

fn p(s: &str) -> SharePath {
    SharePath::new(s).unwrap()
}

/// Pseudo-random bytes with the plaintext marker every 4 KiB.
fn marked(seed: u64, len: usize) -> Vec<u8> {
    let mut d = data(seed, len);
    let mut at = 0;
    while at + MARKER.len() <= len {
        d[at..at + MARKER.len()].copy_from_slice(MARKER);
        at += 4096;
    }
    d
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for item in std::fs::read_dir(&d).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

struct Fixture {
    root: tempfile::TempDir,
    target: tempfile::TempDir,
    _keys_dir: tempfile::TempDir,
    keys: Arc<DeviceKeyStore>,
}

impl Fixture {
    fn new() -> Self {
        let keys_dir = tempfile::tempdir().unwrap();
        let keys = Arc::new(DeviceKeyStore::open(keys_dir.path().join("k"), "share-kek").unwrap());
        Fixture {
            root: tempfile::tempdir().unwrap(),
            target: tempfile::tempdir().unwrap(),
            _keys_dir: keys_dir,
            keys,
        }
    }

    async fn open_at(&self, root: &Path) -> Share {
        let mut opts = fast_options(PART);
        opts.encryption = Some(self.keys.clone());
        opts.read_back_verify = true;
        Share::open(local_spec("data", root, self.target.path(), 1 << 30), opts)
            .await
            .unwrap()
    }

    async fn open(&self) -> Share {
        self.open_at(self.root.path()).await
    }

    /// Writes a small and a 20 MiB (four 5 MiB parts) file and syncs them.
    async fn upload_two(&self, share: &Share) -> (Vec<u8>, Vec<u8>) {
        let small = marked(1, 3000);
        let big = marked(2, 20 * MIB + 12_345);
        share
            .write(&p("small.txt"), Bytes::from(small.clone()))
            .await
            .unwrap();
        share
            .write(&p("dir/big.bin"), Bytes::from(big.clone()))
            .await
            .unwrap();
        let report = share.sync_once().await.unwrap();
        assert_eq!((report.uploaded, report.failed), (2, 0), "{report:?}");
        (small, big)
    }
}

#[tokio::test]
async fn objects_are_encrypted_and_recall_and_ranges_return_the_plaintext() {
    let fx = Fixture::new();
    let share = fx.open().await;
    let (small, big) = fx.upload_two(&share).await;
    assert_eq!(
        share.stats().unwrap().parts_sent,
        5,
        "20 MiB + 12 KiB / 5 MiB"
    );

    let objects = files_under(fx.target.path());
    assert!(objects.len() >= 2, "{objects:?}");
    for object in &objects {
        let raw = std::fs::read(object).unwrap();
        assert!(!contains(&raw, MARKER), "plaintext in {}", object.display());
        assert_eq!(&raw[..4], b"OPKE", "{}", object.display());
    }
    let header = 17 + "share-kek".len() as u64 + 7 + 40 + 16;
    let raw_big = std::fs::metadata(fx.target.path().join("dir/big.bin"))
        .unwrap()
        .len();
    let expected: u64 = [PART, PART, PART, PART, 12_345]
        .iter()
        .map(|&u| outpost_storage::sealed_unit_len(header, u))
        .sum();
    assert_eq!(raw_big, expected);
    let entry = share.entry(&p("dir/big.bin")).unwrap().unwrap();
    assert!(entry.encrypted);
    assert_eq!(entry.encryption_unit, Some(PART));
    assert_eq!(entry.sha256.as_deref(), Some(sha256_hex(&big).as_str()));

    for (path, content) in [("small.txt", &small), ("dir/big.bin", &big)] {
        share.evict(&p(path)).await.unwrap();
        assert_eq!(
            std::fs::metadata(fx.root.path().join(path)).unwrap().len(),
            0
        );
        assert!(share.recall(&p(path)).await.unwrap());
        assert_eq!(&std::fs::read(fx.root.path().join(path)).unwrap(), content);
    }

    // Ranged reads of the evicted file fetch and open only the units they cover.
    share.evict(&p("dir/big.bin")).await.unwrap();
    let part = PART as usize;
    for range in [
        part - 100..part + 100,
        0..10,
        part - 1..3 * part + 1,
        4 * part..big.len(),
        big.len() - 1..big.len(),
        7..7,
    ] {
        let got = share
            .read_range(&p("dir/big.bin"), range.start as u64..range.end as u64)
            .await
            .unwrap();
        assert_eq!(&got[..], &big[range.clone()], "{range:?}");
    }
    let e = share.entry(&p("dir/big.bin")).unwrap().unwrap();
    assert_eq!(e.state, FileState::Evicted);
    assert!(share.stats().unwrap().range_downloads >= 5);
}

#[tokio::test]
async fn a_flipped_byte_fails_recall_and_range_reads() {
    let fx = Fixture::new();
    let share = fx.open().await;
    let (_small, big) = fx.upload_two(&share).await;
    for path in ["small.txt", "dir/big.bin"] {
        share.evict(&p(path)).await.unwrap();
        let object = fx.target.path().join(path);
        let mut raw = std::fs::read(&object).unwrap();
        let at = raw.len() / 2 + 7;
        raw[at] ^= 0x01;
        std::fs::write(&object, &raw).unwrap();
        let err = share.recall(&p(path)).await.unwrap_err();
        assert!(matches!(err, StorageError::Encryption { .. }), "{err}");
        let e = share.entry(&p(path)).unwrap().unwrap();
        assert_eq!(e.state, FileState::Evicted);
        assert_eq!(
            std::fs::metadata(fx.root.path().join(path)).unwrap().len(),
            0
        );
    }
    // The flipped byte of the big object lies in its third part (of five): a range touching
    // that part fails, even one that starts in an untouched part.
    let part = PART as usize;
    for range in [2 * part + 10..2 * part + 20, part..2 * part + 1] {
        let err = share
            .read_range(&p("dir/big.bin"), range.start as u64..range.end as u64)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StorageError::Encryption { .. }),
            "{range:?}: {err}"
        );
    }
    // Every untouched part still opens to exactly its original bytes, whole and in pieces.
    for range in [
        0..part,
        part..2 * part,
        3 * part..4 * part,
        4 * part..big.len(),
        3 * part..big.len(),
        0..10,
        2 * part - 7..2 * part,
        3 * part..3 * part + 7,
    ] {
        let got = share
            .read_range(&p("dir/big.bin"), range.start as u64..range.end as u64)
            .await
            .unwrap_or_else(|e| panic!("{range:?} lies in untouched parts: {e}"));
        assert!(
            got[..] == big[range.clone()],
            "{range:?}: the untouched part did not decrypt to its original bytes"
        );
    }
}

#[tokio::test]
async fn a_disabled_kek_fails_recall_and_upload_naming_the_key() {
    let fx = Fixture::new();
    let share = fx.open().await;
    let (small, _big) = fx.upload_two(&share).await;
    share.evict(&p("small.txt")).await.unwrap();
    let version = fx.keys.current_version().unwrap();
    fx.keys.disable_version(version).unwrap();

    let err = share.recall(&p("small.txt")).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StorageError::Encryption { .. }), "{msg}");
    assert!(msg.contains("share-kek"), "{msg}");
    share.evict(&p("dir/big.bin")).await.unwrap();
    let err = share
        .read_range(&p("dir/big.bin"), 0..10)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("share-kek"), "{err}");

    // A new file cannot be uploaded, and nothing of it reaches the target.
    let fresh = marked(3, 1000);
    share
        .write(&p("fresh.txt"), Bytes::from(fresh))
        .await
        .unwrap();
    let err = share.upload(&p("fresh.txt")).await.unwrap_err();
    assert!(err.to_string().contains("share-kek"), "{err}");
    assert!(!fx.target.path().join("fresh.txt").exists());

    fx.keys.enable_version(version).unwrap();
    assert!(share.recall(&p("small.txt")).await.unwrap());
    assert_eq!(
        std::fs::read(fx.root.path().join("small.txt")).unwrap(),
        small
    );
}

#[tokio::test]
async fn a_second_share_refreshes_and_recalls_encrypted_objects() {
    let fx = Fixture::new();
    let share = fx.open().await;
    let (small, big) = fx.upload_two(&share).await;
    drop(share);

    let other_root = tempfile::tempdir().unwrap();
    let other = fx.open_at(other_root.path()).await;
    let report = other.refresh().await.unwrap();
    assert_eq!(report.added, 2, "{report:?}");
    for (path, content) in [("small.txt", &small), ("dir/big.bin", &big)] {
        let e = other.entry(&p(path)).unwrap().unwrap();
        assert!(e.encrypted);
        assert_eq!(e.size, content.len() as u64);
        assert_eq!(&other.read(&p(path)).await.unwrap()[..], &content[..]);
    }

    // Without the key provider the objects are skipped, never taken for plaintext.
    let bare_root = tempfile::tempdir().unwrap();
    let bare = Share::open(
        local_spec("data", bare_root.path(), fx.target.path(), 1 << 30),
        fast_options(PART),
    )
    .await
    .unwrap();
    let report = bare.refresh().await.unwrap();
    assert_eq!((report.added, report.skipped), (0, 2), "{report:?}");
    assert!(bare.entries().unwrap().is_empty());
}

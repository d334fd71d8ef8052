//! Encryption at rest of the kv store and the spools, on real files with the device key store.

use std::path::Path;
use std::sync::Arc;

use outpost_keys::DeviceKeyStore;
use outpost_services::{KvError, KvStore, SharedProvider, Spool, SpoolError, SpoolLimits};
use redb::ReadableTable;

const MARKER: &[u8] = b"MARKER-7f3a-plaintext-must-not-reach-the-disk";

fn keys(dir: &Path) -> (Arc<DeviceKeyStore>, SharedProvider) {
    let keys = Arc::new(DeviceKeyStore::open(dir.join("keys"), "device-kek").unwrap());
    let shared: SharedProvider = keys.clone();
    (keys, shared)
}

/// Every file under `dir`, read whole.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

fn assert_no_marker(dir: &Path) {
    for (path, bytes) in files(dir) {
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER),
            "plaintext marker found in {}",
            path.display()
        );
    }
}

#[test]
fn kv_values_and_spooled_payloads_never_reach_the_disk_in_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let (_, p) = keys(dir.path());
    let kv = KvStore::open_encrypted(&dir.path().join("kv.redb"), p.clone()).unwrap();
    let spool = Spool::open_encrypted(
        &dir.path().join("spool.redb"),
        SpoolLimits::default(),
        p.clone(),
    )
    .unwrap();
    let ns = kv.namespace("plugin", 1 << 20);
    for i in 0..200 {
        let mut value = MARKER.to_vec();
        value.extend_from_slice(format!("-{i}").as_bytes());
        ns.set(&format!("k{i}"), &value).unwrap();
        spool.push("site/readings", &value).unwrap();
    }
    drop((kv, spool, ns));
    assert_no_marker(dir.path());

    // Everything reads back after a restart, and quotas count plaintext bytes.
    let kv = KvStore::open_encrypted(&dir.path().join("kv.redb"), p.clone()).unwrap();
    let ns = kv.namespace("plugin", 1 << 20);
    let v = ns.get("k7").unwrap().unwrap();
    assert!(v.starts_with(MARKER) && v.ends_with(b"-7"));
    let expected: u64 = (0..200)
        .map(|i| (format!("k{i}").len() + MARKER.len() + format!("-{i}").len()) as u64)
        .sum();
    assert_eq!(ns.usage().unwrap(), expected);
    let spool =
        Spool::open_encrypted(&dir.path().join("spool.redb"), SpoolLimits::default(), p).unwrap();
    let head = spool.peek(200).unwrap();
    assert_eq!(head.len(), 200);
    assert!(head[199].payload.ends_with(b"-199"));
    assert_eq!(head[0].topic, "site/readings");
    assert_eq!(
        spool.stats().bytes,
        (0..200)
            .map(|i| ("site/readings".len() + MARKER.len() + format!("-{i}").len()) as u64)
            .sum::<u64>()
    );
}

#[test]
fn a_plaintext_store_is_encrypted_in_place_when_encryption_is_turned_on() {
    let dir = tempfile::tempdir().unwrap();
    let (_, p) = keys(dir.path());
    let kv_path = dir.path().join("kv.redb");
    let spool_path = dir.path().join("spool.redb");
    KvStore::open(&kv_path)
        .unwrap()
        .namespace("n", 1 << 20)
        .set("k", MARKER)
        .unwrap();
    Spool::open(&spool_path, SpoolLimits::default())
        .unwrap()
        .push("t", MARKER)
        .unwrap();

    let kv = KvStore::open_encrypted(&kv_path, p.clone()).unwrap();
    assert_eq!(
        kv.namespace("n", 1 << 20).get("k").unwrap().unwrap(),
        MARKER
    );
    let spool = Spool::open_encrypted(&spool_path, SpoolLimits::default(), p).unwrap();
    assert_eq!(spool.peek(1).unwrap()[0].payload, MARKER);
    drop((kv, spool));
    // The old plaintext pages are gone too, not only the live values.
    assert_no_marker(dir.path());

    // Once encrypted, a store cannot be opened as a plaintext one.
    assert_eq!(
        KvStore::open(&kv_path).err().unwrap(),
        KvError::NoKeyProvider
    );
    assert_eq!(
        Spool::open(&spool_path, SpoolLimits::default()).unwrap_err(),
        SpoolError::NoKeyProvider
    );
}

#[test]
fn a_value_copied_under_another_key_fails_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let (_, p) = keys(dir.path());
    let path = dir.path().join("kv.redb");
    let kv = KvStore::open_encrypted(&path, p.clone()).unwrap();
    let ns = kv.namespace("n", 1 << 20);
    ns.set("admin", b"yes").unwrap();
    ns.set("guest", b"no").unwrap();
    drop((kv, ns));
    // Someone with the disk swaps the two stored records.
    {
        let table: redb::TableDefinition<(&str, &str), &[u8]> =
            redb::TableDefinition::new("kv-data");
        let db = redb::Database::open(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(table).unwrap();
            let admin = t.get(("n", "admin")).unwrap().unwrap().value().to_vec();
            let guest = t.get(("n", "guest")).unwrap().unwrap().value().to_vec();
            t.insert(("n", "admin"), guest.as_slice()).unwrap();
            t.insert(("n", "guest"), admin.as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }
    let ns = KvStore::open_encrypted(&path, p)
        .unwrap()
        .namespace("n", 1 << 20);
    let err = ns.get("admin").unwrap_err();
    assert!(err.to_string().contains("altered or moved"), "{err}");
}

#[test]
fn rotation_rewraps_the_data_keys_and_a_disabled_kek_version_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (keys, p) = keys(dir.path());
    let kv_path = dir.path().join("kv.redb");
    let spool_path = dir.path().join("spool.redb");
    let kv = KvStore::open_encrypted(&kv_path, p.clone()).unwrap();
    let spool = Spool::open_encrypted(&spool_path, SpoolLimits::default(), p.clone()).unwrap();
    kv.namespace("n", 100).set("k", b"v1").unwrap();
    spool.push("t", b"m1").unwrap();
    assert_eq!(kv.encryption(), Some(1));

    let v2 = keys.rotate().unwrap();
    kv.rewrap().unwrap();
    spool.rewrap().unwrap();
    assert_eq!((kv.encryption(), spool.encryption()), (Some(v2), Some(v2)));
    // Readers were not disturbed, and the old KEK version is no longer needed.
    assert_eq!(kv.namespace("n", 100).get("k").unwrap().unwrap(), b"v1");
    drop((kv, spool));
    keys.disable_version(1).unwrap();
    let kv = KvStore::open_encrypted(&kv_path, p.clone()).unwrap();
    assert_eq!(kv.namespace("n", 100).get("k").unwrap().unwrap(), b"v1");
    let spool = Spool::open_encrypted(&spool_path, SpoolLimits::default(), p.clone()).unwrap();
    assert_eq!(spool.peek(1).unwrap()[0].payload, b"m1");

    // Disabling the version in use makes the data unreadable, with the key named; the running
    // store notices through its check.
    keys.disable_version(v2).unwrap();
    let err = kv.check_key().unwrap_err().to_string();
    assert!(
        err.contains("disabled") && err.contains("device-kek"),
        "{err}"
    );
    drop((kv, spool));
    let err = KvStore::open_encrypted(&kv_path, p.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("disabled"), "{err}");
    let err = Spool::open_encrypted(&spool_path, SpoolLimits::default(), p)
        .unwrap_err()
        .to_string();
    assert!(err.contains("disabled"), "{err}");
}

//! End-to-end behaviour of the envelope format and the device key store.

use std::io::{Cursor, Read, Write};
use std::os::unix::fs::PermissionsExt;

use outpost_keys::{
    DecryptingReader, DeviceKeyStore, EncryptingWriter, Header, KeyProvider, KeysError,
    RangeReader, open, rewrap, rewrap_file, seal,
};
use proptest::prelude::*;

fn store() -> (tempfile::TempDir, DeviceKeyStore) {
    let dir = tempfile::tempdir().unwrap();
    let keys = DeviceKeyStore::open(dir.path().join("keys"), "device-kek").unwrap();
    (dir, keys)
}

fn encrypt(keys: &DeviceKeyStore, data: &[u8], seg: u32) -> Vec<u8> {
    let mut w = EncryptingWriter::with_segment_size(keys, Vec::new(), seg).unwrap();
    // Write in odd-sized pieces to exercise buffering.
    for chunk in data.chunks(7) {
        w.write_all(chunk).unwrap();
    }
    w.finish().unwrap()
}

fn decrypt(keys: &DeviceKeyStore, obj: &[u8]) -> Result<Vec<u8>, KeysError> {
    let mut r = DecryptingReader::new(keys, obj)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out)
        .map_err(|e| KeysError::from_io_owned(e, "test"))?;
    Ok(out)
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

const SEG: u32 = 64;

fn header_len(obj: &[u8]) -> usize {
    Header::parse(obj).unwrap().1
}

#[test]
fn round_trips_at_every_boundary_size() {
    let (_d, keys) = store();
    for n in [0, 1, 63, 64, 65, 64 * 10 + 3, 64 * 10] {
        let data = pattern(n);
        let obj = encrypt(&keys, &data, SEG);
        assert_eq!(decrypt(&keys, &obj).unwrap(), data, "size {n}");
        let mut rr = RangeReader::new(&keys, Cursor::new(&obj)).unwrap();
        assert_eq!(rr.plaintext_len(), n as u64);
        assert_eq!(rr.read_range(0, n as u64).unwrap(), data);
    }
    assert_eq!(open(&keys, &seal(&keys, b"").unwrap()).unwrap(), b"");
    assert_eq!(
        open(&keys, &seal(&keys, &pattern(200_000)).unwrap()).unwrap(),
        pattern(200_000)
    );
}

fn three_segments(keys: &DeviceKeyStore) -> Vec<u8> {
    encrypt(keys, &pattern(64 * 2 + 10), SEG)
}

#[test]
fn truncation_missing_the_last_segment_is_reported_as_truncated() {
    let (_d, keys) = store();
    let obj = three_segments(&keys);
    let cut = header_len(&obj) + 2 * (64 + 16);
    assert!(matches!(
        decrypt(&keys, &obj[..cut]),
        Err(KeysError::Truncated { segments: 2 })
    ));
    assert!(matches!(
        RangeReader::new(&keys, Cursor::new(&obj[..cut])),
        Err(KeysError::Truncated { .. })
    ));
    let hl = header_len(&obj);
    assert!(matches!(
        decrypt(&keys, &obj[..hl]),
        Err(KeysError::Truncated { segments: 0 })
    ));
}

#[test]
fn swapped_segments_are_reported_as_out_of_order() {
    let (_d, keys) = store();
    let mut obj = three_segments(&keys);
    let h = header_len(&obj);
    let s = 64 + 16;
    let (a, b) = obj[h..].split_at_mut(s);
    a.swap_with_slice(&mut b[..s]);
    assert!(matches!(
        decrypt(&keys, &obj),
        Err(KeysError::SegmentOutOfOrder {
            position: 0,
            sealed_at: 1
        })
    ));
}

#[test]
fn a_flipped_body_byte_is_reported_as_segment_tampering() {
    let (_d, keys) = store();
    let mut obj = three_segments(&keys);
    let i = header_len(&obj) + 64 + 16 + 5;
    obj[i] ^= 1;
    assert!(matches!(
        decrypt(&keys, &obj),
        Err(KeysError::SegmentTampered { index: 1 })
    ));
    let mut rr = RangeReader::new(&keys, Cursor::new(&obj)).unwrap();
    assert!(
        rr.read_range(0, 10).is_ok(),
        "untouched segment still reads"
    );
    assert!(matches!(
        rr.read_range(70, 4),
        Err(KeysError::SegmentTampered { index: 1 })
    ));
}

#[test]
fn every_header_byte_flip_is_detected_and_never_yields_plaintext() {
    let (_d, keys) = store();
    let obj = three_segments(&keys);
    for i in 0..header_len(&obj) {
        let mut bad = obj.clone();
        bad[i] ^= 0x01;
        let err = decrypt(&keys, &bad).expect_err(&format!("header byte {i} flip accepted"));
        assert!(
            matches!(
                err,
                KeysError::BadMagic { .. }
                    | KeysError::UnsupportedVersion { .. }
                    | KeysError::MalformedHeader { .. }
                    | KeysError::UnknownWrapAlgorithm { .. }
                    | KeysError::KeyIdMismatch { .. }
                    | KeysError::KeyVersionMissing { .. }
                    | KeysError::WrappedKeyRejected { .. }
                    | KeysError::HeaderTampered
                    | KeysError::InvalidSegmentSize { .. }
            ),
            "byte {i}: {err}"
        );
    }
    // A stable-part byte (the nonce prefix) is reported as header tampering specifically.
    let mut bad = obj.clone();
    bad[12] ^= 1;
    assert!(matches!(
        decrypt(&keys, &bad),
        Err(KeysError::HeaderTampered)
    ));
    // A wrapped-key byte is reported as the wrapped key failing.
    let mut bad = obj.clone();
    bad[header_len(&obj) - 20] ^= 1;
    assert!(matches!(
        decrypt(&keys, &bad),
        Err(KeysError::WrappedKeyRejected { version: 1, .. })
    ));
}

#[test]
fn appended_bytes_are_reported_as_trailing_data() {
    let (_d, keys) = store();
    for extra in [&b"x"[..], &[0u8; 6][..]] {
        let mut obj = three_segments(&keys);
        obj.extend_from_slice(extra);
        assert!(matches!(
            decrypt(&keys, &obj),
            Err(KeysError::TrailingData { final_index: 2 })
        ));
    }
    let mut full = encrypt(&keys, &pattern(64 * 3), SEG);
    full.extend_from_slice(&[0u8; 80]);
    assert!(matches!(
        decrypt(&keys, &full),
        Err(KeysError::TrailingData { final_index: 2 })
    ));
    let mut empty = encrypt(&keys, b"", SEG);
    empty.push(0);
    assert!(matches!(
        decrypt(&keys, &empty),
        Err(KeysError::TrailingData { final_index: 0 })
    ));
}

#[test]
fn data_written_under_v1_opens_after_rotation_and_after_rewrap_names_v2() {
    let dir = tempfile::tempdir().unwrap();
    let keys = DeviceKeyStore::open(dir.path().join("keys"), "device-kek").unwrap();
    let data = pattern(1000);
    let path = dir.path().join("obj.enc");
    let mut w =
        EncryptingWriter::with_segment_size(&keys, std::fs::File::create(&path).unwrap(), 128)
            .unwrap();
    w.write_all(&data).unwrap();
    w.finish().unwrap();
    let before = std::fs::read(&path).unwrap();
    let h = header_len(&before);

    assert_eq!(keys.rotate().unwrap(), 2);
    assert_eq!(keys.current_version().unwrap(), 2);
    assert_eq!(decrypt(&keys, &before).unwrap(), data);

    let new_header = rewrap(&keys, &before).unwrap();
    assert_eq!(new_header.len(), h);
    let header = rewrap_file(&keys, &path).unwrap();
    assert_eq!(header.wrapped.version, 2);
    let after = std::fs::read(&path).unwrap();
    assert_eq!(after[h..], before[h..], "segments untouched");
    assert_eq!(Header::parse(&after).unwrap().0.wrapped.version, 2);

    keys.disable_version(1).unwrap();
    assert_eq!(decrypt(&keys, &after).unwrap(), data);
    let err = decrypt(&keys, &before).unwrap_err();
    assert!(matches!(
        err,
        KeysError::KeyVersionDisabled { version: 1, .. }
    ));
    assert_eq!(err.to_string(), "key device-kek version 1 is disabled");
}

#[test]
fn a_missing_key_version_is_a_clear_error() {
    let (_d, keys) = store();
    let obj = three_segments(&keys);
    std::fs::remove_file(keys.dir().join("device-kek.v1.kek")).unwrap();
    let err = decrypt(&keys, &obj).unwrap_err();
    assert_eq!(err.to_string(), "key device-kek version 1 is missing");
}

#[test]
fn a_passphrase_sealed_store_refuses_the_wrong_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let keys = DeviceKeyStore::open_sealed(&path, "device-kek", "correct horse").unwrap();
    let obj = seal(&keys, b"secret").unwrap();
    drop(keys);
    assert!(matches!(
        DeviceKeyStore::open_sealed(&path, "device-kek", "wrong"),
        Err(KeysError::WrongPassphrase { .. })
    ));
    assert!(matches!(
        DeviceKeyStore::open(&path, "device-kek"),
        Err(KeysError::PassphraseRequired { .. })
    ));
    let keys = DeviceKeyStore::open_sealed(&path, "device-kek", "correct horse").unwrap();
    assert_eq!(open(&keys, &obj).unwrap(), b"secret");
    let kek = std::fs::read(path.join("device-kek.v1.kek")).unwrap();
    assert_eq!(kek[4], 1, "sealed mode");
}

#[test]
fn key_files_are_0600_in_a_0700_directory_and_wipe_destroys_them() {
    let (_d, keys) = store();
    keys.rotate().unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(keys.dir()), 0o700);
    for v in [1, 2] {
        assert_eq!(
            mode(&keys.dir().join(format!("device-kek.v{v}.kek"))),
            0o600
        );
    }
    let dir = keys.dir().to_owned();
    let report = keys.wipe().unwrap();
    assert_eq!(report.destroyed.len(), 2);
    assert!(!dir.exists());
}

#[test]
fn no_plaintext_marker_reaches_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let keys = DeviceKeyStore::open(dir.path().join("keys"), "device-kek").unwrap();
    let marker = b"OUTPOST-PLAINTEXT-MARKER-7f3a";
    let path = dir.path().join("obj.enc");
    let mut w =
        EncryptingWriter::with_segment_size(&keys, std::fs::File::create(&path).unwrap(), 4096)
            .unwrap();
    for _ in 0..1000 {
        w.write_all(marker).unwrap();
    }
    w.finish().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(!bytes.windows(marker.len()).any(|w| w == marker));
    assert!(!bytes.windows(8).any(|w| w == &marker[..8]));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_size_round_trips_and_its_header_reparses(n in 0usize..3000, seg in 1u32..300) {
        let (_d, keys) = store();
        let data = pattern(n);
        let obj = encrypt(&keys, &data, seg);
        let (h, len) = Header::parse(&obj).unwrap();
        prop_assert_eq!(&obj[..len], &h.emit()[..]);
        prop_assert_eq!(decrypt(&keys, &obj).unwrap(), data);
    }

    #[test]
    fn range_reads_equal_the_plaintext_slice(n in 1usize..3000, seg in 1u32..300, a in 0usize..3000, b in 0usize..3000) {
        let (_d, keys) = store();
        let data = pattern(n);
        let obj = encrypt(&keys, &data, seg);
        let mut rr = RangeReader::new(&keys, Cursor::new(&obj)).unwrap();
        let (lo, hi) = (a.min(b) % (n + 1), a.max(b) % (n + 1));
        let (lo, hi) = (lo.min(hi), lo.max(hi));
        prop_assert_eq!(rr.read_range(lo as u64, (hi - lo) as u64).unwrap(), &data[lo..hi]);
        let out_of_bounds = matches!(rr.read_range(n as u64, 1), Err(KeysError::RangeOutOfBounds { .. }));
        prop_assert!(out_of_bounds);
    }
}

//! Key rotation with the device key store while the object is being read.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use outpost_keys::{DecryptingReader, DeviceKeyStore, EncryptingWriter, Header, rewrap_file};

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn rotation_under_concurrent_reads_has_zero_failed_reads() {
    const READERS: usize = 4;
    const ROTATIONS: u32 = 40;
    let dir = tempfile::tempdir().unwrap();
    let keys = DeviceKeyStore::open(dir.path().join("keys"), "device-kek").unwrap();
    let data = pattern(256 * 1024 + 77);
    let path = dir.path().join("object.enc");
    let mut w =
        EncryptingWriter::with_segment_size(&keys, std::fs::File::create(&path).unwrap(), 4096)
            .unwrap();
    w.write_all(&data).unwrap();
    w.finish().unwrap();

    let rotating = AtomicBool::new(true);
    let reads = AtomicUsize::new(0);
    let reads_during_rotation = AtomicUsize::new(0);
    let start = std::sync::Barrier::new(READERS + 1);
    std::thread::scope(|s| {
        for reader in 0..READERS {
            let (keys, path, data) = (&keys, &path, &data);
            let (rotating, reads, during) = (&rotating, &reads, &reads_during_rotation);
            let start = &start;
            s.spawn(move || {
                start.wait();
                loop {
                    let busy = rotating.load(Ordering::SeqCst);
                    let file = std::fs::File::open(path).unwrap();
                    let mut plain = Vec::with_capacity(data.len());
                    DecryptingReader::new(keys, file)
                        .and_then(|mut r| {
                            r.read_to_end(&mut plain)
                                .map_err(|e| outpost_keys::KeysError::from_io_owned(e, "reading"))
                        })
                        .unwrap_or_else(|e| panic!("reader {reader}: read failed: {e}"));
                    assert!(plain == *data, "reader {reader}: wrong plaintext");
                    reads.fetch_add(1, Ordering::SeqCst);
                    if !busy {
                        break;
                    }
                    during.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        s.spawn(|| {
            start.wait();
            for _ in 0..ROTATIONS {
                let version = keys.rotate().unwrap();
                let header = rewrap_file(&keys, &path).unwrap();
                assert_eq!(header.wrapped.version, version);
            }
            rotating.store(false, Ordering::SeqCst);
        });
    });

    let during = reads_during_rotation.load(Ordering::SeqCst);
    assert!(during > 0, "no read overlapped the rotations");
    let after = std::fs::read(&path).unwrap();
    assert_eq!(
        Header::parse(&after).unwrap().0.wrapped.version,
        ROTATIONS + 1
    );
    eprintln!(
        "{} reads, {during} while rotating, none failed",
        reads.load(Ordering::SeqCst)
    );
}

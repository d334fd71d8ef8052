//! Encrypt-and-write 64 MiB through the writer vs a plain write of the same bytes, same run.

use std::io::Write;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use outpost_keys::{DeviceKeyStore, EncryptingWriter};

const SIZE: usize = 64 << 20;

fn plain_write(path: &std::path::Path, data: &[u8]) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    for chunk in data.chunks(1 << 20) {
        f.write_all(chunk).unwrap();
    }
    f.flush().unwrap();
}

fn sealed_write(keys: &DeviceKeyStore, path: &std::path::Path, data: &[u8]) {
    let f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut w = EncryptingWriter::new(keys, f).unwrap();
    for chunk in data.chunks(1 << 20) {
        w.write_all(chunk).unwrap();
    }
    w.finish().unwrap().flush().unwrap();
}

fn mbps(d: Duration) -> f64 {
    SIZE as f64 / d.as_secs_f64() / 1e6
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let keys = DeviceKeyStore::open(dir.path().join("keys"), "bench").unwrap();
    let data: Vec<u8> = (0..SIZE).map(|i| (i * 7) as u8).collect();
    let path = dir.path().join("out");

    // A direct best-of-5 comparison printed as a ratio, alongside criterion's own numbers.
    let best = |f: &dyn Fn()| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .min()
            .unwrap()
    };
    let plain = best(&|| plain_write(&path, &data));
    let sealed = best(&|| sealed_write(&keys, &path, &data));
    println!(
        "plain write {:.0} MB/s, encrypted write {:.0} MB/s, ratio {:.2} (goal >= 0.80)",
        mbps(plain),
        mbps(sealed),
        plain.as_secs_f64() / sealed.as_secs_f64()
    );

    let mut g = c.benchmark_group("write_64MiB");
    g.throughput(Throughput::Bytes(SIZE as u64)).sample_size(10);
    g.bench_function("plain", |b| b.iter(|| plain_write(&path, &data)));
    g.bench_function("encrypted", |b| {
        b.iter(|| sealed_write(&keys, &path, &data))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

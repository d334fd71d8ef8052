//! Port benchmarks, each against a baseline in the same run:
//!
//! - memory port pair: a 64-frame batch sent on one port and received into a `Batch` on the
//!   other, vs pushing the same frames straight into a `Batch` (the queue's overhead);
//! - AF_PACKET between two network namespaces over a veth pair: frames streamed from a TX ring
//!   on one end to a TPACKET_V3 RX ring on the other, counted by a receiver thread; the sender
//!   never has more than a window of frames in flight, so nothing is lost (loss is reported),
//!   vs the memory pair.
//!
//! Run (as root, for the namespaces): `cargo bench -p outpost-dataplane --bench ports`. Ratios,
//! packet rates and loss are printed at the end.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use outpost_dataplane::{AfPacketOptions, AfPacketPort, Batch, MemoryPort, Port};

const BATCH: usize = 64;
/// Frames per AF_PACKET iteration.
const BURST: u64 = 16 * 1024;
/// Most frames in flight (sent, not yet counted by the receiver); well under the RX ring.
const WINDOW: u64 = 4096;

fn memory(c: &mut Criterion) {
    let frames: Vec<Vec<u8>> = (0..BATCH as u32)
        .map(|i| common::test_frame(i, 64))
        .collect();
    let mut group = c.benchmark_group("memory");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_millis(500));

    let (mut a, mut b) = MemoryPort::pair((0, "a"), (1, "b"), 4 * BATCH);
    let mut batch = Batch::with_capacity(BATCH, BATCH * 64);
    group.bench_function("pair-64x64B", |bench| {
        bench.iter(|| {
            a.send(frames.iter().map(Vec::as_slice)).unwrap();
            batch.clear();
            assert_eq!(b.recv_batch(&mut batch, BATCH).unwrap(), BATCH);
        })
    });
    group.bench_function("batch-push-64x64B", |bench| {
        bench.iter(|| {
            batch.clear();
            for frame in &frames {
                batch.push(0, frame);
            }
            assert_eq!(batch.len(), BATCH);
        })
    });
    group.finish();
}

/// Counts test frames on `port` until `stop`.
fn receive(
    mut port: AfPacketPort,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> AfPacketPort {
    let mut batch = Batch::with_capacity(256, 256 * 1514);
    while !stop.load(Ordering::Relaxed) {
        batch.clear();
        let n = port.recv_batch(&mut batch, 256).unwrap();
        if n == 0 {
            port.wait_readable(Duration::from_millis(5)).unwrap();
            continue;
        }
        let ours = batch
            .iter()
            .filter(|p| common::test_frame_seq(p.data).is_some())
            .count();
        received.fetch_add(ours as u64, Ordering::Release);
    }
    port
}

/// Loss and totals of the AF_PACKET runs, for the report.
#[derive(Default)]
struct AfPacketTally {
    sent: u64,
    lost: u64,
    rx_drops: u64,
}

static TALLY: std::sync::Mutex<AfPacketTally> = std::sync::Mutex::new(AfPacketTally {
    sent: 0,
    lost: 0,
    rx_drops: 0,
});

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn af_packet(c: &mut Criterion) {
    if !is_root() {
        println!("af-packet: skipped (needs root to create network namespaces)");
        return;
    }
    let (ns_a, ns_b) = (common::Netns::new(), common::Netns::new());
    let veth = common::Veth::between(&ns_a, &ns_b);
    let options = AfPacketOptions {
        rx_block_size: 64 * 1024,
        rx_block_count: 128,
        tx_frame_count: 2048,
        ..AfPacketOptions::default()
    };
    let mut group = c.benchmark_group("af-packet");
    group.throughput(Throughput::Elements(BURST));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_millis(500));

    for size in [64usize, 1500] {
        let mut tx = AfPacketPort::open_in_netns(0, "a", &veth.a, &ns_a.name, &options).unwrap();
        let rx = AfPacketPort::open_in_netns(1, "b", &veth.b, &ns_b.name, &options).unwrap();
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let receiver = {
            let (received, stop) = (received.clone(), stop.clone());
            std::thread::spawn(move || receive(rx, received, stop))
        };
        let frames: Vec<Vec<u8>> = (0..BATCH as u32)
            .map(|i| common::test_frame(i, size))
            .collect();
        let fillers: Vec<Vec<u8>> = frames
            .iter()
            .take(16)
            .map(|f| {
                let mut filler = f.clone();
                filler[13] = 0xb6; // EtherType 0x88b6: not a test frame
                filler
            })
            .collect();
        let mut expected = 0u64;
        group.bench_function(format!("veth-{size}B"), |bench| {
            bench.iter_custom(|iters| {
                let total = iters * BURST;
                let start = Instant::now();
                let mut sent = 0u64;
                while sent < total {
                    let in_flight = expected + sent - received.load(Ordering::Acquire);
                    let room = tx
                        .tx_room(BATCH)
                        .min((total - sent) as usize)
                        .min(WINDOW.saturating_sub(in_flight) as usize);
                    if room == 0 {
                        if in_flight >= WINDOW {
                            std::hint::spin_loop();
                        } else {
                            tx.wait_writable(Duration::from_millis(1)).unwrap();
                        }
                        continue;
                    }
                    let accepted = tx.send(frames[..room].iter().map(Vec::as_slice)).unwrap();
                    sent += accepted as u64;
                }
                // The last RX block would wait for its retire timeout; filler frames (which the
                // receiver does not count) fill it instead, so the tail costs at most a block.
                let target = expected + total;
                let mut last_progress = (Instant::now(), received.load(Ordering::Acquire));
                while received.load(Ordering::Acquire) < target {
                    let now = received.load(Ordering::Acquire);
                    if now != last_progress.1 {
                        last_progress = (Instant::now(), now);
                    } else if last_progress.0.elapsed() > Duration::from_millis(500) {
                        break;
                    } else if last_progress.0.elapsed() > Duration::from_micros(50)
                        && tx.tx_room(16) == 16
                    {
                        tx.send(fillers.iter().map(Vec::as_slice)).unwrap();
                    }
                    std::hint::spin_loop();
                }
                let elapsed = start.elapsed();
                let got = received.load(Ordering::Acquire);
                let mut tally = TALLY.lock().unwrap();
                tally.sent += total;
                tally.lost += target.saturating_sub(got);
                expected = got;
                elapsed
            })
        });
        stop.store(true, Ordering::Relaxed);
        let rx = receiver.join().unwrap();
        let mut tally = TALLY.lock().unwrap();
        tally.rx_drops += rx.stats().rx_drops;
        assert_eq!(
            tx.stats().tx_drops,
            0,
            "the sender paced itself; it must not drop"
        );
    }
    group.finish();
}

criterion_group!(benches, memory, af_packet);

fn median_ns(id: &str) -> Option<f64> {
    let dir = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target").into());
    let path = format!("{dir}/criterion/{id}/new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn report() {
    println!("\nratios (median):");
    let per_packet = |id: &str, packets: f64| median_ns(id).map(|ns| ns / packets);
    let memory_pair = per_packet("memory/pair-64x64B", BATCH as f64);
    let memory_push = per_packet("memory/batch-push-64x64B", BATCH as f64);
    match (memory_pair, memory_push) {
        (Some(pair), Some(push)) => println!(
            "  {:<40} {:>8.1} ns/pkt / {:>8.1} ns/pkt = ratio {:.2} ({:.1} Mpps)",
            "memory pair vs plain batch push",
            pair,
            push,
            pair / push,
            1e3 / pair
        ),
        _ => println!("  memory pair vs plain batch push (no estimates found)"),
    }
    for size in [64, 1500] {
        let label = format!("af-packet veth {size}B vs memory pair");
        match (
            per_packet(&format!("af-packet/veth-{size}B"), BURST as f64),
            memory_pair,
        ) {
            (Some(af), Some(mem)) => println!(
                "  {label:<40} {af:>8.1} ns/pkt / {mem:>8.1} ns/pkt = ratio {:.2} ({:.2} Mpps, {:.2} Gbit/s)",
                af / mem,
                1e3 / af,
                size as f64 * 8.0 / af
            ),
            _ => println!("  {label:<40} (no estimates found)"),
        }
    }
    let tally = TALLY.lock().unwrap();
    if tally.sent > 0 {
        println!(
            "  af-packet loss: {} of {} frames sent (kernel RX ring drops {})",
            tally.lost, tally.sent, tally.rx_drops
        );
    }
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    report();
}

//! The UPF: wasm plugin vs the same logic compiled natively, and the OMEC acceptance test.
//!
//! 1. **Crossing cost.** One appliance runs the UPF plugin; 1,000 sessions are established over
//!    PFCP (real UDP). Then the same batches of uplink G-PDUs (decap) and downlink packets
//!    (encap) go through (a) the wasm plugin's `process`, one call per batch, exactly as the data
//!    path calls it, and (b) `outpost_upf::Upf::process` compiled natively, over the *same* host
//!    tables (the same table code as the wasm host functions). Batch sizes 1, 32, 256; packets/s
//!    per core and the wasm/native ratio. Ports are left out of both.
//! 2. **OMEC's acceptance test, reproduced.** 10,000 UE sessions; downlink offered at 1 Mpps
//!    into the memory port N6 of the running data path (port queue: 64k packets, a full queue is
//!    loss, as a full NIC ring would be); loss and latency percentiles at N3. Their bar: 0% loss,
//!    p99.9 < 1 ms. Then the same at 250 kpps, a load one data-path core carries.
//!
//! `cargo bench -p outpost-conformance --bench upf` (add `-- --quick` for a short run).

#[path = "../tests/support/models.rs"]
mod models;
#[path = "../tests/support/upf.rs"]
mod upf;

use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_dataplane::{Batch, BatchResult, Table, TableSet};
use outpost_runtime::Appliance;
use outpost_runtime::nf::{NfInstance, count, keys};
use outpost_upf::{BatchOut, Io, Level, TableError, TableId, Tables, Upf};
use upf::{Smf, downlink, manifest, uplink};

const LEN: usize = 128;

/// The host's tables, called natively: what the wasm plugin reaches through `tables`.
struct HostTables {
    tables: Vec<Arc<Table>>,
}

impl HostTables {
    fn new(set: &TableSet) -> HostTables {
        HostTables {
            tables: TableId::ALL
                .iter()
                .map(|id| set.open(id.name()).expect("declared"))
                .collect(),
        }
    }
    fn t(&self, id: TableId) -> &Table {
        &self.tables[id.index()]
    }
}

impl Tables for HostTables {
    fn get(&mut self, id: TableId, key: &[u8]) -> Result<Option<Vec<u8>>, TableError> {
        Ok(self.t(id).get(key))
    }
    fn get_many(
        &mut self,
        id: TableId,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>, TableError> {
        let t = self.t(id);
        Ok(keys.iter().map(|k| t.get(k)).collect())
    }
    fn put(&mut self, id: TableId, key: &[u8], value: &[u8]) -> Result<(), TableError> {
        self.t(id).put(key, value).map_err(|e| e.to_string())
    }
    fn remove(&mut self, id: TableId, key: &[u8]) -> Result<bool, TableError> {
        Ok(self.t(id).remove(key))
    }
    fn count(&mut self, id: TableId, key: &[u8], p: u64, b: u64) -> Result<(u64, u64), TableError> {
        count(self.t(id), key, p, b)
    }
    fn keys(
        &mut self,
        id: TableId,
        after: Option<&[u8]>,
        max: u32,
    ) -> Result<Vec<Vec<u8>>, TableError> {
        Ok(keys(self.t(id), after, max))
    }
}

struct QuietIo;

impl Io for QuietIo {
    fn transmit(&mut self, _: u16, _: &[u8]) -> Result<(), String> {
        Ok(())
    }
    fn send_control(&mut self, _: &str, _: &[u8]) -> Result<(), String> {
        Ok(())
    }
    fn log(&mut self, _: Level, _: &str) {}
    fn unix_time_ms(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

fn batches(packets: &[(u16, Vec<u8>)], size: usize) -> Vec<Batch> {
    packets
        .chunks(size)
        .filter(|c| c.len() == size)
        .map(|chunk| {
            let mut b = Batch::with_capacity(size, size * (LEN + 64));
            for (port, p) in chunk {
                b.push(*port, p);
            }
            b
        })
        .collect()
}

/// Packets per second through `run`, best of three runs of about `budget` each.
fn rate(budget: Duration, batches: &[Batch], mut run: impl FnMut(&Batch) -> usize) -> f64 {
    let mut best = 0f64;
    for _ in 0..3 {
        let start = Instant::now();
        let mut packets = 0usize;
        'outer: loop {
            for b in batches {
                let forwarded = run(b);
                assert_eq!(forwarded, b.len(), "every packet forwarded");
                packets += b.len();
                if start.elapsed() >= budget {
                    break 'outer;
                }
            }
        }
        best = best.max(packets as f64 / start.elapsed().as_secs_f64());
    }
    best
}

async fn establish(app: &Arc<Appliance>, n: u32) -> Vec<(u64, u32)> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || {
        let mut smf = Smf::new(&app);
        smf.associate();
        (0..n).map(|i| smf.establish(i)).collect()
    })
    .await
    .unwrap()
}

fn crossing(rt: &tokio::runtime::Runtime, quick: bool) -> Vec<(String, f64)> {
    const SESSIONS: u32 = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let app = rt.block_on(models::start(
        dir.path(),
        &manifest(1, 256, u64::from(SESSIONS)),
    ));
    let sessions = rt.block_on(establish(&app, SESSIONS));
    let ul: Vec<(u16, Vec<u8>)> = (0..4096u32)
        .map(|k| {
            let i = k % SESSIONS;
            (0, uplink(sessions[i as usize].1, i, u64::from(k), LEN))
        })
        .collect();
    let dl: Vec<(u16, Vec<u8>)> = (0..4096u32)
        .map(|k| (1, downlink(k % SESSIONS, u64::from(k), LEN)))
        .collect();
    let plugin = app.slot("upf").unwrap().active();
    let mut wasm = rt.block_on(NfInstance::new(plugin)).unwrap();
    let mut out = BatchResult::new();
    let native = Upf::from_lookup(|k| match k {
        "n3-address" => Some(upf::common::N3_ADDR.to_string()),
        "node-id" => Some(upf::common::NODE_ADDR.to_string()),
        _ => None,
    });
    let mut tables = HostTables::new(app.tables());
    let mut io = QuietIo;
    let mut nout = BatchOut::new();
    let budget = Duration::from_millis(if quick { 150 } else { 1000 });

    println!("upf: wasm plugin vs native, {SESSIONS} sessions, {LEN}-byte packets, ports excluded");
    println!(
        "  {:<8} {:>6} {:>14} {:>14} {:>7}",
        "path", "batch", "wasm pkt/s", "native pkt/s", "ratio"
    );
    let mut ratios = Vec::new();
    for (name, packets) in [("decap", &ul), ("encap", &dl)] {
        for size in [1usize, 32, 256] {
            let bs = batches(packets, size);
            let w = rate(budget, &bs, |b| {
                rt.block_on(wasm.process(b, &mut out)).unwrap();
                out.forwards().count()
            });
            let n = rate(budget, &bs, |b| {
                nout.verdicts.clear();
                nout.lengths.clear();
                nout.data.clear();
                native.process(
                    &mut tables,
                    &mut io,
                    b.ingress(),
                    b.lengths(),
                    b.data(),
                    &mut nout,
                );
                nout.verdicts
                    .iter()
                    .filter(|v| matches!(v, outpost_upf::Verdict::Forward(_)))
                    .count()
            });
            println!("  {name:<8} {size:>6} {w:>14.0} {n:>14.0} {:>7.3}", w / n);
            ratios.push((format!("{name}/{size}"), w / n));
        }
    }
    rt.block_on(app.shutdown());
    ratios
}

fn acceptance(rt: &tokio::runtime::Runtime, quick: bool, offered_pps: f64) {
    let sessions: u32 = 10_000;
    let duration = Duration::from_millis(if quick { 300 } else { 3_000 });
    let dir = tempfile::tempdir().unwrap();
    let app = rt.block_on(models::start(
        dir.path(),
        &manifest(1, 256, u64::from(sessions)),
    ));
    let started = Instant::now();
    let _ = rt.block_on(establish(&app, sessions));
    let setup = started.elapsed();
    let n6 = app.memory_port("upf", "n6").unwrap();
    let n3 = app.memory_port("upf", "n3").unwrap();
    let epoch = Instant::now();
    let total = (offered_pps * duration.as_secs_f64()) as u64;
    // Packets are prepared first (their timestamps are written at send time).
    let mut packets: Vec<Vec<u8>> = (0..total)
        .map(|k| downlink((k % u64::from(sessions)) as u32, 0, LEN))
        .collect();
    let receiver = {
        let n3 = n3.clone();
        std::thread::spawn(move || {
            let mut latencies = Vec::with_capacity(total as usize);
            let mut quiet = Instant::now();
            while quiet.elapsed() < Duration::from_millis(500) {
                let got = n3.take_sent();
                let now = epoch.elapsed().as_nanos() as u64;
                if !got.is_empty() {
                    quiet = Instant::now();
                }
                for p in got {
                    latencies.push(now.saturating_sub(upf::tag_of(&p, LEN)));
                }
                std::thread::sleep(Duration::from_micros(20));
            }
            latencies
        })
    };
    let payload_at = LEN - 28 + 28; // the tag sits right after the UDP header
    let mut refused = 0u64;
    let send_start = Instant::now();
    for (k, p) in packets.iter_mut().enumerate() {
        let due = Duration::from_secs_f64(k as f64 / offered_pps);
        while send_start.elapsed() < due {
            std::hint::spin_loop();
        }
        let now = epoch.elapsed().as_nanos() as u64;
        p[payload_at - (LEN - 28)..payload_at - (LEN - 28) + 8].copy_from_slice(&now.to_be_bytes());
        if !n6.inject(p) {
            refused += 1;
        }
    }
    let sent_for = send_start.elapsed();
    let mut latencies = receiver.join().unwrap();
    latencies.sort_unstable();
    let pct = |q: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 * q) as usize).min(latencies.len() - 1);
        latencies[i] as f64 / 1000.0
    };
    let delivered = latencies.len() as u64;
    let offered_real = total as f64 / sent_for.as_secs_f64();
    println!(
        "upf acceptance (OMEC's CI test): {sessions} sessions set up over PFCP in {:.2} s; downlink offered {:.0} pkt/s for {:.1} s ({total} packets)",
        setup.as_secs_f64(),
        offered_real,
        sent_for.as_secs_f64()
    );
    println!(
        "  forwarded {delivered}, refused at a full N6 queue {refused}, loss {:.2}%; latency p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs (their bar: 0% loss, p99.9 < 1000 µs)",
        100.0 * (total - delivered) as f64 / total as f64,
        pct(0.5),
        pct(0.99),
        pct(0.999)
    );
    rt.block_on(app.shutdown());
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ratios = crossing(&rt, quick);
    // OMEC's load, then one this machine's single data-path core can carry.
    acceptance(&rt, quick, 1_000_000.0);
    acceptance(&rt, quick, 250_000.0);
    println!("ratios (wasm / native, goal >= 0.85 at batch 256)");
    for (name, r) in ratios {
        println!("  {name:<12} {r:.3}");
    }
}

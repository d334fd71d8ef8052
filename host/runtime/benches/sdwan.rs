//! SD-WAN through the `sdwan` plugin between two appliances on loopback (the sites of
//! `tests/sdwan.rs`), against baselines in the same run:
//!
//! 1. **Failover**: a realtime flow (a packet every 2 ms) runs over the fiber link; the link is
//!    cut (its relay drops everything) and the time until the flow's packets arrive at site B
//!    over the LTE link is measured, 20 times (5 with `--quick`). Goal: ≤ 300 ms with 100 ms
//!    probes.
//! 2. **Overlay throughput**: 1400-byte packets pushed from site A's LAN port through the wasm
//!    plugin and the WireGuard overlay port to site B's LAN port, against the same packets through
//!    the same overlay ports (`OverlayPort` to `OverlayPort`) without the plugin or the host
//!    around them. Packets per second, per CPU-second, and the ratio.
//!
//! Run: `cargo bench -p outpost-runtime --bench sdwan [-- --quick]`.

#[path = "../tests/support/sdwan_sites.rs"]
mod sites;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use outpost_dataplane::{Batch, Port};
use outpost_sdwan::overlay::port::OverlayPort;
use outpost_sdwan::overlay::{OverlayConfig, generate_secret, public_key};
use sites::*;

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn failover(trials: usize) -> Vec<f64> {
    let s = two_sites(true).await;
    let fiber = s.fiber.as_ref().unwrap();
    let a_lan = s.a.memory_port("sdwan", "lan").unwrap();
    let b_lan = s.b.memory_port("sdwan", "lan").unwrap();
    let (sending, sender) = spawn_sender(a_lan.clone(), &[5004], Duration::from_millis(2));
    let mut times = Vec::new();
    for trial in 0..trials {
        // Steady on fiber first.
        while choice(&s.a, "realtime") != "wan-fiber" {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        b_lan.take_sent();
        let lte_rx = port_stats(&s.b, "wan-lte").stats.rx_packets;
        let cut = Instant::now();
        fiber.cut.store(true, Ordering::SeqCst);
        // Traffic flows on the other link when site B receives it over LTE.
        while port_stats(&s.b, "wan-lte").stats.rx_packets == lte_rx {
            assert!(
                cut.elapsed() < Duration::from_secs(5),
                "no failover in trial {trial}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let took = cut.elapsed().as_secs_f64() * 1000.0;
        println!("  failover trial {trial}: {took:.1} ms");
        times.push(took);
        fiber.cut.store(false, Ordering::SeqCst);
    }
    sending.store(false, Ordering::SeqCst);
    let _ = sender.await;
    s.a.shutdown().await;
    s.b.shutdown().await;
    times
}

/// (packets delivered, seconds, CPU seconds) for `n` packets through the plugin.
async fn through_plugin(n: u32) -> (u32, f64, f64) {
    let s = two_sites(false).await;
    let a_lan = s.a.memory_port("sdwan", "lan").unwrap();
    let b_lan = s.b.memory_port("sdwan", "lan").unwrap();
    // Warm up the tunnel and the plugin.
    for i in 0..100 {
        a_lan.inject(&bulk(i));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    b_lan.take_sent();
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    let (mut sent, mut got, mut last_progress) = (0u32, 0u32, Instant::now());
    while got < n && last_progress.elapsed() < Duration::from_millis(500) {
        while sent < n && a_lan.pending_len() < 2048 {
            a_lan.inject(&bulk(sent));
            sent += 1;
        }
        let arrived = b_lan.take_sent().len() as u32;
        if arrived > 0 {
            got += arrived;
            last_progress = Instant::now();
        } else {
            tokio::task::yield_now().await;
        }
    }
    let took = last_progress.duration_since(start).as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    s.a.shutdown().await;
    s.b.shutdown().await;
    (got, took, cpu)
}

/// The same packets through two overlay ports with nothing around them.
fn without_plugin(n: u32) -> (u32, f64, f64) {
    let (a_key, b_key) = (generate_secret(), generate_secret());
    let (a_pub, b_pub) = (public_key(&a_key), public_key(&b_key));
    let a_sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b_sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (a_addr, b_addr) = (a_sock.local_addr().unwrap(), b_sock.local_addr().unwrap());
    let mut a =
        OverlayPort::with_socket(1, "a", a_sock, b_addr, OverlayConfig::new(a_key, b_pub)).unwrap();
    let mut cfg = OverlayConfig::new(b_key, a_pub);
    cfg.index = 2;
    let mut b = OverlayPort::with_socket(1, "b", b_sock, a_addr, cfg).unwrap();
    let mut batch = Batch::new();
    // Handshake and warm-up.
    let warm: Vec<Vec<u8>> = (0..64).map(bulk).collect();
    a.send(warm.iter().map(|p| &p[..])).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut warm_got = 0;
    while warm_got < 64 && Instant::now() < deadline {
        batch.clear();
        warm_got += b.recv_batch(&mut batch, 64).unwrap();
        batch.clear();
        a.recv_batch(&mut batch, 64).unwrap();
    }
    let packets: Vec<Vec<u8>> = (0..64).map(bulk).collect();
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    let (mut sent, mut got, mut last_progress) = (0u32, 0u32, Instant::now());
    while got < n && last_progress.elapsed() < Duration::from_millis(500) {
        // The same batch size the plugin path uses, and no more in flight than the socket holds.
        if sent < n && sent - got < 128 {
            sent += a.send(packets.iter().map(|p| &p[..])).unwrap() as u32;
        }
        batch.clear();
        let arrived = b.recv_batch(&mut batch, 64).unwrap() as u32;
        if arrived > 0 {
            got += arrived;
            last_progress = Instant::now();
        }
    }
    let took = last_progress.duration_since(start).as_secs_f64();
    (got, took, cpu_seconds() - cpu0)
}

/// A 1400-byte bulk packet (UDP 9000) with sequence number `seq`.
fn bulk(seq: u32) -> Vec<u8> {
    let mut p = packet(9000, seq);
    p.resize(1400, 0);
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p[24..26].copy_from_slice(&(len - 20).to_be_bytes());
    // The IPv4 header checksum changes with the length.
    set_ipv4_checksum(&mut p);
    p
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (trials, n) = if quick { (5, 20_000) } else { (20, 200_000) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    println!("sdwan: two appliances on loopback, the sdwan plugin, WireGuard overlay ports");
    let times = rt.block_on(failover(trials));
    let (med, max) = (
        median(times.clone()),
        times.iter().copied().fold(0.0, f64::max),
    );
    let (p_got, p_s, p_cpu) = rt.block_on(through_plugin(n));
    let (b_got, b_s, b_cpu) = without_plugin(n);
    let (p_pps, b_pps) = (f64::from(p_got) / p_s, f64::from(b_got) / b_s);
    println!();
    println!("ratios");
    println!(
        "  failover, cut to traffic on the other link ({trials} trials, 100 ms probes): median {med:.1} ms, max {max:.1} ms; goal <= 300 ms: {}",
        if max <= 300.0 { "met" } else { "not met" }
    );
    println!(
        "  overlay throughput, 1400-byte packets: through the wasm plugin {p_pps:.0} pkt/s ({:.0} Mbit/s, {p_got} of {n} delivered), {:.0} pkt per CPU-second; \
         overlay ports alone {b_pps:.0} pkt/s ({:.0} Mbit/s), {:.0} pkt per CPU-second; ratio {:.2}",
        p_pps * 1400.0 * 8.0 / 1e6,
        f64::from(p_got) / p_cpu.max(0.01),
        b_pps * 1400.0 * 8.0 / 1e6,
        f64::from(b_got) / b_cpu.max(0.01),
        p_pps / b_pps
    );
}

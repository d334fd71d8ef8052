//! Failover timing: two probed links through impairment relays on loopback; cut the active
//! one and measure (a) cut → prober declares it Down and (b) cut → policy chooses the other
//! link (reacting to the Down event). Prints median and max against the 300 ms goal.
//!
//! Then the figures that the tests only bound (a test cannot assert a time or a rate on a busy
//! machine):
//!
//! - the probes' RTT on a clean loopback link (`tests/probe.rs`), against a bare UDP echo
//!   through the same kind of relay in the same run;
//! - the rate a rate-capped overlay port achieves (`tests/overlay_port.rs`) against the
//!   configured cap, with the same port uncapped as the baseline that shows the cap is what
//!   bounds it.
//!
//! `cargo bench -p outpost-sdwan --bench failover [-- --quick]` (20 trials, 5 with `--quick`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::Relay;
use outpost_dataplane::{Batch, Port};
use outpost_sdwan::overlay::port::OverlayPort;
use outpost_sdwan::overlay::{OverlayConfig, generate_secret, public_key};
use outpost_sdwan::policy::{ClassPolicy, Links, Sla, select};
use outpost_sdwan::probe::{LinkState, ProbeConfig, Prober, ProberHandle, Reflector};

const GOAL: Duration = Duration::from_millis(300);

fn links(probers: &[ProberHandle]) -> Links {
    probers
        .iter()
        .map(|p| {
            let q = p.quality();
            (q.link_id, q)
        })
        .collect()
}

async fn wait_up(p: &ProberHandle) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.quality().state != LinkState::Up {
        assert!(Instant::now() < deadline, "link did not come up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let median = v[v.len() / 2];
    let max = v[v.len() - 1];
    let min = v[0];
    let verdict = if max <= GOAL {
        "meets"
    } else if median <= GOAL {
        "median meets, max misses"
    } else {
        "misses"
    };
    println!(
        "{name:<28} n={:<3} min={:>7.1} ms  median={:>7.1} ms  max={:>7.1} ms  goal {} ms: {verdict}",
        v.len(),
        min.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        GOAL.as_millis(),
    );
}

async fn run(trials: usize) {
    let reflector = Reflector::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("reflector");
    let relays = [
        Relay::start(reflector.local_addr()).await,
        Relay::start(reflector.local_addr()).await,
    ];
    let mut probers = Vec::new();
    for (i, relay) in relays.iter().enumerate() {
        let p = Prober::bind(
            "127.0.0.1:0".parse().expect("addr"),
            relay.front(),
            ProbeConfig::for_link(i as u32 + 1),
        )
        .await
        .expect("prober");
        probers.push(p);
    }
    // A class whose SLA tolerates probe loss, so the switch is driven by the Down decision.
    let class = ClassPolicy {
        name: "bench".into(),
        sla: Sla {
            max_latency_ms: 1000.0,
            max_jitter_ms: 1000.0,
            max_loss_pct: 100.0,
        },
        preferred: vec![1, 2],
        duplicate: false,
    };
    let mut detect = Vec::new();
    let mut switch = Vec::new();
    for trial in 0..trials {
        for p in &probers {
            wait_up(p).await;
        }
        let active = select(&class, &links(&probers)).expect("a path").primary;
        let idx = (active - 1) as usize;
        let mut events = probers[idx].subscribe();
        // Vary the cut's phase against the 100 ms probe clock.
        tokio::time::sleep(Duration::from_millis(200 + (trial as u64 * 37) % 100)).await;
        let cut = relays[idx].cut();
        let down = loop {
            let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
                .await
                .expect("down event in time")
                .expect("events");
            if ev.state == LinkState::Down {
                break ev;
            }
        };
        let choice = select(&class, &links(&probers)).expect("a path");
        let switched = Instant::now();
        assert_ne!(choice.primary, active, "policy still on the cut link");
        detect.push(down.at.duration_since(cut));
        switch.push(switched.duration_since(cut));
        relays[idx].restore();
    }
    println!("failover over loopback, 100 ms probes, Down after 3 lost, {trials} trials");
    summary("cut -> link Down", detect);
    summary("cut -> policy on other link", switch);

    // Let the restored link fill its window with clean replies again before reading RTTs.
    for p in &probers {
        wait_up(p).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let probe_rtt: Vec<f64> = probers.iter().map(|p| p.quality().rtt_ms).collect();
    let echo = bare_echo_rtt(if trials >= 20 { 200 } else { 50 }).await;
    let probe = probe_rtt.iter().sum::<f64>() / probe_rtt.len() as f64;
    println!(
        "probe rtt on clean loopback (mean of the windows of {} links, {probe_rtt:.3?} ms): \
         {probe:.3} ms; bare UDP echo through a relay (median) {echo:.3} ms, ratio {:.1}",
        probe_rtt.len(),
        probe / echo,
    );
}

/// Median round trip, in milliseconds, of a datagram through a [`Relay`] to a bare echo socket
/// and back: the path a probe takes, without the prober and the reflector.
async fn bare_echo_rtt(n: usize) -> f64 {
    let echo = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("echo");
    let relay = Relay::start(echo.local_addr().expect("addr")).await;
    let echoing = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        loop {
            let Ok((len, from)) = echo.recv_from(&mut buf).await else {
                continue;
            };
            let _ = echo.send_to(&buf[..len], from).await;
        }
    });
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("client");
    let mut rtts = Vec::with_capacity(n);
    let mut buf = [0u8; 64];
    for i in 0..n as u64 {
        let start = Instant::now();
        client
            .send_to(&i.to_be_bytes(), relay.front())
            .await
            .expect("send");
        tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .expect("echo in time")
            .expect("recv");
        rtts.push(start.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    echoing.abort();
    rtts.sort_by(f64::total_cmp);
    rtts[rtts.len() / 2]
}

/// An IPv4/UDP packet of `len` bytes with IP id `id` (`tests/overlay_port.rs`'s shape).
fn ipv4_udp(id: u16, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 1, 0, 1]);
    p[16..20].copy_from_slice(&[10, 2, 0, 1]);
    let mut sum: u32 = 0;
    for c in p[..20].chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5004u16.to_be_bytes());
    p[24..26].copy_from_slice(&((len - 20) as u16).to_be_bytes());
    p
}

/// Two overlay ports joined directly on loopback, handshake done; `a` shaped to `cap` bytes
/// per second when given.
fn overlay_pair(cap: Option<u64>) -> (OverlayPort, OverlayPort) {
    let (a_key, b_key) = (generate_secret(), generate_secret());
    let (a_pub, b_pub) = (public_key(&a_key), public_key(&b_key));
    let a_socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let b_socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let (a_addr, b_addr) = (
        a_socket.local_addr().expect("addr"),
        b_socket.local_addr().expect("addr"),
    );
    let mut a =
        OverlayPort::with_socket(1, "a", a_socket, b_addr, OverlayConfig::new(a_key, b_pub))
            .expect("port a");
    let mut b_config = OverlayConfig::new(b_key, a_pub);
    b_config.index = 2;
    let mut b = OverlayPort::with_socket(1, "b", b_socket, a_addr, b_config).expect("port b");
    if let Some(cap) = cap {
        a = a.with_rate_cap(cap).expect("rate cap");
    }
    let hello = ipv4_udp(0, 100);
    a.send([&hello[..]]).expect("send");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        a.recv_batch(&mut Batch::new(), 64).expect("recv a");
        let mut batch = Batch::new();
        b.recv_batch(&mut batch, 64).expect("recv b");
        if !batch.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no handshake");
        std::thread::sleep(Duration::from_millis(1));
    }
    (a, b)
}

/// Sends `packets` packets of 1000 bytes from `a` to `b` (in slices of 32, drained in between,
/// so an uncapped port does not overrun the socket buffers) and returns the rate at which they
/// arrived, bytes per second, measured from the first send to the last arrival.
fn overlay_rate(a: &mut OverlayPort, b: &mut OverlayPort, packets: u16) -> f64 {
    let all: Vec<Vec<u8>> = (1..=packets).map(|i| ipv4_udp(i, 1000)).collect();
    let (mut sent, mut got) = (0usize, 0usize);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(60);
    while got < all.len() {
        if sent < all.len() && sent - got < 32 {
            let end = (sent + 32).min(all.len());
            sent += a.send(all[sent..end].iter().map(|p| &p[..])).expect("send");
        }
        a.recv_batch(&mut Batch::new(), 64).expect("recv a");
        let mut batch = Batch::new();
        got += b.recv_batch(&mut batch, 64).expect("recv b");
        assert!(
            Instant::now() < deadline,
            "{got} of {packets} packets arrived"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    got as f64 * 1000.0 / start.elapsed().as_secs_f64()
}

/// The rate-capped overlay port's achieved rate against its cap, and the uncapped baseline.
fn shaped_overlay(trials: usize) {
    const CAP: u64 = 400_000;
    const PACKETS: u16 = 400; // 1 s at the cap
    let mut capped = Vec::new();
    let mut uncapped = Vec::new();
    for _ in 0..trials {
        let (mut a, mut b) = overlay_pair(Some(CAP));
        capped.push(overlay_rate(&mut a, &mut b, PACKETS));
        let (mut a, mut b) = overlay_pair(None);
        uncapped.push(overlay_rate(&mut a, &mut b, PACKETS));
    }
    capped.sort_by(f64::total_cmp);
    uncapped.sort_by(f64::total_cmp);
    let (c, u) = (capped[capped.len() / 2], uncapped[uncapped.len() / 2]);
    println!(
        "shaped overlay port, {PACKETS} x 1000 B, cap {CAP} B/s, median of {trials}: achieved \
         {c:.0} B/s, achieved/configured ratio {:.3} (goal 0.9 to 1.1; one 10 ms burst ahead); \
         uncapped baseline {u:.0} B/s, {:.1}x the cap",
        c / CAP as f64,
        u / CAP as f64,
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let trials = if quick { 5 } else { 20 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(trials));
    shaped_overlay(if quick { 3 } else { 10 });
}

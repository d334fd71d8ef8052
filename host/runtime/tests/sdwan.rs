//! The SD-WAN host service in a running appliance: two sites on loopback, site A probing site
//! B's reflector over an uplink that the test can cut (a relay of the test's own), and over an
//! uplink that leads nowhere. Status, metrics and the failover events follow the links.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use outpost_manifest::Manifest;
use outpost_runtime::{Appliance, ApplianceOptions};

#[path = "support/sdwan_sites.rs"]
mod sites;
use sites::*;

async fn start(dir: &Path, text: &str) -> Arc<Appliance> {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("outpost.toml");
    std::fs::write(&path, text).unwrap();
    let mut opts = ApplianceOptions::new(dir.join("data"));
    opts.http_listen = Some("127.0.0.1:0".parse().unwrap());
    Appliance::start(Manifest::load(&path).unwrap(), opts)
        .await
        .unwrap()
}

/// A UDP relay standing for a WAN link: forwards the client's datagrams to `upstream` and the
/// replies back, or drops everything while cut.
async fn relay(upstream: SocketAddr, cut: Arc<AtomicBool>) -> SocketAddr {
    let outside = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let inside = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = outside.local_addr().unwrap();
    tokio::spawn(async move {
        let mut client = None;
        let (mut a, mut b) = ([0u8; 2048], [0u8; 2048]);
        loop {
            tokio::select! {
                Ok((n, from)) = outside.recv_from(&mut a) => {
                    client = Some(from);
                    if !cut.load(Ordering::SeqCst) {
                        let _ = inside.send_to(&a[..n], upstream).await;
                    }
                }
                Ok((n, _)) = inside.recv_from(&mut b) => {
                    if let (Some(c), false) = (client, cut.load(Ordering::SeqCst)) {
                        let _ = outside.send_to(&b[..n], c).await;
                    }
                }
            }
        }
    });
    addr
}

async fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

fn uplink(app: &Appliance, name: &str) -> outpost_runtime::sdwan::UplinkStatus {
    let status = app.sdwan().expect("sdwan is configured");
    status
        .uplinks
        .into_iter()
        .find(|u| u.name == name)
        .unwrap_or_else(|| panic!("no uplink {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplink_probes_follow_a_cut_and_a_recovery_in_status_metrics_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let b_port = free_udp_port();
    let site_b = start(
        &dir.path().join("b"),
        &format!("[host]\nname = \"site-b\"\n[sdwan]\nreflector = \"127.0.0.1:{b_port}\"\n"),
    )
    .await;
    let cut = Arc::new(AtomicBool::new(false));
    let link = relay(format!("127.0.0.1:{b_port}").parse().unwrap(), cut.clone()).await;
    let nowhere = free_udp_port();
    let site_a = start(
        &dir.path().join("a"),
        &format!(
            r#"
[host]
name = "site-a"
[sdwan]
probe_interval_ms = 100
[sdwan.uplinks.fiber]
local = "127.0.0.1:0"
remote = "{link}"
rate_mbps = 200
[sdwan.uplinks.lte]
local = "127.0.0.1:0"
remote = "127.0.0.1:{nowhere}"
"#
        ),
    )
    .await;

    // Both uplinks are probed; only the one with a reflector behind it comes up.
    wait_for("fiber up", Duration::from_secs(5), || {
        uplink(&site_a, "fiber").quality.state == outpost_sdwan::LinkState::Up
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fiber = uplink(&site_a, "fiber");
    assert_eq!((fiber.link_id, fiber.rate_mbps), (0, Some(200)));
    // A reply counts only when it beats its probe's timeout (at most `max_timeout`): the RTT is
    // measured and bounded by it. Its loopback figure is in `nfv/sdwan/benches/failover.rs`.
    let max_timeout = outpost_sdwan::probe::ProbeConfig::default()
        .max_timeout
        .as_secs_f64()
        * 1e3;
    assert!(
        fiber.quality.rtt_ms > 0.0 && fiber.quality.rtt_ms <= max_timeout,
        "{fiber:?}"
    );
    assert_eq!(fiber.quality.loss_pct, 0.0, "{fiber:?}");
    let lte = uplink(&site_a, "lte");
    assert_eq!(lte.quality.state, outpost_sdwan::LinkState::Down);
    assert!(
        lte.quality.probes_sent >= 5 && lte.quality.replies == 0,
        "{lte:?}"
    );
    let reflected = site_b.sdwan().unwrap().reflector.unwrap().reflected;
    assert!(reflected >= 5, "site B answered {reflected} probes");

    // Cut the fiber: it goes down after lost probes and the change is an event. The deadline
    // only catches a hang; the detection time is a figure of `nfv/sdwan/benches/failover.rs`.
    let lost_before = uplink(&site_a, "fiber").quality.lost;
    cut.store(true, Ordering::SeqCst);
    let took = wait_for("fiber down", Duration::from_secs(30), || {
        uplink(&site_a, "fiber").quality.state == outpost_sdwan::LinkState::Down
    })
    .await;
    eprintln!("fiber cut: down after {took:?}");
    let fiber = uplink(&site_a, "fiber");
    assert!(
        fiber.quality.lost - lost_before >= 3,
        "down after {} lost probes (3 needed): {fiber:?}",
        fiber.quality.lost - lost_before
    );
    let status = site_a.sdwan().unwrap();
    let last = status.events.last().expect("a change event");
    assert_eq!((last.uplink.as_str(), last.state), ("fiber", "down"));

    let metrics = outpost_runtime::metrics::render("site-a", &site_a.metrics().await);
    assert!(
        metrics.contains("outpost_sdwan_uplink_up{uplink=\"fiber\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("outpost_sdwan_uplink_up{uplink=\"lte\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("outpost_sdwan_uplink_changes_total{uplink=\"fiber\"} 2"),
        "{metrics}"
    );

    // Restore it: back up after the hold-down (5 good replies), a third change.
    cut.store(false, Ordering::SeqCst);
    wait_for("fiber up again", Duration::from_secs(5), || {
        uplink(&site_a, "fiber").quality.state == outpost_sdwan::LinkState::Up
    })
    .await;
    assert_eq!(uplink(&site_a, "fiber").changes, 3);
    let status = outpost_runtime::diagnostics::status_json(&site_a);
    assert_eq!(status["sdwan"]["uplinks"][0]["name"], "fiber");
    assert_eq!(status["sdwan"]["uplinks"][0]["quality"]["state"], "Up");
    assert_eq!(status["sdwan"]["events"][2]["state"], "up");

    site_a.shutdown().await;
    site_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uplink_address_that_cannot_be_bound_stops_the_start_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let path = dir.path().join("outpost.toml");
    std::fs::write(
        &path,
        format!("[sdwan.uplinks.fiber]\nlocal = \"{addr}\"\nremote = \"127.0.0.1:9\"\n"),
    )
    .unwrap();
    let mut opts = ApplianceOptions::new(dir.path().join("data"));
    opts.http_listen = Some("127.0.0.1:0".parse().unwrap());
    let Err(err) = Appliance::start(Manifest::load(&path).unwrap(), opts).await else {
        panic!("the host started with an uplink address it could not bind");
    };
    let err = err.to_string();
    assert!(
        err.contains("sdwan.uplinks.fiber") && err.contains(&addr.to_string()),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// The SD-WAN plugin between two sites: LAN memory ports, WireGuard overlay ports over two WAN
// links (relays the test can cut), probes judging the links.

fn checksum(data: &[u8], mut sum: u32) -> u16 {
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The TCP checksum over the IPv4 pseudo-header; 0 when the packet's own checksum is right.
fn tcp_checksum_check(p: &[u8]) -> u16 {
    let tcp = &p[20..];
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&p[12..20]);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
    let sum: u32 = pseudo
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    checksum(tcp, sum)
}

/// An IPv4/TCP packet 10.1.0.5:`sport` -> 10.2.0.9:`dport` with `flags`, `options` and
/// `payload`, checksums right.
fn tcp(sport: u16, dport: u16, flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let tcp_len = 20 + options.len() + payload.len();
    let total = 20 + tcp_len;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&[10, 1, 0, 5]);
    p[16..20].copy_from_slice(&[10, 2, 0, 9]);
    set_ipv4_checksum(&mut p);
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[32] = (((20 + options.len()) / 4) as u8) << 4;
    p[33] = flags;
    p[34..36].copy_from_slice(&65535u16.to_be_bytes());
    p[40..40 + options.len()].copy_from_slice(options);
    p[40 + options.len()..].copy_from_slice(payload);
    let c = tcp_checksum_check(&p);
    p[36..38].copy_from_slice(&c.to_be_bytes());
    assert_eq!(tcp_checksum_check(&p), 0);
    p
}

/// A TLS 1.2-style ClientHello record naming `server`.
fn client_hello(server: &str) -> Vec<u8> {
    let name = server.as_bytes();
    let mut sni = Vec::new();
    sni.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name);
    let mut ext = Vec::new();
    ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]); // ec_point_formats first
    ext.extend_from_slice(&[0, 0]);
    ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    ext.extend_from_slice(&sni);
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0); // session id
    body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one cipher suite
    body.extend_from_slice(&[1, 0]); // null compression
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![0x01];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sdwan_plugin_steers_classes_fails_over_on_a_cut_and_returns_after_the_hold_down() {
    let sites = two_sites(true).await;
    let (site_a, site_b) = (&sites.a, &sites.b);
    let (fiber, lte) = (sites.fiber.as_ref().unwrap(), sites.lte.as_ref().unwrap());
    let (a_pub, b_fiber) = (sites.a_public_key.clone(), sites.b_fiber_port);

    let a_lan = site_a.memory_port("sdwan", "lan").unwrap();
    let b_lan = site_b.memory_port("sdwan", "lan").unwrap();

    // A steady sender: realtime (UDP 5004), bulk (9000) and voice (5006) packets every 5 ms.
    let (sending, sender) =
        spawn_sender(a_lan.clone(), &[5004, 9000, 5006], Duration::from_millis(5));
    // Each class on its link.
    let mut received: Vec<(Instant, u16, u32)> = Vec::new();
    let drain = |received: &mut Vec<(Instant, u16, u32)>| {
        let now = Instant::now();
        for p in b_lan.take_sent() {
            if let Some((port, seq)) = seq_of(&p) {
                received.push((now, port, seq));
            }
        }
    };
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        drain(&mut received);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        received.iter().filter(|r| r.1 == 5004).count() > 50,
        "realtime packets reached site B"
    );
    assert_eq!(choice(site_a, "realtime"), "wan-fiber");
    assert_eq!(choice(site_a, "bulk"), "wan-lte");
    let (fiber_tx, lte_tx) = (
        port_stats(site_a, "wan-fiber").stats.tx_packets,
        port_stats(site_a, "wan-lte").stats.tx_packets,
    );
    let rt = received.iter().filter(|r| r.1 == 5004).count() as u64;
    let bulk = received.iter().filter(|r| r.1 == 9000).count() as u64;
    let voice = received.iter().filter(|r| r.1 == 5006).count() as u64;
    // Each link carried its classes (and only them): realtime and voice on fiber, bulk and
    // voice's copies on LTE; counts match what B received, give or take the packets in flight.
    assert!(voice > 50, "voice packets reached site B");
    assert!(
        fiber_tx >= rt + voice && fiber_tx <= rt + voice + 40,
        "fiber {fiber_tx}, realtime {rt}, voice {voice}"
    );
    assert!(
        lte_tx >= bulk + voice && lte_tx <= bulk + voice + 40,
        "lte {lte_tx}, bulk {bulk}, voice copies {voice}"
    );

    // Application awareness: a TLS ClientHello's server name and an HTTP Host header pick the
    // class (video prefers LTE, web prefers fiber) for flows that no port rule names.
    a_lan.inject(&tcp(
        41000,
        443,
        0x18,
        &[],
        &client_hello("cam.video.example"),
    ));
    a_lan.inject(&tcp(
        41001,
        80,
        0x18,
        &[],
        b"GET /status HTTP/1.1\r\nUser-Agent: t\r\nHost: Intranet.Example:8080\r\n\r\n",
    ));
    // A SYN offering MSS 1460 leaves with the overlay's 1400 and a right checksum.
    a_lan.inject(&tcp(41002, 22, 0x02, &[2, 4, 0x05, 0xb4, 1, 1, 1, 0], &[]));
    // An IPv6 packet (not classified yet) takes the default class's link.
    let mut v6 = vec![0u8; 40 + 8 + 4];
    v6[0] = 0x60;
    v6[4..6].copy_from_slice(&12u16.to_be_bytes());
    v6[6] = 17;
    v6[7] = 64;
    v6[8] = 0xfd;
    v6[23] = 1;
    v6[24] = 0xfd;
    v6[39] = 2;
    v6[40..42].copy_from_slice(&40000u16.to_be_bytes());
    v6[42..44].copy_from_slice(&9999u16.to_be_bytes());
    v6[44..46].copy_from_slice(&12u16.to_be_bytes());
    v6[48..].copy_from_slice(b"six!");
    a_lan.inject(&v6);
    let (mut syn, mut v6_seen) = (None, false);
    let start = Instant::now();
    while (syn.is_none() || !v6_seen) && start.elapsed() < Duration::from_secs(3) {
        for p in b_lan.take_sent() {
            if p == v6 {
                v6_seen = true;
            } else if p.len() >= 24 && p[9] == 6 && u16::from_be_bytes([p[22], p[23]]) == 22 {
                syn = Some(p);
            } else if let Some((port, seq)) = seq_of(&p) {
                received.push((Instant::now(), port, seq));
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let syn = syn.expect("the SYN reached site B");
    assert!(v6_seen, "the IPv6 packet reached site B");
    assert_eq!(&syn[40..44], &[2, 4, 0x05, 0x78], "MSS clamped to 1400");
    assert_eq!(tcp_checksum_check(&syn), 0, "TCP checksum still right");
    assert_eq!(choice(site_a, "video"), "wan-lte");
    assert_eq!(choice(site_a, "web"), "wan-fiber");
    // A fresh instance of the plugin (a hot swap) keeps every pin: the web flow, which only its
    // first packet's Host header classified, still counts as web on fiber afterwards.
    let web_on_fiber = |app: &Appliance| {
        app.tables()
            .open("sdwan-stats")
            .unwrap()
            .count(&(2u32 * 16 + 1).to_le_bytes(), 0, 0)
            .unwrap()
            .0
    };
    let before = web_on_fiber(site_a);
    assert_eq!(before, 1);
    site_a.restart_plugin("sdwan", "test").await.unwrap();
    a_lan.inject(&tcp(41001, 80, 0x10, &[], b"more of the request body"));
    wait_for("the web flow's next packet", Duration::from_secs(3), || {
        web_on_fiber(site_a) == before + 1
    })
    .await;
    // The operator sees each class's link in status and metrics.
    let classes: std::collections::BTreeMap<String, String> = site_a
        .sdwan()
        .unwrap()
        .classes
        .into_iter()
        .map(|c| (c.class, c.link))
        .collect();
    assert_eq!(classes["realtime"], "wan-fiber");
    assert_eq!(classes["video"], "wan-lte");
    let metrics = outpost_runtime::metrics::render("site-a", &site_a.metrics().await);
    assert!(
        metrics.contains("outpost_sdwan_class_link{class=\"web\",link=\"wan-fiber\"} 1"),
        "{metrics}"
    );

    // Cut the fiber: the realtime flow moves to LTE. The deadlines only catch a hang: the time
    // to move and resume is a figure of `benches/sdwan.rs` ("failover").
    drain(&mut received);
    let before_cut = received
        .iter()
        .filter(|r| r.1 == 5004)
        .map(|r| r.2)
        .max()
        .expect("realtime arrived before the cut");
    let cut_at = Instant::now();
    fiber.cut.store(true, Ordering::SeqCst);
    let moved = loop {
        drain(&mut received);
        if choice(site_a, "realtime") == "wan-lte" {
            break cut_at.elapsed();
        }
        assert!(
            cut_at.elapsed() < Duration::from_secs(30),
            "the realtime flow did not move"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    // Realtime packets arrive at B again; time the gap.
    let resumed = loop {
        drain(&mut received);
        if let Some(r) = received
            .iter()
            .find(|r| r.1 == 5004 && r.0 > cut_at + moved)
        {
            break r.0.duration_since(cut_at);
        }
        assert!(
            cut_at.elapsed() < Duration::from_secs(30),
            "realtime traffic did not resume"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    eprintln!(
        "fiber cut: realtime flow moved after {moved:?}, traffic at site B again after {resumed:?}"
    );
    let moves = site_a
        .tables()
        .open("sdwan-stats")
        .unwrap()
        .count(&256u32.to_le_bytes(), 0, 0)
        .unwrap();
    assert_eq!(moves.0, 1, "one flow moved once");

    // Restore it: the flow returns only after the link has been back for the hold-down.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restored_at = Instant::now();
    fiber.cut.store(false, Ordering::SeqCst);
    let back = loop {
        drain(&mut received);
        if choice(site_a, "realtime") == "wan-fiber" {
            break restored_at.elapsed();
        }
        assert!(
            restored_at.elapsed() < Duration::from_secs(30),
            "the flow did not return"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!(
        "fiber restored: realtime flow back after {back:?} (up after 5 probes + 1 s hold-down)"
    );
    assert!(
        back >= Duration::from_millis(1000),
        "returned before the hold-down: {back:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    sending.store(false, Ordering::SeqCst);
    let sent = sender.await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drain(&mut received);

    // Bulk never left LTE and lost nothing; realtime lost only what was in flight on the cut
    // link before the move.
    let bulk_seqs: std::collections::BTreeSet<u32> = received
        .iter()
        .filter(|r| r.1 == 9000)
        .map(|r| r.2)
        .collect();
    assert_eq!(bulk_seqs.len() as u32, sent, "every bulk packet arrived");
    let rt_seqs: std::collections::BTreeSet<u32> = received
        .iter()
        .filter(|r| r.1 == 5004)
        .map(|r| r.2)
        .collect();
    let lost: Vec<u32> = (0..sent).filter(|s| !rt_seqs.contains(s)).collect();
    eprintln!("realtime: {sent} sent, {} lost around the cut", lost.len());
    assert!(!lost.is_empty(), "the cut link dropped what was sent on it");
    // One gap, after the last packet that arrived before the cut: the packets sent while the
    // flow was still pinned to the cut link, and nothing before or after (not a duration: a
    // loaded machine widens the gap, but never splits it).
    let (first, last) = (lost[0], lost[lost.len() - 1]);
    assert!(
        first > before_cut && (last - first) as usize + 1 == lost.len(),
        "realtime lost {lost:?}, not one gap after #{before_cut} (the last before the cut)"
    );
    // Voice, duplicated over both links, lost nothing through the cut, and site B delivered
    // each packet once.
    let voice: Vec<u32> = received
        .iter()
        .filter(|r| r.1 == 5006)
        .map(|r| r.2)
        .collect();
    let voice_seqs: std::collections::BTreeSet<u32> = voice.iter().copied().collect();
    assert_eq!(voice_seqs.len() as u32, sent, "every voice packet arrived");
    assert_eq!(
        voice.len(),
        voice_seqs.len(),
        "no voice packet arrived twice"
    );

    // The wire never carried the payload in clear, in either direction.
    for wan in [fiber, lte] {
        assert!(wan.forwarded.load(Ordering::SeqCst) > 100);
        assert_eq!(
            wan.plaintext_seen.load(Ordering::SeqCst),
            0,
            "plaintext on the wire"
        );
    }

    // Hostile datagrams at site B's fiber port are dropped and counted; traffic goes on.
    let attacker = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for d in [&[1u8, 0, 0][..], &[4u8; 200][..], &[0xffu8; 64][..]] {
        attacker.send_to(d, ("127.0.0.1", b_fiber)).unwrap();
    }
    wait_for("hostile datagrams counted", Duration::from_secs(3), || {
        port_stats(site_b, "wan-fiber")
            .overlay
            .is_some_and(|o| o.counters.rx_dropped_invalid >= 3)
    })
    .await;
    a_lan.inject(&packet(5004, 1_000_000));
    wait_for("traffic after the attack", Duration::from_secs(3), || {
        b_lan
            .take_sent()
            .iter()
            .any(|p| seq_of(p) == Some((5004, 1_000_000)))
    })
    .await;

    // Status shows each overlay port's public key for the operator.
    let wan = port_stats(site_a, "wan-fiber").overlay.unwrap();
    assert_eq!(wan.public_key, a_pub);
    assert_eq!(wan.uplink.as_deref(), Some("fiber"));
    site_a.shutdown().await;
    site_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_overlay_key_is_sealed_by_the_key_service_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (_, peer_pub) = key_file(dir.path(), "peer.key");
    let text = format!(
        r#"
[tables.sdwan-links]
kind = "exact"
[tables.sdwan-flows]
kind = "exact"
[tables.sdwan-stats]
kind = "counters"
max_entries = 512
[tables.sdwan-choices]
kind = "exact"
[ports.lan]
kind = "memory"
[ports.wan]
kind = "overlay"
local = "127.0.0.1:0"
peer = "127.0.0.1:9"
peer_public_key = "{peer_pub}"
[plugins.sdwan]
kind = "network-function"
component = "sdwan.wasm"
grants.ports = ["lan", "wan"]
grants.tables = ["sdwan-links", "sdwan-flows", "sdwan-stats", "sdwan-choices"]
config = {{ links = "wan=fiber" }}
"#
    );
    let path = dir.path().join("outpost.toml");
    std::fs::write(&path, text).unwrap();
    let start = || async {
        Appliance::start(Manifest::load(&path).unwrap(), site_options(dir.path()))
            .await
            .unwrap()
    };
    let public_key = |app: &Appliance| port_stats(app, "wan").overlay.unwrap().public_key;

    let app = start().await;
    assert!(
        app.key_status().is_some_and(|k| k.available),
        "encryption at rest is on"
    );
    let first = public_key(&app);
    let keys = dir.path().join("data/sdwan");
    let sealed = std::fs::read(keys.join("wan.key.sealed")).expect("the sealed key file");
    assert!(!keys.join("wan.key").exists(), "no plaintext key file");
    // The file is an envelope, not the key: 32 bytes of key would be far shorter, and the
    // public key's base64 never appears.
    assert!(sealed.len() > 64, "{} bytes", sealed.len());
    assert!(!sealed.windows(first.len()).any(|w| w == first.as_bytes()));
    app.shutdown().await;
    drop(app);

    let again = start().await;
    assert_eq!(public_key(&again), first, "the same key after a restart");
    again.shutdown().await;
}

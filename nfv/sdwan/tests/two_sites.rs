//! Two SD-WAN sites in real Linux network namespaces, joined by two veth pairs.
//!
//! Namespace A and namespace B each run a [`Gateway`]; link 0 is `up0` (10.90.0.1 ↔ 10.90.0.2),
//! link 1 is `up1` (10.91.0.1 ↔ 10.91.0.2). Sockets are bound on a thread inside the namespace
//! and then used from the test's runtime (a socket keeps its namespace for life). Links are cut
//! with `ip link set … down` inside the namespace, the wire is captured with tcpdump and hostile
//! datagrams are sent from inside the namespace.
//!
//! These tests need root and `ip netns`; without them they fail with a clear message.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use outpost_dataplane::netns::run_in_netns;
use outpost_sdwan::gateway::{FailoverReason, Gateway, GatewayConfig, GatewayStatus, Uplink};
use outpost_sdwan::overlay::{generate_secret, public_key};
use outpost_sdwan::policy::classify::{Classifier, Match, Rule};
use outpost_sdwan::probe::{LinkState, ProbeConfig};
use outpost_sdwan::qos::{QosClass, QosConfig};
use outpost_sdwan::{ClassPolicy, Policy, Sla};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

const OVERLAY_PORT: u16 = 51820;
const REFLECTOR_PORT: u16 = 51900;
const RT_PORT: u16 = 5004;
const BULK_PORT: u16 = 9000;
const MARKER: &[u8] = b"OUTPOST-PLAINTEXT-MARKER";
const HOLD_DOWN: Duration = Duration::from_secs(1);

/// Runs a command and returns its stdout; panics with its stderr when it fails.
fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd} {args:?}: {e} (is iproute2 installed?)"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) {
    run("ip", args);
}

/// Two namespaces joined by `up0` and `up1`; deleted on drop, even when the test panics.
struct Sites {
    a: String,
    b: String,
}

impl Sites {
    fn create() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tag = format!(
            "{:x}{:x}{}",
            std::process::id(),
            nanos & 0xffff,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let a = format!("sdwan-{tag}-a");
        let b = format!("sdwan-{tag}-b");
        let add = Command::new("ip").args(["netns", "add", &a]).output();
        match add {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "`ip netns add {a}` failed: {} — these tests need root and network namespace \
                 support",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("cannot run `ip netns add`: {e} — these tests need iproute2"),
        }
        // From here on the guard cleans up whatever exists.
        let sites = Self { a, b };
        ip(&["netns", "add", &sites.b]);
        for (link, net) in [("up0", "10.90.0"), ("up1", "10.91.0")] {
            ip(&[
                "link", "add", link, "netns", &sites.a, "type", "veth", "peer", "name", link,
                "netns", &sites.b,
            ]);
            for (ns, host) in [(&sites.a, 1), (&sites.b, 2)] {
                ip(&[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{net}.{host}/24"),
                    "dev",
                    link,
                ]);
                ip(&["-n", ns, "link", "set", link, "up"]);
            }
        }
        for ns in [&sites.a, &sites.b] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        sites
    }

    fn set_link(&self, ns: &str, link: &str, up: bool) {
        ip(&[
            "-n",
            ns,
            "link",
            "set",
            link,
            if up { "up" } else { "down" },
        ]);
    }

    /// A kernel interface counter inside a namespace.
    fn stat(&self, ns: &str, link: &str, counter: &str) -> u64 {
        let path = format!("/sys/class/net/{link}/statistics/{counter}");
        run("ip", &["netns", "exec", ns, "cat", &path])
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("bad counter {path} in {ns}: {e}"))
    }
}

impl Drop for Sites {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn addr(net: &str, host: u8, port: u16) -> SocketAddr {
    let ip: Ipv4Addr = format!("{net}.{host}").parse().unwrap();
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

fn bind_in(ns: &str, at: SocketAddr) -> UdpSocket {
    let std_socket = run_in_netns(ns, move || std::net::UdpSocket::bind(at))
        .unwrap_or_else(|e| panic!("entering {ns}: {e}"))
        .unwrap_or_else(|e| panic!("binding {at} in {ns}: {e}"));
    std_socket.set_nonblocking(true).unwrap();
    UdpSocket::from_std(std_socket).unwrap()
}

fn classifier() -> Classifier {
    Classifier {
        rules: vec![Rule {
            class: "realtime".into(),
            matcher: Match::Tuple {
                proto: Some(17),
                dst_ports: Some(RT_PORT..=RT_PORT),
                src_ports: None,
            },
        }],
        default_class: "bulk".into(),
    }
}

fn policy() -> Policy {
    let sla = Sla {
        max_latency_ms: 300.0,
        max_jitter_ms: 100.0,
        max_loss_pct: 60.0,
    };
    Policy::new([
        ClassPolicy {
            name: "realtime".into(),
            sla,
            preferred: vec![0, 1],
            duplicate: true,
        },
        ClassPolicy {
            name: "bulk".into(),
            sla,
            preferred: vec![1, 0],
            duplicate: false,
        },
    ])
}

/// Starts one site's gateway: `me` is 1 (A) or 2 (B).
fn start_site(
    ns: &str,
    me: u8,
    secret: outpost_sdwan::overlay::StaticSecret,
    peer: outpost_sdwan::overlay::PublicKey,
) -> (Gateway, mpsc::Receiver<Vec<u8>>) {
    let other = 3 - me;
    let uplinks = [(0, "10.90.0"), (1, "10.91.0")]
        .into_iter()
        .map(|(link_id, net)| Uplink {
            link_id,
            socket: bind_in(ns, addr(net, me, OVERLAY_PORT)),
            remote: addr(net, other, OVERLAY_PORT),
            probe_socket: bind_in(ns, addr(net, me, 0)),
            remote_reflector: addr(net, other, REFLECTOR_PORT),
            reflector_socket: Some(bind_in(ns, addr(net, me, REFLECTOR_PORT))),
            probe: ProbeConfig::for_link(link_id),
            outer_mtu: 1500,
            rate: None,
        })
        .collect();
    let qos = QosConfig::new(vec![
        QosClass::realtime("realtime"),
        QosClass::weighted("bulk", 1),
    ]);
    let mut config = GatewayConfig::new(secret, peer, classifier(), policy(), qos);
    config.hold_down = HOLD_DOWN;
    Gateway::start(config, uplinks).expect("gateway starts")
}

fn checksum(header: &[u8]) -> u16 {
    let mut sum = 0u32;
    for pair in header.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An inner IPv4/UDP packet 192.168.1.10 → 192.168.2.10.
fn udp_packet(src_port: u16, dst_port: u16, id: u16, payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0xb8]); // DSCP EF
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0x40, 0x00, 64, 17, 0, 0]);
    p.extend_from_slice(&[192, 168, 1, 10, 192, 168, 2, 10]);
    let sum = checksum(&p[..20]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&src_port.to_be_bytes());
    p.extend_from_slice(&dst_port.to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

fn udp_dst_port(p: &[u8]) -> Option<u16> {
    let ihl = usize::from(p.first()? & 0x0f) * 4;
    Some(u16::from_be_bytes([*p.get(ihl + 2)?, *p.get(ihl + 3)?]))
}

fn udp_payload(p: &[u8]) -> Option<&[u8]> {
    let ihl = usize::from(p.first()? & 0x0f) * 4;
    p.get(ihl + 8..)
}

async fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if ok() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn all_up(s: &GatewayStatus) -> bool {
    s.links
        .iter()
        .all(|l| l.state == LinkState::Up && l.established)
}

/// Both gateways started and every link up and established on both sides.
async fn two_gateways(
    sites: &Sites,
) -> (
    Arc<Gateway>,
    mpsc::Receiver<Vec<u8>>,
    Arc<Gateway>,
    mpsc::Receiver<Vec<u8>>,
) {
    let (sa, sb) = (generate_secret(), generate_secret());
    let (pa, pb) = (public_key(&sa), public_key(&sb));
    let (gw_a, rx_a) = start_site(&sites.a, 1, sa, pb);
    let (gw_b, rx_b) = start_site(&sites.b, 2, sb, pa);
    gw_a.connect().await;
    wait_for(
        "both sites' links up and established",
        Duration::from_secs(15),
        || all_up(&gw_a.status()) && all_up(&gw_b.status()),
    )
    .await;
    (Arc::new(gw_a), rx_a, Arc::new(gw_b), rx_b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classes_take_their_links_fail_over_when_one_is_cut_and_return_after_the_hold_down() {
    let sites = Sites::create();
    let (gw_a, _rx_a, gw_b, mut rx_b) = two_gateways(&sites).await;

    // B records every realtime sequence number and counts bulk packets.
    let rt_seen = Arc::new(Mutex::new(Vec::<(u32, Instant)>::new()));
    let bulk_seen = Arc::new(AtomicU64::new(0));
    let receiver = {
        let rt_seen = Arc::clone(&rt_seen);
        let bulk_seen = Arc::clone(&bulk_seen);
        tokio::spawn(async move {
            while let Some(p) = rx_b.recv().await {
                match udp_dst_port(&p) {
                    Some(RT_PORT) => {
                        let seq = udp_payload(&p)
                            .and_then(|b| b.get(..4))
                            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                        if let Some(seq) = seq {
                            rt_seen.lock().unwrap().push((seq, Instant::now()));
                        }
                    }
                    Some(BULK_PORT) => {
                        bulk_seen.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        })
    };

    // A sends a realtime packet every 5 ms and a bulk packet every 10 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let rt_sent = Arc::new(AtomicU64::new(0));
    let bulk_bytes = Arc::new(AtomicU64::new(0));
    let sender = {
        let gw = Arc::clone(&gw_a);
        let stop = Arc::clone(&stop);
        let rt_sent = Arc::clone(&rt_sent);
        let bulk_bytes = Arc::clone(&bulk_bytes);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            let mut seq: u32 = 0;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let mut payload = seq.to_be_bytes().to_vec();
                payload.resize(160, 0xab);
                // Failures (no route) are counted by the gateway; the sequence number moves on.
                let _ = gw.send(udp_packet(40_000, RT_PORT, seq as u16, &payload));
                rt_sent.store(u64::from(seq) + 1, Ordering::Relaxed);
                if seq.is_multiple_of(2) {
                    let bulk = udp_packet(40_001, BULK_PORT, seq as u16, &[0x5a; 1000]);
                    bulk_bytes.fetch_add(bulk.len() as u64, Ordering::Relaxed);
                    let _ = gw.send(bulk);
                }
                seq = seq.wrapping_add(1);
            }
        })
    };

    // Steady state: realtime on link 0 (duplicated on 1), bulk on link 1 only.
    let veth_before: Vec<u64> = ["up0", "up1"]
        .iter()
        .map(|l| sites.stat(&sites.a, l, "tx_bytes"))
        .collect();
    let bulk_before = bulk_bytes.load(Ordering::Relaxed);
    // Until each link has carried a fair share of its classes (about 1.5 s of traffic; the
    // deadline only catches a hang).
    wait_for("traffic on both links", Duration::from_secs(30), || {
        let s = gw_a.status();
        s.class_link("realtime", 0).tx_packets > 100
            && s.class_link("realtime", 1).tx_duplicates > 100
            && s.class_link("bulk", 1).tx_packets > 50
            && bulk_seen.load(Ordering::Relaxed) > 50
    })
    .await;
    let s = gw_a.status();
    let rt0 = s.class_link("realtime", 0);
    let rt1 = s.class_link("realtime", 1);
    let bulk0 = s.class_link("bulk", 0);
    let bulk1 = s.class_link("bulk", 1);
    println!(
        "steady state: realtime link0 {rt0:?} link1 {rt1:?}; bulk link0 {bulk0:?} link1 {bulk1:?}"
    );
    assert!(rt0.tx_packets > 100, "realtime primary on link 0: {rt0:?}");
    assert_eq!(rt1.tx_packets, 0, "no realtime primary on link 1");
    assert!(
        rt1.tx_duplicates > 100,
        "realtime duplicated on link 1: {rt1:?}"
    );
    assert!(bulk1.tx_packets > 50, "bulk on link 1: {bulk1:?}");
    assert_eq!(
        bulk0.tx_packets + bulk0.tx_duplicates,
        0,
        "no bulk on link 0"
    );
    assert_eq!(s.classes["realtime"].flows_by_link.get(&0), Some(&1));
    assert_eq!(s.classes["bulk"].flows_by_link.get(&1), Some(&1));
    let veth_after: Vec<u64> = ["up0", "up1"]
        .iter()
        .map(|l| sites.stat(&sites.a, l, "tx_bytes"))
        .collect();
    let bulk_sent = bulk_bytes.load(Ordering::Relaxed) - bulk_before;
    let up1_delta = veth_after[1] - veth_before[1];
    let up0_delta = veth_after[0] - veth_before[0];
    println!(
        "kernel tx bytes: up0 +{up0_delta}, up1 +{up1_delta}; bulk inner bytes sent {bulk_sent}"
    );
    assert!(
        up1_delta >= bulk_sent,
        "the bulk bytes really left through up1 (up1 +{up1_delta} < {bulk_sent})"
    );
    assert!(
        up1_delta > up0_delta * 2,
        "up1 carries bulk + duplicates, much more than up0 (up0 +{up0_delta}, up1 +{up1_delta})"
    );
    assert!(bulk_seen.load(Ordering::Relaxed) > 50);

    // Cut link 0 at site A.
    let failovers_before = s.failovers.len();
    let cut = Instant::now();
    sites.set_link(&sites.a, "up0", false);
    // Hang-only deadline: the time a flow takes to move is a figure of the benchmarks
    // (`benches/failover.rs` here, `host/runtime/benches/sdwan.rs` through the plugin).
    let failover = wait_for(
        "realtime to move to link 1",
        Duration::from_secs(30),
        || {
            let s = gw_a.status();
            s.classes["realtime"].flows_by_link.get(&1) == Some(&1)
                && s.failovers.iter().any(|e| e.from == 0 && e.to == 1)
        },
    )
    .await;
    println!("failover 0 -> 1 after the cut: {failover:?}");
    let s = gw_a.status();
    let event = s.failovers[failovers_before..]
        .iter()
        .find(|e| e.from == 0 && e.to == 1)
        .expect("failover event recorded")
        .clone();
    println!("failover event: {event:?}");
    assert_eq!(event.reason, FailoverReason::LinkDown);
    assert!(event.classes.contains(&"realtime".to_string()));
    assert_eq!(s.link(0).map(|l| l.state), Some(LinkState::Down));
    assert_eq!(
        s.classes["bulk"].flows_by_link.get(&1),
        Some(&1),
        "bulk stays"
    );

    // Traffic keeps flowing on link 1.
    let seen_at_cut = rt_seen.lock().unwrap().len();
    wait_for(
        "realtime to keep arriving as primary on link 1",
        Duration::from_secs(30),
        || {
            rt_seen.lock().unwrap().len() > seen_at_cut + 50
                && gw_a.status().class_link("realtime", 1).tx_packets > 50
        },
    )
    .await;

    // Bring link 0 back: the flow returns after the hold-down.
    let events_before_up = gw_a.status().failovers.len();
    let up = Instant::now();
    sites.set_link(&sites.a, "up0", true);
    let back = wait_for(
        "realtime to return to link 0",
        Duration::from_secs(15),
        || {
            let s = gw_a.status();
            s.classes["realtime"].flows_by_link.get(&0) == Some(&1)
                && s.failovers[events_before_up.min(s.failovers.len())..]
                    .iter()
                    .any(|e| e.from == 1 && e.to == 0)
        },
    )
    .await;
    println!("return 1 -> 0 after link up: {back:?} (hold-down {HOLD_DOWN:?})");
    let s = gw_a.status();
    let event = s
        .failovers
        .iter()
        .rev()
        .find(|e| e.from == 1 && e.to == 0)
        .expect("return event")
        .clone();
    assert_eq!(event.reason, FailoverReason::ReturnToPreferred);
    assert!(back >= HOLD_DOWN, "returned before the hold-down: {back:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Stop and account for every realtime packet.
    stop.store(true, Ordering::Relaxed);
    sender.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    receiver.abort();
    let sent = rt_sent.load(Ordering::Relaxed) as u32;
    let seen = rt_seen.lock().unwrap();
    let unique: BTreeSet<u32> = seen.iter().map(|(s, _)| *s).collect();
    let missing: Vec<u32> = (0..sent).filter(|s| !unique.contains(s)).collect();
    let b = gw_b.status();
    println!(
        "realtime: sent {sent}, delivered {} ({} unique), missing {} {:?}; B dropped {} + {} duplicates",
        seen.len(),
        unique.len(),
        missing.len(),
        &missing[..missing.len().min(20)],
        b.class_link("realtime", 0).rx_duplicates,
        b.class_link("realtime", 1).rx_duplicates,
    );
    println!(
        "cut at {:?}, up at {:?} into the run",
        cut.elapsed(),
        up.elapsed()
    );
    assert_eq!(
        seen.len(),
        unique.len(),
        "the receiver de-duplicated every copy"
    );
    assert!(
        b.class_link("realtime", 0).rx_duplicates + b.class_link("realtime", 1).rx_duplicates > 100,
        "duplicates arrived and were dropped"
    );
    assert!(
        missing.is_empty(),
        "with duplication no realtime packet is lost through the cut and the return: {missing:?}"
    );
    let json = serde_json::to_string(&gw_a.status()).unwrap();
    assert!(json.contains("\"failovers\""));
}

/// Reads a classic pcap file into its packets' bytes.
fn pcap_packets(file: &[u8]) -> Vec<&[u8]> {
    assert!(file.len() >= 24, "pcap too short: {} bytes", file.len());
    let magic = u32::from_le_bytes(file[..4].try_into().unwrap());
    assert!(
        magic == 0xa1b2_c3d4 || magic == 0xa1b2_3c4d,
        "not a little-endian classic pcap (magic {magic:#x})"
    );
    let linktype = u32::from_le_bytes(file[20..24].try_into().unwrap());
    assert_eq!(linktype, 1, "expected Ethernet captures");
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= file.len() {
        let incl = u32::from_le_bytes(file[at + 8..at + 12].try_into().unwrap()) as usize;
        let Some(data) = file.get(at + 16..at + 16 + incl) else {
            break;
        };
        out.push(data);
        at += 16 + incl;
    }
    out
}

/// The UDP payload of an Ethernet/IPv4/UDP frame sent from `src`.
fn frame_udp_payload(frame: &[u8], src: Ipv4Addr) -> Option<&[u8]> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if *ip.get(9)? != 17 || ip.get(12..16)? != src.octets() {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    ip.get(ihl + 8..total)
}

struct Tcpdump(Child);

impl Drop for Tcpdump {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_is_encrypted_and_hostile_datagrams_are_dropped_and_counted() {
    let sites = Sites::create();
    let (gw_a, _rx_a, gw_b, mut rx_b) = two_gateways(&sites).await;
    let delivered = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let receiver = {
        let delivered = Arc::clone(&delivered);
        tokio::spawn(async move {
            while let Some(p) = rx_b.recv().await {
                delivered.lock().unwrap().push(p);
            }
        })
    };
    let markers = |d: &Vec<Vec<u8>>| {
        d.iter()
            .filter(|p| p.windows(MARKER.len()).any(|w| w == MARKER))
            .count()
    };

    // Capture link 1 (bulk) at site A while sending plaintext markers.
    let pcap = std::env::temp_dir().join(format!("{}-up1.pcap", sites.a));
    let pcap_path = pcap.to_string_lossy().into_owned();
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &sites.a,
            "/usr/bin/tcpdump",
            "-i",
            "up1",
            "-n",
            "-U",
            "-w",
            &pcap_path,
            "-c",
            "20",
            "udp",
            "port",
            "51820",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump starts (is /usr/bin/tcpdump installed?)");
    let stderr = child.stderr.take().expect("tcpdump stderr");
    let mut tcpdump = Tcpdump(child);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = ready_tx.send(());
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("tcpdump reports it is listening");
    for i in 0..40u16 {
        let mut payload = MARKER.to_vec();
        payload.extend_from_slice(&i.to_be_bytes());
        gw_a.send(udp_packet(40_002, BULK_PORT, i, &payload))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_for("the markers to arrive at B", Duration::from_secs(5), || {
        markers(&delivered.lock().unwrap()) == 40
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while tcpdump.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "tcpdump did not capture 20 packets"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(tcpdump);
    let file = std::fs::read(&pcap).expect("pcap written");
    let _ = std::fs::remove_file(&pcap);
    let frames = pcap_packets(&file);
    println!(
        "captured {} frames, {} bytes on up1",
        frames.len(),
        file.len()
    );
    assert!(frames.len() >= 20, "{} frames", frames.len());
    assert!(
        !file.windows(MARKER.len()).any(|w| w == MARKER),
        "the plaintext marker is visible on the wire"
    );
    // A WireGuard data message (type 4) from A to B, to replay.
    let a1: Ipv4Addr = "10.91.0.1".parse().unwrap();
    let valid = frames
        .iter()
        .filter_map(|f| frame_udp_payload(f, a1))
        .find(|d| d.len() > 32 && d[..4] == [4, 0, 0, 0])
        .expect("a captured data datagram from A")
        .to_vec();

    // Hostile datagrams from inside namespace A to B's link-1 overlay socket.
    let before = gw_b.status().link(1).unwrap().overlay;
    let delivered_before = delivered.lock().unwrap().len();
    let hostile = bind_in(&sites.a, addr("10.91.0", 1, 0));
    let target = addr("10.91.0", 2, OVERLAY_PORT);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    let random: Vec<u8> = (0..200)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let invalid: Vec<Vec<u8>> = vec![
        valid[..10].to_vec(),              // truncated header
        valid[..valid.len() - 1].to_vec(), // truncated tag
        random,                            // random bytes
        vec![],                            // empty
    ];
    for d in &invalid {
        hostile.send_to(d, target).await.unwrap();
    }
    for _ in 0..3 {
        hostile.send_to(&valid, target).await.unwrap();
    }
    // The truncated-tag copy reuses a seen counter, so WireGuard may call it a replay (the
    // counter is checked before the tag); every one of the 7 must be dropped either way.
    let counted = |now: &outpost_sdwan::overlay::OverlayCounters| {
        now.rx_dropped_invalid >= before.rx_dropped_invalid + 3
            && now.rx_dropped_replay >= before.rx_dropped_replay + 3
            && now.rx_dropped_invalid + now.rx_dropped_replay
                >= before.rx_dropped_invalid + before.rx_dropped_replay + 7
            && now.rx_ok == before.rx_ok
    };
    let start = Instant::now();
    while !counted(&gw_b.status().link(1).unwrap().overlay)
        && start.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = gw_b.status().link(1).unwrap().overlay;
    println!("B link 1 overlay counters before {before:?} after {after:?}");
    assert!(counted(&after), "hostile datagrams dropped and counted");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        delivered.lock().unwrap().len(),
        delivered_before,
        "nothing hostile was delivered"
    );

    // Traffic keeps flowing.
    for i in 0..20u16 {
        gw_a.send(udp_packet(40_003, BULK_PORT, 1000 + i, b"after the attack"))
            .unwrap();
    }
    wait_for("traffic after the attack", Duration::from_secs(5), || {
        delivered.lock().unwrap().len() >= delivered_before + 20
    })
    .await;
    assert!(gw_b.status().links.iter().all(|l| l.state == LinkState::Up));

    // A TCP SYN advertising MSS 1460 arrives clamped to the overlay's inner MTU, checksum valid.
    let mss = gw_a.clamp_mss();
    assert_eq!(mss, 1500 - 20 - 8 - 32 - 40);
    gw_a.send(tcp_syn(1460)).unwrap();
    wait_for("the SYN at B", Duration::from_secs(5), || {
        delivered
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.get(9) == Some(&6))
    })
    .await;
    let got = delivered
        .lock()
        .unwrap()
        .iter()
        .find(|p| p.get(9) == Some(&6))
        .cloned()
        .unwrap();
    assert_eq!(u16::from_be_bytes([got[42], got[43]]), mss, "MSS clamped");
    assert_eq!(tcp_checksum(&got), 0, "TCP checksum still valid");
    assert_eq!(gw_a.status().counters.mss_clamped, 1);

    // The flow table survives an export / import (as across a hot swap).
    let exported = serde_json::to_string(&gw_a.export_flows()).unwrap();
    let flows_before = gw_a.status().flows;
    assert!(flows_before >= 3, "{flows_before} flows");
    gw_a.import_flows(outpost_sdwan::FlowTable::new(HOLD_DOWN));
    assert_eq!(gw_a.status().flows, 0);
    gw_a.import_flows(serde_json::from_str(&exported).unwrap());
    assert_eq!(gw_a.status().flows, flows_before);
    receiver.abort();
}

/// An inner TCP SYN with one MSS option and a correct checksum.
fn tcp_syn(mss: u16) -> Vec<u8> {
    let mut p = vec![
        0x45, 0, 0, 44, 0, 1, 0x40, 0, 64, 6, 0, 0, 192, 168, 1, 10, 192, 168, 2, 10,
    ];
    let sum = checksum(&p[..20]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb]); // ports 40000 -> 443
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]); // seq, ack
    p.extend_from_slice(&[0x60, 0x02, 0xff, 0xff, 0, 0, 0, 0]); // 24-byte header, SYN
    p.extend_from_slice(&[2, 4]);
    p.extend_from_slice(&mss.to_be_bytes());
    let sum = tcp_checksum(&p);
    p[36..38].copy_from_slice(&sum.to_be_bytes());
    p
}

/// The TCP checksum over the pseudo-header and segment (0 when the stored checksum is right,
/// or the checksum to store when the field is 0).
fn tcp_checksum(p: &[u8]) -> u16 {
    let seg = &p[20..];
    let mut buf = Vec::new();
    buf.extend_from_slice(&p[12..20]);
    buf.extend_from_slice(&[0, 6]);
    buf.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    buf.extend_from_slice(seg);
    checksum(&buf)
}

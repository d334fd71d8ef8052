//! Two SD-WAN sites on loopback for the tests and the benchmark: WAN links as UDP relays the
//! caller can cut (one for the overlay, one for the probes, cut together), each site's
//! manifest (LAN memory port, two WireGuard overlay ports, the sdwan plugin, its tables) and
//! packets to send through them.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use outpost_manifest::Manifest;
use outpost_runtime::{Appliance, ApplianceOptions};

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub const MARKER: &[u8] = b"OUTPOST-SDWAN-MARKER";

/// Two relays (overlay and probes) per WAN link, cut together.
pub struct Wan {
    pub cut: Arc<AtomicBool>,
    pub overlay: SocketAddr,
    pub overlay_back: SocketAddr,
    pub probes: SocketAddr,
    pub plaintext_seen: Arc<std::sync::atomic::AtomicU64>,
    pub forwarded: Arc<std::sync::atomic::AtomicU64>,
}

/// A relay standing for one direction pair of a WAN link, counting datagrams and any that
/// carry `MARKER` in clear. Returns (front, back): clients send to the front; the target
/// answers to the back.
pub async fn watched_relay(
    upstream: SocketAddr,
    cut: Arc<AtomicBool>,
    plaintext: Arc<std::sync::atomic::AtomicU64>,
    forwarded: Arc<std::sync::atomic::AtomicU64>,
) -> (SocketAddr, SocketAddr) {
    let outside = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let inside = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addrs = (outside.local_addr().unwrap(), inside.local_addr().unwrap());
    tokio::spawn(async move {
        let mut client = None;
        let (mut a, mut b) = (vec![0u8; 65_536], vec![0u8; 65_536]);
        let has_marker = |d: &[u8]| d.windows(MARKER.len()).any(|w| w == MARKER);
        loop {
            tokio::select! {
                Ok((n, from)) = outside.recv_from(&mut a) => {
                    client = Some(from);
                    if has_marker(&a[..n]) { plaintext.fetch_add(1, Ordering::SeqCst); }
                    if !cut.load(Ordering::SeqCst) {
                        forwarded.fetch_add(1, Ordering::SeqCst);
                        let _ = inside.send_to(&a[..n], upstream).await;
                    }
                }
                Ok((n, _)) = inside.recv_from(&mut b) => {
                    if has_marker(&b[..n]) { plaintext.fetch_add(1, Ordering::SeqCst); }
                    if let (Some(c), false) = (client, cut.load(Ordering::SeqCst)) {
                        forwarded.fetch_add(1, Ordering::SeqCst);
                        let _ = outside.send_to(&b[..n], c).await;
                    }
                }
            }
        }
    });
    addrs
}

impl Wan {
    pub async fn new(b_overlay: SocketAddr, b_reflector: SocketAddr) -> Wan {
        let cut = Arc::new(AtomicBool::new(false));
        let plaintext = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let forwarded = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (overlay, overlay_back) =
            watched_relay(b_overlay, cut.clone(), plaintext.clone(), forwarded.clone()).await;
        let (probes, _) = watched_relay(
            b_reflector,
            cut.clone(),
            plaintext.clone(),
            Default::default(),
        )
        .await;
        Wan {
            cut,
            overlay,
            overlay_back,
            probes,
            plaintext_seen: plaintext,
            forwarded,
        }
    }
}

/// An IPv4/UDP packet 10.1.0.5:40000 → 10.2.0.9:`dport` carrying `MARKER` and `seq`.
pub fn packet(dport: u16, seq: u32) -> Vec<u8> {
    let mut payload = MARKER.to_vec();
    payload.extend_from_slice(&seq.to_be_bytes());
    let total = 28 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 1, 0, 5]);
    p[16..20].copy_from_slice(&[10, 2, 0, 9]);
    set_ipv4_checksum(&mut p);
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(&payload);
    p
}

/// Writes the IPv4 header checksum of `p`.
pub fn set_ipv4_checksum(p: &mut [u8]) {
    p[10..12].copy_from_slice(&[0, 0]);
    let mut sum: u32 = p[..20]
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

pub fn seq_of(p: &[u8]) -> Option<(u16, u32)> {
    let dport = u16::from_be_bytes([*p.get(22)?, *p.get(23)?]);
    let s = p.get(28 + MARKER.len()..28 + MARKER.len() + 4)?;
    Some((dport, u32::from_be_bytes(s.try_into().ok()?)))
}

pub fn key_file(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
    use std::os::unix::fs::PermissionsExt;
    let secret = outpost_sdwan::overlay::generate_secret();
    let public =
        outpost_sdwan::overlay::encode_key(outpost_sdwan::overlay::public_key(&secret).as_bytes());
    let path = dir.join(name);
    std::fs::write(
        &path,
        outpost_sdwan::overlay::encode_key(&secret.to_bytes()),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (path, public)
}

#[allow(clippy::too_many_arguments)]
pub fn site_manifest(
    name: &str,
    reflector: Option<SocketAddr>,
    uplinks: &[(&str, SocketAddr, SocketAddr)],
    key: &Path,
    peer_key: &str,
    overlays: &[(&str, SocketAddr, SocketAddr, &str)],
) -> String {
    let mut m = format!(
        "[host]\nname = \"{name}\"\n[sdwan]\nprobe_interval_ms = 100\nlinks_table = \"sdwan-links\"\nchoices_table = \"sdwan-choices\"\n"
    );
    if let Some(addr) = reflector {
        m += &format!("reflector = \"{addr}\"\n");
    }
    for (u, local, remote) in uplinks {
        m += &format!("[sdwan.uplinks.{u}]\nlocal = \"{local}\"\nremote = \"{remote}\"\n");
    }
    m += r#"
[tables.sdwan-links]
kind = "exact"
max_entries = 16
[tables.sdwan-flows]
kind = "exact"
max_entries = 10000
[tables.sdwan-stats]
kind = "counters"
max_entries = 512
[tables.sdwan-choices]
kind = "exact"
max_entries = 64
[tables.sdwan-dedup]
kind = "exact"
max_entries = 4096
[ports.lan]
kind = "memory"
capacity = 8192
"#;
    for (port, local, peer, uplink) in overlays {
        m += &format!(
            "[ports.{port}]\nkind = \"overlay\"\nlocal = \"{local}\"\npeer = \"{peer}\"\npeer_public_key = \"{peer_key}\"\nprivate_key_file = \"{}\"\n",
            key.display()
        );
        if !uplink.is_empty() {
            m += &format!("uplink = \"{uplink}\"\n");
        }
    }
    m += r#"
[plugins.sdwan]
kind = "network-function"
component = "sdwan.wasm"
grants.ports = ["lan", "wan-fiber", "wan-lte"]
grants.tables = ["sdwan-links", "sdwan-flows", "sdwan-stats", "sdwan-choices", "sdwan-dedup"]
limits = { batch = 64 }
[plugins.sdwan.config]
lan = "lan"
links = "wan-fiber=fiber,wan-lte=lte"
classes = "realtime,video,web,voice,bulk"
"class.realtime.match" = "udp=5004;dscp=46"
"class.realtime.links" = "wan-fiber,wan-lte"
"class.realtime.max_loss_pct" = "10"
"class.video.match" = "sni=*.video.example"
"class.video.links" = "wan-lte,wan-fiber"
"class.web.match" = "host=intranet.example"
"class.web.links" = "wan-fiber,wan-lte"
"class.voice.match" = "udp=5006"
"class.voice.links" = "wan-fiber,wan-lte"
"class.voice.duplicate" = "true"
"class.bulk.links" = "wan-lte,wan-fiber"
hold_down_ms = "1000"
"#;
    m
}

pub async fn start_site(dir: &Path, text: &str) -> Arc<Appliance> {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("outpost.toml");
    std::fs::write(&path, text).unwrap();
    let mut opts = site_options(dir);
    opts.ephemeral = true;
    let app = Appliance::start(Manifest::load(&path).unwrap(), opts)
        .await
        .unwrap();
    let status = app.plugin_status("sdwan").unwrap();
    assert_eq!(status.state, "running", "{status:?}");
    app
}

pub fn port_stats(app: &Appliance, port: &str) -> outpost_runtime::nf::NfPortStatus {
    app.network_functions()
        .into_iter()
        .flat_map(|nf| nf.ports)
        .find(|p| p.name == port)
        .unwrap_or_else(|| panic!("no port {port}"))
}

pub fn choice(app: &Appliance, class: &str) -> String {
    app.tables()
        .open("sdwan-choices")
        .unwrap()
        .get(class.as_bytes())
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default()
}

/// Two running sites: A probes B over two WAN links (`fiber`, `lte`), each with a WireGuard
/// overlay port; with `relays`, each link runs through a pair of relays the caller can cut.
pub struct TwoSites {
    pub a: Arc<Appliance>,
    pub b: Arc<Appliance>,
    pub fiber: Option<Wan>,
    pub lte: Option<Wan>,
    /// Site A's WireGuard public key.
    pub a_public_key: String,
    /// Site B's fiber overlay port (UDP, on 127.0.0.1).
    pub b_fiber_port: u16,
    _dir: tempfile::TempDir,
}

/// Starts the two sites and waits until both of A's uplinks are up and past the hold-down.
pub async fn two_sites(relays: bool) -> TwoSites {
    let dir = tempfile::tempdir().unwrap();
    let (a_key, a_pub) = key_file(dir.path(), "a.key");
    let (b_key, b_pub) = key_file(dir.path(), "b.key");
    let (b_reflector, b_fiber, b_lte) = (free_udp_port(), free_udp_port(), free_udp_port());
    let (a_fiber, a_lte) = (free_udp_port(), free_udp_port());
    let local = |port: u16| -> SocketAddr { format!("127.0.0.1:{port}").parse().unwrap() };
    let reflector = local(b_reflector);
    let (fiber, lte, a_peers, b_peers, probes) = if relays {
        let fiber = Wan::new(local(b_fiber), reflector).await;
        let lte = Wan::new(local(b_lte), reflector).await;
        let a_peers = (fiber.overlay, lte.overlay);
        let b_peers = (fiber.overlay_back, lte.overlay_back);
        let probes = (fiber.probes, lte.probes);
        (Some(fiber), Some(lte), a_peers, b_peers, probes)
    } else {
        (
            None,
            None,
            (local(b_fiber), local(b_lte)),
            (local(a_fiber), local(a_lte)),
            (reflector, reflector),
        )
    };
    let b = start_site(
        &dir.path().join("b"),
        &site_manifest(
            "site-b",
            Some(reflector),
            &[],
            &b_key,
            &a_pub,
            &[
                ("wan-fiber", local(b_fiber), b_peers.0, ""),
                ("wan-lte", local(b_lte), b_peers.1, ""),
            ],
        ),
    )
    .await;
    let a = start_site(
        &dir.path().join("a"),
        &site_manifest(
            "site-a",
            None,
            &[("fiber", local(0), probes.0), ("lte", local(0), probes.1)],
            &a_key,
            &b_pub,
            &[
                ("wan-fiber", local(a_fiber), a_peers.0, "fiber"),
                ("wan-lte", local(a_lte), a_peers.1, "lte"),
            ],
        ),
    )
    .await;
    let started = std::time::Instant::now();
    while !a
        .sdwan()
        .unwrap()
        .uplinks
        .iter()
        .all(|u| u.quality.state == outpost_sdwan::LinkState::Up)
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the uplinks never came up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Past the plugin's 1 s hold-down, so both links are trusted.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    TwoSites {
        a,
        b,
        fiber,
        lte,
        a_public_key: a_pub,
        b_fiber_port: b_fiber,
        _dir: dir,
    }
}

/// Options of a site whose data lives under `dir`: the built plugins, an API on a free port.
pub fn site_options(dir: &Path) -> ApplianceOptions {
    let mut opts = ApplianceOptions::new(dir.join("data"));
    opts.plugin_dirs.push(
        Path::new(outpost_artifacts::SDWAN)
            .parent()
            .unwrap()
            .to_path_buf(),
    );
    opts.http_listen = Some("127.0.0.1:0".parse().unwrap());
    opts
}

/// Injects a packet to each of `ports` (UDP destination ports) into `lan` every `every`, with
/// a rising sequence number, until the flag is cleared; the task returns how many rounds it
/// sent.
pub fn spawn_sender(
    lan: outpost_dataplane::MemoryPortHandle,
    ports: &'static [u16],
    every: std::time::Duration,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<u32>) {
    let sending = Arc::new(AtomicBool::new(true));
    let flag = sending.clone();
    let task = tokio::spawn(async move {
        let mut seq = 0u32;
        while flag.load(Ordering::SeqCst) {
            for port in ports {
                lan.inject(&packet(*port, seq));
            }
            seq += 1;
            tokio::time::sleep(every).await;
        }
        seq
    });
    (sending, task)
}

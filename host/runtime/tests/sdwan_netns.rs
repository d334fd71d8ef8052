//! Two Outposts, each in a network namespace of its own, joined by two veth "WAN links": the
//! sdwan plugin steers classes over WireGuard overlay ports, fails over when a link is cut with
//! `ip link set down`, comes back after the hold-down, and the veth carries no plaintext.
//! Needs root and iproute2 (and tcpdump for the capture); without them the test fails with a
//! message saying so.

#[path = "support/sdwan_sites.rs"]
mod sites;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use outpost_manifest::Manifest;
use outpost_runtime::Appliance;
use sites::*;

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip`: {e} (these tests need iproute2)"));
    assert!(
        out.status.success(),
        "`ip {}` failed: {} (these tests need root)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Namespaces `a` and `b` joined by veths `wan0` (10.90.0.0/24) and `wan1` (10.91.0.0/24);
/// deleted on drop, even when the test panics.
struct Namespaces {
    a: String,
    b: String,
}

impl Namespaces {
    fn create() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let tag = format!(
            "{:x}{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let ns = Namespaces {
            a: format!("opsd-{tag}-a"),
            b: format!("opsd-{tag}-b"),
        };
        ip(&["netns", "add", &ns.a]);
        ip(&["netns", "add", &ns.b]);
        for (link, net) in [("wan0", "10.90.0"), ("wan1", "10.91.0")] {
            ip(&[
                "link", "add", link, "netns", &ns.a, "type", "veth", "peer", "name", link, "netns",
                &ns.b,
            ]);
            for (n, host) in [(&ns.a, 1), (&ns.b, 2)] {
                ip(&[
                    "-n",
                    n,
                    "addr",
                    "add",
                    &format!("{net}.{host}/24"),
                    "dev",
                    link,
                ]);
                ip(&["-n", n, "link", "set", link, "up"]);
            }
        }
        for n in [&ns.a, &ns.b] {
            ip(&["-n", n, "link", "set", "lo", "up"]);
        }
        ns
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

/// An appliance running in namespace `ns` on a runtime of its own (sockets and threads it
/// creates live there); stopped when `stop` is dropped.
struct Site {
    app: Arc<Appliance>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Site {
    fn start(ns: &str, dir: std::path::PathBuf, text: String) -> Site {
        let (app_tx, app_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let ns = ns.to_string();
        let thread = std::thread::spawn(move || {
            outpost_dataplane::netns::run_in_netns(&ns, move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    std::fs::create_dir_all(&dir).unwrap();
                    let path = dir.join("outpost.toml");
                    std::fs::write(&path, text).unwrap();
                    let mut opts = site_options(&dir);
                    opts.ephemeral = true;
                    let app = Appliance::start(Manifest::load(&path).unwrap(), opts)
                        .await
                        .unwrap();
                    app_tx.send(app.clone()).unwrap();
                    let _ = stopped.await;
                    app.shutdown().await;
                });
            })
            .unwrap();
        });
        let app = app_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the site started");
        Site {
            app,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_outposts_in_namespaces_fail_over_when_a_veth_link_is_cut_and_encrypt_the_wire() {
    let ns = Namespaces::create();
    let dir = tempfile::tempdir().unwrap();
    let (a_key, a_pub) = key_file(dir.path(), "a.key");
    let (b_key, b_pub) = key_file(dir.path(), "b.key");
    let site_b = Site::start(
        &ns.b,
        dir.path().join("b"),
        site_manifest(
            "site-b",
            Some(addr("0.0.0.0:7900")),
            &[],
            &b_key,
            &a_pub,
            &[
                (
                    "wan-fiber",
                    addr("10.90.0.2:51820"),
                    addr("10.90.0.1:51820"),
                    "",
                ),
                (
                    "wan-lte",
                    addr("10.91.0.2:51820"),
                    addr("10.91.0.1:51820"),
                    "",
                ),
            ],
        ),
    );
    let site_a = Site::start(
        &ns.a,
        dir.path().join("a"),
        site_manifest(
            "site-a",
            None,
            &[
                ("fiber", addr("10.90.0.1:0"), addr("10.90.0.2:7900")),
                ("lte", addr("10.91.0.1:0"), addr("10.91.0.2:7900")),
            ],
            &a_key,
            &b_pub,
            &[
                (
                    "wan-fiber",
                    addr("10.90.0.1:51820"),
                    addr("10.90.0.2:51820"),
                    "fiber",
                ),
                (
                    "wan-lte",
                    addr("10.91.0.1:51820"),
                    addr("10.91.0.2:51820"),
                    "lte",
                ),
            ],
        ),
    );
    let (a, b) = (&site_a.app, &site_b.app);
    let up = Instant::now();
    while !a
        .sdwan()
        .unwrap()
        .uplinks
        .iter()
        .all(|u| u.quality.state == outpost_sdwan::LinkState::Up)
    {
        assert!(
            up.elapsed() < Duration::from_secs(10),
            "uplinks never came up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Capture site B's LTE veth while traffic flows.
    let pcap = dir.path().join("wan1.pcap");
    let mut tcpdump = Command::new("ip")
        .args(["netns", "exec", &ns.b, "tcpdump", "-i", "wan1", "-U", "-w"])
        .arg(&pcap)
        .args(["-c", "50", "udp"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tcpdump runs");
    tokio::time::sleep(Duration::from_millis(500)).await;

    let a_lan = a.memory_port("sdwan", "lan").unwrap();
    let b_lan = b.memory_port("sdwan", "lan").unwrap();
    let (sending, sender) =
        spawn_sender(a_lan.clone(), &[5004, 9000, 5006], Duration::from_millis(5));
    let mut received: Vec<(Instant, u16, u32)> = Vec::new();
    let drain = |received: &mut Vec<(Instant, u16, u32)>| {
        let now = Instant::now();
        received.extend(b_lan.take_sent().iter().filter_map(|p| {
            let (port, seq) = seq_of(p)?;
            Some((now, port, seq))
        }));
    };
    let steady = Instant::now() + Duration::from_secs(1);
    while Instant::now() < steady {
        drain(&mut received);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(choice(a, "realtime"), "wan-fiber");
    assert_eq!(choice(a, "bulk"), "wan-lte");

    // Cut the fiber veth. The deadlines only catch a hang: the time to move and resume is a
    // figure of `benches/sdwan.rs` ("failover", the same plugin over loopback).
    drain(&mut received);
    let before_cut = received
        .iter()
        .filter(|r| r.1 == 5004)
        .map(|r| r.2)
        .max()
        .expect("realtime arrived before the cut");
    let cut = Instant::now();
    ip(&["-n", &ns.a, "link", "set", "wan0", "down"]);
    while choice(a, "realtime") != "wan-lte" {
        drain(&mut received);
        assert!(
            cut.elapsed() < Duration::from_secs(30),
            "the realtime flow did not move"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let moved = cut.elapsed();
    let resumed = loop {
        drain(&mut received);
        if let Some(r) = received.iter().find(|r| r.1 == 5004 && r.0 > cut + moved) {
            break r.0.duration_since(cut);
        }
        assert!(
            cut.elapsed() < Duration::from_secs(30),
            "realtime traffic did not resume"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    eprintln!("veth cut: realtime moved after {moved:?}, arriving again after {resumed:?}");

    // Bring it back: the flow returns after the hold-down.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restored = Instant::now();
    ip(&["-n", &ns.a, "link", "set", "wan0", "up"]);
    while choice(a, "realtime") != "wan-fiber" {
        drain(&mut received);
        assert!(
            restored.elapsed() < Duration::from_secs(30),
            "the flow did not return"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let back = restored.elapsed();
    eprintln!("veth restored: realtime back after {back:?}");
    assert!(
        back >= Duration::from_millis(1000),
        "returned before the hold-down: {back:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    sending.store(false, Ordering::SeqCst);
    let sent = sender.await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drain(&mut received);

    let distinct = |port: u16| -> usize {
        received
            .iter()
            .filter(|r| r.1 == port)
            .map(|r| r.2)
            .collect::<std::collections::BTreeSet<u32>>()
            .len()
    };
    assert_eq!(
        distinct(9000) as u32,
        sent,
        "every bulk packet arrived (it never left LTE)"
    );
    assert_eq!(
        distinct(5006) as u32,
        sent,
        "duplicated voice lost nothing through the cut"
    );
    assert_eq!(
        received.iter().filter(|r| r.1 == 5006).count() as u32,
        sent,
        "and arrived once"
    );
    let rt_seqs: std::collections::BTreeSet<u32> = received
        .iter()
        .filter(|r| r.1 == 5004)
        .map(|r| r.2)
        .collect();
    let lost: Vec<u32> = (0..sent).filter(|s| !rt_seqs.contains(s)).collect();
    eprintln!("realtime: {sent} sent, {} lost around the cut", lost.len());
    // At most one gap, after the last packet that arrived before the cut: the packets sent while
    // the flow was still pinned to the cut link, and nothing before or after (not a duration:
    // a loaded machine widens the gap, but never splits it).
    if let (Some(&first), Some(&last)) = (lost.first(), lost.last()) {
        assert!(
            first > before_cut && (last - first) as usize + 1 == lost.len(),
            "realtime lost {lost:?}, not one gap after #{before_cut} (the last before the cut)"
        );
    }

    // The capture holds WireGuard datagrams and no plaintext.
    let _ = tcpdump.kill();
    let _ = tcpdump.wait();
    let wire = std::fs::read(&pcap).expect("tcpdump wrote a capture");
    assert!(
        wire.len() > 24 + 10 * 100,
        "the capture has packets ({} bytes)",
        wire.len()
    );
    assert!(
        !wire.windows(MARKER.len()).any(|w| w == MARKER),
        "plaintext on the veth"
    );
}

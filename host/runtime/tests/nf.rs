//! Network functions on the host, with a real component (`nf-patch`, a patch cable between two
//! memory ports): batches in and out, host tables, the control socket, the timer, traps, and
//! hot swaps under traffic.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use outpost_manifest::Manifest;
use outpost_runtime::{Appliance, ApplianceOptions, EngineSettings};

const PATIENCE: Duration = Duration::from_secs(60);

fn artifacts_dir() -> PathBuf {
    Path::new(outpost_artifacts::NF_PATCH)
        .parent()
        .unwrap()
        .to_path_buf()
}

fn manifest(version: u32, extra_config: &str) -> String {
    manifest_on(version, extra_config, "127.0.0.1:0", 32)
}

fn manifest_on(version: u32, extra_config: &str, control: &str, batch: u32) -> String {
    format!(
        r#"
[ports.a]
kind = "memory"
capacity = 8192
[ports.b]
kind = "memory"
capacity = 8192
[tables.patch-counts]
kind = "exact"
max_entries = 16
[plugins.patch]
kind = "network-function"
component = "nf_patch.wasm"
version = "{version}"
config = {{ version = "{version}"{extra_config} }}
grants.ports = ["a", "b"]
grants.tables = ["patch-counts"]
grants.control = "{control}"
limits = {{ batch = {batch}, tick_ms = 20 }}
"#
    )
}

async fn start(dir: &Path, text: &str) -> Arc<Appliance> {
    let path = dir.join("outpost.toml");
    std::fs::write(&path, text).unwrap();
    let mut opts = ApplianceOptions::new(dir.join("data"));
    opts.plugin_dirs.push(artifacts_dir());
    opts.http_listen = Some("127.0.0.1:0".parse().unwrap());
    opts.ephemeral = true;
    opts.engine = EngineSettings {
        instance_slots: 32,
        ..EngineSettings::default()
    };
    let app = Appliance::start(Manifest::load(&path).unwrap(), opts)
        .await
        .unwrap();
    let status = app.plugin_status("patch").unwrap();
    assert_eq!(status.state, "running", "{status:?}");
    app
}

async fn apply(app: &Arc<Appliance>, dir: &Path, text: &str) {
    let path = dir.join("outpost.toml");
    std::fs::write(&path, text).unwrap();
    let report = app
        .apply(Manifest::load(&path).unwrap(), None, false)
        .await
        .unwrap();
    assert!(
        report.plugins.iter().all(|c| c.error.is_none()),
        "{report:?}"
    );
}

fn counts(app: &Appliance, key: &str) -> (u64, u64) {
    let v = app
        .tables()
        .open("patch-counts")
        .unwrap()
        .get(key.as_bytes())
        .unwrap_or_default();
    if v.len() < 16 {
        return (0, 0);
    }
    (
        u64::from_le_bytes(v[..8].try_into().unwrap()),
        u64::from_le_bytes(v[8..16].try_into().unwrap()),
    )
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_cross_the_patch_in_batches_and_the_host_table_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), &manifest(1, "")).await;
    let a = app.memory_port("patch", "a").unwrap();
    let b = app.memory_port("patch", "b").unwrap();
    for i in 0..1000u32 {
        assert!(a.inject(&i.to_be_bytes()));
    }
    assert!(a.inject(&[0xdd, 1, 2]), "a packet the patch drops");
    assert!(b.inject(b"back"));
    eventually("1000 packets on b", || b.sent_len() >= 1000).await;
    eventually("1 packet on a", || a.sent_len() >= 1).await;
    let sent = b.take_sent();
    assert_eq!(sent.len(), 1000);
    for (i, frame) in sent.iter().enumerate() {
        assert_eq!(frame[..4], (i as u32).to_be_bytes(), "in order");
        assert_eq!(frame[4], 1, "tagged by version 1");
    }
    assert_eq!(a.take_sent(), vec![b"back\x01".to_vec()]);
    eventually("the counts", || counts(&app, "in/0").0 == 1001).await;
    assert_eq!(counts(&app, "in/0"), (1001, 4003));
    assert_eq!(counts(&app, "in/1"), (1, 4));

    let nf = &app.network_functions()[0];
    assert_eq!(nf.stats.packets_in, 1002);
    assert_eq!(nf.stats.forwarded, 1001);
    assert_eq!(nf.stats.dropped, 1);
    assert!(
        nf.stats.batches < 1002,
        "packets crossed in batches: {:?}",
        nf.stats
    );
    assert_eq!(nf.ports[0].name, "a");
    assert_eq!(nf.ports[1].stats.tx_packets, 1000);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_datagrams_are_answered_the_timer_ticks_and_transmit_sends_out_of_a_port() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), &manifest(3, "")).await;
    let control: std::net::SocketAddr = app.network_functions()[0]
        .control
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = [0u8; 256];
    let mut ask = async |msg: &[u8]| -> String {
        sock.send_to(msg, control).await.unwrap();
        let (n, from) = tokio::time::timeout(PATIENCE, sock.recv_from(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert_eq!(from, control);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(ask(b"hello").await, "3:hello");
    assert_eq!(ask(b"inject:1").await, "sent");
    let b = app.memory_port("patch", "b").unwrap();
    eventually("the injected packet", || b.sent_len() == 1).await;
    assert_eq!(b.take_sent(), vec![b"injected".to_vec()]);
    let refused = ask(b"inject:7").await;
    assert!(refused.contains("port 7 does not exist"), "{refused}");
    eventually("ticks", || counts(&app, "ticks").0 >= 3).await;
    let stats = &app.network_functions()[0].stats;
    assert!(stats.control_in >= 3 && stats.control_out >= 3, "{stats:?}");
    assert_eq!(stats.injected, 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_traps_is_dropped_alone_and_the_next_ones_flow() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), &manifest(1, ", trap-on-ee = \"true\"")).await;
    let a = app.memory_port("patch", "a").unwrap();
    let b = app.memory_port("patch", "b").unwrap();
    assert!(a.inject(&[0xee]));
    eventually("the trap", || {
        app.network_functions()[0].stats.rejected_batches == 1
    })
    .await;
    for i in 0..10u8 {
        assert!(a.inject(&[i]));
    }
    eventually("10 packets after the trap", || b.sent_len() == 10).await;
    let status = app.plugin_status("patch").unwrap();
    assert_eq!(status.stats.traps, 1, "{status:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_hot_swaps_under_traffic_lose_no_packet_and_keep_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), &manifest(1, "")).await;
    let a = app.memory_port("patch", "a").unwrap();
    let b = app.memory_port("patch", "b").unwrap();
    // Traffic flows from before the first swap until after the last one.
    let swapping = Arc::new(AtomicBool::new(true));
    let sender = {
        let (a, swapping) = (a.clone(), swapping.clone());
        std::thread::spawn(move || {
            let mut sent = 0u32;
            while swapping.load(Ordering::Relaxed) || sent < 5_000 {
                // The port's queue is bounded; a full queue means "wait", as a NIC ring would.
                while !a.inject(&sent.to_be_bytes()) {
                    std::thread::sleep(Duration::from_micros(50));
                }
                sent += 1;
                if sent.is_multiple_of(16) {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
            sent
        })
    };
    let receiver = {
        let b = b.clone();
        std::thread::spawn(move || {
            let mut got: Vec<Vec<u8>> = Vec::new();
            let mut quiet_since = Instant::now();
            let until = Instant::now() + PATIENCE * 2;
            // Until nothing has arrived for a second after the sender is done.
            while Instant::now() < until && quiet_since.elapsed() < Duration::from_secs(1) {
                let more = b.take_sent();
                if !more.is_empty() {
                    quiet_since = Instant::now();
                }
                got.extend(more);
                std::thread::sleep(Duration::from_micros(200));
            }
            got
        })
    };
    for version in 2..=11 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        apply(&app, dir.path(), &manifest(version, "")).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    swapping.store(false, Ordering::Relaxed);
    let total = sender.join().unwrap();
    let got = receiver.join().unwrap();
    assert_eq!(got.len(), total as usize, "every packet arrived");
    let ids: HashSet<u32> = got
        .iter()
        .map(|f| u32::from_be_bytes(f[..4].try_into().unwrap()))
        .collect();
    assert_eq!(ids.len(), total as usize, "no packet twice");
    let tags: Vec<u8> = got.iter().map(|f| f[4]).collect();
    assert!(
        tags.windows(2).all(|w| w[0] <= w[1]),
        "versions never go backwards"
    );
    let seen: HashSet<u8> = tags.iter().copied().collect();
    assert_eq!(seen.len(), 11, "every version forwarded traffic: {seen:?}");
    assert_eq!(
        app.plugin_status("patch")
            .unwrap()
            .actual
            .version
            .as_deref(),
        Some("11")
    );
    assert_eq!(
        counts(&app, "in/0").0,
        u64::from(total),
        "the table outlived 10 versions"
    );
    let nf = &app.network_functions()[0];
    assert_eq!(nf.stats.rejected_batches, 0);
    assert_eq!(nf.ports[1].stats.tx_drops, 0);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_network_function_rebinds_its_fixed_control_port() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let control = format!("127.0.0.1:{port}");
    let app = start(dir.path(), &manifest_on(1, "", &control, 32)).await;
    // A new batch size restarts the function's loops: the replacement binds the same address.
    apply(&app, dir.path(), &manifest_on(2, "", &control, 64)).await;
    let status = app.plugin_status("patch").unwrap();
    assert_eq!(status.state, "running", "{status:?}");
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(b"again", &control).await.unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = tokio::time::timeout(PATIENCE, sock.recv_from(&mut buf))
        .await
        .expect("the replacement answers on the same port")
        .unwrap();
    assert_eq!(&buf[..n], b"2:again");
    app.shutdown().await;
}

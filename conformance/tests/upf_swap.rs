//! Hot swap of the UPF plugin under traffic: ten new versions while uplink and downlink flow
//! through 100 sessions; no session is lost and no packet that the old version would have
//! forwarded is dropped.
//!
//! The versions alternate between two builds of the plugin: the plain one (`upf.wasm`) and one
//! compiled with a build tag (`upf_tagged.wasm`, see `host/artifacts/build.rs`), which writes
//! its tag into the IPv4 Identification of the GTP-U packets it sends. Every swap changes the
//! code, and each downlink packet tells which build encapsulated it.

#[path = "support/models.rs"]
mod models;
#[path = "support/upf.rs"]
mod upf;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use outpost_pfcp::Cause;
use smoltcp::wire::Ipv4Packet;
use upf::{Smf, downlink, manifest_of, tag_of, uplink};

const SESSIONS: u32 = 100;
const LEN: usize = 100;

/// The build that version `v` runs, and the IPv4 Identification its GTP-U packets carry: odd
/// versions the plain build (ID 0, as `outpost_upf` writes it), even ones the tagged build.
fn build_of(version: u32) -> (&'static str, u16) {
    if version % 2 == 1 {
        ("upf.wasm", 0)
    } else {
        ("upf_tagged.wasm", 2)
    }
}

fn manifest(version: u32) -> String {
    manifest_of(build_of(version).0, version, 64, u64::from(SESSIONS))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_swaps_of_the_upf_under_traffic_keep_every_session_and_drop_no_packet() {
    let dir = tempfile::tempdir().unwrap();
    let app = models::start(dir.path(), &manifest(1)).await;
    assert_eq!(app.plugin_status("upf").unwrap().state, "running");
    let sessions: Vec<(u64, u32)> = tokio::task::spawn_blocking({
        let app = app.clone();
        move || {
            let mut smf = Smf::new(&app);
            smf.associate();
            (0..SESSIONS).map(|i| smf.establish(i)).collect()
        }
    })
    .await
    .unwrap();

    let n3 = app.memory_port("upf", "n3").unwrap();
    let n6 = app.memory_port("upf", "n6").unwrap();
    let swapping = Arc::new(AtomicBool::new(true));
    // Uplink on N3 and downlink on N6, alternating, round the sessions; each packet tagged.
    let sender = {
        let (n3, n6, swapping) = (n3.clone(), n6.clone(), swapping.clone());
        let teids: Vec<u32> = sessions.iter().map(|s| s.1).collect();
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while swapping.load(Ordering::Relaxed) || sent < 4_000 {
                let i = (sent / 2 % u64::from(SESSIONS)) as u32;
                let (port, packet) = if sent.is_multiple_of(2) {
                    (&n3, uplink(teids[i as usize], i, sent, LEN))
                } else {
                    (&n6, downlink(i, sent, LEN))
                };
                while !port.inject(&packet) {
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
    // Runs of equal IPv4 IDs on N3 so far: the number of versions that have encapsulated a
    // downlink packet (see below).
    let runs_seen = Arc::new(AtomicUsize::new(0));
    let receiver = {
        let (n3, n6, runs_seen) = (n3.clone(), n6.clone(), runs_seen.clone());
        std::thread::spawn(move || {
            let (mut up, mut down) = (Vec::new(), Vec::<Vec<u8>>::new());
            let mut quiet_since = Instant::now();
            let until = Instant::now() + Duration::from_secs(120);
            while Instant::now() < until && quiet_since.elapsed() < Duration::from_secs(1) {
                let (u, d) = (n6.take_sent(), n3.take_sent());
                if !u.is_empty() || !d.is_empty() {
                    quiet_since = Instant::now();
                }
                for p in &d {
                    if down.last().is_none_or(|last| last[4..6] != p[4..6]) {
                        runs_seen.fetch_add(1, Ordering::SeqCst);
                    }
                    down.push(p.clone());
                }
                up.extend(u);
                std::thread::sleep(Duration::from_micros(200));
            }
            (up, down)
        })
    };
    // Each version stays until it has forwarded downlink traffic (a state, not a time): then
    // the next one replaces it. A version that forwards nothing stops the test here.
    let forwarded_by = |version: u32| {
        let runs_seen = runs_seen.clone();
        async move {
            let until = Instant::now() + Duration::from_secs(120);
            while runs_seen.load(Ordering::SeqCst) < version as usize {
                assert!(
                    Instant::now() < until,
                    "version {version} never forwarded a downlink packet"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };
    for version in 2..=11 {
        forwarded_by(version - 1).await;
        let path = dir.path().join("outpost.toml");
        std::fs::write(&path, manifest(version)).unwrap();
        let report = app
            .apply(
                outpost_manifest::Manifest::load(&path).unwrap(),
                None,
                false,
            )
            .await
            .unwrap();
        assert!(
            report.plugins.iter().all(|c| c.error.is_none()),
            "{report:?}"
        );
    }
    forwarded_by(11).await;
    swapping.store(false, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    let (up, down) = receiver.join().unwrap();
    let nf = &app.network_functions()[0];
    assert_eq!(
        up.len() + down.len(),
        sent as usize,
        "every packet was forwarded: {nf:?}"
    );
    let tags: HashSet<u64> = up.iter().chain(&down).map(|p| tag_of(p, LEN)).collect();
    assert_eq!(tags.len(), sent as usize, "each exactly once");
    assert_eq!(nf.stats.rejected_batches, 0, "{nf:?}");

    // Each of the eleven versions encapsulated downlink packets, in order, and no version did
    // after its successor had: collapsing runs of equal IDs (N3's queue keeps the order they
    // were sent in) gives exactly one run per version.
    let mut runs: Vec<(u16, usize)> = Vec::new();
    for p in &down {
        let ip = Ipv4Packet::new_checked(&p[..]).expect("an IPv4 packet on N3");
        assert!(ip.verify_checksum(), "a valid IPv4 header checksum");
        match runs.last_mut() {
            Some((id, n)) if *id == ip.ident() => *n += 1,
            _ => runs.push((ip.ident(), 1)),
        }
    }
    let ids: Vec<u16> = runs.iter().map(|r| r.0).collect();
    let expected: Vec<u16> = (1..=11).map(|v| build_of(v).1).collect();
    assert_eq!(ids, expected, "one run of packets per version: {runs:?}");
    assert!(!up.is_empty(), "uplink flowed too");
    assert_eq!(nf.stats.dropped, 0, "{nf:?}");
    let status = app.plugin_status("upf").unwrap();
    assert_eq!(status.actual.version.as_deref(), Some("11"));
    assert_eq!(status.swaps, 10, "{status:?}");

    // Every session survived, with its counters: the usage reports add up to the traffic.
    let (ul_total, dl_total): (u64, u64) = tokio::task::spawn_blocking({
        let app = app.clone();
        move || {
            let mut smf = Smf::new(&app);
            let mut totals = (0, 0);
            for (seid, _) in &sessions {
                let (cause, ul, dl) = smf.delete(*seid);
                assert_eq!(cause, Cause::REQUEST_ACCEPTED, "session {seid:#x} is gone");
                totals.0 += ul.unwrap_or(0);
                totals.1 += dl.unwrap_or(0);
            }
            totals
        }
    })
    .await
    .unwrap();
    assert_eq!(ul_total, up.len() as u64 * LEN as u64);
    assert_eq!(dl_total, down.len() as u64 * LEN as u64);
    app.shutdown().await;
}

//! Failover timing: two probed links through impairment relays on loopback; cut the active
//! one and measure (a) cut → prober declares it Down and (b) cut → policy chooses the other
//! link (reacting to the Down event). Prints median and max against the 300 ms goal.
//!
//! `cargo bench -p outpost-sdwan --bench failover [-- --quick]` (20 trials, 5 with `--quick`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::Relay;
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
}

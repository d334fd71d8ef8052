//! Operations benchmarks, each against a baseline in the same run:
//!
//! - apply latency: a manifest naming a new version of a plugin (artifact already compiled) is
//!   applied until the new version serves, vs applying the manifest that already runs (the
//!   reconcile's fixed cost);
//! - route throughput: messages through `topics/in → plugin → topics/out` (bus, route task,
//!   plugin call, bus again) vs calling the same plugin directly.
//!
//! Run: `cargo bench -p outpost-runtime --bench operations`. Ratios are printed at the end.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use outpost_manifest::{Manifest, TopicPattern};
use outpost_runtime::{Appliance, ApplianceOptions, EngineSettings};

const SVC: &str = r#"
[plugins.svc]
kind = "pipeline"
component = "versioned.wasm"
version = "VERSION"
config = { version = "VERSION" }
grants.bus = { publish = ["reply"] }
grants.kv = { quota_kb = 64 }
health = { topic = "health" }

[plugins.echo]
kind = "pipeline"
component = "echo_pipeline.wasm"
config = { output-topic = "out", uppercase = "true" }
grants.bus = { publish = ["out"] }
grants.kv = { quota_kb = 16 }

[[routes]]
from = "topics/in"
to = "plugins/echo"
"#;

fn manifest(dir: &Path, version: &str) -> Manifest {
    let path = dir.join("outpost.toml");
    std::fs::write(&path, SVC.replace("VERSION", version)).unwrap();
    Manifest::load(&path).unwrap()
}

fn appliance(rt: &tokio::runtime::Runtime, dir: &Path) -> Arc<Appliance> {
    let mut opts = ApplianceOptions::new(dir.join("data"));
    opts.plugin_dirs.push(
        Path::new(outpost_artifacts::VERSIONED)
            .parent()
            .unwrap()
            .to_path_buf(),
    );
    opts.http_listen = Some("127.0.0.1:0".parse().unwrap());
    opts.engine = EngineSettings {
        instance_slots: 64,
        ..EngineSettings::default()
    };
    let app = rt
        .block_on(Appliance::start(manifest(dir, "v1"), opts))
        .unwrap();
    for p in app.status() {
        assert_eq!(p.state, "running", "{}: {:?}", p.name, p.last_error);
    }
    app
}

fn apply(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = appliance(&rt, dir.path());
    let versions = [manifest(dir.path(), "v1"), manifest(dir.path(), "v2")];
    let mut group = c.benchmark_group("apply");
    group.sample_size(20);
    let mut n = 0usize;
    group.bench_function("new-version-until-serving", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let (app, next) = (app.clone(), versions[n % 2].clone());
            async move {
                let want = next.plugins["svc"].version.clone();
                let report = app.apply(next, None, false).await.unwrap();
                assert!(report.succeeded());
                // Serving means: the next call is answered by the new version.
                assert_eq!(app.slot("svc").unwrap().active().version(), want.as_deref());
            }
        })
    });
    let current = versions[n % 2].clone();
    group.bench_function("unchanged-manifest", |b| {
        b.to_async(&rt).iter(|| {
            let (app, same) = (app.clone(), current.clone());
            async move {
                assert!(!app.apply(same, None, false).await.unwrap().changed);
            }
        })
    });
    group.finish();
    rt.block_on(app.shutdown());
}

fn route_throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = appliance(&rt, dir.path());
    let mut group = c.benchmark_group("route");
    group.measurement_time(Duration::from_secs(5));
    // Per message: publish on `in`, the route calls echo, echo's output arrives on `out`.
    group.bench_function("bus-route-plugin-bus", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let app = app.clone();
            async move {
                let mut out =
                    app.bus()
                        .subscribe("bench", vec![TopicPattern::parse("out").unwrap()], 8192);
                let started = Instant::now();
                let (mut sent, mut got) = (0u64, 0u64);
                while got < iters {
                    // Keep at most 1024 in flight so no bounded queue overflows.
                    while sent < iters && sent - got < 1024 {
                        app.bus()
                            .publish("bench", "in", b"payload".to_vec())
                            .unwrap();
                        sent += 1;
                    }
                    out.recv().await.unwrap();
                    got += 1;
                }
                started.elapsed()
            }
        })
    });
    group.bench_function("direct-plugin-call", |b| {
        let slot = app.slot("echo").unwrap();
        b.to_async(&rt).iter(|| {
            let slot = slot.clone();
            async move { slot.handle("in", b"payload").await.unwrap() }
        })
    });
    group.finish();
    rt.block_on(app.shutdown());
}

criterion_group!(benches, apply, route_throughput);

/// Reads criterion's median estimate for a benchmark id, in nanoseconds.
fn median_ns(id: &str) -> Option<f64> {
    let dir = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target").into());
    let text = std::fs::read_to_string(format!("{dir}/criterion/{id}/new/estimates.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn report() {
    println!("\nratios (median):");
    let pair = |label: &str, a: &str, b: &str| match (median_ns(a), median_ns(b)) {
        (Some(x), Some(y)) => println!(
            "  {label:<40} {:>10.3} ms / {:>10.3} ms = ratio {:.3}",
            x / 1e6,
            y / 1e6,
            x / y
        ),
        _ => println!("  {label:<40} (no estimates found)"),
    };
    pair(
        "apply new version vs unchanged apply",
        "apply/new-version-until-serving",
        "apply/unchanged-manifest",
    );
    if let Some(ns) = median_ns("apply/new-version-until-serving") {
        println!("  apply to serving: {:.2} ms (goal <= 50 ms)", ns / 1e6);
    }
    match (
        median_ns("route/bus-route-plugin-bus"),
        median_ns("route/direct-plugin-call"),
    ) {
        (Some(routed), Some(direct)) => println!(
            "  route throughput {:.0} msg/s vs direct calls {:.0} msg/s = ratio {:.3}",
            1e9 / routed,
            1e9 / direct,
            direct / routed
        ),
        _ => println!("  route throughput (no estimates found)"),
    }
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    report();
}

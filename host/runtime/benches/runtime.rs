//! Runtime benchmarks, each against a baseline in the same run:
//!
//! - instantiation of a real plugin (echo-pipeline) from its `InstancePre`, pooling allocator vs
//!   on-demand allocation;
//! - loading a component from the compile cache (hit) vs compiling it (miss);
//! - host→guest call of an empty export: component function vs core-module function.
//!
//! Run: `cargo bench -p outpost-runtime --bench runtime`. Ratios are printed at the end.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use outpost_manifest::{Grants, KvGrant, Limits, PluginKind, PluginSpec};
use outpost_runtime::plugin::plugin_linker;
use outpost_runtime::state::PluginContext;
use outpost_runtime::{CompileCache, EngineSettings, HostEngine, Plugin};
use outpost_services::KvStore;
use wasmtime::component::{Component, Linker};
use wasmtime::{Instance, Module, Store};

fn echo_plugin(engine: &HostEngine) -> Plugin {
    let cache = CompileCache::disabled(engine.engine());
    let linker = plugin_linker(engine).unwrap();
    let bytes = std::fs::read(outpost_artifacts::ECHO_PIPELINE).unwrap();
    load_echo(
        engine,
        &cache,
        &linker,
        &bytes,
        &KvStore::in_memory().unwrap(),
    )
}

/// Loads echo-pipeline (with a kv grant in `kv`) through `cache`.
fn load_echo(
    engine: &HostEngine,
    cache: &CompileCache,
    linker: &Linker<outpost_runtime::state::StoreState>,
    bytes: &[u8],
    kv: &KvStore,
) -> Plugin {
    let grants = Grants {
        kv: Some(KvGrant {
            namespace: "bench".into(),
            quota_bytes: 1 << 20,
        }),
        ..Grants::default()
    };
    let spec = PluginSpec {
        name: "echo".into(),
        kind: PluginKind::Pipeline,
        component: outpost_artifacts::ECHO_PIPELINE.into(),
        image: None,
        canary: None,
        version: None,
        config: Default::default(),
        grants: grants.clone(),
        limits: Limits::default(),
        route: None,
        args: Vec::new(),
        health: None,
        rollback: Default::default(),
        restart: Default::default(),
    };
    let ctx = PluginContext::new(
        "echo",
        PluginKind::Pipeline,
        Default::default(),
        grants,
        Limits::default(),
        None,
        Some(kv.namespace("bench", 1 << 20)),
    );
    Plugin::load(engine, cache, linker, &spec, ctx, bytes).unwrap()
}

fn instantiate(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("instantiate");
    for (label, pooling) in [("pooling", true), ("on-demand", false)] {
        let engine = HostEngine::new(EngineSettings {
            pooling,
            instance_slots: 16,
            ..EngineSettings::default()
        })
        .unwrap();
        let plugin = echo_plugin(&engine);
        group.bench_function(format!("echo-pipeline/{label}"), |b| {
            b.to_async(&rt).iter(|| async {
                let mut store = plugin.new_store().unwrap();
                plugin
                    .instance_pre()
                    .instantiate_async(&mut store)
                    .await
                    .unwrap();
            })
        });
        // The smallest component (one empty export, no imports): comparable with wasmtime's
        // published figure for a small pre-compiled module with pooling.
        let empty = Component::new(engine.engine(), EMPTY_COMPONENT).unwrap();
        let empty_pre = Linker::<()>::new(engine.engine())
            .instantiate_pre(&empty)
            .unwrap();
        group.bench_function(format!("empty-component/{label}"), |b| {
            b.iter(|| {
                let mut store = Store::new(engine.engine(), ());
                empty_pre.instantiate(&mut store).unwrap();
            })
        });
        if pooling {
            // The store alone (WASI context from grants, resource table, limiter): the part of
            // the figure above that is not wasmtime's instantiation.
            group.bench_function("echo-pipeline/store-only", |b| {
                b.iter(|| plugin.new_store().unwrap())
            });
        }
    }
    group.finish();
}

fn compile_cache(c: &mut Criterion) {
    let engine = HostEngine::new(EngineSettings {
        pooling: false,
        ..EngineSettings::default()
    })
    .unwrap();
    let bytes = std::fs::read(outpost_artifacts::ECHO_PIPELINE).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = CompileCache::open(dir.path(), engine.engine()).unwrap();
    cache.load_component(engine.engine(), &bytes).unwrap();
    let mut group = c.benchmark_group("compile-cache");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    group.bench_function("echo-pipeline/hit", |b| {
        b.iter(|| {
            let (_, outcome) = cache.load_component(engine.engine(), &bytes).unwrap();
            assert_eq!(outcome, outpost_runtime::CacheOutcome::Hit);
        })
    });
    let nocache = CompileCache::disabled(engine.engine());
    group.bench_function("echo-pipeline/miss", |b| {
        b.iter(|| nocache.load_component(engine.engine(), &bytes).unwrap())
    });
    group.finish();
}

const EMPTY_COMPONENT: &str = r#"(component
  (core module $m (func (export "f")))
  (core instance $i (instantiate $m))
  (func (export "f") (canon lift (core func $i "f"))))"#;
const EMPTY_MODULE: &str = r#"(module (func (export "f")))"#;

fn call_overhead(c: &mut Criterion) {
    let engine = HostEngine::new(EngineSettings {
        pooling: false,
        ..EngineSettings::default()
    })
    .unwrap();
    let e = engine.engine();
    let mut group = c.benchmark_group("call");

    let module = Module::new(e, EMPTY_MODULE).unwrap();
    let mut core_store = Store::new(e, ());
    core_store.set_epoch_deadline(u64::MAX / 2);
    let instance = Instance::new(&mut core_store, &module, &[]).unwrap();
    let core_f = instance
        .get_typed_func::<(), ()>(&mut core_store, "f")
        .unwrap();
    group.bench_function("empty/core-module", |b| {
        b.iter(|| core_f.call(&mut core_store, ()).unwrap())
    });

    let component = Component::new(e, EMPTY_COMPONENT).unwrap();
    let mut store = Store::new(e, ());
    store.set_epoch_deadline(u64::MAX / 2);
    let linker: Linker<()> = Linker::new(e);
    let instance = linker.instantiate(&mut store, &component).unwrap();
    let f = instance.get_typed_func::<(), ()>(&mut store, "f").unwrap();
    group.bench_function("empty/component", |b| {
        b.iter(|| f.call(&mut store, ()).unwrap())
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(tokio::sync::Mutex::new({
        let mut s = Store::new(e, ());
        s.set_epoch_deadline(u64::MAX / 2);
        s
    }));
    let instance = rt.block_on(async {
        linker
            .instantiate_async(&mut *store.lock().await, &component)
            .await
            .unwrap()
    });
    let f = rt.block_on(async {
        instance
            .get_typed_func::<(), ()>(&mut *store.lock().await, "f")
            .unwrap()
    });
    group.bench_function("empty/component-async", |b| {
        b.to_async(&rt).iter(|| async {
            let mut s = store.lock().await;
            f.call_async(&mut *s, ()).await.unwrap();
        })
    });
    group.finish();
}

/// Hot swap as an operator sees it: a new version whose compiled artifact is already in the
/// cache is loaded (HMAC check, deserialize, import check, pre-instantiate), health-probed with
/// one call, and swapped in.
fn swap(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = HostEngine::new(EngineSettings {
        instance_slots: 16,
        ..EngineSettings::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = CompileCache::open(dir.path(), engine.engine()).unwrap();
    let linker = plugin_linker(&engine).unwrap();
    let bytes = std::fs::read(outpost_artifacts::ECHO_PIPELINE).unwrap();
    let kv = KvStore::in_memory().unwrap();
    let load = || Arc::new(load_echo(&engine, &cache, &linker, &bytes, &kv));
    let slot = outpost_runtime::PluginSlot::new(
        load(),
        outpost_runtime::RollbackPolicy::default(),
        outpost_runtime::HealthProbe::Call {
            topic: "health".into(),
            payload: Vec::new(),
        },
    );
    let mut group = c.benchmark_group("swap");
    group.sample_size(20);
    group.bench_function("echo-pipeline/cached-load+probe+swap", |b| {
        b.to_async(&rt)
            .iter(|| async { slot.swap(load()).await.unwrap() })
    });
    group.finish();
}

criterion_group!(benches, instantiate, compile_cache, call_overhead, swap);

/// Reads criterion's median estimate for a benchmark id, in nanoseconds.
fn median_ns(id: &str) -> Option<f64> {
    let dir = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target").into());
    let path = format!("{dir}/criterion/{id}/new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn report() {
    let pairs = [
        (
            "instantiate pooling vs on-demand",
            "instantiate/echo-pipeline_pooling",
            "instantiate/echo-pipeline_on-demand",
        ),
        (
            "empty component vs echo-pipeline (pooling)",
            "instantiate/empty-component_pooling",
            "instantiate/echo-pipeline_pooling",
        ),
        (
            "store setup share of instantiate",
            "instantiate/echo-pipeline_store-only",
            "instantiate/echo-pipeline_pooling",
        ),
        (
            "compile cache hit vs miss",
            "compile-cache/echo-pipeline_hit",
            "compile-cache/echo-pipeline_miss",
        ),
        (
            "component call vs core call",
            "call/empty_component",
            "call/empty_core-module",
        ),
        (
            "component async call vs core call",
            "call/empty_component-async",
            "call/empty_core-module",
        ),
    ];
    println!("\nratios (median):");
    for (label, a, b) in pairs {
        match (median_ns(a), median_ns(b)) {
            (Some(x), Some(y)) => println!(
                "  {label:<36} {:>10.1} ns / {:>10.1} ns = ratio {:.3}",
                x,
                y,
                x / y
            ),
            _ => println!("  {label:<36} (no estimates found)"),
        }
    }
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    report();
}

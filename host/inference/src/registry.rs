//! The model registry: the manifest's `[[models]]`, each read, checked against its SHA-256 and
//! loaded on its engine at start (and on apply, reloading only what changed).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use outpost_manifest::{ModelEngine, ModelSpec, ModelTarget, NnSettings};
use sha2::{Digest, Sha256};
use wasmtime_wasi_nn::Graph;

use crate::error::ModelError;
use crate::stats::InferenceStats;
use crate::tensor::IoSpec;
use crate::{Engine, EngineGraph, LoadOptions, Placement, load_graph, onnxruntime};

/// Whether a model is usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelState {
    /// Loaded and verified.
    Ready,
    /// Not loaded; see the error.
    Failed,
}

/// What status shows for one model.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelStatus {
    /// Name.
    pub name: String,
    /// File.
    pub path: String,
    /// Pinned SHA-256.
    pub sha256: String,
    /// Engine the manifest asked for (`auto`, `onnxruntime`, `tract`).
    pub engine_requested: String,
    /// Engine it runs on.
    pub engine: Option<Engine>,
    /// Target the manifest asked for.
    pub target_requested: String,
    /// Where it runs, and why not on the requested target.
    pub placement: Option<Placement>,
    /// Intra-op threads asked for.
    pub threads: Option<u32>,
    /// Concurrent computes on this graph.
    pub sessions: u32,
    /// Ready or failed.
    pub state: ModelState,
    /// Why it failed.
    pub error: Option<String>,
    /// Time to read, verify and load it, milliseconds.
    pub load_ms: f64,
    /// Declared inputs.
    pub inputs: Vec<IoSpec>,
    /// Declared outputs.
    pub outputs: Vec<IoSpec>,
}

/// ONNX Runtime's state, for status.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RuntimeStatus {
    /// The library ONNX Runtime was loaded from.
    pub onnxruntime: Option<String>,
    /// Why ONNX Runtime is not available (unset when it is, or when none was configured).
    pub onnxruntime_error: Option<String>,
    /// Whether GPU models can run on CUDA.
    pub cuda: bool,
    /// Why not.
    pub cuda_unavailable: Option<String>,
}

/// One model in the registry.
pub struct LoadedModel {
    /// Its manifest entry.
    pub spec: ModelSpec,
    /// Status.
    pub status: ModelStatus,
    graph: Option<(Graph, Arc<dyn EngineGraph>)>,
    /// Computes on this model, by every plugin.
    pub stats: Arc<InferenceStats>,
}

impl LoadedModel {
    /// The `wasmtime-wasi-nn` graph, when ready.
    pub fn graph(&self) -> Option<&Graph> {
        self.graph.as_ref().map(|(g, _)| g)
    }

    /// The engine's view of the graph, when ready.
    pub fn engine_graph(&self) -> Option<&Arc<dyn EngineGraph>> {
        self.graph.as_ref().map(|(_, g)| g)
    }
}

/// Every declared model, loaded.
#[derive(Default)]
pub struct ModelRegistry {
    models: BTreeMap<String, Arc<LoadedModel>>,
    runtime: RuntimeStatus,
}

impl ModelRegistry {
    /// No models.
    pub fn empty() -> ModelRegistry {
        ModelRegistry::default()
    }

    /// Loads `specs`. Models whose spec is unchanged from `previous` and that loaded there are
    /// kept as they are (no reload); the rest are read, verified and loaded. A model that fails
    /// is kept in the registry as failed, with the reason. Blocking: call it off the async
    /// runtime's threads.
    pub fn load(
        specs: &BTreeMap<String, ModelSpec>,
        nn: &NnSettings,
        previous: &ModelRegistry,
    ) -> ModelRegistry {
        let mut runtime = RuntimeStatus::default();
        if let Some(library) = onnxruntime::library_path(nn.onnxruntime.as_deref()) {
            match onnxruntime::init(&library) {
                Ok(rt) => runtime.onnxruntime = Some(rt.library.display().to_string()),
                Err(why) => {
                    tracing::error!(library = %library.display(), reason = %why, "ONNX Runtime is not available; models on `auto` use tract");
                    runtime.onnxruntime_error = Some(format!("{}: {why}", library.display()));
                }
            }
        }
        match onnxruntime::cuda_support() {
            Ok(()) if runtime.onnxruntime.is_some() => runtime.cuda = true,
            Ok(()) => runtime.cuda_unavailable = Some("ONNX Runtime is not loaded".into()),
            Err(why) => runtime.cuda_unavailable = Some(why),
        }

        let mut models = BTreeMap::new();
        for (name, spec) in specs {
            if let Some(old) = previous.models.get(name)
                && old.spec == *spec
                && old.status.state == ModelState::Ready
            {
                models.insert(name.clone(), old.clone());
                continue;
            }
            models.insert(name.clone(), Arc::new(load_one(spec, &runtime)));
        }
        ModelRegistry { models, runtime }
    }

    /// A model by name.
    pub fn get(&self, name: &str) -> Option<&Arc<LoadedModel>> {
        self.models.get(name)
    }

    /// Every model's status, by name.
    pub fn statuses(&self) -> Vec<ModelStatus> {
        self.models.values().map(|m| m.status.clone()).collect()
    }

    /// Every model.
    pub fn models(&self) -> impl Iterator<Item = &Arc<LoadedModel>> {
        self.models.values()
    }

    /// ONNX Runtime's state.
    pub fn runtime(&self) -> &RuntimeStatus {
        &self.runtime
    }
}

fn load_one(spec: &ModelSpec, runtime: &RuntimeStatus) -> LoadedModel {
    let started = Instant::now();
    let mut status = ModelStatus {
        name: spec.name.clone(),
        path: spec.path.display().to_string(),
        sha256: spec.sha256.clone(),
        engine_requested: spec.engine.to_string(),
        engine: None,
        target_requested: spec.target.to_string(),
        placement: None,
        threads: spec.threads,
        sessions: spec.sessions,
        state: ModelState::Failed,
        error: None,
        load_ms: 0.0,
        inputs: Vec::new(),
        outputs: Vec::new(),
    };
    let result = read_verified(spec).and_then(|bytes| {
        let engine = match spec.engine {
            ModelEngine::Tract => Engine::Tract,
            ModelEngine::OnnxRuntime if runtime.onnxruntime.is_none() => {
                return Err(ModelError::EngineUnavailable {
                    model: spec.name.clone(),
                    reason: runtime.onnxruntime_error.clone().unwrap_or_else(|| {
                        "no library configured ([host.nn] onnxruntime or ORT_DYLIB_PATH)".into()
                    }),
                });
            }
            ModelEngine::OnnxRuntime => Engine::OnnxRuntime,
            ModelEngine::Auto if runtime.onnxruntime.is_some() => Engine::OnnxRuntime,
            ModelEngine::Auto => Engine::Tract,
        };
        let options = LoadOptions {
            name: spec.name.clone(),
            engine: Some(engine),
            gpu: spec.target == ModelTarget::Gpu,
            threads: spec.threads,
            sessions: spec.sessions as usize,
        };
        load_graph(bytes, &options).map_err(|reason| ModelError::Engine {
            model: spec.name.clone(),
            engine: engine.to_string(),
            reason,
        })
    });
    status.load_ms = started.elapsed().as_secs_f64() * 1000.0;
    let graph = match result {
        Ok((graph, placement)) => {
            status.state = ModelState::Ready;
            status.engine = Some(graph.engine());
            status.placement = Some(placement);
            status.inputs = graph.inputs().to_vec();
            status.outputs = graph.outputs().to_vec();
            tracing::info!(
                model = %spec.name,
                engine = %graph.engine(),
                target = status.placement.as_ref().map_or("cpu", |p| p.target),
                load_ms = format!("{:.1}", status.load_ms),
                "model loaded"
            );
            Some((crate::graph_handle(&spec.name, graph.clone()), graph))
        }
        Err(e) => {
            tracing::error!(model = %spec.name, error = %e, "model not loaded");
            status.error = Some(e.to_string());
            None
        }
    };
    LoadedModel {
        spec: spec.clone(),
        status,
        graph,
        stats: Arc::new(InferenceStats::default()),
    }
}

fn read_verified(spec: &ModelSpec) -> Result<Arc<[u8]>, ModelError> {
    let bytes = std::fs::read(&spec.path).map_err(|e| ModelError::Read {
        model: spec.name.clone(),
        path: spec.path.display().to_string(),
        reason: e.to_string(),
    })?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != spec.sha256 {
        return Err(ModelError::Digest {
            model: spec.name.clone(),
            path: spec.path.display().to_string(),
            expected: spec.sha256.clone(),
            actual,
        });
    }
    Ok(Arc::from(bytes))
}

//! `wasi:nn` for Outpost.
//!
//! - Two engines behind one ONNX backend: **ONNX Runtime** ([`onnxruntime`], the library loaded
//!   at run time, CUDA when built with the `cuda` feature and a GPU exists) and **tract**
//!   ([`tract`], pure Rust, always available). The backend implements `wasmtime-wasi-nn`'s
//!   [`BackendInner`], [`BackendGraph`] and [`BackendExecutionContext`] traits and picks the
//!   engine per graph.
//! - A [`ModelRegistry`] of the manifest's `[[models]]`, preloaded and verified by SHA-256.
//! - The `wasi:nn` host ([`host`]): grants (which models a plugin may load by name; loading
//!   bytes only with its own grant and under a size cap), input checks that turn bad tensors
//!   into `invalid-argument` errors, computes off the async runtime's threads behind a
//!   per-plugin concurrency limit, and per-plugin accounting ([`InferenceStats`]).

pub mod error;
pub mod host;
pub mod onnxruntime;
mod registry;
mod stats;
pub mod tensor;
pub mod tract;

use std::sync::Arc;

pub use error::{Code, ModelError, NnError};
pub use registry::{ModelRegistry, ModelState, ModelStatus, RuntimeStatus};
pub use stats::{InferenceStats, LATENCY_BUCKETS_MS, StatsSnapshot};
pub use tensor::{ElemType, HostTensor, IoSpec};

use wasmtime_wasi_nn::backend::{
    BackendError, BackendExecutionContext, BackendFromDir, BackendGraph, BackendInner, Id,
    NamedTensor,
};
use wasmtime_wasi_nn::wit::{ExecutionTarget, GraphEncoding};
use wasmtime_wasi_nn::{ExecutionContext, Graph};

/// The engine that runs a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// ONNX Runtime.
    OnnxRuntime,
    /// tract.
    Tract,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::OnnxRuntime => "onnxruntime",
            Engine::Tract => "tract",
        })
    }
}

/// Where a graph actually runs, and why not where it was asked to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Placement {
    /// `cpu` or `gpu`.
    pub target: &'static str,
    /// Set when the manifest asked for a GPU and the host fell back to CPU: the reason.
    pub fallback: Option<String>,
}

impl Placement {
    /// On the CPU.
    pub fn cpu() -> Placement {
        Placement {
            target: "cpu",
            fallback: None,
        }
    }
    /// On the GPU.
    pub fn gpu() -> Placement {
        Placement {
            target: "gpu",
            fallback: None,
        }
    }
    /// Whether time in compute is time on an accelerator.
    pub fn on_accelerator(&self) -> bool {
        self.target == "gpu"
    }
}

/// A loaded model as an engine sees it. Implementations are thread-safe: `run` may be called
/// from many threads at once.
pub trait EngineGraph: Send + Sync {
    /// Which engine.
    fn engine(&self) -> Engine;
    /// Declared inputs, in order.
    fn inputs(&self) -> &[IoSpec];
    /// Declared outputs, in order.
    fn outputs(&self) -> &[IoSpec];
    /// Runs on inputs already checked against [`EngineGraph::inputs`], in that order.
    fn run(&self, inputs: Vec<HostTensor>) -> Result<Vec<HostTensor>, NnError>;
    /// Runs in progress inside the engine, and the most there have been at once.
    fn overlap(&self) -> &stats::Overlap;
}

/// Options for loading one graph.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Name used in errors and logs.
    pub name: String,
    /// Which engine; `None` picks ONNX Runtime when it is loaded and tract otherwise.
    pub engine: Option<Engine>,
    /// Ask for the GPU.
    pub gpu: bool,
    /// Intra-op threads (ONNX Runtime).
    pub threads: Option<u32>,
    /// ONNX Runtime sessions in the pool: computes that can run at once on this graph.
    pub sessions: usize,
}

/// Loads ONNX bytes on the engine `options` name (or the best one available).
pub fn load_graph(
    bytes: Arc<[u8]>,
    options: &LoadOptions,
) -> Result<(Arc<dyn EngineGraph>, Placement), String> {
    let engine = options
        .engine
        .unwrap_or(if onnxruntime::runtime().is_some() {
            Engine::OnnxRuntime
        } else {
            Engine::Tract
        });
    match engine {
        Engine::OnnxRuntime => {
            let runtime =
                onnxruntime::runtime().ok_or_else(|| "ONNX Runtime is not loaded".to_string())?;
            let (graph, placement) = onnxruntime::OrtGraph::load(
                runtime,
                &options.name,
                bytes,
                options.threads,
                options.gpu,
                options.sessions,
            )?;
            Ok((Arc::new(graph), placement))
        }
        Engine::Tract => {
            let graph = tract::TractGraph::load(&options.name, &bytes)?;
            let mut placement = Placement::cpu();
            if options.gpu {
                let why = "tract runs on the CPU only".to_string();
                tracing::warn!(model = %options.name, reason = %why, "GPU requested; running on CPU");
                placement.fallback = Some(why);
            }
            Ok((Arc::new(graph), placement))
        }
    }
}

/// The ONNX backend registered with `wasmtime-wasi-nn`: one backend for the `onnx` encoding
/// that dispatches each graph to ONNX Runtime or tract.
#[derive(Debug, Default)]
pub struct OnnxBackend;

impl BackendInner for OnnxBackend {
    fn encoding(&self) -> GraphEncoding {
        GraphEncoding::Onnx
    }

    fn load(&mut self, builders: &[&[u8]], target: ExecutionTarget) -> Result<Graph, BackendError> {
        if builders.len() != 1 {
            return Err(BackendError::InvalidNumberOfBuilders(1, builders.len()));
        }
        let options = LoadOptions {
            name: "(bytes)".into(),
            engine: None,
            gpu: matches!(target, ExecutionTarget::Gpu),
            threads: None,
            sessions: 2,
        };
        let (graph, _) = load_graph(Arc::from(builders[0]), &options)
            .map_err(|e| BackendError::BackendAccess(wasmtime::format_err!("{e}")))?;
        Ok(graph_handle("(bytes)", graph))
    }

    fn as_dir_loadable(&mut self) -> Option<&mut dyn BackendFromDir> {
        None
    }
}

/// Wraps an engine graph as a `wasmtime-wasi-nn` graph.
pub fn graph_handle(name: &str, graph: Arc<dyn EngineGraph>) -> Graph {
    let boxed: Box<dyn BackendGraph> = Box::new(GraphHandle {
        name: name.into(),
        graph,
    });
    Graph::from(boxed)
}

struct GraphHandle {
    name: Arc<str>,
    graph: Arc<dyn EngineGraph>,
}

impl BackendGraph for GraphHandle {
    fn init_execution_context(&self) -> Result<ExecutionContext, BackendError> {
        let boxed: Box<dyn BackendExecutionContext> = Box::new(EngineContext {
            name: self.name.clone(),
            graph: self.graph.clone(),
            staged: Vec::new(),
            last: Vec::new(),
        });
        Ok(ExecutionContext::from(boxed))
    }
}

/// An execution context: inputs staged by `set_input` (the witx path), outputs of the last run.
struct EngineContext {
    name: Arc<str>,
    graph: Arc<dyn EngineGraph>,
    staged: Vec<HostTensor>,
    last: Vec<HostTensor>,
}

/// Turns our error into the backend error type, keeping it for the host to read the code back.
pub fn to_backend_error(e: NnError) -> BackendError {
    BackendError::BackendAccess(wasmtime::Error::new(e))
}

/// Reads our error back out of a backend error (anything else is a runtime error).
pub fn from_backend_error(e: BackendError) -> NnError {
    match e {
        BackendError::BackendAccess(inner) => match inner.downcast_ref::<NnError>() {
            Some(nn) => nn.clone(),
            None => NnError::runtime(format!("{inner:#}")),
        },
        BackendError::UnsupportedTensorType(t) => {
            NnError::unsupported(format!("unsupported tensor type {t}"))
        }
        other => NnError::runtime(other.to_string()),
    }
}

impl EngineContext {
    fn compute_checked(&mut self, inputs: Vec<HostTensor>) -> Result<Vec<HostTensor>, NnError> {
        let bound = tensor::bind_inputs(&self.name, self.graph.inputs(), inputs)?;
        self.graph.run(bound)
    }
}

impl BackendExecutionContext for EngineContext {
    fn set_input(&mut self, id: Id, tensor: &wasmtime_wasi_nn::Tensor) -> Result<(), BackendError> {
        let name = match id {
            Id::Index(i) => i.to_string(),
            Id::Name(n) => n,
        };
        let t = HostTensor::from_wasi(name, tensor.clone()).map_err(to_backend_error)?;
        self.staged.retain(|s| s.name != t.name);
        self.staged.push(t);
        Ok(())
    }

    fn get_output(&mut self, id: Id) -> Result<wasmtime_wasi_nn::Tensor, BackendError> {
        let found = match &id {
            Id::Index(i) => self.last.get(*i as usize),
            Id::Name(n) => self.last.iter().find(|t| &t.name == n),
        };
        let t = found
            .cloned()
            .ok_or_else(|| to_backend_error(NnError::invalid(format!("no output {id:?}"))))?;
        t.into_wasi().map_err(to_backend_error)
    }

    fn compute(
        &mut self,
        inputs: Option<Vec<NamedTensor>>,
    ) -> Result<Option<Vec<NamedTensor>>, BackendError> {
        match inputs {
            Some(named) => {
                let inputs = named
                    .into_iter()
                    .map(|n| HostTensor::from_wasi(n.name, n.tensor))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(to_backend_error)?;
                let outputs = self.compute_checked(inputs).map_err(to_backend_error)?;
                let named = outputs
                    .into_iter()
                    .map(|t| {
                        let name = t.name.clone();
                        t.into_wasi().map(|tensor| NamedTensor { name, tensor })
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(to_backend_error)?;
                Ok(Some(named))
            }
            None => {
                let staged = std::mem::take(&mut self.staged);
                self.last = self.compute_checked(staged).map_err(to_backend_error)?;
                Ok(None)
            }
        }
    }
}

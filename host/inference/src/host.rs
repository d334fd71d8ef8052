//! The `wasi:nn` host: what a plugin's `wasi:nn` imports do.
//!
//! The bindings are generated here from the same WIT `wasmtime-wasi-nn` serves, with its
//! `Graph`, `Tensor` and `ExecutionContext` types underneath, because its own WIT host maps every
//! compute failure to `runtime-error`, computes on the calling thread and has no notion of
//! per-plugin grants. Here:
//!
//! - `load-by-name` reaches only the models in the plugin's `grants.models`;
//! - `load` (bytes) needs `grants.nn`, is capped at its size, runs on CPU and on the engine the
//!   host picks, whatever target the plugin asks for;
//! - `compute` checks inputs against the model's signature (`invalid-argument` naming the
//!   problem), waits for a slot under the plugin's concurrency limit, and runs on a blocking
//!   thread so the async runtime keeps serving everything else;
//! - every compute is counted in the plugin's and the model's [`InferenceStats`].

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use outpost_manifest::NnLoadGrant;
use tokio::sync::Semaphore;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::error::{Code, NnError};
use crate::registry::{LoadedModel, ModelRegistry};
use crate::stats::InferenceStats;
use crate::tensor::HostTensor;
use crate::{EngineGraph, LoadOptions, Placement, from_backend_error, load_graph};

#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/deps/wasi-nn",
        world: "wasi:nn/ml",
        with: {
            "wasi:nn/graph.graph": crate::host::GraphEntry,
            "wasi:nn/tensor.tensor": wasmtime_wasi_nn::Tensor,
            "wasi:nn/inference.graph-execution-context": crate::host::ContextEntry,
            "wasi:nn/errors.error": crate::error::NnError,
        },
        imports: {
            "wasi:nn/inference.[method]graph-execution-context.compute": async | trappable,
            "wasi:nn/graph.load": async | trappable,
            default: trappable,
        },
    });
}

use bindings::wasi::nn::{errors, graph, inference, tensor};

/// The models every plugin's stores see; swapped as a whole when the manifest changes.
pub type SharedRegistry = Arc<ArcSwap<ModelRegistry>>;

/// A graph handle held by a plugin.
pub struct GraphEntry {
    model: String,
    graph: wasmtime_wasi_nn::Graph,
    placement: Placement,
    model_stats: Option<Arc<InferenceStats>>,
}

/// An execution context held by a plugin. The context is taken out while a compute runs on a
/// blocking thread, so a second compute on the same context in the meantime is refused.
pub struct ContextEntry {
    model: String,
    exec: Option<wasmtime_wasi_nn::ExecutionContext>,
    placement: Placement,
    model_stats: Option<Arc<InferenceStats>>,
}

/// What one plugin may do with `wasi:nn`, and its counters. One per plugin, shared by its
/// instances.
pub struct NnPolicy {
    /// Plugin name (for logs).
    pub plugin: String,
    /// Model names it may load by name.
    pub models: Vec<String>,
    /// Loading model bytes.
    pub load: Option<NnLoadGrant>,
    /// Its computes.
    pub stats: Arc<InferenceStats>,
    /// Its concurrency limit.
    pub permits: Arc<Semaphore>,
    /// The registry.
    pub registry: SharedRegistry,
}

impl NnPolicy {
    /// A policy from the plugin's grants and limit.
    pub fn new(
        plugin: &str,
        models: Vec<String>,
        load: Option<NnLoadGrant>,
        concurrency: u32,
        registry: SharedRegistry,
    ) -> NnPolicy {
        NnPolicy {
            plugin: plugin.to_string(),
            models,
            load,
            stats: Arc::new(InferenceStats::default()),
            permits: Arc::new(Semaphore::new(concurrency.max(1) as usize)),
            registry,
        }
    }

    /// Whether the plugin has any `wasi:nn` grant.
    pub fn any(&self) -> bool {
        !self.models.is_empty() || self.load.is_some()
    }
}

/// Per-store `wasi:nn` state.
pub struct NnState {
    policy: Option<Arc<NnPolicy>>,
    registry: Option<Arc<ModelRegistry>>,
}

impl NnState {
    /// State for one store, with the registry as it is now.
    pub fn new(policy: Arc<NnPolicy>) -> NnState {
        let registry = policy.registry.load_full();
        NnState {
            policy: Some(policy),
            registry: Some(registry),
        }
    }

    /// State for a plugin with no `wasi:nn` grant: every call is refused.
    pub fn none() -> NnState {
        NnState {
            policy: None,
            registry: None,
        }
    }

    fn plugin(&self) -> &str {
        self.policy.as_ref().map_or("(none)", |p| p.plugin.as_str())
    }
}

/// The view the generated bindings work on.
pub struct WasiNn<'a> {
    state: &'a mut NnState,
    table: &'a mut ResourceTable,
}

impl<'a> WasiNn<'a> {
    /// A view over a store's state and resource table.
    pub fn new(state: &'a mut NnState, table: &'a mut ResourceTable) -> WasiNn<'a> {
        WasiNn { state, table }
    }

    fn fail<T>(&mut self, error: NnError) -> wasmtime::Result<Result<T, Resource<NnError>>> {
        tracing::debug!(plugin = %self.state.plugin(), code = ?error.code, message = %error.message, "wasi:nn error");
        Ok(Err(self.table.push(error)?))
    }
}

struct HasWasiNn;

impl HasData for HasWasiNn {
    type Data<'a> = WasiNn<'a>;
}

/// Adds the `wasi:nn` interfaces to `linker`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> WasiNn<'_>,
) -> wasmtime::Result<()> {
    tensor::add_to_linker::<T, HasWasiNn>(linker, view)?;
    errors::add_to_linker::<T, HasWasiNn>(linker, view)?;
    inference::add_to_linker::<T, HasWasiNn>(linker, view)?;
    graph::add_to_linker::<T, HasWasiNn>(linker, view)?;
    Ok(())
}

fn wit_code(code: Code) -> errors::ErrorCode {
    match code {
        Code::InvalidArgument => errors::ErrorCode::InvalidArgument,
        Code::InvalidEncoding => errors::ErrorCode::InvalidEncoding,
        Code::Timeout => errors::ErrorCode::Timeout,
        Code::RuntimeError => errors::ErrorCode::RuntimeError,
        Code::UnsupportedOperation => errors::ErrorCode::UnsupportedOperation,
        Code::TooLarge => errors::ErrorCode::TooLarge,
        Code::NotFound => errors::ErrorCode::NotFound,
        Code::Security => errors::ErrorCode::Security,
    }
}

impl graph::Host for WasiNn<'_> {
    async fn load(
        &mut self,
        builders: Vec<graph::GraphBuilder>,
        encoding: graph::GraphEncoding,
        _target: graph::ExecutionTarget,
    ) -> wasmtime::Result<Result<Resource<GraphEntry>, Resource<NnError>>> {
        let Some(grant) = self.state.policy.as_ref().and_then(|p| p.load) else {
            return self.fail(NnError::new(
                Code::Security,
                "loading model bytes is not granted (grants.nn = { load = true }); use load-by-name",
            ));
        };
        if !matches!(encoding, graph::GraphEncoding::Onnx) {
            return self.fail(NnError::new(
                Code::InvalidEncoding,
                format!("encoding {encoding:?} is not supported; the host runs onnx"),
            ));
        }
        if builders.len() != 1 {
            return self.fail(NnError::invalid(format!(
                "an onnx graph is one builder, got {}",
                builders.len()
            )));
        }
        let size = builders[0].len() as u64;
        if size > grant.max_bytes {
            return self.fail(NnError::new(
                Code::TooLarge,
                format!(
                    "model of {size} bytes exceeds the plugin's cap of {} bytes (grants.nn.max_mb)",
                    grant.max_bytes
                ),
            ));
        }
        let bytes: Arc<[u8]> = Arc::from(builders.into_iter().next().unwrap_or_default());
        let options = LoadOptions {
            name: format!("{}:bytes", self.state.plugin()),
            engine: None,
            // The plugin does not choose hardware: bytes it brings run on the CPU.
            gpu: false,
            threads: Some(1),
            sessions: 1,
        };
        let loaded = tokio::task::spawn_blocking(move || load_graph(bytes, &options)).await;
        match loaded {
            Ok(Ok((graph, placement))) => {
                let entry = GraphEntry {
                    model: "(bytes)".into(),
                    graph: crate::graph_handle("(bytes)", graph),
                    placement,
                    model_stats: None,
                };
                Ok(Ok(self.table.push(entry)?))
            }
            Ok(Err(why)) => self.fail(NnError::invalid(format!("the model did not load: {why}"))),
            Err(join) => self.fail(NnError::runtime(format!("loading failed: {join}"))),
        }
    }

    fn load_by_name(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<GraphEntry>, Resource<NnError>>> {
        let granted = self
            .state
            .policy
            .as_ref()
            .is_some_and(|p| p.models.contains(&name));
        if !granted {
            return self.fail(NnError::not_found(format!(
                "model `{name}` is not granted to this plugin (grants.models)"
            )));
        }
        let found: Option<Arc<LoadedModel>> = self
            .state
            .registry
            .as_ref()
            .and_then(|r| r.get(&name).cloned());
        let Some(model) = found else {
            return self.fail(NnError::not_found(format!(
                "no model `{name}` is declared in the manifest"
            )));
        };
        let Some(graph) = model.graph() else {
            return self.fail(NnError::not_found(format!(
                "model `{name}` failed to load: {}",
                model.status.error.as_deref().unwrap_or("unknown reason")
            )));
        };
        let entry = GraphEntry {
            model: name,
            graph: graph.clone(),
            placement: model
                .status
                .placement
                .clone()
                .unwrap_or_else(Placement::cpu),
            model_stats: Some(model.stats.clone()),
        };
        Ok(Ok(self.table.push(entry)?))
    }
}

impl graph::HostGraph for WasiNn<'_> {
    fn init_execution_context(
        &mut self,
        graph: Resource<GraphEntry>,
    ) -> wasmtime::Result<Result<Resource<ContextEntry>, Resource<NnError>>> {
        let entry = self.table.get(&graph)?;
        let (model, placement, model_stats) = (
            entry.model.clone(),
            entry.placement.clone(),
            entry.model_stats.clone(),
        );
        match entry.graph.init_execution_context() {
            Ok(exec) => Ok(Ok(self.table.push(ContextEntry {
                model,
                exec: Some(exec),
                placement,
                model_stats,
            })?)),
            Err(e) => self.fail(from_backend_error(e)),
        }
    }

    fn drop(&mut self, graph: Resource<GraphEntry>) -> wasmtime::Result<()> {
        self.table.delete(graph)?;
        Ok(())
    }
}

impl inference::HostGraphExecutionContext for WasiNn<'_> {
    async fn compute(
        &mut self,
        ctx: Resource<ContextEntry>,
        inputs: Vec<inference::NamedTensor>,
    ) -> wasmtime::Result<Result<Vec<inference::NamedTensor>, Resource<NnError>>> {
        let mut named = Vec::with_capacity(inputs.len());
        for (name, tensor) in inputs {
            let t = self.table.get(&tensor)?.clone();
            named.push(wasmtime_wasi_nn::backend::NamedTensor { name, tensor: t });
        }
        let entry = self.table.get_mut(&ctx)?;
        let Some(mut exec) = entry.exec.take() else {
            return self.fail(NnError::runtime(
                "this execution context is already computing",
            ));
        };
        let model = entry.model.clone();
        let on_accelerator = entry.placement.on_accelerator();
        let model_stats = entry.model_stats.clone();
        let Some(policy) = self.state.policy.clone() else {
            entry.exec = Some(exec);
            return self.fail(NnError::new(Code::Security, "wasi:nn is not granted"));
        };

        let waited = Instant::now();
        let permit = policy.permits.clone().acquire_owned().await;
        policy.stats.record_wait(waited.elapsed());
        let started = Instant::now();
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let result = exec.compute_with_io(named);
            (exec, result)
        })
        .await;
        let elapsed = started.elapsed();
        let (exec, result) = match joined {
            Ok(pair) => pair,
            Err(join) => {
                // The engine panicked: the context is gone, the host is not.
                policy.stats.record(elapsed, on_accelerator, false);
                return self.fail(NnError::runtime(format!(
                    "model {model}: the engine failed: {join}"
                )));
            }
        };
        self.table.get_mut(&ctx)?.exec = Some(exec);
        let ok = result.is_ok();
        policy.stats.record(elapsed, on_accelerator, ok);
        if let Some(stats) = &model_stats {
            stats.record(elapsed, on_accelerator, ok);
        }
        match result {
            Ok(outputs) => {
                let mut named = Vec::with_capacity(outputs.len());
                for out in outputs {
                    named.push((out.name, self.table.push(out.tensor)?));
                }
                Ok(Ok(named))
            }
            Err(e) => {
                let mut error = from_backend_error(e);
                if !error.message.contains(&model) {
                    error.message = format!("model {model}: {}", error.message);
                }
                self.fail(error)
            }
        }
    }

    fn drop(&mut self, ctx: Resource<ContextEntry>) -> wasmtime::Result<()> {
        self.table.delete(ctx)?;
        Ok(())
    }
}

impl inference::Host for WasiNn<'_> {}

impl tensor::HostTensor for WasiNn<'_> {
    fn new(
        &mut self,
        dimensions: tensor::TensorDimensions,
        ty: tensor::TensorType,
        data: tensor::TensorData,
    ) -> wasmtime::Result<Resource<wasmtime_wasi_nn::Tensor>> {
        let ty = match ty {
            tensor::TensorType::Fp16 => wasmtime_wasi_nn::wit::TensorType::Fp16,
            tensor::TensorType::Fp32 => wasmtime_wasi_nn::wit::TensorType::Fp32,
            tensor::TensorType::Fp64 => wasmtime_wasi_nn::wit::TensorType::Fp64,
            tensor::TensorType::Bf16 => wasmtime_wasi_nn::wit::TensorType::Bf16,
            tensor::TensorType::U8 => wasmtime_wasi_nn::wit::TensorType::U8,
            tensor::TensorType::I32 => wasmtime_wasi_nn::wit::TensorType::I32,
            tensor::TensorType::I64 => wasmtime_wasi_nn::wit::TensorType::I64,
        };
        Ok(self
            .table
            .push(wasmtime_wasi_nn::Tensor::new(dimensions, ty, data))?)
    }

    fn dimensions(
        &mut self,
        tensor: Resource<wasmtime_wasi_nn::Tensor>,
    ) -> wasmtime::Result<tensor::TensorDimensions> {
        Ok(self.table.get(&tensor)?.dimensions.clone())
    }

    fn ty(
        &mut self,
        tensor: Resource<wasmtime_wasi_nn::Tensor>,
    ) -> wasmtime::Result<tensor::TensorType> {
        use wasmtime_wasi_nn::wit::TensorType as T;
        Ok(match self.table.get(&tensor)?.ty {
            T::Fp16 => tensor::TensorType::Fp16,
            T::Fp32 => tensor::TensorType::Fp32,
            T::Fp64 => tensor::TensorType::Fp64,
            T::Bf16 => tensor::TensorType::Bf16,
            T::U8 => tensor::TensorType::U8,
            T::I32 => tensor::TensorType::I32,
            T::I64 => tensor::TensorType::I64,
        })
    }

    fn data(
        &mut self,
        tensor: Resource<wasmtime_wasi_nn::Tensor>,
    ) -> wasmtime::Result<tensor::TensorData> {
        Ok(self.table.get(&tensor)?.data.clone())
    }

    fn drop(&mut self, tensor: Resource<wasmtime_wasi_nn::Tensor>) -> wasmtime::Result<()> {
        self.table.delete(tensor)?;
        Ok(())
    }
}

impl tensor::Host for WasiNn<'_> {}

impl errors::HostError for WasiNn<'_> {
    fn code(&mut self, error: Resource<NnError>) -> wasmtime::Result<errors::ErrorCode> {
        Ok(wit_code(self.table.get(&error)?.code))
    }

    fn data(&mut self, error: Resource<NnError>) -> wasmtime::Result<String> {
        Ok(self.table.get(&error)?.message.clone())
    }

    fn drop(&mut self, error: Resource<NnError>) -> wasmtime::Result<()> {
        self.table.delete(error)?;
        Ok(())
    }
}

impl errors::Host for WasiNn<'_> {}

/// Keeps the compiler honest about the engine trait being object-safe and shareable.
#[allow(dead_code)]
fn assert_shareable(g: Arc<dyn EngineGraph>) -> Arc<dyn EngineGraph> {
    g
}

/// Checks a tensor the way compute will (exposed for tests of hostile inputs).
pub fn check_tensor(name: &str, tensor: &wasmtime_wasi_nn::Tensor) -> Result<(), NnError> {
    HostTensor::from_wasi(name.to_string(), tensor.clone()).map(|_| ())
}

//! A loaded plugin: compiled, checked against its grants, pre-instantiated, and callable.
//!
//! Every call gets a fresh instance from the plugin's `InstancePre` (microseconds with the
//! pooling allocator), so a call that traps cannot poison the next one, and state lives only
//! where the host keeps it (kv, tables).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_manifest::{PluginKind, PluginSpec};
use serde::Serialize;
use wasmtime::component::{ComponentExportIndex, ComponentType, InstancePre, Lift, Linker};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::cache::{CacheOutcome, CompileCache};
use crate::capability::{ImportPolicy, check_imports};
use crate::engine::HostEngine;
use crate::error::{CallError, DeadlinePassed, RuntimeError, classify};
use crate::inspect::{Inspection, inspect_component, is_component};
use crate::state::{PluginContext, StoreState};

/// Most messages one pipeline call may return.
pub const MAX_OUTPUT_MESSAGES: usize = 10_000;

/// One message a pipeline returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMessage {
    /// Topic to publish on.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
}

/// The pipeline world's `message` record as the host lifts it.
#[derive(ComponentType, Lift)]
#[component(record)]
struct RawMessage {
    topic: String,
    payload: Vec<u8>,
}

/// Results are lifted eagerly: wasmtime runs the guest's post-return (which frees the returned
/// buffers) as soon as the call returns, so lazy views would read freed memory. What a guest can
/// return is bounded by its memory ceiling; the output limit is checked right after lifting.
type HandleResult = (Result<Vec<RawMessage>, String>,);

/// Upper bounds of the call-latency histogram buckets, in seconds (Prometheus `le` labels).
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// Counters for one plugin.
#[derive(Debug, Default)]
pub struct PluginStats {
    calls: AtomicU64,
    errors: AtomicU64,
    traps: AtomicU64,
    busy_ns: AtomicU64,
    /// Non-cumulative bucket counts; the last slot counts calls above every bound.
    latency: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    peak_memory: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A snapshot of [`PluginStats`].
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Calls made.
    pub calls: u64,
    /// Calls that failed (including traps).
    pub errors: u64,
    /// Calls that trapped or broke a limit.
    pub traps: u64,
    /// Total time spent in calls, nanoseconds.
    pub busy_ns: u64,
    /// Calls per latency bucket (see [`LATENCY_BUCKETS`]), cumulative as in Prometheus; the last
    /// entry equals `calls`.
    pub latency_cumulative: Vec<u64>,
    /// The most linear memory one instance used, in bytes.
    pub peak_memory_bytes: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

impl PluginStats {
    pub(crate) fn record(&self, elapsed: Duration, result: Result<(), &CallError>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.busy_ns
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        if let Err(e) = result {
            self.errors.fetch_add(1, Ordering::Relaxed);
            if e.is_trap() {
                self.traps.fetch_add(1, Ordering::Relaxed);
            }
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        }
    }

    pub(crate) fn observe_memory(&self, bytes: u64) {
        self.peak_memory.fetch_max(bytes, Ordering::Relaxed);
    }

    /// Current values.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            traps: self.traps.load(Ordering::Relaxed),
            busy_ns: self.busy_ns.load(Ordering::Relaxed),
            latency_cumulative: self
                .latency
                .iter()
                .scan(0, |total, c| {
                    *total += c.load(Ordering::Relaxed);
                    Some(*total)
                })
                .collect(),
            peak_memory_bytes: self.peak_memory.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// The linker every component plugin is instantiated with: WASI p2, wasi:http types and
/// outgoing handler, the `outpost:plugin` host interfaces, and `wasi:nn`. What a plugin may actually use
/// is decided by the import check and by the grants baked into each store.
pub fn plugin_linker(engine: &HostEngine) -> Result<Linker<StoreState>, RuntimeError> {
    let mut linker = Linker::new(engine.engine());
    let err = |e: wasmtime::Error| RuntimeError::Engine(format!("building the linker: {e:#}"));
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(err)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(err)?;
    crate::state::Imports::add_to_linker::<_, wasmtime::component::HasSelf<StoreState>>(
        &mut linker,
        |s| s,
    )
    .map_err(err)?;
    outpost_inference::host::add_to_linker(&mut linker, StoreState::wasi_nn).map_err(err)?;
    Ok(linker)
}

/// A plugin ready to be called.
pub struct Plugin {
    ctx: Arc<PluginContext>,
    pre: InstancePre<StoreState>,
    proxy: Option<ProxyPre<StoreState>>,
    handle: Option<ComponentExportIndex>,
    decide: Option<ComponentExportIndex>,
    inspection: Inspection,
    cache: CacheOutcome,
    version: Option<String>,
    stats: PluginStats,
}

impl Plugin {
    /// Compiles (or loads from cache) `bytes`, checks that its world matches `spec.kind` and
    /// that its imports stay within its grants, and pre-instantiates it.
    pub fn load(
        engine: &HostEngine,
        cache: &CompileCache,
        linker: &Linker<StoreState>,
        spec: &PluginSpec,
        ctx: PluginContext,
        bytes: &[u8],
    ) -> Result<Plugin, RuntimeError> {
        let name = spec.name.as_str();
        if !is_component(bytes) {
            return Err(RuntimeError::plugin(
                name,
                "is not a WebAssembly component (core modules can only run as `outpost job run` jobs)",
            ));
        }
        let (component, outcome) = cache
            .load_component(engine.engine(), bytes)
            .map_err(|e| RuntimeError::plugin(name, e))?;
        let inspection = inspect_component(engine.engine(), &component, bytes);
        match inspection.world {
            Some(world) if world == spec.kind => {}
            Some(world) => {
                return Err(RuntimeError::plugin(
                    name,
                    format!(
                        "the manifest says kind = \"{}\" but the component implements the {world} world",
                        spec.kind
                    ),
                ));
            }
            None => {
                return Err(RuntimeError::plugin(
                    name,
                    format!(
                        "the component exports none of the Outpost worlds (expected {})",
                        spec.kind
                    ),
                ));
            }
        }
        check_imports(
            name,
            spec.kind,
            inspection.imports.iter().map(String::as_str),
            &spec.grants,
            ImportPolicy::Strict,
        )?;
        for dir in &spec.grants.dirs {
            if !dir.host.is_dir() {
                return Err(RuntimeError::plugin(
                    name,
                    format!(
                        "grants.dirs: {} is not a directory on this host",
                        dir.host.display()
                    ),
                ));
            }
        }
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| RuntimeError::plugin(name, format!("cannot link: {e:#}")))?;
        let handle = match spec.kind {
            PluginKind::Pipeline => {
                Some(component.get_export_index(None, "handle").ok_or_else(|| {
                    RuntimeError::plugin(name, "pipeline does not export `handle`")
                })?)
            }
            _ => None,
        };
        let decide = match spec.kind {
            PluginKind::TieringPolicy => {
                Some(component.get_export_index(None, "decide").ok_or_else(|| {
                    RuntimeError::plugin(name, "tiering policy does not export `decide`")
                })?)
            }
            _ => None,
        };
        let proxy = match spec.kind {
            PluginKind::Http => Some(ProxyPre::new(pre.clone()).map_err(|e| {
                RuntimeError::plugin(name, format!("not a wasi:http/proxy component: {e:#}"))
            })?),
            _ => None,
        };
        tracing::info!(plugin = name, kind = %spec.kind, digest = %inspection.digest, cache = ?outcome, "plugin loaded");
        Ok(Plugin {
            ctx: Arc::new(ctx),
            pre,
            proxy,
            handle,
            decide,
            inspection,
            cache: outcome,
            version: spec.version.clone(),
            stats: PluginStats::default(),
        })
    }

    pub(crate) fn decide_index(&self) -> Option<&ComponentExportIndex> {
        self.decide.as_ref()
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.ctx.name
    }

    /// The plugin's kind.
    pub fn kind(&self) -> PluginKind {
        self.ctx.kind
    }

    /// Its manifest version label.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// What the component is.
    pub fn inspection(&self) -> &Inspection {
        &self.inspection
    }

    /// How the compile cache served the load.
    pub fn cache_outcome(&self) -> &CacheOutcome {
        &self.cache
    }

    /// Call counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// The shared context (grants, services).
    pub fn context(&self) -> &Arc<PluginContext> {
        &self.ctx
    }

    /// The pre-instantiated component.
    pub fn instance_pre(&self) -> &InstancePre<StoreState> {
        &self.pre
    }

    /// The `wasi:http/proxy` view of an http plugin.
    pub fn proxy_pre(&self) -> Option<&ProxyPre<StoreState>> {
        self.proxy.as_ref()
    }

    /// A fresh store for one instance of this plugin, with its limits and deadline armed.
    pub fn new_store(&self) -> Result<Store<StoreState>, CallError> {
        let wasi = self.ctx.wasi_ctx().map_err(|e| CallError::Instantiate {
            plugin: self.ctx.name.clone(),
            message: e.to_string(),
        })?;
        Ok(new_store(
            self.pre.engine(),
            StoreState::new(self.ctx.clone(), wasi),
        ))
    }

    pub(crate) fn classify(&self, err: &wasmtime::Error) -> CallError {
        let limits = &self.ctx.limits;
        classify(
            &self.ctx.name,
            limits.deadline_ms,
            u64::from(limits.table_elements),
            err,
        )
    }

    pub(crate) fn record(&self, started: Instant, result: Result<(), &CallError>) {
        self.stats.record(started.elapsed(), result);
        if let Err(e) = result {
            tracing::warn!(plugin = %self.ctx.name, kind = e.kind(), error = %e, "plugin call failed");
        }
    }

    /// Calls a pipeline's `handle` export with one message.
    pub async fn handle(&self, topic: &str, payload: &[u8]) -> Result<Vec<OutMessage>, CallError> {
        let started = Instant::now();
        let result = self.handle_inner(topic, payload).await;
        self.record(started, result.as_ref().map(|_| ()));
        result
    }

    async fn handle_inner(
        &self,
        topic: &str,
        payload: &[u8],
    ) -> Result<Vec<OutMessage>, CallError> {
        let name = &self.ctx.name;
        let Some(index) = self.handle.as_ref() else {
            return Err(CallError::Refused {
                plugin: name.clone(),
                message: format!("is a {} plugin, not a pipeline", self.ctx.kind),
            });
        };
        let mut store = self.new_store()?;
        arm_deadline(&mut store);
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| self.classify_instantiate(&e))?;
        let func = instance
            .get_typed_func::<(&str, &[u8]), HandleResult>(&mut store, index)
            .map_err(|e| CallError::Instantiate {
                plugin: name.clone(),
                message: format!("`handle` has the wrong signature: {e:#}"),
            })?;
        let called = func.call_async(&mut store, (topic, payload)).await;
        self.stats.observe_memory(store.data().limiter.peak_memory);
        let (result,) = called.map_err(|e| self.classify(&e))?;
        let limit = self.ctx.limits.output_bytes;
        let too_large = |size: u64| CallError::OutputTooLarge {
            plugin: name.clone(),
            size,
            limit,
        };
        let messages = match result {
            Ok(messages) => messages,
            Err(message) if message.len() as u64 > limit => {
                return Err(too_large(message.len() as u64));
            }
            Err(message) => {
                return Err(CallError::Guest {
                    plugin: name.clone(),
                    message,
                });
            }
        };
        if messages.len() > MAX_OUTPUT_MESSAGES {
            return Err(CallError::Refused {
                plugin: name.clone(),
                message: format!(
                    "returned {} messages, more than the {MAX_OUTPUT_MESSAGES} allowed per call",
                    messages.len()
                ),
            });
        }
        let total: u64 = messages
            .iter()
            .map(|m| (m.topic.len() + m.payload.len()) as u64)
            .sum();
        if total > limit {
            return Err(too_large(total));
        }
        Ok(messages
            .into_iter()
            .map(|m| OutMessage {
                topic: m.topic,
                payload: m.payload,
            })
            .collect())
    }

    pub(crate) fn classify_instantiate(&self, err: &wasmtime::Error) -> CallError {
        match self.classify(err) {
            CallError::Trap { plugin, message } => CallError::Instantiate { plugin, message },
            other => other,
        }
    }
}

/// A store with the plugin's resource limiter and a deadline callback: the guest yields to
/// the executor at every epoch tick (so a spinning plugin cannot starve its neighbours) and is
/// interrupted once its deadline has passed.
pub(crate) fn new_store(engine: &wasmtime::Engine, state: StoreState) -> Store<StoreState> {
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    install_deadline(&mut store, |s| s.deadline);
    store
}

/// Makes the guest yield at every epoch tick and fail with [`DeadlinePassed`] once the instant
/// that `deadline` reads from the store's data has passed (no deadline: yield only).
pub(crate) fn install_deadline<T: 'static>(
    store: &mut Store<T>,
    deadline: fn(&T) -> Option<Instant>,
) {
    store.epoch_deadline_callback(move |ctx| match deadline(ctx.data()) {
        Some(at) if Instant::now() >= at => Err(DeadlinePassed.into()),
        _ => Ok(UpdateDeadline::Yield(1)),
    });
    store.set_epoch_deadline(1);
}

/// Starts the call's deadline clock.
pub(crate) fn arm_deadline(store: &mut Store<StoreState>) {
    let ms = store.data().plugin.limits.deadline_ms;
    store.data_mut().deadline = Some(Instant::now() + Duration::from_millis(ms));
}

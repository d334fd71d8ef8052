//! The one `wasmtime::Engine` of a host: component model, async, pooling instance allocator,
//! and epoch interruption driven by a ticker thread for per-call deadlines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::RuntimeError;

/// Sizing of the engine. The defaults suit an appliance running tens of plugins.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Most component instances alive at once (pooling slots).
    pub instance_slots: u32,
    /// Largest linear memory any plugin may be granted, in bytes (the pooling slot size).
    pub max_memory_bytes: u64,
    /// Largest table any plugin may grow, in elements.
    pub max_table_elements: u32,
    /// Epoch tick: the granularity of deadlines.
    pub epoch_tick: Duration,
    /// Wasm stack available to a call, in bytes.
    pub max_wasm_stack: usize,
    /// Use the pooling allocator (fast instantiation); on-demand allocation otherwise.
    pub pooling: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            instance_slots: 256,
            max_memory_bytes: outpost_manifest::MAX_MEMORY_BYTES,
            max_table_elements: 1_000_000,
            epoch_tick: Duration::from_millis(1),
            max_wasm_stack: 512 << 10,
            pooling: true,
        }
    }
}

/// The engine and the thread that advances its epoch.
pub struct HostEngine {
    engine: Engine,
    settings: EngineSettings,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl HostEngine {
    /// Builds the engine and starts its epoch ticker.
    pub fn new(settings: EngineSettings) -> Result<HostEngine, RuntimeError> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(settings.max_wasm_stack)
            // Fibers need room for the host frames that run on them as well as the wasm stack.
            .async_stack_size(settings.max_wasm_stack + (1 << 20));
        // `OUTPOST_PERFMAP=1` writes /tmp/perf-<pid>.map so `perf report` names guest functions.
        if std::env::var_os("OUTPOST_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if settings.pooling {
            let slots = settings.instance_slots;
            let mut pool = PoolingAllocationConfig::new();
            pool.total_component_instances(slots)
                // A Rust component holds a handful of core instances (its module plus shims).
                .total_core_instances(slots * 8)
                .total_memories(slots * 2)
                .total_tables(slots * 4)
                .total_stacks(slots)
                .max_memories_per_component(4)
                .max_tables_per_component(8)
                .max_memory_size(settings.max_memory_bytes as usize)
                .table_elements(settings.max_table_elements as usize);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;

        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop.clone();
            let tick = settings.epoch_tick;
            std::thread::Builder::new()
                .name("outpost-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| RuntimeError::Engine(format!("starting the epoch ticker: {e}")))?
        };
        Ok(HostEngine {
            engine,
            settings,
            stop,
            ticker: Some(ticker),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The settings the engine was built with.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }
}

impl Drop for HostEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

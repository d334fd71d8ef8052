//! Jobs: `wasi:cli/command` components and WASI preview1 command modules, run to completion
//! with exactly the grants given, like `wasmtime run`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_manifest::{Grants, Limits, PluginKind};
use wasmtime::Store;
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use crate::cache::CompileCache;
use crate::capability::{ImportPolicy, check_imports};
use crate::engine::HostEngine;
use crate::error::{CallError, RuntimeError, classify};
use crate::inspect::{component_exports, component_imports, is_component, world_of};
use crate::limits::PluginLimiter;
use crate::plugin::{install_deadline, new_store, plugin_linker};
use crate::state::{PluginContext, StoreState, apply_grants};

/// Exit status reported for a job that trapped (as `wasmtime run` does on Unix: 128 + SIGABRT).
pub const TRAP_EXIT_CODE: i32 = 134;

/// Where a job's standard streams go.
#[derive(Clone)]
pub enum JobStdio {
    /// The host process's own stdin, stdout and stderr (the CLI).
    Inherit,
    /// In-memory buffers (tests, captured runs); no stdin.
    Capture {
        /// Receives stdout.
        stdout: MemoryOutputPipe,
        /// Receives stderr.
        stderr: MemoryOutputPipe,
    },
    /// Lines go to the host log, tagged with the job's name (jobs in a manifest).
    Log,
}

/// What to run and with which grants.
pub struct JobOptions {
    /// Name for logs and errors.
    pub name: String,
    /// `argv`, starting with the program name.
    pub argv: Vec<String>,
    /// Directories, environment and network the job may use.
    pub grants: Grants,
    /// Memory ceiling and deadline.
    pub limits: Limits,
    /// Standard streams.
    pub stdio: JobStdio,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    /// The exit status: the guest's own, 0 for a plain return, or [`TRAP_EXIT_CODE`] after a
    /// trap.
    pub exit_code: i32,
    /// The trap or limit that stopped it, if any.
    pub error: Option<CallError>,
    /// How long it ran.
    pub elapsed: Duration,
}

struct P1State {
    wasi: WasiP1Ctx,
    limiter: PluginLimiter,
    deadline: Instant,
}

fn builder_for(
    opts: &JobOptions,
    ctx: &Arc<PluginContext>,
) -> Result<WasiCtxBuilder, RuntimeError> {
    let mut b = WasiCtxBuilder::new();
    b.args(&opts.argv);
    match &opts.stdio {
        JobStdio::Inherit => {
            b.inherit_stdio();
        }
        JobStdio::Capture { stdout, stderr } => {
            b.stdout(stdout.clone()).stderr(stderr.clone());
        }
        JobStdio::Log => ctx.route_stdio_to_log(&mut b),
    }
    apply_grants(&mut b, &opts.grants)?;
    Ok(b)
}

fn job_context(opts: &JobOptions) -> Arc<PluginContext> {
    Arc::new(PluginContext::new(
        &opts.name,
        PluginKind::Job,
        Default::default(),
        opts.grants.clone(),
        opts.limits,
        None,
        None,
    ))
}

/// Runs a command component or a preview1 command module to completion.
pub async fn run_job(
    engine: &HostEngine,
    cache: &CompileCache,
    bytes: &[u8],
    opts: JobOptions,
) -> Result<JobOutcome, RuntimeError> {
    if is_component(bytes) {
        run_component(engine, cache, bytes, opts).await
    } else {
        run_module(engine, cache, bytes, opts).await
    }
}

fn outcome(
    name: &str,
    limits: &Limits,
    started: Instant,
    result: wasmtime::Result<i32>,
) -> JobOutcome {
    let elapsed = started.elapsed();
    match result {
        Ok(code) => JobOutcome {
            exit_code: code,
            error: None,
            elapsed,
        },
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<I32Exit>() {
                return JobOutcome {
                    exit_code: exit.0,
                    error: None,
                    elapsed,
                };
            }
            let error = classify(
                name,
                limits.deadline_ms,
                u64::from(limits.table_elements),
                &e,
            );
            JobOutcome {
                exit_code: TRAP_EXIT_CODE,
                error: Some(error),
                elapsed,
            }
        }
    }
}

async fn run_component(
    engine: &HostEngine,
    cache: &CompileCache,
    bytes: &[u8],
    opts: JobOptions,
) -> Result<JobOutcome, RuntimeError> {
    let name = opts.name.clone();
    let (component, _) = cache.load_component(engine.engine(), bytes)?;
    let exports = component_exports(engine.engine(), &component);
    if world_of(&exports) != Some(PluginKind::Job) {
        return Err(RuntimeError::plugin(
            &name,
            "is not a command: it does not export `wasi:cli/run`",
        ));
    }
    let imports = component_imports(engine.engine(), &component);
    check_imports(
        &name,
        PluginKind::Job,
        imports.iter().map(String::as_str),
        &opts.grants,
        ImportPolicy::Command,
    )?;

    let ctx = job_context(&opts);
    let wasi = builder_for(&opts, &ctx)?.build();
    let linker = plugin_linker(engine)?;
    let mut store = new_store(engine.engine(), StoreState::new(ctx, wasi));
    store.data_mut().deadline =
        Some(Instant::now() + Duration::from_millis(opts.limits.deadline_ms));
    let started = Instant::now();
    let result = async {
        let command = wasmtime_wasi::p2::bindings::Command::instantiate_async(
            &mut store, &component, &linker,
        )
        .await?;
        match command.wasi_cli_run().call_run(&mut store).await? {
            Ok(()) => Ok(0),
            Err(()) => Ok(1),
        }
    }
    .await;
    Ok(outcome(&name, &opts.limits, started, result))
}

async fn run_module(
    engine: &HostEngine,
    cache: &CompileCache,
    bytes: &[u8],
    opts: JobOptions,
) -> Result<JobOutcome, RuntimeError> {
    let name = opts.name.clone();
    let (module, _) = cache.load_module(engine.engine(), bytes)?;
    if module.get_export("_start").is_none() {
        return Err(RuntimeError::plugin(
            &name,
            "is a core module without `_start`: not a WASI command",
        ));
    }
    let mut linker: wasmtime::Linker<P1State> = wasmtime::Linker::new(engine.engine());
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut P1State| &mut s.wasi)
        .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
    let ctx = job_context(&opts);
    let state = P1State {
        wasi: builder_for(&opts, &ctx)?.build_p1(),
        limiter: PluginLimiter::new(
            opts.limits.memory_bytes,
            u64::from(opts.limits.table_elements),
        ),
        deadline: Instant::now() + Duration::from_millis(opts.limits.deadline_ms),
    };
    let mut store = Store::new(engine.engine(), state);
    store.limiter(|s| &mut s.limiter);
    install_deadline(&mut store, |s| Some(s.deadline));
    let started = Instant::now();
    let result = async {
        let instance = linker.instantiate_async(&mut store, &module).await?;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        start.call_async(&mut store, ()).await?;
        Ok(0)
    }
    .await;
    Ok(outcome(&name, &opts.limits, started, result))
}

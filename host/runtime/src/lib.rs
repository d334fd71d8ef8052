//! Outpost's sandboxed component host.
//!
//! One [`HostEngine`] (wasmtime with the pooling allocator and epoch deadlines) compiles
//! plugins through an integrity-checked [`CompileCache`]; each [`Plugin`] is checked against its
//! grants before anything runs ([`capability`]), pre-instantiated once, and instantiated fresh
//! per call under its memory, table, handle, output and deadline limits. The [`Appliance`] runs
//! a whole manifest: pipelines on the bus, HTTP handlers behind routes, jobs.

pub mod api;
pub mod appliance;
pub mod cache;
pub mod capability;
mod deployment;
pub mod diagnostics;
pub mod engine;
pub mod error;
pub mod http;
pub mod inspect;
pub mod job;
pub mod keys;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod nf;
pub mod plugin;
pub mod routing;
pub mod sdwan;
pub mod shares;
pub mod slot;
pub mod state;
pub mod system;
pub mod tiering;
pub mod updates;
pub mod webui;

pub use appliance::{
    Appliance, ApplianceOptions, ApplyOptions, ApplyReport, MetricsSnapshot, ModelOverlap,
    PluginChange, PluginStatus, VersionInfo,
};
pub use cache::{CacheOutcome, CompileCache};
pub use deployment::JobPhase;
pub use engine::{EngineSettings, HostEngine};
pub use error::{CallError, RuntimeError};
pub use job::{JobOptions, JobOutcome, JobStdio, run_job};
pub use keys::{KeyService, KeyStatus};
pub use plugin::{OutMessage, Plugin};
pub use slot::{
    CanaryStatus, EventHook, HealthProbe, PluginSlot, RollbackPolicy, SlotError, SlotEvent,
};

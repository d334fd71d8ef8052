//! The appliance: a manifest, running. The manifest is the desired state; [`Appliance::apply`]
//! reconciles a new one against what runs with the fewest changes (add, remove, hot-swap a new
//! version, grant set or configuration; restart a job), and [`Appliance::status`] reports per
//! plugin what was desired and what actually runs.
//!
//! Plugins are stateless code; the host keeps the state (kv namespaces, host tables, a network
//! function's ports and control socket), so every version of a plugin starts with what the one
//! before it left.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use arc_swap::ArcSwap;
use outpost_manifest::{Manifest, PluginKind, PluginSpec, TopicPattern};
use outpost_services::{Bus, KvStore, SinkStats, SubscriberStats};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cache::CompileCache;
use crate::deployment::{Consumer, Deployment, JobPhase, JobRun, PIPELINE_QUEUE, Runner, consume};
use crate::engine::{EngineSettings, HostEngine};
use crate::error::RuntimeError;
use crate::http::HttpRoute;
use crate::keys::{KeyService, KeyStatus};
use crate::nf::{NfIo, NfPortStatus, NfRunner, NfStatsSnapshot};
use crate::plugin::{Plugin, StatsSnapshot, plugin_linker};
use crate::routing::{PipelineLookup, RouteStatus, Routing};
use crate::shares::{RunningShare, ShareStatus};
use crate::slot::{HealthProbe, PluginSlot, RollbackPolicy, SlotEvent};
use crate::state::{PluginContext, StoreState};
use crate::updates::{PendingUpdate, UpdateService, UpdateStatus};
use outpost_dataplane::{MemoryPortHandle, TableSet, TableStats};
use outpost_inference::host::{NnPolicy, SharedRegistry};
use outpost_inference::{ModelRegistry, ModelStatus, RuntimeStatus};

/// Largest bus message.
pub const MAX_BUS_PAYLOAD: usize = 4 << 20;

/// How to run a manifest.
#[derive(Debug, Clone)]
pub struct ApplianceOptions {
    /// Where the host keeps its state (compile cache, kv store, spools, artifacts).
    pub data_dir: PathBuf,
    /// Extra directories searched for plugin components.
    pub plugin_dirs: Vec<PathBuf>,
    /// Engine sizing.
    pub engine: EngineSettings,
    /// Overrides `host.http_listen` (tests use port 0).
    pub http_listen: Option<SocketAddr>,
    /// Keep kv and spools in memory and do not cache compiled code on disk.
    pub ephemeral: bool,
    /// The text of the starting manifest, served by `GET /v1/manifest`.
    pub manifest_text: Option<String>,
}

impl ApplianceOptions {
    /// Defaults with state under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> ApplianceOptions {
        ApplianceOptions {
            data_dir: data_dir.into(),
            plugin_dirs: Vec::new(),
            engine: EngineSettings::default(),
            http_listen: None,
            ephemeral: false,
            manifest_text: None,
        }
    }
}

/// A version of a plugin: its label and content digest.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct VersionInfo {
    /// Manifest version label.
    pub version: Option<String>,
    /// SHA-256 of the component.
    pub digest: Option<String>,
}

/// What the host reports about one plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// What the manifest asks for.
    pub desired: VersionInfo,
    /// What serves now.
    pub actual: VersionInfo,
    /// `running`, `degraded` (serving, but not the desired version), `rolled-back`, `failed`;
    /// for jobs `starting`, `running`, `restarting`, `completed`, `exited` or `stopped`.
    pub state: String,
    /// The last error: of loading, of applying a change, of a call, or of a job run.
    pub last_error: Option<String>,
    /// How often a job was restarted.
    pub restarts: u64,
    /// Exit code, for jobs that ended.
    pub exit_code: Option<i32>,
    /// Route, for http plugins.
    pub route: Option<String>,
    /// Subscriptions, for pipelines.
    pub subscribe: Vec<String>,
    /// Counters of the version serving now.
    pub stats: StatsSnapshot,
    /// Hot swaps since start.
    pub swaps: u64,
    /// Rollbacks since start, manual and automatic.
    pub rollbacks: u64,
    /// Swap, rejection and rollback history, oldest first.
    pub events: Vec<SlotEvent>,
    /// `wasi:nn` computes of the version serving now, for plugins that run models.
    pub inference: Option<outpost_inference::StatsSnapshot>,
    /// A staged rollout of a new version in progress.
    pub canary: Option<crate::slot::CanaryStatus>,
    /// A verified update waiting for the maintenance window.
    pub pending_update: Option<PendingUpdate>,
}

/// What an apply did (or, for a dry run, would do) to one plugin.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PluginChange {
    /// Plugin name.
    pub plugin: String,
    /// `add`, `remove`, `update` (hot swap in place) or `replace` (stop, then start).
    pub action: String,
    /// What differs: `code`, `version`, `config`, `grants`, `limits`, `route`, `health`,
    /// `rollback`, `restart`, `args`, `kind`.
    pub fields: Vec<String>,
    /// Whether the change took effect; `None` in a dry run.
    pub ok: Option<bool>,
    /// Why it did not.
    pub error: Option<String>,
}

/// The outcome of [`Appliance::apply`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ApplyReport {
    /// Whether this was only a plan.
    pub dry_run: bool,
    /// Whether anything changed (or would change).
    pub changed: bool,
    /// Plugins that changed.
    pub plugins: Vec<PluginChange>,
    /// Plugins left as they were.
    pub unchanged: Vec<String>,
    /// Route, timer and sink changes.
    pub routing: Vec<String>,
    /// Model changes (`added ocr-det`, `reloaded ocr-det`, `removed ocr-det`, `failed ...`).
    pub models: Vec<String>,
    /// Things that only take effect after a restart of the host.
    pub warnings: Vec<String>,
}

impl ApplyReport {
    /// Whether every change took effect.
    pub fn succeeded(&self) -> bool {
        self.plugins.iter().all(|c| c.ok != Some(false))
    }
}

/// Computes inside the engine on one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelOverlap {
    /// The model.
    pub model: String,
    /// Runs in progress now.
    pub running: usize,
    /// The most runs in progress at once since the model loaded.
    pub peak: usize,
}

/// Everything the host exposes as metrics, gathered at one instant.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsSnapshot {
    /// Plugin status.
    pub plugins: Vec<PluginStatus>,
    /// Bus subscriptions.
    pub subscribers: Vec<SubscriberStats>,
    /// Messages published on the bus.
    pub bus_published: u64,
    /// Routes.
    pub routes: Vec<RouteStatus>,
    /// Sinks.
    pub sinks: Vec<SinkStats>,
    /// Manifests applied since start (including the first).
    pub applies: u64,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Declared models.
    pub models: Vec<ModelStatus>,
    /// Per-model compute counters.
    pub model_stats: Vec<(String, outpost_inference::StatsSnapshot)>,
    /// Per model: runs inside the engine now, and the most at once since it loaded.
    pub model_overlap: Vec<ModelOverlap>,
    /// Network functions: ports and counters.
    pub network_functions: Vec<NfStatus>,
    /// Host tables: entries, lookups, hits, misses, insert failures.
    pub tables: Vec<(String, TableStats)>,
    /// The encryption key service, when encryption at rest is on.
    pub keys: Option<KeyStatus>,
    /// The TLS endpoints' certificates and their expiry.
    pub certificates: Vec<outpost_security::CertStatus>,
    /// Shares.
    pub shares: Vec<ShareStatus>,
    /// SD-WAN uplinks, when `[sdwan]` is configured.
    pub sdwan: Option<crate::sdwan::SdwanStatus>,
}

/// A running appliance.
pub struct Appliance {
    engine: Arc<HostEngine>,
    cache: Arc<CompileCache>,
    bus: Bus,
    kv: KvStore,
    /// The KEK provider of the stores, when encryption at rest is on (never in ephemeral mode).
    keys: Option<Arc<KeyService>>,
    /// Update control for `image` plugins (`None` when no publisher is trusted).
    updates: Option<Arc<UpdateService>>,
    /// Why an `image` plugin's artifact could not be used, by plugin (filled by each apply).
    image_errors: Mutex<BTreeMap<String, String>>,
    /// Shares (`[shares]`), opened when the host starts.
    shares: crate::shares::ShareRegistry,
    /// The SD-WAN uplinks and probes (`[sdwan]`), started with the host.
    sdwan: std::sync::OnceLock<crate::sdwan::SdwanService>,
    /// The TLS endpoints' certificates, once the management API has started with TLS.
    certs: Mutex<Option<outpost_security::CertificateManager>>,
    /// Built once at start; every load reuses it.
    linker: wasmtime::component::Linker<StoreState>,
    opts: ApplianceOptions,
    desired: ArcSwap<Manifest>,
    desired_text: Mutex<Option<String>>,
    deployments: RwLock<BTreeMap<String, Arc<Deployment>>>,
    /// Models for `wasi:nn`, swapped whole when the manifest's `[[models]]` change.
    models: SharedRegistry,
    /// Host-owned tables of network functions: they outlive every plugin version.
    tables: Arc<TableSet>,
    /// Each network function's I/O (control socket, transmit queue), kept across hot swaps.
    nf_io: Mutex<BTreeMap<String, Arc<NfIo>>>,
    http_routes: ArcSwap<Vec<HttpRoute>>,
    routing: tokio::sync::Mutex<Routing>,
    topic_log: Mutex<Option<TopicLog>>,
    /// Serialises applies.
    apply_lock: tokio::sync::Mutex<()>,
    applies: std::sync::atomic::AtomicU64,
    http_addr: Mutex<Option<SocketAddr>>,
    shutdown: watch::Sender<bool>,
    /// Who asked the host to restart, once someone has.
    restart: watch::Sender<Option<String>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    started: Instant,
}

/// The host-log consumer: the topics it writes to the log, its task and its stop switch.
struct TopicLog {
    topics: Vec<TopicPattern>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What changes between two manifests' `[[models]]`.
fn model_changes(current: &Manifest, new: &Manifest) -> Vec<String> {
    let mut changes = Vec::new();
    for (name, spec) in &new.models {
        match current.models.get(name) {
            None => changes.push(format!("added {name}")),
            Some(old) if old != spec => changes.push(format!("reloaded {name}")),
            Some(_) => {}
        }
    }
    for name in current.models.keys() {
        if !new.models.contains_key(name) {
            changes.push(format!("removed {name}"));
        }
    }
    changes
}

/// The data plane's form of a manifest table.
fn table_spec(t: &outpost_manifest::TableSpec) -> outpost_dataplane::TableSpec {
    use outpost_dataplane::TableKind as K;
    outpost_dataplane::TableSpec {
        name: t.name.clone(),
        kind: match t.kind {
            outpost_manifest::TableKind::Exact => K::Exact,
            outpost_manifest::TableKind::Lpm => K::Lpm,
            outpost_manifest::TableKind::Counters => K::Counters,
        },
        max_entries: t.max_entries,
        max_key_len: t.max_key,
        max_value_len: t.max_value,
    }
}

/// A network function as status shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NfStatus {
    /// The plugin.
    pub plugin: String,
    /// Its control socket.
    pub control: Option<String>,
    /// Its ports, in index order.
    pub ports: Vec<NfPortStatus>,
    /// Its counters.
    pub stats: NfStatsSnapshot,
    /// PFCP state, for a network function granted the UPF's tables.
    pub pfcp: Option<PfcpStatus>,
}

/// What a UPF's tables say about its N4 side.
#[derive(Debug, Clone, Serialize)]
pub struct PfcpStatus {
    /// The associations with CP functions (SMFs).
    pub associations: Vec<PfcpAssociation>,
    /// PFCP sessions held.
    pub sessions: u64,
}

/// One PFCP association.
#[derive(Debug, Clone, Serialize)]
pub struct PfcpAssociation {
    /// Where the CP function's messages come from (`ip:port`).
    pub peer: String,
    /// Its Node ID (IE value octets, hex).
    pub node_id: String,
    /// Consecutive unanswered Heartbeat Requests.
    pub heartbeat_misses: u32,
}

/// How an apply treats updates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Only report what would change.
    pub dry_run: bool,
    /// Apply code updates of `image` plugins now, outside the maintenance windows.
    pub now: bool,
    /// Accept a signed version older than the newest this host accepted.
    pub force_rollback: bool,
}

/// How often the host checks that its stores' data keys still unwrap.
const KEY_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

fn sha256_hex(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Appliance {
    /// Starts an empty host and applies `manifest` to it. A plugin that fails to load is
    /// reported as failed (with the reason) while the others run; a problem with the host itself
    /// (data directory, engine, listener) is an error.
    pub async fn start(
        manifest: Manifest,
        opts: ApplianceOptions,
    ) -> Result<Arc<Appliance>, RuntimeError> {
        std::fs::create_dir_all(&opts.data_dir).map_err(|e| RuntimeError::io(&opts.data_dir, e))?;
        let engine = Arc::new(HostEngine::new(opts.engine.clone())?);
        let cache = Arc::new(if opts.ephemeral {
            CompileCache::disabled(engine.engine())
        } else {
            CompileCache::open(&opts.data_dir.join("cache"), engine.engine())?
        });
        // Ephemeral stores live in memory only: nothing to encrypt at rest.
        let keys = if opts.ephemeral {
            None
        } else {
            KeyService::open(
                &manifest.host.encryption,
                &opts.data_dir,
                &manifest.base_dir,
            )?
        };
        let kv = match (&keys, opts.ephemeral) {
            (_, true) => KvStore::in_memory(),
            (Some(k), false) => {
                KvStore::open_encrypted(&opts.data_dir.join("kv.redb"), k.provider().clone())
            }
            (None, false) => KvStore::open(&opts.data_dir.join("kv.redb")),
        }
        .map_err(|e| RuntimeError::Service(e.to_string()))?;
        let updates = UpdateService::open(&manifest.host.updates, &opts.data_dir)?.map(Arc::new);
        let linker = plugin_linker(&engine)?;
        let listen = opts.http_listen.unwrap_or(manifest.host.http_listen);
        let mut empty = Manifest::parse("", "start").expect("the empty manifest is valid");
        empty.host = manifest.host.clone();
        empty.base_dir = manifest.base_dir.clone();

        let (shutdown, _) = watch::channel(false);
        let appliance = Arc::new(Appliance {
            engine,
            cache,
            bus: Bus::new(MAX_BUS_PAYLOAD),
            kv,
            keys,
            updates,
            image_errors: Mutex::default(),
            shares: Default::default(),
            sdwan: std::sync::OnceLock::new(),
            certs: Mutex::new(None),
            linker,
            opts,
            desired: ArcSwap::from_pointee(empty),
            desired_text: Mutex::new(None),
            deployments: RwLock::default(),
            models: Arc::new(ArcSwap::from_pointee(ModelRegistry::empty())),
            tables: Arc::new(TableSet::new()),
            nf_io: Mutex::default(),
            http_routes: ArcSwap::from_pointee(Vec::new()),
            routing: tokio::sync::Mutex::new(Routing::empty()),
            topic_log: Mutex::new(None),
            apply_lock: tokio::sync::Mutex::new(()),
            applies: Default::default(),
            http_addr: Mutex::new(None),
            shutdown,
            restart: watch::channel(None).0,
            tasks: Mutex::default(),
            started: Instant::now(),
        });
        let text = appliance.opts.manifest_text.clone();
        let shares = manifest.shares.clone();
        let sdwan = manifest.sdwan.clone();
        appliance.apply(manifest, text, false).await?;
        if let Some(settings) = &sdwan {
            let links = settings
                .links_table
                .as_ref()
                .and_then(|t| appliance.tables.open(t));
            let choices = settings
                .choices_table
                .as_ref()
                .and_then(|t| appliance.tables.open(t));
            let service = crate::sdwan::SdwanService::start(
                settings,
                links,
                choices,
                appliance.shutdown.subscribe(),
            )
            .await?;
            let _ = appliance.sdwan.set(service);
        }
        // Shares start after the first apply, so their policy plugins are running.
        for (name, settings) in &shares {
            let encryption = appliance.keys.as_ref().map(|k| k.provider().clone());
            let share = Arc::new(RunningShare::open(settings, encryption).await?);
            let sync = tokio::spawn(share.clone().run_sync(appliance.shutdown.subscribe()));
            let weak = Arc::downgrade(&appliance);
            let policy = tokio::spawn(
                share
                    .clone()
                    .run_policy(appliance.shutdown.subscribe(), move |plugin| {
                        weak.upgrade().and_then(|a| a.slot(plugin))
                    }),
            );
            lock(&appliance.tasks).extend([sync, policy]);
            appliance.shares.insert(name.clone(), share);
            tracing::info!(share = %name, kind = ?settings.kind, "share open");
        }

        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
            RuntimeError::Service(format!("cannot listen for http on {listen}: {e}"))
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| RuntimeError::Service(format!("http listener: {e}")))?;
        *lock(&appliance.http_addr) = Some(addr);
        let server = tokio::spawn(crate::http::serve(
            listener,
            appliance.clone(),
            appliance.shutdown.subscribe(),
        ));
        lock(&appliance.tasks).push(server);
        if appliance
            .updates
            .as_ref()
            .is_some_and(|u| !u.status().windows.is_empty())
        {
            // Applies verified updates that wait for a maintenance window once it opens.
            let weak = Arc::downgrade(&appliance);
            let mut stop = appliance.shutdown.subscribe();
            let windows = tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                        _ = stop.changed() => return,
                    }
                    let Some(app) = weak.upgrade() else { return };
                    let due = app
                        .updates
                        .as_ref()
                        .is_some_and(|u| u.has_pending() && u.window_open());
                    if due {
                        tracing::info!("maintenance window open: applying staged updates");
                        let manifest = (*app.manifest()).clone();
                        let text = app.manifest_text();
                        let opts = ApplyOptions {
                            now: true,
                            ..ApplyOptions::default()
                        };
                        if let Err(e) = app.apply_with(manifest, text, opts).await {
                            tracing::error!(error = %e, "applying staged updates failed");
                        }
                    }
                }
            });
            lock(&appliance.tasks).push(windows);
        }
        if appliance.keys.is_some() {
            let weak = Arc::downgrade(&appliance);
            let mut stop = appliance.shutdown.subscribe();
            let checker = tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(KEY_CHECK_EVERY) => {}
                        _ = stop.changed() => return,
                    }
                    let Some(app) = weak.upgrade() else { return };
                    app.check_keys().await;
                }
            });
            lock(&appliance.tasks).push(checker);
        }
        tracing::info!(host = %appliance.manifest().host.name, %addr, plugins = appliance.read().len(), "appliance started");
        Ok(appliance)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Deployment>>> {
        self.deployments.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Deployment>>> {
        self.deployments.write().unwrap_or_else(|p| p.into_inner())
    }

    fn search_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = self.opts.plugin_dirs.clone();
        dirs.push(self.opts.data_dir.join("plugins"));
        dirs
    }

    fn slot_policy(spec: &PluginSpec) -> (RollbackPolicy, HealthProbe) {
        let policy = RollbackPolicy {
            max_failures: spec.rollback.max_failures,
            window: std::time::Duration::from_millis(spec.rollback.window_ms),
        };
        let probe = match &spec.health {
            Some(h) => HealthProbe::Call {
                topic: h.topic.clone(),
                payload: h.payload.clone(),
            },
            None => HealthProbe::None,
        };
        (policy, probe)
    }

    /// Finds and reads `spec`'s component.
    fn read_component(
        &self,
        manifest: &Manifest,
        spec: &PluginSpec,
    ) -> Result<(PathBuf, Vec<u8>), RuntimeError> {
        if spec.image.is_some()
            && let Some(e) = lock(&self.image_errors).get(&spec.name)
        {
            return Err(RuntimeError::plugin(&spec.name, e));
        }
        let path = manifest
            .resolve_component(spec, &self.search_dirs())
            .ok_or_else(|| {
                RuntimeError::plugin(
                    &spec.name,
                    format!("component `{}` not found next to the manifest, in host.plugin_dirs or in the data directory's plugins/", spec.component.display()),
                )
            })?;
        let bytes = std::fs::read(&path).map_err(|e| RuntimeError::io(&path, e))?;
        Ok((path, bytes))
    }

    fn load_plugin(&self, spec: &PluginSpec, bytes: &[u8]) -> Result<Arc<Plugin>, RuntimeError> {
        let mut ctx = PluginContext::new(
            &spec.name,
            spec.kind,
            spec.config.clone(),
            spec.grants.clone(),
            spec.limits,
            (!spec.grants.bus.is_empty()).then(|| self.bus.clone()),
            spec.grants
                .kv
                .as_ref()
                .map(|g| self.kv.namespace(&g.namespace, g.quota_bytes)),
        );
        if !spec.grants.models.is_empty() || spec.grants.nn_load.is_some() {
            ctx = ctx.with_nn(NnPolicy::new(
                &spec.name,
                spec.grants.models.clone(),
                spec.grants.nn_load,
                spec.limits.inference_concurrency,
                self.models.clone(),
            ));
        }
        if spec.kind == PluginKind::NetworkFunction {
            ctx = ctx.with_nf(self.nf_io_for(spec)?);
        }
        if !spec.grants.shares.is_empty() {
            ctx = ctx.with_shares(self.shares.clone());
        }
        Plugin::load(&self.engine, &self.cache, &self.linker, spec, ctx, bytes).map(Arc::new)
    }

    /// The network function's I/O: the one its running versions share, or a new one (which
    /// binds its control socket).
    fn nf_io_for(&self, spec: &PluginSpec) -> Result<Arc<NfIo>, RuntimeError> {
        let mut all = lock(&self.nf_io);
        if let Some(io) = all.get(&spec.name) {
            return Ok(io.clone());
        }
        let io = NfIo::new(spec, self.tables.clone())
            .map_err(|e| RuntimeError::plugin(&spec.name, e))?;
        all.insert(spec.name.clone(), io.clone());
        Ok(io)
    }

    /// Starts a network function's loops on its slot.
    fn start_nf(&self, manifest: &Manifest, deployment: &Deployment) -> Option<String> {
        let spec = &deployment.spec;
        if spec.kind != PluginKind::NetworkFunction {
            return None;
        }
        let slot = deployment.slot()?.clone();
        let io = lock(&self.nf_io).get(&spec.name).cloned()?;
        let keys = crate::sdwan::OverlayKeys {
            dir: self.opts.data_dir.join("sdwan"),
            provider: self.keys.as_ref().map(|k| k.provider().clone()),
        };
        match NfRunner::start(slot, spec, &manifest.ports, io, &keys) {
            Ok(runner) => {
                *lock(&deployment.nf) = Some(Arc::new(runner));
                None
            }
            Err(e) => {
                tracing::error!(plugin = %spec.name, error = %e, "network function did not start");
                Some(e)
            }
        }
    }

    /// Brings up `spec` from nothing.
    fn deploy(&self, manifest: &Manifest, spec: &PluginSpec) -> Deployment {
        let component = self.read_component(manifest, spec);
        let digest = component.as_ref().ok().map(|(_, b)| sha256_hex(b));
        let loaded = component
            .and_then(|(path, bytes)| self.load_plugin(spec, &bytes).map(|plugin| (path, plugin)));
        let runner = match loaded {
            Err(e) => {
                tracing::error!(plugin = %spec.name, error = %e, "plugin failed to load");
                Runner::Failed(e.to_string())
            }
            Ok((path, _)) if spec.kind == PluginKind::Job => Runner::Job(JobRun::start(
                spec.clone(),
                path,
                self.engine.clone(),
                self.cache.clone(),
            )),
            Ok((_, plugin)) => {
                let (policy, probe) = Self::slot_policy(spec);
                let slot = Arc::new(PluginSlot::new(plugin, policy, probe));
                if let Some(updates) = &self.updates {
                    let updates = updates.clone();
                    slot.set_hook(Arc::new(move |_, event| match event {
                        SlotEvent::Swapped { to, .. } => updates.record_applied(to),
                        SlotEvent::RolledBack { from, reason, .. }
                        | SlotEvent::CanaryAborted {
                            candidate: from,
                            reason,
                            ..
                        } => updates.record_rolled_back(from, reason),
                        _ => {}
                    }));
                }
                Runner::Slot(slot)
            }
        };
        let deployment = Deployment::new(spec.clone(), digest, runner);
        self.start_consumer(&deployment);
        if let Some(e) = self.start_nf(manifest, &deployment) {
            deployment.set_apply_error(Some(e));
        }
        deployment
    }

    fn start_consumer(&self, deployment: &Deployment) {
        let spec = &deployment.spec;
        if spec.kind != PluginKind::Pipeline || spec.grants.bus.subscribe.is_empty() {
            return;
        }
        if let Some(slot) = deployment.slot() {
            let consumer =
                Consumer::start(&self.bus, slot.clone(), spec.grants.bus.subscribe.clone());
            *lock(&deployment.consumer) = Some(consumer);
        }
    }

    /// What differs between two specs of the same plugin.
    fn changed_fields(old: &PluginSpec, new: &PluginSpec, code_changed: bool) -> Vec<String> {
        let mut fields = Vec::new();
        let mut note = |differs: bool, name: &str| {
            if differs {
                fields.push(name.to_string());
            }
        };
        note(old.kind != new.kind, "kind");
        note(
            code_changed || old.component != new.component || old.image != new.image,
            "code",
        );
        note(old.version != new.version, "version");
        note(old.config != new.config, "config");
        note(old.grants != new.grants, "grants");
        note(old.limits != new.limits, "limits");
        note(old.route != new.route, "route");
        note(old.health != new.health, "health");
        note(old.rollback != new.rollback, "rollback");
        note(old.restart != new.restart, "restart");
        note(old.args != new.args, "args");
        note(old.canary != new.canary, "canary");
        fields
    }

    /// Reconciles the running host with `manifest`: plugins that are new are started, those
    /// gone are stopped, those whose code, version, configuration, grants or limits changed are
    /// hot-swapped in place (health-checked first; on failure the old version keeps serving
    /// and the plugin reports `degraded`), jobs that changed are restarted. Applying the
    /// manifest that runs changes nothing. `text` is kept to serve `GET /v1/manifest`.
    /// With `dry_run`, only reports what would change.
    pub async fn apply(
        self: &Arc<Self>,
        manifest: Manifest,
        text: Option<String>,
        dry_run: bool,
    ) -> Result<ApplyReport, RuntimeError> {
        let opts = ApplyOptions {
            dry_run,
            ..ApplyOptions::default()
        };
        self.apply_with(manifest, text, opts).await
    }

    /// [`Appliance::apply`] with every option: `now` applies code updates of `image` plugins
    /// outside the maintenance windows; `force_rollback` accepts a signed version older than
    /// the newest one this host accepted.
    pub async fn apply_with(
        self: &Arc<Self>,
        mut manifest: Manifest,
        text: Option<String>,
        opts: ApplyOptions,
    ) -> Result<ApplyReport, RuntimeError> {
        let dry_run = opts.dry_run;
        let _guard = self.apply_lock.lock().await;
        self.resolve_images(&mut manifest, opts.force_rollback)
            .await;
        let current = self.desired.load_full();
        let mut report = ApplyReport {
            dry_run,
            changed: false,
            plugins: Vec::new(),
            unchanged: Vec::new(),
            routing: Vec::new(),
            models: Vec::new(),
            warnings: Vec::new(),
        };
        if manifest.host.http_listen != current.host.http_listen && self.http_addr().is_some() {
            report.warnings.push(format!(
                "host.http_listen changed to {}: takes effect when the host restarts",
                manifest.host.http_listen
            ));
        }
        if manifest.shares != current.shares && self.http_addr().is_some() {
            report
                .warnings
                .push("shares changed: takes effect when the host restarts".into());
        }
        if manifest.sdwan != current.sdwan && self.http_addr().is_some() {
            report
                .warnings
                .push("sdwan changed: takes effect when the host restarts".into());
        }
        if manifest.host.tls != current.host.tls && self.http_addr().is_some() {
            report.warnings.push(
                "host.tls changed (names, CA bundle, alerts, ACME, client certificates): takes effect when the host restarts".into(),
            );
        }
        if manifest.host.api != current.host.api && self.http_addr().is_some() {
            report
                .warnings
                .push("host.api changed: takes effect when the host restarts".into());
        }

        // The plan: what happens to each plugin.
        enum Step {
            Add(PluginSpec),
            Remove(Arc<Deployment>),
            Update(Arc<Deployment>, PluginSpec, Vec<String>),
            Replace(Arc<Deployment>, PluginSpec, Vec<String>),
        }
        let running = self.read().clone();
        let mut steps = Vec::new();
        for (name, old) in &running {
            if !manifest.plugins.contains_key(name) {
                steps.push(Step::Remove(old.clone()));
            }
        }
        for (name, spec) in &manifest.plugins {
            let Some(old) = running.get(name) else {
                steps.push(Step::Add(spec.clone()));
                continue;
            };
            let digest = self
                .read_component(&manifest, spec)
                .ok()
                .map(|(_, b)| sha256_hex(&b));
            let code_changed = digest != old.desired_digest;
            let fields = Self::changed_fields(&old.spec, spec, code_changed);
            if fields.is_empty() {
                report.unchanged.push(name.clone());
                continue;
            }
            // A network function keeps its ports and control socket across a swap; new ones
            // need a restart of its loops.
            let nf_rewired = spec.kind == PluginKind::NetworkFunction
                && (old.spec.grants.nf.ports != spec.grants.nf.ports
                    || old.spec.grants.nf.control != spec.grants.nf.control
                    || old.spec.limits.batch != spec.limits.batch
                    || old.spec.limits.tick_ms != spec.limits.tick_ms
                    || spec
                        .grants
                        .nf
                        .ports
                        .iter()
                        .any(|p| manifest.ports.get(p) != current.ports.get(p)));
            let in_place = old.slot().is_some()
                && !fields.iter().any(|f| f == "kind")
                && spec.kind != PluginKind::Job
                && !nf_rewired;
            if in_place {
                steps.push(Step::Update(old.clone(), spec.clone(), fields));
            } else {
                steps.push(Step::Replace(old.clone(), spec.clone(), fields));
            }
        }
        // Compared with the running consumer, not with `current`: the first apply starts from a
        // manifest that already carries these host settings, and must still start it.
        let log_topics_change = self.logged_topics() != manifest.host.log_topics;
        let routing_changes = Routing::differs(&current, &manifest) || log_topics_change;
        report.models = model_changes(&current, &manifest);
        if manifest.host.nn != current.host.nn && self.http_addr().is_some() {
            report.warnings.push(
                "host.nn changed: ONNX Runtime is loaded once per process; a new library takes effect when the host restarts".into(),
            );
        }
        report.changed = !steps.is_empty() || routing_changes || !report.models.is_empty();

        if dry_run {
            for step in &steps {
                report.plugins.push(match step {
                    Step::Add(spec) => change(&spec.name, "add", vec![], None),
                    Step::Remove(d) => change(&d.spec.name, "remove", vec![], None),
                    Step::Update(_, spec, f) => change(&spec.name, "update", f.clone(), None),
                    Step::Replace(_, spec, f) => change(&spec.name, "replace", f.clone(), None),
                });
            }
            if routing_changes {
                report
                    .routing
                    .push("routes, timers, sinks or log topics change".into());
            }
            return Ok(report);
        }

        // Models first: plugins added or updated by this apply may load them.
        if !report.models.is_empty() || manifest.host.nn != current.host.nn {
            let previous = self.models.load_full();
            let specs = manifest.models.clone();
            let nn = manifest.host.nn.clone();
            let loaded =
                tokio::task::spawn_blocking(move || ModelRegistry::load(&specs, &nn, &previous))
                    .await
                    .map_err(|e| RuntimeError::Service(format!("loading models: {e}")))?;
            for status in loaded.statuses() {
                if let Some(error) = &status.error {
                    report
                        .models
                        .push(format!("failed {}: {error}", status.name));
                }
            }
            self.models.store(Arc::new(loaded));
        }

        // Tables next: plugins added or updated by this apply may open them. Tables whose spec
        // is unchanged or only grew keep their contents.
        if manifest.tables != current.tables {
            let specs: Vec<outpost_dataplane::TableSpec> =
                manifest.tables.values().map(table_spec).collect();
            match self.tables.reconcile(&specs) {
                Ok(r) => report.routing.push(format!("tables: {r:?}")),
                Err(e) => report.warnings.push(format!("tables: {e}")),
            }
        }

        let window_open = self.updates.as_ref().is_none_or(|u| u.window_open());
        for step in steps {
            // A new version of an `image` plugin's code waits for the maintenance window.
            let deferred = match &step {
                Step::Update(old, spec, fields) | Step::Replace(old, spec, fields)
                    if spec.image.is_some()
                        && fields.iter().any(|f| f == "code")
                        && !window_open
                        && !opts.now
                        && !matches!(old.runner, Runner::Failed(_))
                        && !lock(&self.image_errors).contains_key(&spec.name) =>
                {
                    Some((spec.clone(), fields.clone()))
                }
                _ => None,
            };
            if let (Some((spec, fields)), Some(updates)) = (deferred, &self.updates) {
                updates.defer(PendingUpdate {
                    plugin: spec.name.clone(),
                    image: spec.image.clone().unwrap_or_default(),
                    version: spec.version.clone(),
                    staged_at: updates.now(),
                });
                report
                    .plugins
                    .push(change(&spec.name, "deferred", fields, None));
                continue;
            }
            if let Some(updates) = &self.updates {
                let name = match &step {
                    Step::Add(s) | Step::Update(_, s, _) | Step::Replace(_, s, _) => &s.name,
                    Step::Remove(d) => &d.spec.name,
                };
                updates.clear_pending(name);
            }
            let record = match step {
                Step::Add(spec) => {
                    let d = Arc::new(self.deploy(&manifest, &spec));
                    let error = match &d.runner {
                        Runner::Failed(e) => Some(e.clone()),
                        _ => None,
                    };
                    if let (None, Some(updates), true, Some(digest)) = (
                        &error,
                        &self.updates,
                        spec.image.is_some(),
                        d.desired_digest.as_deref(),
                    ) {
                        updates.record_applied(digest);
                    }
                    self.write().insert(spec.name.clone(), d);
                    change(&spec.name, "add", vec![], Some(error))
                }
                Step::Remove(old) => {
                    self.write().remove(&old.spec.name);
                    old.stop().await;
                    lock(&self.nf_io).remove(&old.spec.name);
                    tracing::info!(plugin = %old.spec.name, "plugin removed");
                    change(&old.spec.name, "remove", vec![], Some(None))
                }
                Step::Replace(old, spec, fields) => {
                    old.stop().await;
                    lock(&self.nf_io).remove(&old.spec.name);
                    let d = Arc::new(self.deploy(&manifest, &spec));
                    let error = match &d.runner {
                        Runner::Failed(e) => Some(e.clone()),
                        _ => None,
                    };
                    self.write().insert(spec.name.clone(), d);
                    tracing::info!(plugin = %spec.name, ?fields, "plugin replaced");
                    change(&spec.name, "replace", fields, Some(error))
                }
                Step::Update(old, spec, fields) => {
                    let error = self.update_in_place(&manifest, &old, &spec, &fields).await;
                    change(&spec.name, "update", fields, Some(error))
                }
            };
            report.plugins.push(record);
        }
        self.rebuild_http_routes();

        if routing_changes {
            let mut routing = self.routing.lock().await;
            let spool_dir = (!self.opts.ephemeral).then(|| self.opts.data_dir.join("spool"));
            let this = Arc::downgrade(self);
            let lookup: PipelineLookup = Arc::new(move |name: &str| {
                this.upgrade()
                    .and_then(|a| a.read().get(name).and_then(|d| d.slot().cloned()))
            });
            report.routing = routing
                .apply(
                    &manifest,
                    &self.bus,
                    spool_dir.as_deref(),
                    self.keys.as_ref().map(|k| k.provider()),
                    lookup,
                )
                .await?;
            if manifest.routes != current.routes {
                report
                    .routing
                    .push(format!("{} route(s) active", manifest.routes.len()));
            }
            if manifest.timers != current.timers {
                report
                    .routing
                    .push(format!("{} timer(s) active", manifest.timers.len()));
            }
        }
        if log_topics_change {
            self.restart_topic_log(&manifest);
        }

        for c in &report.plugins {
            match &c.error {
                Some(e) => {
                    tracing::warn!(plugin = %c.plugin, action = %c.action, error = %e, "apply: change failed")
                }
                None => {
                    tracing::info!(plugin = %c.plugin, action = %c.action, fields = ?c.fields, "apply: changed")
                }
            }
        }
        self.desired.store(Arc::new(manifest));
        *lock(&self.desired_text) = text;
        self.applies
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(report)
    }

    /// Hot-swaps a running plugin to `spec`. Returns the error that kept it from its desired
    /// state, if any; the deployment records the new desired spec either way.
    async fn update_in_place(
        &self,
        manifest: &Manifest,
        old: &Arc<Deployment>,
        spec: &PluginSpec,
        fields: &[String],
    ) -> Option<String> {
        let slot = old.slot().expect("in-place updates are for slots").clone();
        let (policy, probe) = Self::slot_policy(spec);
        slot.set_policy(policy, probe);
        let component = self.read_component(manifest, spec);
        let digest = component.as_ref().ok().map(|(_, b)| sha256_hex(b));
        let needs_new_version = fields.iter().any(|f| {
            matches!(
                f.as_str(),
                "code" | "version" | "config" | "grants" | "limits"
            )
        });
        let mut error = None;
        if needs_new_version {
            let outcome = match component {
                Ok((_, bytes)) => match self.load_plugin(spec, &bytes) {
                    Ok(candidate) => match spec.canary {
                        // Staged rollout of new code; a change of config or grants alone
                        // swaps at once.
                        Some(c) if fields.iter().any(|f| f == "code") => slot
                            .start_canary(candidate, c.percent, c.calls)
                            .await
                            .map_err(|e| e.to_string()),
                        _ => slot.swap(candidate).await.map_err(|e| e.to_string()),
                    },
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e.to_string()),
            };
            error = outcome.err();
        }
        let new = Arc::new(Deployment::new(spec.clone(), digest, Runner::Slot(slot)));
        new.set_apply_error(error.clone());
        *lock(&new.nf) = lock(&old.nf).take();
        // The consumer carries over when the subscriptions are unchanged, so not one message
        // is missed; otherwise the new subscription starts before the old one stops.
        let carried = lock(&old.consumer).take();
        match carried {
            Some(c) if c.patterns == spec.grants.bus.subscribe => *lock(&new.consumer) = Some(c),
            other => {
                self.start_consumer(&new);
                if let Some(c) = other {
                    c.stop().await;
                }
            }
        }
        self.write().insert(spec.name.clone(), new);
        error
    }

    fn rebuild_http_routes(&self) {
        let mut routes: Vec<HttpRoute> = self
            .read()
            .values()
            .filter_map(|d| match (&d.spec.route, d.slot()) {
                (Some(prefix), Some(slot)) if d.spec.kind == PluginKind::Http => {
                    Some(HttpRoute::new(prefix, slot.clone()))
                }
                _ => None,
            })
            .collect();
        // Longest prefix first, so `/a/b` wins over `/a`.
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        self.http_routes.store(Arc::new(routes));
    }

    /// The topics the host-log consumer writes to the log now (none when it is not running).
    fn logged_topics(&self) -> Vec<TopicPattern> {
        lock(&self.topic_log)
            .as_ref()
            .map(|t| t.topics.clone())
            .unwrap_or_default()
    }

    /// Writes messages on `host.log_topics` to the log.
    fn restart_topic_log(&self, manifest: &Manifest) {
        if let Some(old) = lock(&self.topic_log).take() {
            let _ = old.stop.send(true);
            old.task.abort();
        }
        let topics = manifest.host.log_topics.clone();
        if topics.is_empty() {
            return;
        }
        let sub = self
            .bus
            .subscribe("host-log", topics.clone(), PIPELINE_QUEUE);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(consume(sub, stopped, |msg| async move {
            let preview =
                String::from_utf8_lossy(&msg.payload[..msg.payload.len().min(256)]).into_owned();
            tracing::info!(topic = %msg.topic, source = %msg.source, bytes = msg.payload.len(), payload = %preview, "bus message");
        }));
        *lock(&self.topic_log) = Some(TopicLog { topics, stop, task });
    }

    /// The version of plugin `name` serving now (for jobs, the loaded component).
    pub fn plugin(&self, name: &str) -> Option<Arc<Plugin>> {
        self.read().get(name)?.slot().map(|s| s.active())
    }

    /// The host's message bus.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The host's kv store.
    pub fn kv(&self) -> &KvStore {
        &self.kv
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<HostEngine> {
        &self.engine
    }

    /// The manifest applied last (the desired state).
    pub fn manifest(&self) -> Arc<Manifest> {
        self.desired.load_full()
    }

    /// The text of the manifest applied last, when it came as text.
    pub fn manifest_text(&self) -> Option<String> {
        lock(&self.desired_text).clone()
    }

    /// Options the host runs with.
    pub fn options(&self) -> &ApplianceOptions {
        &self.opts
    }

    /// Where http plugins are served.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        *lock(&self.http_addr)
    }

    pub(crate) fn http_routes(&self) -> Arc<Vec<HttpRoute>> {
        self.http_routes.load_full()
    }

    /// Seconds since start.
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// When this host started, milliseconds since the Unix epoch (a restart changes it; the
    /// process id stays the same because a restart replaces the program in place).
    pub fn started_at_ms(&self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        now.saturating_sub(self.started.elapsed()).as_millis() as u64
    }

    /// Status of plugin `name`.
    pub fn plugin_status(&self, name: &str) -> Option<PluginStatus> {
        let d = self.read().get(name)?.clone();
        Some(self.full_status(&d))
    }

    fn full_status(&self, d: &Deployment) -> PluginStatus {
        let mut status = Self::status_of(d);
        status.pending_update = self.updates.as_ref().and_then(|u| u.pending(&d.spec.name));
        if status.pending_update.is_some() && status.state == "running" {
            status.state = "pending-update".into();
        }
        status
    }

    fn status_of(d: &Deployment) -> PluginStatus {
        let spec = &d.spec;
        let mut status = PluginStatus {
            name: spec.name.clone(),
            kind: spec.kind.to_string(),
            desired: VersionInfo {
                version: spec.version.clone(),
                digest: d.desired_digest.clone(),
            },
            actual: VersionInfo::default(),
            state: String::new(),
            last_error: None,
            restarts: 0,
            exit_code: None,
            route: spec.route.clone(),
            subscribe: spec
                .grants
                .bus
                .subscribe
                .iter()
                .map(|t| t.to_string())
                .collect(),
            stats: StatsSnapshot::default(),
            swaps: 0,
            rollbacks: 0,
            events: Vec::new(),
            inference: None,
            canary: None,
            pending_update: None,
        };
        match &d.runner {
            Runner::Slot(slot) => {
                let p = slot.active();
                status.actual = VersionInfo {
                    version: p.version().map(str::to_string),
                    digest: Some(p.inspection().digest.clone()),
                };
                status.events = slot.events();
                let rolled_back =
                    matches!(status.events.last(), Some(SlotEvent::RolledBack { .. }));
                let apply_error = d.apply_error();
                status.canary = slot.canary();
                status.state = if status.canary.is_some() {
                    "canary"
                } else if rolled_back {
                    "rolled-back"
                } else if apply_error.is_some() || status.actual != status.desired {
                    "degraded"
                } else {
                    "running"
                }
                .into();
                status.stats = p.stats();
                status.inference = p.context().nn.as_ref().map(|nn| nn.stats.snapshot());
                status.last_error = apply_error.or_else(|| status.stats.last_error.clone());
                let counters = slot.counters();
                status.swaps = counters.swaps;
                status.rollbacks = counters.rollbacks;
            }
            Runner::Failed(e) => {
                status.state = "failed".into();
                status.last_error = Some(e.clone());
            }
            Runner::Job(job) => {
                let r = job.report();
                status.actual.digest = d.desired_digest.clone();
                status.actual.version = spec.version.clone();
                status.state = match r.phase {
                    JobPhase::Starting => "starting",
                    JobPhase::Running => "running",
                    JobPhase::Completed => "completed",
                    JobPhase::Exited => "exited",
                    JobPhase::Restarting { .. } => "restarting",
                    JobPhase::Stopped => "stopped",
                }
                .into();
                status.exit_code = r.exit_code;
                status.last_error = r.error;
                status.restarts = r.restarts;
            }
        }
        status
    }

    /// Per-plugin status, sorted by name.
    pub fn status(&self) -> Vec<PluginStatus> {
        let deployments: Vec<_> = self.read().values().cloned().collect();
        deployments.iter().map(|d| self.full_status(d)).collect()
    }

    /// Hands the appliance the certificate manager of its TLS endpoints (the API does this).
    pub fn set_certificates(&self, certs: outpost_security::CertificateManager) {
        *lock(&self.certs) = Some(certs);
    }

    /// The certificate manager, when the API serves TLS.
    pub fn certificates(&self) -> Option<outpost_security::CertificateManager> {
        lock(&self.certs).clone()
    }

    /// The key authorization for an ACME http-01 challenge path, while an order is pending.
    pub fn acme_challenge(&self, path: &str) -> Option<String> {
        lock(&self.certs)
            .as_ref()
            .and_then(|c| c.http01_challenges().response(path))
    }

    /// Fetches and verifies the artifacts of `image` plugins (or finds them in the cache) and
    /// points their specs at the verified files; a refusal is kept as that plugin's error.
    async fn resolve_images(&self, manifest: &mut Manifest, force_rollback: bool) {
        let mut errors = BTreeMap::new();
        // The local cache of verified artifacts serves a restart (the first apply) and an image
        // that already runs; any other image is pulled and checked again (signature, expiry,
        // anti-rollback) before it is used.
        let startup = self.applies.load(std::sync::atomic::Ordering::Relaxed) == 0;
        let running: BTreeMap<String, Option<String>> = self
            .read()
            .iter()
            .map(|(n, d)| (n.clone(), d.spec.image.clone()))
            .collect();
        for (name, spec) in manifest.plugins.iter_mut() {
            let Some(image) = spec.image.clone() else {
                continue;
            };
            let Some(updates) = &self.updates else {
                errors.insert(
                    name.clone(),
                    format!("`{image}` cannot be verified: no trusted publishers (host.updates.publishers)"),
                );
                continue;
            };
            let cached_ok = startup
                || running
                    .get(name)
                    .is_some_and(|i| i.as_ref() == Some(&image));
            match updates
                .resolve(name, &image, force_rollback, cached_ok)
                .await
            {
                Ok((path, record)) => {
                    spec.component = path;
                    if spec.version.is_none() {
                        spec.version = Some(record.version);
                    }
                }
                Err(e) => {
                    errors.insert(name.clone(), e);
                }
            }
        }
        *lock(&self.image_errors) = errors;
    }

    /// The SD-WAN uplinks' quality and recent changes, when `[sdwan]` is configured.
    pub fn sdwan(&self) -> Option<crate::sdwan::SdwanStatus> {
        self.sdwan.get().map(|s| s.status())
    }

    /// Every share's state.
    pub fn shares(&self) -> Vec<ShareStatus> {
        self.shares.all().iter().map(|s| s.status()).collect()
    }

    /// A running share.
    pub fn share(&self, name: &str) -> Option<Arc<RunningShare>> {
        self.shares.get(name)
    }

    /// Update control's state (`None` when no publisher is trusted).
    pub fn update_status(&self) -> Option<UpdateStatus> {
        self.updates.as_ref().map(|u| u.status())
    }

    /// The update service (clock for maintenance windows, audit log).
    pub fn updates(&self) -> Option<&Arc<UpdateService>> {
        self.updates.as_ref()
    }

    /// The encryption key service's state (`None` when encryption at rest is off).
    pub fn key_status(&self) -> Option<KeyStatus> {
        self.keys.as_ref().map(|k| k.status())
    }

    /// Checks that every store's data key still unwraps under the KEK (a disabled or removed
    /// customer key shows up here as an alert); the host also does this every minute.
    pub async fn check_keys(&self) -> Option<KeyStatus> {
        let keys = self.keys.as_ref()?;
        let kv = self.kv.clone();
        let mut result = tokio::task::spawn_blocking(move || kv.check_key())
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        if result.is_ok() {
            result = self.routing.lock().await.check_spool_keys();
        }
        keys.record_check(result);
        Some(keys.status())
    }

    /// Rotates the key-encryption key: a new KEK version, under which every store's data key
    /// is re-wrapped. No data is re-encrypted and reads carry on throughout.
    pub async fn rotate_keys(&self) -> Result<KeyStatus, RuntimeError> {
        let keys = self.keys.as_ref().ok_or_else(|| {
            RuntimeError::Service("encryption at rest is off (host.encryption)".into())
        })?;
        let version = keys.rotate()?;
        self.kv
            .rewrap()
            .map_err(|e| RuntimeError::Service(e.to_string()))?;
        let spools = self.routing.lock().await.rewrap_spools()?;
        tracing::info!(
            version,
            spools,
            "encryption key rotated; data keys re-wrapped"
        );
        keys.record_check(Ok(()));
        Ok(keys.status())
    }

    /// Every declared model's status.
    pub fn models(&self) -> Vec<ModelStatus> {
        self.models.load().statuses()
    }

    /// ONNX Runtime's state (library, CUDA).
    pub fn inference_runtime(&self) -> RuntimeStatus {
        self.models.load().runtime().clone()
    }

    /// Per-model compute counters.
    pub fn model_stats(&self) -> Vec<(String, outpost_inference::StatsSnapshot)> {
        self.models
            .load()
            .models()
            .map(|m| (m.spec.name.clone(), m.stats.snapshot()))
            .collect()
    }

    /// Every running network function: ports, control socket, counters.
    pub fn network_functions(&self) -> Vec<NfStatus> {
        self.read()
            .values()
            .filter_map(|d| {
                let nf = d.nf()?;
                Some(NfStatus {
                    plugin: d.spec.name.clone(),
                    control: nf.control_addr().map(|a| a.to_string()),
                    ports: nf.ports(),
                    stats: nf.stats(),
                    pfcp: self.pfcp_status(&d.spec),
                })
            })
            .collect()
    }

    /// The UPF's associations and session count, read from the `upf-state` and `upf-sessions`
    /// tables when `spec` is granted them.
    fn pfcp_status(&self, spec: &PluginSpec) -> Option<PfcpStatus> {
        let granted = |t: &str| spec.grants.nf.tables.iter().any(|g| g == t);
        if !granted("upf-state") {
            return None;
        }
        let state = self.tables.open("upf-state")?;
        let sessions = if granted("upf-sessions") {
            self.tables.open("upf-sessions").map_or(0, |t| t.len())
        } else {
            0
        };
        let associations = state
            .get(outpost_upf::NODE_RECORD_KEY)
            .and_then(|r| outpost_upf::associations(&r))
            .unwrap_or_default()
            .into_iter()
            .map(|a| PfcpAssociation {
                peer: a.peer,
                node_id: hex::encode(&a.node_id),
                heartbeat_misses: a.heartbeat_misses,
            })
            .collect();
        Some(PfcpStatus {
            associations,
            sessions,
        })
    }

    /// The test handle of memory port `port` of network function `plugin`.
    pub fn memory_port(&self, plugin: &str, port: &str) -> Option<MemoryPortHandle> {
        self.read().get(plugin)?.nf()?.memory_port(port)
    }

    /// The host-owned tables.
    pub fn tables(&self) -> &Arc<TableSet> {
        &self.tables
    }

    /// Per table: entries, lookups, hits, misses, insert failures.
    pub fn table_stats(&self) -> Vec<(String, TableStats)> {
        self.tables.stats()
    }

    /// Per model: how many computes run inside the engine now, and the most that ever did at
    /// once (computes on one graph overlap instead of queueing behind one lock).
    pub fn model_overlap(&self) -> Vec<ModelOverlap> {
        self.models
            .load()
            .models()
            .filter_map(|m| {
                let overlap = m.engine_graph()?.overlap();
                Some(ModelOverlap {
                    model: m.spec.name.clone(),
                    running: overlap.running(),
                    peak: overlap.peak(),
                })
            })
            .collect()
    }

    /// The sinks' connection and spool figures alone (what alerts need), without the rest of a
    /// metrics snapshot.
    pub async fn sink_stats(&self) -> Vec<SinkStats> {
        self.routing.lock().await.sink_stats()
    }

    /// Everything `/metrics` shows.
    pub async fn metrics(&self) -> MetricsSnapshot {
        let routing = self.routing.lock().await;
        MetricsSnapshot {
            plugins: self.status(),
            subscribers: self.bus.subscriber_stats(),
            bus_published: self.bus.published(),
            routes: routing.route_status(),
            sinks: routing.sink_stats(),
            applies: self.applies.load(std::sync::atomic::Ordering::Relaxed),
            uptime_secs: self.uptime_secs(),
            models: self.models(),
            model_stats: self.model_stats(),
            model_overlap: self.model_overlap(),
            network_functions: self.network_functions(),
            tables: self.table_stats(),
            keys: self.key_status(),
            shares: self.shares(),
            sdwan: self.sdwan(),
            certificates: self.certificates().map(|c| c.status()).unwrap_or_default(),
        }
    }

    /// The slot of a running plugin.
    pub fn slot(&self, name: &str) -> Option<Arc<PluginSlot>> {
        self.read().get(name)?.slot().cloned()
    }

    /// Hot-swaps plugin `name` to the component at `component` with `version` and `config`,
    /// by applying the running manifest with that one plugin changed.
    pub async fn swap(
        self: &Arc<Self>,
        name: &str,
        component: &Path,
        version: Option<String>,
        config: BTreeMap<String, String>,
    ) -> Result<(), RuntimeError> {
        let mut manifest = (*self.manifest()).clone();
        let spec = manifest
            .plugins
            .get_mut(name)
            .ok_or_else(|| RuntimeError::plugin(name, "is not in the manifest"))?;
        spec.component = component.to_path_buf();
        spec.version = version;
        spec.config = config;
        let report = self.apply(manifest, None, false).await?;
        match report.plugins.into_iter().find_map(|c| c.error) {
            Some(e) => Err(RuntimeError::plugin(name, e)),
            None => Ok(()),
        }
    }

    /// Rolls plugin `name` back to its previous version.
    pub fn rollback(&self, name: &str) -> Result<(), RuntimeError> {
        let slot = self
            .slot(name)
            .ok_or_else(|| RuntimeError::plugin(name, "is not running"))?;
        slot.rollback("operator request")
            .map_err(|e| RuntimeError::plugin(name, e))
    }

    /// Restarts plugin `name` in place: a fresh instance of its desired version is built and
    /// swapped in, so calls in flight finish on the old one and none is refused. Jobs, failed
    /// plugins and plugins that were rolled back or are in a canary are refused with the reason.
    pub async fn restart_plugin(&self, name: &str, who: &str) -> Result<(), RuntimeError> {
        let deployment = self
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| RuntimeError::plugin(name, "is not in the manifest"))?;
        let slot = match &deployment.runner {
            Runner::Slot(slot) => slot.clone(),
            Runner::Job(_) => {
                return Err(RuntimeError::plugin(
                    name,
                    "is a job: jobs restart by their restart policy",
                ));
            }
            Runner::Failed(e) => {
                return Err(RuntimeError::plugin(
                    name,
                    format!("failed to load ({e}); apply a manifest that fixes it"),
                ));
            }
        };
        if slot.canary().is_some() {
            return Err(RuntimeError::plugin(
                name,
                "has a canary running; wait for it to finish or abort it",
            ));
        }
        if matches!(slot.events().last(), Some(SlotEvent::RolledBack { .. })) {
            return Err(RuntimeError::plugin(
                name,
                "was rolled back; a restart would bring back the version it left, so apply a \
                 manifest to move forward",
            ));
        }
        let manifest = self.manifest();
        let (_, bytes) = self.read_component(&manifest, &deployment.spec)?;
        let fresh = self.load_plugin(&deployment.spec, &bytes)?;
        slot.swap(fresh)
            .await
            .map_err(|e| RuntimeError::plugin(name, e))?;
        tracing::info!(plugin = name, by = who, "plugin restarted");
        Ok(())
    }

    /// Asks the process to restart the host: whoever runs the appliance (the `outpost` binary)
    /// shuts it down gracefully and starts it again.
    pub fn request_restart(&self, who: &str) {
        tracing::warn!(by = who, "host restart requested");
        self.restart.send_replace(Some(who.to_string()));
    }

    /// [`request_restart`](Self::request_restart) half a second from now, so the response to
    /// the request that asked for it reaches its client before the listeners close.
    pub fn request_restart_soon(self: &Arc<Self>, who: String) {
        let app = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            if let Some(app) = app.upgrade() {
                app.request_restart(&who);
            }
        });
    }

    /// Waits until someone asks for a restart; returns who did.
    pub async fn restart_requested(&self) -> String {
        let mut rx = self.restart.subscribe();
        loop {
            if let Some(who) = rx.borrow_and_update().clone() {
                return who;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// A receiver that turns true when the host shuts down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Registers a task the host waits for at shutdown.
    pub fn track(&self, task: JoinHandle<()>) {
        lock(&self.tasks).push(task);
    }

    /// Stops serving: consumers finish the messages queued for them, jobs stop, sinks keep
    /// what they have not delivered in their spools, the listeners close.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        let deployments: Vec<_> = std::mem::take(&mut *self.write()).into_values().collect();
        for d in deployments {
            d.stop().await;
        }
        self.routing.lock().await.shutdown().await;
        if let Some(old) = lock(&self.topic_log).take() {
            let _ = old.stop.send(true);
            old.task.abort();
        }
        let tasks: Vec<_> = std::mem::take(&mut *lock(&self.tasks));
        for t in tasks {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
        }
        tracing::info!("appliance stopped");
    }
}

fn change(
    plugin: &str,
    action: &str,
    fields: Vec<String>,
    error: Option<Option<String>>,
) -> PluginChange {
    PluginChange {
        plugin: plugin.to_string(),
        action: action.to_string(),
        fields,
        ok: error.as_ref().map(Option::is_none),
        error: error.flatten(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

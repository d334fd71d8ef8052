//! The appliance: everything a manifest declares, running. Pipelines are fed from the bus,
//! http plugins serve behind their routes, jobs run once at start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use outpost_manifest::{Manifest, PluginKind, PluginSpec};
use outpost_services::{Bus, BusMessage, KvStore, Subscription};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cache::CompileCache;
use crate::engine::{EngineSettings, HostEngine};
use crate::error::RuntimeError;
use crate::http::HttpRoute;
use crate::job::{JobOptions, JobStdio, run_job};
use crate::plugin::{Plugin, StatsSnapshot, plugin_linker};
use crate::slot::{HealthProbe, PluginSlot, RollbackPolicy, SlotEvent};
use crate::state::PluginContext;

/// Largest bus message.
pub const MAX_BUS_PAYLOAD: usize = 4 << 20;
/// Queue length of each pipeline's subscription.
const PIPELINE_QUEUE: usize = 1024;

/// How to run a manifest.
#[derive(Debug, Clone)]
pub struct ApplianceOptions {
    /// Where the host keeps its state (compile cache, kv store, artifacts).
    pub data_dir: PathBuf,
    /// Extra directories searched for plugin components.
    pub plugin_dirs: Vec<PathBuf>,
    /// Engine sizing.
    pub engine: EngineSettings,
    /// Overrides `host.http_listen` (tests use port 0).
    pub http_listen: Option<SocketAddr>,
    /// Keep kv in memory and do not cache compiled code on disk.
    pub ephemeral: bool,
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
        }
    }
}

/// What the host reports about one plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Manifest version label.
    pub version: Option<String>,
    /// Content digest of the component, once loaded.
    pub digest: Option<String>,
    /// `running`, `failed`, `completed` or `exited`.
    pub state: String,
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
}

/// A finished job's exit code and failure, once it has ended.
type JobResult = Arc<Mutex<Option<(i32, Option<String>)>>>;

enum Slot {
    Running(Arc<PluginSlot>),
    Failed(String),
    Job {
        plugin: Option<Arc<Plugin>>,
        result: JobResult,
    },
}

/// A running appliance.
pub struct Appliance {
    manifest: Manifest,
    engine: Arc<HostEngine>,
    cache: Arc<CompileCache>,
    bus: Bus,
    kv: KvStore,
    slots: BTreeMap<String, Slot>,
    routes: Vec<HttpRoute>,
    search_dirs: Vec<PathBuf>,
    /// Built once at start; swaps reuse it.
    linker: wasmtime::component::Linker<crate::state::StoreState>,
    http_addr: Mutex<Option<SocketAddr>>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    started: Instant,
}

impl Appliance {
    /// Loads every plugin of `manifest` and starts them. A plugin that fails to load is
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
        let kv = if opts.ephemeral {
            KvStore::in_memory()
        } else {
            KvStore::open(&opts.data_dir.join("kv.redb"))
        }
        .map_err(|e| RuntimeError::Service(e.to_string()))?;
        let bus = Bus::new(MAX_BUS_PAYLOAD);
        let linker = plugin_linker(&engine)?;
        let mut search = opts.plugin_dirs.clone();
        search.push(opts.data_dir.join("plugins"));

        let mut slots = BTreeMap::new();
        let mut routes = Vec::new();
        for spec in manifest.plugins.values() {
            let loaded = Self::load_one(
                &manifest, spec, &search, &engine, &cache, &linker, &bus, &kv,
            );
            let slot = match (spec.kind, loaded) {
                (_, Err(e)) => {
                    tracing::error!(plugin = %spec.name, error = %e, "plugin failed to load");
                    Slot::Failed(e.to_string())
                }
                (PluginKind::Job, Ok(plugin)) => Slot::Job {
                    plugin: Some(plugin),
                    result: Arc::default(),
                },
                (PluginKind::Http, Ok(plugin)) => {
                    let prefix = spec.route.clone().unwrap_or_else(|| "/".into());
                    match HttpRoute::new(&prefix, plugin.clone()) {
                        Ok(route) => {
                            routes.push(route);
                            Slot::Running(Arc::new(Self::slot_for(spec, plugin)))
                        }
                        Err(e) => Slot::Failed(e.to_string()),
                    }
                }
                (_, Ok(plugin)) => Slot::Running(Arc::new(Self::slot_for(spec, plugin))),
            };
            slots.insert(spec.name.clone(), slot);
        }
        // Longest prefix first, so `/a/b` wins over `/a`.
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));

        let (shutdown, _) = watch::channel(false);
        let appliance = Arc::new(Appliance {
            manifest,
            engine,
            cache,
            bus,
            kv,
            slots,
            routes,
            search_dirs: search,
            linker,
            http_addr: Mutex::new(None),
            shutdown,
            tasks: Mutex::default(),
            started: Instant::now(),
        });
        appliance.start_pipelines();
        appliance.start_jobs();
        appliance.start_topic_log();
        let listen = opts
            .http_listen
            .unwrap_or(appliance.manifest.host.http_listen);
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
            RuntimeError::Service(format!("cannot listen for http on {listen}: {e}"))
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| RuntimeError::Service(format!("http listener: {e}")))?;
        *appliance
            .http_addr
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(addr);
        let server = tokio::spawn(crate::http::serve(
            listener,
            appliance.clone(),
            appliance.shutdown.subscribe(),
        ));
        appliance
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(server);
        tracing::info!(host = %appliance.manifest.host.name, %addr, plugins = appliance.slots.len(), "appliance started");
        Ok(appliance)
    }

    fn slot_for(spec: &PluginSpec, plugin: Arc<Plugin>) -> PluginSlot {
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
        PluginSlot::new(plugin, policy, probe)
    }

    #[allow(clippy::too_many_arguments)]
    fn load_one(
        manifest: &Manifest,
        spec: &PluginSpec,
        search: &[PathBuf],
        engine: &HostEngine,
        cache: &CompileCache,
        linker: &wasmtime::component::Linker<crate::state::StoreState>,
        bus: &Bus,
        kv: &KvStore,
    ) -> Result<Arc<Plugin>, RuntimeError> {
        let path = manifest.resolve_component(spec, search).ok_or_else(|| {
            RuntimeError::plugin(
                &spec.name,
                format!("component `{}` not found next to the manifest, in host.plugin_dirs or in the data directory's plugins/", spec.component.display()),
            )
        })?;
        let bytes = std::fs::read(&path).map_err(|e| RuntimeError::io(&path, e))?;
        let ctx = PluginContext::new(
            &spec.name,
            spec.kind,
            spec.config.clone(),
            spec.grants.clone(),
            spec.limits,
            (!spec.grants.bus.is_empty()).then(|| bus.clone()),
            spec.grants
                .kv
                .as_ref()
                .map(|g| kv.namespace(&g.namespace, g.quota_bytes)),
        );
        Plugin::load(engine, cache, linker, spec, ctx, &bytes).map(Arc::new)
    }

    fn start_pipelines(self: &Arc<Self>) {
        for (name, slot) in &self.slots {
            let Slot::Running(plugin) = slot else {
                continue;
            };
            let spec = &self.manifest.plugins[name];
            if spec.kind != PluginKind::Pipeline || spec.grants.bus.subscribe.is_empty() {
                continue;
            }
            let sub = self
                .bus
                .subscribe(name, spec.grants.bus.subscribe.clone(), PIPELINE_QUEUE);
            let plugin = plugin.clone();
            let bus = self.bus.clone();
            let grants = spec.grants.bus.clone();
            self.spawn_consumer(sub, move |msg| {
                let (plugin, bus, grants) = (plugin.clone(), bus.clone(), grants.clone());
                async move {
                    let name = plugin.active().name().to_string();
                    // A pipeline never receives its own output: no accidental feedback loops.
                    if msg.source == name {
                        return;
                    }
                    let Ok(outputs) = plugin.handle(&msg.topic, &msg.payload).await else {
                        return; // counted and logged by the plugin
                    };
                    for out in outputs {
                        if !grants.may_publish(&out.topic) {
                            tracing::warn!(plugin = %name, topic = %out.topic, "output to a topic outside the publish grant refused");
                            continue;
                        }
                        if let Err(e) = bus.publish(&name, &out.topic, out.payload) {
                            tracing::warn!(plugin = %name, error = %e, "output refused by the bus");
                        }
                    }
                }
            });
        }
    }

    /// Writes messages on `host.log_topics` to the log.
    fn start_topic_log(self: &Arc<Self>) {
        let topics = self.manifest.host.log_topics.clone();
        if topics.is_empty() {
            return;
        }
        let sub = self.bus.subscribe("host-log", topics, PIPELINE_QUEUE);
        self.spawn_consumer(sub, |msg| async move {
            let preview = String::from_utf8_lossy(&msg.payload[..msg.payload.len().min(256)]).into_owned();
            tracing::info!(topic = %msg.topic, source = %msg.source, bytes = msg.payload.len(), payload = %preview, "bus message");
        });
    }

    /// Runs `on_message` for each message of `sub`, one at a time (in order), until shutdown.
    fn spawn_consumer<F, Fut>(self: &Arc<Self>, mut sub: Subscription, mut on_message: F)
    where
        F: FnMut(BusMessage) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let mut shutdown = self.shutdown.subscribe();
        let task = tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    m = sub.recv() => match m { Some(m) => m, None => return },
                    _ = shutdown.changed() => return,
                };
                on_message(msg).await;
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
    }

    fn start_jobs(self: &Arc<Self>) {
        for (name, slot) in &self.slots {
            let Slot::Job {
                plugin: Some(_),
                result,
            } = slot
            else {
                continue;
            };
            let spec = self.manifest.plugins[name].clone();
            let Some(path) = self.manifest.resolve_component(&spec, &self.search_dirs) else {
                continue;
            };
            let engine = self.engine.clone();
            let cache = self.cache.clone();
            let result = result.clone();
            let task = tokio::spawn(async move {
                let mut argv = vec![spec.name.clone()];
                argv.extend(spec.args.iter().cloned());
                let opts = JobOptions {
                    name: spec.name.clone(),
                    argv,
                    grants: spec.grants.clone(),
                    limits: spec.limits,
                    stdio: JobStdio::Log,
                };
                let outcome = match std::fs::read(&path) {
                    Ok(bytes) => run_job(&engine, &cache, &bytes, opts)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(format!("{}: {e}", path.display())),
                };
                let recorded = match outcome {
                    Ok(o) => {
                        tracing::info!(job = %spec.name, exit_code = o.exit_code, elapsed_ms = o.elapsed.as_millis() as u64, "job finished");
                        (o.exit_code, o.error.map(|e| e.to_string()))
                    }
                    Err(e) => {
                        tracing::error!(job = %spec.name, error = %e, "job failed to run");
                        (crate::job::TRAP_EXIT_CODE, Some(e))
                    }
                };
                *result.lock().unwrap_or_else(|p| p.into_inner()) = Some(recorded);
            });
            self.tasks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(task);
        }
    }

    /// The running plugin called `name`.
    pub fn plugin(&self, name: &str) -> Option<Arc<Plugin>> {
        match self.slots.get(name)? {
            Slot::Running(p) => Some(p.active()),
            Slot::Job { plugin, .. } => plugin.clone(),
            Slot::Failed(_) => None,
        }
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

    /// The manifest being run.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Where http plugins and the host endpoints are served.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        *self.http_addr.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn http_routes(&self) -> &[HttpRoute] {
        &self.routes
    }

    /// Seconds since start.
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Per-plugin status, sorted by name.
    pub fn status(&self) -> Vec<PluginStatus> {
        self.slots
            .iter()
            .map(|(name, slot)| {
                let spec = &self.manifest.plugins[name];
                let mut status = PluginStatus {
                    name: name.clone(),
                    kind: spec.kind.to_string(),
                    version: spec.version.clone(),
                    digest: None,
                    state: String::new(),
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
                };
                match slot {
                    Slot::Running(slot) => {
                        let p = slot.active();
                        let rolled_back = matches!(
                            slot.events().last(),
                            Some(SlotEvent::RolledBack {
                                automatic: true,
                                ..
                            })
                        );
                        status.state = if rolled_back {
                            "rolled-back"
                        } else {
                            "running"
                        }
                        .into();
                        status.version = p.version().map(str::to_string);
                        status.digest = Some(p.inspection().digest.clone());
                        status.stats = p.stats();
                        let counters = slot.counters();
                        status.swaps = counters.swaps;
                        status.rollbacks = counters.rollbacks;
                    }
                    Slot::Failed(e) => {
                        status.state = "failed".into();
                        status.stats.last_error = Some(e.clone());
                    }
                    Slot::Job { plugin, result } => {
                        status.digest = plugin.as_ref().map(|p| p.inspection().digest.clone());
                        match &*result.lock().unwrap_or_else(|p| p.into_inner()) {
                            None => status.state = "running".into(),
                            Some((code, err)) => {
                                status.state =
                                    if *code == 0 { "completed" } else { "exited" }.into();
                                status.exit_code = Some(*code);
                                status.stats.last_error = err.clone();
                            }
                        }
                    }
                }
                status
            })
            .collect()
    }

    /// The slot of a running plugin.
    pub fn slot(&self, name: &str) -> Option<Arc<PluginSlot>> {
        match self.slots.get(name)? {
            Slot::Running(slot) => Some(slot.clone()),
            _ => None,
        }
    }

    /// Hot-swaps pipeline `name` to the component at `component` with `config` (a new version,
    /// a new configuration, or both), health-checked before it serves. Grants and limits stay
    /// those of the running manifest.
    pub async fn swap(
        &self,
        name: &str,
        component: &std::path::Path,
        version: Option<String>,
        config: BTreeMap<String, String>,
    ) -> Result<(), RuntimeError> {
        let slot = self
            .slot(name)
            .ok_or_else(|| RuntimeError::plugin(name, "is not running"))?;
        let mut spec = self.manifest.plugins[name].clone();
        if spec.kind != PluginKind::Pipeline {
            return Err(RuntimeError::plugin(
                name,
                format!("hot swap of {} plugins is not supported yet", spec.kind),
            ));
        }
        spec.component = component.to_path_buf();
        spec.version = version;
        spec.config = config;
        let plugin = Self::load_one(
            &self.manifest,
            &spec,
            &self.search_dirs,
            &self.engine,
            &self.cache,
            &self.linker,
            &self.bus,
            &self.kv,
        )?;
        slot.swap(plugin)
            .await
            .map_err(|e| RuntimeError::plugin(name, e))
    }

    /// Rolls plugin `name` back to its previous version.
    pub fn rollback(&self, name: &str) -> Result<(), RuntimeError> {
        let slot = self
            .slot(name)
            .ok_or_else(|| RuntimeError::plugin(name, "is not running"))?;
        slot.rollback("operator request")
            .map_err(|e| RuntimeError::plugin(name, e))
    }

    /// Stops serving: pipelines finish their current message, the listener closes.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
        }
        tracing::info!("appliance stopped");
    }
}

//! Routes: sources (bus topics, a plugin's output, timers, HTTP ingest) connected to targets
//! (pipelines, bus topics, sinks), IoT Edge style. Sinks deliver through an on-disk
//! store-and-forward spool, so a broker or webhook that is down loses nothing: messages wait
//! (bounded, with a TTL) and go out, in order, once it is back.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use outpost_manifest::{
    INGEST_SOURCE, Manifest, RouteSource, RouteSpec, RouteTarget, SinkSpec, SinkTargetSpec,
    TimerSpec, TopicPattern, timer_source,
};
use outpost_services::{
    Bus, BusMessage, SharedProvider, Sink, SinkConfig, SinkStats, SinkTarget, Spool, SpoolLimits,
};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::deployment::{Delivery, deliver_to_pipeline};
use crate::error::RuntimeError;

/// Queue length of each route's subscription.
const ROUTE_QUEUE: usize = 8192;

/// Counters of one route.
#[derive(Debug, Default)]
pub(crate) struct RouteCounters {
    pub forwarded: AtomicU64,
    pub failed: AtomicU64,
}

/// What status and metrics show of a route.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RouteStatus {
    /// Source as written.
    pub from: String,
    /// Target as written.
    pub to: String,
    /// Messages handed to the target.
    pub forwarded: u64,
    /// Messages the target refused (a full sink spool, a missing plugin, a failed plugin call,
    /// the bus).
    pub failed: u64,
    /// Messages dropped because the route's queue was full.
    pub dropped: u64,
}

struct RunningRoute {
    spec: RouteSpec,
    counters: Arc<RouteCounters>,
    dropped: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Resolves a pipeline target by name at delivery time, so routes keep working across hot
/// swaps and re-applies.
pub(crate) type PipelineLookup =
    Arc<dyn Fn(&str) -> Option<Arc<crate::slot::PluginSlot>> + Send + Sync>;

/// The running routes, timers and sinks of the appliance.
pub(crate) struct Routing {
    sinks: BTreeMap<String, (SinkSpec, Sink)>,
    /// Each sink's spool (a handle on the same database the sink drains), for key rotation.
    spools: BTreeMap<String, Spool>,
    routes: Vec<RunningRoute>,
    timers: Vec<(watch::Sender<bool>, JoinHandle<()>)>,
}

fn sink_config(host_name: &str, spec: &SinkSpec) -> SinkConfig {
    let target = match &spec.target {
        SinkTargetSpec::Mqtt {
            host,
            port,
            client_id,
            topic_prefix,
            qos,
        } => SinkTarget::Mqtt {
            host: host.clone(),
            port: *port,
            client_id: client_id
                .clone()
                .unwrap_or_else(|| format!("{host_name}-{}", spec.name)),
            topic_prefix: topic_prefix.clone(),
            qos: *qos,
            keep_alive: Duration::from_secs(30),
        },
        SinkTargetSpec::Webhook { url, headers } => SinkTarget::Webhook {
            url: url.clone(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            timeout: Duration::from_secs(10),
        },
    };
    let mut config = SinkConfig::new(spec.name.clone(), target);
    config.spool = SpoolLimits {
        max_bytes: spec.buffer.max_bytes,
        max_messages: spec.buffer.max_messages,
        ttl: Duration::from_secs(spec.buffer.ttl_secs),
    };
    config
}

impl Routing {
    pub(crate) fn empty() -> Routing {
        Routing {
            sinks: BTreeMap::new(),
            spools: BTreeMap::new(),
            routes: Vec::new(),
            timers: Vec::new(),
        }
    }

    /// Whether the routing parts of two manifests differ.
    pub(crate) fn differs(a: &Manifest, b: &Manifest) -> bool {
        a.routes != b.routes || a.timers != b.timers || a.sinks != b.sinks
    }

    /// Brings routes, timers and sinks to what `manifest` declares. Sinks whose spec did not
    /// change keep running (and keep their connection); a changed sink is restarted on the same
    /// spool file, so nothing queued is lost. Returns what changed, for the apply report.
    pub(crate) async fn apply(
        &mut self,
        manifest: &Manifest,
        bus: &Bus,
        spool_dir: Option<&Path>,
        keys: Option<&SharedProvider>,
        lookup: PipelineLookup,
    ) -> Result<Vec<String>, RuntimeError> {
        let mut changes = Vec::new();
        // Routes and timers stop first (draining what they hold) so nothing is sent to a sink
        // while it is being replaced.
        for r in std::mem::take(&mut self.routes) {
            let _ = r.stop.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(10), r.task).await;
        }
        for (stop, task) in std::mem::take(&mut self.timers) {
            let _ = stop.send(true);
            let _ = task.await;
        }
        let old: Vec<String> = self.sinks.keys().cloned().collect();
        for name in old {
            let keep = manifest.sinks.get(&name) == self.sinks.get(&name).map(|(s, _)| s);
            if !keep && let Some((_, sink)) = self.sinks.remove(&name) {
                self.spools.remove(&name);
                sink.shutdown().await;
                drop(sink);
                changes.push(format!(
                    "sink `{name}` {}",
                    if manifest.sinks.contains_key(&name) {
                        "reconfigured"
                    } else {
                        "removed"
                    }
                ));
            }
        }
        for (name, spec) in &manifest.sinks {
            if self.sinks.contains_key(name) {
                continue;
            }
            let config = sink_config(&manifest.host.name, spec);
            let spool = match spool_dir {
                Some(dir) => {
                    std::fs::create_dir_all(dir).map_err(|e| RuntimeError::io(dir, e))?;
                    let path = dir.join(format!("{name}.redb"));
                    match keys {
                        Some(p) => Spool::open_encrypted(&path, config.spool, p.clone()),
                        None => Spool::open(&path, config.spool),
                    }
                }
                None => Spool::in_memory(config.spool),
            }
            .map_err(|e| RuntimeError::Service(format!("sink `{name}`: {e}")))?;
            self.spools.insert(name.clone(), spool.clone());
            let sink = Sink::start(config, spool)
                .map_err(|e| RuntimeError::Service(format!("sink `{name}`: {e}")))?;
            if !changes
                .iter()
                .any(|c| c.starts_with(&format!("sink `{name}` ")))
            {
                changes.push(format!("sink `{name}` added"));
            }
            self.sinks.insert(name.clone(), (spec.clone(), sink));
        }
        for timer in manifest.timers.values() {
            self.timers.push(start_timer(bus.clone(), timer.clone()));
        }
        for spec in &manifest.routes {
            let sink = match &spec.to {
                RouteTarget::Sink(name) => self.sinks.get(name).map(|(_, s)| s.clone()),
                _ => None,
            };
            self.routes.push(start_route(
                bus,
                spec.clone(),
                &manifest.timers,
                sink,
                lookup.clone(),
            ));
        }
        Ok(changes)
    }

    /// Routes' counters.
    pub(crate) fn route_status(&self) -> Vec<RouteStatus> {
        self.routes
            .iter()
            .map(|r| RouteStatus {
                from: r.spec.from_text.clone(),
                to: r.spec.to_text.clone(),
                forwarded: r.counters.forwarded.load(Ordering::Relaxed),
                failed: r.counters.failed.load(Ordering::Relaxed),
                dropped: r.dropped.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Sinks' delivery and spool counters.
    pub(crate) fn sink_stats(&self) -> Vec<SinkStats> {
        self.sinks.values().map(|(_, s)| s.stats()).collect()
    }

    /// Wraps every spool's data key under the KEK's newest version; returns how many.
    pub(crate) fn rewrap_spools(&self) -> Result<usize, RuntimeError> {
        for (name, spool) in &self.spools {
            spool
                .rewrap()
                .map_err(|e| RuntimeError::Service(format!("sink `{name}`: {e}")))?;
        }
        Ok(self.spools.len())
    }

    /// Checks every spool's data key still unwraps; returns the first failure.
    pub(crate) fn check_spool_keys(&self) -> Result<(), String> {
        for (name, spool) in &self.spools {
            spool
                .check_key()
                .map_err(|e| format!("sink `{name}`: {e}"))?;
        }
        Ok(())
    }

    /// Stops everything; spooled messages stay on disk for the next start.
    pub(crate) async fn shutdown(&mut self) {
        let empty = Manifest::parse("", "shutdown").expect("the empty manifest is valid");
        let lookup: PipelineLookup = Arc::new(|_| None);
        let bus = Bus::new(0);
        let _ = self.apply(&empty, &bus, None, None, lookup).await;
    }
}

fn start_timer(bus: Bus, timer: TimerSpec) -> (watch::Sender<bool>, JoinHandle<()>) {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let source = timer_source(&timer.name);
        let mut ticks = tokio::time::interval(Duration::from_millis(timer.every_ms));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is immediate; the first message comes one period in
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopped.changed() => return,
            }
            if let Err(e) = bus.publish(&source, &timer.topic, timer.payload.clone()) {
                tracing::warn!(timer = %timer.name, error = %e, "timer tick refused by the bus");
            }
        }
    });
    (stop, task)
}

/// The bus subscription pattern and publisher filter of a route source.
fn source_filter(
    from: &RouteSource,
    timers: &BTreeMap<String, TimerSpec>,
) -> (TopicPattern, Option<String>) {
    match from {
        RouteSource::Topics(p) => (p.clone(), None),
        RouteSource::Plugin { plugin, topics } => (topics.clone(), Some(plugin.clone())),
        RouteSource::Ingest(p) => (p.clone(), Some(INGEST_SOURCE.to_string())),
        RouteSource::Timer(name) => {
            let topic = timers.get(name).map_or("#", |t| t.topic.as_str());
            let pattern = TopicPattern::parse(topic)
                .unwrap_or_else(|_| TopicPattern::parse("#").expect("`#` is a valid pattern"));
            (pattern, Some(timer_source(name)))
        }
    }
}

fn start_route(
    bus: &Bus,
    spec: RouteSpec,
    timers: &BTreeMap<String, TimerSpec>,
    sink: Option<Sink>,
    lookup: PipelineLookup,
) -> RunningRoute {
    let (pattern, publisher) = source_filter(&spec.from, timers);
    let name = format!("route:{}->{}", spec.from_text, spec.to_text);
    let sub = bus.subscribe(&name, vec![pattern], ROUTE_QUEUE);
    let dropped = sub.dropped_counter();
    let counters = Arc::new(RouteCounters::default());
    let (stop, stopped) = watch::channel(false);
    let route = RouteWorker {
        bus: bus.clone(),
        name,
        target: spec.to.clone(),
        publisher,
        sink,
        lookup,
        counters: counters.clone(),
    };
    let task = tokio::spawn(route.run(sub, stopped));
    RunningRoute {
        spec,
        counters,
        dropped,
        stop,
        task,
    }
}

/// Most messages handed to a sink in one spool write.
const SINK_BATCH: usize = 256;

/// The task behind one route.
struct RouteWorker {
    bus: Bus,
    name: String,
    target: RouteTarget,
    publisher: Option<String>,
    sink: Option<Sink>,
    lookup: PipelineLookup,
    counters: Arc<RouteCounters>,
}

impl RouteWorker {
    fn wanted(&self, msg: &BusMessage) -> bool {
        self.publisher.as_deref().is_none_or(|p| p == msg.source) && msg.source != self.name
    }

    /// Forwards messages until stopped, then drains what is queued. Messages for a sink are
    /// taken in batches (everything queued, up to [`SINK_BATCH`]) so one durable spool write
    /// covers many of them.
    async fn run(
        self,
        mut sub: outpost_services::Subscription,
        mut stopped: watch::Receiver<bool>,
    ) {
        let mut stopping = false;
        loop {
            let first = if stopping {
                match sub.try_recv() {
                    Some(m) => m,
                    None => return,
                }
            } else {
                tokio::select! {
                    m = sub.recv() => match m { Some(m) => m, None => return },
                    _ = stopped.changed() => { stopping = true; continue; }
                }
            };
            let mut batch = vec![first];
            if self.sink.is_some() {
                while batch.len() < SINK_BATCH {
                    match sub.try_recv() {
                        Some(m) => batch.push(m),
                        None => break,
                    }
                }
            }
            batch.retain(|m| self.wanted(m));
            if batch.is_empty() {
                continue;
            }
            if let Some(sink) = &self.sink {
                let items: Vec<(&str, &[u8])> = batch
                    .iter()
                    .map(|m| (m.topic.as_str(), m.payload.as_slice()))
                    .collect();
                let n = items.len() as u64;
                match sink.send_batch(&items) {
                    Ok(_) => self.counters.forwarded.fetch_add(n, Ordering::Relaxed),
                    Err(e) => {
                        tracing::warn!(route = %self.name, sink = %sink.name(), error = %e, messages = n, "sink refused messages");
                        self.counters.failed.fetch_add(n, Ordering::Relaxed)
                    }
                };
                continue;
            }
            for msg in &batch {
                let counter =
                    match forward(&self.bus, &self.name, &self.target, None, &self.lookup, msg)
                        .await
                    {
                        Outcome::Forwarded => &self.counters.forwarded,
                        Outcome::Failed => &self.counters.failed,
                        Outcome::Skipped => continue,
                    };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// What a route did with one message, for its counters.
enum Outcome {
    /// The target took it.
    Forwarded,
    /// The target refused it, or could not be reached.
    Failed,
    /// Not for the target (a pipeline's own output): counted as neither.
    Skipped,
}

async fn forward(
    bus: &Bus,
    route: &str,
    target: &RouteTarget,
    sink: Option<&Sink>,
    lookup: &PipelineLookup,
    msg: &BusMessage,
) -> Outcome {
    match target {
        RouteTarget::Sink(name) => match sink {
            Some(sink) => match sink.send(&msg.topic, &msg.payload) {
                Ok(_) => Outcome::Forwarded,
                Err(e) => {
                    tracing::warn!(%route, sink = %name, error = %e, "sink refused a message");
                    Outcome::Failed
                }
            },
            None => Outcome::Failed,
        },
        RouteTarget::Topic(topic) => match bus.publish(route, topic, msg.payload.clone()) {
            Ok(_) => Outcome::Forwarded,
            Err(e) => {
                tracing::warn!(%route, error = %e, "republish refused by the bus");
                Outcome::Failed
            }
        },
        RouteTarget::Plugin(name) => match lookup(name) {
            Some(slot) => match deliver_to_pipeline(&slot, bus, msg).await {
                Delivery::Handled => Outcome::Forwarded,
                Delivery::Failed => Outcome::Failed,
                Delivery::OwnOutput => Outcome::Skipped,
            },
            None => {
                tracing::warn!(%route, plugin = %name, "route target is not running; message dropped");
                Outcome::Failed
            }
        },
    }
}

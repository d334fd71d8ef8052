//! One plugin as the appliance runs it: its slot (or job runner), the bus consumer that feeds
//! it, its desired spec and digest, and the bookkeeping that status and metrics report.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_manifest::{PluginSpec, RestartPolicy, RestartSpec, TopicPattern};
use outpost_services::{Bus, BusMessage, Subscription};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cache::CompileCache;
use crate::engine::HostEngine;
use crate::job::{JobOptions, JobStdio, TRAP_EXIT_CODE, run_job};
use crate::slot::PluginSlot;

/// Queue length of each pipeline's subscription.
pub(crate) const PIPELINE_QUEUE: usize = 1024;
/// How long a stopping consumer may spend on messages already queued for it.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// A job that ran at least this long before ending starts its backoff afresh (as Kubernetes
/// resets a container's backoff after ten minutes of running).
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

/// What runs for a plugin.
pub(crate) enum Runner {
    /// A callable plugin behind its slot.
    Slot(Arc<PluginSlot>),
    /// A plugin that could not be loaded, and why.
    Failed(String),
    /// A job and its restart loop.
    Job(Arc<JobRun>),
}

/// One deployed plugin.
pub(crate) struct Deployment {
    /// The spec this deployment was made from (the desired state).
    pub spec: PluginSpec,
    /// Digest of the component file the spec resolved to, when it was applied.
    pub desired_digest: Option<String>,
    /// What runs.
    pub runner: Runner,
    /// The last error of an apply that could not bring this plugin to its desired state.
    pub apply_error: Mutex<Option<String>>,
    /// The bus consumer feeding a pipeline its subscriptions.
    pub consumer: Mutex<Option<Consumer>>,
    /// A network function's ports, data path, control path and timer.
    pub nf: Mutex<Option<Arc<crate::nf::NfRunner>>>,
}

impl Deployment {
    pub(crate) fn new(spec: PluginSpec, desired_digest: Option<String>, runner: Runner) -> Self {
        Deployment {
            spec,
            desired_digest,
            runner,
            apply_error: Mutex::new(None),
            consumer: Mutex::new(None),
            nf: Mutex::new(None),
        }
    }

    pub(crate) fn slot(&self) -> Option<&Arc<PluginSlot>> {
        match &self.runner {
            Runner::Slot(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn set_apply_error(&self, error: Option<String>) {
        *self.apply_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }

    /// The network function runner, if this is a running network function.
    pub(crate) fn nf(&self) -> Option<Arc<crate::nf::NfRunner>> {
        self.nf.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn apply_error(&self) -> Option<String> {
        self.apply_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops what this deployment runs: its consumer (after draining) and its job.
    pub(crate) async fn stop(&self) {
        let consumer = self
            .consumer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(c) = consumer {
            c.stop().await;
        }
        let nf = self.nf.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(nf) = nf {
            nf.stop().await;
        }
        if let Runner::Job(job) = &self.runner {
            job.stop().await;
        }
    }
}

/// A task feeding bus messages to a pipeline, one at a time, in order.
pub(crate) struct Consumer {
    /// The topics it is subscribed to.
    pub patterns: Vec<TopicPattern>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Consumer {
    /// Subscribes `slot` to `patterns` and starts feeding it.
    pub(crate) fn start(bus: &Bus, slot: Arc<PluginSlot>, patterns: Vec<TopicPattern>) -> Self {
        let name = slot.active().name().to_string();
        let sub = bus.subscribe(&name, patterns.clone(), PIPELINE_QUEUE);
        let bus = bus.clone();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(consume(sub, stopped, move |msg| {
            let (slot, bus) = (slot.clone(), bus.clone());
            async move {
                deliver_to_pipeline(&slot, &bus, &msg).await;
            }
        }));
        Consumer {
            patterns,
            stop,
            task,
        }
    }

    /// Stops taking new messages, handles those already queued (for at most a few seconds),
    /// and ends.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(DRAIN_LIMIT * 2, &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// Runs `on_message` for each message of `sub` until `stopped` turns true, then drains what is
/// already queued.
pub(crate) async fn consume<F, Fut>(
    mut sub: Subscription,
    mut stopped: watch::Receiver<bool>,
    mut on_message: F,
) where
    F: FnMut(BusMessage) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    loop {
        let msg = tokio::select! {
            m = sub.recv() => match m { Some(m) => m, None => return },
            _ = stopped.changed() => break,
        };
        on_message(msg).await;
    }
    // Messages already accepted for this consumer are handled, not silently dropped.
    let until = Instant::now() + DRAIN_LIMIT;
    while Instant::now() < until {
        let Some(msg) = sub.try_recv() else { return };
        on_message(msg).await;
    }
    tracing::warn!(
        subscriber = sub.name(),
        "stopped before its queue was drained"
    );
}

/// What became of a message offered to a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// The pipeline handled it; its outputs went to the bus within its publish grant.
    Handled,
    /// It was the pipeline's own output, so the pipeline was not called.
    OwnOutput,
    /// The call failed (the plugin counts and logs why).
    Failed,
}

/// Calls the pipeline in `slot` with one message and publishes its outputs within the publish
/// grant of the version that handled it.
pub(crate) async fn deliver_to_pipeline(
    slot: &PluginSlot,
    bus: &Bus,
    msg: &BusMessage,
) -> Delivery {
    // A pipeline never receives its own output: no accidental feedback loops. Checked before
    // the call, so the plugin does no work (models, kv writes) whose result would be dropped.
    if msg.source == slot.active().name() {
        return Delivery::OwnOutput;
    }
    let (plugin, result) = slot.call(&msg.topic, &msg.payload).await;
    let name = plugin.name();
    let Ok(outputs) = result else {
        return Delivery::Failed;
    };
    let grants = &plugin.context().grants.bus;
    for out in outputs {
        if !grants.may_publish(&out.topic) {
            tracing::warn!(plugin = %name, topic = %out.topic, "output to a topic outside the publish grant refused");
            continue;
        }
        if let Err(e) = bus.publish(name, &out.topic, out.payload) {
            tracing::warn!(plugin = %name, error = %e, "output refused by the bus");
        }
    }
    Delivery::Handled
}

/// Where a job is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "phase")]
pub enum JobPhase {
    /// Not started yet.
    Starting,
    /// Running now.
    Running,
    /// Ended with exit code 0 and will not be restarted.
    Completed,
    /// Ended with a non-zero code or a trap and will not be restarted.
    Exited,
    /// Ended and waiting out its backoff before the next start.
    Restarting {
        /// Milliseconds until the next start.
        in_ms: u64,
    },
    /// Stopped by the host (removed, replaced, or the host is shutting down).
    Stopped,
}

/// A job, its restart loop, and what it reported.
pub(crate) struct JobRun {
    state: Mutex<JobState>,
    restarts: AtomicU64,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Clone)]
struct JobState {
    phase: JobPhase,
    exit_code: Option<i32>,
    error: Option<String>,
}

/// What status shows of a job.
pub(crate) struct JobReport {
    pub phase: JobPhase,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub restarts: u64,
}

impl JobRun {
    /// Starts `spec`'s job from `path` under its restart policy.
    pub(crate) fn start(
        spec: PluginSpec,
        path: PathBuf,
        engine: Arc<HostEngine>,
        cache: Arc<CompileCache>,
    ) -> Arc<JobRun> {
        let (stop, stopped) = watch::channel(false);
        let run = Arc::new(JobRun {
            state: Mutex::new(JobState {
                phase: JobPhase::Starting,
                exit_code: None,
                error: None,
            }),
            restarts: AtomicU64::new(0),
            stop,
            task: Mutex::new(None),
        });
        let task = tokio::spawn(run.clone().run(spec, path, engine, cache, stopped));
        *run.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        run
    }

    fn set(&self, f: impl FnOnce(&mut JobState)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
    }

    async fn run(
        self: Arc<Self>,
        spec: PluginSpec,
        path: PathBuf,
        engine: Arc<HostEngine>,
        cache: Arc<CompileCache>,
        mut stopped: watch::Receiver<bool>,
    ) {
        let mut attempt: u32 = 0;
        loop {
            self.set(|s| s.phase = JobPhase::Running);
            let started = Instant::now();
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
                Ok(bytes) => tokio::select! {
                    o = run_job(&engine, &cache, &bytes, opts) => o.map_err(|e| e.to_string()),
                    _ = stopped.changed() => {
                        self.set(|s| s.phase = JobPhase::Stopped);
                        return;
                    }
                },
                Err(e) => Err(format!("{}: {e}", path.display())),
            };
            let (code, error) = match outcome {
                Ok(o) => {
                    tracing::info!(job = %spec.name, exit_code = o.exit_code, elapsed_ms = o.elapsed.as_millis() as u64, "job finished");
                    (o.exit_code, o.error.map(|e| e.to_string()))
                }
                Err(e) => {
                    tracing::error!(job = %spec.name, error = %e, "job failed to run");
                    (TRAP_EXIT_CODE, Some(e))
                }
            };
            let failed = code != 0;
            let again = match spec.restart.policy {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => failed,
                RestartPolicy::Never => false,
            };
            self.set(|s| {
                s.exit_code = Some(code);
                s.error = error;
                s.phase = if !again {
                    if failed {
                        JobPhase::Exited
                    } else {
                        JobPhase::Completed
                    }
                } else {
                    JobPhase::Starting
                };
            });
            if !again {
                return;
            }
            if started.elapsed() >= BACKOFF_RESET_AFTER {
                attempt = 0;
            }
            let delay = backoff(&spec.restart, attempt);
            attempt = attempt.saturating_add(1);
            tracing::info!(job = %spec.name, delay_ms = delay.as_millis() as u64, exit_code = code, "job will be restarted");
            self.set(|s| {
                s.phase = JobPhase::Restarting {
                    in_ms: delay.as_millis() as u64,
                }
            });
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopped.changed() => {
                    self.set(|s| s.phase = JobPhase::Stopped);
                    return;
                }
            }
            self.restarts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What status shows.
    pub(crate) fn report(&self) -> JobReport {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        JobReport {
            phase: s.phase,
            exit_code: s.exit_code,
            error: s.error,
            restarts: self.restarts.load(Ordering::Relaxed),
        }
    }

    /// Stops the job (a running instance is dropped) and its restart loop.
    pub(crate) async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

/// The delay before restart number `attempt` (0-based): the base doubled per attempt, capped.
pub(crate) fn backoff(spec: &RestartSpec, attempt: u32) -> Duration {
    let ms = spec
        .backoff_ms
        .saturating_mul(1u64 << attempt.min(32))
        .min(spec.max_backoff_ms);
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_and_stops_at_the_cap() {
        let spec = RestartSpec {
            policy: RestartPolicy::Always,
            backoff_ms: 100,
            max_backoff_ms: 1_000,
        };
        let delays: Vec<u64> = (0..6)
            .map(|a| backoff(&spec, a).as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(backoff(&spec, u32::MAX).as_millis(), 1_000);
    }
}

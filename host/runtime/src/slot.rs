//! Plugin slots: the active version of a plugin behind an atomic pointer, hot swap gated by a
//! health check, and rollback — by hand or automatic when a new version keeps failing.
//!
//! A call loads the active version once and runs to completion on it, so a swap never
//! interrupts a call in flight: calls that started before the swap finish on the old version,
//! calls that start after it run on the new one, and none fails because of the swap. State lives
//! in the host (kv), so the new version starts with the old one's state.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};
use serde::Serialize;

use crate::error::CallError;
use crate::plugin::{OutMessage, Plugin};

/// When to roll a freshly swapped-in version back by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollbackPolicy {
    /// Roll back once a new version traps or breaks a limit more than this many times...
    pub max_failures: u32,
    /// ...within this window.
    pub window: Duration,
}

impl Default for RollbackPolicy {
    fn default() -> Self {
        RollbackPolicy {
            max_failures: 3,
            window: Duration::from_secs(60),
        }
    }
}

/// How a version's health is checked before it takes traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthProbe {
    /// No check: the version serves as soon as it is pre-instantiated.
    None,
    /// Call the pipeline's `handle` with this topic and payload; it must return `Ok`.
    Call {
        /// Probe topic.
        topic: String,
        /// Probe payload.
        payload: Vec<u8>,
    },
}

/// What happened in a slot, newest last.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum SlotEvent {
    /// A new version took over.
    Swapped {
        /// Seconds since the Unix epoch.
        at: u64,
        /// Digest of the version that was replaced.
        from: String,
        /// Digest of the version now serving.
        to: String,
    },
    /// A candidate failed its health check and never served.
    Rejected {
        /// Seconds since the Unix epoch.
        at: u64,
        /// Digest of the candidate.
        candidate: String,
        /// Why.
        reason: String,
    },
    /// A new version started serving a share of calls (staged rollout).
    CanaryStarted {
        /// Seconds since the Unix epoch.
        at: u64,
        /// Digest of the new version.
        candidate: String,
        /// Percent of calls it gets.
        percent: u8,
        /// Calls it must serve before it takes over.
        calls: u32,
    },
    /// A staged rollout was stopped; the active version kept serving throughout.
    CanaryAborted {
        /// Seconds since the Unix epoch.
        at: u64,
        /// Digest of the new version.
        candidate: String,
        /// Why (failures, an operator, a newer version).
        reason: String,
    },
    /// The previous version was restored.
    RolledBack {
        /// Seconds since the Unix epoch.
        at: u64,
        /// Digest of the version taken out.
        from: String,
        /// Digest of the version restored.
        to: String,
        /// Why (an operator, or the failures that triggered it).
        reason: String,
        /// Whether the host did it by itself.
        automatic: bool,
    },
}

/// Why a swap or rollback did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// The candidate failed its health check; the old version keeps serving.
    #[error("plugin `{plugin}`: the new version failed its health check: {reason}")]
    Unhealthy {
        /// Plugin name.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// There is no previous version to go back to.
    #[error("plugin `{0}` has no previous version to roll back to")]
    NoPrevious(String),
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct Versions {
    previous: Option<Arc<Plugin>>,
    /// Failures of the active version since it was swapped in (only tracked after a swap).
    failures: VecDeque<Instant>,
    /// Whether the active version came from a swap (and so may be rolled back automatically).
    on_probation: bool,
    events: Vec<SlotEvent>,
    swaps: u64,
    rollbacks: u64,
    policy: RollbackPolicy,
    probe: HealthProbe,
}

/// Most events a slot remembers.
const MAX_EVENTS: usize = 100;

impl Versions {
    fn push(&mut self, event: SlotEvent) {
        if self.events.len() == MAX_EVENTS {
            self.events.remove(0);
        }
        self.events.push(event);
    }
}

/// A new version serving a share of calls before it takes over.
struct Canary {
    plugin: Arc<Plugin>,
    percent: u64,
    calls: u32,
    /// Calls seen by the slot since the canary started (picks which go to it).
    seen: AtomicU64,
    /// Calls the canary completed without a trap.
    served: AtomicU32,
    /// Calls of the canary that trapped or broke a limit.
    failures: AtomicU32,
}

/// Observes a slot's events (the update audit log).
pub type EventHook = Arc<dyn Fn(&str, &SlotEvent) + Send + Sync>;

/// One plugin's slot.
pub struct PluginSlot {
    name: String,
    active: ArcSwap<Plugin>,
    canary: ArcSwapOption<Canary>,
    versions: Mutex<Versions>,
    hook: Mutex<Option<EventHook>>,
}

/// A staged rollout in progress.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CanaryStatus {
    /// Digest of the new version.
    pub candidate: String,
    /// Percent of calls it gets.
    pub percent: u8,
    /// Calls it must serve before it takes over.
    pub calls: u32,
    /// Calls it has served.
    pub served: u32,
    /// Its failed calls.
    pub failures: u32,
}

/// Counters of a slot.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct SlotCounters {
    /// Successful swaps.
    pub swaps: u64,
    /// Rollbacks, manual and automatic.
    pub rollbacks: u64,
}

impl PluginSlot {
    /// A slot serving `plugin`.
    pub fn new(plugin: Arc<Plugin>, policy: RollbackPolicy, probe: HealthProbe) -> PluginSlot {
        PluginSlot {
            name: plugin.name().to_string(),
            active: ArcSwap::new(plugin),
            canary: ArcSwapOption::empty(),
            hook: Mutex::new(None),
            versions: Mutex::new(Versions {
                previous: None,
                failures: VecDeque::new(),
                on_probation: false,
                events: Vec::new(),
                swaps: 0,
                rollbacks: 0,
                policy,
                probe,
            }),
        }
    }

    /// Replaces the rollback policy and health probe (a new manifest changed them); they apply
    /// from the next swap on.
    pub fn set_policy(&self, policy: RollbackPolicy, probe: HealthProbe) {
        let mut v = self.versions();
        v.policy = policy;
        v.probe = probe;
    }

    fn versions(&self) -> std::sync::MutexGuard<'_, Versions> {
        self.versions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Calls `hook` with every later event of this slot.
    pub fn set_hook(&self, hook: EventHook) {
        *self.hook.lock().unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    /// Records `event` and tells the hook. The caller holds the versions lock.
    fn record(&self, v: &mut Versions, event: SlotEvent) {
        let hook = self.hook.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(hook) = hook {
            hook(&self.name, &event);
        }
        v.push(event);
    }

    /// The staged rollout in progress, if any.
    pub fn canary(&self) -> Option<CanaryStatus> {
        self.canary.load_full().map(|c| CanaryStatus {
            candidate: c.plugin.inspection().digest.clone(),
            percent: c.percent as u8,
            calls: c.calls,
            served: c.served.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
        })
    }

    /// Health-checks `candidate`, then sends it `percent` % of calls until it has served
    /// `calls` of them, when it takes over like a swap. More than the rollback policy's
    /// `max_failures` failed calls stop the rollout; the active version serves throughout.
    pub async fn start_canary(
        &self,
        candidate: Arc<Plugin>,
        percent: u8,
        calls: u32,
    ) -> Result<(), SlotError> {
        self.admit(&candidate).await?;
        let digest = candidate.inspection().digest.clone();
        let mut v = self.versions();
        self.drop_canary(&mut v, "replaced by a newer version");
        tracing::info!(plugin = %self.name, candidate = %digest, percent, calls, "canary started");
        self.record(
            &mut v,
            SlotEvent::CanaryStarted {
                at: now_secs(),
                candidate: digest,
                percent,
                calls,
            },
        );
        self.canary.store(Some(Arc::new(Canary {
            plugin: candidate,
            percent: u64::from(percent),
            calls,
            seen: AtomicU64::new(0),
            served: AtomicU32::new(0),
            failures: AtomicU32::new(0),
        })));
        Ok(())
    }

    /// Stops a staged rollout (the active version keeps serving); false if none ran.
    pub fn abort_canary(&self, reason: &str) -> bool {
        let mut v = self.versions();
        match self.canary.swap(None) {
            Some(c) => {
                tracing::warn!(plugin = %self.name, candidate = %c.plugin.inspection().digest, reason, "canary aborted");
                self.record(
                    &mut v,
                    SlotEvent::CanaryAborted {
                        at: now_secs(),
                        candidate: c.plugin.inspection().digest.clone(),
                        reason: reason.to_string(),
                    },
                );
                true
            }
            None => false,
        }
    }

    /// The canary `c` has served enough calls: it becomes the active version.
    fn promote(&self, c: &Arc<Canary>) {
        let mut v = self.versions();
        // Only the canary still installed is promoted (a concurrent abort or promotion wins).
        let current = self.canary.load();
        if !current.as_ref().is_some_and(|cur| Arc::ptr_eq(cur, c)) {
            return;
        }
        self.canary.store(None);
        self.install(&mut v, c.plugin.clone());
    }

    fn canary_failed(&self, c: &Arc<Canary>, error: &CallError) {
        let failures = c.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let max = self.versions().policy.max_failures;
        if failures > max {
            let current = self.canary.load();
            if current.as_ref().is_some_and(|cur| Arc::ptr_eq(cur, c)) {
                self.abort_canary(&format!(
                    "{failures} failed calls of {} (last: {error})",
                    c.served.load(Ordering::Relaxed) + failures
                ));
            }
        }
    }

    /// The version serving now.
    pub fn active(&self) -> Arc<Plugin> {
        self.active.load_full()
    }

    /// The version a rollback would restore.
    pub fn previous(&self) -> Option<Arc<Plugin>> {
        self.versions().previous.clone()
    }

    /// The slot's history, oldest first.
    pub fn events(&self) -> Vec<SlotEvent> {
        self.versions().events.clone()
    }

    /// Swap and rollback counts.
    pub fn counters(&self) -> SlotCounters {
        let v = self.versions();
        SlotCounters {
            swaps: v.swaps,
            rollbacks: v.rollbacks,
        }
    }

    async fn check_health(&self, candidate: &Plugin) -> Result<(), String> {
        let probe = self.versions().probe.clone();
        match &probe {
            HealthProbe::None => Ok(()),
            HealthProbe::Call { topic, payload } => candidate
                .handle(topic, payload)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }

    /// Runs the health probe on `candidate`; a failure is recorded as a rejection and returned.
    async fn admit(&self, candidate: &Plugin) -> Result<(), SlotError> {
        let Err(reason) = self.check_health(candidate).await else {
            return Ok(());
        };
        let digest = candidate.inspection().digest.clone();
        tracing::warn!(plugin = %self.name, candidate = %digest, %reason, "new version failed its health check; it does not serve");
        let mut v = self.versions();
        self.record(
            &mut v,
            SlotEvent::Rejected {
                at: now_secs(),
                candidate: digest,
                reason: reason.clone(),
            },
        );
        Err(SlotError::Unhealthy {
            plugin: self.name.clone(),
            reason,
        })
    }

    /// Ends a staged rollout in progress, if any, recording why. The caller holds the lock.
    fn drop_canary(&self, v: &mut Versions, reason: &str) {
        if let Some(c) = self.canary.swap(None) {
            self.record(
                v,
                SlotEvent::CanaryAborted {
                    at: now_secs(),
                    candidate: c.plugin.inspection().digest.clone(),
                    reason: reason.into(),
                },
            );
        }
    }

    /// Health-checks `candidate` while the active version keeps serving, then makes it active
    /// atomically; the replaced version is kept for rollback. A candidate that fails the check
    /// never serves.
    pub async fn swap(&self, candidate: Arc<Plugin>) -> Result<(), SlotError> {
        self.admit(&candidate).await?;
        let mut v = self.versions();
        self.drop_canary(&mut v, "replaced by a direct swap");
        self.install(&mut v, candidate);
        Ok(())
    }

    /// Makes `candidate` active; the replaced version is kept for rollback.
    fn install(&self, v: &mut Versions, candidate: Arc<Plugin>) {
        let digest = candidate.inspection().digest.clone();
        let old = self.active.swap(candidate);
        tracing::info!(plugin = %self.name, from = %old.inspection().digest, to = %digest, "swapped");
        self.record(
            v,
            SlotEvent::Swapped {
                at: now_secs(),
                from: old.inspection().digest.clone(),
                to: digest,
            },
        );
        v.previous = Some(old);
        v.failures.clear();
        v.on_probation = true;
        v.swaps += 1;
    }

    /// Restores the previous version (the current one becomes the previous).
    pub fn rollback(&self, reason: &str) -> Result<(), SlotError> {
        // During a staged rollout, rolling back means stopping it.
        if self.abort_canary(reason) {
            return Ok(());
        }
        let mut v = self.versions();
        self.rollback_locked(&mut v, reason, false)
    }

    fn rollback_locked(
        &self,
        v: &mut Versions,
        reason: &str,
        automatic: bool,
    ) -> Result<(), SlotError> {
        let Some(previous) = v.previous.take() else {
            return Err(SlotError::NoPrevious(self.name.clone()));
        };
        let to = previous.inspection().digest.clone();
        let out = self.active.swap(previous);
        tracing::warn!(plugin = %self.name, from = %out.inspection().digest, %to, reason, automatic, "rolled back");
        self.record(
            v,
            SlotEvent::RolledBack {
                at: now_secs(),
                from: out.inspection().digest.clone(),
                to,
                reason: reason.to_string(),
                automatic,
            },
        );
        v.previous = Some(out);
        v.failures.clear();
        v.on_probation = false;
        v.rollbacks += 1;
        Ok(())
    }

    /// Calls the active version's `handle`. A trap or broken limit of a version on probation
    /// counts towards automatic rollback.
    pub async fn handle(&self, topic: &str, payload: &[u8]) -> Result<Vec<OutMessage>, CallError> {
        self.call(topic, payload).await.1
    }

    /// Like [`PluginSlot::handle`], and also says which version handled the call.
    pub async fn call(
        &self,
        topic: &str,
        payload: &[u8],
    ) -> (Arc<Plugin>, Result<Vec<OutMessage>, CallError>) {
        if let Some(c) = self.canary.load_full() {
            let n = c.seen.fetch_add(1, Ordering::Relaxed);
            // Exactly `percent` of every hundred calls, spread evenly.
            if (n + 1) * c.percent / 100 > n * c.percent / 100 {
                let result = c.plugin.handle(topic, payload).await;
                match &result {
                    Err(e) if e.is_trap() => self.canary_failed(&c, e),
                    _ => {
                        if c.served.fetch_add(1, Ordering::Relaxed) + 1 >= c.calls {
                            self.promote(&c);
                        }
                    }
                }
                return (c.plugin.clone(), result);
            }
        }
        let plugin = self.active.load_full();
        let result = plugin.handle(topic, payload).await;
        if let Err(e) = &result
            && e.is_trap()
        {
            self.record_failure(&plugin, e);
        }
        (plugin, result)
    }

    /// Counts a failed call of `failed` (made outside [`PluginSlot::handle`], e.g. by the http
    /// front door) towards automatic rollback.
    pub(crate) fn record_failure(&self, failed: &Arc<Plugin>, error: &CallError) {
        let mut v = self.versions();
        // Only the version serving now is judged; a late failure of a replaced one is not.
        if !v.on_probation || !Arc::ptr_eq(failed, &self.active.load()) {
            return;
        }
        let now = Instant::now();
        v.failures.push_back(now);
        while v
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > v.policy.window)
        {
            v.failures.pop_front();
        }
        if v.failures.len() as u32 > v.policy.max_failures {
            let reason = format!(
                "{} failures within {:?} (last: {error})",
                v.failures.len(),
                v.policy.window
            );
            let _ = self.rollback_locked(&mut v, &reason, true);
        }
    }
}

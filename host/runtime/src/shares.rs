//! Shares in the appliance: each `[shares.NAME]` is an `outpost_storage::Share` with its sync
//! loop (upload, refresh, retries under the bandwidth schedule) and, for cloud-tiered shares
//! with a `policy`, a loop that asks the tiering-policy plugin what to do and applies its answer
//! under the host's safety rules. A policy that traps, overruns its deadline or proposes
//! nonsense is counted and overruled; the share keeps syncing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_manifest::{ShareKind, ShareSettings};
use outpost_storage::{
    BandwidthSchedule, ScheduleWindow, Share, ShareOptions, ShareSpec, ShareStats, Throttle,
    TimeOfDay, Weekday,
};
use serde::Serialize;
use tokio::sync::watch;

use crate::RuntimeError;
use crate::slot::PluginSlot;

/// Most files handed to a policy per evaluation (coldest first).
const MAX_POLICY_FILES: usize = 100_000;

/// What a share's policy loop did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PolicyStats {
    /// Evaluations run.
    pub evaluations: u64,
    /// Actions the host carried out.
    pub actions_applied: u64,
    /// Actions the host's safety rules refused (e.g. evicting an unsynced or pinned file).
    pub actions_refused: u64,
    /// Evaluations that failed (trap, deadline, nonsense output, policy missing).
    pub failures: u64,
    /// The last failure or refusal.
    pub last_error: Option<String>,
    /// Whether the volume was under low-space pressure at the last evaluation.
    pub low_space: bool,
}

/// A share as status reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ShareStatus {
    /// Share name.
    pub name: String,
    /// `edge-local` or `cloud-tiered`.
    pub kind: ShareKind,
    /// Local directory.
    pub path: String,
    /// Object store target.
    pub target: Option<String>,
    /// The tiering policy plugin.
    pub policy: Option<String>,
    /// Bytes and files per state, upload queue and rate, throttling.
    pub stats: Option<ShareStats>,
    /// Why stats are missing.
    pub error: Option<String>,
    /// The policy loop's counters.
    pub policy_stats: PolicyStats,
}

/// The host's open shares by name, shared with the plugins granted them.
#[derive(Clone, Default)]
pub struct ShareRegistry(Arc<Mutex<BTreeMap<String, Arc<RunningShare>>>>);

impl ShareRegistry {
    /// The open share `name`.
    pub fn get(&self, name: &str) -> Option<Arc<RunningShare>> {
        self.lock().get(name).cloned()
    }

    /// Every open share.
    pub fn all(&self) -> Vec<Arc<RunningShare>> {
        self.lock().values().cloned().collect()
    }

    /// Adds an opened share.
    pub fn insert(&self, name: String, share: Arc<RunningShare>) {
        self.lock().insert(name, share);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<RunningShare>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for ShareRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.lock().keys()).finish()
    }
}

/// One running share.
pub struct RunningShare {
    settings: ShareSettings,
    share: Share,
    policy: Mutex<PolicyStats>,
}

fn schedule(settings: &ShareSettings) -> Result<BandwidthSchedule, RuntimeError> {
    let bad = |e: outpost_storage::StorageError| {
        RuntimeError::Service(format!("shares.{}.bandwidth: {e}", settings.name))
    };
    let mut windows = Vec::new();
    for (w, rate) in &settings.bandwidth.windows {
        let days = w
            .days
            .iter()
            .map(|d| match d {
                outpost_manifest::Weekday::Mon => Weekday::Mon,
                outpost_manifest::Weekday::Tue => Weekday::Tue,
                outpost_manifest::Weekday::Wed => Weekday::Wed,
                outpost_manifest::Weekday::Thu => Weekday::Thu,
                outpost_manifest::Weekday::Fri => Weekday::Fri,
                outpost_manifest::Weekday::Sat => Weekday::Sat,
                outpost_manifest::Weekday::Sun => Weekday::Sun,
            })
            .collect();
        let time = |m: u16| TimeOfDay::new((m / 60) as u8, (m % 60) as u8).map_err(bad);
        windows.push(ScheduleWindow {
            days,
            start: time(w.start_minute)?,
            stop: time(w.stop_minute)?,
            rate_mbps: *rate,
        });
    }
    Ok(BandwidthSchedule {
        windows,
        default_rate_mbps: settings.bandwidth.default_mbps,
        utc_offset_minutes: 0,
    })
}

impl RunningShare {
    /// Opens the share (its journal reconciles with the directory).
    pub async fn open(
        settings: &ShareSettings,
        encryption: Option<outpost_services::SharedProvider>,
    ) -> Result<RunningShare, RuntimeError> {
        let err = |e: outpost_storage::StorageError| {
            RuntimeError::Service(format!("share `{}`: {e}", settings.name))
        };
        std::fs::create_dir_all(&settings.path).map_err(|e| RuntimeError::io(&settings.path, e))?;
        let spec = ShareSpec {
            name: settings.name.clone(),
            root: settings.path.clone(),
            kind: match settings.kind {
                ShareKind::EdgeLocal => outpost_storage::ShareKind::EdgeLocal,
                ShareKind::CloudTiered => outpost_storage::ShareKind::CloudTiered,
            },
            target: settings.target.clone().unwrap_or_default(),
            target_options: settings.target_options.clone(),
            quota_bytes: settings.quota_bytes,
        };
        let opts = ShareOptions {
            throttle: Some(Arc::new(Throttle::new(schedule(settings)?).map_err(err)?)),
            // Objects leave the device sealed under the host's KEK (client-side encryption).
            encryption,
            ..ShareOptions::default()
        };
        let share = Share::open(spec, opts).await.map_err(err)?;
        Ok(RunningShare {
            settings: settings.clone(),
            share,
            policy: Mutex::default(),
        })
    }

    /// The storage engine's share.
    pub fn share(&self) -> &Share {
        &self.share
    }

    fn policy_stats(&self) -> std::sync::MutexGuard<'_, PolicyStats> {
        self.policy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Status for the API and metrics.
    pub fn status(&self) -> ShareStatus {
        let (stats, error) = match self.share.stats() {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e.to_string())),
        };
        ShareStatus {
            name: self.settings.name.clone(),
            kind: self.settings.kind,
            path: self.settings.path.display().to_string(),
            target: self.settings.target.clone(),
            policy: self.settings.policy.clone(),
            stats,
            error,
            policy_stats: self.policy_stats().clone(),
        }
    }

    /// One policy evaluation: the plugin decides, the share applies what its safety rules
    /// allow. Returns whether the volume is under low-space pressure.
    pub async fn evaluate(&self, policy: Option<Arc<PluginSlot>>) -> bool {
        let name = self.settings.policy.clone().unwrap_or_default();
        let input = match self.share.tiering_input(MAX_POLICY_FILES) {
            Ok(i) => i,
            Err(e) => {
                self.fail(format!("reading the journal: {e}"));
                return false;
            }
        };
        let v = &input.volume;
        let free = v.capacity_bytes.saturating_sub(v.used_bytes);
        let low_space = v.capacity_bytes > 0 && free.saturating_mul(10) < v.capacity_bytes;
        let Some(slot) = policy else {
            self.fail(format!("policy plugin `{name}` is not running"));
            return low_space;
        };
        let actions = match slot.active().decide(&input).await {
            Ok(a) => a,
            Err(e) => {
                self.fail(format!("policy `{name}`: {e}"));
                return low_space;
            }
        };
        let results = self.share.apply_actions(actions).await;
        let mut stats = self.policy_stats();
        stats.evaluations += 1;
        stats.low_space = low_space;
        for (action, result) in results {
            match result {
                Ok(()) => stats.actions_applied += 1,
                Err(e) => {
                    stats.actions_refused += 1;
                    tracing::warn!(share = %self.settings.name, policy = %name, ?action, error = %e, "policy action refused");
                    stats.last_error = Some(format!("{action:?}: {e}"));
                }
            }
        }
        low_space
    }

    fn fail(&self, why: String) {
        tracing::warn!(share = %self.settings.name, error = %why, "tiering policy evaluation failed");
        let mut stats = self.policy_stats();
        stats.evaluations += 1;
        stats.failures += 1;
        stats.last_error = Some(why);
    }

    /// Runs the sync loop until `shutdown`.
    pub async fn run_sync(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        self.share.run(shutdown).await;
    }

    /// Runs the policy loop until `shutdown`; `policy` finds the plugin's slot by name.
    pub async fn run_policy(
        self: Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
        policy: impl Fn(&str) -> Option<Arc<PluginSlot>> + Send + 'static,
    ) {
        let Some(name) = self.settings.policy.clone() else {
            return;
        };
        let every = Duration::from_secs(self.settings.evaluate_s);
        loop {
            let low_space = self.evaluate(policy(&name)).await;
            // Under low-space pressure the policy runs six times as often.
            let wait = if low_space { every / 6 } else { every };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return },
            }
        }
    }
}

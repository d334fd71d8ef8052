//! The last hour of a few numbers, sampled every [`SAMPLE_EVERY`], for the web UI's charts:
//! calls and latency per plugin, upload rate per share, CPU use.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::appliance::Appliance;

/// How often the sampler reads the counters.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// How much history is kept.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// One reading.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Seconds since the Unix epoch.
    pub at: f64,
    /// Per plugin: calls, errors, busy nanoseconds (cumulative counters).
    pub plugins: BTreeMap<String, (u64, u64, u64)>,
    /// Per share: upload rate, bytes per second.
    pub shares: BTreeMap<String, u64>,
    /// CPU busy and total jiffies since boot (cumulative counters from `/proc/stat`): the busy
    /// share of an interval comes from two samples, whoever else reads the CPU meanwhile.
    pub cpu: Option<(u64, u64)>,
}

/// The samples of the last [`WINDOW`].
#[derive(Debug, Default)]
pub struct History {
    samples: VecDeque<Sample>,
}

impl History {
    /// Adds `sample` and forgets what is older than the window.
    pub fn push(&mut self, sample: Sample) {
        let oldest = sample.at - WINDOW.as_secs_f64();
        self.samples.push_back(sample);
        while self.samples.front().is_some_and(|s| s.at < oldest) {
            self.samples.pop_front();
        }
    }

    /// The samples, oldest first, followed by `now` (a reading taken for this view).
    pub fn with(&self, now: Sample) -> Vec<Sample> {
        let mut all: Vec<Sample> = self.samples.iter().cloned().collect();
        all.push(now);
        all
    }
}

/// A reading of `app` now.
pub fn sample(app: &Appliance) -> Sample {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    Sample {
        at,
        plugins: app
            .status()
            .into_iter()
            .map(|p| (p.name, (p.stats.calls, p.stats.errors, p.stats.busy_ns)))
            .collect(),
        shares: app
            .shares()
            .into_iter()
            .filter_map(|s| Some((s.name, s.stats?.upload_rate_bytes_per_sec)))
            .collect(),
        cpu: crate::system::cpu_counters(),
    }
}

/// Points of a chart: (seconds since the Unix epoch, value).
pub type Series = Vec<(f64, f64)>;

/// Per plugin: calls per second and mean latency (ms) between consecutive samples.
pub fn plugin_series(samples: &[Sample], plugin: &str) -> (Series, Series) {
    let mut rate = Vec::new();
    let mut latency = Vec::new();
    for w in samples.windows(2) {
        let (Some(a), Some(b)) = (w[0].plugins.get(plugin), w[1].plugins.get(plugin)) else {
            continue;
        };
        let dt = w[1].at - w[0].at;
        if dt <= 0.0 || b.0 < a.0 {
            continue;
        }
        let calls = (b.0 - a.0) as f64;
        rate.push((w[1].at, calls / dt));
        let busy = b.2.saturating_sub(a.2) as f64;
        latency.push((w[1].at, if calls > 0.0 { busy / calls / 1e6 } else { 0.0 }));
    }
    (rate, latency)
}

/// Per share: upload rate in MiB/s.
pub fn share_series(samples: &[Sample], share: &str) -> Vec<(f64, f64)> {
    samples
        .iter()
        .filter_map(|s| Some((s.at, *s.shares.get(share)? as f64 / 1_048_576.0)))
        .collect()
}

/// CPU busy percent between consecutive samples.
pub fn cpu_series(samples: &[Sample]) -> Vec<(f64, f64)> {
    samples
        .windows(2)
        .filter_map(|w| {
            let ((b0, t0), (b1, t1)) = (w[0].cpu?, w[1].cpu?);
            (t1 > t0).then(|| {
                (
                    w[1].at,
                    100.0 * b1.saturating_sub(b0) as f64 / (t1 - t0) as f64,
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: f64, calls: u64, busy_ms: u64) -> Sample {
        Sample {
            at: t,
            plugins: [("echo".to_string(), (calls, 0, busy_ms * 1_000_000))].into(),
            ..Default::default()
        }
    }

    #[test]
    fn rates_and_mean_latency_come_from_consecutive_samples_and_old_ones_are_forgotten() {
        let mut h = History::default();
        h.push(at(0.0, 0, 0));
        h.push(at(10.0, 50, 100));
        let all = h.with(at(20.0, 150, 600));
        let (rate, latency) = plugin_series(&all, "echo");
        assert_eq!(rate, vec![(10.0, 5.0), (20.0, 10.0)]);
        assert_eq!(latency, vec![(10.0, 2.0), (20.0, 5.0)]);
        h.push(at(4000.0, 200, 700));
        assert_eq!(
            h.with(at(4001.0, 200, 700)).len(),
            2,
            "samples older than an hour go"
        );
    }

    #[test]
    fn the_cpu_chart_takes_each_point_from_the_counters_of_two_samples() {
        let cpu = |t: f64, busy: u64, total: u64| Sample {
            at: t,
            cpu: Some((busy, total)),
            ..Default::default()
        };
        let samples = [
            cpu(0.0, 100, 1000),
            cpu(10.0, 400, 2000),
            Sample {
                at: 15.0,
                ..Default::default()
            },
            cpu(20.0, 400, 2000),
            cpu(30.0, 1400, 3000),
        ];
        // 300 of 1000 jiffies busy; no point across the sample without counters; an idle
        // interval of zero jiffies gives none; then all 1000 busy.
        assert_eq!(cpu_series(&samples), vec![(10.0, 30.0), (30.0, 100.0)]);
    }
}

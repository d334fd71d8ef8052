//! Per-plugin inference accounting: computes, errors, latency histogram, time on the
//! accelerator, and time spent waiting for the plugin's concurrency limit.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Upper bounds (milliseconds) of the inference latency histogram's buckets.
pub const LATENCY_BUCKETS_MS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];

/// Counters for one plugin (shared by all its instances).
#[derive(Debug, Default)]
pub struct InferenceStats {
    computes: AtomicU64,
    errors: AtomicU64,
    compute_ns: AtomicU64,
    accelerator_ns: AtomicU64,
    wait_ns: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS_MS.len()],
}

/// A copy of [`InferenceStats`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StatsSnapshot {
    /// Computes that returned outputs.
    pub computes: u64,
    /// Computes that failed (bad input, engine error, timeout).
    pub errors: u64,
    /// Total time in compute, seconds.
    pub compute_seconds: f64,
    /// Of which on a GPU, seconds.
    pub accelerator_seconds: f64,
    /// Time computes waited for the plugin's concurrency limit, seconds.
    pub wait_seconds: f64,
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS_MS`] (Prometheus `le` semantics).
    pub buckets: Vec<u64>,
}

impl InferenceStats {
    /// Records one finished compute.
    pub fn record(&self, elapsed: Duration, on_accelerator: bool, ok: bool) {
        if ok {
            self.computes.fetch_add(1, Ordering::Relaxed);
        } else {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.compute_ns.fetch_add(ns, Ordering::Relaxed);
        if on_accelerator {
            self.accelerator_ns.fetch_add(ns, Ordering::Relaxed);
        }
        let ms = elapsed.as_secs_f64() * 1000.0;
        if let Some(i) = LATENCY_BUCKETS_MS.iter().position(|b| ms <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records time spent waiting for a concurrency slot.
    pub fn record_wait(&self, waited: Duration) {
        let ns = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.wait_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let secs = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e9;
        let mut running = 0;
        let buckets = self
            .buckets
            .iter()
            .map(|b| {
                running += b.load(Ordering::Relaxed);
                running
            })
            .collect();
        StatsSnapshot {
            computes: self.computes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            compute_seconds: secs(&self.compute_ns),
            accelerator_seconds: secs(&self.accelerator_ns),
            wait_seconds: secs(&self.wait_ns),
            buckets,
        }
    }
}

/// How many runs an engine has inside a graph at once, and the most it has had: the proof that
/// computes on one graph overlap rather than queue behind one lock.
#[derive(Debug, Default)]
pub struct Overlap {
    running: AtomicUsize,
    peak: AtomicUsize,
}

/// One run in progress; it ends when dropped.
pub struct OverlapGuard<'a>(&'a Overlap);

impl Overlap {
    /// Marks a run as started (call it where the run holds its engine resources).
    pub fn enter(&self) -> OverlapGuard<'_> {
        let now = self.running.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak.fetch_max(now, Ordering::AcqRel);
        OverlapGuard(self)
    }

    /// Runs in progress now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// The most runs that were ever in progress at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Acquire)
    }
}

impl Drop for OverlapGuard<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_counts_runs_in_progress_and_remembers_the_peak() {
        let overlap = Overlap::default();
        {
            let _a = overlap.enter();
            let _b = overlap.enter();
            assert_eq!(overlap.running(), 2);
        }
        let _c = overlap.enter();
        assert_eq!((overlap.running(), overlap.peak()), (1, 2));
    }

    #[test]
    fn latencies_fall_into_cumulative_buckets_and_gpu_time_is_counted_apart() {
        let stats = InferenceStats::default();
        stats.record(Duration::from_micros(500), false, true);
        stats.record(Duration::from_millis(30), true, true);
        stats.record(Duration::from_millis(7), false, false);
        let s = stats.snapshot();
        assert_eq!((s.computes, s.errors), (2, 1));
        assert_eq!(s.buckets[0], 1, "0.5 ms is within 1 ms");
        assert_eq!(s.buckets[3], 2, "7 ms is within 10 ms");
        assert_eq!(s.buckets[5], 3, "30 ms is within 50 ms");
        assert!((s.accelerator_seconds - 0.030).abs() < 1e-9);
        assert!((s.compute_seconds - 0.0375).abs() < 1e-9);
    }
}

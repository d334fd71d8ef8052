//! What the box itself is doing: CPU, memory, disk and GPU use, and the alerts an operator should
//! see first (certificate expiry, low disk, plugin failures, sink backlog, throttled shares).

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::appliance::Appliance;

/// A disk with less free space than this fraction raises an alert.
pub const LOW_DISK_FRACTION: f64 = 0.10;
/// A sink with more messages than this waiting raises an alert.
pub const SINK_BACKLOG_ALERT: u64 = 1000;

/// Bytes in binary units, as people write them: `512 B`, `3.0 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// One reading of the machine.
#[derive(Debug, Clone, Serialize, Default)]
pub struct SystemUsage {
    /// Logical CPUs.
    pub cpus: usize,
    /// Busy share of all CPUs since the previous reading, percent.
    pub cpu_percent: Option<f64>,
    /// 1-minute load average.
    pub load1: Option<f64>,
    /// Memory in all, bytes.
    pub memory_total_bytes: u64,
    /// Memory available to new work, bytes.
    pub memory_available_bytes: u64,
    /// The data directory's file system.
    pub disk_path: String,
    /// Its size, bytes.
    pub disk_total_bytes: u64,
    /// Bytes free to unprivileged users.
    pub disk_free_bytes: u64,
    /// GPUs that `nvidia-smi` reports.
    pub gpus: Vec<GpuUsage>,
    /// Why no GPU is listed, when none is.
    pub gpu_note: Option<String>,
}

/// One GPU.
#[derive(Debug, Clone, Serialize)]
pub struct GpuUsage {
    /// Model name.
    pub name: String,
    /// Busy percent.
    pub utilization_percent: f64,
    /// Memory used, MiB.
    pub memory_used_mib: f64,
    /// Memory in all, MiB.
    pub memory_total_mib: f64,
}

/// Something an operator should look at.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Alert {
    /// `warning` or `critical`.
    pub level: &'static str,
    /// What raised it: `certificate`, `disk`, `plugin`, `sink`, `share`, `keys`.
    pub source: &'static str,
    /// One sentence.
    pub message: String,
}

/// When the GPUs were read, what was found, and why none was.
type GpuReading = (Instant, Vec<GpuUsage>, Option<String>);

/// Reads the machine, remembering the previous CPU counters so each reading has a busy share.
#[derive(Debug, Default)]
pub struct SystemMonitor {
    cpu: Mutex<Option<(u64, u64)>>,
    gpu: Mutex<Option<GpuReading>>,
}

impl SystemMonitor {
    /// Reads CPU, memory, the file system of `data_dir` and the GPUs (at most every 10 s).
    pub fn read(&self, data_dir: &Path) -> SystemUsage {
        let mut usage = SystemUsage {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            disk_path: data_dir.display().to_string(),
            ..Default::default()
        };
        if let Some((busy, total)) = cpu_counters() {
            let mut last = self.cpu.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((b0, t0)) = *last
                && total > t0
            {
                usage.cpu_percent =
                    Some(100.0 * (busy - b0.min(busy)) as f64 / (total - t0) as f64);
            }
            *last = Some((busy, total));
        }
        usage.load1 = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse().ok());
        if let Ok(text) = std::fs::read_to_string("/proc/meminfo") {
            usage.memory_total_bytes = meminfo(&text, "MemTotal:");
            usage.memory_available_bytes = meminfo(&text, "MemAvailable:");
        }
        if let Some((total, free)) = disk(data_dir) {
            usage.disk_total_bytes = total;
            usage.disk_free_bytes = free;
        }
        let mut gpu = self.gpu.lock().unwrap_or_else(|p| p.into_inner());
        if gpu
            .as_ref()
            .is_none_or(|(at, _, _)| at.elapsed() > Duration::from_secs(10))
        {
            let (gpus, note) = read_gpus();
            *gpu = Some((Instant::now(), gpus, note));
        }
        if let Some((_, gpus, note)) = gpu.as_ref() {
            usage.gpus = gpus.clone();
            usage.gpu_note = note.clone();
        }
        usage
    }
}

/// Busy and total jiffies of all CPUs (`/proc/stat`'s first line).
pub(crate) fn cpu_counters() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().take(8).sum();
    // idle and iowait are not busy.
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

fn meminfo(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

#[allow(unsafe_code)]
fn disk(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain old data; all-zero is a valid value.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `stat` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let unit = stat.f_frsize as u64;
    Some((stat.f_blocks as u64 * unit, stat.f_bavail as u64 * unit))
}

fn read_gpus() -> (Vec<GpuUsage>, Option<String>) {
    let out = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,utilization.gpu,memory.used,memory.total",
            "--format=csv,noheader,nounits",
        ])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    match out {
        Err(_) => (
            Vec::new(),
            Some("no NVIDIA GPU: nvidia-smi is not installed".into()),
        ),
        Ok(o) if !o.status.success() => (
            Vec::new(),
            Some(format!("nvidia-smi failed ({})", o.status)),
        ),
        Ok(o) => {
            let gpus: Vec<GpuUsage> = String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split(',').map(str::trim).collect();
                    Some(GpuUsage {
                        name: f.first()?.to_string(),
                        utilization_percent: f.get(1)?.parse().ok()?,
                        memory_used_mib: f.get(2)?.parse().ok()?,
                        memory_total_mib: f.get(3)?.parse().ok()?,
                    })
                })
                .collect();
            let note = gpus
                .is_empty()
                .then(|| "nvidia-smi lists no GPU".to_string());
            (gpus, note)
        }
    }
}

/// The alerts that hold now.
pub async fn alerts(app: &Appliance, usage: &SystemUsage) -> Vec<Alert> {
    let mut out = Vec::new();
    if let Some(certs) = app.certificates() {
        for c in certs.status() {
            use outpost_security::AlertLevel;
            let level = match c.alert {
                AlertLevel::Ok => continue,
                AlertLevel::Warning => "warning",
                AlertLevel::Critical | AlertLevel::Expired => "critical",
            };
            let days = c.seconds_left / 86_400;
            out.push(Alert {
                level,
                source: "certificate",
                message: if c.seconds_left < 0 {
                    format!(
                        "the {} certificate `{}` expired on {}",
                        c.role, c.subject, c.not_after_rfc3339
                    )
                } else {
                    format!(
                        "the {} certificate `{}` expires in {days} days ({})",
                        c.role, c.subject, c.not_after_rfc3339
                    )
                },
            });
        }
    }
    if usage.disk_total_bytes > 0 {
        let free = usage.disk_free_bytes as f64 / usage.disk_total_bytes as f64;
        if free < LOW_DISK_FRACTION {
            out.push(Alert {
                level: if free < LOW_DISK_FRACTION / 2.0 {
                    "critical"
                } else {
                    "warning"
                },
                source: "disk",
                message: format!(
                    "{:.1} % free on the data directory's disk ({})",
                    free * 100.0,
                    usage.disk_path
                ),
            });
        }
    }
    for p in app.status() {
        let why = p.last_error.clone().unwrap_or_default();
        let level = match p.state.as_str() {
            "failed" => "critical",
            "rolled-back" | "degraded" | "exited" | "restarting" => "warning",
            _ => continue,
        };
        out.push(Alert {
            level,
            source: "plugin",
            message: format!(
                "plugin `{}` is {}{}",
                p.name,
                p.state,
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {why}")
                }
            ),
        });
    }
    for s in &app.sink_stats().await {
        if s.spool.depth > SINK_BACKLOG_ALERT || (!s.connected && s.spool.depth > 0) {
            out.push(Alert {
                level: "warning",
                source: "sink",
                message: format!(
                    "sink `{}` has {} messages waiting{}",
                    s.name,
                    s.spool.depth,
                    if s.connected {
                        String::new()
                    } else {
                        " and its peer is unreachable".into()
                    }
                ),
            });
        }
    }
    for s in app.shares() {
        if s.stats.as_ref().is_some_and(|st| st.write_throttle_alert) {
            out.push(Alert {
                level: "warning",
                source: "share",
                message: format!(
                    "share `{}` is full of unsynced data: writes are slowed to the upload rate",
                    s.name
                ),
            });
        }
        if let Some(e) = &s.error {
            out.push(Alert {
                level: "warning",
                source: "share",
                message: format!("share `{}`: {e}", s.name),
            });
        }
    }
    if let Some(k) = app.key_status()
        && !k.available
    {
        out.push(Alert {
            level: "critical",
            source: "keys",
            message: format!(
                "encryption key unavailable: {}",
                k.error.unwrap_or_default()
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_has_memory_disk_and_a_cpu_share_from_the_second_reading_on() {
        let monitor = SystemMonitor::default();
        let dir = tempfile::tempdir().unwrap();
        let first = monitor.read(dir.path());
        assert!(first.memory_total_bytes > first.memory_available_bytes);
        assert!(first.disk_total_bytes >= first.disk_free_bytes && first.disk_total_bytes > 0);
        assert!(first.cpus >= 1);
        std::thread::sleep(Duration::from_millis(50));
        let second = monitor.read(dir.path());
        let cpu = second
            .cpu_percent
            .expect("a second reading has a CPU share");
        assert!((0.0..=100.0).contains(&cpu), "{cpu}");
        assert!(second.gpus.is_empty() == second.gpu_note.is_some());
    }
}

//! The decision logic, free of bindings: plain types in, indices out. Everything here is total
//! (no panics, no overflow) for any input, and runs in O(n log n) for n files.

use std::fmt;

/// Config key: percentage of the share's capacity to keep free (volume free space policy).
pub const KEY_FREE_SPACE_PERCENT: &str = "free_space_percent";
/// Config key: evict synced files not read for this many days (date policy; 0 or absent: off).
pub const KEY_DATE_POLICY_DAYS: &str = "date_policy_days";
/// Config key: files smaller than this are never evicted (outside low-space mode).
pub const KEY_MIN_FILE_SIZE_BYTES: &str = "min_file_size_bytes";
/// Config key: at most this many `upload` actions per `decide` call.
pub const KEY_MAX_UPLOADS_PER_ROUND: &str = "max_uploads_per_round";
/// Config key: below this percentage of free space the policy is in low-space mode (0: never).
pub const KEY_LOW_SPACE_PERCENT: &str = "low_space_percent";
/// Config key: the minimum evictable file size in low-space mode.
pub const KEY_LOW_SPACE_MIN_FILE_SIZE_BYTES: &str = "low_space_min_file_size_bytes";

/// Default for [`KEY_FREE_SPACE_PERCENT`] (Azure File Sync's default is 20%).
pub const DEFAULT_FREE_SPACE_PERCENT: u64 = 20;
/// Default for [`KEY_MIN_FILE_SIZE_BYTES`]: 64 KiB, Azure File Sync's minimum tiered file size.
pub const DEFAULT_MIN_FILE_SIZE_BYTES: u64 = 64 * 1024;
/// Default for [`KEY_MAX_UPLOADS_PER_ROUND`].
pub const DEFAULT_MAX_UPLOADS_PER_ROUND: u64 = 64;
/// Default for [`KEY_LOW_SPACE_PERCENT`].
pub const DEFAULT_LOW_SPACE_PERCENT: u64 = 10;
/// Default for [`KEY_LOW_SPACE_MIN_FILE_SIZE_BYTES`]: 4 KiB (one filesystem block).
pub const DEFAULT_LOW_SPACE_MIN_FILE_SIZE_BYTES: u64 = 4 * 1024;

/// Milliseconds in a day.
pub const MS_PER_DAY: u64 = 86_400_000;

/// Where a file's bytes are (mirrors the WIT `file-state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Only on the device.
    Local,
    /// Being uploaded.
    Uploading,
    /// On the device and in the cloud.
    Synced,
    /// Only in the cloud.
    Evicted,
}

/// The share's local volume (the WIT `volume-state` without the share name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Volume {
    /// Bytes the volume can hold for the share.
    pub capacity_bytes: u64,
    /// Bytes in use.
    pub used_bytes: u64,
    /// Time of the decision, ms since the Unix epoch.
    pub now_unix_ms: u64,
}

/// One file (the WIT `file-stat` without the path: decisions refer to files by index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct File {
    /// Size in bytes.
    pub size: u64,
    /// Last modification, ms since the Unix epoch.
    pub modified_unix_ms: u64,
    /// Last read, ms since the Unix epoch.
    pub accessed_unix_ms: u64,
    /// Where the bytes are.
    pub state: State,
    /// Whether an operator pinned the file.
    pub pinned: bool,
}

/// The policy's settings; [`Config::default`] gives the documented defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Keep this percentage (0..=99) of the capacity free; 0 only reacts to an over-full volume.
    pub free_space_percent: u64,
    /// Evict files not read for this many days; 0 turns the date policy off.
    pub date_policy_days: u64,
    /// Never evict files smaller than this (outside low-space mode).
    pub min_file_size_bytes: u64,
    /// Cap on `upload` actions per call.
    pub max_uploads_per_round: u64,
    /// Low-space mode below this percentage (0..=100) of free space; 0 turns it off.
    pub low_space_percent: u64,
    /// In low-space mode the minimum size drops to this (never above `min_file_size_bytes`).
    pub low_space_min_file_size_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            free_space_percent: DEFAULT_FREE_SPACE_PERCENT,
            date_policy_days: 0,
            min_file_size_bytes: DEFAULT_MIN_FILE_SIZE_BYTES,
            max_uploads_per_round: DEFAULT_MAX_UPLOADS_PER_ROUND,
            low_space_percent: DEFAULT_LOW_SPACE_PERCENT,
            low_space_min_file_size_bytes: DEFAULT_LOW_SPACE_MIN_FILE_SIZE_BYTES,
        }
    }
}

/// A config value that could not be used; the default was taken instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The key.
    pub key: &'static str,
    /// The value as configured.
    pub value: String,
    /// What was expected.
    pub expected: &'static str,
    /// The default used instead.
    pub default: u64,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "config {} = {:?} is not {}; using the default {}",
            self.key, self.value, self.expected, self.default
        )
    }
}

impl Config {
    /// Reads every key through `get` (absent keys take their defaults). Values that do not parse
    /// or are out of range take their defaults too and come back as warnings, to be logged.
    pub fn from_lookup(
        mut get: impl FnMut(&str) -> Option<String>,
    ) -> (Config, Vec<ConfigWarning>) {
        let defaults = Config::default();
        let mut warnings = Vec::new();
        let mut read = |key: &'static str, default: u64, max: u64, expected: &'static str| {
            let Some(value) = get(key) else {
                return default;
            };
            match value.trim().parse::<u64>() {
                Ok(n) if n <= max => n,
                _ => {
                    warnings.push(ConfigWarning {
                        key,
                        value,
                        expected,
                        default,
                    });
                    default
                }
            }
        };
        let config = Config {
            free_space_percent: read(
                KEY_FREE_SPACE_PERCENT,
                defaults.free_space_percent,
                99,
                "an integer from 0 to 99",
            ),
            date_policy_days: read(
                KEY_DATE_POLICY_DAYS,
                defaults.date_policy_days,
                u64::MAX,
                "a whole number of days",
            ),
            min_file_size_bytes: read(
                KEY_MIN_FILE_SIZE_BYTES,
                defaults.min_file_size_bytes,
                u64::MAX,
                "a whole number of bytes",
            ),
            max_uploads_per_round: read(
                KEY_MAX_UPLOADS_PER_ROUND,
                defaults.max_uploads_per_round,
                u64::MAX,
                "a whole number",
            ),
            low_space_percent: read(
                KEY_LOW_SPACE_PERCENT,
                defaults.low_space_percent,
                100,
                "an integer from 0 to 100",
            ),
            low_space_min_file_size_bytes: read(
                KEY_LOW_SPACE_MIN_FILE_SIZE_BYTES,
                defaults.low_space_min_file_size_bytes,
                u64::MAX,
                "a whole number of bytes",
            ),
        };
        (config, warnings)
    }
}

/// What the policy decided, by index into the input files. Each index appears at most once
/// across the three lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Files to upload, oldest modification first.
    pub uploads: Vec<usize>,
    /// Evictions for the volume free space policy, least recently read first.
    pub free_space_evictions: Vec<usize>,
    /// Further evictions for the date policy, least recently read first.
    pub date_evictions: Vec<usize>,
    /// Whether free space was below `low_space_percent`.
    pub low_space: bool,
    /// Bytes the free space policy needed to free (0 when the target was already met).
    pub bytes_to_free: u64,
    /// Bytes the free space evictions free (less than `bytes_to_free` only when no more files
    /// could be evicted).
    pub bytes_freed: u64,
}

impl Decision {
    /// Total number of actions.
    pub fn len(&self) -> usize {
        self.uploads.len() + self.free_space_evictions.len() + self.date_evictions.len()
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Bytes to free so that at least `percent` of `capacity` is free; 0 when already so.
pub fn bytes_to_free(volume: &Volume, percent: u64) -> u64 {
    let capacity = u128::from(volume.capacity_bytes);
    let used = u128::from(volume.used_bytes);
    let target_free = (capacity * u128::from(percent.min(100))).div_ceil(100);
    let need = (used + target_free).saturating_sub(capacity);
    u64::try_from(need).unwrap_or(u64::MAX)
}

/// Whether free space is below `percent` of the capacity (never for a zero capacity or 0%).
pub fn is_low_space(volume: &Volume, percent: u64) -> bool {
    if volume.capacity_bytes == 0 || percent == 0 {
        return false;
    }
    let capacity = u128::from(volume.capacity_bytes);
    let free = capacity.saturating_sub(u128::from(volume.used_bytes));
    free * 100 < capacity * u128::from(percent.min(100))
}

/// Whether a file may be evicted at all: synced, unpinned and at least `min_size` bytes (and
/// never empty: evicting it frees nothing).
fn evictable(file: &File, min_size: u64) -> bool {
    file.state == State::Synced && !file.pinned && file.size >= min_size.max(1)
}

/// Decides what to do with `files`; see the crate documentation for the rules.
///
/// A zero capacity means the host does not know the volume's size: the free space policy and
/// low-space mode are off then (rather than evicting everything).
pub fn decide(config: &Config, volume: &Volume, files: &[File]) -> Decision {
    let mut decision = Decision {
        uploads: uploads(config, files),
        ..Decision::default()
    };
    let mut chosen = vec![false; files.len()];

    if volume.capacity_bytes > 0 {
        decision.low_space = is_low_space(volume, config.low_space_percent);
        decision.bytes_to_free = bytes_to_free(volume, config.free_space_percent);
    }
    if decision.bytes_to_free > 0 {
        let min_size = if decision.low_space {
            config
                .min_file_size_bytes
                .min(config.low_space_min_file_size_bytes)
        } else {
            config.min_file_size_bytes
        };
        let mut candidates: Vec<(u64, usize)> = files
            .iter()
            .enumerate()
            .filter(|(_, f)| evictable(f, min_size))
            .map(|(i, f)| (f.accessed_unix_ms, i))
            .collect();
        candidates.sort_unstable();
        let mut freed: u64 = 0;
        for (_, i) in candidates {
            if freed >= decision.bytes_to_free {
                break;
            }
            freed = freed.saturating_add(files[i].size);
            chosen[i] = true;
            decision.free_space_evictions.push(i);
        }
        decision.bytes_freed = freed;
    }

    if config.date_policy_days > 0 {
        let max_age = config.date_policy_days.saturating_mul(MS_PER_DAY);
        let mut old: Vec<(u64, usize)> = files
            .iter()
            .enumerate()
            .filter(|&(i, f)| {
                !chosen[i]
                    && evictable(f, config.min_file_size_bytes)
                    && volume.now_unix_ms.saturating_sub(f.accessed_unix_ms) >= max_age
            })
            .map(|(i, f)| (f.accessed_unix_ms, i))
            .collect();
        old.sort_unstable();
        decision.date_evictions = old.into_iter().map(|(_, i)| i).collect();
    }
    decision
}

/// Local files to upload, oldest modification first (ties: input order), at most
/// `max_uploads_per_round`. Selects before sorting, so a small cap stays O(n).
fn uploads(config: &Config, files: &[File]) -> Vec<usize> {
    let cap = usize::try_from(config.max_uploads_per_round).unwrap_or(usize::MAX);
    if cap == 0 {
        return Vec::new();
    }
    let mut local: Vec<(u64, usize)> = files
        .iter()
        .enumerate()
        .filter(|(_, f)| f.state == State::Local)
        .map(|(i, f)| (f.modified_unix_ms, i))
        .collect();
    if local.len() > cap {
        local.select_nth_unstable(cap);
        local.truncate(cap);
    }
    local.sort_unstable();
    local.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests;

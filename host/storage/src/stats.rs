//! Per-share statistics for status and metrics.

use serde::{Deserialize, Serialize};

/// A snapshot of one share.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareStats {
    /// Share name.
    pub share: String,
    /// `edge-local` or `cloud-tiered`.
    pub kind: String,
    /// The local quota.
    pub quota_bytes: u64,
    /// Content bytes present locally (every state but evicted).
    pub bytes_local: u64,
    /// Bytes not yet in the cloud (local + uploading).
    pub bytes_unsynced: u64,
    /// Bytes both local and in the cloud.
    pub bytes_synced: u64,
    /// Bytes only in the cloud.
    pub bytes_evicted: u64,
    /// Files only local.
    pub files_local: u64,
    /// Files being uploaded.
    pub files_uploading: u64,
    /// Files synced.
    pub files_synced: u64,
    /// Files evicted (stubs).
    pub files_evicted: u64,
    /// Pinned files.
    pub files_pinned: u64,
    /// Files waiting for upload (local + uploading).
    pub upload_queue_len: u64,
    /// Measured upload rate over the last two seconds, bytes per second.
    pub upload_rate_bytes_per_sec: u64,
    /// The upload cap now (`None` = unlimited), bytes per second.
    pub upload_limit_bytes_per_sec: Option<u64>,
    /// Multipart parts sent since the share was opened.
    pub parts_sent: u64,
    /// Whole-object downloads (recalls) since the share was opened.
    pub downloads: u64,
    /// Ranged downloads since the share was opened.
    pub range_downloads: u64,
    /// Writers waiting in `reserve` right now.
    pub writers_throttled: u64,
    /// Whether writes are being throttled (the quota is full of unsynced data).
    pub write_throttle_alert: bool,
    /// Times a writer had to wait since the share was opened.
    pub write_throttle_events: u64,
    /// Last error, if any, since the last success.
    pub last_error: Option<String>,
    /// Last successful refresh (ms since the epoch).
    pub last_refresh_unix_ms: Option<u64>,
}

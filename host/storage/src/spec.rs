//! Share specifications and engine options.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bandwidth::Throttle;
use crate::error::{Result, StorageError};

/// Where a share's data lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShareKind {
    /// Data never leaves the device.
    EdgeLocal,
    /// Data written locally is uploaded to object storage; cold files are evicted locally and
    /// recalled on read.
    CloudTiered,
}

/// One share.
///
/// `target` is an object-store URL (cloud-tiered shares only; ignored for edge-local ones):
/// - `file:///absolute/dir` — a local directory (a mounted disk, tests);
/// - `az://container/prefix` — Azure Blob. `target_options` take object_store's Azure keys,
///   e.g. `azure_storage_account_name`, `azure_storage_account_key`, `azure_storage_endpoint`
///   (for Azurite: `http://127.0.0.1:10000/devstoreaccount1`) and `azure_allow_http`;
/// - `s3://bucket/prefix` — S3 and compatibles, with object_store's S3 keys (`aws_region`,
///   `aws_endpoint`, `aws_access_key_id`, `aws_secret_access_key`, `aws_allow_http`, ...).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareSpec {
    /// Share name: 1 to 64 of `a-z`, `0-9`, `-`, `_`.
    pub name: String,
    /// Local directory of the share (created if missing).
    pub root: PathBuf,
    /// Edge-local or cloud-tiered.
    pub kind: ShareKind,
    /// Object-store URL for cloud-tiered shares.
    #[serde(default)]
    pub target: String,
    /// Options for the object store (account, key, endpoint, region, ...).
    #[serde(default)]
    pub target_options: BTreeMap<String, String>,
    /// Bytes the share may use on the local disk.
    pub quota_bytes: u64,
}

impl fmt::Debug for ShareSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets (account keys, SAS tokens, secret access keys).
        let options: BTreeMap<&str, &str> = self
            .target_options
            .iter()
            .map(|(k, v)| {
                let secret = ["key", "secret", "token", "sas", "password"]
                    .iter()
                    .any(|s| k.to_ascii_lowercase().contains(s));
                (k.as_str(), if secret { "<redacted>" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("ShareSpec")
            .field("name", &self.name)
            .field("root", &self.root)
            .field("kind", &self.kind)
            .field("target", &self.target)
            .field("target_options", &options)
            .field("quota_bytes", &self.quota_bytes)
            .finish()
    }
}

impl ShareSpec {
    /// Checks the name, root, quota and (for cloud-tiered shares) the target's scheme.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(StorageError::InvalidSpec(m));
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return bad(format!(
                "share name {:?} must be 1-64 of a-z, 0-9, '-', '_'",
                self.name
            ));
        }
        if !self.root.is_absolute() {
            return bad(format!(
                "share root {} must be absolute",
                self.root.display()
            ));
        }
        if self.quota_bytes == 0 {
            return bad("quota_bytes must be positive".into());
        }
        if self.kind == ShareKind::CloudTiered {
            crate::remote::parse_target(&self.target)?;
        }
        Ok(())
    }
}

/// Retries of remote calls: exponential backoff from `initial_backoff`, doubling up to
/// `max_backoff`, at most `max_attempts` tries per call. Files whose upload still fails are
/// retried by the sync loop with the same backoff per file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Tries per remote call (at least 1).
    pub max_attempts: u32,
    /// First delay.
    pub initial_backoff: Duration,
    /// Longest delay.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(20));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// A KEK provider shared by the engine's tasks.
pub type SharedKeyProvider = Arc<dyn outpost_keys::KeyProvider + Send + Sync>;

/// Engine tuning for one share.
#[derive(Clone)]
pub struct ShareOptions {
    /// Multipart part size (default 8 MiB). S3 needs at least 5 MiB; Azure has no minimum.
    pub part_size: u64,
    /// Files of at least this size go multipart (default: `part_size`).
    pub multipart_threshold: u64,
    /// A file modified within this window is not uploaded yet (default 2 s).
    pub settle_window: Duration,
    /// How often [`crate::Share::run`] rescans and syncs when the directory cannot be watched
    /// (default 1 s).
    pub scan_interval: Duration,
    /// With a directory watch, the longest [`crate::Share::run`] sleeps between passes when no
    /// event arrives (default 60 s): the safety net for filesystems that send no events.
    pub rescan_interval: Duration,
    /// Files uploaded at once (default 2).
    pub upload_concurrency: usize,
    /// Parts of one multipart upload in flight at once (default 4): a large file is not held
    /// to one round trip per part. Memory held is about `part_size` × this per file.
    pub part_concurrency: usize,
    /// Retry policy for remote calls.
    pub retry: RetryPolicy,
    /// Upload throttle: share one between shares for a global cap; `None` gives the share its
    /// own unlimited one (replace its schedule with [`crate::Share::set_schedule`]).
    pub throttle: Option<Arc<Throttle>>,
    /// After each upload, download the object again and compare its SHA-256 (costs a download;
    /// default off: the size and, where the backend keeps metadata, the digest are compared).
    pub read_back_verify: bool,
    /// Client-side envelope encryption of everything the share uploads (default `None`:
    /// objects are stored as plaintext, as before).
    ///
    /// When set, a file is uploaded as a concatenation of *units* of `part_size` plaintext
    /// bytes (the last one shorter; an empty file is one empty unit), each sealed
    /// independently with [`outpost_keys::seal`] (own random data key wrapped by the provider's
    /// current KEK, 64 KiB AES-256-GCM segments). A multipart part is exactly one unit, so a
    /// part can be re-sent after a crash and decrypted alone; range reads fetch only the units
    /// they cover. The journal records `encrypted` and the unit size per file; objects written
    /// with a single PUT carry the metadata `outpost_encrypted=1` where the backend keeps
    /// metadata, and do not carry the plaintext digest (it would let anyone holding a guess
    /// confirm a file's content). A provider failure fails the upload or read: there is no
    /// fallback to plaintext.
    pub encryption: Option<SharedKeyProvider>,
}

impl fmt::Debug for ShareOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareOptions")
            .field("part_size", &self.part_size)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("settle_window", &self.settle_window)
            .field("scan_interval", &self.scan_interval)
            .field("rescan_interval", &self.rescan_interval)
            .field("upload_concurrency", &self.upload_concurrency)
            .field("part_concurrency", &self.part_concurrency)
            .field("retry", &self.retry)
            .field("throttle", &self.throttle)
            .field("read_back_verify", &self.read_back_verify)
            .field(
                "encryption",
                &self.encryption.as_ref().map(|p| p.key_id().to_owned()),
            )
            .finish()
    }
}

impl Default for ShareOptions {
    fn default() -> Self {
        Self {
            part_size: 8 * 1024 * 1024,
            multipart_threshold: 8 * 1024 * 1024,
            settle_window: Duration::from_secs(2),
            scan_interval: Duration::from_secs(1),
            rescan_interval: Duration::from_secs(60),
            upload_concurrency: 2,
            part_concurrency: 4,
            retry: RetryPolicy::default(),
            throttle: None,
            read_back_verify: false,
            encryption: None,
        }
    }
}

impl ShareOptions {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.part_size < 64 * 1024 || self.part_size > 4 * 1024 * 1024 * 1024 {
            return Err(StorageError::InvalidSpec(
                "part_size must be between 64 KiB and 4 GiB".into(),
            ));
        }
        if self.upload_concurrency == 0
            || self.part_concurrency == 0
            || self.retry.max_attempts == 0
        {
            return Err(StorageError::InvalidSpec(
                "upload_concurrency, part_concurrency and retry.max_attempts must be positive"
                    .into(),
            ));
        }
        Ok(())
    }
}

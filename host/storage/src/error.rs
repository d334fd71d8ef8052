//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in a share.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A path handed in (from an API caller, a plugin or the wire) is not a safe relative path.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The offending path, lossily decoded.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The share specification is unusable.
    #[error("invalid share spec: {0}")]
    InvalidSpec(String),
    /// The object-store target URL or its options are unusable.
    #[error("invalid target {target:?}: {reason}")]
    InvalidTarget {
        /// The target URL.
        target: String,
        /// Why it was refused.
        reason: String,
    },
    /// A bandwidth schedule is malformed.
    #[error("invalid bandwidth schedule: {0}")]
    InvalidSchedule(String),
    /// The share has no such file.
    #[error("no such file in share: {0}")]
    NotFound(String),
    /// The engine refused an operation because it would break a safety rule (for example
    /// evicting an unsynced or pinned file).
    #[error("refused {operation} of {path}: {reason}")]
    Refused {
        /// The operation asked for.
        operation: &'static str,
        /// The file it was asked for.
        path: String,
        /// The rule that forbids it.
        reason: String,
    },
    /// The operation needs a cloud-tiered share.
    #[error("share {share} is edge-local: {operation} needs a cloud-tiered share")]
    EdgeLocal {
        /// Share name.
        share: String,
        /// The operation asked for.
        operation: &'static str,
    },
    /// Downloaded or uploaded bytes do not have the expected SHA-256.
    #[error("digest mismatch for {path}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// File in the share.
        path: String,
        /// Digest recorded in the journal or on the object.
        expected: String,
        /// Digest of the bytes seen.
        actual: String,
    },
    /// The remote object does not have the size the journal expects.
    #[error("size mismatch for {path}: expected {expected} bytes, remote has {actual}")]
    SizeMismatch {
        /// File in the share.
        path: String,
        /// Expected size.
        expected: u64,
        /// Size seen.
        actual: u64,
    },
    /// The file changed (size or mtime) while it was being uploaded; it is retried later.
    #[error("{0} changed while it was being uploaded")]
    ChangedDuringUpload(String),
    /// The file was modified within the settle window and is not uploaded yet.
    #[error("{0} is still being written (inside the settle window)")]
    NotSettled(String),
    /// A single reservation can never fit in the share's quota.
    #[error("cannot reserve {requested} bytes: the share quota is {quota} bytes")]
    QuotaTooSmall {
        /// Bytes asked for.
        requested: u64,
        /// The share's quota.
        quota: u64,
    },
    /// An edge-local share is full (nothing can be uploaded to make room).
    #[error("share {share} is full: {used} of {quota} bytes used, {requested} more requested")]
    QuotaExceeded {
        /// Share name.
        share: String,
        /// Bytes used.
        used: u64,
        /// The share's quota.
        quota: u64,
        /// Bytes asked for.
        requested: u64,
    },
    /// The redb journal failed.
    #[error("journal: {0}")]
    Journal(String),
    /// Local file-system I/O failed.
    #[error("I/O on {path}: {source}")]
    Io {
        /// The local path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Encrypting or decrypting an object failed: a key provider error (missing, disabled or
    /// expired KEK version, foreign key id) or a tampered, truncated or reordered object.
    /// Never answered with plaintext or unauthenticated bytes instead.
    #[error("encryption of {path}: {source}")]
    Encryption {
        /// File in the share.
        path: String,
        /// The key crate's error (names the key and version where one is involved).
        #[source]
        source: outpost_keys::KeysError,
    },
    /// An encrypted object does not have the layout the engine expects (wrong length, unit
    /// size unknown) or the share has no key provider for it.
    #[error("encrypted object {path}: {reason}")]
    EncryptedLayout {
        /// File in the share.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The object store failed (after retries).
    #[error("object store: {0}")]
    Remote(#[from] object_store::Error),
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn encryption(path: &str, source: outpost_keys::KeysError) -> Self {
        Self::Encryption {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn encrypted_layout(path: &str, reason: impl Into<String>) -> Self {
        Self::EncryptedLayout {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn refused(operation: &'static str, path: &str, reason: impl Into<String>) -> Self {
        Self::Refused {
            operation,
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    /// Whether this error is a safety refusal (the engine said no on purpose).
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Refused { .. } | Self::EdgeLocal { .. })
    }
}

macro_rules! journal_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self {
                Self::Journal(e.to_string())
            }
        }
    )*};
}
journal_errors!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error
);

/// Result alias for this crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

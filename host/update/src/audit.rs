//! Tamper-evident audit log: append-only JSON lines chained by SHA-256.
//!
//! Each line is one JSON object ([`AuditEntry`]) whose `prev_hash` is the SHA-256 (hex) of the
//! previous line's exact bytes (without its newline); the first entry's `prev_hash` is 64 zeros.
//! Editing, removing or reordering any line other than the last breaks the chain, which
//! [`verify_audit_log`] reports. Every append is fsynced before it returns.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{Result, UpdateError};

/// `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened to an artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Verified and handed to the runtime.
    Accepted,
    /// Refused; `reason` says why.
    Refused,
    /// Installed and running.
    Applied,
    /// Taken out again (failed canary, operator rollback, …).
    RolledBack,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// RFC 3339 UTC time of the decision.
    pub time: String,
    /// Plugin name.
    pub plugin: String,
    /// Artifact reference as requested.
    pub reference: String,
    /// Manifest digest (`sha256:…`), when known.
    pub digest: Option<String>,
    /// Signed version, when known.
    pub version: Option<String>,
    /// Publisher whose key verified the signature, when known.
    pub publisher: Option<String>,
    /// The decision.
    pub decision: Decision,
    /// Refusal code (see [`UpdateError::code`]) or free text for rollbacks.
    pub reason_code: Option<String>,
    /// Human-readable reason.
    pub reason: Option<String>,
    /// SHA-256 hex of the previous line.
    pub prev_hash: String,
}

/// The fields a caller supplies; time and chain are filled in by [`AuditLog::append`].
#[derive(Debug, Clone, Default)]
pub struct AuditRecord {
    /// Plugin name.
    pub plugin: String,
    /// Artifact reference.
    pub reference: String,
    /// Manifest digest.
    pub digest: Option<String>,
    /// Version.
    pub version: Option<String>,
    /// Publisher.
    pub publisher: Option<String>,
    /// Refusal code.
    pub reason_code: Option<String>,
    /// Reason.
    pub reason: Option<String>,
}

/// An open audit log.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: File,
    last_hash: String,
}

impl AuditLog {
    /// Opens (creating if needed) the log at `path`, verifying the existing chain first so that
    /// new entries are never chained onto a tampered history.
    pub fn open(path: &Path) -> Result<Self> {
        let last_hash = if path.exists() {
            verify_audit_log(path)?.last_hash
        } else {
            GENESIS_HASH.to_owned()
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| UpdateError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner { file, last_hash }),
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry and fsyncs it.
    pub fn append(&self, decision: Decision, record: AuditRecord) -> Result<AuditEntry> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let entry = AuditEntry {
            time: OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_else(|_| "unknown".into()),
            plugin: record.plugin,
            reference: record.reference,
            digest: record.digest,
            version: record.version,
            publisher: record.publisher,
            decision,
            reason_code: record.reason_code,
            reason: record.reason,
            prev_hash: inner.last_hash.clone(),
        };
        let line = serde_json::to_string(&entry).map_err(|e| {
            UpdateError::io(
                &self.path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?;
        let mut buf = line.clone().into_bytes();
        buf.push(b'\n');
        inner
            .file
            .write_all(&buf)
            .and_then(|()| inner.file.sync_data())
            .map_err(|e| UpdateError::io(&self.path, e))?;
        inner.last_hash = hex::encode(Sha256::digest(line.as_bytes()));
        tracing::info!(
            plugin = %entry.plugin,
            decision = ?entry.decision,
            digest = entry.digest.as_deref().unwrap_or("-"),
            version = entry.version.as_deref().unwrap_or("-"),
            publisher = entry.publisher.as_deref().unwrap_or("-"),
            reason = entry.reason.as_deref().unwrap_or("-"),
            "update audit"
        );
        Ok(entry)
    }
}

/// Result of a successful chain verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSummary {
    /// Number of entries.
    pub entries: usize,
    /// Hash of the last line (the next entry's `prev_hash`).
    pub last_hash: String,
}

/// Verifies the hash chain of the log at `path`.
pub fn verify_audit_log(path: &Path) -> Result<AuditSummary> {
    let file = File::open(path).map_err(|e| UpdateError::io(path, e))?;
    let mut expected = GENESIS_HASH.to_owned();
    let mut entries = 0;
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| UpdateError::io(path, e))?;
        let broken = |reason: String| UpdateError::AuditChainBroken {
            path: path.to_path_buf(),
            line: index + 1,
            reason,
        };
        let entry: AuditEntry =
            serde_json::from_str(&line).map_err(|e| broken(format!("not an audit entry: {e}")))?;
        if entry.prev_hash != expected {
            return Err(broken(format!(
                "prev_hash is {} but the previous line hashes to {expected}",
                entry.prev_hash
            )));
        }
        expected = hex::encode(Sha256::digest(line.as_bytes()));
        entries += 1;
    }
    Ok(AuditSummary {
        entries,
        last_hash: expected,
    })
}

//! The per-share journal: a redb database under `<root>/.outpost/journal.redb`.
//!
//! Tables (values are JSON so the schema can grow):
//! - `files`: share path → [`FileEntry`];
//! - `uploads`: share path → [`UploadRecord`] (an in-progress multipart upload and its
//!   completed parts);
//! - `part_log`: sequence → [`PartEvent`] (`send` committed before each part is sent, `done`
//!   committed with the part's record), which lets tests and operators prove that no completed
//!   part was sent again;
//! - `meta`: small named values (last refresh time).
//!
//! Every state change is one committed write transaction (redb's default durability: fsynced).

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::Result;

const FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("files");
const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
const PART_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("part_log");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Most part-log events kept (oldest dropped first).
const PART_LOG_CAP: u64 = 65_536;

/// Where a file's bytes are (mirrors the `file-state` of the tiering WIT world).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileState {
    /// Only on the device (new or modified, not uploaded yet).
    Local,
    /// An upload is in progress (or was, when the engine stopped).
    Uploading,
    /// On the device and in the cloud, identical.
    Synced,
    /// Only in the cloud; the device keeps a zero-length stub.
    Evicted,
}

/// The journal's record of one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Where the bytes are.
    pub state: FileState,
    /// Size of the content in bytes (not of the stub).
    pub size: u64,
    /// SHA-256 of the content (hex), known once uploaded, recalled or refreshed with metadata.
    pub sha256: Option<String>,
    /// Modification time of the local content (ns since the Unix epoch) when last observed.
    pub modified_ns: u64,
    /// When the engine first saw the current `(size, modified_ns)` (ms since the epoch); the
    /// settle window counts from the later of this and the mtime.
    pub observed_unix_ms: u64,
    /// Written by the engine itself (complete when renamed in): no settle window needed.
    #[serde(default)]
    pub sealed: bool,
    /// Modification time of the stub once an eviction or refresh created it.
    pub stub_modified_ns: Option<u64>,
    /// Remote etag after the last upload or listing.
    pub remote_etag: Option<String>,
    /// Remote version after the last upload, where the backend versions objects.
    pub remote_version: Option<String>,
    /// Pinned by an operator or policy: never evicted.
    pub pinned: bool,
    /// Last read through the engine (ms since the epoch).
    pub accessed_unix_ms: u64,
    /// Failed upload attempts in a row.
    #[serde(default)]
    pub failures: u32,
    /// No upload attempt before this time (ms since the epoch).
    #[serde(default)]
    pub retry_after_unix_ms: u64,
    /// The remote object is client-side encrypted (a concatenation of sealed units, see
    /// [`crate::ShareOptions::encryption`]).
    #[serde(default)]
    pub encrypted: bool,
    /// Plaintext bytes per sealed unit of an encrypted object (the last unit may be shorter).
    #[serde(default)]
    pub encryption_unit: Option<u64>,
}

/// One completed part of a multipart upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    /// Part index, 0-based.
    pub number: u32,
    /// Bytes in the part.
    pub size: u64,
    /// The backend's etag / block id for the part.
    pub etag: String,
}

/// An in-progress multipart upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    /// The engine's id for this upload (names staged parts, keys the part log).
    pub upload_id: String,
    /// The backend's multipart id (empty for Azure, which has none).
    pub backend_id: String,
    /// File size the upload is for.
    pub size: u64,
    /// File mtime the upload is for; a changed file starts a new upload.
    pub modified_ns: u64,
    /// Part size used.
    pub part_size: u64,
    /// Parts completed so far.
    pub parts: Vec<PartRecord>,
    /// Parts are sealed independently (client-side encryption); a resumed upload only reuses
    /// parts sealed the same way.
    #[serde(default)]
    pub encrypted: bool,
    /// The KEK id the parts were sealed under (a unit's header length depends on it).
    #[serde(default)]
    pub encryption_key_id: Option<String>,
}

/// What happened to a part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartEventKind {
    /// About to send the part (committed before the remote call).
    Send,
    /// The part was stored remotely (committed with the part record).
    Done,
}

/// One entry of the part log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartEvent {
    /// The share path.
    pub path: String,
    /// The engine's upload id.
    pub upload_id: String,
    /// Part index.
    pub part: u32,
    /// Send or done.
    pub kind: PartEventKind,
}

pub(crate) struct Journal {
    db: Database,
}

impl Journal {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(FILES)?;
        txn.open_table(UPLOADS)?;
        txn.open_table(PART_LOG)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(Self { db })
    }

    pub(crate) fn get(&self, path: &str) -> Result<Option<FileEntry>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(FILES)?;
        Ok(match t.get(path)? {
            Some(v) => Some(serde_json::from_slice(v.value())?),
            None => None,
        })
    }

    pub(crate) fn all(&self) -> Result<Vec<(String, FileEntry)>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(FILES)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push((k.value().to_owned(), serde_json::from_slice(v.value())?));
        }
        Ok(out)
    }

    pub(crate) fn put(&self, path: &str, entry: &FileEntry) -> Result<()> {
        let bytes = serde_json::to_vec(entry)?;
        let txn = self.db.begin_write()?;
        txn.open_table(FILES)?.insert(path, bytes.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Removes a file and any upload record it has.
    pub(crate) fn remove(&self, path: &str) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(FILES)?.remove(path)?;
        txn.open_table(UPLOADS)?.remove(path)?;
        txn.commit()?;
        Ok(())
    }

    pub(crate) fn upload(&self, path: &str) -> Result<Option<UploadRecord>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(UPLOADS)?;
        Ok(match t.get(path)? {
            Some(v) => Some(serde_json::from_slice(v.value())?),
            None => None,
        })
    }

    pub(crate) fn uploads(&self) -> Result<Vec<(String, UploadRecord)>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(UPLOADS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push((k.value().to_owned(), serde_json::from_slice(v.value())?));
        }
        Ok(out)
    }

    /// Records a new upload and the file's `Uploading` state in one transaction.
    pub(crate) fn start_upload(
        &self,
        path: &str,
        entry: &FileEntry,
        record: &UploadRecord,
    ) -> Result<()> {
        let e = serde_json::to_vec(entry)?;
        let r = serde_json::to_vec(record)?;
        let txn = self.db.begin_write()?;
        txn.open_table(FILES)?.insert(path, e.as_slice())?;
        txn.open_table(UPLOADS)?.insert(path, r.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    pub(crate) fn drop_upload(&self, path: &str) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(UPLOADS)?.remove(path)?;
        txn.commit()?;
        Ok(())
    }

    /// Logs that part `part` of `upload_id` is about to be sent.
    pub(crate) fn log_part_send(&self, path: &str, upload_id: &str, part: u32) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut log = txn.open_table(PART_LOG)?;
            append_event(&mut log, path, upload_id, part, PartEventKind::Send)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Records a completed part (and logs it) in one transaction.
    pub(crate) fn complete_part(&self, path: &str, record: &UploadRecord, part: u32) -> Result<()> {
        let r = serde_json::to_vec(record)?;
        let txn = self.db.begin_write()?;
        txn.open_table(UPLOADS)?.insert(path, r.as_slice())?;
        {
            let mut log = txn.open_table(PART_LOG)?;
            append_event(&mut log, path, &record.upload_id, part, PartEventKind::Done)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Marks the file synced and drops its upload record in one transaction.
    pub(crate) fn finish_upload(&self, path: &str, entry: &FileEntry) -> Result<()> {
        let e = serde_json::to_vec(entry)?;
        let txn = self.db.begin_write()?;
        txn.open_table(FILES)?.insert(path, e.as_slice())?;
        txn.open_table(UPLOADS)?.remove(path)?;
        txn.commit()?;
        Ok(())
    }

    pub(crate) fn part_log(&self) -> Result<Vec<PartEvent>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(PART_LOG)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (_, v) = item?;
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    pub(crate) fn meta(&self, key: &str) -> Result<Option<u64>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(META)?;
        Ok(t.get(key)?.map(|v| v.value()))
    }

    pub(crate) fn set_meta(&self, key: &str, value: u64) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert(key, value)?;
        txn.commit()?;
        Ok(())
    }
}

fn append_event(
    log: &mut redb::Table<'_, u64, &[u8]>,
    path: &str,
    upload_id: &str,
    part: u32,
    kind: PartEventKind,
) -> Result<()> {
    let next = match log.last()? {
        Some((k, _)) => k.value() + 1,
        None => 0,
    };
    let event = serde_json::to_vec(&PartEvent {
        path: path.to_owned(),
        upload_id: upload_id.to_owned(),
        part,
        kind,
    })?;
    log.insert(next, event.as_slice())?;
    while log.len()? > PART_LOG_CAP {
        log.pop_first()?;
    }
    Ok(())
}

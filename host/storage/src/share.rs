//! The engine: one open share with its journal, remote and throttles.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, OwnedMutexGuard};

use crate::bandwidth::{BandwidthSchedule, Throttle, now_unix_ms};
use crate::crypt::{Layout, UnitReader, open_units, seal_units};
use crate::error::{Result, StorageError};
use crate::journal::{FileEntry, FileState, Journal, PartEvent, UploadRecord};
use crate::path::{STATE_DIR, SharePath};
use crate::remote::{Remote, digest_attribute};
use crate::spec::{ShareKind, ShareOptions, ShareSpec};
use crate::stats::ShareStats;
use crate::tiering::{Action, FileStat, TieringInput, VolumeState};

/// Bytes read (and throttled) at a time.
const CHUNK: usize = 64 * 1024;
/// SHA-256 of zero bytes.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What a scan of the share directory found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanReport {
    /// Files seen for the first time.
    pub new_files: u64,
    /// Files whose content changed (to be uploaded again).
    pub modified: u64,
    /// Stubs created again for evicted or vanished synced files.
    pub stubs_restored: u64,
    /// Entries dropped because their unsynced file vanished.
    pub removed: u64,
}

/// What one sync pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// The scan before the uploads.
    pub scan: ScanReport,
    /// Files uploaded.
    pub uploaded: u64,
    /// Files deferred (still being written, or changed during upload).
    pub deferred: u64,
    /// Files whose upload failed (retried later with backoff).
    pub failed: u64,
    /// The earliest time (Unix ms) a file waiting out its retry backoff is due again.
    pub next_retry_unix_ms: Option<u64>,
}

/// What a refresh of the remote prefix did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshReport {
    /// Remote objects added as evicted entries (stubs).
    pub added: u64,
    /// Remote objects already known.
    pub known: u64,
    /// Remote objects skipped (unsafe names, or a local file of the same name).
    pub skipped: u64,
}

/// How an upload went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadOutcome {
    /// Bytes in the file.
    pub size: u64,
    /// SHA-256 of the uploaded content.
    pub sha256: String,
    /// Parts sent in this call (0 for a single PUT).
    pub parts_sent: u32,
    /// Parts that an earlier, interrupted attempt had completed and were not sent again.
    pub parts_resumed: u32,
}

/// Space held by [`Share::reserve`] until dropped.
#[derive(Debug)]
pub struct Reservation {
    inner: Arc<Inner>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        *lock(&self.inner.reserved) -= self.bytes;
        self.inner.space.notify_waiters();
    }
}

#[derive(Debug, Default)]
struct Counters {
    parts_sent: AtomicU64,
    downloads: AtomicU64,
    range_downloads: AtomicU64,
    throttle_events: AtomicU64,
    writers_waiting: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    spec: ShareSpec,
    opts: ShareOptions,
    tmp_dir: PathBuf,
    journal: Journal,
    remote: Option<Remote>,
    throttle: Arc<Throttle>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    counters: Counters,
    reserved: Mutex<u64>,
    space: Notify,
    last_error: Mutex<Option<String>>,
    seq: AtomicU64,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Journal")
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Remote").field(&self.label()).finish()
    }
}

/// An open share. Cheap to clone; all clones drive the same engine.
#[derive(Clone, Debug)]
pub struct Share {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn mtime_ns(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// `(size, mtime_ns)` of a regular file, `None` when it does not exist.
fn file_meta(path: &Path) -> Result<Option<(u64, u64)>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => Ok(Some((m.len(), mtime_ns(&m)))),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io(path, e)),
    }
}

fn hash_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| StorageError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = f.read(&mut buf).map_err(|e| StorageError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Journal(format!("blocking task failed: {e}")))?
}

fn new_entry(size: u64, modified_ns: u64, now: u64) -> FileEntry {
    FileEntry {
        state: FileState::Local,
        size,
        sha256: None,
        modified_ns,
        observed_unix_ms: now,
        sealed: false,
        stub_modified_ns: None,
        remote_etag: None,
        remote_version: None,
        pinned: false,
        accessed_unix_ms: now,
        failures: 0,
        retry_after_unix_ms: 0,
        encrypted: false,
        encryption_unit: None,
    }
}

/// Walks `root` (skipping the state directory) and returns every regular file with a valid
/// share path, its size and mtime.
fn walk(root: &Path) -> Result<Vec<(SharePath, u64, u64)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StorageError::io(&dir, e)),
        };
        for item in rd {
            let item = item.map_err(|e| StorageError::io(&dir, e))?;
            let p = item.path();
            let ft = item.file_type().map_err(|e| StorageError::io(&p, e))?;
            if dir == root && item.file_name() == STATE_DIR {
                continue;
            }
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let rel = p.strip_prefix(root).unwrap_or(&p);
                let Some(rel) = rel.to_str() else {
                    tracing::warn!(path = %p.display(), "skipping a file whose name is not UTF-8");
                    continue;
                };
                match SharePath::new(rel) {
                    Ok(sp) => {
                        let m = item.metadata().map_err(|e| StorageError::io(&p, e))?;
                        out.push((sp, m.len(), mtime_ns(&m)));
                    }
                    Err(e) => tracing::warn!(path = %p.display(), error = %e, "skipping a file"),
                }
            }
        }
    }
    Ok(out)
}

impl Share {
    /// Opens (creating if needed) the share: validates the spec, opens the journal at
    /// `<root>/.outpost/journal.redb`, connects the target, clears leftover temp files and
    /// reconciles the journal with the directory (files changed while the engine was down are
    /// marked for upload; evicted files keep their stubs).
    pub async fn open(spec: ShareSpec, opts: ShareOptions) -> Result<Self> {
        spec.validate()?;
        opts.validate()?;
        let root = spec.root.clone();
        let state_dir = root.join(STATE_DIR);
        let tmp_dir = state_dir.join("tmp");
        std::fs::create_dir_all(&state_dir).map_err(|e| StorageError::io(&state_dir, e))?;
        // The journal's file lock keeps a second engine off this share; only then are the
        // temp files of an interrupted write or recall ours to clear.
        let journal = Journal::open(&state_dir.join("journal.redb"))?;
        if tmp_dir.exists() {
            std::fs::remove_dir_all(&tmp_dir).map_err(|e| StorageError::io(&tmp_dir, e))?;
        }
        std::fs::create_dir_all(&tmp_dir).map_err(|e| StorageError::io(&tmp_dir, e))?;
        let remote = match spec.kind {
            ShareKind::EdgeLocal => None,
            ShareKind::CloudTiered => {
                if let (crate::remote::Scheme::File(dir), _) =
                    crate::remote::parse_target(&spec.target)?
                    && (dir.starts_with(&root) || root.starts_with(&dir))
                {
                    return Err(StorageError::InvalidSpec(
                        "a file:// target must not overlap the share root".into(),
                    ));
                }
                Some(Remote::open(
                    &spec.target,
                    &spec.target_options,
                    &opts.retry,
                )?)
            }
        };
        let throttle = match &opts.throttle {
            Some(t) => t.clone(),
            None => Arc::new(Throttle::unlimited()),
        };
        let share = Share {
            inner: Arc::new(Inner {
                spec,
                opts,
                tmp_dir,
                journal,
                remote,
                throttle,
                locks: Mutex::new(HashMap::new()),
                counters: Counters::default(),
                reserved: Mutex::new(0),
                space: Notify::new(),
                last_error: Mutex::new(None),
                seq: AtomicU64::new(0),
            }),
        };
        // An upload that was running when the engine stopped resumes from its record.
        for (path, mut e) in share.inner.journal.all()? {
            if e.state == FileState::Uploading {
                e.state = FileState::Local;
                share.inner.journal.put(&path, &e)?;
            }
        }
        let report = share.scan().await?;
        tracing::info!(share = %share.inner.spec.name, ?report, "share opened");
        Ok(share)
    }

    /// The share's spec.
    pub fn spec(&self) -> &ShareSpec {
        &self.inner.spec
    }

    fn root(&self) -> &Path {
        &self.inner.spec.root
    }

    fn remote(&self, operation: &'static str) -> Result<&Remote> {
        self.inner
            .remote
            .as_ref()
            .ok_or_else(|| StorageError::EdgeLocal {
                share: self.inner.spec.name.clone(),
                operation,
            })
    }

    fn path_lock(&self, path: &SharePath) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = lock(&self.inner.locks);
        if locks.len() > 1024 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(path.as_str().to_owned()).or_default().clone()
    }

    async fn lock_path(&self, path: &SharePath) -> OwnedMutexGuard<()> {
        self.path_lock(path).lock_owned().await
    }

    fn tmp_file(&self) -> PathBuf {
        let n = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        self.inner
            .tmp_dir
            .join(format!("{}-{n}.tmp", std::process::id()))
    }

    fn set_error(&self, e: &StorageError) {
        *lock(&self.inner.last_error) = Some(e.to_string());
    }

    /// The journal entry of `path`.
    pub fn entry(&self, path: &SharePath) -> Result<Option<FileEntry>> {
        self.inner.journal.get(path.as_str())
    }

    /// Every journal entry, sorted by path.
    pub fn entries(&self) -> Result<Vec<(String, FileEntry)>> {
        self.inner.journal.all()
    }

    /// In-progress multipart uploads and their completed parts.
    pub fn uploads_in_progress(&self) -> Result<Vec<(String, UploadRecord)>> {
        self.inner.journal.uploads()
    }

    /// The part log (most recent 65,536 events): a `send` before every part sent and a `done`
    /// when it was stored.
    pub fn part_log(&self) -> Result<Vec<PartEvent>> {
        self.inner.journal.part_log()
    }

    /// Reconciles the journal with the directory: new files become `local`, changed synced
    /// files become `local` again, vanished unsynced files are dropped, vanished synced files
    /// and evicted files get their stubs (the data is in the cloud). Files being worked on are
    /// left alone.
    pub async fn scan(&self) -> Result<ScanReport> {
        let root = self.root().to_path_buf();
        let on_disk = blocking(move || walk(&root)).await?;
        let known: HashMap<String, FileEntry> = self.inner.journal.all()?.into_iter().collect();
        let mut report = ScanReport::default();
        let now = now_unix_ms();
        let mut seen = std::collections::HashSet::new();
        for (path, size, mtime) in on_disk {
            seen.insert(path.as_str().to_owned());
            let Ok(_guard) = self.path_lock(&path).try_lock_owned() else {
                continue;
            };
            // Re-read under the lock: the snapshot may be stale.
            let Some(mut e) = self.inner.journal.get(path.as_str())? else {
                self.inner
                    .journal
                    .put(path.as_str(), &new_entry(size, mtime, now))?;
                report.new_files += 1;
                continue;
            };
            if let Some(changed) = self
                .reconcile_entry(&path, &mut e, size, mtime, now)
                .await?
            {
                if changed {
                    report.modified += 1;
                }
                self.inner.journal.put(path.as_str(), &e)?;
            }
        }
        for (path, _) in known {
            if seen.contains(&path) {
                continue;
            }
            let Ok(sp) = SharePath::new(&path) else {
                continue;
            };
            let Ok(_guard) = self.path_lock(&sp).try_lock_owned() else {
                continue;
            };
            let Some(mut e) = self.inner.journal.get(&path)? else {
                continue;
            };
            if file_meta(&sp.local(self.root()))?.is_some() {
                continue;
            }
            match e.state {
                FileState::Synced | FileState::Evicted if self.inner.remote.is_some() => {
                    e.state = FileState::Evicted;
                    e.stub_modified_ns = None;
                    self.inner.journal.put(&path, &e)?;
                    self.make_stub(&sp, &mut e).await?;
                    report.stubs_restored += 1;
                }
                _ => {
                    if let (Some(remote), Some(rec)) =
                        (&self.inner.remote, self.inner.journal.upload(&path)?)
                    {
                        remote
                            .abort_multipart(
                                &sp,
                                &rec.backend_id,
                                &rec.upload_id,
                                rec.parts.len() as u32,
                            )
                            .await;
                    }
                    self.inner.journal.remove(&path)?;
                    report.removed += 1;
                }
            }
        }
        Ok(report)
    }

    /// Updates `e` for a file seen on disk. Returns `None` when nothing changed, `Some(true)`
    /// when the content changed, `Some(false)` for bookkeeping-only updates.
    async fn reconcile_entry(
        &self,
        path: &SharePath,
        e: &mut FileEntry,
        size: u64,
        mtime: u64,
        now: u64,
    ) -> Result<Option<bool>> {
        let local = path.local(self.root());
        let same = size == e.size && mtime == e.modified_ns;
        let content_matches = |e: &FileEntry| {
            let local = local.clone();
            let sha = e.sha256.clone();
            let size_ok = size == e.size;
            async move {
                match sha {
                    Some(sha) if size_ok => blocking(move || Ok(hash_file(&local)? == sha)).await,
                    _ => Ok(false),
                }
            }
        };
        let modified = |e: &mut FileEntry| {
            e.state = FileState::Local;
            e.size = size;
            e.modified_ns = mtime;
            e.observed_unix_ms = now;
            e.sealed = false;
            e.sha256 = None;
            e.stub_modified_ns = None;
            Some(true)
        };
        Ok(match e.state {
            FileState::Local | FileState::Uploading => {
                if same {
                    None
                } else {
                    modified(e)
                }
            }
            FileState::Synced => {
                if same {
                    None
                } else if content_matches(e).await? {
                    e.modified_ns = mtime;
                    Some(false)
                } else {
                    modified(e)
                }
            }
            FileState::Evicted => match e.stub_modified_ns {
                Some(stub) if size == 0 && mtime == stub => None,
                None if size == 0 && e.size > 0 => {
                    // The stub was renamed in but its mtime not recorded before a stop.
                    e.stub_modified_ns = Some(mtime);
                    Some(false)
                }
                _ if size > 0 && content_matches(e).await? => {
                    // A recall (or an interrupted eviction) left the full content in place.
                    e.state = FileState::Synced;
                    e.modified_ns = mtime;
                    e.observed_unix_ms = now;
                    e.stub_modified_ns = None;
                    Some(false)
                }
                _ => modified(e),
            },
        })
    }

    async fn make_stub(&self, path: &SharePath, e: &mut FileEntry) -> Result<()> {
        let local = path.local(self.root());
        let tmp = self.tmp_file();
        let stub_mtime = blocking(move || {
            if let Some(parent) = local.parent() {
                std::fs::create_dir_all(parent).map_err(|e| StorageError::io(parent, e))?;
            }
            let f = std::fs::File::create(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
            f.sync_all().map_err(|e| StorageError::io(&tmp, e))?;
            std::fs::rename(&tmp, &local).map_err(|e| StorageError::io(&local, e))?;
            Ok(file_meta(&local)?.map(|m| m.1).unwrap_or(0))
        })
        .await?;
        e.stub_modified_ns = Some(stub_mtime);
        self.inner.journal.put(path.as_str(), e)
    }

    fn settled(&self, e: &FileEntry, now: u64) -> bool {
        let since = (e.modified_ns / 1_000_000).max(e.observed_unix_ms);
        e.sealed || now >= since.saturating_add(self.inner.opts.settle_window.as_millis() as u64)
    }

    /// Writes `data` as `path` through the engine: waits in [`Share::reserve`] while the quota is
    /// full of unsynced data, writes a temp file, fsyncs and renames it into place, and records
    /// the file as `local` (complete, so no settle window applies).
    pub async fn write(&self, path: &SharePath, data: Bytes) -> Result<()> {
        let _reservation = self.reserve(data.len() as u64).await?;
        let _guard = self.lock_path(path).await;
        let local = path.local(self.root());
        let tmp = self.tmp_file();
        let (size, mtime) = blocking(move || {
            if let Some(parent) = local.parent() {
                std::fs::create_dir_all(parent).map_err(|e| StorageError::io(parent, e))?;
            }
            let mut f = std::fs::File::create(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
            f.write_all(&data).map_err(|e| StorageError::io(&tmp, e))?;
            f.sync_all().map_err(|e| StorageError::io(&tmp, e))?;
            std::fs::rename(&tmp, &local).map_err(|e| StorageError::io(&local, e))?;
            file_meta(&local)?.ok_or_else(|| StorageError::NotFound(local.display().to_string()))
        })
        .await?;
        let now = now_unix_ms();
        let previous = self.inner.journal.get(path.as_str())?;
        let mut e = new_entry(size, mtime, now);
        e.sealed = true;
        e.pinned = previous.is_some_and(|p| p.pinned);
        self.inner.journal.put(path.as_str(), &e)?;
        Ok(())
    }

    /// Waits until `bytes` more fit in the quota and holds them until the returned reservation
    /// is dropped. On a cloud-tiered share a full quota of *unsynced* data makes the writer wait
    /// for uploads (so it is slowed to the upload rate) and raises the throttle alert; synced
    /// files are evicted (least recently read first, never pinned ones) to make room. An
    /// edge-local share that is full answers [`StorageError::QuotaExceeded`].
    pub async fn reserve(&self, bytes: u64) -> Result<Reservation> {
        let quota = self.inner.spec.quota_bytes;
        if bytes > quota {
            return Err(StorageError::QuotaTooSmall {
                requested: bytes,
                quota,
            });
        }
        let mut waited = false;
        let result = loop {
            let notified = self.inner.space.notified();
            let entries = self.inner.journal.all()?;
            let unsynced: u64 = entries
                .iter()
                .filter(|(_, e)| matches!(e.state, FileState::Local | FileState::Uploading))
                .map(|(_, e)| e.size)
                .sum();
            let used: u64 = entries
                .iter()
                .filter(|(_, e)| e.state != FileState::Evicted)
                .map(|(_, e)| e.size)
                .sum();
            {
                let mut reserved = lock(&self.inner.reserved);
                let fits_unsynced = unsynced + *reserved + bytes <= quota;
                let fits_used = used + *reserved + bytes <= quota;
                if self.inner.remote.is_none() {
                    if !fits_used {
                        break Err(StorageError::QuotaExceeded {
                            share: self.inner.spec.name.clone(),
                            used: used + *reserved,
                            quota,
                            requested: bytes,
                        });
                    }
                    *reserved += bytes;
                    break Ok(());
                }
                if fits_unsynced && fits_used {
                    *reserved += bytes;
                    break Ok(());
                }
            }
            if fits_after_eviction(unsynced, bytes, quota) {
                let need = (used + *lock(&self.inner.reserved) + bytes).saturating_sub(quota);
                if self.make_room(need, entries).await? > 0 {
                    continue;
                }
            }
            if !waited {
                waited = true;
                self.inner
                    .counters
                    .throttle_events
                    .fetch_add(1, Ordering::Relaxed);
                self.inner
                    .counters
                    .writers_waiting
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(share = %self.inner.spec.name, bytes, unsynced, quota,
                    "local cache full of unsynced data; throttling the writer to the upload rate");
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        };
        if waited {
            self.inner
                .counters
                .writers_waiting
                .fetch_sub(1, Ordering::Relaxed);
        }
        result.map(|()| Reservation {
            inner: self.inner.clone(),
            bytes,
        })
    }

    /// Evicts synced, unpinned files, least recently read first, until `need` bytes are freed.
    async fn make_room(&self, need: u64, mut entries: Vec<(String, FileEntry)>) -> Result<u64> {
        entries.retain(|(_, e)| e.state == FileState::Synced && !e.pinned && e.size > 0);
        entries.sort_by_key(|(_, e)| e.accessed_unix_ms);
        let mut freed = 0;
        for (path, e) in entries {
            if freed >= need {
                break;
            }
            let Ok(p) = SharePath::new(&path) else {
                continue;
            };
            match self.evict(&p).await {
                Ok(()) => freed += e.size,
                Err(err) => tracing::debug!(%path, error = %err, "could not evict to make room"),
            }
        }
        Ok(freed)
    }

    /// Uploads `path` now (resuming an interrupted multipart upload), unless it was modified
    /// within the settle window ([`StorageError::NotSettled`]). A synced file is a no-op.
    pub async fn upload(&self, path: &SharePath) -> Result<UploadOutcome> {
        let remote = self.remote("upload")?;
        let _guard = self.lock_path(path).await;
        let mut e = self
            .inner
            .journal
            .get(path.as_str())?
            .ok_or_else(|| StorageError::NotFound(path.to_string()))?;
        if matches!(e.state, FileState::Synced | FileState::Evicted) {
            return Ok(UploadOutcome {
                size: e.size,
                sha256: e.sha256.clone().unwrap_or_default(),
                parts_sent: 0,
                parts_resumed: 0,
            });
        }
        let result = self.upload_locked(remote, path, &mut e).await;
        match &result {
            Ok(_) => {
                self.inner.space.notify_waiters();
            }
            Err(StorageError::NotSettled(_) | StorageError::ChangedDuringUpload(_)) => {}
            Err(err) => {
                tracing::warn!(share = %self.inner.spec.name, %path, error = %err, "upload failed");
                self.set_error(err);
                if let Some(mut cur) = self.inner.journal.get(path.as_str())? {
                    cur.state = FileState::Local;
                    cur.failures = cur.failures.saturating_add(1);
                    cur.retry_after_unix_ms = now_unix_ms()
                        + self.inner.opts.retry.delay(cur.failures - 1).as_millis() as u64;
                    self.inner.journal.put(path.as_str(), &cur)?;
                }
            }
        }
        result
    }

    async fn upload_locked(
        &self,
        remote: &Remote,
        path: &SharePath,
        e: &mut FileEntry,
    ) -> Result<UploadOutcome> {
        let local = path.local(self.root());
        let now = now_unix_ms();
        let Some((size, mtime)) = file_meta(&local)? else {
            self.inner.journal.remove(path.as_str())?;
            return Err(StorageError::NotFound(path.to_string()));
        };
        if (size, mtime) != (e.size, e.modified_ns) {
            e.state = FileState::Local;
            e.size = size;
            e.modified_ns = mtime;
            e.observed_unix_ms = now;
            e.sealed = false;
            self.inner.journal.put(path.as_str(), e)?;
        }
        if !self.settled(e, now) {
            return Err(StorageError::NotSettled(path.to_string()));
        }
        let opts = &self.inner.opts;
        let layout = opts
            .encryption
            .as_ref()
            .map(|p| Layout::new(size, opts.part_size, p.as_ref()));
        // An empty file is one sealed unit: never an empty multipart upload when encrypting.
        let single = size < opts.multipart_threshold || (layout.is_some() && size == 0);
        let (sha, put, parts_sent, parts_resumed) = if single {
            e.state = FileState::Uploading;
            self.inner.journal.put(path.as_str(), e)?;
            let (mut data, h) = self.read_part(&local, 0, size, true, Sha256::new()).await?;
            let sha = hex::encode(h.finalize());
            self.check_unchanged(path, &local, size, mtime, e)?;
            if let (Some(provider), Some(layout)) = (&opts.encryption, layout) {
                data = seal_units(provider, path.as_str(), layout, 0, data).await?;
            }
            let put = remote.put(path, data, &sha, layout.is_some()).await?;
            (sha, put, 0, 0)
        } else {
            self.upload_multipart(remote, path, &local, size, mtime, e)
                .await?
        };
        let (meta, remote_digest) = remote.head(path).await?;
        // An encrypted object is compared against its sealed length.
        let remote_size = layout.map_or(size, |l| l.sealed_total());
        if meta.size != remote_size {
            return Err(StorageError::SizeMismatch {
                path: path.to_string(),
                expected: remote_size,
                actual: meta.size,
            });
        }
        if let Some(d) = remote_digest
            && d != sha
        {
            return Err(StorageError::DigestMismatch {
                path: path.to_string(),
                expected: sha,
                actual: d,
            });
        }
        if opts.read_back_verify {
            let actual = self.download_digest(remote, path, layout).await?;
            if actual != sha {
                return Err(StorageError::DigestMismatch {
                    path: path.to_string(),
                    expected: sha,
                    actual,
                });
            }
        }
        e.state = FileState::Synced;
        e.sha256 = Some(sha.clone());
        e.remote_etag = put.e_tag.or(meta.e_tag);
        e.remote_version = put.version.or(meta.version);
        e.failures = 0;
        e.retry_after_unix_ms = 0;
        e.encrypted = layout.is_some();
        e.encryption_unit = layout.map(|l| l.unit);
        self.inner.journal.finish_upload(path.as_str(), e)?;
        tracing::debug!(share = %self.inner.spec.name, %path, size, parts_sent, parts_resumed, "uploaded");
        Ok(UploadOutcome {
            size,
            sha256: sha,
            parts_sent,
            parts_resumed,
        })
    }

    fn check_unchanged(
        &self,
        path: &SharePath,
        local: &Path,
        size: u64,
        mtime: u64,
        e: &mut FileEntry,
    ) -> Result<()> {
        if file_meta(local)? == Some((size, mtime)) {
            return Ok(());
        }
        e.state = FileState::Local;
        e.observed_unix_ms = now_unix_ms();
        e.sealed = false;
        self.inner.journal.put(path.as_str(), e)?;
        Err(StorageError::ChangedDuringUpload(path.to_string()))
    }

    async fn upload_multipart(
        &self,
        remote: &Remote,
        path: &SharePath,
        local: &Path,
        size: u64,
        mtime: u64,
        e: &mut FileEntry,
    ) -> Result<(String, object_store::PutResult, u32, u32)> {
        let journal = &self.inner.journal;
        let part_size = self.inner.opts.part_size;
        let encryption = self.inner.opts.encryption.as_ref();
        let layout = encryption.map(|p| Layout::new(size, part_size, p.as_ref()));
        let mut record = match journal.upload(path.as_str())? {
            Some(r)
                if r.size == size
                    && r.modified_ns == mtime
                    && r.part_size == part_size
                    && r.encrypted == layout.is_some()
                    && r.encryption_key_id.as_deref() == encryption.map(|p| p.key_id()) =>
            {
                e.state = FileState::Uploading;
                journal.put(path.as_str(), e)?;
                r
            }
            stale => {
                if let Some(r) = stale {
                    remote
                        .abort_multipart(path, &r.backend_id, &r.upload_id, r.parts.len() as u32)
                        .await;
                }
                let backend_id = remote.create_multipart(path).await?;
                let record = UploadRecord {
                    upload_id: self.new_upload_id(path),
                    backend_id,
                    size,
                    modified_ns: mtime,
                    part_size,
                    parts: Vec::new(),
                    encrypted: layout.is_some(),
                    encryption_key_id: encryption.map(|p| p.key_id().to_owned()),
                };
                e.state = FileState::Uploading;
                journal.start_upload(path.as_str(), e, &record)?;
                record
            }
        };
        let nparts = size.div_ceil(part_size) as u32;
        let mut h = Sha256::new();
        let mut etags: Vec<Option<String>> = vec![None; nparts as usize];
        let (mut sent, mut resumed) = (0, 0);
        // Parts are read and hashed in order here; up to `part_concurrency` of them travel at
        // once, each in its own task. A part is journaled complete as soon as it lands, so an
        // interruption loses only the parts still in flight.
        let window = self.inner.opts.part_concurrency.max(1);
        let mut in_flight = futures_util::stream::FuturesUnordered::new();
        let mut failed: Option<StorageError> = None;
        for idx in 0..nparts {
            let start = u64::from(idx) * part_size;
            let len = part_size.min(size - start);
            if let Some(done) = record
                .parts
                .iter()
                .find(|p| p.number == idx && p.size == len)
            {
                // Completed before an interruption: hash the local bytes, do not send again.
                etags[idx as usize] = Some(done.etag.clone());
                h = self.read_part(local, start, len, false, h).await?.1;
                resumed += 1;
                continue;
            }
            while in_flight.len() >= window {
                if let Some(landed) = in_flight.next().await {
                    self.part_landed(path, &mut record, &mut etags, &mut failed, landed)?;
                }
            }
            if failed.is_some() {
                break;
            }
            let (mut data, hasher) = self.read_part(local, start, len, true, h).await?;
            h = hasher;
            if let (Some(provider), Some(layout)) = (encryption, layout) {
                // Each part is one unit, sealed alone: decryptable and re-sendable by itself.
                data = seal_units(provider, path.as_str(), layout, u64::from(idx), data).await?;
            }
            journal.log_part_send(path.as_str(), &record.upload_id, idx)?;
            self.inner
                .counters
                .parts_sent
                .fetch_add(1, Ordering::Relaxed);
            let share = self.clone();
            let (p, backend_id, upload_id) = (
                path.clone(),
                record.backend_id.clone(),
                record.upload_id.clone(),
            );
            let task = tokio::spawn(async move {
                let remote = share.remote("upload")?;
                remote
                    .put_part(&p, &backend_id, &upload_id, idx, data)
                    .await
            });
            in_flight.push(async move {
                let etag = task.await.unwrap_or_else(|e| {
                    Err(StorageError::Journal(format!(
                        "part upload task failed: {e}"
                    )))
                });
                (idx, len, etag)
            });
            sent += 1;
        }
        while let Some(landed) = in_flight.next().await {
            self.part_landed(path, &mut record, &mut etags, &mut failed, landed)?;
        }
        if let Some(err) = failed {
            return Err(err);
        }
        let Some(etags) = etags.into_iter().collect::<Option<Vec<String>>>() else {
            return Err(StorageError::Journal(format!(
                "{path}: a part of the upload has no entity tag"
            )));
        };
        if let Err(err) = self.check_unchanged(path, local, size, mtime, e) {
            remote
                .abort_multipart(path, &record.backend_id, &record.upload_id, nparts)
                .await;
            journal.drop_upload(path.as_str())?;
            return Err(err);
        }
        let sha = hex::encode(h.finalize());
        match remote
            .complete_multipart(path, &record.backend_id, &record.upload_id, &etags)
            .await
        {
            Ok(put) => Ok((sha, put, sent, resumed)),
            Err(err) => {
                // Reachable store and a complete object of the right size: an earlier attempt
                // completed it (the engine stopped before recording that). Unreachable store:
                // keep the record and resume later. Reachable but no such object: the parts
                // are gone (expired, store reset); start over next time.
                let remote_size = layout.map_or(size, |l| l.sealed_total());
                match remote.head(path).await {
                    Ok((meta, _)) if meta.size == remote_size => Ok((
                        sha,
                        object_store::PutResult {
                            e_tag: meta.e_tag,
                            version: meta.version,
                        },
                        sent,
                        resumed,
                    )),
                    Ok(_) | Err(StorageError::Remote(object_store::Error::NotFound { .. })) => {
                        tracing::warn!(%path, error = %err, "multipart completion refused; restarting the upload next time");
                        journal.drop_upload(path.as_str())?;
                        Err(err)
                    }
                    Err(_) => Err(err),
                }
            }
        }
    }

    fn new_upload_id(&self, path: &SharePath) -> String {
        let mut h = Sha256::new();
        h.update(path.as_str());
        h.update(std::process::id().to_le_bytes());
        h.update(
            std::time::SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
                .to_le_bytes(),
        );
        h.update(self.inner.seq.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        hex::encode(&h.finalize()[..16])
    }

    /// Records a part that finished uploading: journaled complete on success; the first failure
    /// is kept (the other parts in flight still land and are recorded).
    fn part_landed(
        &self,
        path: &SharePath,
        record: &mut UploadRecord,
        etags: &mut [Option<String>],
        failed: &mut Option<StorageError>,
        (idx, len, result): (u32, u64, Result<String>),
    ) -> Result<()> {
        match result {
            Ok(etag) => {
                record.parts.retain(|p| p.number != idx);
                record.parts.push(crate::journal::PartRecord {
                    number: idx,
                    size: len,
                    etag: etag.clone(),
                });
                self.inner
                    .journal
                    .complete_part(path.as_str(), record, idx)?;
                etags[idx as usize] = Some(etag);
            }
            Err(err) => {
                failed.get_or_insert(err);
            }
        }
        Ok(())
    }

    /// Reads `len` bytes at `start` on a blocking thread, feeding `hasher` (returned with the
    /// bytes); when `throttled`, then takes the bytes from the upload token bucket chunk by
    /// chunk before they are sent.
    async fn read_part(
        &self,
        local: &Path,
        start: u64,
        len: u64,
        throttled: bool,
        mut hasher: Sha256,
    ) -> Result<(Bytes, Sha256)> {
        let file = local.to_path_buf();
        let (data, hasher) = blocking(move || {
            let mut f = std::fs::File::open(&file).map_err(|e| StorageError::io(&file, e))?;
            f.seek(SeekFrom::Start(start))
                .map_err(|e| StorageError::io(&file, e))?;
            let mut out = vec![0u8; len as usize];
            f.read_exact(&mut out)
                .map_err(|e| StorageError::io(&file, e))?;
            hasher.update(&out);
            Ok((Bytes::from(out), hasher))
        })
        .await?;
        if throttled {
            let mut left = len;
            while left > 0 {
                let want = left.min(CHUNK as u64);
                self.inner.throttle.acquire(want).await;
                left -= want;
            }
        }
        Ok((data, hasher))
    }

    /// SHA-256 of the object's content as downloaded (decrypted when `layout` is given).
    async fn download_digest(
        &self,
        remote: &Remote,
        path: &SharePath,
        layout: Option<Layout>,
    ) -> Result<String> {
        let mut stream = remote.get(path).await?.into_stream();
        let mut h = Sha256::new();
        let mut units = match (layout, &self.inner.opts.encryption) {
            (Some(l), Some(p)) => Some(UnitReader::new(l, p.clone())),
            _ => None,
        };
        while let Some(chunk) = stream.try_next().await? {
            match &mut units {
                Some(u) => {
                    for plain in u.push(path.as_str(), chunk).await? {
                        h.update(&plain);
                    }
                }
                None => h.update(&chunk),
            }
        }
        if let Some(u) = &units {
            u.finish(path.as_str())?;
        }
        Ok(hex::encode(h.finalize()))
    }

    /// One pass: scan, then upload every settled `local` file (with the configured
    /// concurrency). Failures are recorded per file and retried after an exponential backoff.
    pub async fn sync_once(&self) -> Result<SyncReport> {
        let scan = self.scan().await?;
        let mut report = SyncReport {
            scan,
            ..SyncReport::default()
        };
        if self.inner.remote.is_none() {
            return Ok(report);
        }
        let now = now_unix_ms();
        let due: Vec<SharePath> = self
            .inner
            .journal
            .all()?
            .into_iter()
            .filter(|(_, e)| matches!(e.state, FileState::Local | FileState::Uploading))
            .filter(|(_, e)| {
                if e.retry_after_unix_ms > now {
                    let next = report
                        .next_retry_unix_ms
                        .get_or_insert(e.retry_after_unix_ms);
                    *next = (*next).min(e.retry_after_unix_ms);
                }
                e.retry_after_unix_ms <= now
            })
            .filter_map(|(p, e)| {
                if self.settled(&e, now) {
                    SharePath::new(&p).ok()
                } else {
                    report.deferred += 1;
                    None
                }
            })
            .collect();
        let results: Vec<Result<UploadOutcome>> = futures_util::stream::iter(due)
            .map(|p| async move { self.upload(&p).await })
            .buffer_unordered(self.inner.opts.upload_concurrency)
            .collect()
            .await;
        for r in results {
            match r {
                Ok(_) => report.uploaded += 1,
                Err(StorageError::NotSettled(_) | StorageError::ChangedDuringUpload(_)) => {
                    report.deferred += 1
                }
                Err(StorageError::NotFound(_)) => {}
                Err(_) => report.failed += 1,
            }
        }
        if report.failed == 0 && report.uploaded > 0 {
            *lock(&self.inner.last_error) = None;
        }
        Ok(report)
    }

    /// Runs [`Share::sync_once`] until `shutdown` turns true.
    ///
    /// The share directory is watched (inotify on Linux): a file created, written, closed,
    /// renamed or removed there wakes the engine at once, so files dropped in by other programs
    /// (or an NFS/SMB server exporting the directory) are picked up without polling. Between
    /// events the engine wakes when a deferred file's settle window ends, when a failed upload's
    /// backoff is over, and every `rescan_interval` as a safety net (a filesystem that sends no
    /// events). Where no watch can be set up (no inotify, watch limit reached) it falls back to a
    /// pass every `scan_interval`.
    pub async fn run(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let wake = Arc::new(Notify::new());
        let watcher = self.watch_root(wake.clone());
        let opts = &self.inner.opts;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let wait = match self.sync_once().await {
                Ok(report) if watcher.is_some() => {
                    let mut wait = opts.rescan_interval;
                    if report.deferred > 0 || report.failed > 0 {
                        wait = wait.min(opts.settle_window.max(Duration::from_millis(50)));
                    }
                    if let Some(at) = report.next_retry_unix_ms {
                        let left = at.saturating_sub(now_unix_ms()).max(50);
                        wait = wait.min(Duration::from_millis(left));
                    }
                    wait
                }
                Ok(_) => opts.scan_interval,
                Err(e) => {
                    tracing::warn!(share = %self.inner.spec.name, error = %e, "sync pass failed");
                    self.set_error(&e);
                    opts.scan_interval
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = wake.notified() => {
                    // A burst of events (a copy in progress) makes one pass, not one per event.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                r = shutdown.changed() => if r.is_err() { break },
            }
        }
        drop(watcher);
    }

    /// Sets up the directory watch that wakes [`Share::run`]; `None` (logged) where the
    /// platform refuses one.
    fn watch_root(&self, wake: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
        use notify::{EventKind, RecursiveMode, Watcher, event::AccessKind, event::AccessMode};
        let state_dir = self.root().join(STATE_DIR);
        let handler = move |res: notify::Result<notify::Event>| match res {
            Ok(event) => {
                // Reads (the engine's own uploads) and the engine's journal and temp files
                // are not news.
                let relevant = match event.kind {
                    EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
                    EventKind::Access(_) => false,
                    _ => true,
                };
                let outside_state = event.paths.is_empty()
                    || event.paths.iter().any(|p| !p.starts_with(&state_dir));
                if relevant && (outside_state || event.need_rescan()) {
                    wake.notify_one();
                }
            }
            // Overflowed queue or a watch error: a pass finds whatever was missed.
            Err(_) => wake.notify_one(),
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(share = %self.inner.spec.name, error = %e, "no directory watch; polling every scan interval");
                return None;
            }
        };
        if let Err(e) = watcher.watch(self.root(), RecursiveMode::Recursive) {
            tracing::warn!(share = %self.inner.spec.name, error = %e, "no directory watch; polling every scan interval");
            return None;
        }
        Some(watcher)
    }

    /// Replaces the local copy of a synced, unpinned file with a zero-length stub (the journal
    /// keeps its size and digest). Refused for pinned files and for files that are not synced
    /// (or were modified since), whoever asks. Evicting an evicted file is a no-op, as is
    /// evicting an empty file (nothing to free).
    pub async fn evict(&self, path: &SharePath) -> Result<()> {
        self.remote("evict")?;
        let _guard = self.lock_path(path).await;
        let mut e = self
            .inner
            .journal
            .get(path.as_str())?
            .ok_or_else(|| StorageError::NotFound(path.to_string()))?;
        if e.pinned {
            return Err(StorageError::refused(
                "evict",
                path.as_str(),
                "the file is pinned",
            ));
        }
        match e.state {
            FileState::Synced => {}
            FileState::Evicted => return Ok(()),
            other => {
                return Err(StorageError::refused(
                    "evict",
                    path.as_str(),
                    format!("the file is not synced (state {other:?})"),
                ));
            }
        }
        if e.size == 0 {
            return Ok(());
        }
        let local = path.local(self.root());
        if file_meta(&local)? != Some((e.size, e.modified_ns)) {
            return Err(StorageError::refused(
                "evict",
                path.as_str(),
                "the file was modified since it was synced",
            ));
        }
        e.state = FileState::Evicted;
        e.stub_modified_ns = None;
        self.inner.journal.put(path.as_str(), &e)?;
        self.make_stub(path, &mut e).await?;
        self.inner.space.notify_waiters();
        tracing::debug!(share = %self.inner.spec.name, %path, "evicted");
        Ok(())
    }

    /// Brings an evicted file back whole, verifying its SHA-256. Concurrent callers for the
    /// same file share one download. Returns whether this call downloaded.
    pub async fn recall(&self, path: &SharePath) -> Result<bool> {
        let remote = self.remote("recall")?;
        let _guard = self.lock_path(path).await;
        let mut e = self
            .inner
            .journal
            .get(path.as_str())?
            .ok_or_else(|| StorageError::NotFound(path.to_string()))?;
        if e.state != FileState::Evicted {
            return Ok(false);
        }
        let local = path.local(self.root());
        match (file_meta(&local)?, e.stub_modified_ns) {
            (None, _) => {}
            (Some((0, m)), Some(stub)) if m == stub => {}
            (Some((0, _)), None) => {}
            _ => {
                return Err(StorageError::refused(
                    "recall",
                    path.as_str(),
                    "the stub was overwritten locally; the new content is kept",
                ));
            }
        }
        let mut units = self
            .encrypted_layout(path, &e)?
            .map(|(layout, provider)| UnitReader::new(layout, provider));
        let result = remote.get(path).await?;
        let object_digest = digest_attribute(&result.attributes);
        let mut stream = result.into_stream();
        let tmp = self.tmp_file();
        let mut f = std::fs::File::create(&tmp).map_err(|err| StorageError::io(&tmp, err))?;
        let mut h = Sha256::new();
        let mut n = 0u64;
        let body = async {
            while let Some(chunk) = stream.try_next().await? {
                let plain = match &mut units {
                    Some(u) => u.push(path.as_str(), chunk).await?,
                    None => vec![chunk],
                };
                for chunk in plain {
                    h.update(&chunk);
                    n += chunk.len() as u64;
                    f.write_all(&chunk)
                        .map_err(|err| StorageError::io(&tmp, err))?;
                }
            }
            if let Some(u) = &units {
                u.finish(path.as_str())?;
            }
            f.sync_all().map_err(|err| StorageError::io(&tmp, err))?;
            Ok::<_, StorageError>(())
        };
        if let Err(err) = body.await {
            let _ = std::fs::remove_file(&tmp);
            return Err(err);
        }
        self.inner
            .counters
            .downloads
            .fetch_add(1, Ordering::Relaxed);
        let actual = hex::encode(h.finalize());
        let expected = e.sha256.clone().or(object_digest);
        if n != e.size || expected.as_ref().is_some_and(|x| *x != actual) {
            let _ = std::fs::remove_file(&tmp);
            let err = if n != e.size {
                StorageError::SizeMismatch {
                    path: path.to_string(),
                    expected: e.size,
                    actual: n,
                }
            } else {
                StorageError::DigestMismatch {
                    path: path.to_string(),
                    expected: expected.unwrap_or_default(),
                    actual,
                }
            };
            self.set_error(&err);
            return Err(err);
        }
        // Record the digest first so a stop right after the rename is recognised by content.
        e.sha256 = Some(actual);
        self.inner.journal.put(path.as_str(), &e)?;
        if let Some(parent) = local.parent() {
            std::fs::create_dir_all(parent).map_err(|err| StorageError::io(parent, err))?;
        }
        std::fs::rename(&tmp, &local).map_err(|err| StorageError::io(&local, err))?;
        let (_, mtime) =
            file_meta(&local)?.ok_or_else(|| StorageError::NotFound(path.to_string()))?;
        let now = now_unix_ms();
        e.state = FileState::Synced;
        e.modified_ns = mtime;
        e.observed_unix_ms = now;
        e.stub_modified_ns = None;
        e.accessed_unix_ms = now;
        self.inner.journal.put(path.as_str(), &e)?;
        tracing::debug!(share = %self.inner.spec.name, %path, size = n, "recalled");
        Ok(true)
    }

    /// The layout and provider of an encrypted entry (`None` for a plaintext object). An
    /// encrypted object on a share without a key provider is an error, never read as is.
    fn encrypted_layout(
        &self,
        path: &SharePath,
        e: &FileEntry,
    ) -> Result<Option<(Layout, crate::spec::SharedKeyProvider)>> {
        if !e.encrypted {
            return Ok(None);
        }
        let provider = self.inner.opts.encryption.clone().ok_or_else(|| {
            StorageError::encrypted_layout(
                path.as_str(),
                "the object is encrypted and the share has no key provider",
            )
        })?;
        let unit = e.encryption_unit.unwrap_or(self.inner.opts.part_size);
        Ok(Some((
            Layout::new(e.size, unit, provider.as_ref()),
            provider,
        )))
    }

    async fn touch(&self, path: &SharePath) -> Result<()> {
        let _guard = self.lock_path(path).await;
        if let Some(mut e) = self.inner.journal.get(path.as_str())? {
            let now = now_unix_ms();
            if now.saturating_sub(e.accessed_unix_ms) >= 1000 {
                e.accessed_unix_ms = now;
                self.inner.journal.put(path.as_str(), &e)?;
            }
        }
        Ok(())
    }

    async fn recall_if_evicted(&self, path: &SharePath) -> Result<()> {
        if self
            .inner
            .journal
            .get(path.as_str())?
            .is_some_and(|e| e.state == FileState::Evicted)
        {
            self.recall(path).await?;
        }
        Ok(())
    }

    /// Reads a whole file, recalling it first when evicted.
    pub async fn read(&self, path: &SharePath) -> Result<Bytes> {
        self.recall_if_evicted(path).await?;
        let local = path.local(self.root());
        let data = blocking(move || {
            std::fs::read(&local).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => StorageError::NotFound(local.display().to_string()),
                _ => StorageError::io(&local, e),
            })
        })
        .await?;
        self.touch(path).await?;
        Ok(Bytes::from(data))
    }

    /// Opens a file for streaming (an evicted file is recalled first), with its length: for
    /// readers that must not hold a large file in memory.
    pub async fn open_read(&self, path: &SharePath) -> Result<(tokio::fs::File, u64)> {
        self.recall_if_evicted(path).await?;
        let local = path.local(self.root());
        let file = tokio::fs::File::open(&local)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => StorageError::NotFound(local.display().to_string()),
                _ => StorageError::io(&local, e),
            })?;
        let len = file
            .metadata()
            .await
            .map_err(|e| StorageError::io(&local, e))?
            .len();
        self.touch(path).await?;
        Ok((file, len))
    }

    /// Reads `range` of a file. An evicted file at least `multipart_threshold` big is read with
    /// a ranged GET and stays evicted; a smaller one is recalled first.
    pub async fn read_range(&self, path: &SharePath, range: Range<u64>) -> Result<Bytes> {
        let entry = self.inner.journal.get(path.as_str())?;
        let size = match &entry {
            Some(e) => e.size,
            None => {
                file_meta(&path.local(self.root()))?
                    .ok_or_else(|| StorageError::NotFound(path.to_string()))?
                    .0
            }
        };
        if range.start > range.end || range.end > size {
            return Err(StorageError::refused(
                "read_range",
                path.as_str(),
                format!("range {range:?} is outside the file's {size} bytes"),
            ));
        }
        if let Some(e) = &entry
            && e.state == FileState::Evicted
        {
            if e.size >= self.inner.opts.multipart_threshold {
                let remote = self.remote("read_range")?;
                let data = match self.encrypted_layout(path, e)? {
                    Some(_) if range.is_empty() => Bytes::new(),
                    Some((layout, provider)) => {
                        // Fetch and open only the units covering the range.
                        let units = layout.covering(&range);
                        let span =
                            layout.sealed(units.start).start..layout.sealed(units.end - 1).end;
                        let sealed = remote.get_range(path, span).await?;
                        let plain =
                            open_units(&provider, path.as_str(), layout, units.clone(), sealed)
                                .await?;
                        let base = layout.plain(units.start).start;
                        plain.slice((range.start - base) as usize..(range.end - base) as usize)
                    }
                    None => remote.get_range(path, range).await?,
                };
                self.inner
                    .counters
                    .range_downloads
                    .fetch_add(1, Ordering::Relaxed);
                self.touch(path).await?;
                return Ok(data);
            }
            self.recall(path).await?;
        }
        let local = path.local(self.root());
        let data = blocking(move || {
            let mut f = std::fs::File::open(&local).map_err(|e| StorageError::io(&local, e))?;
            f.seek(SeekFrom::Start(range.start))
                .map_err(|e| StorageError::io(&local, e))?;
            let mut buf = vec![0u8; (range.end - range.start) as usize];
            f.read_exact(&mut buf)
                .map_err(|e| StorageError::io(&local, e))?;
            Ok(buf)
        })
        .await?;
        self.touch(path).await?;
        Ok(Bytes::from(data))
    }

    async fn set_pinned(&self, path: &SharePath, pinned: bool) -> Result<()> {
        let _guard = self.lock_path(path).await;
        let mut e = self
            .inner
            .journal
            .get(path.as_str())?
            .ok_or_else(|| StorageError::NotFound(path.to_string()))?;
        e.pinned = pinned;
        self.inner.journal.put(path.as_str(), &e)
    }

    /// Pins a file: it is never evicted until unpinned. (Pinning does not recall an evicted
    /// file; ask for a recall too.)
    pub async fn pin(&self, path: &SharePath) -> Result<()> {
        self.set_pinned(path, true).await
    }

    /// Clears a pin.
    pub async fn unpin(&self, path: &SharePath) -> Result<()> {
        self.set_pinned(path, false).await
    }

    /// Deletes a file locally, remotely and from the journal.
    pub async fn delete(&self, path: &SharePath) -> Result<()> {
        let _guard = self.lock_path(path).await;
        let local = path.local(self.root());
        match std::fs::remove_file(&local) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io(&local, e)),
        }
        if let Some(remote) = &self.inner.remote {
            if let Some(rec) = self.inner.journal.upload(path.as_str())? {
                remote
                    .abort_multipart(
                        path,
                        &rec.backend_id,
                        &rec.upload_id,
                        rec.parts.len() as u32,
                    )
                    .await;
            }
            remote.delete(path).await?;
        }
        self.inner.journal.remove(path.as_str())?;
        self.inner.space.notify_waiters();
        Ok(())
    }

    /// Lists the remote prefix and adds objects the journal does not know as evicted entries
    /// with zero-length stubs (empty objects become synced empty files), so they can be
    /// recalled. A local file of the same name wins and is left alone.
    pub async fn refresh(&self) -> Result<RefreshReport> {
        let remote = self.remote("refresh")?;
        let listed: Vec<object_store::ObjectMeta> = remote.list().try_collect().await?;
        let mut report = RefreshReport::default();
        for meta in listed {
            let Some(path) = remote.share_path(&meta.location) else {
                if !meta.location.as_ref().contains(crate::remote::STAGING_DIR) {
                    report.skipped += 1;
                }
                continue;
            };
            let _guard = self.lock_path(&path).await;
            if let Some(e) = self.inner.journal.get(path.as_str())? {
                if e.remote_etag.is_some() && meta.e_tag.is_some() && e.remote_etag != meta.e_tag {
                    tracing::warn!(%path, "remote object changed behind the engine's back; keeping the journal's view");
                }
                report.known += 1;
                continue;
            }
            let local = path.local(self.root());
            if std::fs::symlink_metadata(&local).is_ok() {
                report.skipped += 1;
                continue;
            }
            let (_, digest, marked) = remote.head_location(&meta.location).await?;
            // Encrypted: marked in the metadata (single PUT on Azure/S3) or starting with the
            // sealed-unit magic (multipart objects and file:// targets carry no metadata). A
            // share without a key provider skips such objects rather than serve ciphertext.
            let encrypted = marked
                || (meta.size >= crate::crypt::MAGIC.len() as u64
                    && remote
                        .get_prefix(&meta.location, crate::crypt::MAGIC.len() as u64)
                        .await?[..]
                        == crate::crypt::MAGIC[..]);
            let mut size = meta.size;
            let unit = self.inner.opts.part_size;
            if encrypted {
                // The share did not write this object: its unit size is taken to be this
                // share's part size. A different one fails authentication on read (never
                // wrong data).
                let layout = match &self.inner.opts.encryption {
                    Some(p) => Layout::from_sealed(meta.size, unit, p.as_ref()),
                    None => None,
                };
                let Some(layout) = layout else {
                    tracing::warn!(%path, "encrypted object without a usable key provider or layout; skipping");
                    report.skipped += 1;
                    continue;
                };
                size = layout.size;
            }
            let now = now_unix_ms();
            let mut e = new_entry(size, 0, now);
            e.encrypted = encrypted;
            e.encryption_unit = encrypted.then_some(unit);
            e.sha256 = digest;
            e.remote_etag = meta.e_tag.clone();
            e.remote_version = meta.version.clone();
            e.accessed_unix_ms = meta.last_modified.timestamp_millis().max(0) as u64;
            if size == 0 {
                e.state = FileState::Synced;
                e.sha256 = Some(EMPTY_SHA256.to_owned());
                e.stub_modified_ns = None;
                self.inner.journal.put(path.as_str(), &e)?;
                self.make_stub(&path, &mut e).await?;
                e.modified_ns = e.stub_modified_ns.take().unwrap_or(0);
                self.inner.journal.put(path.as_str(), &e)?;
            } else {
                e.state = FileState::Evicted;
                e.modified_ns = meta.last_modified.timestamp_nanos_opt().unwrap_or(0).max(0) as u64;
                self.inner.journal.put(path.as_str(), &e)?;
                if let Err(err) = self.make_stub(&path, &mut e).await {
                    tracing::warn!(%path, error = %err, "cannot create a stub; skipping");
                    self.inner.journal.remove(path.as_str())?;
                    report.skipped += 1;
                    continue;
                }
            }
            report.added += 1;
        }
        self.inner
            .journal
            .set_meta("last_refresh_unix_ms", now_unix_ms())?;
        Ok(report)
    }

    /// Applies a tiering policy's actions one by one and returns each with its result. The
    /// host's safety rules hold whatever the policy asks: paths are validated, unsynced or
    /// pinned files are never evicted, uploads honour the settle window.
    pub async fn apply_actions(&self, actions: Vec<Action>) -> Vec<(Action, Result<()>)> {
        let mut out = Vec::with_capacity(actions.len());
        for action in actions {
            let result = match SharePath::new(action.path()) {
                Err(e) => Err(e),
                Ok(p) => match &action {
                    Action::Upload(_) => self.upload(&p).await.map(|_| ()),
                    Action::Evict(_) => self.evict(&p).await,
                    Action::Pin(_) => self.pin(&p).await,
                    Action::Unpin(_) => self.unpin(&p).await,
                    Action::Recall(_) => self.recall(&p).await.map(|_| ()),
                },
            };
            if let Err(e) = &result {
                tracing::debug!(share = %self.inner.spec.name, ?action, error = %e, "policy action not applied");
            }
            out.push((action, result));
        }
        out
    }

    /// The input for the `tiering-policy` world's `decide`: the volume and up to `max_files`
    /// candidate files, least recently read first.
    pub fn tiering_input(&self, max_files: usize) -> Result<TieringInput> {
        let entries = self.inner.journal.all()?;
        let used = entries
            .iter()
            .filter(|(_, e)| e.state != FileState::Evicted)
            .map(|(_, e)| e.size)
            .sum();
        let mut files: Vec<FileStat> = entries
            .into_iter()
            .map(|(path, e)| FileStat {
                path,
                size: e.size,
                modified_unix_ms: e.modified_ns / 1_000_000,
                accessed_unix_ms: e.accessed_unix_ms,
                state: e.state,
                pinned: e.pinned,
            })
            .collect();
        files.sort_by(|a, b| {
            a.accessed_unix_ms
                .cmp(&b.accessed_unix_ms)
                .then_with(|| a.path.cmp(&b.path))
        });
        files.truncate(max_files);
        Ok(TieringInput {
            volume: VolumeState {
                share: self.inner.spec.name.clone(),
                capacity_bytes: self.inner.spec.quota_bytes,
                used_bytes: used,
                now_unix_ms: now_unix_ms(),
            },
            files,
        })
    }

    /// Replaces the upload schedule of this share's throttle (the global one, when the share
    /// was given a shared throttle); takes effect within 100 ms.
    pub fn set_schedule(&self, schedule: BandwidthSchedule) -> Result<()> {
        self.inner.throttle.set_schedule(schedule)
    }

    /// The throttle this share uploads through.
    pub fn throttle(&self) -> &Arc<Throttle> {
        &self.inner.throttle
    }

    /// A snapshot for status and metrics.
    pub fn stats(&self) -> Result<ShareStats> {
        let c = &self.inner.counters;
        let mut s = ShareStats {
            share: self.inner.spec.name.clone(),
            kind: match self.inner.spec.kind {
                ShareKind::EdgeLocal => "edge-local".into(),
                ShareKind::CloudTiered => "cloud-tiered".into(),
            },
            quota_bytes: self.inner.spec.quota_bytes,
            upload_rate_bytes_per_sec: self.inner.throttle.measured_rate(),
            upload_limit_bytes_per_sec: self.inner.throttle.current_limit(),
            parts_sent: c.parts_sent.load(Ordering::Relaxed),
            downloads: c.downloads.load(Ordering::Relaxed),
            range_downloads: c.range_downloads.load(Ordering::Relaxed),
            writers_throttled: c.writers_waiting.load(Ordering::Relaxed),
            write_throttle_events: c.throttle_events.load(Ordering::Relaxed),
            last_error: lock(&self.inner.last_error).clone(),
            last_refresh_unix_ms: self.inner.journal.meta("last_refresh_unix_ms")?,
            ..ShareStats::default()
        };
        s.write_throttle_alert = s.writers_throttled > 0;
        for (_, e) in self.inner.journal.all()? {
            if e.pinned {
                s.files_pinned += 1;
            }
            match e.state {
                FileState::Local => {
                    s.files_local += 1;
                    s.bytes_unsynced += e.size;
                    s.bytes_local += e.size;
                }
                FileState::Uploading => {
                    s.files_uploading += 1;
                    s.bytes_unsynced += e.size;
                    s.bytes_local += e.size;
                }
                FileState::Synced => {
                    s.files_synced += 1;
                    s.bytes_synced += e.size;
                    s.bytes_local += e.size;
                }
                FileState::Evicted => {
                    s.files_evicted += 1;
                    s.bytes_evicted += e.size;
                }
            }
        }
        if self.inner.remote.is_some() {
            s.upload_queue_len = s.files_local + s.files_uploading;
        }
        Ok(s)
    }
}

fn fits_after_eviction(unsynced: u64, bytes: u64, quota: u64) -> bool {
    unsynced + bytes <= quota
}

//! Update control in the appliance: plugins named by a signed OCI artifact (`image = …`) are
//! fetched and verified ([`outpost_update::Updater`]) before anything compiles them, cached by
//! digest in `<data-dir>/artifacts`, applied only inside the maintenance windows of
//! `[host.updates]` (new plugins and explicit overrides excepted), and every decision lands in
//! the hash-chained audit log: accepted, refused and why, applied, rolled back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use outpost_manifest::{TimeWindow, UpdateSettings};
use outpost_update::{
    PublisherSpec, RegistryAuth, RegistryOptions, TrustPolicy, TrustPolicySpec, Updater,
    UpdaterConfig, VerifiedArtifact,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::RuntimeError;

/// Where verified artifacts are cached under the data directory.
pub const ARTIFACT_DIR: &str = "artifacts";

/// What the host remembers of a verified artifact (next to its cached bytes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ArtifactRecord {
    /// The reference it was pulled from.
    pub reference: String,
    /// The OCI manifest digest.
    pub digest: String,
    /// `sha256:` of the component bytes (the digest plugin status reports).
    pub component_digest: String,
    /// Plugin name it was signed for.
    pub plugin: String,
    /// Signed version.
    pub version: String,
    /// Publisher whose key verified it.
    pub publisher: String,
    /// Signed expiry (RFC 3339).
    pub expires: String,
}

/// A code update waiting for the maintenance window.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PendingUpdate {
    /// The plugin.
    pub plugin: String,
    /// The verified artifact it will run.
    pub image: String,
    /// Its signed version.
    pub version: Option<String>,
    /// When it was staged (seconds since the Unix epoch).
    pub staged_at: u64,
}

/// Update control as status reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UpdateStatus {
    /// Trusted publishers' names.
    pub publishers: Vec<String>,
    /// The maintenance windows (UTC).
    pub windows: Vec<TimeWindow>,
    /// Whether updates may be applied now.
    pub window_open: bool,
    /// Seconds until the next window opens (0 when open).
    pub window_opens_in_secs: Option<u64>,
    /// Verified updates waiting for the window.
    pub pending: Vec<PendingUpdate>,
    /// Entries in the audit log.
    pub audit_entries: usize,
}

/// The appliance's update control.
pub struct UpdateService {
    updater: Updater,
    dir: PathBuf,
    publishers: Vec<String>,
    windows: Vec<TimeWindow>,
    clock_offset: AtomicI64,
    pending: Mutex<BTreeMap<String, PendingUpdate>>,
    /// Verified artifacts by component digest (for auditing swaps and rollbacks).
    by_component: Mutex<BTreeMap<String, ArtifactRecord>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn service_err(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Service(format!("host.updates: {e}"))
}

impl UpdateService {
    /// Builds the service from `[host.updates]`; `None` when no publisher is trusted (then
    /// `image` plugins are refused).
    pub fn open(
        settings: &UpdateSettings,
        data_dir: &Path,
    ) -> Result<Option<UpdateService>, RuntimeError> {
        if settings.publishers.is_empty() {
            return Ok(None);
        }
        let mut publishers = Vec::new();
        for p in &settings.publishers {
            let public_key = std::fs::read_to_string(&p.key).map_err(|e| {
                service_err(format!(
                    "publisher `{}`: cannot read key {}: {e}",
                    p.name,
                    p.key.display()
                ))
            })?;
            publishers.push(PublisherSpec {
                name: p.name.clone(),
                public_key,
                plugins: p.plugins.clone(),
                repositories: p.repositories.clone(),
            });
        }
        let policy = TrustPolicy::new(TrustPolicySpec { publishers }).map_err(service_err)?;
        let mut registries: BTreeMap<String, RegistryOptions> = BTreeMap::new();
        for r in &settings.insecure_registries {
            registries.entry(r.clone()).or_default().insecure_http = true;
        }
        for (r, a) in &settings.registry_auth {
            let password = std::fs::read_to_string(&a.password_file).map_err(|e| {
                service_err(format!(
                    "registry_auth.{r}: cannot read {}: {e}",
                    a.password_file.display()
                ))
            })?;
            registries.entry(r.clone()).or_default().auth = RegistryAuth::Basic {
                username: a.username.clone(),
                password: password.trim_end_matches(['\r', '\n']).to_string(),
            };
        }
        let state = data_dir.join("updates");
        let mut config = UpdaterConfig::new(policy, &state, RegistryOptions::default());
        config.per_registry = registries;
        let updater = Updater::new(config).map_err(service_err)?;
        let dir = data_dir.join(ARTIFACT_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::io(&dir, e))?;
        let service = UpdateService {
            updater,
            dir,
            publishers: settings.publishers.iter().map(|p| p.name.clone()).collect(),
            windows: settings.windows.clone(),
            clock_offset: AtomicI64::new(0),
            pending: Mutex::default(),
            by_component: Mutex::default(),
        };
        service.load_records();
        Ok(Some(service))
    }

    fn load_records(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut map = lock(&self.by_component);
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "json")
                && let Ok(text) = std::fs::read(&path)
                && let Ok(r) = serde_json::from_slice::<ArtifactRecord>(&text)
            {
                map.insert(r.component_digest.clone(), r);
            }
        }
    }

    /// Now, in seconds since the Unix epoch, as the windows see it.
    pub fn now(&self) -> u64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()) as i64;
        (real + self.clock_offset.load(Ordering::Relaxed)).max(0) as u64
    }

    /// Shifts the clock the maintenance windows are judged by (a lab simulating a night;
    /// tests). Verification (expiry) always uses the real clock.
    pub fn set_clock_offset(&self, secs: i64) {
        self.clock_offset.store(secs, Ordering::Relaxed);
    }

    /// Whether code updates may be applied now (always, with no windows configured).
    pub fn window_open(&self) -> bool {
        let now = self.now();
        self.windows.is_empty() || self.windows.iter().any(|w| w.contains(now))
    }

    /// Seconds until a window opens.
    pub fn window_opens_in(&self) -> Option<u64> {
        let now = self.now();
        if self.windows.is_empty() {
            return Some(0);
        }
        self.windows.iter().filter_map(|w| w.opens_in(now)).min()
    }

    fn paths(&self, digest: &str) -> (PathBuf, PathBuf) {
        let name = digest.replace(':', "-");
        (
            self.dir.join(format!("{name}.wasm")),
            self.dir.join(format!("{name}.json")),
        )
    }

    /// The verified component for `image`, signed for `plugin`: from the cache when `cached`
    /// allows and this host verified it before, otherwise pulled and verified now. Returns the
    /// cached file.
    pub async fn resolve(
        &self,
        plugin: &str,
        image: &str,
        force_rollback: bool,
        cached: bool,
    ) -> Result<(PathBuf, ArtifactRecord), String> {
        let digest = image
            .rsplit_once('@')
            .map(|(_, d)| d.to_string())
            .ok_or_else(|| format!("`{image}` is not pinned by digest"))?;
        let (wasm, meta) = self.paths(&digest);
        if cached
            && let (Ok(bytes), Ok(text)) = (std::fs::read(&wasm), std::fs::read(&meta))
            && let Ok(record) = serde_json::from_slice::<ArtifactRecord>(&text)
            && record.plugin == plugin
            && record.reference == image
            && record.component_digest == sha256(&bytes)
        {
            return Ok((wasm, record));
        }
        let artifact = self
            .updater
            .fetch_verified(image, plugin, force_rollback)
            .await
            .map_err(|e| format!("update refused: {e}"))?;
        let record = ArtifactRecord {
            reference: artifact.reference.clone(),
            digest: artifact.digest.clone(),
            component_digest: sha256(&artifact.bytes),
            plugin: artifact.plugin.clone(),
            version: artifact.version.to_string(),
            publisher: artifact.publisher.clone(),
            expires: artifact
                .expires
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        };
        write_atomic(&wasm, &artifact.bytes).map_err(|e| format!("caching {image}: {e}"))?;
        let json = serde_json::to_vec_pretty(&record).map_err(|e| e.to_string())?;
        write_atomic(&meta, &json).map_err(|e| format!("caching {image}: {e}"))?;
        lock(&self.by_component).insert(record.component_digest.clone(), record.clone());
        Ok((wasm, record))
    }

    fn artifact(&self, component_digest: &str) -> Option<VerifiedArtifact> {
        let r = lock(&self.by_component).get(component_digest)?.clone();
        Some(VerifiedArtifact {
            bytes: Vec::new(),
            reference: r.reference,
            digest: r.digest,
            plugin: r.plugin,
            version: r.version.parse().ok()?,
            publisher: r.publisher,
            expires: time::OffsetDateTime::parse(
                &r.expires,
                &time::format_description::well_known::Rfc3339,
            )
            .ok()?,
        })
    }

    /// Audits that the version with `component_digest` now serves (if it came from an artifact).
    pub fn record_applied(&self, component_digest: &str) {
        if let Some(a) = self.artifact(component_digest)
            && let Err(e) = self.updater.record_applied(&a)
        {
            tracing::error!(error = %e, "cannot audit an applied update");
        }
    }

    /// Audits that the version with `component_digest` was taken out, and why.
    pub fn record_rolled_back(&self, component_digest: &str, reason: &str) {
        if let Some(a) = self.artifact(component_digest)
            && let Err(e) = self.updater.record_rolled_back(&a, reason)
        {
            tracing::error!(error = %e, "cannot audit a rollback");
        }
    }

    /// Stages `update` until the window opens.
    pub fn defer(&self, update: PendingUpdate) {
        let mut pending = lock(&self.pending);
        tracing::info!(plugin = %update.plugin, image = %update.image, "update verified; waiting for the maintenance window");
        pending.insert(update.plugin.clone(), update);
    }

    /// Forgets a staged update (applied, or no longer wanted).
    pub fn clear_pending(&self, plugin: &str) {
        lock(&self.pending).remove(plugin);
    }

    /// Whether any update waits for the window.
    pub fn has_pending(&self) -> bool {
        !lock(&self.pending).is_empty()
    }

    /// The staged update of `plugin`.
    pub fn pending(&self, plugin: &str) -> Option<PendingUpdate> {
        lock(&self.pending).get(plugin).cloned()
    }

    /// Status for the API.
    pub fn status(&self) -> UpdateStatus {
        UpdateStatus {
            publishers: self.publishers.clone(),
            windows: self.windows.clone(),
            window_open: self.window_open(),
            window_opens_in_secs: self.window_opens_in(),
            pending: lock(&self.pending).values().cloned().collect(),
            audit_entries: outpost_update::verify_audit_log(self.updater.audit_log().path())
                .map(|s| s.entries)
                .unwrap_or(0),
        }
    }

    /// The audit log's file.
    pub fn audit_path(&self) -> &Path {
        self.updater.audit_log().path()
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

//! The host's key service: the key-encryption key provider chosen by `[host.encryption]`, the
//! health of the key as the stores see it, and rotation.
//!
//! Stores (the kv database, each sink's spool) keep a data key each, wrapped by this KEK.
//! Rotation makes a new KEK version and re-wraps every store's data key under it; no record is
//! rewritten and readers carry on. A KEK that can no longer unwrap (a disabled version, a key
//! removed from the HSM) is reported as an alert in status and metrics; nothing falls back to
//! plaintext.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use outpost_keys::{DeviceKeyStore, Pkcs11Config, Pkcs11Provider};
use outpost_manifest::{EncryptionSettings, KeyProviderSpec};
use outpost_services::SharedProvider;
use serde::Serialize;

use crate::RuntimeError;

/// Where the device-managed KEK lives under the data directory.
pub const DEVICE_KEY_DIR: &str = "keys";

enum Backend {
    Device(Arc<DeviceKeyStore>),
    Pkcs11(Arc<Pkcs11Provider>),
}

/// The KEK provider and what the host last learned about it.
pub struct KeyService {
    kind: &'static str,
    backend: Backend,
    provider: SharedProvider,
    health: Mutex<KeyHealth>,
}

#[derive(Debug, Clone, Default)]
struct KeyHealth {
    error: Option<String>,
    rotations: u64,
}

/// The key service as status reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyStatus {
    /// `device` or `pkcs11`.
    pub provider: String,
    /// The KEK's id.
    pub key_id: String,
    /// The KEK version new data keys are wrapped under.
    pub version: Option<u32>,
    /// Whether every store's data key unwrapped at the last check.
    pub available: bool,
    /// Why not, naming the key and version.
    pub error: Option<String>,
    /// Rotations since start.
    pub rotations: u64,
}

fn read_secret(path: &Path, what: &str) -> Result<String, RuntimeError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        RuntimeError::Service(format!(
            "host.encryption.{what}: cannot read {}: {e}",
            path.display()
        ))
    })?;
    let secret = text.trim_end_matches(['\r', '\n']).to_string();
    if secret.is_empty() {
        return Err(RuntimeError::Service(format!(
            "host.encryption.{what}: {} is empty",
            path.display()
        )));
    }
    Ok(secret)
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

impl KeyService {
    /// Opens the provider `settings` name (`None` when encryption is off). Relative files are
    /// resolved against `base_dir`.
    pub fn open(
        settings: &EncryptionSettings,
        data_dir: &Path,
        base_dir: &Path,
    ) -> Result<Option<Arc<KeyService>>, RuntimeError> {
        let keys_err = |e: outpost_keys::KeysError| {
            RuntimeError::Service(format!("encryption key `{}`: {e}", settings.key))
        };
        match &settings.provider {
            KeyProviderSpec::None => Ok(None),
            KeyProviderSpec::Device { passphrase_file } => {
                let dir = data_dir.join(DEVICE_KEY_DIR);
                let store = match passphrase_file {
                    Some(f) => {
                        let pass = read_secret(&resolve(base_dir, f), "passphrase_file")?;
                        DeviceKeyStore::open_sealed(dir, &settings.key, &pass)
                    }
                    None => DeviceKeyStore::open(dir, &settings.key),
                }
                .map_err(keys_err)?;
                let store = Arc::new(store);
                let provider: SharedProvider = store.clone();
                Ok(Some(Arc::new(KeyService {
                    kind: "device",
                    backend: Backend::Device(store),
                    provider,
                    health: Mutex::default(),
                })))
            }
            KeyProviderSpec::Pkcs11 {
                module,
                token,
                pin_file,
            } => {
                let config = Pkcs11Config::with_pin_file(
                    resolve(base_dir, module),
                    token.clone(),
                    &resolve(base_dir, pin_file),
                    settings.key.clone(),
                )
                .map_err(keys_err)?;
                // The first start creates the KEK in the token; it never leaves it.
                let hsm = Arc::new(Pkcs11Provider::open_or_create(&config).map_err(keys_err)?);
                let provider: SharedProvider = hsm.clone();
                Ok(Some(Arc::new(KeyService {
                    kind: "pkcs11",
                    backend: Backend::Pkcs11(hsm),
                    provider,
                    health: Mutex::default(),
                })))
            }
        }
    }

    /// The provider the stores wrap their data keys with.
    pub fn provider(&self) -> &SharedProvider {
        &self.provider
    }

    /// Makes a new KEK version; returns it. The caller re-wraps the stores' data keys.
    pub fn rotate(&self) -> Result<u32, RuntimeError> {
        let version = match &self.backend {
            Backend::Device(store) => store.rotate(),
            Backend::Pkcs11(hsm) => hsm.rotate(),
        }
        .map_err(|e| RuntimeError::Service(format!("key rotation: {e}")))?;
        self.lock().rotations += 1;
        Ok(version)
    }

    /// Records the outcome of a check of the stores' data keys.
    pub fn record_check(&self, result: Result<(), String>) {
        let mut health = self.lock();
        match (&health.error, &result) {
            (None, Err(e)) => {
                tracing::error!(error = %e, "encryption key unavailable: stored data cannot be read")
            }
            (Some(_), Ok(())) => tracing::info!("encryption key available again"),
            _ => {}
        }
        health.error = result.err();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KeyHealth> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Status for the API and metrics.
    pub fn status(&self) -> KeyStatus {
        let health = self.lock().clone();
        KeyStatus {
            provider: self.kind.to_string(),
            key_id: self.provider.key_id().to_string(),
            version: self.provider.current_version().ok(),
            available: health.error.is_none(),
            error: health.error,
            rotations: health.rotations,
        }
    }
}

/// What a wipe destroyed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WipeReport {
    /// Device key files overwritten with zeros and deleted.
    pub keys_destroyed: Vec<PathBuf>,
    /// Files removed from the data directory (after the keys: stores, spools, caches,
    /// certificates, tokens, artifacts).
    pub files_removed: u64,
    /// Their bytes.
    pub bytes_removed: u64,
    /// What was left alone, and why (a customer's key stays in the customer's HSM).
    pub notes: Vec<String>,
    /// Always true when returned: the wipe finished.
    pub done: bool,
}

fn shred(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let len = std::fs::metadata(path)?.len();
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    let zeros = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    std::fs::remove_file(path)
}

fn remove_tree(dir: &Path, report: &mut WipeReport) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            remove_tree(&path, report)?;
            std::fs::remove_dir(&path)?;
        } else {
            report.files_removed += 1;
            report.bytes_removed += meta.len();
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Destroys the device's keys and then everything in `data_dir` (device return). The host must
/// not be running: a data directory whose kv store is open elsewhere is refused, untouched.
/// Keys go first, so an interrupted wipe still leaves only unreadable ciphertext.
pub fn wipe(settings: &EncryptionSettings, data_dir: &Path) -> Result<WipeReport, RuntimeError> {
    let kv = data_dir.join("kv.redb");
    if kv.exists() {
        // redb holds an exclusive lock while a host has the store open.
        outpost_services::KvStore::open_raw_check(&kv).map_err(|e| {
            RuntimeError::Service(format!(
                "{} is in use (is the host running? stop it first): {e}",
                kv.display()
            ))
        })?;
    }
    let mut report = WipeReport {
        keys_destroyed: Vec::new(),
        files_removed: 0,
        bytes_removed: 0,
        notes: Vec::new(),
        done: false,
    };
    let keys = data_dir.join(DEVICE_KEY_DIR);
    if keys.is_dir() {
        for entry in std::fs::read_dir(&keys).map_err(|e| RuntimeError::io(&keys, e))? {
            let path = entry.map_err(|e| RuntimeError::io(&keys, e))?.path();
            if path.is_file() {
                shred(&path).map_err(|e| RuntimeError::io(&path, e))?;
                report.keys_destroyed.push(path);
            }
        }
    }
    if let KeyProviderSpec::Pkcs11 { token, .. } = &settings.provider {
        report.notes.push(format!(
            "the customer-managed key `{}` stays in HSM token `{token}`; the data it protected is deleted",
            settings.key
        ));
    }
    // TLS private keys are overwritten too, not only unlinked.
    let tls = data_dir.join("tls");
    if tls.is_dir() {
        shred_keys(&tls, &mut report);
    }
    if data_dir.is_dir() {
        remove_tree(data_dir, &mut report).map_err(|e| RuntimeError::io(data_dir, e))?;
    }
    report.keys_destroyed.sort();
    report.done = true;
    tracing::warn!(
        keys = report.keys_destroyed.len(),
        files = report.files_removed,
        "device wiped"
    );
    Ok(report)
}

fn shred_keys(dir: &Path, report: &mut WipeReport) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            shred_keys(&path, report);
        } else if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains("key"))
            && shred(&path).is_ok()
        {
            report.keys_destroyed.push(path);
        }
    }
}

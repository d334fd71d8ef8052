//! On-disk cache of compiled components and modules.
//!
//! Entries are keyed by the SHA-256 of the wasm bytes and the engine's compatibility hash (so a
//! different wasmtime build or configuration never reuses them). A cached artifact is native
//! code that wasmtime maps executable, so each entry carries an HMAC-SHA256 under a key that
//! only this host knows (created on first use, mode 0600): an entry that fails the check, was
//! truncated, or does not deserialize is deleted and recompiled, never trusted.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::RuntimeError;

const MAGIC: &[u8; 16] = b"OUTPOST-CWASM-01";
const TAG_LEN: usize = 32;
type HmacSha256 = Hmac<Sha256>;

/// How a load was served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// A valid cached artifact was used.
    Hit,
    /// Nothing was cached; compiled and stored.
    Miss,
    /// A cached artifact failed its integrity check (the reason); recompiled and replaced.
    Rejected(String),
    /// Caching is off; compiled in memory.
    Disabled,
}

/// The cache directory plus the host's integrity key.
pub struct CompileCache {
    dir: Option<PathBuf>,
    key: [u8; 32],
    engine_hash: String,
}

/// SHA-256 content digest in OCI form: `sha256:<hex>`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Feeds `Hash` output into SHA-256, so the engine's compatibility hash is stable across
/// processes (std's `DefaultHasher` is not guaranteed to be).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        u64::from_le_bytes(d[..8].try_into().expect("a digest has 32 bytes"))
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn engine_hash(engine: &Engine) -> String {
    let mut h = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    hex::encode(&h.0.finalize()[..12])
}

impl CompileCache {
    /// A cache in `dir` (created if missing), with its key in `dir/cache.key`.
    pub fn open(dir: &Path, engine: &Engine) -> Result<CompileCache, RuntimeError> {
        let io = |e: std::io::Error| RuntimeError::Cache(format!("{}: {e}", dir.display()));
        fs::create_dir_all(dir).map_err(io)?;
        let key_path = dir.join("cache.key");
        let key = match fs::read(&key_path) {
            Ok(bytes) if bytes.len() == 32 => bytes.try_into().expect("length checked"),
            Ok(_) | Err(_) => {
                let mut key = [0u8; 32];
                getrandom(&mut key).map_err(io)?;
                write_private(&key_path, &key).map_err(io)?;
                // Old entries were signed with a key we no longer have: they will be rejected
                // and replaced as they are met.
                key
            }
        };
        Ok(CompileCache {
            dir: Some(dir.to_path_buf()),
            key,
            engine_hash: engine_hash(engine),
        })
    }

    /// No cache: every load compiles.
    pub fn disabled(engine: &Engine) -> CompileCache {
        CompileCache {
            dir: None,
            key: [0; 32],
            engine_hash: engine_hash(engine),
        }
    }

    /// Where the entry for `bytes` lives (whether or not it exists).
    pub fn entry_path(&self, bytes: &[u8]) -> Option<PathBuf> {
        let d = digest(bytes);
        let hex = d.trim_start_matches("sha256:");
        self.dir
            .as_ref()
            .map(|dir| dir.join(format!("{hex}-{}.cwasm", self.engine_hash)))
    }

    /// Compiles a component, or loads it from the cache.
    pub fn load_component(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> Result<(Component, CacheOutcome), RuntimeError> {
        self.load(
            engine,
            bytes,
            |e, b| Component::new(e, b),
            Component::serialize,
            unsafe_deserialize_component,
        )
    }

    /// Compiles a core module (WASI preview1 jobs), or loads it from the cache.
    pub fn load_module(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> Result<(Module, CacheOutcome), RuntimeError> {
        self.load(
            engine,
            bytes,
            |e, b| Module::new(e, b),
            Module::serialize,
            unsafe_deserialize_module,
        )
    }

    fn load<T>(
        &self,
        engine: &Engine,
        bytes: &[u8],
        compile: impl Fn(&Engine, &[u8]) -> wasmtime::Result<T>,
        serialize: impl Fn(&T) -> wasmtime::Result<Vec<u8>>,
        deserialize: impl Fn(&Engine, &[u8]) -> Result<T, RuntimeError>,
    ) -> Result<(T, CacheOutcome), RuntimeError> {
        let Some(path) = self.entry_path(bytes) else {
            return Ok((
                compile(engine, bytes).map_err(compile_err)?,
                CacheOutcome::Disabled,
            ));
        };
        let mut outcome = CacheOutcome::Miss;
        match fs::read(&path) {
            Ok(entry) => {
                let loaded = self
                    .verify(&path, &entry)
                    .and_then(|payload| deserialize(engine, payload).map_err(|e| e.to_string()));
                match loaded {
                    Ok(artifact) => return Ok((artifact, CacheOutcome::Hit)),
                    Err(why) => {
                        tracing::warn!(entry = %path.display(), %why, "compile cache entry rejected; recompiling");
                        let _ = fs::remove_file(&path);
                        outcome = CacheOutcome::Rejected(why);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(entry = %path.display(), error = %e, "compile cache unreadable; recompiling");
                outcome = CacheOutcome::Rejected(e.to_string());
            }
        }
        let artifact = compile(engine, bytes).map_err(compile_err)?;
        match serialize(&artifact) {
            Ok(serialized) => {
                if let Err(e) = self.store(&path, &serialized) {
                    // A full or read-only disk costs speed, not correctness.
                    tracing::warn!(entry = %path.display(), error = %e, "could not write compile cache entry");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not serialize compiled artifact"),
        }
        Ok((artifact, outcome))
    }

    /// The MAC binds the payload to the entry's name (content digest + engine hash), so an
    /// entry cannot be swapped for another valid one.
    fn mac(&self, path: &Path, payload: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(
            path.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        mac.update(payload);
        mac
    }

    fn verify<'a>(&self, path: &Path, entry: &'a [u8]) -> Result<&'a [u8], String> {
        let header = MAGIC.len() + TAG_LEN;
        if entry.len() < header || &entry[..MAGIC.len()] != MAGIC {
            return Err("not an Outpost cache entry (bad header or truncated)".into());
        }
        let (tag, payload) = entry[MAGIC.len()..].split_at(TAG_LEN);
        self.mac(path, payload).verify_slice(tag).map_err(|_| {
            "integrity check failed (entry modified or signed by another key)".to_string()
        })?;
        Ok(payload)
    }

    fn store(&self, path: &Path, payload: &[u8]) -> std::io::Result<()> {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(&self.mac(path, payload).finalize().into_bytes())?;
        f.write_all(payload)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    }
}

fn compile_err(e: wasmtime::Error) -> RuntimeError {
    RuntimeError::Compile(format!("{e:#}"))
}

#[allow(unsafe_code)]
fn unsafe_deserialize_component(engine: &Engine, bytes: &[u8]) -> Result<Component, RuntimeError> {
    // SAFETY: the only caller is `CompileCache::load`, which passes bytes that passed the HMAC
    // check: exactly what this host wrote from `Component::serialize` with an engine of the same
    // compatibility hash.
    unsafe { Component::deserialize(engine, bytes) }.map_err(compile_err)
}

#[allow(unsafe_code)]
fn unsafe_deserialize_module(engine: &Engine, bytes: &[u8]) -> Result<Module, RuntimeError> {
    // SAFETY: as for components.
    unsafe { Module::deserialize(engine, bytes) }.map_err(compile_err)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    fs::File::open("/dev/urandom")?.read_exact(buf)
}

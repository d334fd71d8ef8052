//! The device-managed KEK provider: versioned AES-256 KEKs in a private key directory.
//!
//! Layout of the key directory (mode 0700; every file 0600):
//!
//! ```text
//! <dir>/<key_id>.v<N>.kek            active KEK version N
//! <dir>/<key_id>.v<N>.kek.disabled   version N revoked by an operator (unwrap refuses it)
//! <dir>/passphrase.salt              16-byte Argon2id salt, only for a passphrase-sealed store
//! ```
//!
//! A KEK file is `"OPKK" || mode` followed by the 32-byte key (mode 0), or, when sealed with a
//! passphrase (mode 1), by `nonce(12) || AES-256-GCM(key)(32) || tag(16)` under a wrapping key
//! derived with Argon2id (m = 19 MiB, t = 2, p = 1 — the OWASP baseline), the file name being
//! the associated data so a file cannot be renamed to another version.
//!
//! Data keys are wrapped with AES-256 key wrap with padding (RFC 5649), the same mechanism a
//! PKCS#11 token offers as `CKM_AES_KEY_WRAP_PAD`.

use std::collections::BTreeSet;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_kw::KekAes256;
use zeroize::Zeroizing;

use crate::header::validate_key_id;
use crate::{DATA_KEY_LEN, DataKey, KeyProvider, KeysError, WrapAlgorithm, WrappedKey};

const FILE_MAGIC: [u8; 4] = *b"OPKK";
const SALT_FILE: &str = "passphrase.salt";
const MODE_PLAIN: u8 = 0;
const MODE_SEALED: u8 = 1;

type Secret = Zeroizing<[u8; 32]>;

/// What [`DeviceKeyStore::wipe`] destroyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WipeReport {
    /// Every file that was overwritten with zeros and deleted.
    pub destroyed: Vec<PathBuf>,
}

/// Versioned KEKs generated on the device and kept in a private directory.
pub struct DeviceKeyStore {
    dir: PathBuf,
    key_id: String,
    sealing: Option<Secret>,
}

impl std::fmt::Debug for DeviceKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceKeyStore")
            .field("dir", &self.dir)
            .field("key_id", &self.key_id)
            .field("sealed", &self.sealing.is_some())
            .finish()
    }
}

fn io_at(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> KeysError {
    let context = format!("{what} {}", path.display());
    move |e| KeysError::io(context, e)
}

/// Writes `bytes` to `path` atomically (a temp file renamed into place) with mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeysError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_at("creating key file", &tmp))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(io_at("writing key file", &tmp))?;
    fs::rename(&tmp, path).map_err(io_at("installing key file", path))
}

impl DeviceKeyStore {
    /// Opens (creating on first use) the unsealed key store for `key_id` in `dir`.
    pub fn open(dir: impl Into<PathBuf>, key_id: &str) -> Result<Self, KeysError> {
        Self::open_inner(dir.into(), key_id, None)
    }

    /// Opens (creating on first use) a key store whose KEK files are sealed with `passphrase`.
    pub fn open_sealed(
        dir: impl Into<PathBuf>,
        key_id: &str,
        passphrase: &str,
    ) -> Result<Self, KeysError> {
        Self::open_inner(dir.into(), key_id, Some(passphrase))
    }

    fn open_inner(dir: PathBuf, key_id: &str, passphrase: Option<&str>) -> Result<Self, KeysError> {
        validate_key_id(key_id)?;
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_at("creating key directory", &dir))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(io_at("restricting key directory", &dir))?;
        let sealing = match passphrase {
            None => None,
            Some(p) => Some(derive_sealing_key(&dir, p)?),
        };
        let store = DeviceKeyStore {
            dir,
            key_id: key_id.to_owned(),
            sealing,
        };
        match store.versions()?.last() {
            // Loading the newest version checks the passphrase up front.
            Some(&v) => drop(store.load(v)?),
            None => store.generate(1)?,
        }
        Ok(store)
    }

    /// The key directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn kek_path(&self, version: u32) -> PathBuf {
        self.dir.join(format!("{}.v{version}.kek", self.key_id))
    }

    fn disabled_path(&self, version: u32) -> PathBuf {
        self.dir
            .join(format!("{}.v{version}.kek.disabled", self.key_id))
    }

    /// Every version on disk, active or disabled, ascending.
    pub fn versions(&self) -> Result<Vec<u32>, KeysError> {
        let prefix = format!("{}.v", self.key_id);
        let mut out = BTreeSet::new();
        for entry in fs::read_dir(&self.dir).map_err(io_at("listing key directory", &self.dir))? {
            let name = entry
                .map_err(io_at("listing key directory", &self.dir))?
                .file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
                continue;
            };
            let num = rest
                .strip_suffix(".kek")
                .or_else(|| rest.strip_suffix(".kek.disabled"));
            if let Some(v) = num.and_then(|n| n.parse::<u32>().ok()) {
                out.insert(v);
            }
        }
        Ok(out.into_iter().collect())
    }

    fn generate(&self, version: u32) -> Result<(), KeysError> {
        let mut kek: Secret = Zeroizing::new([0; 32]);
        crate::error::random(&mut kek[..])?;
        let path = self.kek_path(version);
        let mut file = FILE_MAGIC.to_vec();
        match &self.sealing {
            None => {
                file.push(MODE_PLAIN);
                file.extend_from_slice(&kek[..]);
            }
            Some(sk) => {
                let mut nonce = [0u8; 12];
                crate::error::random(&mut nonce)?;
                let aad = file_aad(&path);
                let ct = Aes256Gcm::new((&**sk).into())
                    .encrypt(
                        (&nonce).into(),
                        Payload {
                            msg: &kek[..],
                            aad: &aad,
                        },
                    )
                    .expect("sealing 32 bytes cannot fail");
                file.push(MODE_SEALED);
                file.extend_from_slice(&nonce);
                file.extend_from_slice(&ct);
            }
        }
        write_private(&path, &file)
    }

    fn load(&self, version: u32) -> Result<Secret, KeysError> {
        let path = self.kek_path(version);
        let bytes = match fs::read(&path) {
            Ok(b) => Zeroizing::new(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (key_id, version) = (self.key_id.clone(), version);
                return Err(if self.disabled_path(version).exists() {
                    KeysError::KeyVersionDisabled { key_id, version }
                } else {
                    KeysError::KeyVersionMissing { key_id, version }
                });
            }
            Err(e) => {
                return Err(KeysError::io(
                    format!("reading key file {}", path.display()),
                    e,
                ));
            }
        };
        let corrupt = |reason: &str| KeysError::KeyFileCorrupt {
            path: path.clone(),
            reason: reason.into(),
        };
        if bytes.len() < 5 || bytes[..4] != FILE_MAGIC {
            return Err(corrupt("missing OPKK magic"));
        }
        let mut kek: Secret = Zeroizing::new([0; 32]);
        match (bytes[4], &self.sealing) {
            (MODE_PLAIN, None) if bytes.len() == 37 => kek.copy_from_slice(&bytes[5..]),
            (MODE_SEALED, Some(sk)) if bytes.len() == 5 + 12 + 32 + 16 => {
                let aad = file_aad(&path);
                let pt = Aes256Gcm::new((&**sk).into())
                    .decrypt(
                        bytes[5..17].into(),
                        Payload {
                            msg: &bytes[17..],
                            aad: &aad,
                        },
                    )
                    .map_err(|_| KeysError::WrongPassphrase { path: path.clone() })?;
                kek.copy_from_slice(&Zeroizing::new(pt));
            }
            (MODE_SEALED, None) => return Err(KeysError::PassphraseRequired { path }),
            (MODE_PLAIN, Some(_)) => return Err(KeysError::NotSealed { path }),
            _ => return Err(corrupt("unknown mode or wrong length")),
        }
        Ok(kek)
    }

    /// Creates KEK version N+1 and makes it current; older versions stay for unwrapping.
    pub fn rotate(&self) -> Result<u32, KeysError> {
        let next = self.versions()?.last().copied().unwrap_or(0) + 1;
        self.generate(next)?;
        Ok(next)
    }

    /// Revokes `version`: objects wrapped under it no longer open until it is re-enabled.
    pub fn disable_version(&self, version: u32) -> Result<(), KeysError> {
        let from = self.kek_path(version);
        fs::rename(&from, self.disabled_path(version)).map_err(io_at("disabling key file", &from))
    }

    /// Re-enables a version disabled with [`DeviceKeyStore::disable_version`].
    pub fn enable_version(&self, version: u32) -> Result<(), KeysError> {
        let from = self.disabled_path(version);
        fs::rename(&from, self.kek_path(version)).map_err(io_at("enabling key file", &from))
    }

    /// Overwrites every file in the key directory with zeros, deletes it and removes the
    /// directory; every object wrapped by these keys becomes unreadable.
    pub fn wipe(self) -> Result<WipeReport, KeysError> {
        let mut destroyed = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_at("listing key directory", &self.dir))? {
            let path = entry
                .map_err(io_at("listing key directory", &self.dir))?
                .path();
            if !path.is_file() {
                continue;
            }
            let len = fs::metadata(&path)
                .map_err(io_at("inspecting key file", &path))?
                .len();
            let mut f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_at("opening key file", &path))?;
            f.write_all(&vec![0u8; len as usize])
                .and_then(|_| f.sync_all())
                .map_err(io_at("overwriting key file", &path))?;
            fs::remove_file(&path).map_err(io_at("deleting key file", &path))?;
            destroyed.push(path);
        }
        let _ = fs::remove_dir(&self.dir);
        destroyed.sort();
        Ok(WipeReport { destroyed })
    }
}

fn file_aad(path: &Path) -> Vec<u8> {
    path.file_name()
        .map(|n| n.as_encoded_bytes().to_vec())
        .unwrap_or_default()
}

/// Argon2id(m = 19456 KiB, t = 2, p = 1) over the passphrase and the store's salt.
fn derive_sealing_key(dir: &Path, passphrase: &str) -> Result<Secret, KeysError> {
    let salt_path = dir.join(SALT_FILE);
    let salt = match fs::read(&salt_path) {
        Ok(s) if s.len() == 16 => s,
        Ok(_) => {
            return Err(KeysError::KeyFileCorrupt {
                path: salt_path,
                reason: "salt is not 16 bytes".into(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut s = vec![0u8; 16];
            crate::error::random(&mut s)?;
            write_private(&salt_path, &s)?;
            s
        }
        Err(e) => return Err(KeysError::io(format!("reading {}", salt_path.display()), e)),
    };
    let params =
        argon2::Params::new(19 * 1024, 2, 1, Some(32)).expect("constant parameters are valid");
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key: Secret = Zeroizing::new([0; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), &salt, &mut key[..])
        .map_err(|e| KeysError::KeyFileCorrupt {
            path: salt_path,
            reason: e.to_string(),
        })?;
    Ok(key)
}

impl KeyProvider for DeviceKeyStore {
    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn current_version(&self) -> Result<u32, KeysError> {
        // The newest *active* version; a disabled newest version must not be wrapped under.
        let versions = self.versions()?;
        versions
            .iter()
            .rev()
            .find(|&&v| self.kek_path(v).exists())
            .copied()
            .ok_or_else(|| KeysError::KeyVersionMissing {
                key_id: self.key_id.clone(),
                version: versions.last().copied().unwrap_or(1),
            })
    }

    fn wrap(&self, data_key: &DataKey) -> Result<WrappedKey, KeysError> {
        let version = self.current_version()?;
        let kek = self.load(version)?;
        let bytes = KekAes256::new((&*kek).into())
            .wrap_with_padding_vec(data_key.as_bytes())
            .expect("wrapping 32 bytes cannot fail");
        Ok(WrappedKey {
            algorithm: WrapAlgorithm::Aes256KwPad,
            version,
            bytes,
        })
    }

    fn unwrap(&self, key_id: &str, wrapped: &WrappedKey) -> Result<DataKey, KeysError> {
        crate::provider::check_unwrap_request(&self.key_id, key_id, wrapped)?;
        let kek = self.load(wrapped.version)?;
        let rejected = || KeysError::WrappedKeyRejected {
            key_id: key_id.to_owned(),
            version: wrapped.version,
        };
        let key = Zeroizing::new(
            KekAes256::new((&*kek).into())
                .unwrap_with_padding_vec(&wrapped.bytes)
                .map_err(|_| rejected())?,
        );
        let key: [u8; DATA_KEY_LEN] = key[..].try_into().map_err(|_| rejected())?;
        Ok(DataKey::from_bytes(key))
    }
}

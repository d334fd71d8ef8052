//! Persistent anti-rollback state: the highest version accepted per plugin.
//!
//! Stored as a JSON file replaced atomically (write to a temporary file in the same directory,
//! fsync, rename over the old file, fsync the directory), so a crash leaves either the old or the
//! new state, never a torn one.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, UpdateError};

/// What is remembered about a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedRelease {
    /// The highest version accepted so far.
    pub version: semver::Version,
    /// The manifest digest accepted for that version.
    pub digest: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoreFile {
    plugins: BTreeMap<String, AcceptedRelease>,
}

/// The version store. Not shared between processes: one runtime owns its state directory.
#[derive(Debug)]
pub struct VersionStore {
    path: PathBuf,
    state: StoreFile,
}

impl VersionStore {
    /// Opens (or starts) the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let state = match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| UpdateError::CorruptStore {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoreFile::default(),
            Err(e) => return Err(UpdateError::io(path, e)),
        };
        Ok(Self {
            path: path.to_path_buf(),
            state,
        })
    }

    /// The highest release accepted for `plugin`, if any.
    pub fn get(&self, plugin: &str) -> Option<&AcceptedRelease> {
        self.state.plugins.get(plugin)
    }

    /// Records `version` for `plugin` if it is higher than what is stored (a forced rollback does
    /// not lower the high-water mark), and persists the store.
    pub fn record(&mut self, plugin: &str, version: &semver::Version, digest: &str) -> Result<()> {
        if let Some(current) = self.state.plugins.get(plugin)
            && current.version >= *version
        {
            return Ok(());
        }
        self.state.plugins.insert(
            plugin.to_owned(),
            AcceptedRelease {
                version: version.clone(),
                digest: digest.to_owned(),
            },
        );
        self.persist()
    }

    fn persist(&self) -> Result<()> {
        let bytes =
            serde_json::to_vec_pretty(&self.state).map_err(|e| UpdateError::CorruptStore {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        write_atomically(&self.path, &bytes)
    }
}

/// Replaces `path` with `bytes` atomically and durably.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut file = File::create(&tmp).map_err(|e| UpdateError::io(&tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| UpdateError::io(&tmp, e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| UpdateError::io(path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| UpdateError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_version_survives_a_reopen_and_is_never_lowered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("versions.json");
        let mut store = VersionStore::open(&path).unwrap();
        store
            .record("p", &"1.2.0".parse().unwrap(), "sha256:aa")
            .unwrap();
        store
            .record("p", &"1.1.0".parse().unwrap(), "sha256:bb")
            .unwrap();
        let store = VersionStore::open(&path).unwrap();
        let got = store.get("p").unwrap();
        assert_eq!(got.version, "1.2.0".parse().unwrap());
        assert_eq!(got.digest, "sha256:aa");
        assert!(store.get("q").is_none());
    }
}

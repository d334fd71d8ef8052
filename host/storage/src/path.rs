//! Safe share-relative paths.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};

/// Longest accepted path, in bytes of UTF-8.
pub const MAX_PATH_BYTES: usize = 1024;
/// Longest accepted path component, in bytes of UTF-8 (the common file-system limit).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Top-level directory of a share root that holds the engine's own state (journal, temp files).
/// Paths inside it are refused.
pub const STATE_DIR: &str = ".outpost";

/// A validated path relative to a share root: `/`-separated, UTF-8, no empty, `.` or `..`
/// components, not absolute, no NUL, backslash or control characters, at most
/// [`MAX_PATH_BYTES`] long with components of at most [`MAX_COMPONENT_BYTES`], and not inside
/// the engine's [`STATE_DIR`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SharePath(String);

impl SharePath {
    /// Validates `path`.
    pub fn new(path: &str) -> Result<Self> {
        let bad = |reason| StorageError::InvalidPath {
            path: path.chars().take(200).collect(),
            reason,
        };
        if path.is_empty() {
            return Err(bad("empty path"));
        }
        if path.len() > MAX_PATH_BYTES {
            return Err(bad("path is longer than 1024 bytes"));
        }
        if path.contains('\0') {
            return Err(bad("path contains a NUL byte"));
        }
        if path.starts_with('/') {
            return Err(bad("absolute paths are not allowed"));
        }
        if path.contains('\\') {
            return Err(bad("backslashes are not allowed"));
        }
        if path.chars().any(char::is_control) {
            return Err(bad("control characters are not allowed"));
        }
        let bytes = path.as_bytes();
        if bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic() {
            return Err(bad("drive-letter paths are not allowed"));
        }
        for (i, component) in path.split('/').enumerate() {
            match component {
                "" => {
                    return Err(bad(
                        "empty path component (leading, trailing or double '/')",
                    ));
                }
                "." => return Err(bad("'.' components are not allowed")),
                ".." => return Err(bad("'..' components are not allowed")),
                c if c.len() > MAX_COMPONENT_BYTES => {
                    return Err(bad("a path component is longer than 255 bytes"));
                }
                STATE_DIR if i == 0 => return Err(bad("the share's state directory is reserved")),
                _ => {}
            }
        }
        Ok(Self(path.to_owned()))
    }

    /// Validates a path that arrived as raw bytes (from the wire): invalid UTF-8 is refused.
    pub fn from_bytes(path: &[u8]) -> Result<Self> {
        match std::str::from_utf8(path) {
            Ok(s) => Self::new(s),
            Err(_) => Err(StorageError::InvalidPath {
                path: String::from_utf8_lossy(path).chars().take(200).collect(),
                reason: "path is not valid UTF-8",
            }),
        }
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where the file lives under `root`.
    pub fn local(&self, root: &Path) -> PathBuf {
        root.join(&self.0)
    }
}

impl fmt::Display for SharePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for SharePath {
    type Error = StorageError;
    fn try_from(value: String) -> Result<Self> {
        Self::new(&value)
    }
}

impl From<SharePath> for String {
    fn from(value: SharePath) -> Self {
        value.0
    }
}

impl AsRef<str> for SharePath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_nested_paths_are_accepted() {
        for p in [
            "a",
            "a/b/c.txt",
            "with space/ü.bin",
            "..hidden",
            "a/.b",
            "x..y",
        ] {
            assert_eq!(SharePath::new(p).unwrap().as_str(), p);
        }
    }

    #[test]
    fn traversal_absolute_and_malformed_paths_are_refused() {
        let long_component = "a".repeat(256);
        let long_path = vec!["abc"; 300].join("/");
        for p in [
            "",
            "..",
            "../etc/passwd",
            "a/../../b",
            "a/./b",
            "/etc/passwd",
            "a//b",
            "a/",
            "a\\b",
            "a\0b",
            "C:/x",
            "line\nbreak",
            ".outpost/journal.redb",
            long_component.as_str(),
            long_path.as_str(),
        ] {
            assert!(SharePath::new(p).is_err(), "{p:?} was accepted");
        }
    }

    #[test]
    fn invalid_utf8_from_the_wire_is_refused_with_a_clear_reason() {
        let err = SharePath::from_bytes(b"ok/\xff\xfe").unwrap_err();
        assert!(err.to_string().contains("not valid UTF-8"), "{err}");
    }

    #[test]
    fn paths_deserialize_only_when_valid() {
        assert!(serde_json::from_str::<SharePath>("\"a/b\"").is_ok());
        assert!(serde_json::from_str::<SharePath>("\"../b\"").is_err());
    }
}

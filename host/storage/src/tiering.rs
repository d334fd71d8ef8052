//! Types shaped like the `tiering-policy` WIT world (`wit/tiering.wit`): the runtime converts
//! them one-to-one into the plugin's `volume-state`, `file-stat` and `action`.

use serde::{Deserialize, Serialize};

use crate::journal::FileState;

/// The state of one share's local volume (`volume-state`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeState {
    /// Share name.
    pub share: String,
    /// Bytes the local volume can hold for this share (the quota).
    pub capacity_bytes: u64,
    /// Bytes in use locally (content of files that are not evicted).
    pub used_bytes: u64,
    /// Wall-clock time of the decision, ms since the Unix epoch.
    pub now_unix_ms: u64,
}

/// What a policy knows about one file (`file-stat`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    /// Path relative to the share root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, ms since the Unix epoch.
    pub modified_unix_ms: u64,
    /// Last read, ms since the Unix epoch.
    pub accessed_unix_ms: u64,
    /// Where the bytes are.
    pub state: FileState,
    /// Whether the file is pinned locally.
    pub pinned: bool,
}

/// One decision about one file (`action`). Paths come from a plugin and are validated.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "action", content = "path")]
pub enum Action {
    /// Upload the file now.
    Upload(String),
    /// Replace the local copy with a stub (only for synced, unpinned files).
    Evict(String),
    /// Keep the file local regardless of pressure.
    Pin(String),
    /// Clear a pin.
    Unpin(String),
    /// Bring an evicted file back.
    Recall(String),
}

impl Action {
    /// The path the action is about.
    pub fn path(&self) -> &str {
        match self {
            Action::Upload(p)
            | Action::Evict(p)
            | Action::Pin(p)
            | Action::Unpin(p)
            | Action::Recall(p) => p,
        }
    }
}

/// Input for one `decide` call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TieringInput {
    /// The volume.
    pub volume: VolumeState,
    /// Candidate files, coldest (least recently read) first.
    pub files: Vec<FileStat>,
}

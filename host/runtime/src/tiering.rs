//! Calling a `tiering-policy` plugin: the host hands it a share's volume state and file
//! statistics (`decide`) and gets actions back. The plugin only proposes; the share applies the
//! actions under the host's safety rules (`outpost_storage::Share::apply_actions` never evicts an
//! unsynced or pinned file), so a policy that returns nonsense changes nothing it should not.

use std::time::Instant;

use outpost_storage::{Action, FileState, TieringInput};
use wasmtime::component::{ComponentType, Lift, Lower};

use crate::error::CallError;
use crate::plugin::{Plugin, arm_deadline};

#[derive(ComponentType, Lower)]
#[component(record)]
struct WitVolume {
    share: String,
    #[component(name = "capacity-bytes")]
    capacity_bytes: u64,
    #[component(name = "used-bytes")]
    used_bytes: u64,
    #[component(name = "now-unix-ms")]
    now_unix_ms: u64,
}

#[derive(ComponentType, Lower, Clone, Copy)]
#[component(enum)]
#[repr(u8)]
enum WitFileState {
    #[component(name = "local")]
    Local,
    #[component(name = "uploading")]
    Uploading,
    #[component(name = "synced")]
    Synced,
    #[component(name = "evicted")]
    Evicted,
}

#[derive(ComponentType, Lower)]
#[component(record)]
struct WitFileStat {
    path: String,
    size: u64,
    #[component(name = "modified-unix-ms")]
    modified_unix_ms: u64,
    #[component(name = "accessed-unix-ms")]
    accessed_unix_ms: u64,
    state: WitFileState,
    pinned: bool,
}

#[derive(ComponentType, Lift)]
#[component(variant)]
enum WitAction {
    #[component(name = "upload")]
    Upload(String),
    #[component(name = "evict")]
    Evict(String),
    #[component(name = "pin")]
    Pin(String),
    #[component(name = "unpin")]
    Unpin(String),
    #[component(name = "recall")]
    Recall(String),
}

impl Plugin {
    /// Calls a tiering policy's `decide` with `input`. More actions than twice the number of
    /// files is refused as nonsense (each file can at most be uploaded and evicted).
    pub async fn decide(&self, input: &TieringInput) -> Result<Vec<Action>, CallError> {
        let started = Instant::now();
        let result = self.decide_inner(input).await;
        self.record(started, result.as_ref().map(|_| ()));
        result
    }

    async fn decide_inner(&self, input: &TieringInput) -> Result<Vec<Action>, CallError> {
        let name = self.name().to_string();
        let Some(index) = self.decide_index() else {
            return Err(CallError::Refused {
                plugin: name,
                message: "is not a tiering policy (no `decide` export)".into(),
            });
        };
        let mut store = self.new_store()?;
        arm_deadline(&mut store);
        let instance = self
            .instance_pre()
            .instantiate_async(&mut store)
            .await
            .map_err(|e| self.classify_instantiate(&e))?;
        let func = instance
            .get_typed_func::<(WitVolume, Vec<WitFileStat>), (Vec<WitAction>,)>(&mut store, index)
            .map_err(|e| CallError::Instantiate {
                plugin: name.clone(),
                message: format!("`decide` has the wrong signature: {e:#}"),
            })?;
        let volume = WitVolume {
            share: input.volume.share.clone(),
            capacity_bytes: input.volume.capacity_bytes,
            used_bytes: input.volume.used_bytes,
            now_unix_ms: input.volume.now_unix_ms,
        };
        let files = input
            .files
            .iter()
            .map(|f| WitFileStat {
                path: f.path.clone(),
                size: f.size,
                modified_unix_ms: f.modified_unix_ms,
                accessed_unix_ms: f.accessed_unix_ms,
                state: match f.state {
                    FileState::Local => WitFileState::Local,
                    FileState::Uploading => WitFileState::Uploading,
                    FileState::Synced => WitFileState::Synced,
                    FileState::Evicted => WitFileState::Evicted,
                },
                pinned: f.pinned,
            })
            .collect();
        let (actions,) = func
            .call_async(&mut store, (volume, files))
            .await
            .map_err(|e| self.classify(&e))?;
        let most = input.files.len().saturating_mul(2).max(16);
        if actions.len() > most {
            return Err(CallError::Refused {
                plugin: name,
                message: format!(
                    "returned {} actions for {} files (at most {most})",
                    actions.len(),
                    input.files.len()
                ),
            });
        }
        Ok(actions
            .into_iter()
            .map(|a| match a {
                WitAction::Upload(p) => Action::Upload(p),
                WitAction::Evict(p) => Action::Evict(p),
                WitAction::Pin(p) => Action::Pin(p),
                WitAction::Unpin(p) => Action::Unpin(p),
                WitAction::Recall(p) => Action::Recall(p),
            })
            .collect())
    }
}

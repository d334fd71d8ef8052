//! The bindings glue: converts the WIT types to the policy's, logs, and maps indices back to
//! paths.

use outpost_sdk::tiering_policy::Guest;
use outpost_sdk::tiering_policy::outpost::plugin::tiering_types::{
    Action, FileStat, FileState, VolumeState,
};
use outpost_sdk::{config, log};

use crate::policy::{self, Config, File, State, Volume};

struct TieringDefault;

impl Guest for TieringDefault {
    fn decide(volume: VolumeState, mut files: Vec<FileStat>) -> Vec<Action> {
        let (settings, warnings) = Config::from_lookup(config::get);
        for warning in &warnings {
            log::warn(&warning.to_string());
        }
        let plain: Vec<File> = files.iter().map(to_policy).collect();
        let decision = policy::decide(
            &settings,
            &Volume {
                capacity_bytes: volume.capacity_bytes,
                used_bytes: volume.used_bytes,
                now_unix_ms: volume.now_unix_ms,
            },
            &plain,
        );
        drop(plain);
        if decision.low_space {
            log::info(&format!(
                "share {}: low on space ({} of {} bytes used), evicting down to {} bytes",
                volume.share,
                volume.used_bytes,
                volume.capacity_bytes,
                settings
                    .min_file_size_bytes
                    .min(settings.low_space_min_file_size_bytes)
            ));
        }
        if decision.bytes_freed < decision.bytes_to_free {
            log::warn(&format!(
                "share {}: {} bytes should be freed but only {} can be evicted",
                volume.share, decision.bytes_to_free, decision.bytes_freed
            ));
        }
        log::debug(&format!(
            "share {}: {} files, {} uploads, {} free-space and {} date evictions",
            volume.share,
            files.len(),
            decision.uploads.len(),
            decision.free_space_evictions.len(),
            decision.date_evictions.len()
        ));

        let mut actions = Vec::with_capacity(decision.len());
        let mut path = |i: usize| std::mem::take(&mut files[i].path);
        actions.extend(decision.uploads.iter().map(|&i| Action::Upload(path(i))));
        actions.extend(
            decision
                .free_space_evictions
                .iter()
                .chain(&decision.date_evictions)
                .map(|&i| Action::Evict(path(i))),
        );
        actions
    }
}

fn to_policy(file: &FileStat) -> File {
    File {
        size: file.size,
        modified_unix_ms: file.modified_unix_ms,
        accessed_unix_ms: file.accessed_unix_ms,
        state: match file.state {
            FileState::Local => State::Local,
            FileState::Uploading => State::Uploading,
            FileState::Synced => State::Synced,
            FileState::Evicted => State::Evicted,
        },
        pinned: file.pinned,
    }
}

outpost_sdk::export_tiering_policy!(TieringDefault);

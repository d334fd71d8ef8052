//! Property: whatever actions a tiering policy returns, the engine never evicts an unsynced or
//! pinned file, and no file's content is lost.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::{data, fast_options, local_spec, sha256_hex};
use outpost_storage::{Action, FileState, Share, SharePath};
use proptest::prelude::*;

const FILES: usize = 6;

fn path_of(i: usize) -> String {
    format!("f{i}")
}

fn action_strategy() -> impl Strategy<Value = Action> {
    let path = prop_oneof![
        8 => (0..FILES).prop_map(path_of),
        1 => Just("../outside".to_owned()),
        1 => Just("missing".to_owned()),
    ];
    (0..5u8, path).prop_map(|(kind, p)| match kind {
        0 => Action::Upload(p),
        1 => Action::Evict(p),
        2 => Action::Pin(p),
        3 => Action::Unpin(p),
        _ => Action::Recall(p),
    })
}

/// Initial state of each file: 0 local (unsynced), 1 synced, 2 synced + pinned, 3 evicted.
fn initial_strategy() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(0..4u8, FILES)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_engine_never_evicts_an_unsynced_or_pinned_file_whatever_the_policy_asks(
        initial in initial_strategy(),
        actions in proptest::collection::vec(action_strategy(), 0..24),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let root = tempfile::tempdir().unwrap();
            let target = tempfile::tempdir().unwrap();
            let share = Share::open(
                local_spec("prop", root.path(), target.path(), 1 << 30),
                fast_options(64 * 1024),
            )
            .await
            .unwrap();
            let mut contents = BTreeMap::new();
            for (i, state) in initial.iter().enumerate() {
                let p = SharePath::new(&path_of(i)).unwrap();
                let content = data(i as u64, 1000 + 40_000 * i);
                share.write(&p, Bytes::from(content.clone())).await.unwrap();
                contents.insert(path_of(i), content);
                if *state >= 1 {
                    share.upload(&p).await.unwrap();
                }
                if *state == 2 {
                    share.pin(&p).await.unwrap();
                }
                if *state == 3 {
                    share.evict(&p).await.unwrap();
                }
            }
            for action in actions {
                let before = SharePath::new(action.path())
                    .ok()
                    .and_then(|p| share.entry(&p).unwrap());
                let results = share.apply_actions(vec![action.clone()]).await;
                let (_, result) = &results[0];
                if let (Action::Evict(path), Some(before)) = (&action, before) {
                    let after = share.entry(&SharePath::new(path).unwrap()).unwrap().unwrap();
                    let allowed = before.state == FileState::Synced && !before.pinned;
                    if !allowed && before.state != FileState::Evicted {
                        prop_assert!(result.is_err(), "evicting {path} ({before:?}) succeeded");
                        prop_assert_eq!(after.state, before.state);
                        let local = std::fs::read(root.path().join(path)).unwrap();
                        prop_assert_eq!(sha256_hex(&local), sha256_hex(&contents[path]));
                    }
                }
                for (path, content) in &contents {
                    let e = share.entry(&SharePath::new(path).unwrap()).unwrap().unwrap();
                    if matches!(e.state, FileState::Local | FileState::Uploading) || e.pinned && e.state != FileState::Evicted {
                        let local = std::fs::read(root.path().join(path)).unwrap();
                        prop_assert_eq!(sha256_hex(&local), sha256_hex(content), "{} lost local data", path);
                    }
                }
            }
            for (path, content) in &contents {
                let got = share.read(&SharePath::new(path).unwrap()).await.unwrap();
                prop_assert_eq!(sha256_hex(&got), sha256_hex(content));
            }
            Ok(())
        })?;
    }
}

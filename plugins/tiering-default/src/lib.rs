//! The default storage-tiering policy for cloud-tiered shares (`tiering-policy` world), with
//! Azure File Sync's cloud tiering semantics.
//!
//! Every `decide` call returns uploads first, then evictions:
//!
//! - **Uploads.** Files in state `local` are proposed for `upload`, oldest modification first,
//!   at most `max_uploads_per_round` per call. Pinned local files are uploaded too (a pin keeps
//!   the local copy; it does not stop the backup).
//! - **Volume free space policy.** Keep `free_space_percent` of the share's capacity free: when
//!   `used > capacity × (1 − free_space_percent / 100)`, evict files least recently read first
//!   until the target is met, and no further. It takes precedence over the date policy: files
//!   the date policy would keep because they were read recently are still evicted when space
//!   requires it.
//! - **Date policy.** With `date_policy_days` set, files not read for that many days are
//!   evicted too (those the free space policy did not already take), least recently read first.
//! - **Never evicted:** files that are not `synced` (`local` and `uploading` ones have no copy in
//!   the cloud yet; `evicted` ones are already stubs), pinned files, empty files and files smaller
//!   than `min_file_size_bytes` (Azure File Sync's minimum tiered file size, 64 KiB by default).
//! - **Low-space mode.** When free space drops below `low_space_percent` of the capacity, the
//!   free space policy turns aggressive: the minimum size drops to
//!   `low_space_min_file_size_bytes` (4 KiB by default; never above `min_file_size_bytes`), so
//!   small cold files may be evicted as well. The date policy keeps the normal minimum. The host
//!   is expected to call `decide` more often while a share is this short of space, so pressure is
//!   relieved quickly; the policy itself holds no state between calls.
//!
//! A capacity of 0 means the host does not know the volume's size: the free space policy and
//! low-space mode are then off (the date policy and uploads still apply).
//!
//! # Configuration
//!
//! All values are decimal integers (surrounding spaces allowed). A value that does not parse or
//! is out of range is logged at warn level through the `log` import and its default is used:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `free_space_percent` | 20 | percentage (0–99) of capacity to keep free |
//! | `date_policy_days` | 0 (off) | evict files not read for this many days |
//! | `min_file_size_bytes` | 65536 | never evict smaller files |
//! | `max_uploads_per_round` | 64 | at most this many uploads per call |
//! | `low_space_percent` | 10 | low-space mode below this percentage (0–100) free; 0: never |
//! | `low_space_min_file_size_bytes` | 4096 | minimum evictable size in low-space mode |
//!
//! The decision logic is [`policy`], plain Rust without bindings, so it is tested natively:
//! `cargo test --target x86_64-unknown-linux-gnu -p tiering-default` from `plugins/`. It never
//! panics on any input and runs in O(n log n) for n files.

pub mod policy;

#[cfg(target_arch = "wasm32")]
mod component;
